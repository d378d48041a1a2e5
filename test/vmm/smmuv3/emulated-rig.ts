// Test rig for the emulated SMMUv3, driven the way QEMU's tests/qtest/iommu-smmuv3-test.c with
// libqos/qos-smmuv3.c drive QEMU's: a stream table, a CD and stage-1 / stage-2 tables in guest
// RAM, the queues and SMMUEN programmed through MMIO, then DMA translated through the PciIommu
// seam (what iommu-testdev calls).
import { buildCommand } from '../../../src/arch/smmuv3/commands.js';
import * as R from '../../../src/arch/smmuv3/registers.js';
import { buildCd, STE, STE_BYTES } from '../../../src/arch/smmuv3/structures.js';
import { ModelLog } from '../../../src/kit/log.js';
import { PageTableBuilder } from '../../../src/kit/page-table-builder.js';
import { SparseMemory } from '../../../src/kit/sparse-memory.js';
import { Tracer } from '../../../src/kit/trace.js';
import { DmaTranslation } from '../../../src/vmm/pci/iommu.js';
import { EmulatedSmmuV3 } from '../../../src/vmm/smmuv3/emulated-smmuv3.js';
import type { AccelSmmuV3Properties } from '../../../src/vmm/smmuv3/properties.js';
import type { GuestMemory } from '../../../src/vmm/smmuv3/ste-install.js';
import { TRACE_EVENTS } from '../../../src/vmm/smmuv3/trace-events.js';
import { TraceLog } from './rig.js';

export const RAM_BASE = 0x4000_0000;
export const RAM_BYTES = 256 * 2 ** 20;
/** Guest-physical layout (QEMU's test keeps everything in RAM; so does this rig). */
export const STRTAB = RAM_BASE + 0x10_0000; // linear, LOG2SIZE 5 (QEMU's test)
export const CMDQ = RAM_BASE + 0x20_0000; // 2^10 commands
export const EVENTQ = RAM_BASE + 0x30_0000; // 2^10 records
export const CD_GPA = RAM_BASE + 0x40_0000;
export const S1_TABLES = RAM_BASE + 0x80_0000;
export const S2_TABLES = RAM_BASE + 0x100_0000;
export const DATA = RAM_BASE + 0x200_0000;
export const DATA2 = RAM_BASE + 0x210_0000;
/** Input address of the DMA (QEMU's QSMMU_IOVA is of this shape). */
export const IOVA = 0x8080_0000;
/** An IPA outside RAM that stage 2 maps onto DATA (proves stage 2 translated). */
export const OUT_IPA = 0x1_2000_0000;
export const SID = 0x10;
export const ASID = 0x1e20;
export const VMID = 7;
const LOG2_Q = 10;

export const EMULATED_PROPS: AccelSmmuV3Properties = {
  id: 'smmuv3.0', identifier: 0, primaryBus: 'pcie.0', accel: false, cmdqv: 'auto', ats: 'auto', ril: 'auto', ssidsize: 'auto', oas: 'auto', stage: '1',
};

/** Guest RAM as the machine's DMA view: reads outside RAM fail (external abort). */
export function guestRam(): { mem: SparseMemory; dma: GuestMemory } {
  const mem = new SparseMemory(RAM_BYTES);
  const inRam = (a: number, n: number) => a >= RAM_BASE && a + n <= RAM_BASE + RAM_BYTES;
  const dma: GuestMemory = {
    read32: (a) => (inRam(a, 4) ? mem.read32(a - RAM_BASE) : 0),
    write32: (a, v) => {
      if (!inRam(a, 4)) throw new Error(`write abort at 0x${a.toString(16)}`);
      mem.write32(a - RAM_BASE, v);
    },
    readWords: (a, out, at, n) => {
      if (!inRam(a, 4 * n)) return false;
      for (let i = 0; i < n; i++) out[at + i] = mem.read32(a - RAM_BASE + 4 * i);
      return true;
    },
  };
  return { mem, dma };
}

/** One emulated SMMUv3 over its own guest RAM, with a guest driver's view of it. */
export class EmulatedRig {
  readonly log = new ModelLog();
  readonly tracer: Tracer;
  readonly traces = new TraceLog();
  readonly ram: SparseMemory;
  readonly dma: GuestMemory;
  readonly smmu: EmulatedSmmuV3;
  readonly s1: PageTableBuilder;
  readonly s2: PageTableBuilder;
  readonly out = new DmaTranslation();
  private cmdProd = 0;
  private nextS1 = S1_TABLES;
  private nextS2 = S2_TABLES;

  constructor(props: Partial<AccelSmmuV3Properties> = {}, trace: string[] = []) {
    this.tracer = new Tracer(TRACE_EVENTS);
    this.tracer.addSink(this.traces);
    for (const t of trace) if (this.tracer.enable(t).length) throw new Error(`no trace event matches ${t}`);
    const { mem, dma } = guestRam();
    this.ram = mem;
    this.dma = dma;
    this.smmu = new EmulatedSmmuV3({ ...EMULATED_PROPS, ...props }, { guestMemory: dma, log: this.log, tracer: this.tracer });
    const tm = { read32: (a: number) => dma.read32(a), write32: (a: number, v: number) => dma.write32(a, v) };
    this.s1 = new PageTableBuilder(tm, { stage: 1, granule: 4096, inputBits: 48, allocTable: () => ((this.nextS1 += 4096) - 4096) });
    this.s2 = new PageTableBuilder(tm, { stage: 2, granule: 4096, inputBits: 44, allocTable: () => ((this.nextS2 += 4096) - 4096) });
  }

  // MMIO (the guest's stores and loads to the register frame)
  w32(reg: { spec: { offset: number } }, v: number): void {
    this.smmu.mmio.ops!.write(reg.spec.offset, 4, v >>> 0);
  }
  w64(reg: { spec: { offset: number } }, v: number): void {
    this.smmu.mmio.ops!.write64!(reg.spec.offset, BigInt(v));
  }
  r32(reg: { spec: { offset: number } }): number {
    return this.smmu.mmio.ops!.read(reg.spec.offset, 4);
  }

  /** qsmmu_program_bank: GBPA update, queues, linear stream table, IRQs, then CR0 = SMMUEN|EVENTQEN|CMDQEN. */
  enable(): void {
    this.w32(R.GBPA, 0x8000_0000);
    this.w32(R.CR0, 0);
    this.w32(R.CR1, 0x0d75);
    this.w64(R.CMDQ_BASE, CMDQ | LOG2_Q);
    this.w32(R.CMDQ_CONS, 0);
    this.w32(R.CMDQ_PROD, 0);
    this.w64(R.EVENTQ_BASE, EVENTQ | LOG2_Q);
    this.w32(R.EVENTQ_PROD, 0);
    this.w32(R.EVENTQ_CONS, 0);
    this.w32(R.STRTAB_BASE_CFG, 5);
    this.w64(R.STRTAB_BASE, STRTAB);
    this.w32(R.IRQ_CTRL, 0b101); // GERROR + EVENTQ
    this.w32(R.CR0, 0xd);
    this.cmdProd = 0;
  }

  /** Write STE `sid`: Config, the CD pointer, and QEMU's test stage-2 fields (S2T0SZ 20, SL0 2, 4K, PS 48-bit). */
  writeSte(sid: number, config: number, opts: { s2r?: boolean; vmid?: number; extra?: (w: Uint32Array) => void } = {}): void {
    const w = new Uint32Array(STE_BYTES / 4);
    STE.V.setWords(w, 0, 1);
    STE.CFG.setWords(w, 0, config);
    STE.S1CTXPTR.setWords(w, 0, CD_GPA / 2 ** STE.S1CTXPTR.lsb);
    STE.S2VMID.setWords(w, 4, opts.vmid ?? VMID);
    STE.S2T0SZ.setWords(w, 4, 20);
    STE.S2SL0.setWords(w, 4, 2);
    STE.S2PS.setWords(w, 4, 5);
    STE.S2AA64.setWords(w, 4, 1);
    STE.S2R.setWords(w, 4, opts.s2r === false ? 0 : 1);
    STE.S2TTB.setWords(w, 6, this.s2.root / 2 ** STE.S2TTB.lsb);
    opts.extra?.(w);
    w.forEach((v, i) => this.dma.write32(STRTAB + sid * STE_BYTES + 4 * i, v));
  }

  /** Write the CD (QEMU's test: ASID 0x1e20, AA64, V, A, IPS 44-bit, EPD1, T0SZ 16, 4K, R). */
  writeCd(opts: { r?: boolean; asid?: number; ttb?: number; extra?: (w: Uint32Array) => void } = {}): void {
    const w = buildCd({ asid: opts.asid ?? ASID, ttb0: opts.ttb ?? this.s1.root, record: opts.r });
    opts.extra?.(w);
    w.forEach((v, i) => this.dma.write32(CD_GPA + 4 * i, v));
  }

  /** Stage 2 maps guest RAM onto itself (tables, CD) and OUT_IPA onto DATA. */
  identityS2(): void {
    this.s2.map(RAM_BASE, RAM_BASE, 0x400_0000, 3);
    this.s2.map(OUT_IPA, DATA, 0x1000, 3);
  }

  /** Put commands in the ring and write CMDQ_PROD (the VMM consumes them at once). */
  submit(...cmds: Uint32Array[]): void {
    for (const c of cmds) {
      const at = CMDQ + (this.cmdProd & ((1 << LOG2_Q) - 1)) * 16;
      c.forEach((v, i) => this.dma.write32(at + 4 * i, v));
      this.cmdProd = (this.cmdProd + 1) & ((2 << LOG2_Q) - 1);
    }
    this.w32(R.CMDQ_PROD, this.cmdProd);
  }

  cmd(op: number, fields: Parameters<typeof buildCommand>[1] = {}): Uint32Array {
    return buildCommand(op, fields);
  }

  translate(iova: number, write = false, sid = SID): DmaTranslation {
    return this.smmu.translate(sid, iova, write, this.out);
  }

  /** Event records between EVENTQ_CONS and EVENTQ_PROD (consumed: CONS moves to PROD). */
  events(): Uint32Array[] {
    const prod = this.r32(R.EVENTQ_PROD);
    let cons = this.r32(R.EVENTQ_CONS);
    const out: Uint32Array[] = [];
    const mask = (2 << LOG2_Q) - 1;
    while ((cons & mask) !== (prod & mask)) {
      const at = EVENTQ + (cons & ((1 << LOG2_Q) - 1)) * 32;
      const e = new Uint32Array(8);
      for (let i = 0; i < 8; i++) e[i] = this.dma.read32(at + 4 * i);
      out.push(e);
      cons = (cons + 1) & mask;
    }
    this.w32(R.EVENTQ_CONS, cons);
    return out;
  }

  get eventIrqs(): number {
    return this.smmu.irqs[0].count;
  }
}
