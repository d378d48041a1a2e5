/**
 * Builds Arm VMSAv8-64 translation tables (AArch64 long-descriptor format, 48-bit output
 * addresses) in a memory: the host kernel's io-pgtable uses it for stage 2 in host RAM, the
 * guest driver for stage 1 in guest RAM.
 *
 * Every table is one granule from `allocTable`. The start-level table may be partial (16 KiB
 * and 64 KiB granules at 48 bits) but still occupies a whole granule; concatenated stage-2
 * start tables are not built, so the tables always start at the default level
 * 4 − ceil((inputBits − P) / (P − 3)) for a granule of 2^P bytes.
 *
 * The encodings are written out here rather than shared with the SMMU's walker
 * (`host/smmuv3/page-table.ts`): the kit sits below the host layer, and two independent
 * readings of the architecture let each check the other in tests.
 *
 * Leaves written:
 * - stage 1: AF = 1, SH = inner shareable (0b11), AttrIndx from the caller (default 0),
 *   AP[2] = 1 when not writable, AP[1] = 1 (EL0 access), nG from the caller;
 * - stage 2: AF = 1, SH = inner shareable, MemAttr = 0b1111 (normal write-back),
 *   S2AP[0] = read, S2AP[1] = write.
 * Table descriptors are 0b11 with the next table's address and no hierarchical attributes.
 */

/** The memory the tables live in: 32-bit little-endian words. */
export interface TableMemory {
  read32(addr: number): number;
  write32(addr: number, v: number): void;
}

/** How a {@link PageTableBuilder} lays out its tables. */
export interface PageTableBuilderConfig {
  /** Stage 1 (AP/AttrIndx/nG attributes) or stage 2 (S2AP/MemAttr). */
  stage: 1 | 2;
  granule: 4096 | 16384 | 65536;
  /** Input address size (64 − TxSZ): more than log2(granule), at most 48. */
  inputBits: number;
  /** A zeroed, granule-aligned table of one granule; the builder does not clear it. */
  allocTable: () => number;
  /** Return a table that became empty on unmap; without it empty tables stay linked. */
  freeTable?: (addr: number) => void;
  /**
   * Tables already built in memory (a restored snapshot): the builder takes them over instead
   * of allocating a root. See {@link PageTableBuilder.save}.
   */
  existing?: PageTableBuilderState;
}

/** What a builder knows beyond the tables in memory: their root and how many are linked. */
export interface PageTableBuilderState {
  readonly root: number;
  readonly tables: number;
}

/** Options of {@link PageTableBuilder.map}. */
export interface MapOptions {
  /** Stage 1 only: not global (the translation belongs to the CD's ASID). Default false. */
  nG?: boolean;
  /** Stage 1 only: MAIR index 0..7. Default 0. */
  attrIndx?: number;
  /**
   * Use block descriptors where the input address, output address and remaining size are
   * block-aligned. Default true.
   */
  useBlocks?: boolean;
}

/** A translation found by {@link PageTableBuilder.translate}. */
export interface BuilderTranslation {
  /** Output address of the input address. */
  pa: number;
  /** 1 read | 2 write. */
  perm: number;
  /** Bytes the leaf maps (page or block). */
  size: number;
}

/** Permission bit: read. */
export const PT_PERM_R = 1;
/** Permission bit: write. */
export const PT_PERM_W = 2;

const TWO32 = 0x1_0000_0000;
/** Output addresses are 48-bit (no 52-bit LPA). */
const OA_LIMIT = 2 ** 48;

// Low-word descriptor bits.
const DESC_VALID = 0b01;
const DESC_TABLE = 0b11; // also "page" at level 3
const DESC_BLOCK = 0b01;
const S1_ATTRINDX_SHIFT = 2;
const S1_AP1_EL0 = 1 << 6;
const S1_AP2_RO = 1 << 7;
const S2_MEMATTR_NORMAL_WB = 0b1111 << 2;
const S2AP_R = 1 << 6;
const S2AP_W = 1 << 7;
const SH_INNER = 0b11 << 8;
const AF = 1 << 10;
const NG = 1 << 11;
/** High-word bits holding OA[47:32]. */
const HI_OA = 0xffff;

/** Builds and edits one set of translation tables rooted at {@link root}. */
export class PageTableBuilder {
  /** Address of the start-level table. */
  readonly root: number;
  /** Level the tables start at. */
  readonly startLevel: number;
  readonly stage: 1 | 2;
  readonly granule: 4096 | 16384 | 65536;
  readonly inputBits: number;
  /** Tables currently linked, the root included. */
  get tableCount(): number {
    return this.tables;
  }

  private readonly pageShift: number;
  private readonly stride: number;
  private readonly entries: number;
  /** Bytes one entry covers at each level 0..3 (computed once: 2 ** x per call is a pow). */
  private readonly levelSizes = new Float64Array(4);
  /** 2^inputBits: the end of the input range. */
  private readonly inputLimit: number;
  private readonly allocTable: () => number;
  private readonly freeTable: ((addr: number) => void) | undefined;
  private tables = 0;
  /** Table descriptors written or cleared so far (a change of the tables' shape). */
  private links = 0;
  /** The last {@link leafTable} found: its span (va / 2^(last-level span)), address, and {@link links} then. */
  private leafKey = -1;
  private leafAddr = -1;
  private leafLinks = -1;

  constructor(
    private readonly mem: TableMemory,
    cfg: PageTableBuilderConfig,
  ) {
    const p = cfg.granule === 4096 ? 12 : cfg.granule === 16384 ? 14 : cfg.granule === 65536 ? 16 : 0;
    if (p === 0) throw new RangeError(`granule ${String(cfg.granule)} is not 4, 16 or 64 KiB`);
    if (cfg.stage !== 1 && cfg.stage !== 2) throw new RangeError(`stage ${String(cfg.stage)} is not 1 or 2`);
    if (!Number.isInteger(cfg.inputBits) || cfg.inputBits <= p || cfg.inputBits > 48) {
      throw new RangeError(`input size ${cfg.inputBits} bits is outside (${p}, 48] for a ${cfg.granule}-byte granule`);
    }
    this.stage = cfg.stage;
    this.granule = cfg.granule;
    this.inputBits = cfg.inputBits;
    this.pageShift = p;
    this.stride = p - 3;
    this.entries = 2 ** this.stride;
    for (let level = 0; level < 4; level++) this.levelSizes[level] = 2 ** (p + this.stride * (3 - level));
    this.startLevel = 4 - Math.ceil((cfg.inputBits - p) / this.stride);
    this.inputLimit = 2 ** cfg.inputBits;
    this.allocTable = cfg.allocTable;
    this.freeTable = cfg.freeTable;
    if (cfg.existing) {
      this.root = cfg.existing.root;
      this.tables = cfg.existing.tables;
    } else {
      this.root = this.newTable();
    }
  }

  /** The builder's own state (the tables themselves are in the memory it writes). */
  save(): PageTableBuilderState {
    return { root: this.root, tables: this.tables };
  }

  /**
   * Map [va, va + size) to [pa, pa + size) with `perm` (1 read | 2 write; stage 1 always
   * grants read, so its `perm` must include it). All-or-nothing: throws RangeError, writing
   * nothing, on misalignment, a range beyond the input or output size, or overlap with an
   * existing mapping.
   */
  map(va: number, pa: number, size: number, perm: number, opts: MapOptions = {}): void {
    this.checkRange(va, size, 'map');
    if (!Number.isInteger(pa) || pa < 0 || (pa & (this.granule - 1)) !== 0 || pa + size > OA_LIMIT) {
      throw new RangeError(`map: output address 0x${pa.toString(16)} is not granule-aligned or the range exceeds 48 bits`);
    }
    if (!Number.isInteger(perm) || perm < 0 || perm > 3) throw new RangeError(`map: permission ${perm} is not a mask of 1 | 2`);
    if (this.stage === 1 && (perm & PT_PERM_R) === 0) {
      throw new RangeError('map: stage 1 cannot express a mapping without read permission');
    }
    const attrIndx = opts.attrIndx ?? 0;
    if (!Number.isInteger(attrIndx) || attrIndx < 0 || attrIndx > 7) throw new RangeError(`map: AttrIndx ${attrIndx} is not 0..7`);
    // A range inside one existing last-level table (the common case) is checked and written
    // there after one walk down; anything else takes the general walks from the root.
    const leaves = this.leafTable(va, size);
    const clash = leaves >= 0 ? this.leafClash(leaves, va, size) : this.firstMapped(this.root, this.startLevel, va, size);
    if (clash >= 0) throw new RangeError(`map: 0x${clash.toString(16)} in [0x${va.toString(16)}, +0x${size.toString(16)}) is already mapped`);
    let attrs = AF | SH_INNER;
    if (this.stage === 1) {
      attrs |= (attrIndx << S1_ATTRINDX_SHIFT) | S1_AP1_EL0;
      if (opts.nG === true) attrs |= NG;
    } else {
      attrs |= S2_MEMATTR_NORMAL_WB;
    }
    attrs |= this.permBits(perm);
    if (leaves >= 0) this.writeLeaves(leaves, va, pa, size, attrs);
    else this.mapIn(this.root, this.startLevel, va, pa, size, attrs, opts.useBlocks !== false);
  }

  /**
   * Clear the leaves inside [va, va + size); holes are skipped. Throws RangeError, changing
   * nothing, on misalignment or when the range covers only part of a block (blocks are not
   * split). With `freeTable`, tables left empty are unlinked and freed (never the root).
   * Returns the bytes that were mapped.
   */
  unmap(va: number, size: number): number {
    this.checkRange(va, size, 'unmap');
    if (this.freeTable === undefined) {
      // Inside one last-level table every leaf is a whole page of the range: clear them there.
      const leaves = this.leafTable(va, size);
      if (leaves >= 0) return this.clearLeaves(leaves, va, size);
    }
    this.checkWholeLeaves(this.root, this.startLevel, va, size, 'unmap');
    return this.unmapIn(this.root, this.startLevel, va, size);
  }

  /**
   * Replace the permissions of the leaves inside [va, va + size) (holes are skipped). Throws
   * RangeError, changing nothing, like {@link unmap}. Returns the bytes whose leaves changed.
   */
  setPerm(va: number, size: number, perm: number): number {
    this.checkRange(va, size, 'setPerm');
    if (!Number.isInteger(perm) || perm < 0 || perm > 3) throw new RangeError(`setPerm: permission ${perm} is not a mask of 1 | 2`);
    if (this.stage === 1 && (perm & PT_PERM_R) === 0) {
      throw new RangeError('setPerm: stage 1 cannot express a mapping without read permission');
    }
    this.checkWholeLeaves(this.root, this.startLevel, va, size, 'setPerm');
    const bits = this.permBits(perm);
    // Stage 1 keeps AP[1] (EL0 access): only AP[2] encodes a permission the caller sets.
    const mask = this.stage === 1 ? S1_AP2_RO : S2AP_R | S2AP_W;
    let done = 0;
    this.forLeaves(this.root, this.startLevel, va, size, (addr, lo, _hi, leafSize) => {
      this.mem.write32(addr, ((lo & ~mask) | bits) >>> 0);
      done += leafSize;
    });
    return done;
  }

  /** Software walk of these tables: the translation of `va`, or undefined when unmapped. */
  translate(va: number): BuilderTranslation | undefined {
    if (!Number.isInteger(va) || va < 0 || va >= 2 ** this.inputBits) return undefined;
    let table = this.root;
    for (let level = this.startLevel; level <= 3; level++) {
      const d = table + this.index(va, level) * 8;
      const lo = this.mem.read32(d);
      const hi = this.mem.read32(d + 4);
      if ((lo & DESC_VALID) === 0) return undefined;
      if (level < 3 && (lo & 0b11) === DESC_TABLE) {
        table = this.tableAddress(lo, hi);
        continue;
      }
      const size = this.levelSize(level);
      const base = (hi & HI_OA) * TWO32 + ((lo & ((TWO32 - size) >>> 0)) >>> 0);
      let perm: number;
      if (this.stage === 1) perm = PT_PERM_R | ((lo & S1_AP2_RO) === 0 ? PT_PERM_W : 0);
      else perm = ((lo & S2AP_R) !== 0 ? PT_PERM_R : 0) | ((lo & S2AP_W) !== 0 ? PT_PERM_W : 0);
      return { pa: base + (va % size), perm, size };
    }
    return undefined;
  }

  // ------------------------------------------------------------------------------------------

  private checkRange(va: number, size: number, what: string): void {
    if (!Number.isInteger(va) || !Number.isInteger(size) || va < 0 || size <= 0) {
      throw new RangeError(`${what}: address 0x${va.toString(16)} / size 0x${size.toString(16)} invalid`);
    }
    if ((va & (this.granule - 1)) !== 0 || (size & (this.granule - 1)) !== 0) {
      throw new RangeError(`${what}: [0x${va.toString(16)}, +0x${size.toString(16)}) is not aligned to the ${this.granule}-byte granule`);
    }
    if (va + size > this.inputLimit) {
      throw new RangeError(`${what}: [0x${va.toString(16)}, +0x${size.toString(16)}) exceeds the ${this.inputBits}-bit input size`);
    }
  }

  private permBits(perm: number): number {
    if (this.stage === 1) return (perm & PT_PERM_W) !== 0 ? 0 : S1_AP2_RO;
    return ((perm & PT_PERM_R) !== 0 ? S2AP_R : 0) | ((perm & PT_PERM_W) !== 0 ? S2AP_W : 0);
  }

  /** Bytes one entry at `level` covers. */
  private levelSize(level: number): number {
    return this.levelSizes[level]!;
  }

  private index(va: number, level: number): number {
    // The start-level table may be partial; va < 2^inputBits keeps its index in range anyway.
    // A mask, not `%`: on a number above 2^31 `%` is a floating-point remainder (a call), and
    // `&` keeps the exact low bits of any integer.
    return Math.floor(va / this.levelSize(level)) & (this.entries - 1);
  }

  private blockAllowed(level: number): boolean {
    return this.pageShift === 12 ? level === 1 || level === 2 : level === 2;
  }

  private tableAddress(lo: number, hi: number): number {
    return (hi & HI_OA) * TWO32 + ((lo & ((TWO32 - this.granule) >>> 0)) >>> 0);
  }

  private newTable(): number {
    const t = this.allocTable();
    if (!Number.isSafeInteger(t) || t < 0 || (t & (this.granule - 1)) !== 0 || t + this.granule > OA_LIMIT) {
      throw new RangeError(`allocTable returned 0x${t.toString(16)}, not a granule-aligned 48-bit address`);
    }
    this.tables++;
    return t;
  }

  /** Write a descriptor: high word first, so the valid bit lands last. */
  private writeDesc(addr: number, oa: number, lowBits: number): void {
    this.mem.write32(addr + 4, Math.floor(oa / TWO32));
    this.mem.write32(addr, (oa | lowBits) >>> 0); // `|` takes oa's low 32 bits
  }

  /**
   * Visit the entries of `table` (at `level`) that [va, va + size) touches:
   * `fn(descAddr, lo, hi, entryVa, entrySize, start, n)` where [start, start + n) is the part
   * of the range inside the entry.
   */
  private eachEntry(
    table: number,
    level: number,
    va: number,
    size: number,
    fn: (d: number, lo: number, hi: number, entryVa: number, entrySize: number, start: number, n: number) => boolean | void,
  ): void {
    const entrySize = this.levelSize(level);
    let a = va;
    const end = va + size;
    while (a < end) {
      const entryVa = Math.floor(a / entrySize) * entrySize;
      const n = Math.min(end, entryVa + entrySize) - a;
      const d = table + this.index(a, level) * 8;
      if (fn(d, this.mem.read32(d), this.mem.read32(d + 4), entryVa, entrySize, a, n) === false) return;
      a += n;
    }
  }

  // The walks below visit the entries of `table` (at `level`) that [va, va + size) touches,
  // as {@link eachEntry} does, but inline (no closure per call: map and unmap are the guest's
  // per-buffer hot path), reading a descriptor's high word only where a table address needs it.

  /**
   * The last-level table holding [va, va + size) when the range lies inside one such table
   * and every level above it is already a table descriptor; −1 otherwise (a block, a missing
   * table, or a range across tables: the general walks handle those).
   */
  private leafTable(va: number, size: number): number {
    const span = this.levelSize(2); // the bytes one last-level table maps
    const key = Math.floor(va / span);
    if (key !== Math.floor((va + size - 1) / span)) return -1;
    // The last one found, while no table was linked or unlinked since (the builder is the only
    // writer of its table descriptors): a driver's consecutive calls mostly land in one table.
    if (key === this.leafKey && this.leafLinks === this.links) return this.leafAddr;
    let table = this.root;
    for (let level = this.startLevel; level < 3; level++) {
      const d = table + this.index(va, level) * 8;
      const lo = this.mem.read32(d);
      if ((lo & 0b11) !== DESC_TABLE) return -1;
      table = this.tableAddress(lo, this.mem.read32(d + 4));
    }
    this.leafKey = key;
    this.leafAddr = table;
    this.leafLinks = this.links;
    return table;
  }

  /** The lowest input address of a leaf overlapping [va, va + size), or −1. */
  private firstMapped(table: number, level: number, va: number, size: number): number {
    if (level === 3) return this.leafClash(table, va, size);
    const entrySize = this.levelSize(level);
    const end = va + size;
    for (let a = va; a < end; ) {
      const entryVa = Math.floor(a / entrySize) * entrySize;
      const n = Math.min(end, entryVa + entrySize) - a;
      const d = table + this.index(a, level) * 8;
      const lo = this.mem.read32(d);
      if ((lo & DESC_VALID) !== 0) {
        if ((lo & 0b11) === DESC_TABLE) {
          const found = this.firstMapped(this.tableAddress(lo, this.mem.read32(d + 4)), level + 1, a, n);
          if (found >= 0) return found;
        } else {
          return Math.max(entryVa, a);
        }
      }
      a += n;
    }
    return -1;
  }

  /** Throw unless every leaf [va, va + size) touches lies wholly inside it. */
  private checkWholeLeaves(table: number, level: number, va: number, size: number, what: string): void {
    const entrySize = this.levelSize(level);
    const end = va + size;
    for (let a = va; a < end; ) {
      const entryVa = Math.floor(a / entrySize) * entrySize;
      const n = Math.min(end, entryVa + entrySize) - a;
      const d = table + this.index(a, level) * 8;
      const lo = this.mem.read32(d);
      if ((lo & DESC_VALID) !== 0) {
        if (level < 3 && (lo & 0b11) === DESC_TABLE) {
          this.checkWholeLeaves(this.tableAddress(lo, this.mem.read32(d + 4)), level + 1, a, n, what);
        } else if (n !== entrySize) {
          throw new RangeError(`${what}: the range covers only part of the block at 0x${entryVa.toString(16)} (+0x${entrySize.toString(16)})`);
        }
      }
      a += n;
    }
  }

  /** Call `fn` for every leaf inside [va, va + size) (which must not split a block). */
  private forLeaves(table: number, level: number, va: number, size: number, fn: (d: number, lo: number, hi: number, leafSize: number) => void): void {
    this.eachEntry(table, level, va, size, (d, lo, hi, _entryVa, entrySize, start, n) => {
      if ((lo & DESC_VALID) === 0) return;
      if (level < 3 && (lo & 0b11) === DESC_TABLE) this.forLeaves(this.tableAddress(lo, hi), level + 1, start, n, fn);
      else fn(d, lo, hi, entrySize);
    });
  }

  private mapIn(table: number, level: number, va: number, pa: number, size: number, attrs: number, blocks: boolean): void {
    if (level === 3) {
      this.writeLeaves(table, va, pa, size, attrs);
      return;
    }
    const entrySize = this.levelSize(level);
    const end = va + size;
    for (let a = va; a < end; ) {
      const entryVa = Math.floor(a / entrySize) * entrySize;
      const n = Math.min(end, entryVa + entrySize) - a;
      const d = table + this.index(a, level) * 8;
      const oa = pa + (a - va);
      a += n;
      const lo = this.mem.read32(d);
      const isTable = (lo & 0b11) === DESC_TABLE;
      // The overlap check has run: the entry is invalid or a table with no leaves in range.
      if (!isTable && blocks && n === entrySize && oa % entrySize === 0 && this.blockAllowed(level)) {
        this.writeDesc(d, oa, attrs | DESC_BLOCK);
        continue;
      }
      let next: number;
      if (isTable) {
        next = this.tableAddress(lo, this.mem.read32(d + 4));
      } else {
        next = this.newTable();
        this.links++;
        this.writeDesc(d, next, DESC_TABLE);
      }
      this.mapIn(next, level + 1, a - n, oa, n, attrs, blocks);
    }
  }

  private unmapIn(table: number, level: number, va: number, size: number): number {
    if (level === 3) return this.clearLeaves(table, va, size);
    let bytes = 0;
    const entrySize = this.levelSize(level);
    const end = va + size;
    for (let a = va; a < end; ) {
      const entryVa = Math.floor(a / entrySize) * entrySize;
      const n = Math.min(end, entryVa + entrySize) - a;
      const d = table + this.index(a, level) * 8;
      const lo = this.mem.read32(d);
      if ((lo & DESC_VALID) !== 0) {
        if ((lo & 0b11) === DESC_TABLE) {
          const next = this.tableAddress(lo, this.mem.read32(d + 4));
          bytes += this.unmapIn(next, level + 1, a, n);
          if (this.freeTable && this.isEmpty(next)) {
            this.mem.write32(d, 0);
            this.mem.write32(d + 4, 0);
            this.tables--;
            this.links++;
            this.freeTable(next);
          }
        } else {
          this.mem.write32(d, 0);
          this.mem.write32(d + 4, 0);
          bytes += entrySize;
        }
      }
      a += n;
    }
    return bytes;
  }

  // The last level on its own: small loops without recursion, so that V8 inlines them into
  // map/unmap (a call passes each address above 2^30 as a heap number).

  /** The first page of [va, va + size) (inside last-level table `table`) with a valid leaf, or −1. */
  private leafClash(table: number, va: number, size: number): number {
    const g = this.granule;
    let d = table + this.index(va, 3) * 8;
    for (let off = 0; off < size; off += g, d += 8) if ((this.mem.read32(d) & DESC_VALID) !== 0) return va + off;
    return -1;
  }

  /** Page descriptors for [va, va + size) → [pa, ...) in last-level table `table`. */
  private writeLeaves(table: number, va: number, pa: number, size: number, attrs: number): void {
    const g = this.granule;
    let d = table + this.index(va, 3) * 8;
    for (let off = 0; off < size; off += g, d += 8) this.writeDesc(d, pa + off, attrs | DESC_TABLE);
  }

  /** Clear the valid page descriptors of [va, va + size) in last-level table `table`; the bytes they mapped. */
  private clearLeaves(table: number, va: number, size: number): number {
    const g = this.granule;
    let bytes = 0;
    let d = table + this.index(va, 3) * 8;
    for (let off = 0; off < size; off += g, d += 8) {
      if ((this.mem.read32(d) & DESC_VALID) === 0) continue;
      this.mem.write32(d, 0);
      this.mem.write32(d + 4, 0);
      bytes += g;
    }
    return bytes;
  }

  private isEmpty(table: number): boolean {
    for (let i = 0; i < this.entries; i++) {
      if ((this.mem.read32(table + i * 8) & DESC_VALID) !== 0) return false;
    }
    return true;
  }
}
