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

/** Workers start clean: the parent's own node flags (e.g. `--input-type` of `node -e`) do not apply to them. */
const WORKER_OPTIONS = { execArgv: [] as string[] };

/** Attacker operations per isolation case. */
export const ISOLATION_OPS_PER_CASE = 4000;

/** Options of {@link runCampaign}. */
export interface CampaignOptions {
  /** Total guest operations (rounded up to whole cases). */
  readonly ops: number;
  readonly opsPerCase?: number;
  /** Total hostile uAPI calls (rounded up to whole cases of `callsPerCase`); default 0. */
  readonly uapiCalls?: number;
  readonly callsPerCase?: number;
  /** Total attacker guest operations of two-VM isolation cases (cases of 4000); default 0. */
  readonly isolationOps?: number;
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
  readonly uapiCalls: number;
  readonly isolationOps: number;
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
  const callsPerCase = o.callsPerCase ?? 2_000;
  const firstSeed = o.firstSeed ?? 1;
  const guestSeeds = shardSeeds(Math.ceil(o.ops / opsPerCase), firstSeed, o.shard);
  const uapiSeeds = shardSeeds(Math.ceil((o.uapiCalls ?? 0) / callsPerCase), firstSeed, o.shard);
  const isolationSeeds = shardSeeds(Math.ceil((o.isolationOps ?? 0) / ISOLATION_OPS_PER_CASE), firstSeed, o.shard);
  const argv = o.argv ?? DEFAULT_ARGS;
  const shrink = o.shrink ?? true;
  const timeout = o.caseTimeoutMs ?? 120_000;
  const requests: CaseRequest[] = [
    ...uapiSeeds.map((seed): CaseRequest => ({ kind: 'uapi', seed, ops: callsPerCase, argv, shrink })),
    ...isolationSeeds.map((seed): CaseRequest => ({ kind: 'isolation', seed, ops: ISOLATION_OPS_PER_CASE, argv, shrink })),
    ...guestSeeds.map((seed): CaseRequest => ({ kind: 'guest', seed, ops: opsPerCase, argv, shrink })),
  ];
  const workers = Math.min(o.workers ?? availableParallelism(), requests.length);
  const start = performance.now();
  const findings: Finding[] = [];
  let done = 0;
  const record = (r: CaseResult) => {
    done++;
    if (r.finding) findings.push(r.finding);
    o.onCase?.(r, done, requests.length);
  };
  if (workers <= 0) {
    for (const request of requests) record(serve(request));
  } else {
    const queue = requests.slice();
    const url = new URL('./worker.js', import.meta.url);
    await Promise.all(
      Array.from({ length: workers }, async () => {
        let worker = new Worker(url, WORKER_OPTIONS);
        try {
          for (let current = queue.shift(); current !== undefined; current = queue.shift()) {
            const request = current;
            const { kind, seed } = request;
            const result = await new Promise<CaseResult>((resolve) => {
              const settle = (r: CaseResult, replace: boolean) => {
                clearTimeout(timer);
                worker.off('message', onMessage);
                worker.off('error', onError);
                if (replace) {
                  void worker.terminate();
                  worker = new Worker(url, WORKER_OPTIONS);
                }
                resolve(r);
              };
              const onMessage = (r: CaseResult) => settle(r, false);
              // A worker that dies (e.g. out of memory) is a finding of its case, not the end.
              const onError = (e: Error) =>
                settle({ kind, seed, ops: request.ops, ms: 0, finding: { seed, kind: 'exception', message: `worker died: ${e.message}`, index: -1, argv, source: kind } }, true);
              // A case that never returns is a hang; the stuck worker is replaced.
              const timer = setTimeout(
                () => settle({ kind, seed, ops: request.ops, ms: timeout, finding: { seed, kind: 'timeout', message: `the ${kind} case did not finish in ${timeout} ms`, index: -1, argv, source: kind } }, true),
                timeout,
              );
              worker.on('message', onMessage);
              worker.on('error', onError);
              worker.postMessage(request);
            });
            record(result);
          }
        } finally {
          await worker.terminate();
        }
      }),
    );
  }
  return {
    cases: requests.length,
    ops: guestSeeds.length * opsPerCase,
    uapiCalls: uapiSeeds.length * callsPerCase,
    isolationOps: isolationSeeds.length * ISOLATION_OPS_PER_CASE,
    ms: performance.now() - start,
    workers,
    findings,
  };
}
