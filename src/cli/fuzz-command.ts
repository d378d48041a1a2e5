/**
 * `cmdqv fuzz`: a seeded, reproducible campaign of hostile guest operations against the machine,
 * checking the isolation and robustness invariants after every step; or `--replay FILE` to re-run
 * a finding's reproduction.
 */

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_ARGS } from '../platform/machine.js';
import { ISOLATION_OPS_PER_CASE, replayOps, runCampaign, runIsolationCase, runUapiCase, type Finding, type ReplayFile } from '../platform/fuzz/index.js';
import { UsageError } from './usage-error.js';
import { splitCommandLine } from './command-line.js';

/** `cmdqv fuzz --help`. */
export const FUZZ_USAGE = `usage: cmdqv fuzz [--ops N] [--ops-per-case N] [--uapi-calls N] [--isolation-ops N] [--seed S]
                  [--workers K] [--shard I/N]
                  [--out DIR] [--no-shrink] [--timeout MS] [-- QEMU options]
       cmdqv fuzz --replay FILE

Run N hostile guest operations (default 100000) as cases of --ops-per-case operations (default
10000), case k with seed S+k, and N hostile uAPI calls (default 10000, cases of 2000) from a
process next to a victim VM, and --isolation-ops N (default 20000) operations of a hostile
guest VM next to a victim VM running a known workload (its DMA results, registers and IOTLB
entries must equal a run with an idle neighbour); over K worker threads (default: one per
core). After every
operation: no exception escapes, the main loop settles; after every case: reset reads like a
new machine. A finding prints its seed and a shrunk reproduction, written to DIR (default
fuzz-findings) as JSON that --replay re-runs. --shard I/N runs the I-th of N slices of the
campaign (for a CI matrix or a job array). Exit status 1 when anything is found.

  -h, --help  show this text`;

function int(v: string | undefined, name: string, dflt: number, min: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min}, got '${v}'`);
  return n;
}

function describe(f: Finding): string {
  const where = f.index >= 0 ? ` at operation ${f.index}` : '';
  const repro = f.reproduction ? `; reproduction: ${f.reproduction.length} operation(s)` : '';
  return `seed ${f.seed}: ${f.kind}${where}: ${f.message}${repro}`;
}

/** Run the subcommand; returns its output and exit status. */
export async function fuzzCommand(argv: readonly string[], progress: (s: string) => void): Promise<{ text: string; status: number }> {
  const { own, qemu } = splitCommandLine(argv);
  const { values } = parseArgs({
    args: [...own],
    options: {
      ops: { type: 'string' },
      'ops-per-case': { type: 'string' },
      'uapi-calls': { type: 'string' },
      'isolation-ops': { type: 'string' },
      seed: { type: 'string' },
      workers: { type: 'string' },
      shard: { type: 'string' },
      out: { type: 'string' },
      'no-shrink': { type: 'boolean', default: false },
      timeout: { type: 'string' },
      replay: { type: 'string' },
    },
    strict: true,
  });
  if (values.replay !== undefined) {
    let file: ReplayFile;
    try {
      file = JSON.parse(readFileSync(values.replay, 'utf8')) as ReplayFile;
    } catch (e) {
      throw new UsageError(`--replay ${values.replay}: ${(e as Error).message}`);
    }
    if (file.version !== 1 || !Array.isArray(file.ops)) throw new UsageError(`--replay ${values.replay}: not a cmdqv fuzz reproduction (version 1)`);
    const f =
      file.caseOps !== undefined
        ? file.source === 'isolation'
          ? runIsolationCase(file.seed, file.caseOps)
          : runUapiCase(file.seed, file.caseOps)
        : replayOps(file.ops, file.argv ?? DEFAULT_ARGS, file.seed ?? 0);
    return f
      ? { text: `reproduced: ${describe(f)}`, status: 1 }
      : { text: `not reproduced: ${file.caseOps ?? file.ops.length} operation(s) ran with every invariant holding (recorded: ${file.kind}: ${file.message})`, status: 0 };
  }
  let shard: { index: number; count: number } | undefined;
  if (values.shard !== undefined) {
    const m = /^(\d+)\/(\d+)$/.exec(values.shard);
    const index = Number(m?.[1]);
    const count = Number(m?.[2]);
    if (!m || count < 1 || index < 1 || index > count) throw new UsageError(`--shard must be I/N with 1 <= I <= N, got '${values.shard}'`);
    shard = { index, count };
  }
  const summary = await runCampaign({
    ops: int(values.ops, 'ops', 100_000, 1),
    opsPerCase: int(values['ops-per-case'], 'ops-per-case', 10_000, 1),
    uapiCalls: int(values['uapi-calls'], 'uapi-calls', 10_000, 0),
    isolationOps: int(values['isolation-ops'], 'isolation-ops', 20_000, 0),
    firstSeed: int(values.seed, 'seed', 1, 0),
    ...(values.workers !== undefined ? { workers: int(values.workers, 'workers', 1, 0) } : {}),
    ...(shard ? { shard } : {}),
    argv: qemu,
    shrink: !values['no-shrink'],
    caseTimeoutMs: int(values.timeout, 'timeout', 120_000, 1),
    onCase: (r, done, total) => {
      if (r.finding) progress(`finding: ${describe(r.finding)}`);
      if (done % 10 === 0 || done === total) progress(`${done}/${total} cases`);
    },
  });
  const lines = [
    `fuzz: ${summary.cases} case(s), ${summary.ops} guest operations, ${summary.uapiCalls} uAPI calls, ${summary.isolationOps} hostile-neighbour operations${shard ? ` (shard ${shard.index}/${shard.count})` : ''}, ${summary.workers} worker(s), ${(summary.ms / 1000).toFixed(1)} s, ${summary.findings.length} finding(s)`,
  ];
  if (summary.findings.length) {
    const dir = values.out ?? 'fuzz-findings';
    try {
      mkdirSync(dir, { recursive: true });
    } catch (e) {
      throw new UsageError(`--out ${dir}: ${(e as Error).message}`);
    }
    for (const f of summary.findings) {
      const path = join(dir, `seed-${f.seed}-${f.kind}.json`);
      // uAPI calls are generated in sequence: the prefix up to the failing call reproduces it; an
      // isolation case is re-run whole.
      const caseOps = f.source === 'uapi' ? f.index + 1 : f.source === 'isolation' ? ISOLATION_OPS_PER_CASE : undefined;
      const file: ReplayFile = { version: 1, argv: f.argv, seed: f.seed, kind: f.kind, message: f.message, ops: f.reproduction ?? [], source: f.source, ...(caseOps !== undefined ? { caseOps } : {}) };
      writeFileSync(path, `${JSON.stringify(file, null, 1)}\n`);
      lines.push(`  ${describe(f)}`, `    replay: cmdqv fuzz --replay ${path}`);
    }
  }
  return { text: lines.join('\n'), status: summary.findings.length ? 1 : 0 };
}
