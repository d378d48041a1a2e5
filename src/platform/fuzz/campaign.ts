/**
 * A fuzzing campaign: `ops` guest operations split into cases of `opsPerCase` (one seed each,
 * seeds `firstSeed`, `firstSeed + 1`, ...), spread over worker threads, optionally one shard of
 * a larger campaign (`shard i/n` runs the cases whose index is i-1 modulo n, so a CI matrix or a
 * job array splits a long campaign with no new infrastructure). A case that does not finish in
 * `caseTimeoutMs` is a hang finding (its worker is replaced).
 */

import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { DEFAULT_ARGS } from '../machine.js';
import type { Finding } from './case.js';
import { serve, type CaseRequest, type CaseResult } from './worker.js';

/** Options of {@link runCampaign}. */
export interface CampaignOptions {
  /** Total guest operations (rounded up to whole cases). */
  readonly ops: number;
  readonly opsPerCase?: number;
  readonly firstSeed?: number;
  /** Worker threads (default: one per core; 0 runs in this thread). */
  readonly workers?: number;
  /** This shard of the campaign: index (1-based) and count. */
  readonly shard?: { readonly index: number; readonly count: number };
  readonly argv?: readonly string[];
  readonly shrink?: boolean;
  readonly caseTimeoutMs?: number;
  /** Called after each case. */
  readonly onCase?: (result: CaseResult, done: number, total: number) => void;
}

/** What a campaign did and found. */
export interface CampaignSummary {
  readonly cases: number;
  readonly ops: number;
  readonly ms: number;
  readonly workers: number;
  readonly findings: readonly Finding[];
}

/** The seeds of this shard. */
export function shardSeeds(totalCases: number, firstSeed: number, shard?: { index: number; count: number }): number[] {
  const seeds: number[] = [];
  for (let i = 0; i < totalCases; i++) if (!shard || i % shard.count === shard.index - 1) seeds.push(firstSeed + i);
  return seeds;
}

/** Run a campaign. */
export async function runCampaign(o: CampaignOptions): Promise<CampaignSummary> {
  const opsPerCase = o.opsPerCase ?? 10_000;
  const seeds = shardSeeds(Math.ceil(o.ops / opsPerCase), o.firstSeed ?? 1, o.shard);
  const argv = o.argv ?? DEFAULT_ARGS;
  const shrink = o.shrink ?? true;
  const timeout = o.caseTimeoutMs ?? 120_000;
  const workers = Math.min(o.workers ?? availableParallelism(), seeds.length);
  const start = performance.now();
  const findings: Finding[] = [];
  let done = 0;
  const record = (r: CaseResult) => {
    done++;
    if (r.finding) findings.push(r.finding);
    o.onCase?.(r, done, seeds.length);
  };
  const request = (seed: number): CaseRequest => ({ seed, ops: opsPerCase, argv, shrink });
  if (workers <= 0) {
    for (const seed of seeds) record(serve(request(seed)));
  } else {
    const queue = seeds.slice();
    const url = new URL('./worker.js', import.meta.url);
    await Promise.all(
      Array.from({ length: workers }, async () => {
        let worker = new Worker(url);
        try {
          for (let seed = queue.shift(); seed !== undefined; seed = queue.shift()) {
            const current = seed;
            const result = await new Promise<CaseResult>((resolve) => {
              const timer = setTimeout(() => {
                // A case that never returns is a hang; replace the stuck worker.
                worker.removeAllListeners();
                void worker.terminate();
                worker = new Worker(url);
                resolve({ seed: current, ops: opsPerCase, ms: timeout, finding: { seed: current, kind: 'timeout', message: `the case did not finish in ${timeout} ms`, index: -1, argv } });
              }, timeout);
              worker.once('message', (r: CaseResult) => {
                clearTimeout(timer);
                resolve(r);
              });
              worker.once('error', (e) => {
                // A worker that dies (e.g. out of memory) is a finding of its case, not the end.
                clearTimeout(timer);
                worker.removeAllListeners();
                worker = new Worker(url);
                resolve({ seed: current, ops: opsPerCase, ms: 0, finding: { seed: current, kind: 'exception', message: `worker died: ${e.message}`, index: -1, argv } });
              });
              worker.postMessage(request(current));
            });
            record(result);
          }
        } finally {
          await worker.terminate();
        }
      }),
    );
  }
  return { cases: seeds.length, ops: seeds.length * opsPerCase, ms: performance.now() - start, workers, findings };
}
