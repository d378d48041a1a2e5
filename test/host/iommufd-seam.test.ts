// iommufd core apart from its drivers: the driver is chosen by the device's host SMMU, the
// SMMUv3 STE rules come from the arch tables, and kernel objects keep plain state.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NESTED_STE_MASK, STE_NESTED_MASK_D0, STE_NESTED_MASK_D1 } from '../../src/arch/smmuv3/structures.js';
import { assertPlainState } from '../../src/kit/persist.js';
import { ArmSmmuV3Iommufd, validateGuestSte } from '../../src/host/kernel/arm-smmu-v3-iommufd.js';
import { DEFAULT_HOST } from '../../src/host/config.js';
import { HostKernel } from '../../src/host/kernel/host-kernel.js';
import { Tegra241CmdqvIommufd } from '../../src/host/kernel/tegra241-cmdqv-iommufd.js';
import { Errno, ErrnoError } from '../../src/uapi/errno.js';
import * as U from '../../src/uapi/iommufd.js';
import { makeVm } from './uapi-client.js';

test('each SMMU gets the SMMUv3 iommufd ops, extended by the CMDQV ones when it has a CMDQV', () => {
  const kernel = new HostKernel({
    ...DEFAULT_HOST,
    smmus: [...DEFAULT_HOST.smmus, { ...DEFAULT_HOST.smmus[0]!, name: 'plain', cmdqv: undefined }],
  });
  const tegra = kernel.smmus.get('smmu0')!.iommufd;
  const plain = kernel.smmus.get('plain')!.iommufd;
  assert.ok(tegra instanceof Tegra241CmdqvIommufd);
  assert.ok(plain instanceof ArmSmmuV3Iommufd && !(plain instanceof Tegra241CmdqvIommufd));
  assert.equal(plain.instance, 'plain');
  const T = U.iommu_viommu_type;
  assert.deepEqual([plain.supportsViommu(T.IOMMU_VIOMMU_TYPE_ARM_SMMUV3), plain.supportsViommu(T.IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV)], [true, false]);
  assert.deepEqual([tegra.supportsViommu(T.IOMMU_VIOMMU_TYPE_ARM_SMMUV3), tegra.supportsViommu(T.IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV)], [true, true]);
  const H = U.iommu_hw_info_type;
  assert.equal(tegra.hwInfo(H.IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV).type, H.IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV);
  assert.equal(plain.hwInfo(H.IOMMU_HW_INFO_TYPE_DEFAULT).type, H.IOMMU_HW_INFO_TYPE_ARM_SMMUV3);
  assert.throws(() => plain.hwInfo(H.IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV), (e: unknown) => e instanceof ErrnoError && e.errno === Errno.EOPNOTSUPP);
});

test('nested-STE masks are the spec values, derived from the STE fields', () => {
  assert.equal(STE_NESTED_MASK_D0, 0xf80f_ffff_ffff_ffffn);
  assert.equal(STE_NESTED_MASK_D1, 0x0000_0000_3800_00ffn);
  assert.deepEqual(NESTED_STE_MASK, [0xffff_ffff, 0xf80f_ffff, 0x3800_00ff, 0]);
});

test('guest STE validation: abort when invalid, EIO outside the masks or on a bad Config/EATS, EATS stripped', () => {
  const eio = (e: unknown) => e instanceof ErrnoError && e.errno === Errno.EIO;
  assert.deepEqual([...validateGuestSte(0xffff_ffff_ffff_fffen, 0n)], [0, 0, 0, 0], 'V = 0 ignores the rest');
  assert.throws(() => validateGuestSte(1n | (1n << 55n), 0n), eio);
  assert.throws(() => validateGuestSte(1n, 1n << 8n), eio);
  assert.throws(() => validateGuestSte(1n | (0b110n << 1n), 0n), eio, 'stage-2 Config is the host\'s');
  assert.throws(() => validateGuestSte(1n | (0b101n << 1n), 2n << 28n), eio, 'EATS = 2');
  const words = validateGuestSte(1n | (0b101n << 1n) | (0x1234_5000n << 6n) | (3n << 59n), (1n << 28n) | 0x55n);
  assert.deepEqual([...words], [Number((1n | (0b101n << 1n) | (0x1234_5000n << 6n)) & 0xffff_ffffn), Number(((0x1234_5000n << 6n) >> 32n) | (3n << 27n)), 0x55, 0]);
});

test('kernel objects and vEVENTQs keep their state as plain data', () => {
  const kernel = new HostKernel();
  const vm = makeVm(kernel, 0, 2 ** 30);
  const { c } = vm;
  const viommuId = c.ok(U.IOMMU_VIOMMU_ALLOC, { type: U.iommu_viommu_type.IOMMU_VIOMMU_TYPE_ARM_SMMUV3, dev_id: vm.devId, hwpt_id: vm.s2Id }).out_viommu_id as number;
  c.ok(U.IOMMU_VDEVICE_ALLOC, { viommu_id: viommuId, dev_id: vm.devId, virt_id: 0x42n });
  c.ok(U.IOMMU_VEVENTQ_ALLOC, { viommu_id: viommuId, type: U.iommu_veventq_type.IOMMU_VEVENTQ_TYPE_ARM_SMMUV3, veventq_depth: 4 });
  const ste = U.iommu_hwpt_arm_smmuv3.encode({ ste: [1n | (0b101n << 1n), 0n] });
  const nestedId = c.ok(U.IOMMU_HWPT_ALLOC, {
    dev_id: vm.devId, pt_id: viommuId, data_type: U.iommu_hwpt_data_type.IOMMU_HWPT_DATA_ARM_SMMUV3, data_len: 16, data_uptr: BigInt(c.put(ste)),
  }).out_hwpt_id as number;
  assert.equal(c.attach(vm.vfio, nestedId), 0);
  const device = kernel.devices[0]!.binding!.obj;
  const vdevice = device.vdevice!;
  const viommu = vdevice.viommu;
  const veventq = viommu.veventqs.get(U.iommu_veventq_type.IOMMU_VEVENTQ_TYPE_ARM_SMMUV3)!;
  veventq.queue.report(new Uint8Array(32));
  for (const o of [device, device.attached!, vdevice, viommu, viommu.parent, veventq]) assertPlainState(o.state, `${o.kind}.state`);
  assertPlainState(veventq.queue.state, 'veventq.queue.state');
  assert.deepEqual(viommu.state, { id: viommuId, users: viommu.users, type: U.iommu_viommu_type.IOMMU_VIOMMU_TYPE_ARM_SMMUV3, iommu: 'smmu0' });
  assert.equal(vdevice.state.virtId, 0x42n);
  assert.equal(veventq.queue.state.count, 1);
});
