// What a host hands out to its VMs, read from its kernel's resource accounting: after every VM
// on it closed, this equals a fresh host's (issue 14 section 3: "nothing leaks"). Also the hosts
// and command lines the multi-VM tests build.
import { DEFAULT_HOST, type HostConfig } from '../../src/host/config.js';
import type { HostKernel } from '../../src/host/kernel/host-kernel.js';

/** VINTFs, HW queues (and the CMDQ_ALLOC_MAP), SID pairs, VMIDs, pages, bound devices of smmu0. */
export function hostResources(host: HostKernel): Record<string, number | string> {
  const smmu = host.smmus.get('smmu0')!;
  const allocMap = [];
  for (let q = 0; q < 128; q++) allocMap.push(smmu.cmdqvHw!.read(0x200 + 4 * q, 4)); // CMDQ_ALLOC_MAP
  const use = smmu.cmdqv!.inUse;
  return {
    vintfs: use.vintfs,
    queues: use.queues,
    sidPairs: use.sidPairs,
    vmids: smmu.driver.vmidsInUse,
    kernelBytes: host.phys.kernelBytesInUse,
    userBytes: host.phys.userBytesInUse,
    allocMap: allocMap.join(','),
    boundDevices: host.devices.filter((d) => d.binding !== undefined).length,
  };
}

/** A Grace-like host with `n` assignable devices behind its one SMMU (128 GiB: 64 VMs of 1 GiB). */
export function hostWith(n: number): HostConfig {
  const devices = Array.from({ length: n }, (_, i) => ({ bdf: `0009:${(1 + (i >> 3)).toString(16).padStart(2, '0')}:${(i & 7).toString(16).padStart(2, '0')}.0`, sid: 0x100 + i, smmu: 'smmu0' }));
  return { ...DEFAULT_HOST, ramBytes: 128 * 2 ** 30, devices };
}

/** A VM with one accelerated SMMUv3 (CMDQV `cmdqv`) and the host device `bdf`. */
export function argsFor(bdf: string, mem = '1G', cmdqv = 'on'): string[] {
  return [
    '-m', mem, '-object', 'iommufd,id=iommufd0',
    '-device', `arm-smmuv3,primary-bus=pcie.0,accel=on,cmdqv=${cmdqv},identifier=1`,
    '-device', `vfio-pci,host=${bdf},iommufd=iommufd0`,
  ];
}
