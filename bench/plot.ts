/**
 * `npm run bench -- --plot` (or `node dist/bench/plot.js [results.json] [out.svg]` on an existing
 * results file): bench/results.svg. The headline panel is the point of CMDQV: the modelled
 * invalidation latency per operation of the three paths (emulated SMMUv3, trapped, CMDQV) per
 * batch size, with the VM exits each takes per operation. The model's own speed (operations/s
 * of wall time and its real-time factor) is the secondary panel; rows 4 and 5 follow.
 */

import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DEFAULT_COST_MODEL, modelLatency, type CostModel } from '../src/platform/cost-model.js';
import type { Row } from './harness.js';
import type { PathResult } from './paths.bench.js';
import type { LoopResult, ScaleResult } from './workload.bench.js';

/** What the plot reads from bench/results.json. */
export interface PlotInput {
  date?: string;
  quick?: boolean;
  node?: string;
  costModel?: CostModel;
  rows: Row[];
  loop?: LoopResult[];
  scale?: ScaleResult[];
  /** Row 10 (absent in results written before it existed: the headline then lacks the emulated path). */
  paths?: PathResult[];
}

interface Bar {
  label: string;
  value: number;
  color: string;
}

/** One bar of a grouped panel: value, its label above, a second line below. */
interface GroupBar {
  value: number;
  top: string;
  below?: string;
}

const W = 900;
const PANEL_H = 260;
const HEAD_H = 300;
const TITLE_H = 34;
const PATH_COLORS: Readonly<Record<string, string>> = { emulated: '#79c', trapped: '#c54', cmdqv: '#2a7' };
const PATH_LABELS: Readonly<Record<string, string>> = { emulated: 'emulated SMMUv3', trapped: 'accel, trapped', cmdqv: 'accel + CMDQV' };
const PATH_ORDER = ['emulated', 'trapped', 'cmdqv'] as const;

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
}

function fmt(v: number): string {
  if (v >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
  return v.toFixed(v < 10 ? 2 : 0);
}

function panel(y0: number, title: string, unit: string, bars: Bar[], log = false): string {
  const left = 70;
  const top = y0 + 30;
  const h = PANEL_H - (bars.length > 10 ? 130 : 90);
  const max = Math.max(...bars.map((b) => b.value), 1);
  const scale = (v: number) => (log ? (Math.log10(Math.max(v, 1)) / Math.log10(max * 1.2)) * h : (v / (max * 1.1)) * h);
  const bw = Math.min(60, (W - left - 20) / bars.length - 8);
  const parts = [`<text x="${left}" y="${y0 + 18}" font-size="15" font-weight="bold">${esc(title)}</text>`,
    `<line x1="${left}" y1="${top + h}" x2="${W - 10}" y2="${top + h}" stroke="#444"/>`,
    `<text x="8" y="${top + h / 2}" font-size="11" transform="rotate(-90 12 ${top + h / 2})">${esc(unit)}${log ? ' (log)' : ''}</text>`];
  bars.forEach((b, i) => {
    const x = left + 10 + i * (bw + 8);
    const bh = Math.max(1, scale(b.value));
    parts.push(`<rect x="${x}" y="${top + h - bh}" width="${bw}" height="${bh}" fill="${b.color}"/>`);
    parts.push(`<text x="${x + bw / 2}" y="${top + h - bh - 4}" font-size="10" text-anchor="middle">${esc(fmt(b.value))}</text>`);
    if (bars.length > 10) {
      // Many bars: slanted labels so they do not overlap.
      parts.push(`<text x="${x + bw / 2}" y="${top + h + 10}" font-size="9" text-anchor="end" transform="rotate(-40 ${x + bw / 2} ${top + h + 10})">${esc(b.label)}</text>`);
    } else {
      parts.push(`<text x="${x + bw / 2}" y="${top + h + 14}" font-size="10" text-anchor="middle">${esc(b.label)}</text>`);
    }
  });
  return parts.join('\n');
}

/**
 * Bars grouped by batch size, one per path (colour), with a legend. `log` scales values over
 * their own decades (the latencies span three).
 */
function groupedPanel(y0: number, height: number, title: string, unit: string, groups: { label: string; bars: (GroupBar & { path: string })[] }[], log: boolean): string {
  const left = 70;
  const top = y0 + 48;
  const h = height - 100;
  const values = groups.flatMap((g) => g.bars.map((b) => b.value)).filter((v) => v > 0);
  const max = Math.max(...values, 1e-9);
  const min = Math.min(...values, max);
  const lo = log ? Math.floor(Math.log10(min)) : 0;
  const hi = log ? Math.log10(max * 1.5) : max * 1.15;
  const scale = (v: number) => (log ? ((Math.log10(Math.max(v, 10 ** lo)) - lo) / (hi - lo)) * h : (v / hi) * h);
  const perGroup = Math.max(...groups.map((g) => g.bars.length), 1);
  const groupW = (W - left - 20) / groups.length;
  const bw = Math.min(70, (groupW - 40) / perGroup - 6);
  const parts = [
    `<text x="${left}" y="${y0 + 18}" font-size="15" font-weight="bold">${esc(title)}</text>`,
    `<line x1="${left}" y1="${top + h}" x2="${W - 10}" y2="${top + h}" stroke="#444"/>`,
    `<text x="8" y="${top + h / 2}" font-size="11" transform="rotate(-90 12 ${top + h / 2})">${esc(unit)}${log ? ' (log)' : ''}</text>`,
  ];
  PATH_ORDER.forEach((p, i) => {
    const x = left + 10 + i * 170;
    parts.push(`<rect x="${x}" y="${y0 + 26}" width="12" height="12" fill="${PATH_COLORS[p]}"/>`);
    parts.push(`<text x="${x + 17}" y="${y0 + 36}" font-size="12">${esc(PATH_LABELS[p]!)}</text>`);
  });
  groups.forEach((g, gi) => {
    const gx = left + gi * groupW + 20;
    g.bars.forEach((b, i) => {
      const x = gx + i * (bw + 6);
      const bh = Math.max(1, scale(b.value));
      parts.push(`<rect x="${x.toFixed(1)}" y="${(top + h - bh).toFixed(1)}" width="${bw.toFixed(1)}" height="${bh.toFixed(1)}" fill="${PATH_COLORS[b.path] ?? '#888'}"/>`);
      parts.push(`<text x="${(x + bw / 2).toFixed(1)}" y="${(top + h - bh - 4).toFixed(1)}" font-size="11" text-anchor="middle">${esc(b.top)}</text>`);
      if (b.below) parts.push(`<text x="${(x + bw / 2).toFixed(1)}" y="${top + h + 14}" font-size="10" text-anchor="middle">${esc(b.below)}</text>`);
    });
    const mid = gx + (g.bars.length * (bw + 6) - 6) / 2;
    parts.push(`<text x="${mid.toFixed(1)}" y="${top + h + 32}" font-size="12" font-weight="bold" text-anchor="middle">${esc(g.label)}</text>`);
  });
  return parts.join('\n');
}

function us(ns: number): string {
  const v = ns / 1000;
  return `${v < 0.1 ? v.toFixed(3) : v.toFixed(2)} µs`;
}

/** Row 10's results, or (older results) rows 3/7's paths computed from row 3's counts. */
function pathsOf(r: PlotInput): PathResult[] {
  if (r.paths?.length) return r.paths;
  const model = { ...DEFAULT_COST_MODEL, ...r.costModel };
  return (r.loop ?? []).map((l) => ({
    path: l.path,
    batch: l.batch,
    latencyPerOpNs: modelLatency(l.counts, model).perOpNs,
    exitsPerOp: l.exitsPerOp,
    hardwareNsPerOp: Number.NaN,
    opsPerSec: l.opsPerSec,
    min: l.min,
    max: l.max,
    realTimeFactor: Number.NaN,
  }));
}

function byBatch(paths: readonly PathResult[], bar: (p: PathResult) => GroupBar): { label: string; bars: (GroupBar & { path: string })[] }[] {
  const batches = [...new Set(paths.map((p) => p.batch))].sort((a, b) => a - b);
  return batches.map((batch) => ({
    label: `batch ${batch}`,
    bars: PATH_ORDER.flatMap((path) => {
      const p = paths.find((x) => x.batch === batch && x.path === path);
      return p ? [{ ...bar(p), path }] : [];
    }),
  }));
}

/** Render the chart from a results file's contents. */
export function renderPlot(r: PlotInput): string {
  const paths = pathsOf(r);
  const iotlb: Bar[] = r.rows
    .filter((x) => x.unit === 'ns' && /@/.test(x.name) && /TLBI/.test(x.name))
    .map((x) => ({
      label: x.name.replace(/^4\. /, '').replace('iotlb ', '').replace('TLBI_', '').replace(/ pages?/, 'p').replace(' @', ' '),
      value: x.value,
      color: /@1M/.test(x.name) ? '#35a' : /@64K/.test(x.name) ? '#79c' : '#bcd',
    }));
  const scale: Bar[] = (r.scale ?? []).map((s) => ({ label: `${s.vms} VM${s.vms > 1 ? 's' : ''}`, value: s.commandsPerSec, color: '#a7c' }));
  const when = [r.date?.slice(0, 10), r.node].filter(Boolean).join(', ');
  const title = `cmdqv bench${when ? ` (${when})` : ''}${r.quick ? ' — a --quick run: model speed figures are not representative' : ''}`;
  let y = TITLE_H;
  const body = [`<text x="10" y="22" font-size="16" font-weight="bold">${esc(title)}</text>`];
  body.push(
    groupedPanel(
      y,
      HEAD_H,
      'Modelled invalidation latency per map/DMA/unmap operation, and VM exits per operation',
      'µs per operation',
      byBatch(paths, (p) => ({ value: p.latencyPerOpNs / 1000, top: us(p.latencyPerOpNs), below: `${fmt(p.exitsPerOp)} exits/op` })),
      true,
    ),
  );
  y += HEAD_H;
  const speed = paths.some((p) => Number.isFinite(p.realTimeFactor));
  body.push(
    groupedPanel(
      y,
      PANEL_H,
      `Model speed: operations/s of wall time${speed ? ' and real-time factor (modelled hardware time ÷ wall time)' : ''}`,
      'op/s',
      byBatch(paths, (p) => ({ value: p.opsPerSec, top: fmt(p.opsPerSec), below: Number.isFinite(p.realTimeFactor) ? `RTF ${p.realTimeFactor.toFixed(2)}` : undefined })),
      false,
    ),
  );
  y += PANEL_H;
  if (iotlb.length) {
    body.push(panel(y, 'Row 4: invalidation cost (ns/command) by IOTLB population (light 1K, mid 64K, dark 1M)', 'ns', iotlb, true));
    y += PANEL_H;
  }
  if (scale.length) {
    body.push(panel(y, 'Row 5: aggregate VCMDQ commands/s over VMs sharing one host', 'cmd/s', scale));
    y += PANEL_H;
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y}" font-family="sans-serif">\n<title>${esc(title)}</title>\n<rect width="100%" height="100%" fill="white"/>\n${body.join('\n')}\n</svg>\n`;
}

/** `node dist/bench/plot.js [results.json] [out.svg]`: re-render from an existing results file. */
function main(argv: readonly string[]): void {
  const input = argv[0] ?? 'bench/results.json';
  const out = argv[1] ?? input.replace(/\.json$/, '.svg');
  writeFileSync(out, renderPlot(JSON.parse(readFileSync(input, 'utf8')) as PlotInput));
  process.stdout.write(`wrote ${out}\n`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) main(process.argv.slice(2));
