/**
 * Host IOTLB: cost of each invalidation kind and of a lookup, with 1 K, 64 K and 1 M live
 * entries (quick mode: 1 K and 64 K). The claim under test is that an invalidation costs about
 * what it removes, whatever else is cached, so the rows that matter are the ratios of the
 * largest population to 1 K (target: below 2).
 *
 * Method (honest accounting):
 * - Every population has the same shape: 4 VMIDs, each with 4 "big" ASIDs holding the bulk
 *   (sequential 4 KiB pages plus one 2 MiB block per 32 entries, so lookups and VA
 *   invalidations probe two sizes), 8 "small" ASIDs of 4 entries, global entries and
 *   stage-2-only entries (1/128 of the population each). IPAs are scattered (a multiplicative
 *   permutation of 2^28 pages). Only the per-context counts grow with the population, so a
 *   measured command removes exactly the same entries in every population (checked: the bench
 *   throws otherwise).
 * - A command's targets are drawn at random over the whole population. Each kind is measured
 *   twice: "cold", as drawn, so a large population pays its real cache and TLB misses (about
 *   one DRAM access per index touched: the "memory" row measures what one costs here); and
 *   "hot", with the targets re-inserted (untimed) just before the timed batch, like a
 *   streaming-DMA unmap of pages the device just used. Hot isolates the algorithm: a
 *   structure that scanned would grow with the population either way.
 * - One run times one batch of distinct commands (no reinsertion inside the timed region);
 *   the removed entries are re-inserted afterwards, untimed. All populations stay alive and
 *   are measured in turn over ROUNDS rounds (each: WARMUP batches, then RUNS_PER_ROUND timed
 *   ones), so a change in machine load hits every population alike. A row is the median of
 *   the per-command times (40 runs); min and max are shown too, and a garbage-collection
 *   pause landing in a batch shows up there, not in the median.
 * - A reference row times a plain scan of every entry, which is what a QEMU-style IOTLB (it
 *   walks its whole hash table on each TLBI) would pay per command at best.
 * - Before anything is measured, every path runs on a small population so the JIT has
 *   compiled it (otherwise the first population measured would pay for compilation).
 */

import { pathToFileURL } from 'node:url';
import { Iotlb, NO_ASID, PERM_R, PERM_W, type IotlbEntry } from '../src/host/smmuv3/iotlb.js';
import { table, type Row } from './harness.js';
import { mulberry32 } from '../src/kit/prng.js';

const K4 = 0x1000;
const M2 = 0x20_0000;
const VMS = 4;
const BIG_ASIDS = 4;
const SMALL_ASIDS = 8; // per VMID
const SMALL_ENTRIES = 4;
/** Measurement rounds; in each, every cell runs WARMUP untimed-result batches then RUNS_PER_ROUND. */
const ROUNDS = 8;
const WARMUP = 8;
const RUNS_PER_ROUND = 5;
const RW = PERM_R | PERM_W;


/** Scattered, distinct IPA pages below 2^40: x ↦ x · odd mod 2^28 is a permutation. */
function scatteredIpa(index: number): number {
  return (Math.imul(index, 0x9e3779b1) & 0x0fff_ffff) * K4;
}

/**
 * A population's layout. Entries are made on demand from their coordinates rather than kept,
 * so the bench does not double the heap the garbage collector has to mark.
 */
class Population {
  readonly iotlb = new Iotlb();
  /** Global and stage-2-only entries per VMID. */
  readonly side: number;
  /** 4 KiB pages and 2 MiB blocks per big ASID. */
  readonly pages: number;
  readonly blocks: number;

  constructor(readonly total: number) {
    this.side = Math.max(8, Math.floor(total / 128));
    const perBig = Math.floor((total - VMS * SMALL_ASIDS * SMALL_ENTRIES - VMS * 2 * this.side) / (VMS * BIG_ASIDS));
    this.blocks = Math.floor(perBig / 32);
    this.pages = perBig - this.blocks;
    for (let v = 1; v <= VMS; v++) {
      for (let a = 1; a <= BIG_ASIDS; a++) {
        for (let i = 0; i < this.pages; i++) this.iotlb.insert(this.bigPage(v, a, i));
        for (let j = 0; j < this.blocks; j++) this.iotlb.insert(this.block(v, a, j));
      }
      for (let k = 0; k < SMALL_ASIDS; k++) {
        for (let i = 0; i < SMALL_ENTRIES; i++) this.iotlb.insert(this.small(v, k, i));
      }
      for (let i = 0; i < this.side; i++) {
        this.iotlb.insert(this.global(v, i));
        this.iotlb.insert(this.stage2(v, i));
      }
    }
    if (this.iotlb.size !== VMS * (BIG_ASIDS * (this.pages + this.blocks) + SMALL_ASIDS * SMALL_ENTRIES + 2 * this.side)) {
      throw new Error('population: entries collided');
    }
  }

  bigPage(v: number, a: number, i: number): IotlbEntry {
    const ipa = scatteredIpa((a - 1) * this.pages + i);
    return { vmid: v, asid: a, global: false, stage1: true, iova: 0x10_0000_0000 + i * K4, size: K4, ipa, pa: ipa + 2 ** 44, perm: RW };
  }

  block(v: number, a: number, j: number): IotlbEntry {
    const ipa = 2 ** 41 + (a * 2 ** 20 + j) * M2;
    return { vmid: v, asid: a, global: false, stage1: true, iova: 0x100_0000_0000 + j * M2, size: M2, ipa, pa: ipa, perm: RW };
  }

  small(v: number, k: number, i: number): IotlbEntry {
    const ipa = scatteredIpa(BIG_ASIDS * this.pages + k * SMALL_ENTRIES + i);
    return { vmid: v, asid: 100 + k, global: false, stage1: true, iova: 0x40_0000_0000 + i * K4, size: K4, ipa, pa: ipa + 2 ** 44, perm: RW };
  }

  global(v: number, i: number): IotlbEntry {
    const ipa = scatteredIpa(BIG_ASIDS * this.pages + SMALL_ASIDS * SMALL_ENTRIES + i);
    return { vmid: v, asid: 0, global: true, stage1: true, iova: 0x20_0000_0000 + i * K4, size: K4, ipa, pa: ipa + 2 ** 44, perm: RW };
  }

  stage2(v: number, i: number): IotlbEntry {
    const ipa = 2 ** 42 + i * K4;
    return { vmid: v, asid: 0, global: false, stage1: false, iova: ipa, size: K4, ipa, pa: ipa + 2 ** 44, perm: RW };
  }
}

/**
 * One invalidation kind. `batch` picks the targets of one run's commands (distinct), each with
 * the entries its command must remove; `run` issues one command and returns what it removed.
 */
interface Kind {
  readonly name: string;
  readonly note: string;
  /** Whether a hot variant differs (NH_ASID's small ASIDs are re-inserted every run anyway). */
  readonly hotToo: boolean;
  batch(p: Population, rnd: () => number): IotlbEntry[][];
  run(t: Iotlb, target: IotlbEntry[]): number;
}

const int = (rnd: () => number, n: number): number => Math.floor(rnd() * n);

/** `n` distinct random 4 KiB pages of the big ASIDs. */
function randomBigPages(p: Population, n: number, rnd: () => number): IotlbEntry[][] {
  const seen = new Set<number>();
  const out: IotlbEntry[][] = [];
  while (out.length < n) {
    const v = 1 + int(rnd, VMS);
    const a = 1 + int(rnd, BIG_ASIDS);
    const i = int(rnd, p.pages);
    const key = ((v * 8 + a) * 2 ** 32) + i;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push([p.bigPage(v, a, i)]);
  }
  return out;
}

const KINDS: readonly Kind[] = [
  {
    name: 'TLBI_NH_VA 1 page',
    hotToo: true,
    note: 'removes 1; probes 4K and 2M tables of the ASID and the global table',
    batch: (p, rnd) => randomBigPages(p, 128, rnd),
    run: (t, target) => t.invalidateVa(target[0]!.vmid, target[0]!.asid, target[0]!.iova, K4, true),
  },
  {
    name: 'TLBI_NH_VA 16 pages',
    hotToo: true,
    note: 'range TLBI (NUM=15, SCALE=0): removes 16',
    batch: (p, rnd) => {
      const runs = Math.floor(p.pages / 16);
      const seen = new Set<number>();
      const out: IotlbEntry[][] = [];
      while (out.length < 32) {
        const c = int(rnd, VMS * BIG_ASIDS);
        const r = int(rnd, runs);
        if (seen.has(c * runs + r)) continue;
        seen.add(c * runs + r);
        const list: IotlbEntry[] = [];
        for (let i = 0; i < 16; i++) list.push(p.bigPage(1 + (c >> 2), 1 + (c & 3), r * 16 + i));
        out.push(list);
      }
      return out;
    },
    run: (t, target) => t.invalidateVa(target[0]!.vmid, target[0]!.asid, target[0]!.iova, 16 * K4, true),
  },
  {
    name: 'TLBI_NH_ASID',
    hotToo: false,
    note: 'an ASID holding 4 entries: removes 4 (re-inserted every run, so always hot)',
    batch: (p) => {
      const out: IotlbEntry[][] = [];
      for (let v = 1; v <= VMS; v++) {
        for (let k = 0; k < SMALL_ASIDS; k++) {
          const list: IotlbEntry[] = [];
          for (let i = 0; i < SMALL_ENTRIES; i++) list.push(p.small(v, k, i));
          out.push(list);
        }
      }
      return out;
    },
    run: (t, target) => t.invalidateAsid(target[0]!.vmid, target[0]!.asid),
  },
  {
    name: 'TLBI_S2_IPA 1 page',
    hotToo: true,
    note: 'removes the 1 nested entry with that IPA',
    batch: (p, rnd) => randomBigPages(p, 128, rnd),
    run: (t, target) => t.invalidateIpa(target[0]!.vmid, target[0]!.ipa, K4),
  },
  {
    name: 'TLBI_NH_VAA 1 page',
    hotToo: true,
    note: 'removes 4 (that page of each big ASID); visits all 13 stage-1 contexts of the VMID',
    batch: (p, rnd) => {
      const seen = new Set<number>();
      const out: IotlbEntry[][] = [];
      while (out.length < 64) {
        const v = 1 + int(rnd, VMS);
        const i = int(rnd, p.pages);
        if (seen.has(v * 2 ** 32 + i)) continue;
        seen.add(v * 2 ** 32 + i);
        const list: IotlbEntry[] = [];
        for (let a = 1; a <= BIG_ASIDS; a++) list.push(p.bigPage(v, a, i));
        out.push(list);
      }
      return out;
    },
    run: (t, target) => t.invalidateVa(target[0]!.vmid, undefined, target[0]!.iova, K4),
  },
];

interface Stat {
  median: number;
  min: number;
  max: number;
}

function summarize(xs: readonly number[]): Stat {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)]!, min: s[0]!, max: s[s.length - 1]! };
}

/**
 * One measured quantity on one population. Each `run()` times one batch and returns the
 * per-operation ns; the caller interleaves cells so that every population sees the same
 * machine conditions.
 */
interface Cell {
  readonly name: string;
  readonly note: string | undefined;
  run(): number;
}

/** One batch of `kind` on `p` (reinsertion untimed): per-command ns. */
function kindCell(p: Population, kind: Kind, seed: number, hot: boolean): Cell {
  const rnd = mulberry32(seed);
  const t = p.iotlb;
  const before = t.size;
  return {
    name: `${kind.name}${kind.hotToo ? (hot ? ' hot' : ' cold') : ''}`,
    note: hot ? undefined : kind.note,
    run: () => {
      const targets = kind.batch(p, rnd);
      if (hot) for (const target of targets) for (const e of target) t.insert(e);
      let removed = 0;
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < targets.length; i++) removed += kind.run(t, targets[i]!);
      const ns = Number(process.hrtime.bigint() - t0);
      // Untimed: check the commands did exactly their work, then put the entries back.
      let want = 0;
      for (const target of targets) {
        want += target.length;
        for (const e of target) t.insert(e);
      }
      if (removed !== want || t.size !== before) {
        throw new Error(`${kind.name}: removed ${removed}, expected ${want}; size ${t.size} != ${before}`);
      }
      return ns / targets.length;
    },
  };
}

/** 4096 lookups, random hits across the whole population: per-lookup ns. */
function lookupCell(p: Population, seed: number): Cell {
  const rnd = mulberry32(seed);
  const n = 4096;
  const vmid = new Int32Array(n);
  const asid = new Int32Array(n);
  const iova = new Float64Array(n);
  return {
    name: 'lookup (hit)',
    note: 'random hits: 4K pages, 2M blocks, global, stage-2',
    run: () => {
      for (let i = 0; i < n; i++) {
        const v = 1 + int(rnd, VMS);
        const pick = rnd();
        let e: IotlbEntry;
        if (pick < 0.9) e = p.bigPage(v, 1 + int(rnd, BIG_ASIDS), int(rnd, p.pages));
        else if (pick < 0.95) e = p.global(v, int(rnd, p.side));
        else if (pick < 0.98) e = p.stage2(v, int(rnd, p.side));
        else e = p.block(v, 1 + int(rnd, BIG_ASIDS), int(rnd, Math.max(1, p.blocks)));
        vmid[i] = v;
        asid[i] = !e.stage1 ? NO_ASID : e.global ? 1 + int(rnd, BIG_ASIDS) : e.asid;
        iova[i] = e.iova + int(rnd, e.size / K4) * K4 + 0x123;
      }
      let hits = 0;
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < n; i++) if (p.iotlb.lookup(vmid[i]!, asid[i]!, iova[i]!) !== undefined) hits++;
      const ns = Number(process.hrtime.bigint() - t0);
      if (hits !== n) throw new Error(`lookup: ${n - hits} misses`);
      return ns / n;
    },
  };
}

/**
 * Reference, not this IOTLB: what one invalidation costs if it scans every cached entry, as
 * QEMU's SMMUv3 does (g_hash_table_foreach_remove per TLBI). A plain loop over a snapshot
 * array testing the NH_VA predicate, so it is a lower bound for a hash-table walk.
 */
function scanCell(p: Population): Cell {
  const all = p.iotlb.entries();
  let sink = 0;
  return {
    name: 'reference: full scan per command',
    note: 'what a QEMU-style scan of every entry would cost per TLBI (lower bound)',
    run: () => {
      const va = 0x10_0000_0000 + 12345 * K4;
      let hits = 0;
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < all.length; i++) {
        const e = all[i]!;
        if (e.vmid === 1 && (e.global || e.asid === 1) && e.iova <= va && va < e.iova + e.size) hits++;
      }
      const ns = Number(process.hrtime.bigint() - t0);
      sink += hits;
      return sink >= 0 ? ns : -1;
    },
  };
}

/** The cells of one population, in a fixed order. */
function cells(p: Population, seed: number): Cell[] {
  const out = [lookupCell(p, seed)];
  KINDS.forEach((kind, i) => {
    out.push(kindCell(p, kind, seed + 1 + i, false));
    if (kind.hotToo) out.push(kindCell(p, kind, seed + 1 + i, true));
  });
  out.push(scanCell(p));
  return out;
}

/** Nanoseconds of one dependent load at a random cache line of a 256 MiB array (pointer chase). */
function memoryLatency(): { value: number; min: number; max: number } {
  const ints = 2 ** 26;
  const lines = ints / 16;
  const a = new Int32Array(ints);
  const rnd = mulberry32(99);
  // One random cycle through all lines (Sattolo's shuffle), so every load depends on the last.
  const order = new Int32Array(lines);
  for (let i = 0; i < lines; i++) order[i] = i;
  for (let i = lines - 1; i > 0; i--) {
    const j = int(rnd, i);
    const x = order[i]!;
    order[i] = order[j]!;
    order[j] = x;
  }
  for (let i = 0; i < lines; i++) a[order[i]! * 16] = order[(i + 1) % lines]! * 16;
  const perRun: number[] = [];
  let at = 0;
  for (let r = 0; r < 7; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 100_000; i++) at = a[at]!;
    perRun.push(Number(process.hrtime.bigint() - t0) / 100_000);
  }
  const st = summarize(perRun);
  return { value: st.median, min: st.min, max: st.max };
}

/** Run the IOTLB benchmark: ns per command and per lookup per population, then the ratios. */
export async function benchIotlb(opts: { quick: boolean }): Promise<Row[]> {
  const labels = opts.quick ? ['1K', '64K'] : ['1K', '64K', '1M'];
  const sizes: Record<string, number> = { '1K': 1 << 10, '64K': 1 << 16, '1M': 1 << 20 };

  // Compile every path before measuring anything.
  for (const c of cells(new Population(1 << 12), 1)) for (let r = 0; r < 3 * WARMUP; r++) c.run();

  // All populations stay alive and are measured in turn, ROUNDS times, so that a change in
  // machine load (this may share its CPUs) affects every population alike.
  const grid = labels.map((label) => cells(new Population(sizes[label]!), 100));
  const samples = grid.map((row) => row.map((): number[] => []));
  for (let round = 0; round < ROUNDS; round++) {
    for (let k = 0; k < grid[0]!.length; k++) {
      for (let p = 0; p < grid.length; p++) {
        const cell = grid[p]![k]!;
        for (let r = 0; r < WARMUP; r++) cell.run();
        for (let r = 0; r < RUNS_PER_ROUND; r++) samples[p]![k]!.push(cell.run());
      }
    }
    await new Promise((resolve) => setImmediate(resolve));
  }

  const rows: Row[] = [];
  grid.forEach((row, p) => {
    row.forEach((cell, k) => {
      const st = summarize(samples[p]![k]!);
      const out: Row = { name: `iotlb ${cell.name} @${labels[p]}`, value: st.median, unit: 'ns', min: st.min, max: st.max };
      if (p === 0 && cell.note !== undefined) out.note = cell.note;
      rows.push(out);
    });
  });
  rows.push({ ...memoryLatency(), name: 'memory: dependent random load in 256 MiB', unit: 'ns', note: 'reference: one cache + TLB miss' });
  const last = grid.length - 1;
  grid[0]!.forEach((cell, k) => {
    const ratio = summarize(samples[last]![k]!).median / summarize(samples[0]![k]!).median;
    const targeted = cell.name.startsWith('TLBI_') && !cell.name.startsWith('TLBI_NH_VAA');
    rows.push({ name: `iotlb ${cell.name} ${labels[last]}/1K`, value: ratio, unit: 'x', note: targeted ? 'target < 2' : 'no target' });
  });
  return rows;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const rows = await benchIotlb({ quick: process.argv.includes('--quick') });
  process.stdout.write(`${table(rows)}\n`);
}
