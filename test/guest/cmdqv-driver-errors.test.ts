// The guest tegra241-cmdqv driver's error interrupt path when one recovery meets the next error
// (the CMDQV side of issue 14 #8; the nested SMMU GERROR edge is in smmu-gerror.test.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildCommand, Op } from '../../src/arch/smmuv3/commands.js';
import { GuestCmdqv } from '../../src/guest/tegra241-cmdqv.js';
import { boot, CMDQV_BASE, CMDQV_GSIV, guestPlatform, guestSmmuStub, rig } from '../vmm/cmdqv-rig.js';

function guest() {
  const r = boot(rig());
  return { r, g: new GuestCmdqv(guestPlatform(r), CMDQV_BASE, guestSmmuStub(), CMDQV_GSIV) };
}

// issue 14 #8: the acknowledgement resumes the queue into the second error; its vEVENT reaches
// the guest as a second interrupt (one main-loop pass later), and both commands are skipped.
test('two consecutive illegal commands: both error edges are delivered and both commands skipped', () => {
  const { r, g } = guest();
  g.submit([buildCommand(Op.TLBI_NH_ASID, { asid: 1 }), buildCommand(Op.CFGI_STE, { sid: 8 }), buildCommand(Op.CFGI_STE, { sid: 9 }), buildCommand(Op.TLBI_NH_ASID, { asid: 2 })]);
  assert.equal(g.stats.errorsHandled, 2);
  assert.equal(g.stats.irqs, 2);
  assert.equal(r.cmdqv.irq.count, 2);
  assert.equal(r.r(0x30010) & 1, r.r(0x30014) & 1, 'acknowledged');
  g.submit([buildCommand(Op.TLBI_NH_ASID, { asid: 3 })]);
  assert.equal(g.stats.batches, 2);
});
