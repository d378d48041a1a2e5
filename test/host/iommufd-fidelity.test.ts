// iommufd argument rules checked against the Linux source (issue 14 #7.3;
// docs/reference/iommufd-uapi.md §4, §5, §6): the Tegra vIOMMU user data under
// iommu_copy_struct_from_user / iommu_copy_struct_to_user, the virt_id ranges of
// IOMMU_VDEVICE_ALLOC per vIOMMU type, and IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { IDR0 } from '../../src/arch/smmuv3/registers.js';
import { DEFAULT_HOST, GRACE_SMMU_IDR, type HostConfig } from '../../src/host/config.js';
import { HostKernel } from '../../src/host/kernel/host-kernel.js';
import { Errno } from '../../src/uapi/errno.js';
import { mmapAnonymous } from '../../src/uapi/syscalls.js';
import * as U from '../../src/uapi/iommufd.js';
import { makeVm } from './uapi-client.js';

const E = Errno;
const TEGRA = U.iommu_viommu_type.IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV;
const SMMUV3 = U.iommu_viommu_type.IOMMU_VIOMMU_TYPE_ARM_SMMUV3;
const ATS_NOT_SUPPORTED = BigInt(U.iommufd_hw_capabilities.IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED);
const STRUCT = U.iommu_viommu_tegra241_cmdqv.size;

describe('Tegra IOMMU_VIOMMU_ALLOC user data (issue 14 #7.3)', () => {
  const kernel = new HostKernel();
  const vm = makeVm(kernel, 0);
  const { c } = vm;
  const hw = kernel.smmus.get('smmu0')!.cmdqvHw!;
  /** VINTF1 CONFIG: non-zero once a user VINTF is allocated. */
  const vintf1 = () => hw.read(0x1100, 4);

  function alloc(len: number, tail?: Uint8Array) {
    const buf = c.alloc(Math.max(len, 1));
    if (tail) c.proc.mem.copyToUser(buf + STRUCT, tail);
    return c.call(U.IOMMU_VIOMMU_ALLOC, { type: TEGRA, dev_id: vm.devId, hwpt_id: vm.s2Id, data_len: len, data_uptr: BigInt(buf) });
  }

  test('shorter than the struct: EINVAL, nothing allocated', () => {
    assert.equal(alloc(STRUCT - 1).ret, -E.EINVAL);
    assert.equal(vintf1(), 0);
  });

  test('longer with a non-zero tail: E2BIG before anything is allocated', () => {
    assert.equal(alloc(STRUCT + 8, new Uint8Array([0, 0, 0, 1])).ret, -E.E2BIG);
    assert.equal(vintf1(), 0);
  });

  test('longer with a zero tail: read in, but the output cannot be reported into a longer buffer (EINVAL), and all is undone', () => {
    assert.equal(alloc(STRUCT + 8, new Uint8Array(8)).ret, -E.EINVAL);
    assert.equal(vintf1(), 0, 'VINTF released');
    // The VINTF, its mmap offset and the object ID came back: the next exact-size alloc succeeds.
    const ok = alloc(STRUCT);
    assert.equal(ok.ret, 0);
    assert.notEqual(vintf1(), 0);
    assert.equal(c.call(U.IOMMU_DESTROY, { id: ok.out.out_viommu_id as number }).ret, 0);
  });

  test('a zero tail that runs into unmapped memory: EFAULT', () => {
    // The struct ends a fresh page; the next page is the guard between mappings.
    const page = mmapAnonymous(c.proc, 4096);
    const uptr = BigInt(page + 4096 - STRUCT);
    assert.equal(c.call(U.IOMMU_VIOMMU_ALLOC, { type: TEGRA, dev_id: vm.devId, hwpt_id: vm.s2Id, data_len: STRUCT + 8, data_uptr: uptr }).ret, -E.EFAULT);
    assert.equal(vintf1(), 0);
  });
});

describe('IOMMU_VDEVICE_ALLOC virt_id ranges (issue 14 #7.3)', () => {
  const kernel = new HostKernel();
  const vm = makeVm(kernel, 0);
  const { c } = vm;

  function viommu(type: number): number {
    const data = c.alloc(STRUCT);
    const extra = type === TEGRA ? { data_len: STRUCT, data_uptr: BigInt(data) } : {};
    return c.ok(U.IOMMU_VIOMMU_ALLOC, { type, dev_id: vm.devId, hwpt_id: vm.s2Id, ...extra }).out_viommu_id as number;
  }
  function vdevice(viommuId: number, virtId: bigint): number {
    const r = c.call(U.IOMMU_VDEVICE_ALLOC, { viommu_id: viommuId, dev_id: vm.devId, virt_id: virtId });
    if (r.ret === 0) assert.equal(c.call(U.IOMMU_DESTROY, { id: r.out.out_vdevice_id as number }).ret, 0);
    return r.ret;
  }

  test('ARM_SMMUV3 vIOMMU: the core takes any u64 virt_id (the driver has no vdevice_init)', () => {
    const v = viommu(SMMUV3);
    for (const id of [0n, 0xffff_ffffn, 0x1_0000_0000n, 0xffff_ffff_ffff_ffffn]) assert.equal(vdevice(v, id), 0, `virt_id 0x${id.toString(16)}`);
    c.ok(U.IOMMU_DESTROY, { id: v });
  });

  test('TEGRA241_CMDQV vIOMMU: virt_id up to UINT_MAX, EINVAL above', () => {
    const v = viommu(TEGRA);
    for (const id of [0n, 0x10_0000n, 0xffff_ffffn]) assert.equal(vdevice(v, id), 0, `virt_id 0x${id.toString(16)}`);
    assert.equal(vdevice(v, 0x1_0000_0000n), -E.EINVAL);
    assert.equal(vdevice(v, 0xffff_ffff_ffff_ffffn), -E.EINVAL);
    // Nothing left behind: the device takes a vDEVICE again.
    assert.equal(vdevice(v, 8n), 0);
    c.ok(U.IOMMU_DESTROY, { id: v });
  });
});

describe('IOMMU_GET_HW_INFO out_capabilities: PCI ATS (issue 14 #7.3)', () => {
  function caps(host: HostConfig, dev = 0): bigint {
    const vm = makeVm(new HostKernel(host), dev);
    const buf = vm.c.alloc(64);
    return vm.c.ok(U.IOMMU_GET_HW_INFO, { dev_id: vm.devId, data_len: 64, data_uptr: BigInt(buf) }).out_capabilities as bigint;
  }

  test('a Grace device behind an ATS-capable SMMU: ATS supported (flag clear)', () => {
    assert.equal(caps(DEFAULT_HOST) & ATS_NOT_SUPPORTED, 0n);
  });

  test('a device without an ATS capability: IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED', () => {
    const host: HostConfig = { ...DEFAULT_HOST, devices: [{ ...DEFAULT_HOST.devices[0]!, ats: false }, DEFAULT_HOST.devices[1]!] };
    assert.equal(caps(host, 0) & ATS_NOT_SUPPORTED, ATS_NOT_SUPPORTED);
    assert.equal(caps(host, 1) & ATS_NOT_SUPPORTED, 0n);
  });

  test('an SMMU without IDR0.ATS: no device behind it can use ATS', () => {
    const idr = [IDR0.f.ATS.set(GRACE_SMMU_IDR[0], 0) >>> 0, ...GRACE_SMMU_IDR.slice(1)] as unknown as HostConfig['smmus'][0]['idr'];
    const host: HostConfig = { ...DEFAULT_HOST, smmus: [{ ...DEFAULT_HOST.smmus[0]!, idr }] };
    assert.equal(caps(host) & ATS_NOT_SUPPORTED, ATS_NOT_SUPPORTED);
  });
});
