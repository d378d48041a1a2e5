/**
 * Small benchmark harness: median of N timed runs after warm-up, with min and max. Results are
 * rows of a table that `run.ts` prints and writes to bench/results.json.
 */

/** One measured row. */
export interface Row {
  name: string;
  value: number;
  unit: string;
  min?: number;
  max?: number;
  note?: string;
}

/** Run `fn` (which returns how many operations it did) `warmup + runs` times; rate per second. */
export function measureRate(name: string, unit: string, fn: () => number, runs = 5, warmup = 1): Row {
  for (let i = 0; i < warmup; i++) fn();
  const rates: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    const ops = fn();
    const ns = Number(process.hrtime.bigint() - t0);
    rates.push((ops / ns) * 1e9);
  }
  rates.sort((a, b) => a - b);
  return { name, value: rates[Math.floor(rates.length / 2)]!, unit, min: rates[0]!, max: rates[rates.length - 1]! };
}

/** Format a number with SI suffix. */
export function si(v: number): string {
  if (v >= 1e9) return `${(v / 1e9).toFixed(2)} G`;
  if (v >= 1e6) return `${(v / 1e6).toFixed(2)} M`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(2)} k`;
  return v.toFixed(2);
}

/** Render rows as an aligned text table. */
export function table(rows: readonly Row[]): string {
  const lines = rows.map((r) => [
    r.name,
    `${si(r.value)}${r.unit}`,
    r.min !== undefined ? `${si(r.min)} – ${si(r.max!)}` : '',
    r.note ?? '',
  ]);
  const w = [0, 1, 2].map((i) => Math.max(...lines.map((l) => l[i]!.length), 4));
  return lines.map((l) => `${l[0]!.padEnd(w[0]!)}  ${l[1]!.padStart(w[1]!)}  ${l[2]!.padEnd(w[2]!)}  ${l[3]}`).join('\n');
}
