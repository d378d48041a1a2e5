// What a host hands out to its VMs, read from its kernel's resource accounting: after every VM
// on it closed, this equals a fresh host's (issue 14 section 3: "nothing leaks").
import type { HostKernel } from '../../src/host/kernel/host-kernel.js';

/** VINTFs, HW queues, SID pairs, VMIDs, kernel and user pages, bound devices of `host`'s smmu0. */
export function hostResources(host: HostKernel): Record<string, number> {
  const smmu = host.smmus.get('smmu0')!;
  const use = smmu.cmdqv!.inUse;
  return {
    vintfs: use.vintfs,
    queues: use.queues,
    sidPairs: use.sidPairs,
    vmids: smmu.driver.vmidsInUse,
    kernelBytes: host.phys.kernelBytesInUse,
    userBytes: host.phys.userBytesInUse,
    boundDevices: host.devices.filter((d) => d.binding !== undefined).length,
  };
}
