/**
 * The timeline panel: the workload window of each path's Perfetto trace drawn on one canvas,
 * on one time scale, one lane per (process, thread), so the trapped path's exits, ioctls and
 * host-CMDQ batches and the VCMDQ path's doorbells and silicon batches compare by length.
 */

import type { TimelineSummary } from '../src/serve/api.js';
import type { Lane, Slice, TraceModel } from './trace-model.js';
import { h } from './dom.js';

/** One path's trace and its workload window (µs). */
export interface TimelineSection {
  readonly key: string;
  readonly title: string;
  readonly model: TraceModel;
  readonly window: readonly [number, number];
}


const LABEL_W = 260;
const AXIS_H = 22;
const TITLE_H = 22;
const ROW_H = 11;
const LANE_PAD = 3;

/** Colours by what a slice is (the legend shows the same). */
const KINDS: readonly { readonly label: string; readonly color: string; readonly match: (s: Slice, l: Lane) => boolean }[] = [
  { label: 'VM exit (kvm_exit)', color: '#d93025', match: (s) => s.name === 'kvm_exit' },
  { label: 'MMIO emulation in the VMM', color: '#f29900', match: (s) => s.name.startsWith('memory_region_ops') },
  { label: 'ioctl (host kernel)', color: '#8e44ad', match: (_s, l) => l.process.startsWith('host kernel') },
  { label: 'host SMMU CMDQ batch', color: '#1a73e8', match: (s, l) => s.name.startsWith('consume') && l.process.startsWith('host SMMU') },
  { label: 'VCMDQ batch (silicon)', color: '#0f9d8a', match: (s, l) => s.name.startsWith('consume') && l.process.startsWith('CMDQV') },
  { label: 'page0 doorbell (no exit)', color: '#34c3b3', match: (s) => s.name.startsWith('vcmdq page0') },
  { label: 'DMA translation', color: '#9aa0a6', match: (s) => s.name.startsWith('smmuv3_translate') },
];
const OTHER = '#5f6368';

function colorOf(s: Slice, l: Lane): string {
  for (const k of KINDS) if (k.match(s, l)) return k.color;
  return OTHER;
}

/** The legend's entries. */
export function renderLegend(el: HTMLElement): void {
  el.replaceChildren(...KINDS.map((k) => h('span', { style: `--c:${k.color}` }, k.label)));
}

interface Hit {
  readonly x: number;
  readonly y: number;
  readonly w: number;
  readonly h: number;
  readonly text: string;
}

function depthOf(l: Lane, t0: number, t1: number): number {
  let d = 0;
  for (const s of l.slices) if (s.end >= t0 && s.start <= t1) d = Math.max(d, s.depth);
  return d + 1;
}

function fmtUs(us: number): string {
  return us >= 1000 ? `${(us / 1000).toFixed(2)} ms` : `${us.toFixed(us < 10 ? 2 : 1)} µs`;
}

/** Draw `sections` into `container` (replacing what was there). */
export function renderTimeline(container: HTMLElement, sections: readonly TimelineSection[]): TimelineSummary[] {
  const width = Math.max(600, container.clientWidth);
  const span = Math.max(1e-3, ...sections.map((s) => s.window[1] - s.window[0]));
  const plotW = width - LABEL_W - 12;
  const x = (t: number, t0: number) => LABEL_W + ((t - t0) / span) * plotW;
  // Layout first: each section's lanes that have work inside its window.
  const layout = sections.map((sec) => {
    const [t0, t1] = sec.window;
    const lanes = sec.model.lanes.filter((l) => l.slices.some((s) => s.end >= t0 && s.start <= t1)).map((l) => ({ lane: l, rows: depthOf(l, t0, t1) }));
    return { sec, lanes };
  });
  let height = AXIS_H;
  for (const s of layout) height += TITLE_H + s.lanes.reduce((a, l) => a + l.rows * ROW_H + LANE_PAD * 2, 0) + 6;
  const dpr = window.devicePixelRatio || 1;
  const canvas = h('canvas', { width: String(Math.round(width * dpr)), height: String(Math.round(height * dpr)), 'aria-label': 'timeline' });
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext('2d');
  if (!ctx) throw new Error('no 2D canvas');
  ctx.scale(dpr, dpr);
  ctx.font = '11px system-ui, sans-serif';
  ctx.textBaseline = 'middle';
  // Time axis (shared by the sections).
  ctx.fillStyle = '#6b7385';
  ctx.strokeStyle = '#e3e6ec';
  const step = niceStep(span / 8);
  for (let t = 0; t <= span + 1e-9; t += step) {
    const px = LABEL_W + (t / span) * plotW;
    ctx.beginPath();
    ctx.moveTo(px, AXIS_H - 4);
    ctx.lineTo(px, height);
    ctx.stroke();
    ctx.fillText(`+${fmtUs(t)}`, px + 2, AXIS_H / 2);
  }
  ctx.fillText('from the first operation', 4, AXIS_H / 2);
  const hits: Hit[] = [];
  const summaries: TimelineSummary[] = [];
  let y = AXIS_H;
  for (const { sec, lanes } of layout) {
    const [t0, t1] = sec.window;
    ctx.fillStyle = '#1d2330';
    ctx.font = 'bold 12px system-ui, sans-serif';
    ctx.fillText(`${sec.title}: workload ${fmtUs(t1 - t0)}`, 4, y + TITLE_H / 2);
    ctx.font = '11px system-ui, sans-serif';
    // The window's extent on the shared scale.
    ctx.fillStyle = 'rgba(29, 35, 48, 0.08)';
    ctx.fillRect(LABEL_W, y + TITLE_H - 4, x(t1, t0) - LABEL_W, 3);
    y += TITLE_H;
    const laneY = new Map<Lane, number>();
    const lanesOut: { name: string; slices: number; busyUs: number }[] = [];
    for (const { lane, rows } of lanes) {
      const hgt = rows * ROW_H + LANE_PAD * 2;
      laneY.set(lane, y + LANE_PAD);
      ctx.fillStyle = '#f6f7f9';
      ctx.fillRect(0, y, width, hgt - 1);
      ctx.fillStyle = '#1d2330';
      const name = `${lane.process} › ${lane.thread}`;
      ctx.fillText(name.length > 44 ? `${name.slice(0, 43)}…` : name, 4, y + hgt / 2);
      let count = 0;
      let busy = 0;
      for (const s of lane.slices) {
        if (s.end < t0 || s.start > t1) continue;
        count++;
        if (s.depth === 0) busy += s.end - s.start;
        const sx = x(Math.max(s.start, t0), t0);
        const sw = Math.max(1, x(Math.min(s.end, t1), t0) - sx);
        const sy = y + LANE_PAD + s.depth * ROW_H;
        ctx.fillStyle = colorOf(s, lane);
        ctx.fillRect(sx, sy, sw, ROW_H - 1);
        hits.push({ x: sx, y: sy, w: sw, h: ROW_H - 1, text: `${s.name} — ${fmtUs(s.end - s.start)} (${lane.process} › ${lane.thread})` });
      }
      lanesOut.push({ name, slices: count, busyUs: busy });
      y += hgt;
    }
    // Flow arrows inside the window (doorbell → VCMDQ, trapped write → ioctl → host CMDQ).
    ctx.strokeStyle = 'rgba(29, 35, 48, 0.35)';
    for (const f of sec.model.flows) {
      const fy = laneY.get(f.from.lane);
      const ty = laneY.get(f.to.lane);
      if (fy === undefined || ty === undefined || f.from.ts < t0 || f.to.ts > t1) continue;
      ctx.beginPath();
      ctx.moveTo(x(f.from.ts, t0), fy + ROW_H / 2);
      ctx.lineTo(x(f.to.ts, t0), ty + ROW_H / 2);
      ctx.stroke();
    }
    summaries.push({ key: sec.key, windowUs: t1 - t0, lanes: lanesOut });
    y += 6;
  }
  const tip = h('div', { id: 'timeline-tip' });
  canvas.addEventListener('mousemove', (ev) => {
    const r = canvas.getBoundingClientRect();
    const mx = ev.clientX - r.left;
    const my = ev.clientY - r.top;
    const hit = hits.find((k) => mx >= k.x && mx <= k.x + k.w + 1 && my >= k.y && my <= k.y + k.h);
    tip.style.display = hit ? 'block' : 'none';
    if (hit) {
      tip.textContent = hit.text;
      tip.style.left = `${Math.min(mx + 10, width - 320)}px`;
      tip.style.top = `${my + 12}px`;
    }
  });
  canvas.addEventListener('mouseleave', () => (tip.style.display = 'none'));
  canvas.dataset.summary = JSON.stringify(summaries);
  container.replaceChildren(canvas, tip);
  return summaries;
}

/** A round tick step (1, 2 or 5 × 10^k) near `raw`. */
function niceStep(raw: number): number {
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}
