/**
 * The host SMMUv3's IOTLB: the cache of combined (stage 1 + stage 2, or single-stage)
 * translations, IOVA → host PA, tagged by VMID and ASID.
 *
 * The contents are observable on purpose: a test or a user can see a stale entry survive a
 * missing invalidation, which is the whole point of modelling the cache rather than walking
 * the tables on every access.
 *
 * Cost model. Invalidations touch (roughly) only the entries they remove, never the whole
 * table: QEMU's SMMUv3 scans its entire IOTLB hash table for every TLBI, which makes a guest
 * that invalidates page by page quadratic. Here:
 * - entries live in per-context tables (one context per (VMID, ASID), one for the VMID's
 *   global entries, one for its stage-2-only entries), keyed by (entry size, page number);
 *   each context keeps a bitmask of the entry sizes it holds, so a lookup probes only those;
 * - by-ASID and by-VMID invalidations drop whole contexts: O(entries removed);
 * - by-VA ranges probe page keys directly when the range is short, walk 512-page buckets of
 *   the context when it is long, and scan the context only when that is cheaper still:
 *   O(min(pages, buckets, context entries) per size in use + entries removed);
 * - by-IPA ranges do the same over a per-VMID IPA index;
 * - TLBI_NH_VAA (any ASID) costs the above once per context of the VMID.
 *
 * Keys are exact integers below 2^53 kept in typed arrays, so no lookup allocates a heap
 * number (a `Map` keyed by numbers above 2^31 would, and runs about three times slower).
 */

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

/** One cached translation. Entries handed out by {@link Iotlb} are frozen. */
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
// Keys. An entry of size 2^(12+s) at input page number pn (= iova / size) has key pn·32 + s:
// s < 31 and pn < 2^41 keep the key an exact integer below 2^46, and the key of every size class
// is distinct, so one table per context serves all sizes.

const SIZE_CLASSES = 31; // 4 KiB (s = 0) .. 4 TiB (s = 30)
const KEY_MUL = 32;
/** Pages of one size class per range bucket. */
const BUCKET_PAGES = 512;
/**
 * A range spanning at most this many pages of a size class probes each page key; a longer one
 * walks buckets. Beyond 64 single probes, walking 512-page buckets is cheaper.
 */
const EXACT_PROBE_MAX = 64;

/** 2^-(12+s): multiplying by a power of two is exact, so floor(addr · INV[s]) is exact. */
const INV_SIZE = new Float64Array(SIZE_CLASSES);
for (let s = 0; s < SIZE_CLASSES; s++) INV_SIZE[s] = 2 ** -(12 + s);

function bucketKey(pn: number, s: number): number {
  return Math.floor(pn / BUCKET_PAGES) * KEY_MUL + s;
}

/** Size class of a power-of-two size in range, or -1. */
function sizeClass(size: number): number {
  for (let s = 0; s < SIZE_CLASSES; s++) if (size === 2 ** (12 + s)) return s;
  return -1;
}

// ---------------------------------------------------------------------------------------------
// NumTable: open-addressing hash table from a non-negative integer below 2^53 to a value.
// Linear probing with backward-shift deletion (no tombstones), load factor at most 1/2.

const EMPTY = -1;

/** Hash of an integer key below 2^53 (fmix32 of its two 32-bit halves); no allocation. */
function hashKey(key: number): number {
  let h = (key >>> 0) ^ Math.imul((key / 4294967296) >>> 0, 0x9e3779b1);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

class NumTable<V> {
  private keys: Float64Array;
  private vals: (V | undefined)[];
  private mask: number;
  /** Number of keys present. */
  count = 0;

  constructor(capacity = 8) {
    this.keys = new Float64Array(capacity).fill(EMPTY);
    this.vals = emptyArray<V>(capacity);
    this.mask = capacity - 1;
  }

  get(key: number): V | undefined {
    const keys = this.keys;
    const mask = this.mask;
    for (let i = hashKey(key) & mask; ; i = (i + 1) & mask) {
      const k = keys[i];
      if (k === key) return this.vals[i];
      if (k === EMPTY) return undefined;
    }
  }

  /** Insert or replace. */
  set(key: number, value: V): void {
    const keys = this.keys;
    const mask = this.mask;
    for (let i = hashKey(key) & mask; ; i = (i + 1) & mask) {
      const k = keys[i];
      if (k === key) {
        this.vals[i] = value;
        return;
      }
      if (k === EMPTY) {
        keys[i] = key;
        this.vals[i] = value;
        if (++this.count * 2 > keys.length) this.resize(keys.length * 2);
        return;
      }
    }
  }

  delete(key: number): void {
    const keys = this.keys;
    const vals = this.vals;
    const mask = this.mask;
    let i = hashKey(key) & mask;
    for (; ; i = (i + 1) & mask) {
      const k = keys[i];
      if (k === key) break;
      if (k === EMPTY) return;
    }
    // Backward shift: pull later members of the probe run into the hole unless their home
    // slot lies cyclically in (hole, their slot], where moving them would hide them.
    for (let j = (i + 1) & mask; keys[j] !== EMPTY; j = (j + 1) & mask) {
      const home = hashKey(keys[j]) & mask;
      const stays = i <= j ? home > i && home <= j : home > i || home <= j;
      if (!stays) {
        keys[i] = keys[j];
        vals[i] = vals[j];
        i = j;
      }
    }
    keys[i] = EMPTY;
    vals[i] = undefined;
    this.count--;
    // Shrink a table that emptied out, so scanning it stays proportional to its contents.
    if (this.keys.length > 64 && this.count * 8 < this.keys.length) this.resize(this.keys.length / 4);
  }

  /** Append every value to `out`. */
  collect(out: V[]): void {
    const keys = this.keys;
    const vals = this.vals;
    for (let i = 0; i < keys.length; i++) {
      if (keys[i] !== EMPTY) out.push(vals[i] as V);
    }
  }

  private resize(capacity: number): void {
    const oldKeys = this.keys;
    const oldVals = this.vals;
    this.keys = new Float64Array(capacity).fill(EMPTY);
    this.vals = emptyArray<V>(capacity);
    this.mask = capacity - 1;
    this.count = 0;
    for (let i = 0; i < oldKeys.length; i++) {
      if (oldKeys[i] !== EMPTY) this.set(oldKeys[i], oldVals[i] as V);
    }
  }
}

/** A packed (not holey) array of `undefined`s: V8 keeps packed arrays on its fastest path. */
function emptyArray<V>(n: number): (V | undefined)[] {
  const a: (V | undefined)[] = [];
  for (let i = 0; i < n; i++) a.push(undefined);
  return a;
}

// ---------------------------------------------------------------------------------------------
// Index structures.

/** Context tags other than a real ASID. */
const CTX_GLOBAL = -1;
const CTX_S2 = -2;

/** One cached entry with its index links (intrusive doubly-linked lists: O(1) removal). */
class Node {
  dead = false;
  /** Same (context, size class, 512-page input bucket). */
  vbPrev: Node | undefined = undefined;
  vbNext: Node | undefined = undefined;
  /** Same (VMID, size class, IPA page). */
  ipPrev: Node | undefined = undefined;
  ipNext: Node | undefined = undefined;
  /** Same (VMID, size class, 512-page IPA bucket). */
  ibPrev: Node | undefined = undefined;
  ibNext: Node | undefined = undefined;

  constructor(
    readonly entry: IotlbEntry,
    readonly ctx: Ctx,
    /** Size class. */
    readonly s: number,
    /** Input page number at the entry's size. */
    readonly vpn: number,
    /** IPA page number at the entry's size. */
    readonly ipn: number,
  ) {}
}

/** The entries of one (VMID, ASID), of one VMID's global entries, or of its stage-2-only ones. */
class Ctx {
  /** Input key → entry. */
  readonly pages = new NumTable<Node>();
  /** Input bucket key → first entry of the bucket's list. */
  readonly buckets = new NumTable<Node>();
  /** Bit s set when the context holds entries of size class s. */
  sizeMask = 0;
  readonly sizeCount = new Int32Array(SIZE_CLASSES);

  constructor(
    readonly vm: Vm,
    /** ASID, {@link CTX_GLOBAL} or {@link CTX_S2}. */
    readonly tag: number,
  ) {}

  /** The entry containing `iova`, preferring the smallest size; no allocation. */
  find(iova: number): IotlbEntry | undefined {
    for (let m = this.sizeMask; m !== 0; m &= m - 1) {
      const s = 31 - Math.clz32(m & -m);
      const n = this.pages.get(Math.floor(iova * INV_SIZE[s]) * KEY_MUL + s);
      if (n !== undefined) return n.entry;
    }
    return undefined;
  }
}

/** Everything cached for one VMID. */
class Vm {
  readonly asids = new Map<number, Ctx>();
  global: Ctx | undefined = undefined;
  s2: Ctx | undefined = undefined;
  /** IPA key → first entry of the list of entries with that IPA page. */
  readonly ipas = new NumTable<Node>();
  /** IPA bucket key → first entry of the bucket's list. */
  readonly ipaBuckets = new NumTable<Node>();
  ipaSizeMask = 0;
  readonly ipaSizeCount = new Int32Array(SIZE_CLASSES);
  count = 0;

  constructor(readonly vmid: number) {}

  ctx(tag: number): Ctx | undefined {
    return tag >= 0 ? this.asids.get(tag) : tag === CTX_GLOBAL ? this.global : this.s2;
  }

  /** Every context of the VMID, stage-2-only last. */
  contexts(withS2: boolean): Ctx[] {
    const out = [...this.asids.values()];
    if (this.global !== undefined) out.push(this.global);
    if (withS2 && this.s2 !== undefined) out.push(this.s2);
    return out;
  }
}

// The three lists differ only in their link fields; spelling each out keeps every property
// access monomorphic.

function pushVb(table: NumTable<Node>, key: number, n: Node): void {
  const head = table.get(key);
  n.vbNext = head;
  if (head !== undefined) head.vbPrev = n;
  table.set(key, n);
}

function unlinkVb(table: NumTable<Node>, key: number, n: Node): void {
  const { vbPrev: prev, vbNext: next } = n;
  if (prev !== undefined) prev.vbNext = next;
  else if (next !== undefined) table.set(key, next);
  else table.delete(key);
  if (next !== undefined) next.vbPrev = prev;
}

function pushIp(table: NumTable<Node>, key: number, n: Node): void {
  const head = table.get(key);
  n.ipNext = head;
  if (head !== undefined) head.ipPrev = n;
  table.set(key, n);
}

function unlinkIp(table: NumTable<Node>, key: number, n: Node): void {
  const { ipPrev: prev, ipNext: next } = n;
  if (prev !== undefined) prev.ipNext = next;
  else if (next !== undefined) table.set(key, next);
  else table.delete(key);
  if (next !== undefined) next.ipPrev = prev;
}

function pushIb(table: NumTable<Node>, key: number, n: Node): void {
  const head = table.get(key);
  n.ibNext = head;
  if (head !== undefined) head.ibPrev = n;
  table.set(key, n);
}

function unlinkIb(table: NumTable<Node>, key: number, n: Node): void {
  const { ibPrev: prev, ibNext: next } = n;
  if (prev !== undefined) prev.ibNext = next;
  else if (next !== undefined) table.set(key, next);
  else table.delete(key);
  if (next !== undefined) next.ibPrev = prev;
}

function isU16(v: number): boolean {
  return Number.isInteger(v) && v >= 0 && v <= 0xffff;
}

function checkAligned(name: string, v: number, size: number): void {
  if (!Number.isSafeInteger(v) || v < 0 || v % size !== 0) {
    throw new RangeError(`IOTLB entry ${name} ${v} is not a non-negative multiple of its size 0x${size.toString(16)}`);
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * The IOTLB. Lookups and insertions are O(1) (one probe per entry size in use by the
 * context); each invalidation costs about the number of entries it removes (see the module
 * comment), independent of how many other entries are cached.
 */
export class Iotlb {
  /** Counters; never reset by invalidations. */
  readonly stats: IotlbStats = { hits: 0, misses: 0, inserts: 0, evictions: 0, invalidated: 0 };
  /** Most entries held at once; inserting into a full IOTLB evicts the oldest entry. */
  readonly capacity: number;
  private readonly vms = new Map<number, Vm>();
  private count = 0;
  /**
   * Every entry in insertion order, for FIFO eviction and {@link entries}. Removed entries
   * stay (marked dead) until the array is compacted, which happens once dead entries outnumber
   * live ones, so upkeep is O(1) amortised per insertion or removal.
   */
  private ring: (Node | undefined)[] = [];
  private ringHead = 0;

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
   * larger ones. Hot path: no allocation.
   */
  lookup(vmid: number, asid: number, iova: number): IotlbEntry | undefined {
    const vm = this.vms.get(vmid);
    if (vm !== undefined && iova >= 0) {
      let e: IotlbEntry | undefined;
      if (asid >= 0 && asid <= 0xffff) {
        const c = vm.asids.get(asid);
        if (c !== undefined) e = c.find(iova);
        if (e === undefined && vm.global !== undefined) e = vm.global.find(iova);
      } else if (vm.s2 !== undefined) {
        e = vm.s2.find(iova);
      }
      if (e !== undefined) {
        this.stats.hits++;
        return e;
      }
    }
    this.stats.misses++;
    return undefined;
  }

  /**
   * Cache a translation (a frozen copy of `e`). It replaces an entry with the same VMID,
   * context (ASID, global, or stage-2-only), IOVA and size; otherwise, when the IOTLB is full,
   * the oldest entry is evicted first.
   * @throws RangeError for an entry no walk could produce (bad size, alignment or ID).
   */
  insert(e: IotlbEntry): void {
    const s = sizeClass(e.size);
    if (s < 0) throw new RangeError(`IOTLB entry size ${e.size} is not a power of two from 4 KiB to 4 TiB`);
    if (!isU16(e.vmid)) throw new RangeError(`IOTLB entry VMID ${e.vmid} is not 16-bit`);
    if (!isU16(e.asid)) throw new RangeError(`IOTLB entry ASID ${e.asid} is not 16-bit`);
    checkAligned('iova', e.iova, e.size);
    checkAligned('ipa', e.ipa, e.size);
    checkAligned('pa', e.pa, e.size);
    if (!Number.isInteger(e.perm) || e.perm < 0 || e.perm > (PERM_R | PERM_W)) {
      throw new RangeError(`IOTLB entry perm ${e.perm} is invalid`);
    }
    const tag = !e.stage1 ? CTX_S2 : e.global ? CTX_GLOBAL : e.asid;
    const vpn = e.iova / e.size;
    const ipn = e.ipa / e.size;
    const key = vpn * KEY_MUL + s;

    const old = this.vms.get(e.vmid)?.ctx(tag)?.pages.get(key);
    if (old !== undefined) this.removeNode(old);
    else if (this.count >= this.capacity) this.evictOne();
    // Fetched after the removal: emptying a context or VMID drops it.
    let vm = this.vms.get(e.vmid);
    if (vm === undefined) {
      vm = new Vm(e.vmid);
      this.vms.set(e.vmid, vm);
    }
    let ctx = vm.ctx(tag);
    if (ctx === undefined) {
      ctx = new Ctx(vm, tag);
      if (tag >= 0) vm.asids.set(tag, ctx);
      else if (tag === CTX_GLOBAL) vm.global = ctx;
      else vm.s2 = ctx;
    }
    const entry: IotlbEntry = Object.freeze({
      vmid: e.vmid,
      asid: e.asid,
      global: e.global,
      stage1: e.stage1,
      iova: e.iova,
      size: e.size,
      ipa: e.ipa,
      pa: e.pa,
      perm: e.perm,
    });
    const n = new Node(entry, ctx, s, vpn, ipn);
    ctx.pages.set(key, n);
    pushVb(ctx.buckets, bucketKey(vpn, s), n);
    ctx.sizeCount[s]++;
    ctx.sizeMask |= 1 << s;
    pushIp(vm.ipas, ipn * KEY_MUL + s, n);
    pushIb(vm.ipaBuckets, bucketKey(ipn, s), n);
    vm.ipaSizeCount[s]++;
    vm.ipaSizeMask |= 1 << s;
    vm.count++;
    this.count++;
    this.stats.inserts++;
    if (this.ring.length - this.ringHead >= 2 * this.count + 1024) this.compactRing();
    this.ring.push(n);
  }

  /** Snapshot of the live entries, oldest first. */
  entries(): IotlbEntry[] {
    const out: IotlbEntry[] = [];
    for (let i = this.ringHead; i < this.ring.length; i++) {
      const n = this.ring[i];
      if (n !== undefined && !n.dead) out.push(n.entry);
    }
    return out;
  }

  // -------------------------------------------------------------------------------------------
  // Invalidations. Each returns the number of entries removed.

  /** TLBI_NSNH_ALL: every entry. */
  invalidateAll(): number {
    const removed = this.count;
    this.vms.clear();
    this.ring = [];
    this.ringHead = 0;
    this.count = 0;
    this.stats.invalidated += removed;
    return removed;
  }

  /** TLBI_S12_VMALL: every entry of the VMID, stage 1 and stage 2. */
  invalidateVmid(vmid: number): number {
    const vm = this.vms.get(vmid);
    if (vm === undefined) return 0;
    const nodes: Node[] = [];
    for (const ctx of vm.contexts(true)) ctx.pages.collect(nodes);
    for (const n of nodes) n.dead = true;
    this.vms.delete(vmid);
    this.count -= nodes.length;
    this.stats.invalidated += nodes.length;
    return nodes.length;
  }

  /** TLBI_NH_ALL: every stage-1 entry of the VMID (its stage-2-only entries stay). */
  invalidateVmidStage1(vmid: number): number {
    const vm = this.vms.get(vmid);
    if (vm === undefined) return 0;
    let removed = 0;
    for (const ctx of vm.contexts(false)) removed += this.dropCtx(ctx);
    return removed;
  }

  /** TLBI_NH_ASID: the non-global stage-1 entries of (VMID, ASID). */
  invalidateAsid(vmid: number, asid: number): number {
    const ctx = this.vms.get(vmid)?.asids.get(asid);
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
    const vm = this.vms.get(vmid);
    if (vm === undefined || !(length >= 1) || !(va >= 0)) return 0;
    const last = va + length - 1;
    let removed = 0;
    if (asid !== undefined) {
      const ctx = vm.asids.get(asid);
      if (ctx !== undefined) removed += this.removeVaRange(ctx, va, last);
      if (vm.global !== undefined) removed += this.removeVaRange(vm.global, va, last);
    } else {
      for (const ctx of vm.contexts(false)) removed += this.removeVaRange(ctx, va, last);
    }
    this.stats.invalidated += removed;
    return removed;
  }

  /**
   * TLBI_S2_IPA: remove every entry of the VMID, stage-1 (nested) or stage-2-only, whose
   * [ipa, ipa + size) overlaps [ipa, ipa + length). `length` below 1 removes nothing.
   */
  invalidateIpa(vmid: number, ipa: number, length: number): number {
    const vm = this.vms.get(vmid);
    if (vm === undefined || !(length >= 1) || !(ipa >= 0)) return 0;
    const first = ipa;
    const last = ipa + length - 1;
    let removed = 0;

    if (this.rangeCost(vm.ipaSizeMask, first, last) > vm.count) {
      const nodes: Node[] = [];
      for (const ctx of vm.contexts(true)) ctx.pages.collect(nodes);
      for (const n of nodes) {
        if (n.ipn >= Math.floor(first * INV_SIZE[n.s]) && n.ipn <= Math.floor(last * INV_SIZE[n.s])) {
          this.removeNode(n);
          removed++;
        }
      }
    } else {
      for (let m = vm.ipaSizeMask; m !== 0; m &= m - 1) {
        const s = 31 - Math.clz32(m & -m);
        const p0 = Math.floor(first * INV_SIZE[s]);
        const p1 = Math.floor(last * INV_SIZE[s]);
        if (p1 - p0 < EXACT_PROBE_MAX) {
          for (let pn = p0; pn <= p1; pn++) {
            for (let n = vm.ipas.get(pn * KEY_MUL + s); n !== undefined; ) {
              const next = n.ipNext;
              this.removeNode(n);
              removed++;
              n = next;
            }
          }
        } else {
          const b1 = Math.floor(p1 / BUCKET_PAGES);
          for (let b = Math.floor(p0 / BUCKET_PAGES); b <= b1; b++) {
            for (let n = vm.ipaBuckets.get(b * KEY_MUL + s); n !== undefined; ) {
              const next = n.ibNext;
              if (n.ipn >= p0 && n.ipn <= p1) {
                this.removeNode(n);
                removed++;
              }
              n = next;
            }
          }
        }
      }
    }
    this.stats.invalidated += removed;
    return removed;
  }

  // -------------------------------------------------------------------------------------------

  /** Probes a range [first, last] costs over the size classes in `mask` (see EXACT_PROBE_MAX). */
  private rangeCost(mask: number, first: number, last: number): number {
    let cost = 0;
    for (let m = mask; m !== 0; m &= m - 1) {
      const s = 31 - Math.clz32(m & -m);
      const p0 = Math.floor(first * INV_SIZE[s]);
      const p1 = Math.floor(last * INV_SIZE[s]);
      cost += p1 - p0 < EXACT_PROBE_MAX ? p1 - p0 + 1 : Math.floor(p1 / BUCKET_PAGES) - Math.floor(p0 / BUCKET_PAGES) + 1;
    }
    return cost;
  }

  /** Remove the entries of `ctx` overlapping input bytes [first, last]; not counted in stats. */
  private removeVaRange(ctx: Ctx, first: number, last: number): number {
    let removed = 0;
    if (this.rangeCost(ctx.sizeMask, first, last) > ctx.pages.count) {
      const nodes: Node[] = [];
      ctx.pages.collect(nodes);
      for (const n of nodes) {
        if (n.vpn >= Math.floor(first * INV_SIZE[n.s]) && n.vpn <= Math.floor(last * INV_SIZE[n.s])) {
          this.removeNode(n);
          removed++;
        }
      }
      return removed;
    }
    for (let m = ctx.sizeMask; m !== 0; m &= m - 1) {
      const s = 31 - Math.clz32(m & -m);
      const p0 = Math.floor(first * INV_SIZE[s]);
      const p1 = Math.floor(last * INV_SIZE[s]);
      if (p1 - p0 < EXACT_PROBE_MAX) {
        for (let pn = p0; pn <= p1; pn++) {
          const n = ctx.pages.get(pn * KEY_MUL + s);
          if (n !== undefined) {
            this.removeNode(n);
            removed++;
          }
        }
      } else {
        const b1 = Math.floor(p1 / BUCKET_PAGES);
        for (let b = Math.floor(p0 / BUCKET_PAGES); b <= b1; b++) {
          for (let n = ctx.buckets.get(b * KEY_MUL + s); n !== undefined; ) {
            const next = n.vbNext;
            if (n.vpn >= p0 && n.vpn <= p1) {
              this.removeNode(n);
              removed++;
            }
            n = next;
          }
        }
      }
    }
    return removed;
  }

  /** Unlink one entry from every index; drops its context and VMID when they empty. */
  private removeNode(n: Node): void {
    const ctx = n.ctx;
    const vm = ctx.vm;
    const s = n.s;
    ctx.pages.delete(n.vpn * KEY_MUL + s);
    unlinkVb(ctx.buckets, bucketKey(n.vpn, s), n);
    if (--ctx.sizeCount[s] === 0) ctx.sizeMask &= ~(1 << s);
    this.unlinkIpa(vm, n);
    n.dead = true;
    this.count--;
    if (--vm.count === 0) this.vms.delete(vm.vmid);
    else if (ctx.pages.count === 0) detachCtx(ctx);
  }

  private unlinkIpa(vm: Vm, n: Node): void {
    const s = n.s;
    unlinkIp(vm.ipas, n.ipn * KEY_MUL + s, n);
    unlinkIb(vm.ipaBuckets, bucketKey(n.ipn, s), n);
    if (--vm.ipaSizeCount[s] === 0) vm.ipaSizeMask &= ~(1 << s);
  }

  /** Remove a whole context: O(its entries), its own indexes are simply dropped. */
  private dropCtx(ctx: Ctx): number {
    const vm = ctx.vm;
    const nodes: Node[] = [];
    ctx.pages.collect(nodes);
    for (const n of nodes) {
      this.unlinkIpa(vm, n);
      n.dead = true;
    }
    this.count -= nodes.length;
    vm.count -= nodes.length;
    this.stats.invalidated += nodes.length;
    if (vm.count === 0) this.vms.delete(vm.vmid);
    else detachCtx(ctx);
    return nodes.length;
  }

  private evictOne(): void {
    const ring = this.ring;
    while (this.ringHead < ring.length) {
      const n = ring[this.ringHead];
      ring[this.ringHead++] = undefined;
      if (n !== undefined && !n.dead) {
        this.removeNode(n);
        this.stats.evictions++;
        return;
      }
    }
  }

  private compactRing(): void {
    const live: (Node | undefined)[] = [];
    for (let i = this.ringHead; i < this.ring.length; i++) {
      const n = this.ring[i];
      if (n !== undefined && !n.dead) live.push(n);
    }
    this.ring = live;
    this.ringHead = 0;
  }
}

function detachCtx(ctx: Ctx): void {
  const vm = ctx.vm;
  if (ctx.tag >= 0) vm.asids.delete(ctx.tag);
  else if (ctx.tag === CTX_GLOBAL) vm.global = undefined;
  else vm.s2 = undefined;
}
