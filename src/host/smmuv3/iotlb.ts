/**
 * The host SMMUv3's IOTLB: the cache of combined (stage 1 + stage 2, or single-stage)
 * translations, IOVA → host PA, tagged by VMID and ASID.
 *
 * The contents are observable on purpose: a test or a user can see a stale entry survive a
 * missing invalidation, which is the point of modelling the cache rather than walking the
 * tables on every access.
 *
 * Cost model. An invalidation touches (roughly) only the entries it removes, never the whole
 * cache: QEMU's SMMUv3 scans its entire IOTLB hash table for every TLBI, which makes a guest
 * that invalidates page by page pay for everything cached. Here:
 * - entries live in per-context hash tables (one context per (VMID, ASID), one for the VMID's
 *   global entries, one for its stage-2-only entries) keyed by (entry size, page number);
 *   each context keeps a bitmask of the sizes it holds, so a lookup probes only those;
 * - by-ASID and by-VMID invalidations drop whole contexts: O(entries removed);
 * - a by-VA range probes each page key of each size in use when that is cheapest, otherwise
 *   walks the context's coarse buckets that the range touches: O(min(pages, entries in the
 *   touched buckets) per size in use + entries removed);
 * - a by-IPA range does the same over a per-VMID IPA index (exact IPA lists + buckets);
 * - TLBI_NH_VAA (any ASID) pays the by-VA cost once per stage-1 context of the VMID.
 *
 * Layout, for speed at millions of entries: an entry is an integer id into a pool of
 * fixed-size records in one Float64Array (one cache line each), hash tables interleave key and
 * id in one Float64Array, and buckets drop removed ids lazily (validated by an insertion
 * sequence number) so a removal does not chase list neighbours. Nothing on the lookup path
 * allocates: keys are exact integers below 2^53 hashed from their 32-bit halves (a `Map` keyed
 * by numbers above 2^31 would allocate a heap number per probe).
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

/** One cached translation. Entries handed out by {@link Iotlb} are frozen copies. */
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
// Keys. An entry of size 2^(12+s) at page number pn (= address / size) has key pn·32 + s:
// s < 31 and pn < 2^41 keep keys exact integers below 2^46, distinct across size classes, so one
// table serves all sizes.

const SIZE_CLASSES = 31; // 4 KiB (s = 0) .. 4 TiB (s = 30)
const KEY_MUL = 32;
/**
 * Pages of one size class per bucket: 2^16, i.e. 256 MiB of 4 KiB pages. Coarse on purpose: a
 * context holds few buckets, so the bucket a removal updates is almost always in cache; short
 * ranges never walk buckets anyway (they probe page keys).
 */
const BUCKET_PAGES = 2 ** 16;
/** A range of at most this many pages of a size class always probes page keys. */
const EXACT_PROBE_MAX = 64;

/** 2^-(12+s): multiplying by a power of two is exact, so floor(addr · INV[s]) is exact. */
const INV_SIZE = new Float64Array(SIZE_CLASSES);
for (let s = 0; s < SIZE_CLASSES; s++) INV_SIZE[s] = 2 ** -(12 + s);

/** Bucket key (a small integer: below 2^30) of page `pn` of size class `s`. */
function bucketKey(pn: number, s: number): number {
  return Math.floor(pn / BUCKET_PAGES) * KEY_MUL + s;
}

/** Size class of a power-of-two size in range, or -1. */
function sizeClass(size: number): number {
  if (!(size >= MIN_ENTRY_SIZE && size <= MAX_ENTRY_SIZE)) return -1;
  const s = (size < 2 ** 32 ? 31 - Math.clz32(size) : 63 - Math.clz32(size / 2 ** 32)) - 12;
  return size * INV_SIZE[s] === 1 ? s : -1;
}

// ---------------------------------------------------------------------------------------------
// IdTable: open-addressing hash table from a non-negative integer key below 2^53 to an id.
//
// Callers pass a key as its two 32-bit halves (hi, lo), lo signed: both are small integers, so
// no call boxes a heap number (a double argument to a call TurboFan does not inline would).
// A slot is four int32s, [lo, hi, id, unused]: a probe reads one 16-byte slot. Linear probing,
// backward-shift deletion (no tombstones), load factor at most 1/2.

const NONE = -1;
const SLOT = 4;

/** High half of a key below 2^53. */
function keyHi(key: number): number {
  return (key / 4294967296) | 0;
}

/** Low half of a key, as a signed int32. */
function keyLo(key: number): number {
  return key | 0;
}

/** Slot hash of a key's halves (fmix32). */
function hash32(hi: number, lo: number): number {
  let h = lo ^ Math.imul(hi, 0x9e3779b1);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

class IdTable {
  /** slots[4i] = lo, slots[4i + 1] = hi (NONE when empty), slots[4i + 2] = id. */
  private slots: Int32Array;
  private mask: number;
  /** Number of keys present. */
  count = 0;

  constructor(capacity = 8) {
    this.slots = emptySlots(capacity);
    this.mask = capacity - 1;
  }

  /** Number of slots (for iteration with {@link idAt}). */
  get capacity(): number {
    return this.mask + 1;
  }

  /** Id stored in slot `i`, or NONE for an empty slot. */
  idAt(i: number): number {
    return this.slots[SLOT * i + 1] === NONE ? NONE : this.slots[SLOT * i + 2];
  }

  get(hi: number, lo: number): number {
    const slots = this.slots;
    const mask = this.mask;
    for (let i = hash32(hi, lo) & mask; ; i = (i + 1) & mask) {
      const h = slots[SLOT * i + 1];
      if (h === hi && slots[SLOT * i] === lo) return slots[SLOT * i + 2];
      if (h === NONE) return NONE;
    }
  }

  /** Insert or replace. */
  set(hi: number, lo: number, id: number): void {
    const slots = this.slots;
    const mask = this.mask;
    for (let i = hash32(hi, lo) & mask; ; i = (i + 1) & mask) {
      const h = slots[SLOT * i + 1];
      if (h === hi && slots[SLOT * i] === lo) {
        slots[SLOT * i + 2] = id;
        return;
      }
      if (h === NONE) {
        slots[SLOT * i] = lo;
        slots[SLOT * i + 1] = hi;
        slots[SLOT * i + 2] = id;
        if (++this.count * 2 > mask + 1) this.resize(2 * (mask + 1));
        return;
      }
    }
  }

  delete(hi: number, lo: number): void {
    const slots = this.slots;
    const mask = this.mask;
    let i = hash32(hi, lo) & mask;
    for (; ; i = (i + 1) & mask) {
      const h = slots[SLOT * i + 1];
      if (h === hi && slots[SLOT * i] === lo) break;
      if (h === NONE) return;
    }
    // Backward shift: pull later members of the probe run into the hole unless their home
    // slot lies cyclically in (hole, their slot], where moving them would hide them.
    for (let j = (i + 1) & mask; slots[SLOT * j + 1] !== NONE; j = (j + 1) & mask) {
      const home = hash32(slots[SLOT * j + 1], slots[SLOT * j]) & mask;
      const stays = i <= j ? home > i && home <= j : home > i || home <= j;
      if (!stays) {
        slots[SLOT * i] = slots[SLOT * j];
        slots[SLOT * i + 1] = slots[SLOT * j + 1];
        slots[SLOT * i + 2] = slots[SLOT * j + 2];
        i = j;
      }
    }
    slots[SLOT * i + 1] = NONE;
    this.count--;
    // Shrink a table that emptied out, so walking its slots stays proportional to its contents.
    if (mask >= 64 && this.count * 8 < mask + 1) this.resize((mask + 1) / 4);
  }

  private resize(capacity: number): void {
    const old = this.slots;
    this.slots = emptySlots(capacity);
    this.mask = capacity - 1;
    this.count = 0;
    for (let i = 0; i < old.length; i += SLOT) {
      if (old[i + 1] !== NONE) this.set(old[i + 1], old[i], old[i + 2]);
    }
  }
}

function emptySlots(capacity: number): Int32Array {
  const slots = new Int32Array(SLOT * capacity);
  for (let i = 1; i < slots.length; i += SLOT) slots[i] = NONE;
  return slots;
}

// ---------------------------------------------------------------------------------------------
// Entry records: REC doubles per id in one Float64Array.

const REC = 8;
/** Page number of the input address at the entry's size. */
const R_VPN = 0;
/** Page number of the IPA at the entry's size. */
const R_IPN = 1;
/** Size class. */
const R_S = 2;
/** Context id; NONE when the id is free. */
const R_CTX = 3;
/** Previous / next id with the same (VMID, size class, IPA page); NONE at the ends. */
const R_IPPREV = 4;
const R_IPNEXT = 5;
/** Insertion sequence number; NONE when free. Tells a live id from a stale reference to it. */
const R_SEQ = 6;

/**
 * Ids whose entry fell in one bucket, appended on insertion and dropped lazily: a removal only
 * decrements `live`; references whose sequence number no longer matches the record are stale
 * and are skipped, then compacted away when they outnumber the live ones.
 */
class Bucket {
  ids = new Int32Array(4);
  seqs = new Float64Array(4);
  /** Slots used in ids/seqs. */
  n = 0;
  live = 0;

  constructor(
    /** Bucket number (page number / BUCKET_PAGES) and size class. */
    readonly index: number,
    readonly s: number,
  ) {}
}

/**
 * Buckets by key. A bucket that empties stays (with its arrays cleared), so a page that is
 * invalidated and refilled does not allocate a bucket each time; empty buckets are swept when
 * they outnumber the others.
 */
class BucketIndex {
  readonly map = new Map<number, Bucket>();
  /** Buckets with live ids. */
  nonEmpty = 0;

  /** Account for the removal of one id from the bucket at `key` (lazily: see {@link Bucket}). */
  drop(key: number): void {
    const b = this.map.get(key) as Bucket;
    if (--b.live === 0) {
      b.n = 0; // every reference left is stale
      this.nonEmpty--;
    }
  }
}

/** Context tags other than a real ASID. */
const CTX_GLOBAL = -1;
const CTX_S2 = -2;

/** The entries of one (VMID, ASID), of one VMID's global entries, or of its stage-2-only ones. */
class Ctx {
  /** Input key → id. */
  readonly pages = new IdTable();
  /** Input bucket key → bucket. */
  readonly buckets = new BucketIndex();
  /** Bit s set when the context holds entries of size class s. */
  sizeMask = 0;
  readonly sizeCount = new Int32Array(SIZE_CLASSES);

  constructor(
    readonly id: number,
    readonly vm: Vm,
    /** ASID, CTX_GLOBAL or CTX_S2. */
    readonly tag: number,
  ) {}

  /** Id of the entry containing `iova` (smallest size first), or NONE; no allocation. */
  find(iova: number): number {
    for (let m = this.sizeMask; m !== 0; m &= m - 1) {
      const s = 31 - Math.clz32(m & -m);
      const key = Math.floor(iova * INV_SIZE[s]) * KEY_MUL + s;
      const id = this.pages.get(keyHi(key), keyLo(key));
      if (id !== NONE) return id;
    }
    return NONE;
  }
}

/** Everything cached for one VMID. */
class Vm {
  readonly asids = new Map<number, Ctx>();
  global: Ctx | undefined = undefined;
  s2: Ctx | undefined = undefined;
  /** IPA key → first id of the list of entries with that IPA page (R_IPPREV/R_IPNEXT). */
  readonly ipas = new IdTable();
  /** IPA bucket key → bucket. */
  readonly ipaBuckets = new BucketIndex();
  ipaSizeMask = 0;
  readonly ipaSizeCount = new Int32Array(SIZE_CLASSES);
  count = 0;

  constructor(readonly vmid: number) {}

  ctx(tag: number): Ctx | undefined {
    return tag >= 0 ? this.asids.get(tag) : tag === CTX_GLOBAL ? this.global : this.s2;
  }

  /** Every context of the VMID; the stage-2-only one only if asked. */
  contexts(withS2: boolean): Ctx[] {
    const out = [...this.asids.values()];
    if (this.global !== undefined) out.push(this.global);
    if (withS2 && this.s2 !== undefined) out.push(this.s2);
    return out;
  }
}

function isU16(v: number): boolean {
  return Number.isInteger(v) && v >= 0 && v <= 0xffff;
}

function checkAligned(name: string, v: number, size: number, s: number): void {
  if (!Number.isSafeInteger(v) || v < 0 || !Number.isInteger(v * INV_SIZE[s])) {
    throw new RangeError(`IOTLB entry ${name} ${v} is not a non-negative multiple of its size 0x${size.toString(16)}`);
  }
}

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
  private count = 0;
  private seq = 0;

  // Entry pool: records, the frozen entries handed out, and a stack of free ids.
  private rec = new Float64Array(INITIAL_POOL * REC);
  private ents: (IotlbEntry | undefined)[] = [];
  private free = new Int32Array(INITIAL_POOL);
  private freeTop = 0;
  private poolUsed = 0;

  // Contexts by id (records name their context by id, which costs no pointer chase).
  private ctxs: (Ctx | undefined)[] = [];
  private freeCtxIds: number[] = [];

  /**
   * Every insertion as (id, sequence number), oldest first, for FIFO eviction and
   * {@link entries}; references to removed entries are skipped and compacted away when the
   * array fills, so upkeep is O(1) amortised and a removal does nothing here.
   */
  private ringId = new Int32Array(INITIAL_RING);
  private ringSeq = new Float64Array(INITIAL_RING);
  private ringHead = 0;
  private ringTail = 0;

  /** Scratch list of buckets for range walks (reused: invalidations allocate nothing). */
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
   * larger ones. Hot path: no allocation.
   */
  lookup(vmid: number, asid: number, iova: number): IotlbEntry | undefined {
    const vm = this.vms.get(vmid);
    if (vm !== undefined && iova >= 0) {
      let id = NONE;
      if (asid >= 0 && asid <= 0xffff) {
        const c = vm.asids.get(asid);
        if (c !== undefined) id = c.find(iova);
        if (id === NONE && vm.global !== undefined) id = vm.global.find(iova);
      } else if (vm.s2 !== undefined) {
        id = vm.s2.find(iova);
      }
      if (id !== NONE) {
        this.stats.hits++;
        return this.ents[id];
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
    checkAligned('iova', e.iova, e.size, s);
    checkAligned('ipa', e.ipa, e.size, s);
    checkAligned('pa', e.pa, e.size, s);
    if (!Number.isInteger(e.perm) || e.perm < 0 || e.perm > (PERM_R | PERM_W)) {
      throw new RangeError(`IOTLB entry perm ${e.perm} is invalid`);
    }
    const tag = !e.stage1 ? CTX_S2 : e.global ? CTX_GLOBAL : e.asid;
    const vpn = e.iova * INV_SIZE[s];
    const ipn = e.ipa * INV_SIZE[s];
    const key = vpn * KEY_MUL + s;

    const c0 = this.vms.get(e.vmid)?.ctx(tag);
    const old = c0 === undefined ? NONE : c0.pages.get(keyHi(key), keyLo(key));
    if (old !== NONE) this.removeId(old);
    else if (this.count >= this.capacity) this.evictOne();
    // Fetched after the removal: emptying a context or VMID drops it.
    let vm = this.vms.get(e.vmid);
    if (vm === undefined) {
      vm = new Vm(e.vmid);
      this.vms.set(e.vmid, vm);
    }
    const ctx = vm.ctx(tag) ?? this.newCtx(vm, tag);

    const id = this.allocId();
    const seq = this.seq++;
    const rec = this.rec;
    const o = id * REC;
    rec[o + R_VPN] = vpn;
    rec[o + R_IPN] = ipn;
    rec[o + R_S] = s;
    rec[o + R_CTX] = ctx.id;
    rec[o + R_SEQ] = seq;
    this.ents[id] = Object.freeze({
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

    ctx.pages.set(keyHi(key), keyLo(key), id);
    this.pushBucket(ctx.buckets, vpn, s, id, seq);
    ctx.sizeCount[s]++;
    ctx.sizeMask |= 1 << s;

    const ipKey = ipn * KEY_MUL + s;
    const head = vm.ipas.get(keyHi(ipKey), keyLo(ipKey));
    rec[o + R_IPPREV] = NONE;
    rec[o + R_IPNEXT] = head;
    if (head !== NONE) rec[head * REC + R_IPPREV] = id;
    vm.ipas.set(keyHi(ipKey), keyLo(ipKey), id);
    this.pushBucket(vm.ipaBuckets, ipn, s, id, seq);
    vm.ipaSizeCount[s]++;
    vm.ipaSizeMask |= 1 << s;

    if (this.ringTail === this.ringId.length) this.compactRing();
    this.ringId[this.ringTail] = id;
    this.ringSeq[this.ringTail++] = seq;

    vm.count++;
    this.count++;
    this.stats.inserts++;
  }

  /** Snapshot of the live entries, oldest first. */
  entries(): IotlbEntry[] {
    const out: IotlbEntry[] = [];
    for (let i = this.ringHead; i < this.ringTail; i++) {
      const id = this.ringId[i];
      if (this.rec[id * REC + R_SEQ] === this.ringSeq[i]) out.push(this.ents[id] as IotlbEntry);
    }
    return out;
  }

  // -------------------------------------------------------------------------------------------
  // Invalidations. Each returns the number of entries removed.

  /** TLBI_NSNH_ALL: every entry. */
  invalidateAll(): number {
    const removed = this.count;
    this.vms.clear();
    this.count = 0;
    this.rec = new Float64Array(INITIAL_POOL * REC);
    this.ents = [];
    this.free = new Int32Array(INITIAL_POOL);
    this.freeTop = 0;
    this.poolUsed = 0;
    this.ctxs = [];
    this.freeCtxIds = [];
    this.ringId = new Int32Array(INITIAL_RING);
    this.ringSeq = new Float64Array(INITIAL_RING);
    this.ringHead = 0;
    this.ringTail = 0;
    this.stats.invalidated += removed;
    return removed;
  }

  /** TLBI_S12_VMALL: every entry of the VMID, stage 1 and stage 2. */
  invalidateVmid(vmid: number): number {
    const vm = this.vms.get(vmid);
    if (vm === undefined) return 0;
    let removed = 0;
    for (const ctx of vm.contexts(true)) {
      const t = ctx.pages;
      for (let i = 0; i < t.capacity; i++) {
        const id = t.idAt(i);
        if (id !== NONE) {
          this.freeId(id);
          removed++;
        }
      }
      this.releaseCtx(ctx);
    }
    this.vms.delete(vmid);
    this.count -= removed;
    this.stats.invalidated += removed;
    return removed;
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
    const last = ipa + length - 1;
    let removed = 0;
    for (let m = vm.ipaSizeMask; m !== 0; m &= m - 1) {
      const s = 31 - Math.clz32(m & -m);
      const p0 = Math.floor(ipa * INV_SIZE[s]);
      const p1 = Math.floor(last * INV_SIZE[s]);
      if (this.shouldProbe(vm.ipaBuckets, s, p0, p1)) {
        for (let pn = p0; pn <= p1; pn++) {
          const key = pn * KEY_MUL + s;
          for (let id = vm.ipas.get(keyHi(key), keyLo(key)); id !== NONE; ) {
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

  /** Remove the entries of `ctx` overlapping input bytes [first, last]; not counted in stats. */
  private removeVaRange(ctx: Ctx, first: number, last: number): number {
    let removed = 0;
    for (let m = ctx.sizeMask; m !== 0; m &= m - 1) {
      const s = 31 - Math.clz32(m & -m);
      const p0 = Math.floor(first * INV_SIZE[s]);
      const p1 = Math.floor(last * INV_SIZE[s]);
      if (this.shouldProbe(ctx.buckets, s, p0, p1)) {
        for (let pn = p0; pn <= p1; pn++) {
          const key = pn * KEY_MUL + s;
          const id = ctx.pages.get(keyHi(key), keyLo(key));
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
   * Whether to remove pages [p0, p1] of size class `s` by probing each page key (true) or by
   * walking the buckets the range touches, which this leaves in `scratch` (false): whichever
   * visits fewer ids.
   */
  private shouldProbe(index: BucketIndex, s: number, p0: number, p1: number): boolean {
    const pages = p1 - p0 + 1;
    if (pages <= EXACT_PROBE_MAX) return true;
    const scratch = this.scratch;
    scratch.length = 0;
    const b0 = Math.floor(p0 / BUCKET_PAGES);
    const b1 = Math.floor(p1 / BUCKET_PAGES);
    let walk = 0;
    const buckets = index.map;
    if (b1 - b0 < buckets.size) {
      for (let b = b0; b <= b1; b++) {
        const bucket = buckets.get(b * KEY_MUL + s);
        if (bucket !== undefined) {
          scratch.push(bucket);
          walk += bucket.n;
        }
      }
    } else {
      for (const bucket of buckets.values()) {
        if (bucket.s === s && bucket.index >= b0 && bucket.index <= b1) {
          scratch.push(bucket);
          walk += bucket.n;
        }
      }
    }
    return pages <= walk;
  }

  /** Remove the live ids of the `scratch` buckets whose page (record field `field`) is in [p0, p1]. */
  private walkBuckets(field: number, p0: number, p1: number): number {
    let removed = 0;
    for (const bucket of this.scratch) {
      // A removal that empties the bucket resets n: the loop then ends, nothing live is left.
      const { ids, seqs } = bucket;
      for (let j = 0; j < bucket.n; j++) {
        const o = ids[j] * REC;
        if (this.rec[o + R_SEQ] !== seqs[j]) continue;
        const pn = this.rec[o + field];
        if (pn >= p0 && pn <= p1) {
          this.removeId(ids[j]);
          removed++;
        }
      }
      if (bucket.live > 0 && bucket.n > 2 * bucket.live + 16) this.compactBucket(bucket);
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
    const s = rec[o + R_S];
    const vpn = rec[o + R_VPN];
    const key = vpn * KEY_MUL + s;
    ctx.pages.delete(keyHi(key), keyLo(key));
    ctx.buckets.drop(bucketKey(vpn, s));
    if (--ctx.sizeCount[s] === 0) ctx.sizeMask &= ~(1 << s);
    this.unlinkIpa(vm, id);
    this.freeId(id);
    this.count--;
    if (--vm.count === 0) {
      this.vms.delete(vm.vmid);
      for (const c of vm.contexts(true)) this.releaseCtx(c);
    } else if (ctx.pages.count === 0) {
      this.detachCtx(ctx);
    }
  }

  private unlinkIpa(vm: Vm, id: number): void {
    const rec = this.rec;
    const o = id * REC;
    const s = rec[o + R_S];
    const ipn = rec[o + R_IPN];
    const prev = rec[o + R_IPPREV];
    const next = rec[o + R_IPNEXT];
    const key = ipn * KEY_MUL + s;
    if (prev !== NONE) rec[prev * REC + R_IPNEXT] = next;
    else if (next !== NONE) vm.ipas.set(keyHi(key), keyLo(key), next);
    else vm.ipas.delete(keyHi(key), keyLo(key));
    if (next !== NONE) rec[next * REC + R_IPPREV] = prev;
    vm.ipaBuckets.drop(bucketKey(ipn, s));
    if (--vm.ipaSizeCount[s] === 0) vm.ipaSizeMask &= ~(1 << s);
  }

  /** Remove a whole context: O(its entries); its own indexes are simply dropped. */
  private dropCtx(ctx: Ctx): number {
    const vm = ctx.vm;
    const t = ctx.pages;
    let removed = 0;
    for (let i = 0; i < t.capacity; i++) {
      const id = t.idAt(i);
      if (id !== NONE) {
        this.unlinkIpa(vm, id);
        this.freeId(id);
        removed++;
      }
    }
    this.count -= removed;
    vm.count -= removed;
    this.stats.invalidated += removed;
    if (vm.count === 0) {
      this.vms.delete(vm.vmid);
      for (const c of vm.contexts(true)) this.releaseCtx(c);
    } else {
      this.detachCtx(ctx);
    }
    return removed;
  }

  private newCtx(vm: Vm, tag: number): Ctx {
    const id = this.freeCtxIds.pop() ?? this.ctxs.length;
    const ctx = new Ctx(id, vm, tag);
    this.ctxs[id] = ctx;
    if (tag >= 0) vm.asids.set(tag, ctx);
    else if (tag === CTX_GLOBAL) vm.global = ctx;
    else vm.s2 = ctx;
    return ctx;
  }

  private detachCtx(ctx: Ctx): void {
    const vm = ctx.vm;
    if (ctx.tag >= 0) vm.asids.delete(ctx.tag);
    else if (ctx.tag === CTX_GLOBAL) vm.global = undefined;
    else vm.s2 = undefined;
    this.releaseCtx(ctx);
  }

  private releaseCtx(ctx: Ctx): void {
    this.ctxs[ctx.id] = undefined;
    this.freeCtxIds.push(ctx.id);
  }

  private pushBucket(index: BucketIndex, pn: number, s: number, id: number, seq: number): void {
    const key = bucketKey(pn, s);
    let b = index.map.get(key);
    if (b === undefined) {
      if (index.map.size > 2 * index.nonEmpty + 64) {
        for (const [k, old] of index.map) if (old.live === 0) index.map.delete(k);
      }
      b = new Bucket(Math.floor(pn / BUCKET_PAGES), s);
      index.map.set(key, b);
      index.nonEmpty++;
    } else if (b.live === 0) {
      index.nonEmpty++;
    } else if (b.n > 2 * b.live + 16) {
      this.compactBucket(b);
    }
    if (b.n === b.ids.length) {
      const ids = new Int32Array(2 * b.n);
      ids.set(b.ids);
      b.ids = ids;
      const seqs = new Float64Array(2 * b.n);
      seqs.set(b.seqs);
      b.seqs = seqs;
    }
    b.ids[b.n] = id;
    b.seqs[b.n++] = seq;
    b.live++;
  }

  private compactBucket(b: Bucket): void {
    const { ids, seqs } = b;
    let n = 0;
    for (let j = 0; j < b.n; j++) {
      if (this.rec[ids[j] * REC + R_SEQ] === seqs[j]) {
        ids[n] = ids[j];
        seqs[n++] = seqs[j];
      }
    }
    b.n = n;
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
