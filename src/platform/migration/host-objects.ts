/**
 * The host objects a VM's accelerated SMMUs stand on — the part of a CMDQV VM that lives in the
 * host and has to be re-created on a migration's destination: per vIOMMU its VINTF (a host-wide
 * index), the stage-2 VMID, the HW queues (iommufd object ids, and the global VCMDQ of the
 * silicon each logical queue got) and the vDEVICEs. Read from the host kernel's objects of the
 * VMM's iommufd context, as `cat /sys/kernel/debug/...` would show an administrator.
 */

import { ViommuObj } from '../../host/iommufd/objects.js';
import { Smmuv3S2Domain } from '../../host/kernel/arm-smmu-v3-iommufd.js';
import { Tegra241CmdqvViommu } from '../../host/kernel/tegra241-cmdqv-iommufd.js';
import type { Machine } from '../machine.js';

/** One HW queue: logical VCMDQ, its iommufd object id, the global VCMDQ behind it. */
export interface HwQueueInfo {
  readonly lvcmdq: number;
  readonly id: number;
  readonly vcmdq: number | undefined;
}

/** What one accelerated SMMU of a VM holds on its host. */
export interface SmmuHostObjects {
  /** The VMM's SMMU (`id=` of its -device). */
  readonly smmu: string;
  readonly viommuId: number;
  /** User VINTF index on the host CMDQV (undefined without CMDQV). */
  readonly vintf: number | undefined;
  readonly vmid: number | undefined;
  readonly hwQueues: readonly HwQueueInfo[];
  /** vDEVICEs: guest StreamID → iommufd object id. */
  readonly vdevices: readonly { readonly virtId: number; readonly id: number }[];
}

/** The host objects of every accelerated SMMU of `m` that has a vIOMMU. */
export function hostObjects(m: Machine): SmmuHostObjects[] {
  const out: SmmuHostObjects[] = [];
  for (const s of m.smmus) {
    const viommuId = s.cmdqv?.viommuId ?? s.dev.viommuId;
    const dev = m.devices.find((d) => d.smmu === s);
    const backend = dev?.opts.iommufd === undefined ? undefined : m.backends.get(dev.opts.iommufd);
    if (viommuId === undefined || !backend) continue;
    const obj = m.proc.iommufdOf(backend.fd)?.lookup(viommuId);
    if (!(obj instanceof ViommuObj)) continue;
    const ops = obj.ops;
    const vintf = ops instanceof Tegra241CmdqvViommu ? ops.vintf : undefined;
    const domain = obj.parent.domain;
    const hwQueues = [...obj.hwQueues.values()]
      .map((q) => ({ lvcmdq: q.index, id: q.id, vcmdq: vintf?.queues[q.index] }))
      .sort((a, b) => a.lvcmdq - b.lvcmdq);
    const vdevices = [...obj.vdevices.values()].map((v) => ({ virtId: Number(v.virtId), id: v.id })).sort((a, b) => a.virtId - b.virtId);
    out.push({
      smmu: s.dev.props.id,
      viommuId,
      vintf: vintf?.index,
      vmid: domain instanceof Smmuv3S2Domain ? domain.vmid : undefined,
      hwQueues,
      vdevices,
    });
  }
  return out;
}
