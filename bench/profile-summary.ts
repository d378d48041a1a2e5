/**
 * Summary of a V8 CPU profile (`node --cpu-prof`): the functions with the most self time and
 * the most inclusive time (a function counted once per sample however deep it recurses), as
 * percentages of the samples and milliseconds. `--focus NAME` keeps only the samples whose
 * stack holds a function of that name (e.g. the workload's `batch`), to see one phase alone.
 *
 *   node --cpu-prof --cpu-prof-dir=/tmp/prof dist/src/cli/bin.js run --ops 40000 --batch 1
 *   node dist/bench/profile-summary.js /tmp/prof/CPU.*.cpuprofile [--top N] [--focus NAME]
 *
 * V8 inlines small functions into their callers and attributes their samples to the caller; a
 * profile taken with `node --no-turbo-inlining` names them (at some cost in speed) when a
 * caller's self time looks too large for what it does.
 */

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The parts of a `.cpuprofile` the summary reads. */
export interface CpuProfile {
  readonly nodes: readonly {
    readonly id: number;
    readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
    readonly children?: readonly number[];
  }[];
  readonly samples: readonly number[];
  readonly startTime: number;
  readonly endTime: number;
}

/** One function's line of the summary. */
export interface ProfileLine {
  /** `name file:line` (the file's last two path parts). */
  readonly fn: string;
  readonly samples: number;
  /** Percent of all samples in the profile. */
  readonly percent: number;
  readonly ms: number;
}

/** Top functions by self and inclusive time. */
export interface ProfileSummary {
  /** Samples in the profile, and how many the focus kept. */
  readonly samples: number;
  readonly focused: number;
  readonly ms: number;
  readonly self: ProfileLine[];
  readonly inclusive: ProfileLine[];
}

/** Summarise `p`: the `top` functions by self and by inclusive time, over the samples `focus` keeps. */
export function summariseProfile(p: CpuProfile, opts: { top?: number; focus?: string } = {}): ProfileSummary {
  const top = opts.top ?? 30;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const key = (id: number): string => {
    const f = byId.get(id)!.callFrame;
    return `${f.functionName || '(anonymous)'} ${f.url.split('/').slice(-2).join('/')}:${f.lineNumber + 1}`;
  };
  const perNode = new Map<number, number>();
  for (const s of p.samples) perNode.set(s, (perNode.get(s) ?? 0) + 1);
  const self = new Map<string, number>();
  const incl = new Map<string, number>();
  let focused = 0;
  for (const [id, count] of perNode) {
    const stack: number[] = [];
    for (let x: number | undefined = id; x !== undefined; x = parent.get(x)) stack.push(x);
    if (opts.focus !== undefined && !stack.some((x) => byId.get(x)!.callFrame.functionName === opts.focus)) continue;
    focused += count;
    self.set(key(id), (self.get(key(id)) ?? 0) + count);
    for (const k of new Set(stack.map(key))) incl.set(k, (incl.get(k) ?? 0) + count);
  }
  const total = p.samples.length;
  const msPerSample = total > 0 ? (p.endTime - p.startTime) / 1000 / total : 0;
  const lines = (m: Map<string, number>): ProfileLine[] =>
    [...m]
      .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
      .slice(0, top)
      .map(([fn, n]) => ({ fn, samples: n, percent: total > 0 ? (100 * n) / total : 0, ms: n * msPerSample }));
  return { samples: total, focused, ms: total * msPerSample, self: lines(self), inclusive: lines(incl) };
}

/** The summary as text. */
export function formatSummary(s: ProfileSummary, focus?: string): string {
  const out = [`${s.samples} samples, ${s.ms.toFixed(0)} ms${focus !== undefined ? `; ${s.focused} under ${focus}` : ''}`];
  const table = (title: string, lines: ProfileLine[]) => {
    out.push(`== ${title}`);
    for (const l of lines) out.push(`${l.percent.toFixed(1).padStart(5)}% ${l.ms.toFixed(1).padStart(9)} ms  ${l.fn}`);
  };
  table('self', s.self);
  table('inclusive', s.inclusive);
  return out.join('\n');
}

function main(argv: readonly string[]): number {
  let top = 30;
  let focus: string | undefined;
  const files: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--top') top = Number(argv[++i]);
    else if (a === '--focus') focus = argv[++i];
    else files.push(a);
  }
  if (files.length === 0 || !(top > 0)) {
    process.stderr.write('usage: profile-summary FILE.cpuprofile... [--top N] [--focus NAME]\n');
    return 2;
  }
  for (const f of files) {
    const p = JSON.parse(readFileSync(f, 'utf8')) as CpuProfile;
    process.stdout.write(`${f}: ${formatSummary(summariseProfile(p, { top, focus }), focus)}\n`);
  }
  return 0;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) process.exitCode = main(process.argv.slice(2));
