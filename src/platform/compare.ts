/**
 * `cmdqv run --compare`: one topology, three invalidation paths (issue 11 §5).
 * - emulated: QEMU's emulated SMMUv3 (accel=off) — every invalidation and every translation in
 *   the VMM; the passthrough devices become iommu-testdev DMA masters at the same bus and slot
 *   (QEMU refuses vfio-pci behind an emulated SMMUv3);
 * - trapped: the accelerated SMMUv3 without CMDQV — invalidations trap and become ioctls;
 * - cmdqv: accelerated + CMDQV — guest-owned invalidations go to the VCMDQ without an exit.
 * This module derives the three command lines from one; the run and the side-by-side report
 * are in the workload.
 */

import { parseKeyval } from '../vmm/virt/options.js';

/** The three paths, in report order. */
export const COMPARE_PATHS = ['emulated', 'trapped', 'cmdqv'] as const;
export type ComparePath = (typeof COMPARE_PATHS)[number];

/** Properties an emulated (accel=off) SMMUv3 does not take (QEMU refuses them). */
const ACCEL_ONLY = ['accel', 'cmdqv', 'ats', 'ril', 'ssidsize', 'oas'];

function joinKeyval(driver: string, kv: ReadonlyMap<string, string>): string {
  return [driver, ...[...kv].filter(([k]) => k !== 'driver').map(([k, v]) => `${k}=${v.replace(/,/g, ',,')}`)].join(',');
}

/** The line for one path (`argv`: a QEMU line with accelerated SMMUs and vfio-pci devices). */
export function lineFor(argv: readonly string[], path: ComparePath): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = argv[i + 1];
    const opt = a.startsWith('--') ? a.slice(1) : a;
    if (next === undefined || (opt !== '-device' && opt !== '-object' && opt !== '-global')) {
      out.push(a);
      continue;
    }
    i++;
    if (opt === '-global') {
      // -global arm-smmuv3.cmdqv=on and friends: accel-only, dropped for the emulated SMMU.
      const m = /^arm-smmuv3\.([^=]+)=/.exec(next);
      if (path === 'emulated' && m && ACCEL_ONLY.includes(m[1]!)) continue;
      out.push(a, next);
      continue;
    }
    const kv = parseKeyval(next, opt === '-device' ? 'driver' : 'qom-type');
    if (opt === '-object') {
      if (path === 'emulated' && kv.get('qom-type') === 'iommufd') continue;
      out.push(a, next);
      continue;
    }
    const driver = kv.get('driver');
    if (driver === 'arm-smmuv3') {
      if (path === 'emulated') for (const k of ACCEL_ONLY) kv.delete(k);
      else {
        kv.set('accel', 'on');
        kv.set('cmdqv', path === 'cmdqv' ? 'on' : 'off');
      }
      out.push(a, joinKeyval('arm-smmuv3', kv));
    } else if (driver === 'vfio-pci' && path === 'emulated') {
      const td = new Map<string, string>();
      for (const k of ['id', 'bus', 'addr']) if (kv.has(k)) td.set(k, kv.get(k)!);
      out.push(a, joinKeyval('iommu-testdev', td));
    } else out.push(a, next);
  }
  return out;
}
