// Seam tests: the simulated host driven only through uAPI bytes, ioctl numbers and mmap, with
// the kernel's errnos (docs/reference/iommufd-uapi.md §2–13 and the selftests listed in its §14).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HostKernel } from '../../src/host/kernel/host-kernel.js';
import { mmapAnonymous, PROT_EXEC, PROT_READ, PROT_WRITE } from '../../src/uapi/syscalls.js';
import { Errno } from '../../src/uapi/errno.js';
import * as U from '../../src/uapi/iommufd.js';
import { makeVm, UapiClient } from './uapi-client.js';

const E = Errno;
const TEGRA = U.iommu_viommu_type.IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV;

function tegraViommu(vm: ReturnType<typeof makeVm>) {
  const data = vm.c.alloc(16);
  const r = vm.c.call(U.IOMMU_VIOMMU_ALLOC, { type: TEGRA, dev_id: vm.devId, hwpt_id: vm.s2Id, data_len: 16, data_uptr: BigInt(data) });
  const info = U.iommu_viommu_tegra241_cmdqv.decode(vm.c.proc.mem.copyFromUser(data, 16));
  return { ...r, id: r.out.out_viommu_id as number, offset: Number(info.out_vintf_mmap_offset), length: Number(info.out_vintf_mmap_length) };
}

describe('ioctl plumbing (iommufd.cmd_fail / cmd_length / cmd_ex_fail)', () => {
  const kernel = new HostKernel();
  const c = new UapiClient(kernel.createProcess());

  test('unknown ioctl is ENOTTY, bad pointer EFAULT, destroy of id 0 ENOENT', () => {
    assert.equal(c.proc.ioctl(c.fd, 0x3b7f, c.alloc(8)), -E.ENOTTY);
    assert.equal(c.proc.ioctl(c.fd, U.IOMMU_DESTROY.number, 0), -E.EFAULT);
    assert.equal(c.call(U.IOMMU_DESTROY, { id: 0 }).ret, -E.ENOENT);
    assert.equal(c.proc.ioctl(99, U.IOMMU_DESTROY.number, c.alloc(8)), -E.EBADF);
  });

  test('size below the minimum is EINVAL; a larger struct needs a zero tail (E2BIG otherwise)', () => {
    assert.equal(c.call(U.IOMMU_IOAS_ALLOC, {}, { size: 11 }).ret, -E.EINVAL);
    const big = c.call(U.IOMMU_IOAS_ALLOC, {}, { extra: new Uint8Array([0, 0, 0, 0]) });
    assert.equal(big.ret, 0);
    assert.ok((big.out.out_ioas_id as number) > 0);
    assert.equal(c.call(U.IOMMU_IOAS_ALLOC, {}, { extra: new Uint8Array([0, 1]) }).ret, -E.E2BIG);
    // Extensible: exact size and zero-tail size behave alike (ENOENT for a missing object).
    assert.equal(c.call(U.IOMMU_DESTROY, { id: 1234 }).ret, -E.ENOENT);
    assert.equal(c.call(U.IOMMU_DESTROY, { id: 1234 }, { extra: new Uint8Array(8) }).ret, -E.ENOENT);
    assert.equal(c.call(U.IOMMU_DESTROY, { id: 1234 }, { size: 7 }).ret, -E.EINVAL);
  });

  test('ioctls the model does not implement say so (EOPNOTSUPP + unimp log)', () => {
    const before = kernel.log.count('unimp');
    assert.equal(c.proc.ioctl(c.fd, U.IOMMU_IOAS_COPY.number, c.put(new Uint8Array(40).fill(0, 0).map((_, i) => (i === 0 ? 40 : 0)))), -E.EOPNOTSUPP);
    assert.equal(kernel.log.count('unimp'), before + 1);
  });
});

describe('IOAS map/unmap', () => {
  const kernel = new HostKernel();
  const vm = makeVm(kernel, 0, 2 ** 21, false);
  const { c } = vm;

  test('flags and ranges are checked as the kernel does', () => {
    const buf = mmapAnonymous(c.proc, 0x10000);
    const map = (v: Record<string, unknown>) => c.call(U.IOMMU_IOAS_MAP, { ioas_id: vm.ioasId, user_va: BigInt(buf), length: 0x4000n, flags: 7, iova: 0x1000_0000n, ...v }).ret;
    assert.equal(map({ flags: 1 << 3 }), -E.EOPNOTSUPP);
    assert.equal(map({ __reserved: 1 }), -E.EOPNOTSUPP);
    assert.equal(map({ flags: 1 }), -E.EINVAL, 'neither readable nor writeable');
    assert.equal(map({ ioas_id: 999 }), -E.ENOENT);
    assert.equal(map({ length: 0x1001n }), -E.EINVAL);
    assert.equal(map({ user_va: 0x1000n }), -E.EFAULT, 'unmapped user memory');
    assert.equal(map({}), 0);
    assert.equal(map({}), -E.EEXIST);
    assert.equal(c.call(U.IOMMU_IOAS_UNMAP, { ioas_id: vm.ioasId, iova: 0x1000_0000n, length: 0x1000n }).ret, -E.ENOENT, 'partial unmap');
    const un = c.call(U.IOMMU_IOAS_UNMAP, { ioas_id: vm.ioasId, iova: 0x1000_0000n, length: 0x4000n });
    assert.deepEqual([un.ret, un.out.length], [0, 0x4000n]);
    const auto = c.call(U.IOMMU_IOAS_MAP, { ioas_id: vm.ioasId, user_va: BigInt(buf), length: 0x4000n, flags: 6 });
    assert.equal(auto.ret, 0);
    assert.ok((auto.out.iova as bigint) >= BigInt(vm.ramBytes), 'auto IOVA avoids existing mappings');
  });
});

describe('GET_HW_INFO', () => {
  const kernel = new HostKernel();
  const vm = makeVm(kernel, 0, 2 ** 21, false);
  const { c } = vm;

  test('default type returns the SMMUv3 IDRs; INPUT_TYPE selects Tegra241 CMDQV data', () => {
    const buf = c.alloc(64);
    const r = c.ok(U.IOMMU_GET_HW_INFO, { dev_id: vm.devId, data_len: 40, data_uptr: BigInt(buf) });
    assert.equal(r.out_data_type, U.iommu_hw_info_type.IOMMU_HW_INFO_TYPE_ARM_SMMUV3);
    assert.equal(r.data_len, 40);
    const info = U.iommu_hw_info_arm_smmuv3.decode(c.proc.mem.copyFromUser(buf, 40));
    assert.equal(info.idr[1], kernel.config.smmus[0]!.idr[1]);
    const t = c.ok(U.IOMMU_GET_HW_INFO, { flags: 1, dev_id: vm.devId, data_len: 8, data_uptr: BigInt(buf), in_data_type: 3 });
    assert.equal(t.out_data_type, 3);
    const q = U.iommu_hw_info_tegra241_cmdqv.decode(c.proc.mem.copyFromUser(buf, 8));
    assert.deepEqual([q.version, q.log2vcmdqs, q.log2vsids], [1, 1, 4], '128 VCMDQs / 64 VINTFs = 2 per VINTF; 16 SIDs');
  });

  test('larger buffers are zero-filled, smaller ones partially filled; bad inputs rejected', () => {
    const buf = c.put(new Uint8Array(64).fill(0xee));
    c.ok(U.IOMMU_GET_HW_INFO, { flags: 1, dev_id: vm.devId, data_len: 64, data_uptr: BigInt(buf), in_data_type: 3 });
    const bytes = c.proc.mem.copyFromUser(buf, 64);
    assert.ok(bytes.subarray(8).every((b) => b === 0));
    const small = c.put(new Uint8Array(8).fill(0xee));
    const r = c.ok(U.IOMMU_GET_HW_INFO, { dev_id: vm.devId, data_len: 4, data_uptr: BigInt(small) });
    assert.equal(r.data_len, 40, 'kernel length reported');
    assert.deepEqual([...c.proc.mem.copyFromUser(small + 4, 4)], [0xee, 0xee, 0xee, 0xee]);
    assert.equal(c.call(U.IOMMU_GET_HW_INFO, { flags: 1, dev_id: vm.devId, in_data_type: 1 }).ret, -E.EOPNOTSUPP);
    assert.equal(c.call(U.IOMMU_GET_HW_INFO, { flags: 2, dev_id: vm.devId }).ret, -E.EOPNOTSUPP);
    assert.equal(c.call(U.IOMMU_GET_HW_INFO, { dev_id: 999 }).ret, -E.ENOENT);
    assert.equal(c.call(U.IOMMU_GET_HW_INFO, { dev_id: vm.devId, __reserved: [0, 1, 0] }).ret, -E.EOPNOTSUPP);
  });
});

describe('vIOMMU, mmap, vDEVICE, vEVENTQ (viommu_negative_tests, viommu_alloc_with_data, vdevice_alloc)', () => {
  const kernel = new HostKernel();
  const vm = makeVm(kernel, 0, 2 ** 30);
  const { c } = vm;

  test('vIOMMU allocation errors', () => {
    assert.equal(c.call(U.IOMMU_VIOMMU_ALLOC, { type: 0, dev_id: vm.devId, hwpt_id: vm.s2Id }).ret, -E.EOPNOTSUPP);
    assert.equal(c.call(U.IOMMU_VIOMMU_ALLOC, { type: 0xdead, dev_id: vm.devId, hwpt_id: vm.s2Id }).ret, -E.EOPNOTSUPP);
    assert.equal(c.call(U.IOMMU_VIOMMU_ALLOC, { type: 1, dev_id: vm.devId, hwpt_id: 0 }).ret, -E.ENOENT);
    assert.equal(c.call(U.IOMMU_VIOMMU_ALLOC, { type: 1, dev_id: 999, hwpt_id: vm.s2Id }).ret, -E.ENOENT);
    const plain = c.ok(U.IOMMU_HWPT_ALLOC, { dev_id: vm.devId, pt_id: vm.ioasId }).out_hwpt_id as number;
    assert.equal(c.call(U.IOMMU_VIOMMU_ALLOC, { type: 1, dev_id: vm.devId, hwpt_id: plain }).ret, -E.EINVAL, 'not NEST_PARENT');
    assert.equal(c.call(U.IOMMU_VIOMMU_ALLOC, { type: TEGRA, dev_id: vm.devId, hwpt_id: vm.s2Id }).ret, -E.EINVAL, 'Tegra needs user data');
    assert.equal(c.call(U.IOMMU_VIOMMU_ALLOC, { type: TEGRA, dev_id: vm.devId, hwpt_id: vm.s2Id, data_len: 8, data_uptr: BigInt(c.alloc(8)) }).ret, -E.EINVAL);
    assert.equal(c.call(U.IOMMU_VIOMMU_ALLOC, { type: TEGRA, dev_id: vm.devId, hwpt_id: vm.s2Id, data_len: 16, data_uptr: 8n }).ret, -E.EFAULT);
    assert.equal(c.call(U.IOMMU_DESTROY, { id: plain }).ret, 0);
  });

  test('Tegra vIOMMU: enabled guest-owned VINTF with the S2 VMID, page0 mmap rules, EBUSY while mapped', () => {
    const v = tegraViommu(vm);
    assert.equal(v.ret, 0);
    assert.equal(v.length, 0x10000);
    assert.ok(v.offset >= kernel.config.pageSize && v.offset % kernel.config.pageSize === 0);
    const hw = kernel.smmus.get('smmu0')!.cmdqvHw!;
    // VINTF1 (VINTF0 is the host's): CONFIG = VMID << 1 | EN, HYP_OWN = 0.
    const cfg = hw.read(0x1100, 4);
    assert.equal(cfg & 1, 1);
    assert.equal((cfg >>> 17) & 1, 0, 'HYP_OWN = 0');
    assert.ok(((cfg >>> 1) & 0xffff) > 0, 'VMID of the nesting parent');
    assert.equal(hw.read(0x1104, 4) & 1, 1, 'ENABLE_OK');
    assert.equal(c.call(U.IOMMU_DESTROY, { id: vm.s2Id }).ret, -E.EBUSY, 'parent HWPT in use');
    for (const [len, off] of [[0x10000, v.offset + 4096], [0x10000, v.offset + 8192], [0x8000, v.offset], [0x20000, v.offset]]) {
      assert.equal(c.mmap(len!, off!), -E.ENXIO);
    }
    assert.equal(c.mmap(0x10000, v.offset, PROT_READ | PROT_EXEC), -E.EPERM);
    assert.equal(c.mmap(0x10000, v.offset, PROT_READ | PROT_WRITE, 0), -E.EINVAL, 'MAP_PRIVATE');
    const va = c.mmap(0x10000, v.offset);
    assert.ok(va > 0);
    assert.equal(c.call(U.IOMMU_DESTROY, { id: v.id }).ret, -E.EBUSY, 'mapped');
    assert.equal(c.proc.munmap(va, 0x10000), 0);
    assert.equal(c.call(U.IOMMU_DESTROY, { id: v.id }).ret, 0);
    assert.equal(hw.read(0x1100, 4), 0, 'VINTF disabled on destroy');
  });

  test('vDEVICE programs a SID pair; duplicates are EEXIST; destroy clears it', () => {
    const v = tegraViommu(vm);
    const hw = kernel.smmus.get('smmu0')!.cmdqvHw!;
    const vd = c.call(U.IOMMU_VDEVICE_ALLOC, { viommu_id: v.id, dev_id: vm.devId, virt_id: 0x99n });
    assert.equal(vd.ret, 0);
    const block = 0x1000 + 0x100 * 1;
    assert.equal(hw.read(block + 0x40, 4), (0x99 << 1) | 1, 'SID_MATCH = vSID << 1 | 1');
    assert.equal(hw.read(block + 0x80, 4), kernel.devices[0]!.sid, 'SID_REPLACE = physical SID');
    assert.equal(c.call(U.IOMMU_VDEVICE_ALLOC, { viommu_id: v.id, dev_id: vm.devId, virt_id: 0x88n }).ret, -E.EEXIST);
    assert.equal(c.call(U.IOMMU_VDEVICE_ALLOC, { viommu_id: 999, dev_id: vm.devId, virt_id: 0x88n }).ret, -E.ENOENT);
    assert.equal(c.call(U.IOMMU_DESTROY, { id: v.id }).ret, -E.EBUSY, 'vDEVICE holds the vIOMMU');
    assert.equal(c.call(U.IOMMU_DESTROY, { id: vd.out.out_vdevice_id as number }).ret, 0);
    assert.equal(hw.read(block + 0x40, 4), 0);
    const e1 = c.call(U.IOMMU_VEVENTQ_ALLOC, { viommu_id: v.id, type: 2, veventq_depth: 2 });
    assert.equal(e1.ret, 0);
    assert.ok((e1.out.out_veventq_fd as number) > 2);
    assert.equal(c.call(U.IOMMU_VEVENTQ_ALLOC, { viommu_id: v.id, type: 2, veventq_depth: 2 }).ret, -E.EEXIST);
    assert.equal(c.call(U.IOMMU_VEVENTQ_ALLOC, { viommu_id: v.id, type: 1, veventq_depth: 0 }).ret, -E.EINVAL);
    assert.equal(c.call(U.IOMMU_VEVENTQ_ALLOC, { viommu_id: v.id, type: 0, veventq_depth: 2 }).ret, -E.EOPNOTSUPP);
    assert.equal(c.call(U.IOMMU_DESTROY, { id: e1.out.out_veventq_id as number }).ret, -E.EBUSY, 'fd open');
    assert.equal(c.proc.close(e1.out.out_veventq_fd as number), 0);
    assert.equal(c.call(U.IOMMU_DESTROY, { id: e1.out.out_veventq_id as number }).ret, 0);
    assert.equal(c.call(U.IOMMU_DESTROY, { id: v.id }).ret, 0);
  });
});

describe('HW queues (selftest hw_queue)', () => {
  const kernel = new HostKernel();
  const vm = makeVm(kernel, 0, 2 ** 30);
  const { c } = vm;
  const v = tegraViommu(vm);
  const q = (value: Record<string, unknown>) =>
    c.call(U.IOMMU_HW_QUEUE_ALLOC, { viommu_id: v.id, type: 1, index: 0, nesting_parent_iova: 0x10_0000n, length: 0x1000n, ...value });

  test('argument checks in the kernel order', () => {
    assert.equal(q({ type: 0 }).ret, -E.EOPNOTSUPP);
    assert.equal(q({ flags: 1 }).ret, -E.EOPNOTSUPP);
    assert.equal(q({ length: 0n }).ret, -E.EINVAL);
    assert.equal(q({ nesting_parent_iova: 0xffff_ffff_ffff_f000n, length: 0x2000n }).ret, -E.EOVERFLOW);
    assert.equal(q({ viommu_id: 999 }).ret, -E.ENOENT);
    assert.equal(q({ nesting_parent_iova: 0x8000_0000n }).ret, -E.ENOENT, 'not mapped in the parent IOAS');
    assert.equal(q({ index: 1 }).ret, -E.EIO, 'ascending order');
    assert.equal(q({ index: 2 }).ret, -E.EINVAL, 'index >= N');
    assert.equal(q({ length: 0x1800n }).ret, -E.EINVAL, 'not a power of two');
    assert.equal(q({ length: 16n }).ret, -E.EINVAL, 'below 32 bytes');
    assert.equal(q({ length: BigInt(2 ** 24) }).ret, -E.EINVAL, 'above 2^(CMDQS+4)');
    assert.equal(q({ nesting_parent_iova: 0x10_0800n }).ret, -E.EINVAL, 'base not aligned to length');
  });

  test('allocation order, pinning, dependency and destruction order', () => {
    const q0 = q({});
    assert.equal(q0.ret, 0);
    assert.equal(q({}).ret, -E.EEXIST);
    const hw = kernel.smmus.get('smmu0')!.cmdqvHw!;
    // VINTF1 logical 0 = global VCMDQ 2: mapped, BASE written, not enabled.
    assert.equal(hw.read(0x200 + 4 * 2, 4), (1 << 15) | 1);
    const basePa = Number(hw.read64(0x20000 + 0x80 * 2) & ~0x1fn);
    assert.equal(basePa, c.proc.mem.translate(vm.ramVa + 0x10_0000), 'BASE = host PA of the ring');
    assert.equal(Number(hw.read64(0x20000 + 0x80 * 2) & 0x1fn), 8, 'LOG2SIZE = log2(4096) - 4');
    assert.equal(hw.read(0x10000 + 0x80 * 2 + 8, 4), 0, 'left disabled for the guest');
    assert.equal(c.call(U.IOMMU_IOAS_UNMAP, { ioas_id: vm.ioasId, iova: 0n, length: BigInt(vm.ramBytes) }).ret, -E.EBUSY, 'pinned');
    const q1 = q({ index: 1, nesting_parent_iova: 0x20_0800n, length: 0x800n });
    assert.equal(q1.ret, 0, 'unaligned-in-page queue is fine if aligned to its length');
    assert.equal(c.call(U.IOMMU_DESTROY, { id: q0.out.out_hw_queue_id as number }).ret, -E.EBUSY, 'queue 1 depends on 0');
    assert.equal(c.call(U.IOMMU_DESTROY, { id: v.id }).ret, -E.EBUSY);
    assert.equal(c.call(U.IOMMU_DESTROY, { id: q1.out.out_hw_queue_id as number }).ret, 0);
    assert.equal(c.call(U.IOMMU_DESTROY, { id: q0.out.out_hw_queue_id as number }).ret, 0);
    assert.equal(hw.read(0x200 + 4 * 2, 4) & 1, 0, 'unmapped');
  });

  test('a queue in memory that is not physically contiguous is EFAULT', () => {
    const k2 = new HostKernel();
    const vm2 = makeVm(k2, 0, 2 ** 22, false); // 4 KiB pages, scattered
    const v2 = tegraViommu(vm2);
    const r = vm2.c.call(U.IOMMU_HW_QUEUE_ALLOC, { viommu_id: v2.id, type: 1, index: 0, nesting_parent_iova: 0x10000n, length: 0x2000n });
    assert.equal(r.ret, -E.EFAULT);
    const one = vm2.c.call(U.IOMMU_HW_QUEUE_ALLOC, { viommu_id: v2.id, type: 1, index: 0, nesting_parent_iova: 0x10000n, length: 0x1000n });
    assert.equal(one.ret, 0, 'a single page is contiguous');
  });
});

describe('lifetimes (viommu_auto_destroy, vdevice_tombstone)', () => {
  test('closing the iommufd releases the VINTF, its queues and SIDs once the last mapping and bound device are gone', () => {
    const kernel = new HostKernel();
    const hw = kernel.smmus.get('smmu0')!.cmdqvHw!;
    const vm = makeVm(kernel, 0, 2 ** 30);
    const v = tegraViommu(vm);
    vm.c.ok(U.IOMMU_VDEVICE_ALLOC, { viommu_id: v.id, dev_id: vm.devId, virt_id: 0x99n });
    vm.c.ok(U.IOMMU_HW_QUEUE_ALLOC, { viommu_id: v.id, type: 1, index: 0, nesting_parent_iova: 0x10_0000n, length: 0x1000n });
    const va = vm.c.mmap(0x10000, v.offset);
    assert.equal(hw.read(0x1100, 4) & 1, 1);
    assert.equal(vm.c.proc.close(vm.c.fd), 0);
    assert.equal(hw.read(0x1100, 4) & 1, 1, 'still mapped: the file is not released yet');
    assert.equal(vm.c.proc.munmap(va, 0x10000), 0);
    assert.equal(hw.read(0x1100, 4) & 1, 1, 'the bound device (its VFIO file) still holds the context');
    assert.equal(vm.c.proc.close(vm.vfio), 0);
    assert.equal(hw.read(0x1100, 4), 0, 'VINTF disabled');
    assert.equal(hw.read(0x1140, 4), 0, 'SID pair cleared');
    assert.equal(hw.read(0x200 + 4 * 2, 4) & 1, 0, 'queue unmapped');
    // The VINTF is free again for another VM.
    const vm2 = makeVm(kernel, 1, 2 ** 30);
    const v2 = tegraViommu(vm2);
    assert.equal(v2.ret, 0);
    assert.equal(hw.read(0x1100, 4) & 1, 1, 'VINTF1 reused');
  });

  test('unbinding the device destroys its vDEVICE and leaves a tombstone id (ENOENT)', () => {
    const kernel = new HostKernel();
    const vm = makeVm(kernel, 0, 2 ** 22, false);
    const v = tegraViommu(vm);
    const vd = vm.c.ok(U.IOMMU_VDEVICE_ALLOC, { viommu_id: v.id, dev_id: vm.devId, virt_id: 0x99n }).out_vdevice_id as number;
    assert.equal(vm.c.proc.close(vm.vfio), 0);
    assert.equal(vm.c.call(U.IOMMU_DESTROY, { id: vd }).ret, -E.ENOENT);
    assert.equal(vm.c.call(U.IOMMU_DESTROY, { id: v.id }).ret, 0, 'the vIOMMU is free to go');
  });
});
