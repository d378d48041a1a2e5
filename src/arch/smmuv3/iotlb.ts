/**
 * The SMMUv3 IOTLB (shared by the host SMMU and the VMM's emulated SMMUv3): the cache of combined (stage 1 + stage 2, or single-stage)
 * translations, IOVA → host PA, tagged by VMID and ASID.
 *
 * The contents are observable on purpose: a test or a user can see a stale entry survive a
 * missing invalidation, which is the point of modelling the cache rather than walking the
 * tables on every access.
 *
 * Cost model. An invalidation touches (roughly) only the entries it removes, never the whole
 * cache: QEMU's SMMUv3 scans its entire IOTLB hash table for every TLBI, so each command costs
 * as much as everything cached. Here:
 * - a context is one (VMID, ASID), or one VMID's global entries, or its stage-2-only entries;
 *   it holds one hash table per entry size in use (input page number → entry) and a bitmask
 *   of those sizes, so a lookup probes only sizes that exist;
 * - by-ASID and by-VMID invalidations drop whole contexts: O(entries removed);
 * - a by-VA range probes each page number of each size in use when that is cheapest, else
 *   walks the context's coarse buckets that the range touches: O(min(pages in range, entries
 *   in the touched buckets) per size in use + entries removed); a short range first asks the
 *   (small, cache-resident) bucket map whether the size has entries there at all;
 * - a by-IPA range does the same over a per-VMID IPA index (IPA page → list of entries, plus
 *   buckets);
 * - TLBI_NH_VAA (any ASID) pays the by-VA cost once per stage-1 context of the VMID.
 *
 * Layout, for speed at millions of entries (where every cache miss shows): an entry is an
 * integer id into a pool of fixed-size records in one Float64Array (one cache line each); hash
 * tables are int32 arrays of [key low, key high, id] slots; buckets drop removed ids lazily
 * (checked against an insertion sequence number), so a removal touches no list neighbours.
 * Nothing on the lookup path allocates: keys travel as two int32 halves, never as heap
 * numbers (a `Map` keyed by numbers above 2^31 allocates one per probe and is ~3x slower).
 */

import { IdTable, NONE } from './id-table.js';

/** Read permission bit of {@link IotlbEntry.perm}. */
export const PERM_R = 1;
/** Write permission bit of {@link IotlbEntry.perm}. */
export const PERM_W = 2;

/**
 * The ASID a lookup passes for a stream with no stage 1 (stage-1 bypass, stage 2 translates).
 * Any value outside 0..0xffff behaves the same: such a lookup matches only stage-2-only
 * entries, and a lookup with a real ASID never matches them (the hardware tags the two kinds
 * of entry differently, so a nested stream cannot hit a stage-2-only translation).
 */
export const NO_ASID = 0x1_0000;

/** Smallest entry size: one 4 KiB page. */
export const MIN_ENTRY_SIZE = 0x1000;
/**
 * Largest entry size: 4 TiB, a level-1 block of the 64 KiB granule with 52-bit addresses
 * (the 4 KiB and 16 KiB granules stop at 512 GiB and 64 GiB).
 */
export const MAX_ENTRY_SIZE = 2 ** 42;

/**
 * One cached translation. {@link Iotlb.lookup} and {@link Iotlb.peek} hand out the IOTLB's own
 * record, valid until the IOTLB next changes (copy it to keep it); {@link Iotlb.entries}
 * hands out frozen copies.
 */
export interface IotlbEntry {
  /** Virtual machine identifier, 0..0xffff. */
  readonly vmid: number;
  /** Address space identifier, 0..0xffff; not matched when {@link global} or not {@link stage1}. */
  readonly asid: number;
  /**
   * Stage-1 nG = 0: the entry matches every ASID of its VMID, and by-ASID invalidation keeps
   * it. Meaningless for stage-2-only entries.
   */
  readonly global: boolean;
  /** Whether a stage-1 walk (possibly nested) produced the entry; false for stage-2-only. */
  readonly stage1: boolean;
  /** Input address, aligned to {@link size}. */
  readonly iova: number;
  /** Bytes covered: a power of two from {@link MIN_ENTRY_SIZE} to {@link MAX_ENTRY_SIZE}. */
  readonly size: number;
  /** Intermediate physical address {@link iova} maps to (= iova for stage-2-only), aligned. */
  readonly ipa: number;
  /** Host physical address, aligned to {@link size}. */
  readonly pa: number;
  /** {@link PERM_R} | {@link PERM_W}. */
  readonly perm: number;
}

/** An entry as the IOTLB holds it: its fields are rewritten when its id is reused. */
type MutableEntry = { -readonly [K in keyof IotlbEntry]: IotlbEntry[K] };

/** Counters of an {@link Iotlb}; they only grow. */
export interface IotlbStats {
  /** Lookups that found an entry. */
  hits: number;
  /** Lookups that found none. */
  misses: number;
  /** Calls to {@link Iotlb.insert}, replacements included. */
  inserts: number;
  /** Entries removed to make room for an insertion. */
  evictions: number;
  /** Entries removed by invalidations. */
  invalidated: number;
}

// ---------------------------------------------------------------------------------------------
// Sizes and page numbers. Size class s means 2^(12+s) bytes; an entry's page number is its
// address / size, below 2^41 for addresses below 2^53.

const SIZE_CLASSES = 31; // 4 KiB (s = 0) .. 4 TiB (s = 30)

/** 2^-(12+s): multiplying by a power of two is exact, so floor(addr · INV[s]) is exact. */
const INV_SIZE = new Float64Array(SIZE_CLASSES);
for (let s = 0; s < SIZE_CLASSES; s++) INV_SIZE[s] = 2 ** -(12 + s);

/** Size class of a power-of-two size in range, or -1. */
function sizeClass(size: number): number {
  if (!(size >= MIN_ENTRY_SIZE && size <= MAX_ENTRY_SIZE)) return -1;
  const s = (size < 2 ** 32 ? 31 - Math.clz32(size) : 63 - Math.clz32(size / 2 ** 32)) - 12;
  return size * INV_SIZE[s] === 1 ? s : -1;
}

/** Lowest size class in a non-zero mask. */
function lowestClass(mask: number): number {
  return 31 - Math.clz32(mask & -mask);
}

/** High half of a page number (below 2^53). */
function pnHi(pn: number): number {
  return (pn / 4294967296) | 0;
}

/** Low half of a page number, as a signed int32. */
function pnLo(pn: number): number {
  return pn | 0;
}

/**
 * Pages of one size class per bucket: 2^20, i.e. 4 GiB of 4 KiB pages. Coarse on purpose: an
 * index holds few buckets, so the one a removal updates is almost always in cache; a range
 * short enough for the coarseness to hurt probes its pages instead (see cheaperToProbe).
 */
const BUCKET_PAGES = 2 ** 20;
/**
 * A size table with at most this many keys is a few KiB (tables shrink as they empty): a probe
 * of it stays in cache, so a one-page invalidation probes it without asking the buckets first.
 */
const SMALL_TABLE = 64;
/** A range of at most this many pages of a size class always probes page numbers. */
const EXACT_PROBE_MAX = 64;

/** Bucket key of page `pn` of size class `s`: a small integer (below 2^26), a cheap Map key. */
function bucketKey(pn: number, s: number): number {
  return Math.floor(pn / BUCKET_PAGES) * 32 + s;
}

/**
 * One IdTable per size class in use, and the mask of those classes. A table that empties
 * leaves the mask (so the mask always says which sizes are present) and is kept for reuse.
 */
class SizedIndex {
  private readonly tables: (IdTable | undefined)[] = [];
  mask = 0;
  /** Keys over all sizes. */
  count = 0;

  constructor() {
    for (let s = 0; s < SIZE_CLASSES; s++) this.tables.push(undefined);
  }

  get(s: number, hi: number, lo: number): number {
    const t = this.tables[s];
    return t === undefined ? NONE : t.get(hi, lo);
  }

  /** Table of size class `s`, which must be in the mask (for iteration). */
  table(s: number): IdTable {
    return this.tables[s] as IdTable;
  }

  set(s: number, hi: number, lo: number, id: number): void {
    this.put(s, hi, lo, id);
  }

  /** {@link set}, returning the id the key had before (NONE: it was not present). */
  put(s: number, hi: number, lo: number, id: number): number {
    let t = this.tables[s];
    if (t === undefined) {
      t = new IdTable();
      this.tables[s] = t;
    }
    this.mask |= 1 << s;
    const old = t.put(hi, lo, id);
    if (old === NONE) this.count++;
    return old;
  }

  /** Remove a key that is present. */
  delete(s: number, hi: number, lo: number): void {
    const t = this.tables[s] as IdTable;
    t.delete(hi, lo);
    this.count--;
    // An emptied table leaves the mask but is kept (it is small: it shrinks as it empties), so
    // a page invalidated and refilled does not allocate a table each time.
    if (t.count === 0) this.mask &= ~(1 << s);
  }
}

// ---------------------------------------------------------------------------------------------
// Entry records: REC doubles per id in one Float64Array.

const REC = 8;
/** Page number of the input address at the entry's size. */
const R_VPN = 0;
/** Page number of the IPA at the entry's size. */
const R_IPN = 1;
/** Size class. */
const R_SIZE_CLASS = 2;
/** Context id; NONE when the id is free. */
const R_CTX = 3;
/** Previous / next id with the same (VMID, size class, IPA page); NONE at the ends. */
const R_IPPREV = 4;
const R_IPNEXT = 5;
/** Insertion sequence number; NONE when free. Tells a live id from a stale reference to it. */
const R_SEQ = 6;

/**
 * References (id, sequence number) to the entries whose page falls in one bucket, appended on
 * insertion and dropped lazily: a removal only decrements `live`; a reference whose sequence
 * number no longer matches the record is stale and skipped, and compacted away once stale
 * references outnumber live ones.
 */
class Bucket {
  ids = new Int32Array(4);
  seqs = new Float64Array(4);
  /** References held (live and stale). */
  held = 0;
  live = 0;

  constructor(
    /** Bucket number (page number / BUCKET_PAGES) and size class. */
    readonly index: number,
    readonly sizeClass: number,
  ) {}
}

/**
 * Buckets by key. A bucket that empties stays (cleared), so a page that is invalidated and
 * refilled does not allocate a bucket each time; empty buckets are swept when they outnumber
 * the others.
 */
class BucketIndex {
  readonly map = new Map<number, Bucket>();
  /** Buckets with live references. */
  nonEmpty = 0;
  /**
   * The bucket last looked up and its key (-1: none): a map/unmap loop touches one bucket over
   * and over, and this spares the Map probe each insertion and removal would make.
   */
  private lastKey = -1;
  private last: Bucket | undefined = undefined;

  /** The bucket at `key`, if any. */
  get(key: number): Bucket | undefined {
    if (key === this.lastKey) return this.last;
    const b = this.map.get(key);
    if (b !== undefined) {
      this.lastKey = key;
      this.last = b;
    }
    return b;
  }

  /** Add a bucket at `key` (not present). */
  add(key: number, b: Bucket): void {
    this.map.set(key, b);
    this.lastKey = key;
    this.last = b;
  }

  /** Drop the buckets with no live references (the map's keys change: forget the last one). */
  sweep(): void {
    for (const [k, old] of this.map) if (old.live === 0) this.map.delete(k);
    this.lastKey = -1;
    this.last = undefined;
  }

  /**
   * Whether any bucket over pages [p0, p1] of size class `s` holds a live entry. For a short
   * range this is one or two lookups in a small, cache-resident map, and it spares probing a
   * large size table whose slot would be a cache miss (typically: the global context, or a
   * block size, when the range lies in a region without such entries).
   */
  occupied(s: number, p0: number, p1: number): boolean {
    const b1 = Math.floor(p1 / BUCKET_PAGES);
    for (let b = Math.floor(p0 / BUCKET_PAGES); b <= b1; b++) {
      // Straight from the map: remembering here would cost the random invalidations of a
      // large IOTLB a store per probe, and a map/unmap loop's removal finds its bucket
      // remembered by the insertion anyway.
      const bucket = this.map.get(b * 32 + s);
      if (bucket !== undefined && bucket.live > 0) return true;
    }
    return false;
  }

  /** Account for the removal of one entry from the bucket at `key`. */
  drop(key: number): void {
    const b = this.get(key) as Bucket;
    if (--b.live === 0) {
      b.held = 0; // every reference left is stale
      this.nonEmpty--;
    }
  }
}

/** Context tags other than a real ASID. */
const CTX_GLOBAL = -1;
const CTX_S2 = -2;

/** The entries of one (VMID, ASID), of one VMID's global entries, or of its stage-2-only ones. */
class Ctx {
  /** Input page number → id, per size class. */
  readonly pages = new SizedIndex();
  /** Input page buckets. */
  readonly buckets = new BucketIndex();
  /**
   * Emptied entry by entry and left attached to its VMID (see {@link Iotlb.parkedCtxs}): the
   * context an unmapped page's entry leaves is the one the next mapping's entry fills.
   */
  parked = false;
  /**
   * Bumped whenever the context's answers may change: an entry inserted or removed, the
   * context released. {@link Iotlb.peek}'s remembered answer is valid while it is unchanged.
   */
  gen = 0;

  constructor(
    public id: number,
    public vm: Vm,
    /** ASID, CTX_GLOBAL or CTX_S2. */
    public tag: number,
  ) {}

  /** Id of the entry containing `iova` (smallest size first), or NONE; no allocation. */
  find(iova: number): number {
    for (let m = this.pages.mask; m !== 0; m &= m - 1) {
      const s = lowestClass(m);
      const pn = Math.floor(iova * INV_SIZE[s]);
      const id = this.pages.table(s).get(pnHi(pn), pnLo(pn));
      if (id !== NONE) return id;
    }
    return NONE;
  }
}

/** Everything cached for one VMID. */
class Vm {
  /** ASID → context; changed only through {@link setAsid} and {@link deleteAsid}. */
  readonly asids = new Map<number, Ctx>();
  /**
   * The ASID last found and its context (-1: none), ahead of the Map: a device's lookups, the
   * walks' insertions and the driver's TLBIs name one ASID over and over.
   */
  private lastAsid = -1;
  private lastAsidCtx: Ctx | undefined = undefined;
  global: Ctx | undefined = undefined;
  s2: Ctx | undefined = undefined;
  /** IPA page number → first id of the list of entries with that IPA page, per size class. */
  readonly ipas = new SizedIndex();
  /** IPA page buckets. */
  readonly ipaBuckets = new BucketIndex();
  count = 0;

  constructor(readonly vmid: number) {}

  ctx(tag: number): Ctx | undefined {
    return tag >= 0 ? this.asidCtx(tag) : tag === CTX_GLOBAL ? this.global : this.s2;
  }

  /** The context of `asid`, if it has one. */
  asidCtx(asid: number): Ctx | undefined {
    if (asid === this.lastAsid) return this.lastAsidCtx;
    const ctx = this.asids.get(asid);
    if (ctx !== undefined) {
      this.lastAsid = asid;
      this.lastAsidCtx = ctx;
    }
    return ctx;
  }

  setAsid(asid: number, ctx: Ctx): void {
    this.asids.set(asid, ctx);
    if (asid === this.lastAsid) this.lastAsidCtx = ctx;
  }

  deleteAsid(asid: number): void {
    this.asids.delete(asid);
    if (asid === this.lastAsid) {
      this.lastAsid = -1;
      this.lastAsidCtx = undefined;
    }
  }

  /** Every context of the VMID; the stage-2-only one only if asked. */
  contexts(withS2: boolean): Ctx[] {
    const out = [...this.asids.values()];
    if (this.global !== undefined) out.push(this.global);
    if (withS2 && this.s2 !== undefined) out.push(this.s2);
    return out;
  }
}

/**
 * A frozen copy of `e` built field by field: every snapshot entry has the same shape (a spread
 * copy of a record that is refilled in place reads several times slower in a loop).
 */
function frozenCopy(e: IotlbEntry): IotlbEntry {
  return Object.freeze({ vmid: e.vmid, asid: e.asid, global: e.global, stage1: e.stage1, iova: e.iova, size: e.size, ipa: e.ipa, pa: e.pa, perm: e.perm });
}

function isU16(v: number): boolean {
  return Number.isInteger(v) && v >= 0 && v <= 0xffff;
}

/** Throw the RangeError naming what is wrong with `e` (size class `s`), if anything is. */
function checkEntry(e: IotlbEntry, s: number): void {
  if (!isU16(e.vmid)) throw new RangeError(`IOTLB entry VMID ${e.vmid} is not 16-bit`);
  if (!isU16(e.asid)) throw new RangeError(`IOTLB entry ASID ${e.asid} is not 16-bit`);
  checkAligned('iova', e.iova, e.size, s);
  checkAligned('ipa', e.ipa, e.size, s);
  checkAligned('pa', e.pa, e.size, s);
  if (!Number.isInteger(e.perm) || e.perm < 0 || e.perm > (PERM_R | PERM_W)) {
    throw new RangeError(`IOTLB entry perm ${e.perm} is invalid`);
  }
}

function checkAligned(name: string, v: number, size: number, s: number): void {
  if (!Number.isSafeInteger(v) || v < 0 || !Number.isInteger(v * INV_SIZE[s])) {
    throw new RangeError(`IOTLB entry ${name} ${v} is not a non-negative multiple of its size 0x${size.toString(16)}`);
  }
}

/** Emptied VMIDs and contexts kept for reuse. */
const MAX_EMPTY_VMS = 64;
const SPARE_CTXS = 16;
/** Parkings of emptied contexts noted before the ones still parked are detached. */
const MAX_PARKED_CTXS = 64;

const INITIAL_POOL = 256;
const INITIAL_RING = 1024;

// ---------------------------------------------------------------------------------------------

/**
 * The IOTLB. Lookups and insertions are O(1) (one probe per entry size in use by the
 * context); each invalidation costs about the number of entries it removes (see the module
 * comment), independent of how many other entries are cached.
 */
export class Iotlb {
  /** Counters; never reset. */
  readonly stats: IotlbStats = { hits: 0, misses: 0, inserts: 0, evictions: 0, invalidated: 0 };
  /** Most entries held at once; inserting into a full IOTLB evicts the oldest entry. */
  readonly capacity: number;

  private readonly vms = new Map<number, Vm>();
  /** 1 for each VMID with entries (mirrors `vms`): the per-command check is a byte load. */
  private readonly vmidLive = new Uint8Array(0x1_0000);
  private count = 0;
  private seq = 0;

  // Entry pool: records, the entry object of each id, and a stack of free ids.
  private rec = new Float64Array(INITIAL_POOL * REC);
  /** Each id's entry object, reused by the next insertion that gets the id. */
  private ents: (MutableEntry | undefined)[] = [];
  private free = new Int32Array(INITIAL_POOL);
  private freeTop = 0;
  private poolUsed = 0;

  // Contexts by id: a record names its context by id, which costs no pointer chase.
  private ctxs: (Ctx | undefined)[] = [];
  private freeCtxIds: number[] = [];
  /**
   * Emptied structures are kept for reuse: a page invalidated and refilled, the steady state of
   * a map/unmap loop, would otherwise rebuild its VMID's and ASID's indexes each time. A VMID
   * that empties entry by entry stays in `vms` (with `vmidLive` 0) until more than
   * MAX_EMPTY_VMS have; a few emptied contexts wait in `spareCtxs`.
   */
  private emptyVms = 0;
  private readonly spareCtxs: Ctx[] = [];
  /**
   * Contexts that emptied entry by entry stay attached ("parked"), so the steady state of a
   * map/unmap loop neither detaches nor re-creates its context per page. Each parking is noted
   * here; after MAX_PARKED_CTXS notes, the contexts still parked are detached and the list
   * starts again (so it stays short, and no VMID keeps many empty contexts).
   */
  private readonly parkedList: Ctx[] = [];

  /** The VMID last looked up (-1: none) and its record: most calls in a row name one VMID. */
  private lastVmid = -1;
  private lastVm: Vm | undefined = undefined;

  /**
   * The last {@link peek} answer, kept while the context it was found in does not change
   * (`memoCtx.gen` still `memoGen`): entry `memoId` of (`memoVmid`, `memoAsid`) covering input
   * [memoLo, memoHi). Kept only when the entry was found in the first context searched at that
   * context's smallest size in use, so any address in its range finds the same entry first, and
   * changes to other contexts cannot change the answer. A nested walk translates each table
   * level's IPA through one stage-2 entry this way, across the stage-1 entries a map/unmap
   * loop inserts and removes.
   */
  private memoCtx: Ctx | undefined = undefined;
  private memoGen = -1;
  private memoVmid = -1;
  private memoAsid = -1;
  private memoLo = 0;
  private memoHi = 0;
  private memoId = NONE;

  /**
   * Every insertion as (id, sequence number), oldest first, for FIFO eviction and
   * {@link entries}. References to removed entries are skipped, and compacted away when the
   * arrays fill, so upkeep is O(1) amortised and a removal does nothing here.
   */
  private ringId = new Int32Array(INITIAL_RING);
  private ringSeq = new Float64Array(INITIAL_RING);
  private ringHead = 0;
  private ringTail = 0;

  /** Buckets a range walk will visit (reused, so that range walks do not allocate). */
  private readonly scratch: Bucket[] = [];

  /** @param capacity most entries held at once (default 2^21). */
  constructor(capacity = 1 << 21) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError(`IOTLB capacity ${capacity} is invalid`);
    this.capacity = capacity;
  }

  /** Number of live entries. */
  get size(): number {
    return this.count;
  }

  /**
   * The entry translating `iova` for (`vmid`, `asid`): an entry of that ASID or a global one
   * for a 16-bit `asid`, a stage-2-only entry for {@link NO_ASID}. When several match (stale
   * overlapping entries), the ASID's own entries win over global ones and smaller entries over
   * larger ones. Hot path: no allocation. The entry is the IOTLB's own record: read it before
   * the IOTLB next changes.
   */
  lookup(vmid: number, asid: number, iova: number): IotlbEntry | undefined {
    const e = this.search(vmid, asid, iova, false);
    if (e !== undefined) this.stats.hits++;
    else this.stats.misses++;
    return e;
  }

  /**
   * {@link lookup} without counting: for the walker's own use of the cache (a nested walk's
   * stage-2 translation of a table address), so the counters stay about device accesses.
   */
  peek(vmid: number, asid: number, iova: number): IotlbEntry | undefined {
    const mc = this.memoCtx;
    if (mc !== undefined && mc.gen === this.memoGen && vmid === this.memoVmid && asid === this.memoAsid && iova >= this.memoLo && iova < this.memoHi) {
      return this.ents[this.memoId];
    }
    return this.search(vmid, asid, iova, true);
  }

  /**
   * The entry for (`vmid`, `asid`, `iova`); `remember` keeps it as {@link peek}'s last answer
   * when it qualifies. Device lookups do not remember: reading the entry's record to decide
   * would cost them a cache miss per lookup in a large IOTLB; a walk's table fetches do.
   */
  private search(vmid: number, asid: number, iova: number, remember: boolean): IotlbEntry | undefined {
    const vm = this.vmOf(vmid);
    if (vm !== undefined && iova >= 0) {
      let id = NONE;
      let first: Ctx | undefined;
      if (asid >= 0 && asid <= 0xffff) {
        first = vm.asidCtx(asid);
        if (first !== undefined) id = first.find(iova);
        if (id === NONE) {
          first = undefined;
          if (vm.global !== undefined) id = vm.global.find(iova);
        }
      } else if (vm.s2 !== undefined) {
        first = vm.s2;
        id = first.find(iova);
      }
      if (id !== NONE) {
        const e = this.ents[id]!;
        if (remember && first !== undefined && this.rec[id * REC + R_SIZE_CLASS] === lowestClass(first.pages.mask)) {
          this.memoCtx = first;
          this.memoGen = first.gen;
          this.memoVmid = vmid;
          this.memoAsid = asid;
          this.memoLo = e.iova;
          this.memoHi = e.iova + e.size;
          this.memoId = id;
        }
        return e;
      }
    }
    return undefined;
  }

  /** The record of `vmid`, if it has one (entries, or kept after emptying). */
  private vmOf(vmid: number): Vm | undefined {
    if (vmid === this.lastVmid) return this.lastVm;
    const vm = this.vms.get(vmid);
    if (vm !== undefined) {
      this.lastVmid = vmid;
      this.lastVm = vm;
    }
    return vm;
  }

  /** Forget {@link lastVm} (a VMID record left `vms`). */
  private forgetVm(): void {
    this.lastVmid = -1;
    this.lastVm = undefined;
  }

  /**
   * Cache a translation (a copy of `e`, so the caller may reuse `e`). It replaces an entry with the same VMID,
   * context (ASID, global, or stage-2-only), IOVA and size; otherwise, when the IOTLB is full,
   * the oldest entry is evicted first.
   * @throws RangeError for an entry no walk could produce (bad size, alignment or ID).
   */
  insert(e: IotlbEntry): void {
    const s = sizeClass(e.size);
    if (s < 0) throw new RangeError(`IOTLB entry size ${e.size} is not a power of two from 4 KiB to 4 TiB`);
    const vpn = e.iova * INV_SIZE[s];
    const ipn = e.ipa * INV_SIZE[s];
    const ppn = e.pa * INV_SIZE[s];
    // Every check in one test on the page numbers computed anyway (an integer page number of a
    // power-of-two size means an integer, aligned address); the checks one by one name the fault.
    if (
      !(e.vmid === (e.vmid & 0xffff) && e.asid === (e.asid & 0xffff) && e.perm === (e.perm & (PERM_R | PERM_W)) &&
        vpn === Math.floor(vpn) && ipn === Math.floor(ipn) && ppn === Math.floor(ppn) &&
        e.iova >= 0 && e.ipa >= 0 && e.pa >= 0 &&
        e.iova <= Number.MAX_SAFE_INTEGER && e.ipa <= Number.MAX_SAFE_INTEGER && e.pa <= Number.MAX_SAFE_INTEGER)
    ) {
      checkEntry(e, s);
    }
    const tag = !e.stage1 ? CTX_S2 : e.global ? CTX_GLOBAL : e.asid;
    const vHi = pnHi(vpn);
    const vLo = pnLo(vpn);

    let ctx = this.vmOf(e.vmid)?.ctx(tag);
    const old = ctx === undefined ? NONE : ctx.pages.get(s, vHi, vLo);
    if (old !== NONE) {
      this.removeId(old);
      ctx = undefined;
    } else if (this.count >= this.capacity) {
      this.evictOne();
      ctx = undefined;
    }
    let vm: Vm | undefined;
    if (ctx !== undefined && ctx.vm.count !== 0) {
      // Nothing was removed and the VMID has entries: the context found above is the one.
      vm = ctx.vm;
    } else {
      // Fetched after a removal: emptying a context or VMID may drop it.
      vm = this.vmOf(e.vmid);
      if (vm === undefined) {
        vm = new Vm(e.vmid);
        this.vms.set(e.vmid, vm);
        this.lastVmid = e.vmid;
        this.lastVm = vm;
        this.vmidLive[e.vmid] = 1;
      } else if (vm.count === 0) {
        // A VMID kept after it emptied comes back.
        this.emptyVms--;
        this.vmidLive[e.vmid] = 1;
      }
      ctx = vm.ctx(tag) ?? this.newCtx(vm, tag);
    }
    ctx.parked = false;
    ctx.gen++;

    const id = this.allocId();
    const seq = this.seq++;
    const rec = this.rec;
    const o = id * REC;
    rec[o + R_VPN] = vpn;
    rec[o + R_IPN] = ipn;
    rec[o + R_SIZE_CLASS] = s;
    rec[o + R_CTX] = ctx.id;
    rec[o + R_SEQ] = seq;
    // The id's record object is refilled, not reallocated: an insertion allocates nothing.
    const ent = this.ents[id];
    if (ent === undefined) this.ents[id] = { ...e };
    else {
      ent.vmid = e.vmid;
      ent.asid = e.asid;
      ent.global = e.global;
      ent.stage1 = e.stage1;
      ent.iova = e.iova;
      ent.size = e.size;
      ent.ipa = e.ipa;
      ent.pa = e.pa;
      ent.perm = e.perm;
    }

    ctx.pages.set(s, vHi, vLo, id);
    this.pushBucket(ctx.buckets, vpn, s, id, seq);

    const iHi = pnHi(ipn);
    const iLo = pnLo(ipn);
    // The new entry heads the list of its IPA page (one probe: put returns the old head).
    const head = vm.ipas.put(s, iHi, iLo, id);
    rec[o + R_IPPREV] = NONE;
    rec[o + R_IPNEXT] = head;
    if (head !== NONE) rec[head * REC + R_IPPREV] = id;
    this.pushBucket(vm.ipaBuckets, ipn, s, id, seq);

    if (this.ringTail === this.ringId.length) this.compactRing();
    this.ringId[this.ringTail] = id;
    this.ringSeq[this.ringTail++] = seq;

    vm.count++;
    this.count++;
    this.stats.inserts++;
  }

  /** Snapshot of the live entries, oldest first (frozen copies: they outlive later changes). */
  entries(): IotlbEntry[] {
    const out: IotlbEntry[] = [];
    for (let i = this.ringHead; i < this.ringTail; i++) {
      const id = this.ringId[i];
      if (this.rec[id * REC + R_SEQ] === this.ringSeq[i]) out.push(frozenCopy(this.ents[id]!));
    }
    return out;
  }

  // -------------------------------------------------------------------------------------------
  // Invalidations. Each returns the number of entries removed.

  /** Whether any entry is tagged with `vmid` (lets callers skip decoding an invalidation). */
  hasVmid(vmid: number): boolean {
    return this.vmidLive[vmid] === 1;
  }

  /** TLBI_NSNH_ALL: every entry. */
  invalidateAll(): number {
    const removed = this.count;
    this.vms.clear();
    this.forgetVm();
    this.memoCtx = undefined;
    this.parkedList.length = 0;
    this.vmidLive.fill(0);
    this.count = 0;
    this.rec = new Float64Array(INITIAL_POOL * REC);
    this.ents = [];
    this.free = new Int32Array(INITIAL_POOL);
    this.freeTop = 0;
    this.poolUsed = 0;
    this.ctxs = [];
    this.freeCtxIds = [];
    this.emptyVms = 0;
    this.spareCtxs.length = 0;
    this.ringId = new Int32Array(INITIAL_RING);
    this.ringSeq = new Float64Array(INITIAL_RING);
    this.ringHead = 0;
    this.ringTail = 0;
    this.stats.invalidated += removed;
    return removed;
  }

  /** TLBI_S12_VMALL: every entry of the VMID, stage 1 and stage 2. */
  invalidateVmid(vmid: number): number {
    const vm = this.vmOf(vmid);
    if (vm === undefined || vm.count === 0) return 0;
    let removed = 0;
    // The VMID's indexes all go, so each entry only needs its id freed.
    for (const ctx of vm.contexts(true)) {
      for (let m = ctx.pages.mask; m !== 0; m &= m - 1) {
        const t = ctx.pages.table(lowestClass(m));
        for (let i = 0; i < t.capacity; i++) {
          const id = t.idAt(i);
          if (id !== NONE) {
            this.freeId(id);
            removed++;
          }
        }
      }
      this.releaseCtx(ctx);
    }
    this.vms.delete(vmid);
    this.forgetVm();
    this.vmidLive[vmid] = 0;
    this.count -= removed;
    this.stats.invalidated += removed;
    return removed;
  }

  /** TLBI_NH_ALL: every stage-1 entry of the VMID (its stage-2-only entries stay). */
  invalidateVmidStage1(vmid: number): number {
    const vm = this.vmOf(vmid);
    if (vm === undefined) return 0;
    let removed = 0;
    for (const ctx of vm.contexts(false)) removed += this.dropCtx(ctx);
    return removed;
  }

  /** TLBI_NH_ASID: the non-global stage-1 entries of (VMID, ASID). */
  invalidateAsid(vmid: number, asid: number): number {
    const ctx = this.vmOf(vmid)?.asidCtx(asid);
    return ctx === undefined ? 0 : this.dropCtx(ctx);
  }

  /**
   * TLBI_NH_VA (`asid` given: that ASID's entries and the VMID's global ones) or TLBI_NH_VAA
   * (`asid` undefined: every ASID): remove each stage-1 entry of the VMID whose
   * [iova, iova + size) overlaps [va, va + length). `length` below 1 removes nothing.
   * @param leafOnly the command's Leaf hint; the IOTLB holds only leaf translations, so it
   *   changes nothing here (it would spare cached table walks, which are not modelled).
   */
  invalidateVa(vmid: number, asid: number | undefined, va: number, length: number, leafOnly = false): number {
    void leafOnly;
    const vm = this.vmOf(vmid);
    if (vm === undefined || !(length >= 1) || !(va >= 0)) return 0;
    const last = va + length - 1;
    let removed = 0;
    if (asid !== undefined) {
      const ctx = vm.asidCtx(asid);
      if (ctx !== undefined) removed += this.removeVaRange(ctx, va, last, true);
      if (vm.global !== undefined) removed += this.removeVaRange(vm.global, va, last, false);
    } else {
      for (const ctx of vm.contexts(false)) removed += this.removeVaRange(ctx, va, last, false);
    }
    this.stats.invalidated += removed;
    return removed;
  }

  /**
   * TLBI_S2_IPA: remove every entry of the VMID, stage-1 (nested) or stage-2-only, whose
   * [ipa, ipa + size) overlaps [ipa, ipa + length). `length` below 1 removes nothing.
   */
  invalidateIpa(vmid: number, ipa: number, length: number): number {
    const vm = this.vmOf(vmid);
    if (vm === undefined || !(length >= 1) || !(ipa >= 0)) return 0;
    const last = ipa + length - 1;
    let removed = 0;
    for (let m = vm.ipas.mask; m !== 0; m &= m - 1) {
      const s = lowestClass(m);
      const p0 = Math.floor(ipa * INV_SIZE[s]);
      const p1 = Math.floor(last * INV_SIZE[s]);
      if (p1 - p0 < EXACT_PROBE_MAX ? !vm.ipaBuckets.occupied(s, p0, p1) : false) continue;
      if (p1 - p0 < EXACT_PROBE_MAX || this.cheaperToProbe(vm.ipaBuckets, s, p0, p1)) {
        for (let pn = p0; pn <= p1; pn++) {
          for (let id = vm.ipas.get(s, pnHi(pn), pnLo(pn)); id !== NONE; ) {
            const next = this.rec[id * REC + R_IPNEXT];
            this.removeId(id);
            removed++;
            id = next;
          }
        }
      } else {
        removed += this.walkBuckets(R_IPN, p0, p1);
      }
    }
    this.stats.invalidated += removed;
    return removed;
  }

  // -------------------------------------------------------------------------------------------

  /**
   * Remove the entries of `ctx` overlapping input bytes [first, last]; not counted in stats.
   * `own`: the context the command names (TLBI_NH_VA's ASID), which most likely holds the page.
   */
  private removeVaRange(ctx: Ctx, first: number, last: number, own: boolean): number {
    let removed = 0;
    for (let m = ctx.pages.mask; m !== 0; m &= m - 1) {
      const s = lowestClass(m);
      const p0 = Math.floor(first * INV_SIZE[s]);
      const p1 = Math.floor(last * INV_SIZE[s]);
      if (own && p0 === p1 && ctx.pages.table(s).count <= SMALL_TABLE) {
        // One page of the named ASID's small (cache-resident) table: the probe costs less than
        // asking the buckets first when it finds the entry (a map/unmap loop's unmap). Other
        // contexts, which rarely hold the page, ask the buckets.
        const id = ctx.pages.get(s, pnHi(p0), pnLo(p0));
        if (id !== NONE) {
          this.removeId(id);
          removed++;
        }
        continue;
      }
      if (p1 - p0 < EXACT_PROBE_MAX ? !ctx.buckets.occupied(s, p0, p1) : false) continue;
      if (p1 - p0 < EXACT_PROBE_MAX || this.cheaperToProbe(ctx.buckets, s, p0, p1)) {
        for (let pn = p0; pn <= p1; pn++) {
          const id = ctx.pages.get(s, pnHi(pn), pnLo(pn));
          if (id !== NONE) {
            this.removeId(id);
            removed++;
          }
        }
      } else {
        removed += this.walkBuckets(R_VPN, p0, p1);
      }
    }
    return removed;
  }

  /**
   * For a range of more than EXACT_PROBE_MAX pages [p0, p1] of size class `s`: whether probing
   * each page visits fewer ids than walking the buckets the range touches. Leaves those
   * buckets in `scratch` for {@link walkBuckets}.
   */
  private cheaperToProbe(index: BucketIndex, s: number, p0: number, p1: number): boolean {
    const scratch = this.scratch;
    scratch.length = 0;
    const buckets = index.map;
    const b0 = Math.floor(p0 / BUCKET_PAGES);
    const b1 = Math.floor(p1 / BUCKET_PAGES);
    let walk = 0;
    if (b1 - b0 < buckets.size) {
      for (let b = b0; b <= b1; b++) {
        const bucket = buckets.get(b * 32 + s);
        if (bucket !== undefined) {
          scratch.push(bucket);
          walk += bucket.held;
        }
      }
    } else {
      // More buckets in the range than in the index: look at each of the index's instead.
      for (const bucket of buckets.values()) {
        if (bucket.sizeClass === s && bucket.index >= b0 && bucket.index <= b1) {
          scratch.push(bucket);
          walk += bucket.held;
        }
      }
    }
    return p1 - p0 + 1 <= walk;
  }

  /** Remove the live entries of the `scratch` buckets whose page (record `field`) is in [p0, p1]. */
  private walkBuckets(field: number, p0: number, p1: number): number {
    let removed = 0;
    for (const bucket of this.scratch) {
      // A removal that empties the bucket resets `held`, ending the loop: nothing live is left.
      const { ids, seqs } = bucket;
      for (let j = 0; j < bucket.held; j++) {
        const o = ids[j] * REC;
        if (this.rec[o + R_SEQ] !== seqs[j]) continue;
        const pn = this.rec[o + field];
        if (pn >= p0 && pn <= p1) {
          this.removeId(ids[j]);
          removed++;
        }
      }
      if (bucket.live > 0 && bucket.held > 2 * bucket.live + 16) this.compactBucket(bucket);
    }
    this.scratch.length = 0;
    return removed;
  }

  /** Unlink one entry from every index and free its id; drops its context and VMID when empty. */
  private removeId(id: number): void {
    const rec = this.rec;
    const o = id * REC;
    const ctx = this.ctxs[rec[o + R_CTX]] as Ctx;
    const vm = ctx.vm;
    const s = rec[o + R_SIZE_CLASS];
    const vpn = rec[o + R_VPN];
    ctx.pages.delete(s, pnHi(vpn), pnLo(vpn));
    ctx.buckets.drop(bucketKey(vpn, s));
    this.unlinkIpa(vm, id);
    this.freeId(id);
    ctx.gen++;
    this.count--;
    if (ctx.pages.count === 0) this.park(ctx);
    if (--vm.count === 0) this.vmEmptied(vm);
  }

  /** `ctx` emptied entry by entry: leave it attached, until too many are. */
  private park(ctx: Ctx): void {
    ctx.parked = true;
    const list = this.parkedList;
    list.push(ctx);
    if (list.length <= MAX_PARKED_CTXS) return;
    // A context refilled, detached or reused since it was noted is no longer parked.
    for (const c of list) if (c.parked) this.detachCtx(c);
    list.length = 0;
  }

  /**
   * A VMID lost its last entry, one by one (its contexts are detached and its IPA index is
   * empty): it stays for reuse, until too many empty VMIDs are kept.
   */
  private vmEmptied(vm: Vm): void {
    this.vmidLive[vm.vmid] = 0;
    if (++this.emptyVms <= MAX_EMPTY_VMS) return;
    for (const [vmid, v] of this.vms) {
      if (v.count !== 0) continue;
      // Only parked (empty) contexts are left attached to an empty VMID.
      for (const c of v.contexts(true)) this.releaseCtx(c);
      this.vms.delete(vmid);
    }
    this.forgetVm();
    this.emptyVms = 0;
  }

  private unlinkIpa(vm: Vm, id: number): void {
    const rec = this.rec;
    const o = id * REC;
    const s = rec[o + R_SIZE_CLASS];
    const ipn = rec[o + R_IPN];
    const prev = rec[o + R_IPPREV];
    const next = rec[o + R_IPNEXT];
    if (prev !== NONE) rec[prev * REC + R_IPNEXT] = next;
    else if (next !== NONE) vm.ipas.set(s, pnHi(ipn), pnLo(ipn), next);
    else vm.ipas.delete(s, pnHi(ipn), pnLo(ipn));
    if (next !== NONE) rec[next * REC + R_IPPREV] = prev;
    vm.ipaBuckets.drop(bucketKey(ipn, s));
  }

  /** Remove a whole context: O(its entries); its own indexes are simply dropped. */
  private dropCtx(ctx: Ctx): number {
    const vm = ctx.vm;
    let removed = 0;
    for (let m = ctx.pages.mask; m !== 0; m &= m - 1) {
      const t = ctx.pages.table(lowestClass(m));
      for (let i = 0; i < t.capacity; i++) {
        const id = t.idAt(i);
        if (id !== NONE) {
          this.unlinkIpa(vm, id);
          this.freeId(id);
          removed++;
        }
      }
    }
    this.count -= removed;
    vm.count -= removed;
    this.stats.invalidated += removed;
    this.detachCtx(ctx);
    // A parked context held nothing: its VMID was already counted as emptied, or still has entries.
    if (removed > 0 && vm.count === 0) this.vmEmptied(vm);
    return removed;
  }

  private newCtx(vm: Vm, tag: number): Ctx {
    const id = this.freeCtxIds.pop() ?? this.ctxs.length;
    let ctx = this.spareCtxs.pop();
    if (ctx === undefined) ctx = new Ctx(id, vm, tag);
    else {
      ctx.id = id;
      ctx.vm = vm;
      ctx.tag = tag;
    }
    this.ctxs[id] = ctx;
    if (tag >= 0) vm.setAsid(tag, ctx);
    else if (tag === CTX_GLOBAL) vm.global = ctx;
    else vm.s2 = ctx;
    return ctx;
  }

  private detachCtx(ctx: Ctx): void {
    const vm = ctx.vm;
    if (ctx.tag >= 0) vm.deleteAsid(ctx.tag);
    else if (ctx.tag === CTX_GLOBAL) vm.global = undefined;
    else vm.s2 = undefined;
    this.releaseCtx(ctx);
  }

  private releaseCtx(ctx: Ctx): void {
    ctx.parked = false;
    ctx.gen++;
    this.ctxs[ctx.id] = undefined;
    this.freeCtxIds.push(ctx.id);
    // A context dropped whole keeps stale ids in its indexes: only an emptied one is reused.
    if (ctx.pages.count === 0 && ctx.buckets.nonEmpty === 0 && this.spareCtxs.length < SPARE_CTXS) this.spareCtxs.push(ctx);
  }

  private pushBucket(index: BucketIndex, pn: number, s: number, id: number, seq: number): void {
    const key = bucketKey(pn, s);
    let b = index.get(key);
    if (b === undefined) {
      if (index.map.size > 2 * index.nonEmpty + 64) index.sweep();
      b = new Bucket(Math.floor(pn / BUCKET_PAGES), s);
      index.add(key, b);
      index.nonEmpty++;
    } else if (b.live === 0) {
      index.nonEmpty++;
    } else if (b.held > 2 * b.live + 16) {
      this.compactBucket(b);
    }
    if (b.held === b.ids.length) {
      const ids = new Int32Array(2 * b.held);
      ids.set(b.ids);
      b.ids = ids;
      const seqs = new Float64Array(2 * b.held);
      seqs.set(b.seqs);
      b.seqs = seqs;
    }
    b.ids[b.held] = id;
    b.seqs[b.held++] = seq;
    b.live++;
  }

  private compactBucket(b: Bucket): void {
    const { ids, seqs } = b;
    let n = 0;
    for (let j = 0; j < b.held; j++) {
      if (this.rec[ids[j] * REC + R_SEQ] === seqs[j]) {
        ids[n] = ids[j];
        seqs[n++] = seqs[j];
      }
    }
    b.held = n;
  }

  private allocId(): number {
    if (this.freeTop > 0) return this.free[--this.freeTop];
    if (this.poolUsed * REC === this.rec.length) {
      const rec = new Float64Array(this.rec.length * 2);
      rec.set(this.rec);
      this.rec = rec;
      const free = new Int32Array(this.free.length * 2);
      free.set(this.free);
      this.free = free;
    }
    return this.poolUsed++;
  }

  /**
   * Free an id. Its entry object stays referenced until the id is reused, so at most the
   * pool's high-water mark of entries is retained, and clearing it would cost a cache miss.
   */
  private freeId(id: number): void {
    const o = id * REC;
    this.rec[o + R_SEQ] = NONE;
    this.rec[o + R_CTX] = NONE;
    this.free[this.freeTop++] = id;
  }

  private evictOne(): void {
    while (this.ringHead < this.ringTail) {
      const id = this.ringId[this.ringHead];
      const seq = this.ringSeq[this.ringHead++];
      if (this.rec[id * REC + R_SEQ] === seq) {
        this.removeId(id);
        this.stats.evictions++;
        return;
      }
    }
  }

  /** Drop stale references from the insertion ring; grow it when it stays over half full. */
  private compactRing(): void {
    const ids = this.ringId;
    const seqs = this.ringSeq;
    let n = 0;
    for (let i = this.ringHead; i < this.ringTail; i++) {
      if (this.rec[ids[i] * REC + R_SEQ] === seqs[i]) {
        ids[n] = ids[i];
        seqs[n++] = seqs[i];
      }
    }
    this.ringHead = 0;
    this.ringTail = n;
    if (2 * n >= ids.length) {
      this.ringId = new Int32Array(ids.length * 2);
      this.ringId.set(ids.subarray(0, n));
      this.ringSeq = new Float64Array(seqs.length * 2);
      this.ringSeq.set(seqs.subarray(0, n));
    }
  }
}
