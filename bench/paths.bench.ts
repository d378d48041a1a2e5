/**
 * Row 10: the three queue paths of `cmdqv run --compare` (QEMU's emulated SMMUv3, the
 * accelerated SMMUv3 with trapped invalidations, accelerated + CMDQV) on the default machine, per
 * batch size: the modelled invalidation latency per operation and the VM exits it takes (the
 * cost model on the run's own counts: deterministic), and the model's own speed — operations/s
 * of wall time and the real-time factor (modelled hardware time of the run ÷ wall time).
 * The plot's headline panel is the first two, its secondary panel the last two.
 */

import { COMPARE_PATHS, lineFor, reportPathCounts, type ComparePath } from '../src/platform/compare.js';
import { DEFAULT_COST_MODEL, modelLatency, type CostModel } from '../src/platform/cost-model.js';
import { DEFAULT_ARGS, Machine } from '../src/platform/machine.js';
import { runWorkload } from '../src/platform/workload.js';
import type { Row } from './harness.js';

/** Batch sizes of row 10 (those of row 3). */
export const PATH_BATCHES = [1, 16, 256] as const;
/** Every N-th unmapped buffer is checked with a faulting DMA, as `cmdqv run` does by default. */
const VERIFY_EVERY = 8;

/** One (path, batch) of row 10. */
export interface PathResult {
  path: ComparePath;
  batch: number;
  /** Modelled invalidation latency per operation (cost model on the run's counts), ns. */
  latencyPerOpNs: number;
  /** VM exits of the invalidation work per operation. */
  exitsPerOp: number;
  /** Modelled hardware time of the whole run per operation (the virtual clock), ns. */
  hardwareNsPerOp: number;
  /** Operations per second of wall time (median of the runs), and the slowest and fastest run. */
  opsPerSec: number;
  min: number;
  max: number;
  /** Modelled hardware time ÷ the model's wall time (>= 1: faster than the hardware). */
  realTimeFactor: number;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Row 10: every path × batch on the default machine. */
export function benchPaths(quick: boolean, model: CostModel = DEFAULT_COST_MODEL): PathResult[] {
  const ops = quick ? 256 : 2048;
  const runs = quick ? 2 : 3;
  const out: PathResult[] = [];
  for (const batch of PATH_BATCHES) {
    for (const path of COMPARE_PATHS) {
      const line = lineFor(DEFAULT_ARGS, path);
      const walls: number[] = [];
      let first: Omit<PathResult, 'opsPerSec' | 'min' | 'max' | 'realTimeFactor'> | undefined;
      for (let r = 0; r <= runs; r++) {
        const m = Machine.create(line);
        try {
          const rep = runWorkload(m, { ops, batch, pages: 1, injectError: false, skipInvalidation: false, verifyEvery: VERIFY_EVERY });
          if (rep.dmaChecks.failed) throw new Error(`row 10 (${path}, batch ${batch}): ${rep.dmaChecks.failed} DMA checks failed`);
          const operations = ops * rep.devices.length;
          if (r === 0) {
            // The warm-up run gives the modelled numbers (the same in every run).
            const counts = reportPathCounts(rep, ops);
            first = {
              path,
              batch,
              latencyPerOpNs: modelLatency(counts, model).perOpNs,
              exitsPerOp: counts.exits / operations,
              hardwareNsPerOp: rep.modelNs / operations,
            };
            continue;
          }
          walls.push(rep.wallNs / operations);
        } finally {
          m.close();
        }
      }
      const wallNsPerOp = median(walls);
      out.push({
        ...first!,
        opsPerSec: 1e9 / wallNsPerOp,
        min: 1e9 / Math.max(...walls),
        max: 1e9 / Math.min(...walls),
        realTimeFactor: first!.hardwareNsPerOp / wallNsPerOp,
      });
    }
  }
  return out;
}

/** Row 10 as table rows (the rate is what the regression guard compares). */
export function pathRows(paths: readonly PathResult[]): Row[] {
  return paths.map((p) => ({
    name: `10. ${p.path.padEnd(8)} path, batch ${p.batch}`,
    value: p.opsPerSec,
    unit: 'op/s',
    min: p.min,
    max: p.max,
    note: `modelled ${(p.latencyPerOpNs / 1000).toFixed(2)} us/op invalidation, ${p.exitsPerOp.toFixed(2)} VM exits/op; real-time factor ${p.realTimeFactor.toFixed(3)}`,
  }));
}
