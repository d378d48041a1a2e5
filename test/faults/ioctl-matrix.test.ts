// Fault injection at every ioctl call site (issue 14 section 3): every ioctl the VMM issues in a
// default machine's life (create, workload, reset, workload again) fails once, at each call site,
// with each errno the kernel can return there. For every cell: no JS exception escapes but a
// clean OptionError at creation (QEMU refusing to start) or WorkloadError; the VMM reports the
// failure with the errno's text; the guest sees the architected result (INIT_ERR on the VCMDQ
// whose HW queue failed, CERROR_ILL where a forwarded command failed, aborted DMA where an STE
// could not be installed, never a stale translation); a reset brings the machine back; and after
// close the shared host has every VINTF, HW queue, SID pair, VMID and page back.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as C from '../../src/arch/tegra241-cmdqv/registers.js';
import { instanceOffset } from '../../src/kit/registers.js';
import { parseFaultSpecs } from '../../src/platform/fault-injection.js';
import { HostKernel, Machine, OptionError } from '../../src/platform/machine.js';
import { runWorkload, WorkloadError, type WorkloadOptions, type WorkloadReport } from '../../src/platform/workload.js';
import { Errno } from '../../src/uapi/errno.js';
import { strerror } from '../../src/vmm/backends/iommufd.js';
import * as VmmRegs from '../../src/vmm/tegra241-cmdqv/registers.js';
import { hostResources } from './host-balance.js';

const WORKLOAD: WorkloadOptions = { ops: 4, batch: 4, pages: 1, injectError: true, skipInvalidation: false };

/** Every ioctl can fail with these (out of memory, a busy or bad object, a bad pointer, no room). */
const COMMON = ['ENOMEM', 'EBUSY', 'EFAULT', 'ENOSPC', 'EINVAL', 'ENOTTY'] as const;
/**
 * The other errnos the kernel returns for each ioctl: docs/reference/iommufd-uapi.md §4–§13
 * (ENOTTY above: a kernel without the ioctl, §2.1) and, for the VFIO cdev ioctls, §15.
 */
const EXTRA: Record<string, readonly (keyof typeof Errno)[]> = {
  VFIO_DEVICE_BIND_IOMMUFD: ['EBADF', 'EPERM', 'ENODEV'],
  VFIO_DEVICE_ATTACH_IOMMUFD_PT: ['ENOENT', 'ENODEV'],
  IOMMU_IOAS_ALLOC: ['EOPNOTSUPP'],
  IOMMU_IOAS_MAP: ['EOPNOTSUPP', 'EOVERFLOW', 'ENOENT', 'EEXIST'],
  IOMMU_HWPT_ALLOC: ['EOPNOTSUPP', 'ENOENT', 'EIO'],
  IOMMU_GET_HW_INFO: ['ENOENT', 'EOPNOTSUPP'],
  IOMMU_VIOMMU_ALLOC: ['EOPNOTSUPP', 'ENOENT', 'ETIMEDOUT'],
  IOMMU_VDEVICE_ALLOC: ['ENOENT', 'EEXIST'],
  IOMMU_HW_QUEUE_ALLOC: ['EOPNOTSUPP', 'EOVERFLOW', 'ENOENT', 'ERANGE', 'EPERM', 'EEXIST', 'EIO'],
  IOMMU_VEVENTQ_ALLOC: ['EOPNOTSUPP', 'ENOENT', 'EEXIST'],
  IOMMU_HWPT_INVALIDATE: ['EOPNOTSUPP', 'ENOENT', 'E2BIG', 'EIO', 'ETIMEDOUT'],
  IOMMU_DESTROY: ['ENOENT'],
};

const GERROR = instanceOffset(VmmRegs.P0_GERROR);
const INIT_ERR = VmmRegs.P0_GERROR.f.CMDQ_INIT_ERR.wordMask(0);

/** The machine's life each cell runs: workload, reset, workload. Returns both reports. */
function life(m: Machine): { before: WorkloadReport; firedBefore: boolean; after: WorkloadReport; vcmdqInitErr: boolean[] } {
  const before = runWorkload(m, WORKLOAD);
  const firedBefore = (m.faults?.injected.length ?? 0) > 0;
  const vcmdqInitErr = initErr(m);
  m.reset();
  const after = runWorkload(m, WORKLOAD);
  return { before, firedBefore, after, vcmdqInitErr: firedBefore ? vcmdqInitErr : initErr(m) };
}

/** GERROR.CMDQ_INIT_ERR of each VCMDQ, read as the guest reads it (trapped, direct aperture). */
function initErr(m: Machine): boolean[] {
  const base = m.smmus[0]!.cmdqvBase!;
  return Array.from({ length: VmmRegs.VCMDQS }, (_, i) => (Number(m.read(base + C.vcmdqPage0Offset(i) + GERROR, 4).value) & INIT_ERR) !== 0);
}

/** Every message the VMM reported (QEMU's error_report): the SMMU's and the CMDQV's. */
function vmmErrors(m: Machine): string[] {
  const s = m.smmus[0]!;
  return [...s.dev.hostErrors, ...(s.cmdqv?.errors ?? [])];
}

/** The guest's SMMU probe succeeded and the device took part with every DMA check right. */
function healthy(r: WorkloadReport): boolean {
  return r.devices.length === 1 && r.dmaChecks.failed === 0 && r.errors.smmuCerrorsSkipped === 0;
}

test('every ioctl the VMM issues fails once at each call site with each errno: reported as QEMU does, architected for the guest, nothing leaks', () => {
  const host = new HostKernel();
  const fresh = hostResources(host);
  // The call sites: a machine's life with a fault that never fires, counting every call.
  const reference = Machine.create([], { host, inject: parseFaultSpecs('ioctl=IOMMU_DESTROY:EINVAL:1000000') });
  const ref = life(reference);
  assert.ok(healthy(ref.before) && healthy(ref.after), 'the reference life is healthy');
  const sites = [...reference.faults!.callCounts].flatMap(([key, n]) => (key.startsWith('ioctl ') ? [[key.slice(6), n] as const] : []));
  reference.close();
  assert.deepEqual(hostResources(host), fresh);
  assert.deepEqual(
    sites.map(([name]) => name).sort(),
    Object.keys(EXTRA).sort(),
    'the errno table names exactly the ioctls the VMM issues',
  );

  const t0 = performance.now();
  let cells = 0;
  let refused = 0;
  for (const [name, occurrences] of sites) {
    for (let nth = 1; nth <= occurrences; nth++) {
      for (const errnoName of [...COMMON, ...EXTRA[name]!]) {
        cells++;
        const spec = `ioctl=${name}:${errnoName}:${nth}`;
        const text = strerror(Errno[errnoName]);
        let m: Machine;
        try {
          m = Machine.create([], { host, inject: parseFaultSpecs(spec) });
        } catch (e) {
          // QEMU refuses to start, naming the failure; the failed start left nothing behind.
          assert.ok(e instanceof OptionError, `${spec}: ${(e as Error).stack}`);
          assert.ok(e.message.includes(text), `${spec}: "${e.message}" names ${text}`);
          assert.deepEqual(hostResources(host), fresh, `${spec}: a refused start leaks nothing`);
          refused++;
          continue;
        }
        try {
          const { before, firedBefore, after, vcmdqInitErr } = life(m);
          assert.equal(m.faults!.injected.length, 1, `${spec}: fired once`);
          const hit = firedBefore ? before : after;
          assert.ok(
            vmmErrors(m).some((msg) => msg.includes(text)),
            `${spec}: the VMM reports ${text} (got ${JSON.stringify(vmmErrors(m))})`,
          );
          // Never a stale translation: a device either reaches a mapped buffer or aborts.
          assert.equal(before.dmaChecks.staleHits + after.dmaChecks.staleHits, 0, `${spec}: no stale DMA`);
          if (name === 'IOMMU_HW_QUEUE_ALLOC') {
            // The VCMDQ reads CMDQ_INIT_ERR; the guest's CMDQV cannot start and its SMMU probe
            // fails (Linux), so the device is not used.
            // Queues are allocated 0 then 1 on each enable, and setup stops at the first failure.
            const failed = Array.from({ length: VmmRegs.VCMDQS }, (_, i) => i === (nth - 1) % VmmRegs.VCMDQS);
            assert.deepEqual(vcmdqInitErr, failed, `${spec}: that VCMDQ (only) reads CMDQ_INIT_ERR`);
            assert.ok(hit.dmesg.some((l) => /probe failed/.test(l)), `${spec}: the guest probe fails`);
            assert.equal(hit.devices.length, 0, `${spec}: the device is unusable`);
          } else if (name === 'IOMMU_HWPT_INVALIDATE') {
            // The forwarded command stops the guest's command queue with CERROR_ILL; the guest skips it.
            assert.ok(hit.errors.smmuCerrorsSkipped >= 1, `${spec}: the guest saw CERROR_ILL`);
          } else {
            assert.equal(hit.devices.length, 1, `${spec}: the guest probe succeeds`);
          }
          // A reset after the fault brings the machine back in full.
          if (firedBefore) assert.ok(healthy(after), `${spec}: healthy after reset (${JSON.stringify(after.dmaChecks)} ${JSON.stringify(after.errors)})`);
        } catch (e) {
          if (e instanceof WorkloadError) assert.ok(e.message.length > 0);
          else throw e;
        } finally {
          m.close();
        }
        assert.deepEqual(hostResources(host), fresh, `${spec}: the host has everything back after close`);
      }
    }
  }
  const siteCount = sites.reduce((n, [, k]) => n + k, 0);
  console.log(`fault matrix: ${sites.length} ioctls, ${siteCount} call sites, ${cells} cells (${refused} refused at start), ${Math.round(performance.now() - t0)} ms`);
});
