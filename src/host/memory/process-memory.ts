/**
 * The VMM process's virtual address space on the host: anonymous mappings backed by host
 * pages (or hugepages), and device mappings (mmap of the iommufd file: a VINTF page0).
 * User pointers in ioctl arguments are addresses here; the kernel copies through
 * {@link copyFromUser}/{@link copyToUser}, and a bad pointer is EFAULT.
 *
 * Page references: a page of an anonymous mapping is referenced by the mapping and by every
 * pin of it (pin_user_pages, as iommufd's IOAS takes them once a domain needs the pages). munmap
 * drops the mapping's reference; a page goes back to the allocator only when no reference is
 * left, so DMA to pinned memory never reaches a page another process got since.
 *
 * Difference from Linux: anonymous memory is allocated at mmap time, not at first touch (a
 * mapping larger than the free memory is refused with ENOMEM, as Linux's overcommit heuristic
 * refuses one larger than RAM); a hugetlb mapping reserves its hugepages at mmap time in both.
 * A failed mmap takes nothing.
 */

import type { RegionOps } from '../../kit/memory-region.js';
import { CHUNK_MASK, CHUNK_SIZE, WordWindow, type SparseMemory } from '../../kit/sparse-memory.js';
import { Errno, ErrnoError } from '../../uapi/errno.js';
import type { PhysicalMemory } from './physical-memory.js';

/** One mapping of the process. */
export interface UserMapping {
  readonly va: number;
  readonly length: number;
  readonly kind: 'anon' | 'device';
  /** Backing page size (base page or hugepage) of an anon mapping. */
  readonly pageSize: number;
  /** Host PA of each backing page (anon). */
  readonly frames: Float64Array;
  /** The backing pages and their pins (anon). */
  readonly anon: AnonFrames | undefined;
  /** Device ops (device mappings). */
  readonly ops: RegionOps | undefined;
  /** Called on munmap (device mappings drop their owner's reference). */
  readonly onUnmap: (() => void) | undefined;
}

const USER_BASE = 0x10_0000_0000;

/** A process address space. */
export class ProcessMemory {
  private maps: UserMapping[] = [];
  private nextVa = USER_BASE;
  private last: UserMapping | undefined;
  /**
   * Bumped by every munmap: what a user address means may have changed, so whoever keeps
   * translations across calls ({@link UserMemoryOps}' page TLB) drops them.
   */
  generation = 0;

  constructor(readonly phys: PhysicalMemory) {}

  /** mmap(MAP_ANONYMOUS): `length` bytes, hugepage-backed when asked and possible. */
  mmapAnon(length: number, opts: { hugepages?: boolean } = {}): number {
    const huge = opts.hugepages === true && this.phys.hugepageSize > this.phys.pageSize;
    const pageSize = huge ? this.phys.hugepageSize : this.phys.pageSize;
    if (!(length > 0) || length % this.phys.pageSize !== 0) throw new ErrnoError(Errno.EINVAL, 'mmap length');
    const len = Math.ceil(length / pageSize) * pageSize;
    if (!this.phys.canAllocate(len, huge)) throw new ErrnoError(Errno.ENOMEM, `cannot allocate ${len} bytes`);
    const frames = new Float64Array(len / pageSize);
    let taken = 0;
    try {
      for (; taken < frames.length; taken++) frames[taken] = huge ? this.phys.allocHugepage() : this.phys.allocPage();
    } catch (e) {
      // Roll back every frame taken: a failed mmap leaves the host as it was.
      for (let i = 0; i < taken; i++) this.phys.free(frames[i]!, pageSize);
      throw e;
    }
    const va = this.reserve(len, pageSize);
    const anon = new AnonFrames(this.phys, frames, pageSize);
    this.insert({ va, length: len, kind: 'anon', pageSize, frames, anon, ops: undefined, onUnmap: undefined });
    return va;
  }

  /** Map device memory (the kernel's mmap handler decided what it is). */
  mapDevice(length: number, ops: RegionOps, onUnmap?: () => void): number {
    const va = this.reserve(length, this.phys.pageSize);
    this.insert({ va, length, kind: 'device', pageSize: this.phys.pageSize, frames: new Float64Array(0), anon: undefined, ops, onUnmap });
    return va;
  }

  /** munmap of a whole mapping: its pages go back unless pinned (then at their last unpin). */
  munmap(va: number, length: number): void {
    const i = this.maps.findIndex((m) => m.va === va && m.length === length);
    if (i < 0) throw new ErrnoError(Errno.EINVAL, 'munmap of a range that is not one mapping');
    const [m] = this.maps.splice(i, 1);
    this.last = undefined;
    this.generation++;
    m!.anon?.unmap();
    m!.onUnmap?.();
  }

  /** The mapping containing `va`, if any. */
  find(va: number): UserMapping | undefined {
    const l = this.last;
    if (l && va >= l.va && va < l.va + l.length) return l;
    for (const m of this.maps) {
      if (va >= m.va && va < m.va + m.length) {
        this.last = m;
        return m;
      }
    }
    return undefined;
  }

  /** Host PA behind an anonymous user address, or -1 (unmapped or device memory). */
  translate(va: number): number {
    const m = this.find(va);
    if (!m || m.kind !== 'anon') return -1;
    const off = va - m.va;
    const page = Math.floor(off / m.pageSize);
    return m.frames[page]! + (off - page * m.pageSize);
  }

  /**
   * Pin [va, va + length) (base-page aligned): take a reference on every page behind it (EFAULT,
   * pinning nothing, on any byte that is not anonymous memory) and return the physically
   * contiguous runs it is made of, as PinnedRuns: much smaller than a per-page list for
   * hugepage-backed memory. {@link PinnedRuns.unpin} drops the references.
   */
  pinRuns(va: number, length: number): PinnedRuns {
    const offsets: number[] = [];
    const pas: number[] = [];
    const lens: number[] = [];
    const spans: PinnedSpan[] = [];
    let done = 0;
    while (done < length) {
      const a = va + done;
      const m = this.find(a);
      if (!m?.anon) throw new ErrnoError(Errno.EFAULT, `no anonymous memory at 0x${a.toString(16)}`);
      const off = a - m.va;
      const page = Math.floor(off / m.pageSize);
      const inPage = off - page * m.pageSize;
      const n = Math.min(length - done, m.va + m.length - a);
      const endPage = Math.ceil((off + n) / m.pageSize);
      spans.push({ frames: m.anon, first: page, end: endPage });
      // The runs of this mapping's part, page by page.
      let p = page;
      let at = inPage;
      let left = n;
      while (left > 0) {
        const k = Math.min(left, m.pageSize - at);
        const pa = m.frames[p]! + at;
        const r = lens.length - 1;
        if (r >= 0 && pas[r]! + lens[r]! === pa) lens[r]! += k;
        else {
          offsets.push(done + n - left);
          pas.push(pa);
          lens.push(k);
        }
        left -= k;
        at = 0;
        p++;
      }
      done += n;
    }
    for (const s of spans) s.frames.pin(s.first, s.end);
    return new PinnedRuns(Float64Array.from(offsets), Float64Array.from(pas), Float64Array.from(lens), spans);
  }

  /**
   * copy_from_user: EFAULT on any unmapped byte. Into `out` (exactly `length` bytes) when
   * given, so a caller polling memory allocates nothing; a loop rather than {@link walk}, whose
   * callback would be a closure per call.
   */
  copyFromUser(va: number, length: number, out?: Uint8Array): Uint8Array {
    if (out !== undefined && out.length !== length) throw new RangeError(`copyFromUser: buffer of ${out.length} bytes for ${length}`);
    const dst = out ?? new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const n = this.userPiece(va + done, length - done);
      this.phys.mem.readBytes(this.piecePa[0]!, n, n === length ? dst : dst.subarray(done, done + n));
      done += n;
    }
    return dst;
  }

  /** copy_to_user: EFAULT on any unmapped byte (the bytes before it are copied, as the kernel's are). */
  copyToUser(va: number, data: Uint8Array): void {
    const length = data.length;
    let done = 0;
    while (done < length) {
      const n = this.userPiece(va + done, length - done);
      this.phys.mem.writeBytes(this.piecePa[0]!, n === length ? data : data.subarray(done, done + n));
      done += n;
    }
  }

  /** Host PA of the piece {@link userPiece} found (a typed array: a PA above 2^31 returned from a call is a heap number). */
  private readonly piecePa = new Float64Array(1);

  /**
   * The anonymous memory at `va`, up to `left` bytes within one backing page: its length,
   * with its host PA left in {@link piecePa}. EFAULT when `va` is not anonymous memory.
   */
  private userPiece(va: number, left: number): number {
    const m = this.find(va);
    if (!m || m.kind !== 'anon') throw new ErrnoError(Errno.EFAULT, `bad user address 0x${va.toString(16)}`);
    const off = va - m.va;
    const page = Math.floor(off / m.pageSize);
    const inPage = off - page * m.pageSize;
    this.piecePa[0] = m.frames[page]! + inPage;
    return Math.min(left, m.pageSize - inPage);
  }

  /** 32-bit user read (the VMM's own loads). */
  read32(va: number): number {
    const pa = this.translate(va);
    if (pa < 0) return this.deviceRead(va);
    return this.phys.mem.read(pa, 4);
  }

  /** 32-bit user store. */
  write32(va: number, value: number): void {
    const pa = this.translate(va);
    if (pa < 0) {
      this.deviceWrite(va, value);
      return;
    }
    this.phys.mem.write(pa, 4, value);
  }

  private deviceRead(va: number): number {
    const m = this.find(va);
    if (!m?.ops) throw new ErrnoError(Errno.EFAULT, `SIGSEGV at 0x${va.toString(16)}`);
    return m.ops.read(va - m.va, 4);
  }

  private deviceWrite(va: number, value: number): void {
    const m = this.find(va);
    if (!m?.ops) throw new ErrnoError(Errno.EFAULT, `SIGSEGV at 0x${va.toString(16)}`);
    m.ops.write(va - m.va, 4, value);
  }

  /**
   * Visit [va, va + length) of anonymous memory one physically contiguous piece at a time:
   * `fn(pa, n, done)`; a return of true stops the walk. EFAULT at the first byte that is not
   * anonymous memory, as the kernel's user accessors fault there.
   */
  walk(va: number, length: number, fn: (pa: number, n: number, done: number) => boolean | void): void {
    let done = 0;
    while (done < length) {
      const n = this.userPiece(va + done, length - done);
      if (fn(this.piecePa[0]!, n, done) === true) return;
      done += n;
    }
  }

  private reserve(length: number, align: number): number {
    const va = Math.ceil(this.nextVa / align) * align;
    this.nextVa = va + length + this.phys.pageSize; // guard page between mappings
    return va;
  }

  private insert(m: UserMapping): void {
    this.maps.push(m);
    this.maps.sort((a, b) => a.va - b.va);
  }
}

/** Pages [first, end) of one mapping's frames, pinned. */
interface PinnedSpan {
  readonly frames: AnonFrames;
  readonly first: number;
  readonly end: number;
}

/**
 * The pages behind an anonymous mapping and their pin counts: a page's references are the
 * mapping's own (until munmap) plus its pins; it is freed when the last one goes.
 */
export class AnonFrames {
  /** Pins per page (allocated at the first pin). */
  private pins: Uint32Array | undefined;
  private mapped = true;

  constructor(
    private readonly phys: PhysicalMemory,
    readonly frames: Float64Array,
    readonly pageSize: number,
  ) {}

  /** Take a reference on pages [first, end). */
  pin(first: number, end: number): void {
    const pins = (this.pins ??= new Uint32Array(this.frames.length));
    for (let i = first; i < end; i++) pins[i]!++;
  }

  /** Drop a reference on pages [first, end); after munmap the last one frees the page. */
  unpin(first: number, end: number): void {
    const pins = this.pins!;
    for (let i = first; i < end; i++) {
      if (--pins[i]! === 0 && !this.mapped) this.phys.free(this.frames[i]!, this.pageSize);
    }
  }

  /** munmap: drop the mapping's reference; unpinned pages are freed now. */
  unmap(): void {
    this.mapped = false;
    const pins = this.pins;
    for (let i = 0; i < this.frames.length; i++) {
      if (pins === undefined || pins[i] === 0) this.phys.free(this.frames[i]!, this.pageSize);
    }
  }
}

/** Pinned user memory as physically contiguous runs: run i covers [offset, offset + len). */
export class PinnedRuns {
  private pinned = true;

  constructor(
    readonly offsets: Float64Array,
    readonly pas: Float64Array,
    readonly lens: Float64Array,
    private readonly spans: readonly PinnedSpan[] = [],
  ) {}

  /** Drop the references taken by the pin (once; later calls do nothing). */
  unpin(): void {
    if (!this.pinned) return;
    this.pinned = false;
    for (const s of this.spans) s.frames.unpin(s.first, s.end);
  }

  /** Number of runs. */
  get count(): number {
    return this.offsets.length;
  }

  /** Index of the run containing byte `off`. */
  runAt(off: number): number {
    let lo = 0;
    let hi = this.offsets.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.offsets[mid]! <= off) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Host PA of byte `off`. */
  paAt(off: number): number {
    const r = this.runAt(off);
    return this.pas[r]! + (off - this.offsets[r]!);
  }

  /** Whether [off, off + len) lies inside one run (is physically contiguous). */
  contiguous(off: number, len: number): boolean {
    const r = this.runAt(off);
    return off + len <= this.offsets[r]! + this.lens[r]!;
  }
}

/** Slots of {@link UserMemoryOps}' last translated page. */
const PAGE_OFF = 0;
const PAGE_PA = 1;
const PAGE_SIZE = 2;

/**
 * Page TLB of {@link UserMemoryOps}: direct-mapped slots of one window each, the backing page or
 * the memory chunk whichever is smaller (4 KiB to 64 KiB), so a window is one run of words.
 */
const TLB_SLOTS = 512;
/** Placeholder words of an empty slot (its tag never matches). */
const NO_WORDS = new Uint32Array(0);

/**
 * Region ops over a range of user memory, e.g. the VMM's guest RAM mapping: what a guest RAM
 * access ends up touching on the host.
 */
export class UserMemoryOps implements RegionOps {
  /**
   * Last page translated: [offset of its start, host PA of its start, its size). A Float64Array
   * rather than fields: these are doubles above 2^31, and reading or writing them here never
   * boxes a heap number.
   */
  private readonly page = new Float64Array([-1, 0, 0]);
  /** The page's start as memory chunk number and offset in it: small integers, see {@link read}. */
  private pageChunk = 0;
  private pageChunkOff = 0;
  /** Window reused by {@link readWords}. */
  private readonly scratchWindow = new WordWindow();
  /** The anonymous mapping of the last miss: another page of it needs no mapping search. */
  private mapping: UserMapping | undefined;
  /** {@link ProcessMemory.generation} that {@link page} and {@link mapping} were found at. */
  private pageGen: number;
  /**
   * Page TLB for aligned 32-bit loads and stores (a guest's accesses to its RAM): slot
   * `page % TLB_SLOTS` holds window `page` of the view (windows of {@link tlbWindow} bytes) as
   * the words of the memory chunk behind it and the index of the window's first word there,
   * QEMU's softmmu TLB in miniature. Only windows whose chunk exists are entered (a load of
   * untouched memory allocates nothing). Valid
   * while neither the process's mappings ({@link ProcessMemory.generation}) nor the chunks
   * ({@link SparseMemory.generation}) change; stores bypass it while a dirty log runs.
   */
  private readonly tlbPage = new Float64Array(TLB_SLOTS).fill(-1);
  private readonly tlbWords: Uint32Array[] = new Array<Uint32Array>(TLB_SLOTS).fill(NO_WORDS);
  private readonly tlbIndex = new Int32Array(TLB_SLOTS);
  private tlbProcGen: number;
  private tlbMemGen: number;
  /** Window size of the TLB: the view's backing page size, at most a memory chunk. */
  private readonly tlbWindow: number;
  private readonly tlbWindowMask: number;
  private readonly mem: SparseMemory;

  constructor(
    private readonly proc: ProcessMemory,
    private readonly baseVa: number,
  ) {
    this.mem = proc.phys.mem;
    this.pageGen = proc.generation;
    this.tlbWindow = Math.min(proc.find(baseVa)?.pageSize ?? proc.phys.pageSize, CHUNK_SIZE);
    this.tlbWindowMask = this.tlbWindow - 1;
    this.tlbProcGen = proc.generation;
    this.tlbMemGen = this.mem.generation;
  }
  read(offset: number, size: 1 | 2 | 4): number {
    if (size === 4 && (offset & 3) === 0) {
      const page = Math.floor(offset / this.tlbWindow);
      const slot = page & (TLB_SLOTS - 1);
      if (this.tlbPage[slot] === page && this.tlbProcGen === this.proc.generation && this.tlbMemGen === this.mem.generation) {
        return this.tlbWords[slot]![this.tlbIndex[slot]! + ((offset & this.tlbWindowMask) >>> 2)]!;
      }
      return this.readMiss(offset);
    }
    return this.readSlow(offset, size);
  }
  write(offset: number, size: 1 | 2 | 4, value: number): void {
    if (size === 4 && (offset & 3) === 0 && !this.mem.dirtyLogging) {
      const page = Math.floor(offset / this.tlbWindow);
      const slot = page & (TLB_SLOTS - 1);
      if (this.tlbPage[slot] === page && this.tlbProcGen === this.proc.generation && this.tlbMemGen === this.mem.generation) {
        this.tlbWords[slot]![this.tlbIndex[slot]! + ((offset & this.tlbWindowMask) >>> 2)] = value >>> 0;
        return;
      }
      this.writeMiss(offset, value);
      return;
    }
    this.writeSlow(offset, size, value);
  }

  /** An aligned word whose page is not in the TLB: the full path, then the TLB filled (kept apart so the hit path inlines). */
  private readMiss(offset: number): number {
    const v = this.readSlow(offset, 4);
    this.tlbFill(offset);
    return v;
  }

  private writeMiss(offset: number, value: number): void {
    this.writeSlow(offset, 4, value);
    this.tlbFill(offset);
  }

  /** Enter the page of `offset` (just accessed, so translated in {@link page}) into the TLB if its chunk exists. */
  private tlbFill(offset: number): void {
    if (this.tlbProcGen !== this.proc.generation || this.tlbMemGen !== this.mem.generation) {
      this.tlbPage.fill(-1);
      this.tlbWords.fill(NO_WORDS);
      this.tlbProcGen = this.proc.generation;
      this.tlbMemGen = this.mem.generation;
    }
    const rel = this.pageRel(offset, 4);
    // A mapping with pages smaller than the window (not the view's own) is not entered.
    if (rel < 0 || this.page[PAGE_SIZE]! < this.tlbWindow) return;
    const pa = this.page[PAGE_PA]! + rel;
    const words = this.mem.presentWords(Math.floor(pa / CHUNK_SIZE));
    if (words === undefined) return;
    const page = Math.floor(offset / this.tlbWindow);
    const slot = page & (TLB_SLOTS - 1);
    this.tlbPage[slot] = page;
    this.tlbWords[slot] = words;
    this.tlbIndex[slot] = ((pa & CHUNK_MASK) - (offset & this.tlbWindowMask)) >>> 2;
  }

  private readSlow(offset: number, size: 1 | 2 | 4): number {
    const rel = this.pageRel(offset, size);
    if (rel >= 0) {
      // An aligned word by chunk and offset: the PA itself (above 2^31) would be boxed to pass.
      if (size === 4 && (rel & 3) === 0) {
        const at = this.pageChunkOff + rel;
        return this.proc.phys.mem.read32At(this.pageChunk + Math.floor(at / CHUNK_SIZE), at & CHUNK_MASK);
      }
      return this.proc.phys.mem.read(this.page[PAGE_PA]! + rel, size);
    }
    let v = 0;
    for (let i = size - 1; i >= 0; i--) v = v * 256 + this.readSlow(offset + i, 1);
    return v;
  }
  private writeSlow(offset: number, size: 1 | 2 | 4, value: number): void {
    const rel = this.pageRel(offset, size);
    if (rel >= 0) {
      if (size === 4 && (rel & 3) === 0) {
        const at = this.pageChunkOff + rel;
        this.proc.phys.mem.write32At(this.pageChunk + Math.floor(at / CHUNK_SIZE), at & CHUNK_MASK, value);
        return;
      }
      this.proc.phys.mem.write(this.page[PAGE_PA]! + rel, size, value);
      return;
    }
    for (let i = 0; i < size; i++) this.writeSlow(offset + i, 1, (value >>> (8 * i)) & 0xff);
  }
  read64(offset: number): bigint {
    const lo = this.read(offset, 4);
    return (BigInt(this.read(offset + 4, 4)) << 32n) | BigInt(lo);
  }
  write64(offset: number, value: bigint): void {
    const v = BigInt.asUintN(64, value);
    this.write(offset, 4, Number(v & 0xffff_ffffn));
    this.write(offset + 4, 4, Number(v >> 32n));
  }
  /**
   * Read `count` words at `offset` into `out[at..]` when they lie in one backing page and one
   * memory chunk (the fast path for queue walks); returns false otherwise.
   */
  readWords(offset: number, out: Uint32Array, at: number, count: number): boolean {
    const win = this.scratchWindow;
    if (!this.mapWords(offset, win) || win.bytes < count * 4) return false;
    const { words, index } = win;
    for (let k = 0; k < count; k++) out[at + k] = words[index + k]!;
    return true;
  }

  /**
   * Map the memory at the word-aligned `offset` into `win`, up to the end of its backing page or
   * memory chunk, whichever comes first (DMA-style direct access: address_space_map); false
   * when it cannot be mapped directly (then the caller uses {@link read}).
   */
  mapWords(offset: number, win: WordWindow): boolean {
    const rel = this.pageRel(offset, 4);
    const page = this.page;
    if (rel < 0 || !this.proc.phys.mem.mapWords(page[PAGE_PA]! + rel, win)) return false;
    win.bytes = Math.min(win.bytes, page[PAGE_SIZE]! - rel);
    return true;
  }

  /**
   * Where `offset` lies in its backing page (translated into {@link page}), or -1 when the access
   * crosses a backing page (the caller splits it). Returns the small offset in the page, not the
   * host PA: a PA above 2^31 returned from a call is a heap allocation.
   */
  private pageRel(offset: number, size: number): number {
    const st = this.page;
    if (this.pageGen !== this.proc.generation) {
      // A munmap since: the page and mapping kept may be gone (then this access faults).
      this.pageGen = this.proc.generation;
      st[PAGE_OFF] = -1;
      st[PAGE_SIZE] = 0;
      this.mapping = undefined;
    }
    const rel = offset - st[PAGE_OFF]!;
    if (rel >= 0 && rel + size <= st[PAGE_SIZE]!) return rel;
    const va = this.baseVa + offset;
    let m = this.mapping;
    if (m === undefined || !(va >= m.va && va < m.va + m.length)) {
      m = this.proc.find(va);
      if (!m || m.kind !== 'anon') throw new ErrnoError(Errno.EFAULT, 'guest RAM not backed');
      this.mapping = m;
    }
    const page = Math.floor((va - m.va) / m.pageSize);
    st[PAGE_OFF] = m.va + page * m.pageSize - this.baseVa;
    st[PAGE_PA] = m.frames[page]!;
    this.pageChunk = Math.floor(m.frames[page]! / CHUNK_SIZE);
    this.pageChunkOff = m.frames[page]! & CHUNK_MASK;
    st[PAGE_SIZE] = m.pageSize;
    const at = offset - st[PAGE_OFF]!;
    return at + size > m.pageSize ? -1 : at;
  }
}
