// Faults of the emulated SMMUv3: each kind puts QEMU's record (the fields QEMU's
// smmuv3_record_event fills for it) in the guest event queue and pulses the event interrupt;
// the R bits, a disabled or full queue; commands that stop the queue with CERROR_ILL / ABT.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CERROR_ABT, CERROR_ILL, Op, SYNC_CS_IRQ } from '../../../src/arch/smmuv3/commands.js';
import { walk, WalkResult } from '../../../src/arch/smmuv3/page-table.js';
import * as R from '../../../src/arch/smmuv3/registers.js';
import { CD, CLASS_CD, CLASS_IN, CLASS_TT, EVT, Evt, STE, STE_CFG_NESTED, STE_CFG_S1, STE_CFG_S2 } from '../../../src/arch/smmuv3/structures.js';
import { CD_GPA, DATA, EmulatedRig, IOVA, OUT_IPA, RAM_BASE, SID } from './emulated-rig.js';

/** The decoded fields of a record. */
function fields(e: Uint32Array) {
  return {
    id: EVT.ID.get(e[0]!),
    sid: e[1]!,
    ssv: EVT.SSV.get(e[0]!),
    rnw: EVT.RNW.getWords(e[2]!, e[3]!),
    s2: EVT.S2.getWords(e[2]!, e[3]!),
    cls: EVT.CLASS.getWords(e[2]!, e[3]!),
    addr: e[4]! + e[5]! * 2 ** 32,
    addr2: e[6]! + e[7]! * 2 ** 32,
  };
}

function s1Rig(stage = '1', r = new EmulatedRig({ stage })): EmulatedRig {
  r.s1.map(IOVA, DATA, 0x1000, 1);
  r.writeCd();
  r.writeSte(SID, STE_CFG_S1);
  r.enable();
  return r;
}

/** The one event of a faulting DMA at `iova`, with the interrupt checked. */
function oneEvent(r: EmulatedRig, iova: number, write = false, sid = SID) {
  const irqs = r.eventIrqs;
  const t = r.translate(iova, write, sid);
  assert.equal(t.ok, false);
  const ev = r.events();
  assert.equal(ev.length, 1, 'one record');
  assert.equal(r.eventIrqs, irqs + 1, 'event interrupt');
  const f = fields(ev[0]!);
  assert.equal(t.fault, f.id, 'the DMA reports the recorded event');
  return f;
}

describe('emulated SMMUv3: event records', () => {
  test('F_TRANSLATION (stage 1): input address, RnW, CLASS_IN, S2 = 0', () => {
    const r = s1Rig();
    assert.deepEqual(oneEvent(r, IOVA + 0x5000 + 8), { id: Evt.F_TRANSLATION, sid: SID, ssv: 0, rnw: 1, s2: 0, cls: CLASS_IN, addr: IOVA + 0x5008, addr2: 0 });
  });

  test('F_PERMISSION: a write through a read-only page (RnW = 0); not cached, a second write walks again', () => {
    const r = s1Rig();
    assert.deepEqual(oneEvent(r, IOVA, true), { id: Evt.F_PERMISSION, sid: SID, ssv: 0, rnw: 0, s2: 0, cls: CLASS_IN, addr: IOVA, addr2: 0 });
    const walks = r.smmu.stats.walks;
    oneEvent(r, IOVA, true);
    assert.equal(r.smmu.stats.walks, walks + 1);
  });

  test('F_ACCESS: a leaf with AF = 0', () => {
    const r = s1Rig();
    const reader = { readTableWord: (a: number) => r.dma.read32(a) >>> 0 };
    const leaf = walk({ stage: 1, granule: 4096, inputBits: 48, oasBits: 48, ttb: r.s1.root }, reader, IOVA, 0, new WalkResult()).descAddress;
    r.dma.write32(leaf, r.dma.read32(leaf) & ~(1 << 10));
    assert.equal(oneEvent(r, IOVA).id, Evt.F_ACCESS);
  });

  test('F_ADDR_SIZE: a leaf beyond the CD IPS (44 bits)', () => {
    const r = s1Rig();
    r.s1.map(IOVA + 0x1000, 2 ** 45, 0x1000, 1);
    assert.equal(oneEvent(r, IOVA + 0x1000).id, Evt.F_ADDR_SIZE);
  });

  test('F_WALK_EABT: a table outside RAM; CLASS_TT and ADDR2 = the descriptor address', () => {
    const r = s1Rig();
    r.writeCd({ ttb: 0x1000_0000 });
    r.submit(r.cmd(Op.CFGI_CD, { sid: SID }));
    const f = oneEvent(r, IOVA);
    assert.deepEqual([f.id, f.cls, f.s2, f.addr], [Evt.F_WALK_EABT, CLASS_TT, 0, IOVA]);
    assert.equal(f.addr2, 0x1000_0000 + Math.floor(IOVA / 2 ** 39) * 8, 'level-0 descriptor');
  });

  test('F_TRANSLATION (stage 2): S2 = 1, ADDR2 = the IPA', () => {
    const r = new EmulatedRig({ stage: '2' });
    r.writeSte(SID, STE_CFG_S2);
    r.enable();
    assert.deepEqual(oneEvent(r, IOVA + 4), { id: Evt.F_TRANSLATION, sid: SID, ssv: 0, rnw: 1, s2: 1, cls: CLASS_IN, addr: IOVA + 4, addr2: IOVA + 4 });
  });

  test('nested: a stage-1 table IPA that stage 2 does not map is CLASS_TT, S2 = 1; a CD IPA, CLASS_CD', () => {
    const r = new EmulatedRig({ stage: 'nested' });
    r.s2.map(OUT_IPA, DATA, 0x1000, 3); // neither the tables nor the CD mapped
    r.s1.map(IOVA, OUT_IPA, 0x1000, 3);
    r.writeCd();
    r.writeSte(SID, STE_CFG_NESTED);
    r.enable();
    const cd = oneEvent(r, IOVA);
    assert.deepEqual([cd.id, cd.s2, cd.cls, cd.addr, cd.addr2], [Evt.F_TRANSLATION, 1, CLASS_CD, IOVA, CD_GPA], 'ADDR the input address, ADDR2 the CD IPA (QEMU 11.1, cmdqv difftest)');
    r.s2.map(CD_GPA, CD_GPA, 0x1000, 3);
    const tt = oneEvent(r, IOVA);
    assert.deepEqual([tt.id, tt.s2, tt.cls, tt.addr, tt.addr2], [Evt.F_TRANSLATION, 1, CLASS_TT, IOVA, r.s1.root + Math.floor(IOVA / 2 ** 39) * 8]);
  });

  test('C_BAD_STREAMID, C_BAD_STE, C_BAD_CD, F_STE_FETCH, F_CD_FETCH carry the fields QEMU sets', () => {
    const r = s1Rig();
    assert.deepEqual(oneEvent(r, IOVA, false, 40), { id: Evt.C_BAD_STREAMID, sid: 40, ssv: 0, rnw: 0, s2: 0, cls: 0, addr: 0, addr2: 0 }, 'SID beyond LOG2SIZE 5');
    r.writeSte(3, STE_CFG_S1, { extra: (w) => STE.V.setWords(w, 0, 0) });
    assert.equal(oneEvent(r, IOVA, false, 3).id, Evt.C_BAD_STE, 'V = 0');
    r.writeSte(4, STE_CFG_S2);
    assert.equal(oneEvent(r, IOVA, false, 4).id, Evt.C_BAD_STE, 'stage 2 on a stage-1 SMMU');
    r.writeSte(5, STE_CFG_S1, { extra: (w) => STE.S1CDMAX.setWords(w, 0, 1) });
    assert.equal(oneEvent(r, IOVA, false, 5).id, Evt.C_BAD_STE, 'more than one CD');
    r.writeCd({ extra: (w) => CD.A.setWords(w, 0, 0) });
    r.submit(r.cmd(Op.CFGI_CD_ALL, { sid: SID }));
    assert.deepEqual(oneEvent(r, IOVA), { id: Evt.C_BAD_CD, sid: SID, ssv: 0, rnw: 0, s2: 0, cls: 0, addr: 0, addr2: 0 }, 'CD.A = 0');
    r.writeSte(6, STE_CFG_S1, { extra: (w) => STE.S1CTXPTR.setWords(w, 0, 0x1000_0000 / 64) });
    assert.deepEqual(oneEvent(r, IOVA, false, 6), { id: Evt.F_CD_FETCH, sid: 6, ssv: 0, rnw: 0, s2: 0, cls: 0, addr: 0x1000_0000, addr2: 0 }, 'QEMU puts the fetch address in ADDR');
    r.w64(R.STRTAB_BASE, 0x1000_0000);
    r.submit(r.cmd(Op.CFGI_STE_RANGE, { range: 31 }));
    assert.deepEqual(oneEvent(r, IOVA, false, 7), { id: Evt.F_STE_FETCH, sid: 7, ssv: 0, rnw: 0, s2: 0, cls: 0, addr: 0, addr2: 0x1000_0000 + 7 * 64 });
    assert.ok(r.log.count('guest_error') > 0);
  });

  test('CD.R = 0 / STE.S2R = 0: translation faults abort without a record; walk aborts are still recorded', () => {
    const r = s1Rig();
    r.writeCd({ r: false });
    r.submit(r.cmd(Op.CFGI_CD, { sid: SID }));
    const t = r.translate(IOVA + 0x5000);
    assert.deepEqual([t.ok, t.fault, r.events().length], [false, 0, 0]);
    assert.match(r.log.entries().at(-1)!.message, /translation failed for iova=0x80805000 \(no recorded event\)/, 'QEMU still reports it');
    const s2 = new EmulatedRig({ stage: '2' });
    s2.writeSte(SID, STE_CFG_S2, { s2r: false });
    s2.enable();
    assert.deepEqual([s2.translate(IOVA).fault, s2.events().length], [0, 0]);
    r.writeCd({ r: false, ttb: 0x1000_0000 });
    r.submit(r.cmd(Op.CFGI_CD, { sid: SID }));
    assert.equal(oneEvent(r, IOVA).id, Evt.F_WALK_EABT);
  });

  test('EVENTQ disabled: nothing recorded; EVENTQ_IRQEN = 0: recorded without an interrupt', () => {
    const r = s1Rig();
    r.w32(R.IRQ_CTRL, 0b001);
    r.translate(IOVA + 0x5000);
    assert.equal(r.eventIrqs, 0);
    assert.equal(r.events().length, 1);
    r.w32(R.CR0, 0b1001); // SMMUEN + CMDQEN
    r.translate(IOVA + 0x5000);
    assert.equal(r.events().length, 0);
    assert.equal(r.smmu.stats.eventsLost, 1);
  });

  test('a full event queue raises GERROR.EVENTQ_ABT_ERR (QEMU) and the GERROR interrupt', () => {
    const r = s1Rig();
    r.w64(R.EVENTQ_BASE, (RAM_BASE + 0x30_0000) | 1); // 2 records
    r.w32(R.CR0, 0xd);
    for (let i = 0; i < 3; i++) r.translate(IOVA + 0x5000);
    assert.equal(R.GERROR.f.EVENTQ_ABT_ERR.get(r.r32(R.GERROR)), 1);
    assert.equal(r.smmu.irqs[3].count, 1);
  });
});

describe('emulated SMMUv3: command queue errors and CMD_SYNC', () => {
  test('an unknown command stops the queue with CERROR_ILL, CONS at it, GERROR.CMDQ_ERR; GERRORN resumes', () => {
    const r = s1Rig();
    const bad = new Uint32Array([0x7f, 0, 0, 0]);
    r.submit(r.cmd(Op.SYNC), bad, r.cmd(Op.SYNC));
    const cons = r.r32(R.CMDQ_CONS);
    assert.equal(R.CMDQ_CONS.f.ERR.get(cons), CERROR_ILL);
    assert.equal(cons & 0xfffff, 1, 'stopped at the bad command');
    assert.equal(R.GERROR.f.CMDQ_ERR.get(r.r32(R.GERROR)), 1);
    assert.equal(r.smmu.irqs[3].count, 1, 'GERROR interrupt');
    r.submit(r.cmd(Op.SYNC));
    assert.equal(r.r32(R.CMDQ_CONS) & 0xfffff, 1, 'nothing runs while the error is pending');
    // The guest rewrites the bad slot as CMD_SYNC and acknowledges.
    r.cmd(Op.SYNC).forEach((v, i) => r.dma.write32(RAM_BASE + 0x20_0000 + 16 + 4 * i, v));
    r.w32(R.GERRORN, r.r32(R.GERROR));
    assert.equal(r.r32(R.CMDQ_CONS) & 0xfffff, 4);
  });

  test('stage-specific commands are illegal on an SMMU without that stage; SSec CFGI is illegal', () => {
    for (const [stage, cmd] of [['1', Op.TLBI_S2_IPA], ['1', Op.TLBI_S12_VMALL], ['2', Op.TLBI_NH_ASID], ['2', Op.TLBI_NH_VA], ['2', Op.TLBI_NH_ALL]] as const) {
      const r = new EmulatedRig({ stage });
      r.enable();
      r.submit(r.cmd(cmd));
      assert.equal(R.CMDQ_CONS.f.ERR.get(r.r32(R.CMDQ_CONS)), CERROR_ILL, `${cmd} on stage ${stage}`);
    }
    const r = new EmulatedRig();
    r.enable();
    const ssec = r.cmd(Op.CFGI_STE, { sid: 1 });
    ssec[0] = (ssec[0]! | (1 << 10)) >>> 0;
    r.submit(r.cmd(Op.PREFETCH_CFG), r.cmd(Op.ATC_INV), ssec);
    assert.equal(r.r32(R.CMDQ_CONS), R.CMDQ_CONS.f.ERR.set(2, CERROR_ILL));
  });

  test('a command fetch outside RAM is CERROR_ABT', () => {
    const r = new EmulatedRig();
    r.enable();
    r.w64(R.CMDQ_BASE, 0x1000_0000 | 4);
    r.w32(R.CMDQ_PROD, 1);
    assert.equal(R.CMDQ_CONS.f.ERR.get(r.r32(R.CMDQ_CONS)), CERROR_ABT);
  });

  test('CMD_SYNC with CS = IRQ pulses the CMD_SYNC interrupt', () => {
    const r = new EmulatedRig();
    r.enable();
    r.submit(r.cmd(Op.SYNC), r.cmd(Op.SYNC, { cs: SYNC_CS_IRQ }));
    assert.equal(r.smmu.irqs[2].count, 1);
  });
});
