// Save/restore of the VMM's Tegra241 CMDQV: registers in one plain state, HW queues and the
// VINTF page0 mapping re-derived on restore.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertPlainState } from '../../src/kit/persist.js';
import { boot, RAM_BASE, rig, type Rig } from './cmdqv-rig.js';

/** Guest programming short of enabling VINTF0: global enable, ALLOC, SID pair, BASE, PROD. */
function program(r: Rig, ring: number): void {
  r.w(0x200, 1);
  r.w(0x204, 0x3);
  r.w(0x1040, (0x8 << 1) | 1);
  r.w(0x1080, 0x77);
  r.w(0x1c, 1);
  r.w64(0x20000, BigInt(ring) | 8n);
  r.w(0x10004, 3);
}

test('cache mode: save is plain, restore into a fresh device reads back the same registers', () => {
  const a = boot(rig());
  program(a, RAM_BASE + 0x10_0000);
  const saved = a.cmdqv.save();
  assertPlainState(saved);
  const b = boot(rig());
  b.cmdqv.restore(saved);
  assert.deepEqual(b.cmdqv.save(), saved);
  for (const off of [0x0, 0x8, 0x1c, 0x200, 0x204, 0x1040, 0x1080, 0x10004, 0x20000, 0x20004]) {
    assert.equal(b.r(off), a.r(off), `0x${off.toString(16)}`);
  }
  assert.deepEqual(b.cmdqv.hwQueue, [undefined, undefined], 'VINTF0 disabled: no HW queue');
  // The next access behaves the same: enabling VINTF0 allocates queue 0 from the restored BASE.
  for (const r of [a, b]) r.w(0x1000, 1);
  assert.notEqual(b.cmdqv.hwQueue[0], undefined);
  assert.equal(b.r(0x30000 + 0x4), a.r(0x30000 + 0x4), 'cached PROD pushed to the host queue');
  assert.equal(b.r(0x30000 + 0x4), 3);
});

test('HW mode: page0 is saved from the host page and the queues come back on restore', () => {
  const a = boot(rig());
  program(a, RAM_BASE + 0x10_0000);
  a.w(0x1000, 1);
  a.w(0x30000 + 0x8, 1);
  assert.equal(a.r(0x30000 + 0xc), 1, 'queue enabled on the host');
  const saved = a.cmdqv.save();
  assertPlainState(saved);
  assert.equal(saved.page0[0]![2], 1, 'CONFIG.CMDQ_EN taken from the host page');
  const b = boot(rig());
  b.cmdqv.restore(saved);
  assert.notEqual(b.cmdqv.hwQueue[0], undefined);
  assert.ok(b.cmdqv.page0Region, 'VINTF page0 mapped again');
  assert.deepEqual(b.cmdqv.save(), saved);
  for (const off of [0x30000, 0x30004, 0x30008, 0x3000c]) assert.equal(b.r(off), a.r(off), `0x${off.toString(16)}`);
});
