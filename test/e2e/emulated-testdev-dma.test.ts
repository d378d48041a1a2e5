// End to end, as QEMU's tests/qtest/iommu-smmuv3-test.c runs it: a virt machine with the
// machine-wide emulated SMMUv3 and an iommu-testdev. Everything goes through the machine's
// address space: the guest's PCI scan finds the testdev's BAR0 over ECAM, the SMMU is
// programmed through its MMIO frame with its stream table, CD, page tables, command and event
// queues in guest RAM, and the DMA is triggered through the testdev's registers.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ITD_DMA_ERR_TX_FAIL } from '../../src/arch/iommu-testdev/registers.js';
import { buildCommand, Op } from '../../src/arch/smmuv3/commands.js';
import * as R from '../../src/arch/smmuv3/registers.js';
import { EVT, Evt, STE_CFG_NESTED, STE_CFG_S1, STE_CFG_S2 } from '../../src/arch/smmuv3/structures.js';
import { GuestIommuTestdev, isIommuTestdev } from '../../src/guest/iommu-testdev.js';
import { scanPci } from '../../src/guest/pci.js';
import { PageTableBuilder } from '../../src/kit/page-table-builder.js';
import { Machine } from '../../src/platform/machine.js';
import { EmulatedRig, ASID, CD_GPA, CMDQ, DATA, EVENTQ, IOVA, OUT_IPA, RAM_BASE, S1_TABLES, S2_TABLES, STRTAB, VMID } from '../vmm/smmuv3/emulated-rig.js';

const ARGS = ['-M', 'virt,iommu=smmuv3,gic-version=3', '-accel', 'qtest', '-m', '512', '-device', 'iommu-testdev'];
/** The machine-wide SMMUv3's register frame (QEMU's VIRT_SMMU). */
const SMMU_BASE = 0x0905_0000;
const LOG2_Q = 10;
const Q_WRAP_MASK = (2 << LOG2_Q) - 1;
const Q_IDX_MASK = (1 << LOG2_Q) - 1;
const DMA_LEN = 0x100;

type Reg = { spec: { offset: number } };

/** A guest driving the SMMU and the testdev of one machine through MMIO and RAM only. */
class Guest {
  readonly m = Machine.create(ARGS);
  readonly testdev: GuestIommuTestdev;
  /** The testdev's requester ID (bus 0): its StreamID. */
  readonly sid: number;
  readonly s1: PageTableBuilder;
  readonly s2: PageTableBuilder;
  private cmdProd = 0;
  private evCons = 0;
  private nextS1 = S1_TABLES;
  private nextS2 = S2_TABLES;

  constructor() {
    const bus = this.m.guestPlatform().bus;
    const found = scanPci(bus, this.m.acpi).filter(isIommuTestdev);
    assert.equal(found.length, 1, 'the scan finds one iommu-testdev');
    const d = found[0]!;
    assert.equal(d.bus, 0);
    this.sid = (d.bus << 8) | d.devfn;
    this.testdev = GuestIommuTestdev.probe(bus, d);
    const tm = { read32: (a: number) => this.r32ram(a), write32: (a: number, v: number) => this.w32ram(a, v) };
    this.s1 = new PageTableBuilder(tm, { stage: 1, granule: 4096, inputBits: 48, allocTable: () => ((this.nextS1 += 4096) - 4096) });
    this.s2 = new PageTableBuilder(tm, { stage: 2, granule: 4096, inputBits: 44, allocTable: () => ((this.nextS2 += 4096) - 4096) });
  }

  r32ram(a: number): number {
    return new DataView(this.m.readRam(a, 4).buffer).getUint32(0, true);
  }
  w32ram(a: number, v: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v >>> 0, true);
    this.m.writeRam(a, b);
  }
  words(a: number, w: Uint32Array): void {
    this.m.writeRam(a, new Uint8Array(w.buffer, w.byteOffset, w.byteLength));
  }

  w(reg: Reg, v: number, size: 4 | 8 = 4): void {
    this.m.write(SMMU_BASE + reg.spec.offset, size, v);
  }
  r(reg: Reg): number {
    return Number(this.m.read(SMMU_BASE + reg.spec.offset, 4).value);
  }

  /** qsmmu_program_bank's order: GBPA, CR0 off, queues, linear stream table, IRQs, then SMMUEN|EVENTQEN|CMDQEN. */
  enable(): void {
    this.w(R.GBPA, 0x8000_0000);
    this.w(R.CR0, 0);
    this.w(R.CR1, 0x0d75);
    this.w(R.CMDQ_BASE, CMDQ | LOG2_Q, 8);
    this.w(R.CMDQ_CONS, 0);
    this.w(R.CMDQ_PROD, 0);
    this.w(R.EVENTQ_BASE, EVENTQ | LOG2_Q, 8);
    this.w(R.EVENTQ_PROD, 0);
    this.w(R.EVENTQ_CONS, 0);
    this.w(R.STRTAB_BASE_CFG, 5);
    this.w(R.STRTAB_BASE, STRTAB, 8);
    this.w(R.IRQ_CTRL, 0b101);
    this.w(R.CR0, 0xd);
    assert.equal(this.r(R.CR0ACK), 0xd, 'CR0ACK follows CR0');
  }

  /** Commands into the ring, CMDQ_PROD written; the SMMU consumes them (CONS reaches PROD, no CERROR). */
  submit(...cmds: Uint32Array[]): void {
    for (const c of cmds) {
      this.words(CMDQ + (this.cmdProd & Q_IDX_MASK) * 16, c);
      this.cmdProd = (this.cmdProd + 1) & Q_WRAP_MASK;
    }
    this.w(R.CMDQ_PROD, this.cmdProd);
    assert.equal(this.r(R.CMDQ_CONS), this.cmdProd, 'the command queue drained without error');
  }

  /** Event records between our CONS and EVENTQ_PROD, read from guest RAM; CONS moves to PROD. */
  events(): Uint32Array[] {
    const prod = this.r(R.EVENTQ_PROD);
    const out: Uint32Array[] = [];
    while ((this.evCons & Q_WRAP_MASK) !== (prod & Q_WRAP_MASK)) {
      const b = this.m.readRam(EVENTQ + (this.evCons & Q_IDX_MASK) * 32, 32);
      out.push(new Uint32Array(b.buffer.slice(b.byteOffset, b.byteOffset + 32)));
      this.evCons = (this.evCons + 1) & Q_WRAP_MASK;
    }
    this.w(R.EVENTQ_CONS, this.evCons);
    return out;
  }

  /** STE and CD as the emulated rig builds them (QEMU's test values), written into this machine's RAM. */
  writeSteCd(config: number): void {
    const rig = new EmulatedRig({ stage: 'nested' });
    const cap = (base: number, n: number) => {
      const w = new Uint32Array(n);
      for (let i = 0; i < n; i++) w[i] = rig.dma.read32(base + 4 * i);
      return w;
    };
    // The rig's STE points at its own S2 root; give it ours (same layout: S2_TABLES first).
    assert.equal(rig.s2.root, this.s2.root);
    assert.equal(rig.s1.root, this.s1.root);
    rig.writeSte(this.sid, config);
    rig.writeCd();
    this.words(STRTAB + this.sid * 64, cap(STRTAB + this.sid * 64, 16));
    this.words(CD_GPA, cap(CD_GPA, 16));
    this.submit(buildCommand(Op.CFGI_STE, { sid: this.sid }), buildCommand(Op.CFGI_CD, { sid: this.sid }), buildCommand(Op.SYNC));
  }

  /** The testdev writes its pattern at `iova` and checks it at `gpa`; the bytes there are the pattern. */
  dma(iova: number, gpa: number): number {
    this.m.writeRam(gpa, new Uint8Array(DMA_LEN));
    return this.testdev.dma(iova, gpa, DMA_LEN);
  }

  pattern(gpa: number): number[] {
    return [this.r32ram(gpa), this.r32ram(gpa + DMA_LEN - 4)];
  }
}

const PATTERN = [0x1234_5678, 0x1234_5678];

function stage1(): Guest {
  const g = new Guest();
  g.s1.map(IOVA, DATA, 0x1000, 3, { nG: true });
  g.enable();
  g.writeSteCd(STE_CFG_S1);
  return g;
}

describe('emulated SMMUv3 + iommu-testdev, through the machine (QEMU iommu-smmuv3-test)', () => {
  test('the testdev is found by the scan with BAR0 assigned, and its StreamID is its requester ID', () => {
    const g = new Guest();
    assert.ok(g.testdev.bar0 >= 0x1000_0000 && g.testdev.bar0 < 0x3eff_0000, `BAR0 0x${g.testdev.bar0.toString(16)} in the 32-bit MMIO window`);
    assert.ok(g.sid > 0 && g.sid < 0x100);
    g.m.close();
  });

  test('stage 1: DMA to an IOVA lands at the mapped GPA, result 0', () => {
    const g = stage1();
    assert.equal(g.dma(IOVA + 0x40, DATA + 0x40), 0);
    assert.deepEqual(g.pattern(DATA + 0x40), PATTERN);
    assert.deepEqual(g.events(), []);
    g.m.close();
  });

  test('stage 2 only: the STE\'s S2 tables translate the DMA', () => {
    const g = new Guest();
    g.s2.map(IOVA, DATA, 0x1000, 3);
    g.enable();
    g.writeSteCd(STE_CFG_S2);
    assert.equal(g.dma(IOVA + 0x80, DATA + 0x80), 0);
    assert.deepEqual(g.pattern(DATA + 0x80), PATTERN);
    assert.deepEqual(g.events(), []);
    g.m.close();
  });

  test('nested: S1 to an IPA outside RAM, S2 from there onto the GPA', () => {
    const g = new Guest();
    g.s2.map(RAM_BASE, RAM_BASE, 0x400_0000, 3); // the CD and S1 tables are IPAs too
    g.s2.map(OUT_IPA, DATA, 0x1000, 3);
    g.s1.map(IOVA, OUT_IPA, 0x1000, 3, { nG: true });
    g.enable();
    g.writeSteCd(STE_CFG_NESTED);
    assert.equal(g.dma(IOVA, DATA), 0);
    assert.deepEqual(g.pattern(DATA), PATTERN);
    assert.deepEqual(g.events(), []);
    g.m.close();
  });

  test('an unmapped IOVA: the testdev reports TX_FAIL, the event queue holds F_TRANSLATION with its SID and the IOVA', () => {
    const g = stage1();
    const bad = IOVA + 0x5000;
    assert.equal(g.dma(bad, DATA), ITD_DMA_ERR_TX_FAIL);
    assert.deepEqual(g.pattern(DATA), [0, 0], 'nothing written');
    const ev = g.events();
    // As QEMU's dma_memory_write: each failed 4-byte access translates (and faults) again.
    assert.equal(ev.length, DMA_LEN / 4, 'one record per 4-byte access');
    ev.forEach((e, i) => {
      assert.equal(EVT.ID.get(e[0]!), Evt.F_TRANSLATION);
      assert.equal(e[1], g.sid);
      assert.equal(e[4]! + e[5]! * 2 ** 32, bad + 4 * i);
      assert.equal(EVT.RNW.getWords(e[2]!, e[3]!), 0, 'a write');
    });
    g.m.close();
  });

  test('unmap + TLBI_NH_VA + CMD_SYNC through the command queue: the old IOVA faults', () => {
    const g = stage1();
    assert.equal(g.dma(IOVA, DATA), 0);
    g.s1.unmap(IOVA, 0x1000);
    assert.equal(g.dma(IOVA, DATA), 0, 'before the TLBI the IOTLB still holds the old translation (as QEMU)');
    // With stage 2 supported the STE's S2VMID tags even a stage-1 entry, so the TLBI names it (QEMU decode_ste).
    g.submit(buildCommand(Op.TLBI_NH_VA, { asid: ASID, vmid: VMID, addr: IOVA }), buildCommand(Op.SYNC));
    assert.equal(g.dma(IOVA, DATA), ITD_DMA_ERR_TX_FAIL);
    const ev = g.events();
    assert.deepEqual(
      ev.map((e) => [EVT.ID.get(e[0]!), e[1], e[4]! + e[5]! * 2 ** 32]),
      Array.from({ length: DMA_LEN / 4 }, (_, i) => [Evt.F_TRANSLATION, g.sid, IOVA + 4 * i]),
    );
    g.m.close();
  });
});
