// Host memory lifetime through the uAPI: pinned user pages outlive munmap until IOAS_UNMAP,
// kernel-zone allocations (page tables) are returned, a failed mmap takes nothing, and the
// IOAS_MAP / IOAS_UNMAP errnos of docs/reference/iommufd-uapi.md §12.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DEFAULT_HOST, type HostConfig } from '../../src/host/config.js';
import { HostKernel } from '../../src/host/kernel/host-kernel.js';
import type { Process } from '../../src/host/kernel/process.js';
import { DEFAULT_ARGS, Machine } from '../../src/platform/machine.js';
import { Errno } from '../../src/uapi/errno.js';
import * as U from '../../src/uapi/iommufd.js';
import { MAP_ANONYMOUS, MAP_HUGETLB, MAP_PRIVATE, mmapAnonymous, PROT_READ, PROT_WRITE } from '../../src/uapi/syscalls.js';
import { UapiClient } from './uapi-client.js';

const E = Errno;
const F = U.iommufd_ioas_map_flags;
const MAP_RW = F.IOMMU_IOAS_MAP_READABLE | F.IOMMU_IOAS_MAP_WRITEABLE;
const MAP_RW_FIXED = MAP_RW | F.IOMMU_IOAS_MAP_FIXED_IOVA;
const PAGE = 4096;
const GIB = 2 ** 30;
const U64_MAX = 0xffff_ffff_ffff_ffffn;
/** A 1 GiB host (the kernel zone is 64 MiB) with 4 KiB pages only. */
const SMALL_HOST: HostConfig = { ...DEFAULT_HOST, ramBytes: GIB, hugepages: false };

/** A process with an IOAS, device `devIndex` bound and attached to a paging HWPT on the IOAS. */
function attachedProcess(kernel: HostKernel, devIndex: number): { c: UapiClient; vfio: number; ioasId: number; hwptId: number } {
  const c = new UapiClient(kernel.createProcess());
  const { vfio, devId } = c.bind(devIndex);
  const ioasId = c.ok(U.IOMMU_IOAS_ALLOC, {}).out_ioas_id as number;
  const hwptId = c.ok(U.IOMMU_HWPT_ALLOC, { dev_id: devId, pt_id: ioasId }).out_hwpt_id as number;
  assert.equal(c.attach(vfio, hwptId), 0);
  return { c, vfio, ioasId, hwptId };
}

function mapFixed(c: UapiClient, ioasId: number, va: number, length: number, iova: number): number {
  return c.call(U.IOMMU_IOAS_MAP, { flags: MAP_RW_FIXED, ioas_id: ioasId, user_va: BigInt(va), length: BigInt(length), iova: BigInt(iova) }).ret;
}

function unmap(c: UapiClient, ioasId: number, iova: bigint, length: bigint): { ret: number; length: bigint } {
  const r = c.call(U.IOMMU_IOAS_UNMAP, { ioas_id: ioasId, iova, length });
  return { ret: r.ret, length: r.out.length as bigint };
}

function fill(proc: Process, va: number, length: number, byte: number): void {
  proc.mem.copyToUser(va, new Uint8Array(length).fill(byte));
}

/** Kernel-zone and user-zone bytes in use on the host. */
function usage(kernel: HostKernel): { kernel: number; user: number } {
  return { kernel: kernel.phys.kernelBytesInUse, user: kernel.phys.userBytesInUse };
}

describe('pinned pages outlive munmap until IOAS_UNMAP (issue 14 #1)', () => {
  for (const huge of [false, true]) {
    const size = huge ? GIB : PAGE;
    test(`a munmapped ${huge ? '1 GiB hugepage' : '4 KiB'} buffer mapped into an attached domain is never handed to another process`, () => {
      const kernel = new HostKernel();
      const before = usage(kernel);
      const a = attachedProcess(kernel, 0);
      const dev = kernel.devices[0]!;
      const bufA = mmapAnonymous(a.c.proc, size, huge);
      fill(a.c.proc, bufA, PAGE, 0xaa);
      const iova = 0x4000_0000;
      assert.equal(mapFixed(a.c, a.ioasId, bufA, size, iova), 0);
      assert.equal(a.c.proc.munmap(bufA, size), 0, 'munmap of pinned memory succeeds (the VA goes away)');

      // Process B takes memory of the same kind and writes a secret into it.
      const b = kernel.createProcess();
      const bufB = mmapAnonymous(b, huge ? GIB : 64 * PAGE, huge);
      fill(b, bufB, huge ? PAGE : 64 * PAGE, 0x5e);

      const read = dev.dmaRead(iova, 16);
      assert.ok(read.ok);
      assert.deepEqual([...read.data!], new Array(16).fill(0xaa), "A's DMA still reads A's pinned page, not B's secret");
      assert.ok(dev.dmaWrite(iova, new Uint8Array(16).fill(0x11)).ok);
      const bBytes = b.mem.copyFromUser(bufB, huge ? PAGE : 64 * PAGE);
      assert.ok(bBytes.every((x) => x === 0x5e), "A's DMA writes never land in B's memory");

      // IOAS_UNMAP drops the last reference: the page goes back to the allocator.
      assert.equal(unmap(a.c, a.ioasId, BigInt(iova), BigInt(size)).ret, 0);
      assert.equal(dev.dmaRead(iova, 16).ok, false, 'unmapped IOVA faults');
      assert.equal(b.munmap(bufB, huge ? GIB : 64 * PAGE), 0);
      assert.equal(a.c.proc.close(a.vfio), 0);
      assert.equal(a.c.proc.close(a.c.fd), 0);
      assert.equal(a.c.proc.munmap(a.c.scratch, 1 << 20), 0);
      assert.deepEqual(usage(kernel), before, 'every page returned');
    });
  }

  test('destroying the last HWPT unpins: a munmapped range then makes a new HWPT_ALLOC fail with EFAULT', () => {
    const kernel = new HostKernel();
    const a = attachedProcess(kernel, 0);
    const buf = mmapAnonymous(a.c.proc, 4 * PAGE);
    assert.equal(mapFixed(a.c, a.ioasId, buf, 4 * PAGE, 0x10_0000), 0);
    const userPinned = kernel.phys.userBytesInUse;
    assert.equal(a.c.proc.munmap(buf, 4 * PAGE), 0);
    assert.equal(kernel.phys.userBytesInUse, userPinned, 'still pinned by the domain');
    assert.equal(a.c.proc.close(a.vfio), 0);
    assert.equal(a.c.call(U.IOMMU_DESTROY, { id: a.hwptId }).ret, 0);
    assert.equal(kernel.phys.userBytesInUse, userPinned - 4 * PAGE, 'the last domain gone: pages unpinned and freed');
    const { devId } = a.c.bind(0);
    assert.equal(a.c.call(U.IOMMU_HWPT_ALLOC, { dev_id: devId, pt_id: a.ioasId }).ret, -E.EFAULT);
  });
});

describe('kernel-zone memory is returned (issue 14 #4)', () => {
  test('9 000 one-page IOAS_MAP/UNMAP pairs leave kernel-zone usage where it started; another VMM still allocates a HWPT', () => {
    const kernel = new HostKernel(SMALL_HOST);
    const a = attachedProcess(kernel, 0);
    const buf = mmapAnonymous(a.c.proc, PAGE);
    const before = kernel.phys.kernelBytesInUse;
    for (let i = 1; i <= 9000; i++) {
      // A fresh 1 GiB region each time: every pair needs new level-2 and level-3 tables.
      const iova = i * GIB;
      assert.equal(mapFixed(a.c, a.ioasId, buf, PAGE, iova), 0);
      assert.equal(unmap(a.c, a.ioasId, BigInt(iova), BigInt(PAGE)).ret, 0);
    }
    assert.equal(kernel.phys.kernelBytesInUse, before);
    const b = attachedProcess(kernel, 1);
    assert.ok(b.hwptId > 0);
  });

  test('HWPT destroy frees every page-table page of its domain', () => {
    const kernel = new HostKernel(SMALL_HOST);
    const before = kernel.phys.kernelBytesInUse;
    const a = attachedProcess(kernel, 0);
    const buf = mmapAnonymous(a.c.proc, 8 * PAGE);
    for (let i = 0; i < 8; i++) assert.equal(mapFixed(a.c, a.ioasId, buf + i * PAGE, PAGE, (i + 1) * GIB), 0);
    assert.ok(kernel.phys.kernelBytesInUse > before);
    assert.equal(a.c.proc.close(a.vfio), 0);
    assert.equal(a.c.call(U.IOMMU_DESTROY, { id: a.hwptId }).ret, 0);
    assert.equal(kernel.phys.kernelBytesInUse, before);
  });
});

describe('a failed mmap takes nothing (issue 14 #5)', () => {
  test('Machine.create with -m 100G on a 64 GiB host fails with ENOMEM; a -m 1G VM on the same host then starts', () => {
    const host = new HostKernel();
    const argv = (mem: string) => DEFAULT_ARGS.map((a, i) => (DEFAULT_ARGS[i - 1] === '-m' ? mem : a));
    const before = usage(host);
    assert.throws(() => Machine.create(argv('100G'), { host }), /-m: cannot allocate .*errno 12/);
    assert.deepEqual(usage(host), before, 'nothing leaked by the failed mmap');
    const m = Machine.create(argv('1G'), { host });
    assert.ok(m.ramBytes === GIB);
  });

  test('mmap beyond the host: hugetlb reserves at mmap time and fails ENOMEM, rolling back; base pages too', () => {
    const kernel = new HostKernel();
    const p = kernel.createProcess();
    const before = usage(kernel);
    const huge = MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB;
    assert.equal(p.mmap(0, 100 * GIB, PROT_READ | PROT_WRITE, huge, -1, 0), -E.ENOMEM);
    assert.deepEqual(usage(kernel), before);
    assert.equal(p.mmap(0, 100 * GIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), -E.ENOMEM);
    assert.deepEqual(usage(kernel), before);
    const va = p.mmap(0, GIB, PROT_READ | PROT_WRITE, huge, -1, 0);
    assert.ok(va > 0);
    assert.equal(p.munmap(va, GIB), 0);
    assert.deepEqual(usage(kernel), before);
  });

  test('hugepages and base pages never overlap, whatever the allocation order', () => {
    const kernel = new HostKernel({ ...DEFAULT_HOST, ramBytes: 8 * GIB });
    const p = kernel.createProcess();
    const small = mmapAnonymous(p, 256 * PAGE);
    const hugeVas: number[] = [];
    for (;;) {
      const va = mmapAnonymous(p, GIB, true);
      if (va < 0) break;
      hugeVas.push(va);
    }
    assert.ok(hugeVas.length > 0);
    const hugeBases = hugeVas.map((va) => p.mem.translate(va));
    for (let i = 0; i < 256; i++) {
      const pa = p.mem.translate(small + i * PAGE);
      assert.ok(hugeBases.every((h) => pa < h || pa >= h + GIB), `page 0x${pa.toString(16)} inside a hugepage`);
    }
  });
});

describe('IOAS_MAP / IOAS_UNMAP errnos as Linux (issue 14 #12, docs/reference/iommufd-uapi.md §12)', () => {
  const kernel = new HostKernel();
  const c = new UapiClient(kernel.createProcess());
  const ioasId = c.ok(U.IOMMU_IOAS_ALLOC, {}).out_ioas_id as number;

  test('UNMAP of length 0 is EINVAL; a range that wraps is EOVERFLOW', () => {
    assert.equal(unmap(c, ioasId, 0x1000n, 0n).ret, -E.EINVAL);
    assert.equal(unmap(c, ioasId, U64_MAX - 0xfffn, 0x2000n).ret, -E.EOVERFLOW);
  });

  test('UNMAP of everything on an empty IOAS succeeds and unmaps nothing', () => {
    const r = unmap(c, ioasId, 0n, U64_MAX);
    assert.equal(r.ret, 0);
    assert.equal(r.length, 0n);
  });

  test('MAP of an unmapped user address without a domain succeeds (pinning is lazy); HWPT_ALLOC then fails EFAULT', () => {
    const unmappedVa = 0x7000_0000_0000;
    assert.equal(mapFixed(c, ioasId, unmappedVa, PAGE, 0x10_0000), 0);
    const { devId } = c.bind(0);
    const before = kernel.phys.kernelBytesInUse;
    assert.equal(c.call(U.IOMMU_HWPT_ALLOC, { dev_id: devId, pt_id: ioasId }).ret, -E.EFAULT);
    assert.equal(kernel.phys.kernelBytesInUse, before, 'the failed HWPT_ALLOC left no page tables behind');
    assert.equal(unmap(c, ioasId, 0x10_0000n, BigInt(PAGE)).ret, 0);
    assert.equal(c.call(U.IOMMU_HWPT_ALLOC, { dev_id: devId, pt_id: ioasId }).ret, 0);
    assert.equal(c.call(U.IOMMU_IOAS_MAP, { flags: MAP_RW, ioas_id: ioasId, user_va: BigInt(unmappedVa), length: BigInt(PAGE) }).ret, -E.EFAULT, 'with a domain, MAP pins now');
  });
});

describe('VM lifecycles return every page (issue 14: held for VINTFs, now for memory)', () => {
  test('1 000 create/destroy cycles through the uAPI leave user and kernel zones where they started', () => {
    const kernel = new HostKernel();
    const before = usage(kernel);
    for (let i = 0; i < 1000; i++) {
      const a = attachedProcess(kernel, i % 2);
      const ram = mmapAnonymous(a.c.proc, GIB, true);
      const small = mmapAnonymous(a.c.proc, 16 * PAGE);
      assert.equal(mapFixed(a.c, a.ioasId, ram, GIB, 0), 0);
      assert.equal(mapFixed(a.c, a.ioasId, small, 16 * PAGE, 2 ** 40 + i * 2 ** 21), 0);
      // Process exit order: the files close, then the address space goes.
      assert.equal(a.c.proc.close(a.vfio), 0);
      assert.equal(a.c.proc.close(a.c.fd), 0);
      assert.equal(a.c.proc.munmap(ram, GIB), 0);
      assert.equal(a.c.proc.munmap(small, 16 * PAGE), 0);
      assert.equal(a.c.proc.munmap(a.c.scratch, 1 << 20), 0);
    }
    assert.deepEqual(usage(kernel), before);
  });
});
