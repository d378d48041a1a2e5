/**
 * The quick bench's regression guard (`.ci/run`): a guard against accidental cliffs, not a
 * timing test. Each speed row of a `npm run bench -- --quick` results file is compared with the
 * committed quick baseline (bench/baseline-quick.json) taken on the same machine kind; a row
 * more than `factor` (3) times slower fails. Rows that fail are measured again: the guard runs
 * the quick bench once more and keeps each row's better result, so one noisy run does not fail
 * CI. A different machine kind (CPU model and core count) skips the check with a message.
 *
 *   node dist/bench/guard.js RESULTS.json [--baseline FILE] [--no-rerun]
 *   node dist/bench/guard.js --update-baseline RESULTS.json [MORE.json...]   (refresh)
 *
 * Refreshing: on the CI machine kind, `npm run bench -- --quick --out /tmp/qN.json` three times,
 * then `node dist/bench/guard.js --update-baseline /tmp/q1.json /tmp/q2.json /tmp/q3.json`: the
 * baseline keeps each row's median run, the machine kind, an allowance for each row that varied
 * more than the factor across those runs, and the hand-written allowances already in the file.
 * Full-run results cannot serve: quick rows run 3-15x slower than full ones.
 *
 * Which rows: rates (unit ending in `/s`: slower = lower) and times (`ns`: slower = higher).
 * Counts, ratios and percentages are not speeds and are not compared. A row's best run (`max`
 * of a rate, `min` of a time, when the row has them) is compared, not its median: on a shared
 * 2-core machine the median swings with the neighbours' load far more than the best run does.
 */

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Row } from './harness.js';

/** Slower than the baseline by more than this fails (unless the row has its own allowance). */
export const DEFAULT_FACTOR = 3;

/** The committed baseline. */
export interface Baseline {
  /** Machine kind the rows were measured on ({@link machineKind}). */
  machine: string;
  date: string;
  /** How it was made and how to refresh it. */
  how: string;
  /** Default factor; `allowances` overrides it per row (by exact name), `0` leaves a row out. */
  factor: number;
  allowances: Record<string, number>;
  /** Why each allowance exists. */
  allowanceNotes?: Record<string, string>;
  rows: Row[];
}

/** One compared row. */
export interface Verdict {
  name: string;
  unit: string;
  baseline: number;
  current: number;
  /** How many times slower than the baseline (< 1: faster). */
  slower: number;
  factor: number;
  regressed: boolean;
}

/** The machine kind: CPU model and core count (`AMD EPYC x2`). */
export function machineKind(): string {
  const c = cpus();
  return `${(c[0]?.model ?? 'unknown CPU').trim()} x${c.length}`;
}

/** +1: higher is better (a rate); -1: lower is better (a time); 0: not a speed. */
export function direction(unit: string): 1 | -1 | 0 {
  if (/\/s$/.test(unit)) return 1;
  if (unit === 'ns' || unit === 'us' || unit === 'ms') return -1;
  return 0;
}

/** The figure of a row the guard compares: its best run when it has one, else its value. */
export function bestOf(r: Row): number {
  const d = direction(r.unit);
  if (d === 1 && r.max !== undefined) return r.max;
  if (d === -1 && r.min !== undefined) return r.min;
  return r.value;
}

/** Whether `a` is a better result than `b` for a row of unit `unit`. */
function better(unit: string, a: number, b: number): boolean {
  return direction(unit) === 1 ? a > b : a < b;
}

/**
 * Compare the speed rows present in both (by name). A row is `slower` times slower than the
 * baseline (baseline ÷ current for rates, current ÷ baseline for times) and regressed when that
 * exceeds its factor. Rows with a non-finite value on either side, or an allowance of 0, are
 * left out.
 */
export function compareRows(current: readonly Row[], baseline: Pick<Baseline, 'rows' | 'factor' | 'allowances'>): Verdict[] {
  const base = new Map(baseline.rows.map((r) => [r.name, r]));
  const out: Verdict[] = [];
  for (const r of current) {
    const b = base.get(r.name);
    const d = direction(r.unit);
    if (!b || d === 0 || b.unit !== r.unit) continue;
    const factor = baseline.allowances[r.name] ?? baseline.factor;
    if (factor === 0) continue;
    const cur = bestOf(r);
    const ref = bestOf(b);
    if (!Number.isFinite(cur) || !Number.isFinite(ref) || cur <= 0 || ref <= 0) continue;
    const slower = d === 1 ? ref / cur : cur / ref;
    out.push({ name: r.name, unit: r.unit, baseline: ref, current: cur, slower, factor, regressed: slower > factor });
  }
  return out;
}

/** Each row's better result of two runs (rows of either run, by name; `a`'s order). */
export function bestRows(a: readonly Row[], b: readonly Row[]): Row[] {
  const other = new Map(b.map((r) => [r.name, r]));
  const out = a.map((r) => {
    const o = other.get(r.name);
    if (!o || direction(r.unit) === 0) return r;
    return better(r.unit, bestOf(o), bestOf(r)) ? o : r;
  });
  const seen = new Set(a.map((r) => r.name));
  for (const r of b) if (!seen.has(r.name)) out.push(r);
  return out;
}

/** The table the guard prints. */
export function formatVerdicts(v: readonly Verdict[]): string {
  const num = (x: number) => (x >= 1e6 ? `${(x / 1e6).toFixed(2)} M` : x >= 1e3 ? `${(x / 1e3).toFixed(2)} k` : x.toFixed(2));
  const w = Math.max(4, ...v.map((x) => x.name.length));
  const lines = [`${'row'.padEnd(w)}  ${'baseline'.padStart(14)}  ${'now'.padStart(14)}  slower  limit  verdict`];
  for (const x of v) {
    lines.push(
      `${x.name.padEnd(w)}  ${`${num(x.baseline)}${x.unit}`.padStart(14)}  ${`${num(x.current)}${x.unit}`.padStart(14)}  ${`${x.slower.toFixed(2)}x`.padStart(6)}  ${`${x.factor}x`.padStart(5)}  ${x.regressed ? 'REGRESSED' : 'ok'}`,
    );
  }
  return lines.join('\n');
}

/** Widest automatic allowance: a row noisier than this needs a hand-written one (or 0). */
export const MAX_AUTO_ALLOWANCE = 10;
/** An automatic allowance is this much above what the baseline runs themselves needed. */
const AUTO_MARGIN = 1.5;

/**
 * A baseline from quick results files (three or more): each speed row's median run (by its
 * best-run figure), so one lucky run does not make the limit tight. A row whose slowest run
 * was so far below that median that 1.5 times the gap exceeds the factor gets that as its
 * allowance (rounded up, at most {@link MAX_AUTO_ALLOWANCE}), with a note; allowances already
 * in the file win.
 */
export function makeBaseline(results: readonly { rows: Row[] }[], previous: Baseline | undefined, machine: string, date: string): Baseline {
  const factor = previous?.factor ?? DEFAULT_FACTOR;
  const allowances: Record<string, number> = {};
  const notes: Record<string, string> = {};
  const rows: Row[] = [];
  for (const r of results[0]!.rows) {
    if (direction(r.unit) === 0) continue;
    const runs = results.map((x) => x.rows.find((y) => y.name === r.name && y.unit === r.unit)).filter((y): y is Row => y !== undefined && Number.isFinite(bestOf(y)) && bestOf(y) > 0);
    if (runs.length === 0) continue;
    // Slowest first: the median, and the upper one of two.
    runs.sort((a, b) => (better(r.unit, bestOf(a), bestOf(b)) ? 1 : -1));
    const median = runs[Math.floor((runs.length - 1) / 2)]!;
    rows.push(median);
    // How much slower than the median the worst run was, with half again as margin.
    const d = direction(r.unit);
    const worst = d === 1 ? bestOf(median) / bestOf(runs[0]!) : bestOf(runs[0]!) / bestOf(median);
    const needed = Math.ceil(worst * AUTO_MARGIN);
    if (needed > factor) {
      allowances[r.name] = Math.min(MAX_AUTO_ALLOWANCE, needed);
      notes[r.name] = `the slowest of the ${runs.length} baseline runs was ${worst.toFixed(1)}x slower than their median`;
    }
  }
  return {
    machine,
    date,
    how:
      'npm run bench -- --quick --out /tmp/qN.json (three times, on this machine kind), then ' +
      'node dist/bench/guard.js --update-baseline /tmp/q1.json /tmp/q2.json /tmp/q3.json (each row\'s median run; an allowance where the runs\' own spread needs one; hand-written allowances kept)',
    factor,
    allowances: { ...allowances, ...previous?.allowances },
    allowanceNotes: { ...notes, ...previous?.allowanceNotes },
    rows,
  };
}

function readJson<T>(file: string): T {
  return JSON.parse(readFileSync(file, 'utf8')) as T;
}

/** Run the quick bench once more; its rows, or undefined if it failed. */
function rerunQuick(): Row[] | undefined {
  const dir = mkdtempSync(join(tmpdir(), 'cmdqv-guard-'));
  try {
    const out = join(dir, 'results.json');
    const here = fileURLToPath(new URL('.', import.meta.url));
    const p = spawnSync(process.execPath, ['--expose-gc', join(here, 'run.js'), '--quick', '--out', out], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', maxBuffer: 1 << 26 });
    if (p.status !== 0) {
      process.stdout.write(`bench guard: the second quick run failed (status ${p.status}): ${(p.stderr ?? '').trim().slice(-500)}\n`);
      return undefined;
    }
    return readJson<{ rows: Row[] }>(out).rows;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function main(argv: readonly string[]): number {
  const args = [...argv];
  const flag = (name: string) => {
    const i = args.indexOf(name);
    if (i < 0) return false;
    args.splice(i, 1);
    return true;
  };
  const option = (name: string) => {
    const i = args.indexOf(name);
    if (i < 0) return undefined;
    const v = args[i + 1];
    args.splice(i, 2);
    return v;
  };
  const baselineFile = option('--baseline') ?? 'bench/baseline-quick.json';
  if (flag('--update-baseline')) {
    if (args.length === 0) throw new Error('--update-baseline needs one or more quick results files');
    let previous: Baseline | undefined;
    try {
      previous = readJson<Baseline>(baselineFile);
    } catch {
      previous = undefined;
    }
    const results = args.map((f) => readJson<{ rows: Row[]; quick?: boolean }>(f));
    if (results.some((r) => r.quick !== true)) throw new Error('the baseline is made of --quick runs (full-run rows are 3-15x faster)');
    writeFileSync(baselineFile, `${JSON.stringify(makeBaseline(results, previous, machineKind(), new Date().toISOString()), (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`);
    process.stdout.write(`wrote ${baselineFile} (${machineKind()})\n`);
    return 0;
  }
  const noRerun = flag('--no-rerun');
  const resultsFile = args[0];
  if (!resultsFile) throw new Error('usage: guard.js RESULTS.json [--baseline FILE] [--no-rerun] | --update-baseline RESULTS.json...');
  const baseline = readJson<Baseline>(baselineFile);
  const kind = machineKind();
  if (baseline.machine !== kind) {
    process.stdout.write(`bench guard: skipped — ${baselineFile} was taken on "${baseline.machine}", this machine is "${kind}" (refresh it on this kind: see its "how")\n`);
    return 0;
  }
  let rows = readJson<{ rows: Row[] }>(resultsFile).rows;
  let verdicts = compareRows(rows, baseline);
  if (verdicts.some((v) => v.regressed) && !noRerun) {
    const over = verdicts.filter((v) => v.regressed).map((v) => `${v.name} (${v.slower.toFixed(2)}x)`);
    process.stdout.write(`bench guard: over the limit in the first run: ${over.join(', ')}; running the quick bench once more and keeping each row's better result\n`);
    const again = rerunQuick();
    if (again) {
      rows = bestRows(rows, again);
      verdicts = compareRows(rows, baseline);
    }
  }
  process.stdout.write(`bench guard: ${verdicts.length} rows vs ${baselineFile} (${kind})\n${formatVerdicts(verdicts)}\n`);
  const bad = verdicts.filter((v) => v.regressed);
  if (bad.length) {
    process.stdout.write(`bench guard: FAILED — ${bad.length} row(s) more than their limit slower than the baseline:\n${bad.map((v) => `  ${v.name}: ${v.slower.toFixed(2)}x slower (limit ${v.factor}x)`).join('\n')}\n`);
    return 1;
  }
  process.stdout.write('bench guard: ok\n');
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`bench guard: ${(e as Error).message}\n`);
    process.exitCode = 2;
  }
}
