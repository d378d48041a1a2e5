/**
 * `--plot`: an SVG with three bar charts — row 3 (guest loop, both paths, per batch size),
 * row 4 (invalidation cost by IOTLB population) and row 5 (aggregate rate by VM count).
 */

import type { Row } from './harness.js';
import type { LoopResult, ScaleResult } from './workload.bench.js';

interface Bar {
  label: string;
  value: number;
  color: string;
}

const W = 900;
const PANEL_H = 260;

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
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

function fmt(v: number): string {
  if (v >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
  return v.toFixed(v < 10 ? 2 : 0);
}

/** Render the chart. */
export function renderPlot(loop: readonly LoopResult[], iotlb: readonly Row[], scale: readonly ScaleResult[]): string {
  const row3: Bar[] = loop.map((l) => ({ label: `${l.path === 'cmdqv' ? 'CMDQV' : 'trap'} b${l.batch}`, value: l.opsPerSec, color: l.path === 'cmdqv' ? '#2a7' : '#c54' }));
  const row4: Bar[] = iotlb
    .filter((r) => r.unit === 'ns' && /@/.test(r.name) && /TLBI/.test(r.name))
    .map((r) => ({
      label: r.name.replace('iotlb ', '').replace('TLBI_', '').replace(/ pages?/, 'p').replace(' @', ' '),
      value: r.value,
      color: /@1M/.test(r.name) ? '#35a' : /@64K/.test(r.name) ? '#79c' : '#bcd',
    }));
  const row5: Bar[] = scale.map((s) => ({ label: `${s.vms} VM${s.vms > 1 ? 's' : ''}`, value: s.commandsPerSec, color: '#a7c' }));
  const body = [
    panel(0, 'Row 3: guest map/DMA/unmap loop (ops/s), CMDQV vs trapped, by batch size', 'ops/s', row3),
    panel(PANEL_H, 'Row 4: invalidation cost (ns/command) by IOTLB population (light 1K, mid 64K, dark 1M)', 'ns', row4, true),
    panel(2 * PANEL_H, 'Row 5: aggregate VCMDQ commands/s over VMs sharing one host', 'cmd/s', row5),
  ];
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${3 * PANEL_H}" font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n${body.join('\n')}\n</svg>\n`;
}
