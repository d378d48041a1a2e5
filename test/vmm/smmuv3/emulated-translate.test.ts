// The emulated SMMUv3 translates as QEMU's does: stage 1, stage 2 and nested through tables in
// guest RAM, an IOTLB hit, invalidation commands making the next access re-walk, the
// configuration cache and CFGI_*, GBPA while disabled, STE bypass / abort.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Op } from '../../../src/arch/smmuv3/commands.js';
import * as R from '../../../src/arch/smmuv3/registers.js';
import { STE_CFG_ABORT, STE_CFG_BYPASS, STE_CFG_NESTED, STE_CFG_S1, STE_CFG_S2 } from '../../../src/arch/smmuv3/structures.js';
import { ASID, DATA, DATA2, EmulatedRig, IOVA, OUT_IPA, RAM_BASE, SID, STRTAB, VMID } from './emulated-rig.js';

function stage1(): EmulatedRig {
  const r = new EmulatedRig({ stage: '1' });
  r.s1.map(IOVA, DATA, 0x1000, 3, { nG: true });
  r.writeCd();
  r.writeSte(SID, STE_CFG_S1);
  r.enable();
  return r;
}

function stage2(): EmulatedRig {
  const r = new EmulatedRig({ stage: '2' });
  r.s2.map(IOVA, DATA, 0x1000, 3);
  r.writeSte(SID, STE_CFG_S2);
  r.enable();
  return r;
}

function nested(): EmulatedRig {
  const r = new EmulatedRig({ stage: 'nested' });
  r.identityS2();
  r.s1.map(IOVA, OUT_IPA, 0x1000, 3, { nG: true });
  r.writeCd();
  r.writeSte(SID, STE_CFG_NESTED);
  r.enable();
  return r;
}

describe('emulated SMMUv3: translation', () => {
  for (const [name, make] of [['stage 1', stage1], ['stage 2', stage2], ['nested', nested]] as const) {
    test(`${name}: DMA reaches the page the tables name, then hits the IOTLB`, () => {
      const r = make();
      const t = r.translate(IOVA + 0x10, true);
      assert.equal(t.ok, true, `fault ${t.fault}`);
      assert.equal(t.pa, DATA + 0x10);
      assert.equal(t.span, 0x1000 - 0x10, 'to the end of the page');
      assert.equal(r.smmu.stats.walks, 1);
      const again = r.translate(IOVA + 0x20, false);
      assert.equal(again.pa, DATA + 0x20);
      assert.equal(r.smmu.stats.walks, 1, 'the second access hit the IOTLB');
      assert.equal(r.events().length, 0);
    });
  }

  test('the IDRs follow `stage` (S1P / S2P)', () => {
    const idr0 = (stage: string) => new EmulatedRig({ stage }).r32(R.IDR0);
    assert.deepEqual([R.IDR0.f.S1P.get(idr0('1')), R.IDR0.f.S2P.get(idr0('1'))], [1, 0]);
    assert.deepEqual([R.IDR0.f.S1P.get(idr0('2')), R.IDR0.f.S2P.get(idr0('2'))], [0, 1]);
    assert.deepEqual([R.IDR0.f.S1P.get(idr0('nested')), R.IDR0.f.S2P.get(idr0('nested'))], [1, 1]);
  });

  // Each invalidation, after the guest changed the tables: the next access walks again and
  // sees the new mapping; without it the stale IOTLB entry is still used.
  const remapS1 = (r: EmulatedRig) => {
    r.s1.unmap(IOVA, 0x1000);
    r.s1.map(IOVA, r.smmu.props.stage === 'nested' ? OUT_IPA + 0x1000 : DATA2, 0x1000, 3, { nG: true });
    if (r.smmu.props.stage === 'nested') r.s2.map(OUT_IPA + 0x1000, DATA2, 0x1000, 3);
  };
  const remapS2 = (r: EmulatedRig) => {
    r.s2.unmap(IOVA, 0x1000);
    r.s2.map(IOVA, DATA2, 0x1000, 3);
  };
  const cases = [
    { cmd: 'TLBI_NH_VA', make: stage1, remap: remapS1, op: Op.TLBI_NH_VA, f: { asid: ASID, addr: IOVA, vmid: 0 } },
    { cmd: 'TLBI_NH_VA (range)', make: stage1, remap: remapS1, op: Op.TLBI_NH_VA, f: { asid: ASID, addr: IOVA, tg: 1, num: 3 } },
    { cmd: 'TLBI_NH_VAA', make: stage1, remap: remapS1, op: Op.TLBI_NH_VAA, f: { addr: IOVA } },
    { cmd: 'TLBI_NH_ASID', make: stage1, remap: remapS1, op: Op.TLBI_NH_ASID, f: { asid: ASID } },
    { cmd: 'TLBI_NH_ALL', make: stage1, remap: remapS1, op: Op.TLBI_NH_ALL, f: {} },
    { cmd: 'TLBI_NSNH_ALL', make: stage1, remap: remapS1, op: Op.TLBI_NSNH_ALL, f: {} },
    { cmd: 'TLBI_S2_IPA', make: stage2, remap: remapS2, op: Op.TLBI_S2_IPA, f: { vmid: VMID, addr: IOVA } },
    { cmd: 'TLBI_S12_VMALL', make: stage2, remap: remapS2, op: Op.TLBI_S12_VMALL, f: { vmid: VMID } },
    { cmd: 'TLBI_NH_VA (nested, VMID)', make: nested, remap: remapS1, op: Op.TLBI_NH_VA, f: { vmid: VMID, asid: ASID, addr: IOVA } },
    { cmd: 'TLBI_NH_ALL (nested: this VMID)', make: nested, remap: remapS1, op: Op.TLBI_NH_ALL, f: { vmid: VMID } },
  ];
  for (const c of cases) {
    test(`${c.cmd}: the next access re-walks and sees the new mapping`, () => {
      const r = c.make();
      assert.equal(r.translate(IOVA).pa, DATA);
      c.remap(r);
      assert.equal(r.translate(IOVA).pa, DATA, 'stale until invalidated');
      const walks = r.smmu.stats.walks;
      r.submit(r.cmd(c.op, c.f), r.cmd(Op.SYNC));
      assert.equal(R.CMDQ_CONS.f.ERR.get(r.r32(R.CMDQ_CONS)), 0);
      assert.equal(r.r32(R.CMDQ_CONS), 2, 'both consumed');
      assert.equal(r.translate(IOVA).pa, DATA2);
      assert.equal(r.smmu.stats.walks, walks + 1);
    });
  }

  test('TLBI_NH_VA of another ASID or TLBI_S12_VMALL of another VMID leaves the entry', () => {
    const r = nested();
    r.translate(IOVA);
    remapS1(r);
    r.submit(r.cmd(Op.TLBI_NH_VA, { vmid: VMID, asid: ASID + 1, addr: IOVA }), r.cmd(Op.TLBI_S12_VMALL, { vmid: VMID + 1 }), r.cmd(Op.SYNC));
    assert.equal(r.translate(IOVA).pa, DATA);
  });

  test('configuration cache: a changed STE is used only after CFGI_STE / CFGI_ALL / CFGI_CD', () => {
    for (const [op, f] of [[Op.CFGI_STE, { sid: SID }], [Op.CFGI_STE_RANGE, { sid: 0, range: 31 }], [Op.CFGI_CD, { sid: SID }], [Op.CFGI_CD_ALL, { sid: SID }]] as const) {
      const r = stage1();
      assert.equal(r.translate(IOVA).ok, true);
      r.writeSte(SID, STE_CFG_ABORT);
      assert.equal(r.translate(IOVA).ok, true, 'cached configuration');
      r.submit(r.cmd(op, f));
      const t = r.translate(IOVA);
      assert.equal(t.ok, false, `after ${op.toString(16)}`);
      assert.equal(t.fault, 0, 'STE.Config abort records nothing');
      assert.equal(r.events().length, 0);
    }
  });

  test('STE.Config bypass passes the input address through; a CFGI_STE_RANGE of other SIDs keeps the cache', () => {
    const r = stage1();
    assert.equal(r.translate(IOVA).pa, DATA);
    r.writeSte(SID, STE_CFG_BYPASS);
    r.submit(r.cmd(Op.CFGI_STE_RANGE, { sid: 0, range: 3 })); // SIDs 0..15: not 0x10
    assert.equal(r.translate(IOVA).pa, DATA, 'still the cached stage-1 STE');
    r.submit(r.cmd(Op.CFGI_STE_RANGE, { sid: SID, range: 3 }));
    const t = r.translate(IOVA + 4);
    assert.deepEqual([t.ok, t.pa], [true, IOVA + 4]);
  });

  test('2-level stream table (STRTAB_BASE_CFG.FMT = 1, SPLIT 6; QEMU 11.1 takes SPLIT 4 as 6): the L1 descriptor leads to the STE', () => {
    for (const split of [6, 4]) {
      const r = stage1();
      const l2 = RAM_BASE + 0x50_0000;
      const steWords = [...Array(16).keys()].map((i) => r.dma.read32(STRTAB + SID * 64 + 4 * i));
      steWords.forEach((v, i) => r.dma.write32(l2 + SID * 64 + 4 * i, v)); // SID 0x10 = L1 index 0, L2 index 0x10
      const l1 = RAM_BASE + 0x60_0000;
      r.dma.write32(l1, (l2 | 7) >>> 0); // Span 7: 64 STEs
      r.dma.write32(l1 + 4, 0);
      r.w64(R.STRTAB_BASE, l1);
      r.w32(R.STRTAB_BASE_CFG, (1 << 16) | (split << 6) | 8);
      r.submit(r.cmd(Op.CFGI_STE_RANGE, { range: 31 }));
      assert.equal(r.translate(IOVA).pa, DATA, `SPLIT ${split}`);
      const c = r.translate(IOVA, false, 0x40); // L1 index 1: Span 0
      assert.equal(c.fault, 0x02, 'C_BAD_STREAMID');
      r.w64(R.STRTAB_BASE, 0x1000_0000); // L1 table outside RAM
      r.submit(r.cmd(Op.CFGI_STE_RANGE, { range: 31 }));
      assert.equal(r.translate(IOVA).fault, 0x03, 'F_STE_FETCH');
    }
  });

  test('SMMUEN = 0: GBPA bypass, GBPA.ABORT aborts (only written with UPDATE), no event', () => {
    const r = new EmulatedRig();
    assert.equal(r.r32(R.GBPA), 0x1000, 'reset value');
    const t = r.translate(RAM_BASE + 0x1234, true);
    assert.deepEqual([t.ok, t.pa, t.span], [true, RAM_BASE + 0x1234, 0x1000 - 0x234]);
    r.w32(R.GBPA, R.GBPA.f.ABORT.set(0, 1)); // no UPDATE: ignored
    assert.equal(r.translate(0x5000).ok, true);
    r.w32(R.GBPA, (R.GBPA.f.ABORT.set(0, 1) | R.GBPA.f.UPDATE.set(0, 1)) >>> 0);
    assert.equal(r.r32(R.GBPA), R.GBPA.f.ABORT.set(0, 1), 'UPDATE reads back 0');
    const a = r.translate(0x5000);
    assert.deepEqual([a.ok, a.fault], [false, 0]);
  });
});
