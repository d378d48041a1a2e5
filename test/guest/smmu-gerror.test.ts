// The guest SMMUv3 driver's GERROR interrupt (Linux's gerror handler) on the trapped command
// queue of the accelerated SMMU: one recovery resuming into the next error (issue 14 #8).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildCommand, Op } from '../../src/arch/smmuv3/commands.js';
import { GuestKernel } from '../../src/guest/kernel.js';
import { Machine } from '../../src/platform/machine.js';

/** A command no SMMU implements (CERROR_ILL). */
const illegal = () => new Uint32Array([0xff, 0, 0, 0]);

// issue 14 #8: the handler's GERRORN write resumes the queue, which hits the second illegal
// command and raises GERROR again while the first interrupt is still being handled. A GIC keeps
// that edge pending and delivers it when the handler returns; it must not be dropped.
test('two consecutive illegal commands: the nested GERROR edge is delivered after the first handler returns', () => {
  const m = Machine.create([]);
  const kernel = new GuestKernel(m.guestPlatform(), m.acpi);
  const smmu = kernel.iommus[0]!.smmu;
  assert.equal(smmu.gerrorIrq, true, 'the GERROR interrupt is wired, as in Linux');
  const line = m.smmus[0]!.dev.irqs[3];
  const edges = line.count;
  const skipped = smmu.stats.cerrorsSkipped;
  smmu.submit([buildCommand(Op.CFGI_STE, { sid: 8 }), illegal(), illegal(), buildCommand(Op.CFGI_STE, { sid: 8 })]);
  assert.equal(line.count - edges, 2, 'two GERROR edges');
  assert.equal(smmu.stats.cerrorsSkipped - skipped, 2, 'both commands skipped by the interrupt handler');
  assert.equal(line.level, false);
  smmu.submit([buildCommand(Op.CFGI_STE, { sid: 8 })]);
});
