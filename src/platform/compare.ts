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
import { DEFAULT_COST_MODEL, modelLatency, type CostModel, type PathCounts } from './cost-model.js';
import { Machine } from './machine.js';
import { runWorkload, type WorkloadOptions, type WorkloadReport } from './workload.js';

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

/** One path's numbers, side by side with the others. */
export interface CompareColumn {
  readonly path: ComparePath;
  readonly line: readonly string[];
  readonly commands: number;
  /** VM exits of the invalidation work (queue writes, doorbells, CONS polls that trapped). */
  readonly invalidationExits: number;
  readonly vmExits: number;
  readonly ioctls: number;
  /** Device accesses translated by the VMM (the emulated SMMUv3). */
  readonly vmmTranslations: number;
  /** Device accesses translated by the host SMMU (nested: stage 1 in guest memory, stage 2 the VMM's). */
  readonly hostTranslations: number;
  /** Modelled invalidation latency per map/DMA/unmap operation (cost model), ns. */
  readonly latencyPerOpNs: number;
  readonly dmaPassed: number;
  readonly dmaFailed: number;
}

/**
 * The cost model's event counts of a workload run of `ops` operations per device: its
 * invalidations on both paths together (a run takes one of them).
 */
export function reportPathCounts(r: WorkloadReport, ops: number): PathCounts {
  return {
    operations: ops * r.devices.length,
    commands: r.vcmdq.commands + r.smmuCmdq.commands,
    syncs: r.vcmdq.batches + r.smmuCmdq.batches,
    exits: r.vcmdq.exits + r.smmuCmdq.exits,
    ioctls: r.vcmdq.ioctls + r.smmuCmdq.ioctls,
    directAccesses: r.directAccesses,
  };
}

/**
 * Run `o` on each path's machine. The emulated path's cost excludes its translations (the
 * cost model prices invalidations), which the translation columns show instead.
 */
export function runCompare(argv: readonly string[], o: WorkloadOptions, model: CostModel = DEFAULT_COST_MODEL): CompareColumn[] {
  return COMPARE_PATHS.map((path) => {
    const line = lineFor(argv, path);
    const m = Machine.create(line);
    try {
      const r = runWorkload(m, { ...o, injectError: false });
      const counts = reportPathCounts(r, o.ops);
      let host = 0;
      for (const s of m.host.smmus.values()) host += s.hw.stats.translations;
      return {
        path,
        line,
        commands: counts.commands,
        invalidationExits: counts.exits,
        vmExits: r.exits,
        ioctls: r.ioctls.total ?? 0,
        vmmTranslations: m.emulatedSmmus.reduce((n, e) => n + e.device.stats.translations, 0),
        hostTranslations: host,
        latencyPerOpNs: modelLatency(counts, model).perOpNs,
        dmaPassed: r.dmaChecks.passed,
        dmaFailed: r.dmaChecks.failed,
      };
    } finally {
      m.close();
    }
  });
}

/** The side-by-side table as cells: a header row, then one row per measure (the web view shows it too). */
export function compareTable(cols: readonly CompareColumn[]): string[][] {
  const head = ['', 'emulated SMMUv3', 'accel, trapped', 'accel + CMDQV'];
  const rows: [string, (c: CompareColumn) => string][] = [
    ['invalidation commands', (c) => String(c.commands)],
    ['VM exits for invalidations', (c) => String(c.invalidationExits)],
    ['VM exits (whole run)', (c) => String(c.vmExits)],
    ['ioctls', (c) => String(c.ioctls)],
    ['translations in the VMM', (c) => String(c.vmmTranslations)],
    ['translations in the host SMMU', (c) => String(c.hostTranslations)],
    ['modelled invalidation ns/op', (c) => c.latencyPerOpNs.toFixed(0)],
    ['DMA checks passed / failed', (c) => `${c.dmaPassed} / ${c.dmaFailed}`],
  ];
  return [head, ...rows.map(([name, f]) => [name, ...cols.map(f)])];
}

/** The side-by-side table. */
export function formatCompare(cols: readonly CompareColumn[]): string {
  const table = compareTable(cols);
  const head = table[0]!;
  const w = head.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
  const L = ['Three invalidation paths, one topology (cmdqv run --compare)', ''];
  for (const r of table) L.push(r.map((cell, i) => (i === 0 ? cell.padEnd(w[0]!) : cell.padStart(w[i]!))).join('   '));
  L.push('');
  for (const c of cols) L.push(`  ${c.path.padEnd(8)} ${c.line.join(' ')}`);
  return L.join('\n');
}
