// The guest tegra241-cmdqv driver model against the VMM's emulated CMDQV on the simulated host:
// probe/reset/VINTF init per the Linux sequence, queue submission without VM exits, and the
// error interrupt path (skip + GERRORN) running while the driver polls CONS.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildCommand, Op } from '../../src/arch/smmuv3/commands.js';
import { GuestCmdqv } from '../../src/guest/tegra241-cmdqv.js';
import { boot, CMDQV_BASE, CMDQV_GSIV, guestPlatform, guestSmmuStub, rig } from '../vmm/cmdqv-rig.js';

function guest() {
  const r = boot(rig());
  // The CMDQV driver needs only the SMMU's IDR1 (CMDQS) and the guest page allocator.
  const g = new GuestCmdqv(guestPlatform(r), CMDQV_BASE, guestSmmuStub(), CMDQV_GSIV);
  return { r, g };
}

test('guest init follows the Linux sequence and ends with both queues live on the host', () => {
  const { r, g } = guest();
  assert.equal(g.hypOwn, false, 'HYP_OWN reads back 0 in a VM');
  assert.deepEqual([g.numVintfs, g.numVcmdqs, g.perVintf], [1, 2, 2]);
  const allocs = r.backend.calls.filter((c) => c.name === 'IOMMU_HW_QUEUE_ALLOC');
  assert.deepEqual(allocs.map((c) => [c.args.index, c.args.length, c.ret]), [[0, 65536n, 0], [1, 65536n, 0]]);
  assert.equal(r.r(0x30000 + 0xc), 1);
  assert.equal(r.r(0x30080 + 0xc), 1);
  assert.equal(g.accepts(buildCommand(Op.TLBI_NH_VA)), true);
  assert.equal(g.accepts(buildCommand(Op.CFGI_STE)), false);
});

test('submissions on a VCMDQ cost no VM exit and no ioctl', () => {
  const { r, g } = guest();
  const exits = r.as.stats.exits;
  const ioctls = r.kernel.stats.ioctls;
  for (let i = 0; i < 50; i++) g.submit([buildCommand(Op.TLBI_NH_ASID, { asid: 7 }), buildCommand(Op.TLBI_NH_VA, { asid: 7, addr: i * 4096 })]);
  assert.equal(r.as.stats.exits, exits);
  assert.equal(r.kernel.stats.ioctls, ioctls);
  assert.equal(g.stats.commands, 150);
  assert.ok(r.as.stats.direct >= 100, 'page0 doorbells and CONS polls are direct accesses');
});

test('an illegal command is skipped by the guest ISR while the driver polls, and the queue goes on', () => {
  const { r, g } = guest();
  g.submit([buildCommand(Op.TLBI_NH_ASID, { asid: 1 }), buildCommand(Op.CFGI_STE, { sid: 8 }), buildCommand(Op.TLBI_NH_ASID, { asid: 2 })]);
  assert.equal(g.stats.errorsHandled, 1);
  assert.equal(g.stats.irqs, 1);
  assert.equal(r.cmdqv.irq.count, 1);
  assert.equal(r.r(0x10c0), 1, 'LVCMDQ 0 reported');
  assert.equal(r.r(0x30010) & 1, r.r(0x30014) & 1, 'acknowledged');
  g.submit([buildCommand(Op.TLBI_NH_ASID, { asid: 3 })]);
  assert.equal(g.stats.batches, 2);
});
