// Save/restore of the accelerated SMMUv3's architectural state: plain data, a deep copy, and a
// restored SMMU (built with the same deps) that behaves as the saved one did.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildCommand, Op } from '../../../src/arch/smmuv3/commands.js';
import * as R from '../../../src/arch/smmuv3/registers.js';
import { assertPlainState } from '../../../src/kit/persist.js';
import { AccelSmmuV3 } from '../../../src/vmm/smmuv3/accel-smmuv3.js';
import { CD_IPA, DEFAULT_PROPS, Guest, GSID, makeRig, RecordingMainLoop, s1Ste, writeCd } from './rig.js';

test('save / restore: plain state, deep copy, and the restored SMMU goes on from where it was', () => {
  const rig = makeRig({ fastRam: true });
  const guest = new Guest(rig);
  rig.smmu.attachDevice(rig.devs[0]!);
  guest.init({ smmuen: true, eventq: 4, irqs: 0b101 });
  writeCd(rig.mem, CD_IPA, 1, 0x80_0000);
  guest.writeSte(GSID[0], s1Ste(CD_IPA));
  guest.submit(buildCommand(Op.CFGI_STE, { sid: GSID[0] }), guest.sync());

  const saved = rig.smmu.save();
  assertPlainState(saved);
  assert.notEqual(saved.registers, rig.smmu.save().registers, 'a copy, not the live register file');

  const mainLoop = new RecordingMainLoop();
  const restored = new AccelSmmuV3({ ...DEFAULT_PROPS }, { ...rig.deps, mainLoop });
  restored.restore(saved);
  assert.deepEqual(restored.save(), saved);
  for (const reg of [R.CR0, R.IDR0, R.IDR1, R.IDR3, R.CMDQ_BASE, R.CMDQ_PROD, R.CMDQ_CONS, R.EVENTQ_BASE, R.STRTAB_BASE]) {
    assert.equal(restored.bank.read(reg.spec.offset, 4), rig.smmu.bank.read(reg.spec.offset, 4), reg.spec.name);
  }
  assert.deepEqual(restored.deviceState(GSID[0]), rig.smmu.deviceState(GSID[0]));
  assert.equal(restored.viommuId, rig.smmu.viommuId);
  assert.ok(mainLoop.fdHandlers.has(saved.veventq!.fd), 'the restored SMMU watches the restored vEVENTQ');

  // The next command on the restored SMMU is forwarded to the same vIOMMU, and CONS moves on.
  const cons = restored.bank.read(R.CMDQ_CONS.spec.offset, 4);
  guest.writeSlot(cons & 0xff, buildCommand(Op.TLBI_NH_ASID, { asid: 1 }));
  const from = rig.backend.calls.length;
  restored.mmio.ops!.write(R.CMDQ_PROD.spec.offset, 4, cons + 1);
  assert.equal(restored.bank.read(R.CMDQ_CONS.spec.offset, 4), cons + 1);
  const invalidate = rig.backend.calls.slice(from).find((c) => c.name === 'IOMMU_HWPT_INVALIDATE');
  assert.equal(invalidate?.args.hwpt_id, rig.smmu.viommuId);
  assert.equal(restored.stats.forwarded, 1);
});

test('restore replaces the state in place: a later save reflects it, not the old one', () => {
  const rig = makeRig();
  const blank = rig.smmu.save();
  const guest = new Guest(rig);
  rig.smmu.attachDevice(rig.devs[0]!);
  guest.init({ eventq: 3 });
  assert.notDeepEqual(rig.smmu.save(), blank);
  const watched = rig.smmu.veventq!.fd;
  rig.smmu.restore(blank);
  assert.deepEqual(rig.smmu.save(), blank);
  assert.equal(rig.smmu.viommuId, undefined);
  assert.equal(rig.mainLoop.fdHandlers.has(watched), false, 'no handler for a vEVENTQ the state no longer has');
});
