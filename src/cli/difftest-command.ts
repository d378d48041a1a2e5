/**
 * `cmdqv difftest`: differential testing of cmdqv's drop-in against QEMU 11.1. Seeded qtest
 * sequences for the emulated SMMUv3 and the iommu-testdev (src/platform/difftest/) run on both
 * programs — each a spawned `-qtest stdio -accel qtest` process on the same machine line — and
 * every reply and IRQ line is compared; a divergence is shrunk and printed, exit status 1.
 */

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DIFFTEST_MACHINE } from '../platform/difftest/generator.js';
import { describeFinding, runSeed, type Answer, type DifftestTargets, type RunTranscript, type SeedResult } from '../platform/difftest/compare.js';
import { ALLOWED_DIFFERENCES } from '../platform/difftest/allow-list.js';
import { CliError } from './output-file.js';
import { UsageError } from './usage-error.js';

/** `cmdqv difftest --help`. */
export const DIFFTEST_USAGE = `usage: cmdqv difftest [--seeds N] [--seed S] [--steps K] [--qemu PATH] [--jobs J] [--shrink-runs B]

Run N generated qtest sequences (default 20; seeds S, S+1, ...; default S = 1) of K steps
(default 60) against QEMU 11.1 (--qemu PATH, default $CMDQV_QEMU) and against cmdqv's drop-in
(cmdqv qemu), both on -M virt,iommu=smmuv3 with an iommu-testdev, J seeds at a time (default
4), and compare every reply line and IRQ line. Differences on the documented allow-list are
skipped; any other prints the seed's first divergent step after shrinking the sequence (at
most B re-runs, default 40) and the exit status is 1.

  -h, --help  show this text`;

const QTEST = ['-accel', 'qtest', '-qtest', 'stdio', '-qtest-log', '/dev/null'] as const;

function int(v: string | undefined, name: string, dflt: number, min: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min}, got '${v}'`);
  return n;
}

/**
 * One qtest session on a spawned program: all lines at once (the protocol answers in order),
 * the answers collected until each line has one, then the process is killed (QEMU does not
 * end when stdin closes).
 */
export function spawnTranscript(command: string, args: readonly string[]): RunTranscript {
  return (lines) =>
    new Promise<Answer[]>((resolve) => {
      const proc = spawn(command, [...args, ...DIFFTEST_MACHINE, ...QTEST], { stdio: ['pipe', 'pipe', 'pipe'] });
      const answers: Answer[] = [];
      let irqs: string[] = [];
      let buf = '';
      let stderr = '';
      let done = false;
      const finish = (why?: string) => {
        if (done) return;
        done = true;
        while (why !== undefined && answers.length < lines.length) answers.push({ reply: `<exited: ${why}>`, irqs: [] });
        proc.kill('SIGKILL');
        resolve(answers);
      };
      proc.stdout.setEncoding('utf8');
      proc.stderr.setEncoding('utf8');
      proc.stdout.on('data', (d: string) => {
        buf += d;
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line.startsWith('IRQ ')) irqs.push(line);
          else {
            answers.push({ reply: line, irqs });
            irqs = [];
          }
        }
        if (answers.length >= lines.length) finish();
      });
      proc.stderr.on('data', (d: string) => (stderr = (stderr + d).slice(-400)));
      proc.on('error', (e) => finish(e.message));
      proc.on('close', (status) => finish(`status ${status} ${stderr.trim().split('\n').pop() ?? ''}`.trim()));
      proc.stdin.on('error', () => undefined);
      proc.stdin.end(lines.length ? `${lines.join('\n')}\n` : '');
    });
}

/** The two programs: QEMU at `qemu`, and this cmdqv's `qemu` command run by the same node. */
export function difftestTargets(qemu: string): DifftestTargets {
  const bin = fileURLToPath(new URL('./bin.js', import.meta.url));
  return { qemu: spawnTranscript(qemu, []), cmdqv: spawnTranscript(process.execPath, [bin, 'qemu']) };
}

/** Run seeds `first..first+count-1`, `jobs` at a time. */
async function runSeeds(targets: DifftestTargets, first: number, count: number, steps: number, jobs: number, budget: number, progress: (r: SeedResult) => void): Promise<SeedResult[]> {
  const results: SeedResult[] = new Array(count);
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      results[i] = await runSeed(targets, first + i, steps, budget);
      progress(results[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, count) }, worker));
  return results;
}

/** `cmdqv difftest ARGS`: the report text and the exit status. */
export async function difftestCommand(argv: readonly string[], err: (s: string) => void): Promise<{ text: string; status: number }> {
  const { values } = parseArgs({
    args: [...argv],
    options: { seeds: { type: 'string' }, seed: { type: 'string' }, steps: { type: 'string' }, qemu: { type: 'string' }, jobs: { type: 'string' }, 'shrink-runs': { type: 'string' } },
    strict: true,
  });
  const seeds = int(values.seeds, 'seeds', 20, 1);
  const first = int(values.seed, 'seed', 1, 0);
  const steps = int(values.steps, 'steps', 60, 1);
  const jobs = int(values.jobs, 'jobs', 4, 1);
  const budget = int(values['shrink-runs'], 'shrink-runs', 40, 0);
  const qemu = values.qemu ?? process.env.CMDQV_QEMU;
  if (qemu === undefined || qemu === '') throw new CliError('difftest needs QEMU 11.1: give --qemu PATH or set CMDQV_QEMU');
  if (qemu.includes('/') && !existsSync(qemu)) throw new CliError(`--qemu ${qemu}: No such file or directory`);
  const results = await runSeeds(difftestTargets(qemu), first, seeds, steps, jobs, budget, (r) => {
    if (r.finding) err(describeFinding(r));
  });
  const allowed = new Map<string, number>();
  for (const r of results) for (const [id, n] of r.allowed) allowed.set(id, (allowed.get(id) ?? 0) + n);
  const divergent = results.filter((r) => r.finding);
  const lines = [
    `difftest: ${seeds} sequence(s) (seeds ${first}..${first + seeds - 1}), ${results.reduce((s, r) => s + r.steps, 0)} steps, ${results.reduce((s, r) => s + r.requests, 0)} requests compared with ${qemu}`,
  ];
  for (const a of ALLOWED_DIFFERENCES) if (allowed.has(a.id)) lines.push(`  allowed: ${a.id}: ${allowed.get(a.id)} reply(ies)`);
  lines.push(divergent.length ? `${divergent.length} divergent seed(s): ${divergent.map((r) => r.seed).join(' ')}` : 'no divergence');
  return { text: lines.join('\n'), status: divergent.length ? 1 : 0 };
}
