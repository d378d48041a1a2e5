// Regression tests for issue 14 findings #6, #7, #10 and #12 (HWPT_INVALIDATE part): a bad
// argument gets the kernel's errno (never a JS exception), a vEVENT survives a faulting read,
// and the iommufd context lives as long as a bound device or an open vEVENTQ fd references it.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildCommand, Op } from '../../src/arch/smmuv3/commands.js';
import { HostKernel } from '../../src/host/kernel/host-kernel.js';
import { Errno } from '../../src/uapi/errno.js';
import * as U from '../../src/uapi/iommufd.js';
import { mmapAnonymous } from '../../src/uapi/syscalls.js';
import { makeVm, type VmSetup } from './uapi-client.js';
import { nestedGuest } from './nested-guest.js';

const E = Errno;
const TEGRA = U.iommu_viommu_type.IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV;

function tegraViommu(vm: VmSetup): { id: number; offset: number } {
  const data = vm.c.alloc(16);
  const out = vm.c.ok(U.IOMMU_VIOMMU_ALLOC, { type: TEGRA, dev_id: vm.devId, hwpt_id: vm.s2Id, data_len: 16, data_uptr: BigInt(data) });
  const info = U.iommu_viommu_tegra241_cmdqv.decode(vm.c.proc.mem.copyFromUser(data, 16));
  return { id: out.out_viommu_id as number, offset: Number(info.out_vintf_mmap_offset) };
}

describe('IOMMU_HWPT_INVALIDATE with extreme array sizes (issue 14 #6, #12)', () => {
  const kernel = new HostKernel();
  const vm = makeVm(kernel, 0, 2 ** 22, false);
  const { c } = vm;
  const viommu = tegraViommu(vm).id;
  // The array page is the process's last mapping: past it (a guard page) nothing is mapped.
  const arrayPage = mmapAnonymous(c.proc, 4096);
  c.proc.mem.copyToUser(arrayPage, new Uint8Array(buildCommand(Op.TLBI_NH_ASID, { asid: 1 }).buffer));
  const inv = (v: Record<string, unknown>) =>
    c.call(U.IOMMU_HWPT_INVALIDATE, { hwpt_id: viommu, data_uptr: BigInt(arrayPage), data_type: 1, entry_len: 16, entry_num: 1, ...v });

  test('entry_num 0xffffffff: ENOMEM from the kernel allocation, entry_num left as given', () => {
    const r = inv({ entry_num: 0xffff_ffff });
    assert.deepEqual([r.ret, r.out.entry_num], [-E.ENOMEM, 0xffff_ffff]);
  });

  test('entry_len 0xffffffff: the tail check runs off the mapping (EFAULT), no allocation of its size', () => {
    const r = inv({ entry_len: 0xffff_ffff });
    assert.deepEqual([r.ret, r.out.entry_num], [-E.EFAULT, 0]);
  });

  test('entry_len 2^28 with entry_num 4096: EFAULT', () => {
    const r = inv({ entry_len: 2 ** 28, entry_num: 4096 });
    assert.deepEqual([r.ret, r.out.entry_num], [-E.EFAULT, 0]);
  });

  test('a longer entry with a non-zero byte before the fault is E2BIG', () => {
    c.proc.mem.copyToUser(arrayPage + 100, new Uint8Array([1]));
    const r = inv({ entry_len: 0xffff_ffff });
    c.proc.mem.copyToUser(arrayPage + 100, new Uint8Array([0]));
    assert.deepEqual([r.ret, r.out.entry_num], [-E.E2BIG, 0]);
  });

  test('entry_num is written back as 0 on every early error path', () => {
    const cases: [Record<string, unknown>, number][] = [
      [{ __reserved: 1, entry_num: 7 }, E.EOPNOTSUPP],
      [{ data_uptr: 0n, entry_num: 7 }, E.EINVAL],
      [{ entry_len: 0, entry_num: 7 }, E.EINVAL],
      [{ hwpt_id: 999, entry_num: 7 }, E.ENOENT],
      [{ hwpt_id: vm.s2Id, entry_num: 7 }, E.EINVAL],
      [{ data_type: 0, entry_num: 7 }, E.EINVAL],
      [{ data_uptr: 8n, entry_num: 7 }, E.EFAULT],
    ];
    for (const [v, errno] of cases) {
      const r = inv(v);
      assert.deepEqual([r.ret, r.out.entry_num], [-errno, 0], JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? x.toString() : x)));
    }
  });

  test('a struct size of 0xffffffff is checked in place (EFAULT past the mapping), not copied whole', () => {
    const va = c.put(U.iommu_destroy.encode({ size: 0xffff_ffff, id: 999 }));
    assert.equal(c.proc.ioctl(c.fd, U.IOMMU_DESTROY.number, va), -E.EFAULT);
  });

  test('GET_HW_INFO with data_len 0xffffffff clears up to the fault and returns EFAULT', () => {
    const r = c.call(U.IOMMU_GET_HW_INFO, { dev_id: vm.devId, data_len: 0xffff_ffff, data_uptr: BigInt(arrayPage + 4096 - 64) });
    assert.equal(r.ret, -E.EFAULT);
  });
});

describe('vEVENTQ read into a bad buffer (issue 14 #7)', () => {
  test('the event stays queued: EFAULT, then the next read returns it', () => {
    const kernel = new HostKernel();
    const vm = makeVm(kernel, 0);
    const g = nestedGuest(vm);
    g.vcmdq.enable();
    g.vcmdq.submit(buildCommand(Op.CFGI_STE_RANGE, { range: 31 })); // not a guest command: one vEVENT
    assert.equal(vm.c.proc.read(g.cmdqvFd, 8, 256), -E.EFAULT);
    const ev = g.cmdqvEvents();
    assert.equal(ev.length, 8 + 16, 'the event was put back at the head');
    assert.deepEqual(U.iommu_vevent_tegra241_cmdqv.decode(ev, 8).lvcmdq_err_map, [1n, 0n]);
    assert.equal(g.cmdqvEvents().length, 0);
  });
});

describe('close(iommufd) with a bound device and an open vEVENTQ (issue 14 #10)', () => {
  test('nothing is released until the VFIO file and the vEVENTQ fd close too', () => {
    const kernel = new HostKernel();
    const hw = kernel.smmus.get('smmu0')!.cmdqvHw!;
    const vm = makeVm(kernel, 0, 2 ** 30);
    const g = nestedGuest(vm);
    const { c } = vm;
    assert.equal(hw.read(0x1100, 4) & 1, 1);
    assert.equal(c.proc.munmap(g.page0, 0x10000), 0);
    assert.equal(c.proc.close(c.fd), 0);
    assert.equal(hw.read(0x1100, 4) & 1, 1, 'the bound device holds the context: the VINTF stays');
    assert.equal(hw.read(0x1140, 4) & 1, 1, 'the vDEVICE SID pair stays');
    // The VFIO file still reaches the context: re-attaching to the nested HWPT works.
    assert.equal(c.attach(vm.vfio, g.nested), 0);
    assert.equal(c.proc.close(g.smmuFd), 0);
    assert.equal(c.proc.close(vm.vfio), 0);
    assert.equal(hw.read(0x1100, 4) & 1, 1, 'the open vEVENTQ fd still holds the context');
    assert.equal(hw.read(0x1140, 4) & 1, 0, 'unbinding the device destroyed its vDEVICE');
    assert.equal(c.proc.close(g.cmdqvFd), 0);
    assert.equal(hw.read(0x1100, 4), 0, 'the last reference released the VINTF');
    assert.equal(hw.read(0x200 + 4 * 2, 4) & 1, 0, 'and its queue');
  });

  test('closing the VFIO file first, then the iommufd, releases at the iommufd close', () => {
    const kernel = new HostKernel();
    const hw = kernel.smmus.get('smmu0')!.cmdqvHw!;
    const vm = makeVm(kernel, 0, 2 ** 30);
    tegraViommu(vm);
    assert.equal(vm.c.proc.close(vm.vfio), 0);
    assert.equal(hw.read(0x1100, 4) & 1, 1);
    assert.equal(vm.c.proc.close(vm.c.fd), 0);
    assert.equal(hw.read(0x1100, 4), 0);
  });
});
