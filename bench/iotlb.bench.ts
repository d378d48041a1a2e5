/**
 * Host IOTLB: cost of each invalidation kind and of a lookup, with 1 K, 64 K and 1 M live
 * entries (quick mode: 1 K and 64 K). The claim under test is that an invalidation costs about
 * what it removes, whatever else is cached, so the rows that matter are the ratios of the
 * largest population to 1 K (target: below 2).
 *
 * Method (honest accounting):
 * - Every population has the same shape: 4 VMIDs, each with 4 "big" ASIDs holding the bulk
 *   (sequential 4 KiB pages plus one 2 MiB block per 32 entries, so lookups and VA
 *   invalidations probe two sizes), 8 "small" ASIDs of 4 entries, some global entries and
 *   some stage-2-only entries. IPAs are scattered (a multiplicative permutation of pages).
 *   Only the big ASIDs grow with the population, so each measured command removes exactly
 *   the same number of entries in every population (checked: the bench throws otherwise).
 * - Each command's targets are drawn at random over the whole population, so a large
 *   population pays its real cache misses.
 * - A timed batch runs only the invalidation calls; the removed entries are re-inserted
 *   afterwards, outside the timed region, so reinsertion cost is not in the numbers.
 * - Batches repeat until a run has at least 2 ms of timed work; a run's value is timed ns per
 *   command; the row is the median of 7 runs after 2 warm-up runs.
 */

import { pathToFileURL } from 'node:url';
import { Iotlb, PERM_R, PERM_W, type IotlbEntry } from '../src/host/smmuv3/iotlb.js';
import { table, type Row } from './harness.js';

const K4 = 0x1000;
const M2 = 0x20_0000;
const VMS = 4;
const BIG_ASIDS = 4;
const SMALL_ASIDS = 8; // per VMID
const SMALL_ENTRIES = 4;
const RUNS = 7;
const WARMUP = 2;
const MIN_RUN_NS = 2e6;

/** mulberry32: a tiny seeded PRNG, so every run measures the same targets. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Population {
  readonly iotlb: Iotlb;
  /** 4 KiB entries of the big ASIDs, per context, in IOVA order. */
  readonly bigPages: IotlbEntry[][];
  /** Entries of each small ASID. */
  readonly small: IotlbEntry[][];
  /** Every entry (lookup targets). */
  readonly all: IotlbEntry[];
}

function populate(total: number): Population {
  const iotlb = new Iotlb();
  const bigPages: IotlbEntry[][] = [];
  const small: IotlbEntry[][] = [];
  const all: IotlbEntry[] = [];
  const perVmSide = Math.max(8, Math.floor(total / 128)); // global and stage-2-only entries per VMID
  const perBig = Math.floor((total - VMS * SMALL_ASIDS * SMALL_ENTRIES - VMS * 2 * perVmSide) / (VMS * BIG_ASIDS));
  const blocks = Math.floor(perBig / 32);
  const pages = perBig - blocks;
  const add = (e: IotlbEntry): IotlbEntry => {
    iotlb.insert(e);
    all.push(e);
    return e;
  };
  for (let v = 1; v <= VMS; v++) {
    // Scattered, distinct IPA pages below 2^40: multiplying by an odd number permutes 2^28 values.
    let ipaCounter = 0;
    const nextIpa = (): number => ((ipaCounter++ * 0x9e3779b1) % 2 ** 28) * K4;
    const s1 = (asid: number, iova: number, size: number, ipa: number, global = false): IotlbEntry =>
      add({ vmid: v, asid, global, stage1: true, iova, size, ipa, pa: ipa + 2 ** 44, perm: PERM_R | PERM_W });
    for (let a = 1; a <= BIG_ASIDS; a++) {
      const list: IotlbEntry[] = [];
      for (let i = 0; i < pages; i++) list.push(s1(a, 0x10_0000_0000 + i * K4, K4, nextIpa()));
      for (let j = 0; j < blocks; j++) s1(a, 0x100_0000_0000 + j * M2, M2, 2 ** 41 + (a * 2 ** 20 + j) * M2);
      bigPages.push(list);
    }
    for (let a = 0; a < SMALL_ASIDS; a++) {
      const list: IotlbEntry[] = [];
      for (let i = 0; i < SMALL_ENTRIES; i++) list.push(s1(100 + a, 0x40_0000_0000 + i * K4, K4, nextIpa()));
      small.push(list);
    }
    for (let i = 0; i < perVmSide; i++) s1(0, 0x20_0000_0000 + i * K4, K4, nextIpa(), true);
    for (let i = 0; i < perVmSide; i++) {
      const ipa = 2 ** 42 + i * K4;
      add({ vmid: v, asid: 0, global: false, stage1: false, iova: ipa, size: K4, ipa, pa: ipa + 2 ** 44, perm: PERM_R | PERM_W });
    }
  }
  return { iotlb, bigPages, small, all };
}

/** One invalidation kind: how to pick a batch of targets, run one command, and what it removes. */
interface Kind {
  readonly name: string;
  readonly note: string;
  /** Targets of one batch; each is the list of entries the command must remove. */
  batch(p: Population, rnd: () => number): IotlbEntry[][];
  run(t: Iotlb, target: IotlbEntry[]): number;
}

function pickDistinct<T>(xs: readonly T[], n: number, rnd: () => number): T[] {
  const chosen = new Set<number>();
  const want = Math.min(n, xs.length);
  while (chosen.size < want) chosen.add(Math.floor(rnd() * xs.length));
  return [...chosen].map((i) => xs[i]!);
}

function randomBigPages(p: Population, n: number, rnd: () => number): IotlbEntry[][] {
  const out = new Map<IotlbEntry, IotlbEntry[]>();
  while (out.size < n) {
    const ctx = p.bigPages[Math.floor(rnd() * p.bigPages.length)]!;
    const e = ctx[Math.floor(rnd() * ctx.length)]!;
    out.set(e, [e]);
  }
  return [...out.values()];
}

const KINDS: readonly Kind[] = [
  {
    name: 'TLBI_NH_VA 1 page',
    note: 'removes 1; probes 4K and 2M in the ASID and global contexts',
    batch: (p, rnd) => randomBigPages(p, 128, rnd),
    run: (t, target) => t.invalidateVa(target[0]!.vmid, target[0]!.asid, target[0]!.iova, K4, true),
  },
  {
    name: 'TLBI_NH_VA 16 pages',
    note: 'range TLBI (NUM=15, SCALE=0): removes 16',
    batch: (p, rnd) => {
      const runs: IotlbEntry[][] = [];
      for (const ctx of p.bigPages) for (let i = 0; i + 16 <= ctx.length; i += 16) runs.push(ctx.slice(i, i + 16));
      return pickDistinct(runs, 32, rnd);
    },
    run: (t, run) => t.invalidateVa(run[0]!.vmid, run[0]!.asid, run[0]!.iova, 16 * K4, true),
  },
  {
    name: 'TLBI_NH_ASID',
    note: 'an ASID holding 4 entries: removes 4',
    batch: (p, rnd) => pickDistinct(p.small, p.small.length, rnd),
    run: (t, target) => t.invalidateAsid(target[0]!.vmid, target[0]!.asid),
  },
  {
    name: 'TLBI_S2_IPA 1 page',
    note: 'removes the 1 nested entry with that IPA',
    batch: (p, rnd) => randomBigPages(p, 128, rnd),
    run: (t, target) => t.invalidateIpa(target[0]!.vmid, target[0]!.ipa, K4),
  },
  {
    name: 'TLBI_NH_VAA 1 page',
    note: 'removes 4 (the page in each big ASID); visits all 13 stage-1 contexts of the VMID',
    batch: (p, rnd) => {
      // bigPages holds the VMIDs' contexts in order, BIG_ASIDS per VMID, all with the same layout.
      const out = new Map<number, IotlbEntry[]>();
      while (out.size < 64) {
        const v = Math.floor(rnd() * VMS);
        const i = Math.floor(rnd() * p.bigPages[0]!.length);
        out.set(v * 2 ** 32 + i, p.bigPages.slice(v * BIG_ASIDS, (v + 1) * BIG_ASIDS).map((ctx) => ctx[i]!));
      }
      return [...out.values()];
    },
    run: (t, target) => t.invalidateVa(target[0]!.vmid, undefined, target[0]!.iova, K4),
  },
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Median timed ns per command of `kind` on `p` (reinsertion excluded). */
function measureKind(p: Population, kind: Kind, seed: number): number {
  const rnd = mulberry32(seed);
  const t = p.iotlb;
  const before = t.size;
  const perRun: number[] = [];
  for (let r = 0; r < WARMUP + RUNS; r++) {
    let ns = 0;
    let commands = 0;
    while (ns < MIN_RUN_NS) {
      const targets = kind.batch(p, rnd);
      let removed = 0;
      const t0 = process.hrtime.bigint();
      for (const target of targets) removed += kind.run(t, target);
      ns += Number(process.hrtime.bigint() - t0);
      commands += targets.length;
      // Untimed: check the commands did their work, then put the entries back.
      let want = 0;
      for (const target of targets) {
        want += target.length;
        for (const e of target) t.insert(e);
      }
      if (removed !== want || t.size !== before) {
        throw new Error(`${kind.name}: removed ${removed}, expected ${want}; size ${t.size} != ${before}`);
      }
    }
    if (r >= WARMUP) perRun.push(ns / commands);
  }
  return median(perRun);
}

/** Median ns per lookup over random hits spread across the whole population. */
function measureLookup(p: Population, seed: number): number {
  const rnd = mulberry32(seed);
  const n = 1 << 16;
  const vmid = new Int32Array(n);
  const asid = new Int32Array(n);
  const iova = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const e = p.all[Math.floor(rnd() * p.all.length)]!;
    vmid[i] = e.vmid;
    asid[i] = !e.stage1 ? 0x1_0000 : e.global ? 1 : e.asid;
    iova[i] = e.iova + Math.floor(rnd() * (e.size / K4)) * K4 + 0x123;
  }
  const perRun: number[] = [];
  for (let r = 0; r < WARMUP + RUNS; r++) {
    let hits = 0;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) if (p.iotlb.lookup(vmid[i]!, asid[i]!, iova[i]!) !== undefined) hits++;
    const ns = Number(process.hrtime.bigint() - t0);
    if (hits !== n) throw new Error(`lookup: ${n - hits} misses`);
    if (r >= WARMUP) perRun.push(ns / n);
  }
  return median(perRun);
}

/** Run the IOTLB benchmark: ns per command and per lookup per population, then the ratios. */
export async function benchIotlb(opts: { quick: boolean }): Promise<Row[]> {
  const pops: [string, number][] = [
    ['1K', 1 << 10],
    ['64K', 1 << 16],
  ];
  if (!opts.quick) pops.push(['1M', 1 << 20]);
  const rows: Row[] = [];
  const results = new Map<string, number[]>();
  const record = (name: string, label: string, value: number, note?: string): void => {
    rows.push({ name: `iotlb ${name} @${label}`, value, unit: 'ns', ...(note !== undefined ? { note } : {}) });
    const r = results.get(name) ?? [];
    r.push(value);
    results.set(name, r);
  };
  // Warm the JIT up on every path first, so the 1K population is not measured half-compiled.
  {
    const p = populate(1 << 12);
    measureLookup(p, 1);
    KINDS.forEach((kind, i) => measureKind(p, kind, 1 + i));
  }
  for (const [label, n] of pops) {
    const p = populate(n);
    record('lookup (hit)', label, measureLookup(p, 7), label === '1K' ? 'random hits, 4K pages and 2M blocks' : undefined);
    KINDS.forEach((kind, i) => record(kind.name, label, measureKind(p, kind, 100 + i), label === '1K' ? kind.note : undefined));
    // Let the population go before building the next one.
    await new Promise((resolve) => setImmediate(resolve));
  }
  const top = pops[pops.length - 1]![0];
  for (const [name, values] of results) {
    rows.push({
      name: `iotlb ${name} ${top}/1K`,
      value: values[values.length - 1]! / values[0]!,
      unit: 'x',
      note: name.startsWith('TLBI_NH_VAA') || name.startsWith('lookup') ? 'no target' : 'target < 2',
    });
  }
  return rows;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const rows = await benchIotlb({ quick: process.argv.includes('--quick') });
  process.stdout.write(`${table(rows)}\n`);
}
