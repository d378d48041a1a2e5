// Regression tests for the differences `cmdqv difftest` found between cmdqv's emulated SMMUv3
// (with iommu-testdev) and QEMU 11.1's, each now as QEMU does it (docs/reference/qemu-smmuv3.md).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ITD_DMA_ERR_TX_FAIL } from '../../../src/arch/iommu-testdev/registers.js';
import { Op, SYNC_CS_IRQ } from '../../../src/arch/smmuv3/commands.js';
import * as R from '../../../src/arch/smmuv3/registers.js';
import { CD, EVT, Evt, STE, STE_CFG_BYPASS, STE_CFG_NESTED, STE_CFG_S1, STE_CFG_S2 } from '../../../src/arch/smmuv3/structures.js';
import { ModelLog } from '../../../src/kit/log.js';
import { Tracer } from '../../../src/kit/trace.js';
import { IommuTestdev } from '../../../src/vmm/pci/iommu-testdev.js';
import { CD_GPA, DATA, EmulatedRig, IOVA, OUT_IPA, RAM_BASE, SID } from './emulated-rig.js';

function s1Rig(r = new EmulatedRig({ stage: 'nested' })): EmulatedRig {
  r.s1.map(IOVA, DATA, 0x1000, 3);
  r.writeCd();
  r.writeSte(SID, STE_CFG_S1);
  r.enable();
  return r;
}

describe('emulated SMMUv3 as QEMU 11.1 (difftest findings)', () => {
  test('AGBPA and EVENTQ_IRQ_CFG0..2 read as zero and ignore writes; GERROR_IRQ_CFG1 is stored', () => {
    const r = new EmulatedRig();
    for (const reg of [R.AGBPA, R.EVENTQ_IRQ_CFG1, R.EVENTQ_IRQ_CFG2, R.EVENTQ_IRQ_CFG0]) {
      r.w32(reg, 0x1234_5678);
      assert.equal(r.r32(reg), 0, reg.spec.name);
    }
    r.w64(R.EVENTQ_IRQ_CFG0, 0x4000_1000);
    assert.equal(r.smmu.mmio.ops!.read64(R.EVENTQ_IRQ_CFG0.spec.offset), 0n);
    r.w32(R.GERROR_IRQ_CFG1, 0x11);
    assert.equal(r.r32(R.GERROR_IRQ_CFG1), 0x11);
  });

  test('a CMDQ_CONS write sets ERR as written (re-programming the queue clears a command error)', () => {
    const r = new EmulatedRig();
    r.enable();
    r.submit(r.cmd(0x7f));
    assert.equal(R.CMDQ_CONS.f.ERR.get(r.r32(R.CMDQ_CONS)), 1, 'CERROR_ILL');
    r.w32(R.CMDQ_CONS, 0);
    assert.equal(r.r32(R.CMDQ_CONS), 0);
    r.w32(R.CMDQ_CONS, 0x0200_0003);
    assert.equal(r.r32(R.CMDQ_CONS), 0x0200_0003);
  });

  test('a valid STE with a reserved Config (0b001..0b011) aborts without an event', () => {
    for (const cfg of [1, 2, 3]) {
      const r = s1Rig();
      r.writeSte(SID, cfg);
      r.submit(r.cmd(Op.CFGI_STE, { sid: SID }));
      assert.equal(r.translate(IOVA).ok, false);
      assert.deepEqual(r.events(), [], `Config ${cfg}`);
    }
  });

  test('a stream whose CD is refused is not cached: a rewritten STE counts without a CFGI', () => {
    const r = s1Rig();
    r.writeCd({ extra: (w) => CD.A.setWords(w, 0, 0) });
    r.submit(r.cmd(Op.CFGI_STE, { sid: SID }), r.cmd(Op.CFGI_CD, { sid: SID }));
    assert.equal(r.translate(IOVA).ok, false);
    assert.equal(EVT.ID.get(r.events()[0]![0]!), Evt.C_BAD_CD);
    r.writeSte(SID, STE_CFG_BYPASS);
    assert.equal(r.translate(IOVA + 8).pa, IOVA + 8, 'the STE was read again: bypass');
  });

  test('nested: a stage-2 fault on a stage-1 table reports RnW = read even for a write; one on TTB0 does not cache the stream', () => {
    const r = new EmulatedRig({ stage: 'nested' });
    r.s2.map(CD_GPA, CD_GPA, 0x1000, 3); // the CD, but not the stage-1 tables
    r.s1.map(IOVA, OUT_IPA, 0x1000, 3);
    r.writeCd();
    r.writeSte(SID, STE_CFG_NESTED);
    r.enable();
    assert.equal(r.translate(IOVA, true).ok, false);
    const e = r.events()[0]!;
    assert.equal(EVT.CLASS.getWords(e[2]!, e[3]!), 1, 'CLASS_TT');
    assert.equal(EVT.RNW.getWords(e[2]!, e[3]!), 1, 'RnW = read');
    r.writeSte(SID, STE_CFG_BYPASS);
    assert.equal(r.translate(IOVA).ok, true, 'the STE was read again');
  });

  test('a CD with EPD0 = 1 is usable: every TT0 access is a recorded stage-1 F_TRANSLATION, not C_BAD_CD', () => {
    const r = s1Rig();
    r.writeCd({ extra: (w) => CD.EPD0.setWords(w, 0, 1) });
    r.submit(r.cmd(Op.CFGI_CD, { sid: SID }));
    assert.equal(r.translate(IOVA).ok, false);
    const e = r.events();
    assert.deepEqual(e.map((x) => [EVT.ID.get(x[0]!), x[4], EVT.S2.getWords(x[2]!, x[3]!)]), [[Evt.F_TRANSLATION, IOVA, 0]]);
  });

  test('a misaligned S2TTB walks from the start table aligned down (QEMU clears the index bits)', () => {
    const r = new EmulatedRig({ stage: 'nested' });
    r.s2.map(IOVA, DATA, 0x1000, 3);
    r.writeSte(SID, STE_CFG_S2, { extra: (w) => STE.S2TTB.setWords(w, 6, (r.s2.root + 0x40) / 2 ** STE.S2TTB.lsb) });
    r.enable();
    const t = r.translate(IOVA + 4, true);
    assert.equal(t.ok, true);
    assert.equal(t.pa, DATA + 4);
  });

  test('S2T0SZ is checked against the effective PS: a 44-bit IPA with S2PS 36 bits is C_BAD_STE', () => {
    const r = new EmulatedRig({ stage: 'nested' });
    r.s2.map(IOVA, DATA, 0x1000, 3);
    r.writeSte(SID, STE_CFG_S2, { extra: (w) => STE.S2PS.setWords(w, 4, 1) });
    r.enable();
    assert.equal(r.translate(IOVA).ok, false);
    assert.equal(EVT.ID.get(r.events()[0]![0]!), Evt.C_BAD_STE);
  });

  test('recording an event keeps only the wrap and index bits of EVENTQ_PROD', () => {
    const r = new EmulatedRig();
    r.enable();
    r.w32(R.EVENTQ_PROD, 0x0005_3503);
    r.w32(R.EVENTQ_CONS, 0x0000_0003);
    r.translate(IOVA);
    assert.equal(r.r32(R.EVENTQ_PROD), 0x504 & ((2 << 10) - 1));
  });

  test('CMD_SYNC with the reserved CS = 3 pulses the CMD_SYNC interrupt, as CS = IRQ does', () => {
    const r = new EmulatedRig();
    r.enable();
    const before = r.smmu.irqs[2].count;
    r.submit(r.cmd(Op.SYNC, { cs: SYNC_CS_IRQ }), r.cmd(Op.SYNC, { cs: 3 }), r.cmd(Op.SYNC, { cs: 2 }));
    assert.equal(r.smmu.irqs[2].count, before + 2);
  });
});

describe('iommu-testdev DMA as dma_memory_write (difftest findings)', () => {
  /** A testdev on bus 0 devfn 0 (StreamID 0) behind the rig's SMMU, over the rig's RAM. */
  function testdev(r: EmulatedRig): IommuTestdev {
    const inRam = (a: number, n: number) => a >= RAM_BASE && a + n <= RAM_BASE + 256 * 2 ** 20;
    return new IommuTestdev(undefined, {
      iommu: () => r.smmu,
      memory: {
        write: (pa, b) => inRam(pa, b.length) && (b.forEach((v, i) => r.ram.write(pa - RAM_BASE + i, 1, v)), true),
        read: (pa, out) => inRam(pa, out.length) && (out.forEach((_, i) => (out[i] = r.ram.read(pa - RAM_BASE + i, 1))), true),
      },
      log: new ModelLog(),
      tracer: new Tracer(),
    });
  }

  function dma(d: IommuTestdev, gva: number, gpa: number, len: number): number {
    const w = (off: number, v: number) => d.bank.write(off, 4, v);
    w(0x04, gva);
    w(0x08, 0);
    w(0x0c, len);
    w(0x1c, gpa);
    w(0x20, 0);
    w(0x14, 1);
    d.bank.read(0x00, 4);
    return d.bank.read(0x10, 4);
  }

  test('a faulting DMA records one event per access (at most 4 bytes, aligned) and writes the pages after the fault', () => {
    const r = new EmulatedRig({ stage: 'nested' });
    r.s1.map(IOVA + 0x1000, DATA + 0x1000, 0x1000, 3);
    r.writeCd();
    r.writeSte(0, STE_CFG_S1);
    r.enable();
    const d = testdev(r);
    // 0xffe..0x1005: accesses of 2 bytes (aligned to 2) at 0xffe, then the mapped page.
    assert.equal(dma(d, IOVA + 0xffe, DATA + 0x1000, 6), ITD_DMA_ERR_TX_FAIL);
    const ev = r.events();
    assert.deepEqual(ev.map((e) => [EVT.ID.get(e[0]!), e[4]]), [[Evt.F_TRANSLATION, IOVA + 0xffe]]);
    assert.equal(r.ram.read32(DATA + 0x1000 - RAM_BASE), 0x5678_1234, 'the mapped page was written (bytes 2..5 of the pattern)');
    // 10 bytes at an unmapped 4-aligned address: accesses of 4, 4, 2.
    assert.equal(dma(d, IOVA + 0x3000, DATA, 10), ITD_DMA_ERR_TX_FAIL);
    assert.deepEqual(r.events().map((e) => e[4]), [IOVA + 0x3000, IOVA + 0x3004, IOVA + 0x3008]);
  });
});
