// The emulated SMMUv3's state: reset() returns exactly the reset values (and empties the
// configuration cache and the IOTLB), save/restore round-trips the registers, and the
// properties are validated with QEMU's texts.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Op } from '../../../src/arch/smmuv3/commands.js';
import * as R from '../../../src/arch/smmuv3/registers.js';
import { STE_CFG_S1 } from '../../../src/arch/smmuv3/structures.js';
import { DATA, DATA2, EmulatedRig, IOVA, SID } from './emulated-rig.js';

function active(): EmulatedRig {
  const r = new EmulatedRig();
  r.s1.map(IOVA, DATA, 0x1000, 3);
  r.writeCd();
  r.writeSte(SID, STE_CFG_S1);
  r.enable();
  r.translate(IOVA);
  r.translate(IOVA + 0x5000); // an event
  r.submit(new Uint32Array([0x7f, 0, 0, 0])); // a command error
  return r;
}

describe('emulated SMMUv3: reset and state', () => {
  test('reset() restores exactly the reset register file and empties the caches', () => {
    const fresh = new EmulatedRig();
    const r = active();
    assert.notDeepEqual([...r.smmu.bank.file.words], [...fresh.smmu.bank.file.words]);
    assert.ok(r.smmu.engine.cachedConfigs > 0 && r.smmu.engine.iotlb.size > 0);
    r.smmu.reset();
    assert.deepEqual([...r.smmu.bank.file.words], [...fresh.smmu.bank.file.words]);
    assert.equal(r.smmu.engine.cachedConfigs, 0);
    assert.equal(r.smmu.engine.iotlb.size, 0);
    assert.equal(R.CMDQ_BASE.f.LOG2SIZE.get(r.r32(R.CMDQ_BASE)), 19, "QEMU's reset LOG2SIZE");
  });

  test('save/restore round-trips the registers; the caches refill from guest memory', () => {
    const r = active();
    const saved = r.smmu.save();
    const words = [...r.smmu.bank.file.words];
    r.smmu.reset();
    r.smmu.restore(saved);
    assert.deepEqual([...r.smmu.bank.file.words], words);
    assert.equal(r.smmu.engine.iotlb.size, 0, 'the IOTLB is not state');
    // The tables changed while "migrating": the restored SMMU walks them again.
    r.s1.unmap(IOVA, 0x1000);
    r.s1.map(IOVA, DATA2, 0x1000, 3);
    r.w32(R.GERRORN, r.r32(R.GERROR));
    const t = r.translate(IOVA);
    assert.deepEqual([t.ok, t.pa], [true, DATA2]);
    // A restore into another device built the same way gives the same registers.
    const other = new EmulatedRig();
    other.smmu.restore(saved);
    assert.deepEqual([...other.smmu.bank.file.words], words);
    saved.registers[0] = 0xdead; // the saved copy is not shared
    assert.notEqual(other.smmu.bank.file.words[0], 0xdead);
  });

  test("accel-only properties are refused with QEMU's texts; stage=nested is fine without accel", () => {
    assert.throws(() => new EmulatedRig({ cmdqv: 'on' }), { message: 'cmdqv can only be enabled if accel=on' });
    assert.throws(() => new EmulatedRig({ ats: 'on' }), { message: 'ats can only be enabled if accel=on' });
    assert.throws(() => new EmulatedRig({ ril: 'off' }), { message: 'ril can only be disabled if accel=on' });
    assert.throws(() => new EmulatedRig({ oas: 48 }), { message: 'oas must be 44 bits when accel=off' });
    assert.throws(() => new EmulatedRig({ ssidsize: 4 }), { message: 'ssidsize can only be greater than 0 bits if accel=on' });
    assert.doesNotThrow(() => new EmulatedRig({ stage: 'nested' }));
  });

  test('trace points name the translation, the event and the invalidation (QEMU names)', () => {
    const r = new EmulatedRig({}, ['smmuv3_translate_*', 'smmuv3_record_event', 'smmu_iotlb_inv_*', 'smmuv3_config_cache_inv']);
    r.s1.map(IOVA, DATA, 0x1000, 3);
    r.writeCd();
    r.writeSte(SID, STE_CFG_S1);
    r.translate(IOVA);
    r.enable();
    r.translate(IOVA);
    r.translate(IOVA + 0x5000);
    r.submit(r.cmd(Op.TLBI_NH_ASID, { asid: 1 }), r.cmd(Op.CFGI_STE, { sid: SID }), r.cmd(Op.TLBI_NSNH_ALL));
    const names = r.traces.records.map((x) => x.name);
    assert.deepEqual(names, [
      'smmuv3_translate_disable', 'smmuv3_translate_success', 'smmuv3_record_event',
      'smmu_iotlb_inv_asid_vmid', 'smmuv3_config_cache_inv', 'smmu_iotlb_inv_all',
    ]);
    assert.deepEqual(r.traces.named('smmuv3_record_event')[0], ['F_TRANSLATION', SID]);
  });
});
