// The accelerated SMMUv3 against a guest that repeats a refused operation (issue 14 #9).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildCommand, Op } from '../../../src/arch/smmuv3/commands.js';
import { BYPASS_STE, Guest, GSID, makeRig } from './rig.js';

// issue 14 #9: every refused CFGI_STE appended to an unbounded host-error list.
test('200 000 refused CFGI_STEs keep a bounded host-error list with an exact count', () => {
  const rig = makeRig();
  const g = new Guest(rig);
  rig.smmu.attachDevice(rig.devs[0]!);
  g.init({ smmuen: true });
  g.writeSte(GSID[0], BYPASS_STE);
  g.submit(buildCommand(Op.CFGI_STE, { sid: GSID[0] }), g.sync());
  g.writeSte(GSID[0], [1 | (0b110 << 1), 0, 0, 0]); // stage 2 only: invalid for a stage-1 vSMMU
  const before = rig.smmu.hostErrorCount;
  g.submit(buildCommand(Op.CFGI_STE, { sid: GSID[0] }));
  // Each acknowledgement resumes the queue at the same refused command.
  for (let i = 1; i < 200_000; i++) g.ack();
  assert.equal(rig.smmu.hostErrorCount - before, 200_000, 'every refusal counted');
  assert.ok(rig.smmu.hostErrors.length <= 256, 'the list is bounded');
  assert.equal(rig.smmu.hostErrors.at(-1), 'Invalid STE config for sid 0x8');
});
