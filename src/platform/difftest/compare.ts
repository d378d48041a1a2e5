/**
 * Running a generated sequence on QEMU 11.1 and on cmdqv's drop-in and comparing every reply
 * line and every IRQ line, step by step; shrinking a divergent sequence to a small one that
 * still diverges. The programs themselves are reached through {@link RunTranscript}s (the CLI
 * spawns them).
 */

import { ALLOWED_DIFFERENCES, type AllowedDifference, type ComparedReply } from './allow-list.js';
import { generateSequence, type DiffSequence, type Step } from './generator.js';

/** What one program answered to one request: its reply line and the IRQ lines before it. */
export interface Answer {
  readonly reply: string;
  readonly irqs: readonly string[];
}

/**
 * Run `lines` as one qtest session on a fresh machine; one answer per line, in order (a
 * program that ended early answers the rest with `<exited: ...>`).
 */
export type RunTranscript = (lines: readonly string[]) => Promise<Answer[]>;

/** The two programs. */
export interface DifftestTargets {
  readonly qemu: RunTranscript;
  readonly cmdqv: RunTranscript;
}

/** The first difference in a run. */
export interface Divergence {
  /** Index of the step in the run's step list (setup steps are negative: -setup.length..-1). */
  readonly step: number;
  readonly request: string;
  readonly qemu: string;
  readonly cmdqv: string;
}

/** The outcome of comparing one run. */
export interface RunComparison {
  readonly requests: number;
  readonly divergence: Divergence | undefined;
  /** Replies skipped per allow-list entry id. */
  readonly allowed: ReadonlyMap<string, number>;
}

/** One seed's result. */
export interface SeedResult {
  readonly seed: number;
  readonly steps: number;
  readonly requests: number;
  readonly allowed: ReadonlyMap<string, number>;
  /** Present when the seed diverged: the shrunk steps and their first divergence. */
  readonly finding?: { readonly steps: readonly Step[]; readonly divergence: Divergence; readonly runs: number };
}

function irqText(irqs: readonly string[]): string {
  return irqs.length ? ` [${irqs.join(', ')}]` : '';
}

/** Compare two answer lists for `steps` (setup first), skipping what the allow-list accepts. */
export function compareAnswers(setup: readonly Step[], steps: readonly Step[], qemu: readonly Answer[], cmdqv: readonly Answer[], allow: readonly AllowedDifference[] = ALLOWED_DIFFERENCES): RunComparison {
  const allowed = new Map<string, number>();
  const all = [...setup, ...steps];
  const history: string[] = [];
  let i = 0;
  for (let s = 0; s < all.length; s++) {
    for (const request of all[s]!.lines) {
      history.push(request);
      const q = qemu[i];
      const c = cmdqv[i];
      i++;
      const qt = q ? q.reply + irqText(q.irqs) : '<no answer>';
      const ct = c ? c.reply + irqText(c.irqs) : '<no answer>';
      if (qt === ct) continue;
      const pair: ComparedReply = { request, qemu: qt, cmdqv: ct };
      const entry = allow.find((a) => a.matches(pair, history));
      if (entry) {
        allowed.set(entry.id, (allowed.get(entry.id) ?? 0) + 1);
        if (entry.stopsComparison) return { requests: i, divergence: undefined, allowed };
        continue;
      }
      return { requests: i, divergence: { step: s - setup.length, ...pair }, allowed };
    }
  }
  return { requests: i, divergence: undefined, allowed };
}

/** Run `steps` (after `setup`) on both programs at once and compare. */
export async function runBoth(targets: DifftestTargets, setup: readonly Step[], steps: readonly Step[]): Promise<RunComparison> {
  const lines = [...setup, ...steps].flatMap((s) => s.lines);
  const [q, c] = await Promise.all([targets.qemu(lines), targets.cmdqv(lines)]);
  return compareAnswers(setup, steps, q, c);
}

/**
 * Shrink a divergent step list: cut it after the first divergent step, then drop chunks of
 * steps (halving the chunk down to single steps) while the rest still diverges, within
 * `budget` runs. Each candidate needs two fresh processes, so the budget stays small.
 */
export async function shrinkSteps(targets: DifftestTargets, setup: readonly Step[], steps: readonly Step[], first: Divergence, budget: number): Promise<{ steps: Step[]; divergence: Divergence; runs: number }> {
  let best = steps.slice(0, first.step + 1);
  let divergence = first;
  let runs = 0;
  for (let chunk = Math.max(1, best.length >> 1); chunk >= 1 && runs < budget; chunk = chunk === 1 ? 0 : Math.max(1, chunk >> 1)) {
    // Last to first: the later steps depend on the earlier ones less often than the reverse.
    for (let end = best.length - 1; end >= 0 && runs < budget; end -= chunk) {
      const start = Math.max(0, end - chunk);
      const candidate = best.slice(0, start).concat(best.slice(end));
      if (candidate.length === best.length || candidate.length === 0) continue;
      runs++;
      const r = await runBoth(targets, setup, candidate);
      if (r.divergence) {
        best = candidate.slice(0, r.divergence.step + 1);
        divergence = r.divergence;
        end = Math.min(end, best.length);
      }
    }
  }
  return { steps: best, divergence, runs };
}

/** Generate, run and compare one seed; shrink it when it diverges. */
export async function runSeed(targets: DifftestTargets, seed: number, stepCount: number, shrinkBudget: number): Promise<SeedResult> {
  const seq: DiffSequence = generateSequence(seed, stepCount);
  const r = await runBoth(targets, seq.setup, seq.steps);
  const base = { seed, steps: seq.steps.length, requests: r.requests, allowed: r.allowed };
  if (!r.divergence) return base;
  if (r.divergence.step < 0) return { ...base, finding: { steps: [], divergence: r.divergence, runs: 0 } };
  const shrunk = await shrinkSteps(targets, seq.setup, seq.steps, r.divergence, shrinkBudget);
  return { ...base, finding: shrunk };
}

/** A seed's finding as text: the first divergent step of the shrunk sequence and its requests. */
export function describeFinding(r: SeedResult): string {
  const f = r.finding;
  if (!f) return `seed ${r.seed}: no divergence`;
  const d = f.divergence;
  const where = d.step < 0 ? 'in the setup' : `at step ${d.step} of ${f.steps.length} (shrunk from ${r.steps} in ${f.runs} runs)`;
  const out = [`seed ${r.seed}: divergence ${where}`];
  f.steps.forEach((s, i) => {
    out.push(`  step ${i}: ${s.what}`);
    for (const l of s.lines) out.push(`    ${l}`);
  });
  out.push(`  request: ${d.request}`, `    qemu:  ${d.qemu}`, `    cmdqv: ${d.cmdqv}`);
  return out.join('\n');
}
