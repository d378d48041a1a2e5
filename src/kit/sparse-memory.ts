/**
 * Sparse byte-addressable memory: a multi-GiB guest or host RAM costs only the 64 KiB chunks
 * that were written. Untouched memory reads as zero. Little-endian, like the Arm stack.
 */

/** Chunk size: 64 KiB, a multiple of every page size the stack uses. */
export const CHUNK_SHIFT = 16;
export const CHUNK_SIZE = 1 << CHUNK_SHIFT;
/** Offset-in-chunk mask. */
export const CHUNK_MASK = CHUNK_SIZE - 1;
/** Copies up to this many bytes go byte by byte (cheaper than a subarray view). */
const SMALL_COPY = 64;
/** Slots of the chunk cache (a power of two). */
const CACHE_SLOTS = 256;

/** Dirty-log granule: 4 KiB pages, the smallest page the stack uses (KVM logs per base page too). */
export const DIRTY_PAGE_SHIFT = 12;
export const DIRTY_PAGE_SIZE = 1 << DIRTY_PAGE_SHIFT;

interface Chunk {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  /** The chunk as host-order words; only used on little-endian hosts (see {@link LITTLE_ENDIAN_HOST}). */
  readonly words: Uint32Array;
}

/** Whether typed arrays are little-endian here (so a Uint32Array view reads LE words). */
export const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * A stretch of memory seen directly as host-order words (no copy), filled in by a `mapWords`
 * call: `words[index]` is the word at the mapped address and `bytes` bytes from there lie in the
 * window. Reused across calls so that ring walks allocate nothing.
 */
export class WordWindow {
  words: Uint32Array = new Uint32Array(0);
  index = 0;
  bytes = 0;
}

/** Sparse little-endian memory of a fixed size (addresses are numbers below 2^53). */
export class SparseMemory {
  private readonly chunks = new Map<number, Chunk>();
  private lastIndex = -1;
  private lastChunk: Chunk | undefined;
  /**
   * A direct-mapped cache of chunks by index (slot = index mod CACHE_SLOTS) in front of the
   * map: a workload cycles through more chunks (page tables, rings, buffers) than the last-used
   * one catches. Chunks are never dropped, so an entry never goes stale.
   */
  private readonly cacheIndex = new Float64Array(CACHE_SLOTS).fill(-1);
  private readonly cacheChunk: (Chunk | undefined)[] = new Array<Chunk | undefined>(CACHE_SLOTS).fill(undefined);
  /**
   * While a dirty log runs: one bit per 4 KiB page, set by every store (KVM's dirty bitmap). Kept
   * undefined otherwise, so the write path pays one comparison.
   */
  private dirty: Uint32Array | undefined;
  /**
   * Bumped whenever a chunk already handed out stops being the memory at its address (replaced
   * or dropped). Callers that keep a chunk's words across calls (a guest-page TLB) check it;
   * creating a chunk where none was does not bump it (nobody can hold words of a missing chunk).
   */
  generation = 0;

  constructor(readonly size: number) {
    if (!(size > 0) || !Number.isSafeInteger(size)) throw new RangeError(`memory size ${size} is invalid`);
  }

  /** Bytes of backing actually allocated (touched chunks × chunk size). */
  get residentBytes(): number {
    return this.chunks.size * CHUNK_SIZE;
  }

  /** Whether [addr, addr + len) lies inside the memory. */
  contains(addr: number, len: number): boolean {
    return addr >= 0 && len >= 0 && addr + len <= this.size;
  }

  private chunkFor(index: number, create: boolean): Chunk | undefined {
    if (index === this.lastIndex) return this.lastChunk;
    const slot = index & (CACHE_SLOTS - 1);
    let c = this.cacheIndex[slot] === index ? this.cacheChunk[slot] : this.chunks.get(index);
    if (!c) {
      if (!create) return undefined;
      const bytes = new Uint8Array(CHUNK_SIZE);
      c = { bytes, view: new DataView(bytes.buffer), words: new Uint32Array(bytes.buffer) };
      this.chunks.set(index, c);
    }
    this.cacheIndex[slot] = index;
    this.cacheChunk[slot] = c;
    this.lastIndex = index;
    this.lastChunk = c;
    return c;
  }

  private check(addr: number, len: number): void {
    if (!this.contains(addr, len)) {
      throw new RangeError(`access [0x${addr.toString(16)}, +${len}) outside memory of ${this.size} bytes`);
    }
  }

  /** Read an unsigned little-endian value of 1, 2 or 4 bytes. */
  read(addr: number, size: 1 | 2 | 4): number {
    // An aligned word never crosses a chunk: the word path (addr & 3 keeps the low bits of any safe integer).
    if (size === 4 && (addr & 3) === 0) return this.read32(addr);
    this.check(addr, size);
    // Masks, not `%`, on addresses: above 2^31 `%` is a floating-point remainder (a call).
    const off = addr & CHUNK_MASK;
    if (off + size <= CHUNK_SIZE) {
      const c = this.chunkFor(Math.floor(addr / CHUNK_SIZE), false);
      if (!c) return 0;
      if (size === 4) return c.view.getUint32(off, true);
      if (size === 2) return c.view.getUint16(off, true);
      return c.bytes[off]!;
    }
    let v = 0;
    for (let i = size - 1; i >= 0; i--) v = v * 256 + this.read(addr + i, 1);
    return v;
  }

  /**
   * The 64 KiB chunk holding `addr` as words (allocating it), for hot loops that walk a ring:
   * word i of the chunk is at chunk base + 4·i. Undefined on big-endian hosts (use read32).
   * Stores through these words bypass the dirty log: only for reading, or for memory that is
   * never migrated (the host kernel's own rings).
   */
  chunkWords(addr: number): Uint32Array | undefined {
    if (!LITTLE_ENDIAN_HOST) return undefined;
    this.check(addr, 4);
    return this.chunkFor(Math.floor(addr / CHUNK_SIZE), true)!.words;
  }

  /**
   * The words of chunk `index` (address `index` × {@link CHUNK_SIZE}) when it is allocated;
   * undefined when it is not (it reads as zero) or on a big-endian host. Allocates nothing, so a
   * reader holding on to the words (valid while {@link generation} stays) leaves memory as it was.
   */
  presentWords(index: number): Uint32Array | undefined {
    if (!LITTLE_ENDIAN_HOST) return undefined;
    return this.chunkFor(index, false)?.words;
  }

  /**
   * Map the chunk holding the word-aligned `addr` into `win` (to the chunk's end); false on a
   * big-endian host or an unaligned address, where callers fall back to {@link read32}.
   */
  mapWords(addr: number, win: WordWindow): boolean {
    if (!LITTLE_ENDIAN_HOST || (addr & 3) !== 0) return false;
    const words = this.chunkWords(addr);
    if (!words) return false;
    const off = addr & CHUNK_MASK;
    win.words = words;
    win.index = off >>> 2;
    win.bytes = CHUNK_SIZE - off;
    return true;
  }

  /**
   * {@link read32} of the word at byte `off` (word-aligned, below {@link CHUNK_SIZE}) of chunk
   * `chunk`: the address as two small integers, so a caller holding a PA above 2^31 passes no
   * heap number (a double argument to a call that is not inlined is one allocation).
   */
  read32At(chunk: number, off: number): number {
    const c = this.chunkFor(chunk, false);
    if (!(chunk * CHUNK_SIZE + off + 4 <= this.size)) this.check(chunk * CHUNK_SIZE + off, 4);
    if (!c) return 0;
    return LITTLE_ENDIAN_HOST ? c.words[off >>> 2]! : c.view.getUint32(off, true);
  }

  /** {@link write32} at a word-aligned `off` of chunk `chunk` (see {@link read32At}). */
  write32At(chunk: number, off: number, value: number): void {
    if (!(chunk * CHUNK_SIZE + off + 4 <= this.size)) this.check(chunk * CHUNK_SIZE + off, 4);
    const c = this.chunkFor(chunk, true)!;
    const d = this.dirty;
    if (d !== undefined) {
      const p = chunk * (CHUNK_SIZE / DIRTY_PAGE_SIZE) + (off >>> DIRTY_PAGE_SHIFT);
      d[p >>> 5] |= 1 << (p & 31);
    }
    if (LITTLE_ENDIAN_HOST) c.words[off >>> 2] = value >>> 0;
    else c.view.setUint32(off, value >>> 0, true);
  }

  /** Aligned 32-bit read, the fast path for rings and tables. */
  read32(addr: number): number {
    const c = this.chunkFor(Math.floor(addr / CHUNK_SIZE), false);
    if (!(addr >= 0 && addr + 4 <= this.size)) this.check(addr, 4);
    if (!c) return 0;
    // An aligned word on a little-endian host is one element of the chunk's word view.
    return (addr & 3) === 0 && LITTLE_ENDIAN_HOST ? c.words[(addr & CHUNK_MASK) >>> 2]! : c.view.getUint32(addr & CHUNK_MASK, true);
  }

  /** Write an unsigned little-endian value of 1, 2 or 4 bytes. */
  write(addr: number, size: 1 | 2 | 4, value: number): void {
    if (size === 4 && (addr & 3) === 0) {
      this.write32(addr, value);
      return;
    }
    this.check(addr, size);
    const off = addr & CHUNK_MASK;
    if (off + size <= CHUNK_SIZE) {
      const c = this.chunkFor(Math.floor(addr / CHUNK_SIZE), true)!;
      const d = this.dirty;
      if (d !== undefined) markPages(d, addr, size);
      if (size === 4) c.view.setUint32(off, value >>> 0, true);
      else if (size === 2) c.view.setUint16(off, value & 0xffff, true);
      else c.bytes[off] = value & 0xff;
      return;
    }
    let v = value >>> 0;
    for (let i = 0; i < size; i++) {
      this.write(addr + i, 1, v & 0xff);
      v >>>= 8;
    }
  }

  /** Aligned 32-bit write, the fast path. */
  write32(addr: number, value: number): void {
    if (!(addr >= 0 && addr + 4 <= this.size)) this.check(addr, 4);
    const c = this.chunkFor(Math.floor(addr / CHUNK_SIZE), true)!;
    const d = this.dirty;
    if (d !== undefined) {
      // Aligned: the word lies in one page.
      const p = Math.floor(addr / DIRTY_PAGE_SIZE);
      d[p >>> 5] |= 1 << (p & 31);
    }
    if ((addr & 3) === 0 && LITTLE_ENDIAN_HOST) c.words[(addr & CHUNK_MASK) >>> 2] = value >>> 0;
    else c.view.setUint32(addr & CHUNK_MASK, value >>> 0, true);
  }

  /** Read a 64-bit little-endian value. */
  read64(addr: number): bigint {
    const lo = this.read(addr, 4);
    const hi = this.read(addr + 4, 4);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  /** Write a 64-bit little-endian value. */
  write64(addr: number, value: bigint): void {
    const v = BigInt.asUintN(64, value);
    this.write(addr, 4, Number(v & 0xffff_ffffn));
    this.write(addr + 4, 4, Number(v >> 32n));
  }

  /**
   * Visit [addr, addr + len) chunk by chunk: `fn(chunkIndex, offsetInChunk, n, done)`; a return
   * of true stops the walk.
   */
  private spans(addr: number, len: number, fn: (index: number, off: number, n: number, done: number) => boolean | void): void {
    this.check(addr, len);
    let done = 0;
    while (done < len) {
      const a = addr + done;
      const off = a & CHUNK_MASK;
      const n = Math.min(len - done, CHUNK_SIZE - off);
      if (fn(Math.floor(a / CHUNK_SIZE), off, n, done) === true) return;
      done += n;
    }
  }

  /**
   * Offset of the first non-zero byte of [addr, addr + len), or -1 when all are zero. Untouched
   * chunks are skipped without reading, so scanning a large untouched range costs nothing.
   */
  firstNonZero(addr: number, len: number): number {
    let found = -1;
    this.spans(addr, len, (index, off, n, done) => {
      const c = this.chunks.get(index);
      if (!c) return false;
      const bytes = c.bytes;
      for (let i = off; i < off + n; i++) {
        if (bytes[i] !== 0) {
          found = done + i - off;
          return true;
        }
      }
      return false;
    });
    return found;
  }

  /** Copy `len` bytes out (untouched memory reads as zero). */
  readBytes(addr: number, len: number, out: Uint8Array = new Uint8Array(len)): Uint8Array {
    const off = addr & CHUNK_MASK; // a negative addr fails the range test below
    if (off + len <= CHUNK_SIZE && addr >= 0 && len >= 0 && addr + len <= this.size) {
      // Within one chunk (every DMA page and most copies): no span walk.
      const c = this.chunkFor(Math.floor(addr / CHUNK_SIZE), false);
      if (!c) out.fill(0, 0, len);
      else if (len <= SMALL_COPY) {
        // A few bytes (a DMA check's word): copied in place, no subarray view allocated.
        const bytes = c.bytes;
        for (let i = 0; i < len; i++) out[i] = bytes[off + i]!;
      } else out.set(c.bytes.subarray(off, off + len));
      return out;
    }
    this.spans(addr, len, (index, off, n, done) => {
      const c = this.chunkFor(index, false);
      if (c) out.set(c.bytes.subarray(off, off + n), done);
      else out.fill(0, done, done + n);
    });
    return out;
  }

  /** Copy bytes in. */
  writeBytes(addr: number, data: Uint8Array): void {
    const d = this.dirty;
    if (d !== undefined && data.length > 0) {
      this.check(addr, data.length);
      markPages(d, addr, data.length);
    }
    const off = addr & CHUNK_MASK;
    const len = data.length;
    if (off + len <= CHUNK_SIZE && addr >= 0 && addr + len <= this.size) {
      const bytes = this.chunkFor(Math.floor(addr / CHUNK_SIZE), true)!.bytes;
      // A few bytes (a DMA check's word) in place, as readBytes copies them.
      if (len <= SMALL_COPY) for (let i = 0; i < len; i++) bytes[off + i] = data[i]!;
      else bytes.set(data, off);
      return;
    }
    this.spans(addr, data.length, (index, off, n, done) => {
      this.chunkFor(index, true)!.bytes.set(data.subarray(done, done + n), off);
    });
  }

  /** Fill a range with a byte value (zero-filling untouched chunks allocates nothing). */
  fill(addr: number, len: number, byte = 0): void {
    const d = this.dirty;
    this.spans(addr, len, (index, off, n) => {
      const c = this.chunkFor(index, byte !== 0);
      if (!c) return;
      c.bytes.fill(byte, off, off + n);
      // An untouched chunk stays untouched (it reads zero already): nothing to log there.
      if (d !== undefined) markPages(d, index * CHUNK_SIZE + off, n);
    });
  }

  /** Whether a dirty log is running. */
  get dirtyLogging(): boolean {
    return this.dirty !== undefined;
  }

  /**
   * Start logging which 4 KiB pages are written (KVM_MEM_LOG_DIRTY_PAGES): from now on every
   * store — loads/stores, block copies, fills, DMA — sets its pages' bits. The log starts clean.
   * @throws Error when a log is already running (it has one reader: two would steal each other's bits)
   */
  startDirtyLog(): void {
    if (this.dirty) throw new Error('dirty log already running');
    this.dirty = new Uint32Array(Math.ceil(Math.ceil(this.size / DIRTY_PAGE_SIZE) / 32));
  }

  /** Stop logging and drop the bitmap. */
  stopDirtyLog(): void {
    this.dirty = undefined;
  }

  /**
   * The page numbers (address >> 12) written since the log started or since the last collect,
   * ascending, appended to `out`; the log is cleared (KVM_GET_DIRTY_LOG + clear).
   * @throws Error when no log is running
   */
  collectDirtyPages(out: number[] = []): number[] {
    const d = this.dirty;
    if (!d) throw new Error('no dirty log running');
    for (let w = 0; w < d.length; w++) {
      let bits = d[w]!;
      if (bits === 0) continue;
      d[w] = 0;
      while (bits !== 0) {
        const low = bits & -bits;
        out.push(w * 32 + (31 - Math.clz32(low)));
        bits ^= low;
      }
    }
    return out;
  }

  /**
   * Page numbers (address >> 12) of [addr, addr + len) that lie in touched chunks, ascending,
   * appended to `out`: the pages that can hold anything but zero (a migration's first round).
   */
  residentPages(addr: number, len: number, out: number[] = []): number[] {
    this.spans(addr, len, (index, off, n) => {
      if (!this.chunks.has(index)) return;
      const first = Math.floor((index * CHUNK_SIZE + off) / DIRTY_PAGE_SIZE);
      const last = Math.floor((index * CHUNK_SIZE + off + n - 1) / DIRTY_PAGE_SIZE);
      for (let p = first; p <= last; p++) out.push(p);
    });
    return out;
  }

  /**
   * Visit every allocated chunk in address order: `fn(address, bytes)` gets the chunk's first
   * address and its 64 KiB (a view: copy what you keep). What a snapshot or a migration's page
   * store hands over as guest RAM.
   */
  forEachChunk(fn: (address: number, bytes: Uint8Array) => void): void {
    for (const index of [...this.chunks.keys()].sort((a, b) => a - b)) fn(index * CHUNK_SIZE, this.chunks.get(index)!.bytes);
  }

  /**
   * Make `bytes` the chunk at the chunk-aligned `addr` instead of allocating one and copying
   * them in (a restore that owns a buffer of guest RAM): from now on every load and store of
   * that chunk uses those bytes, so the caller hands them over and must not use them again.
   * Done only where the chunk was never allocated and `bytes` is exactly one chunk, 4-byte
   * aligned (the word view needs it); otherwise nothing changes and the result is false (the
   * caller copies). A running dirty log sees the chunk's pages as written.
   */
  adoptChunk(addr: number, bytes: Uint8Array): boolean {
    if (addr % CHUNK_SIZE !== 0 || !this.contains(addr, CHUNK_SIZE) || bytes.length !== CHUNK_SIZE || bytes.byteOffset % 4 !== 0) return false;
    const index = addr / CHUNK_SIZE;
    if (this.chunks.has(index)) return false;
    // Absent chunks are never cached (chunkFor caches what it finds), so no cache entry changes.
    this.chunks.set(index, { bytes, view: new DataView(bytes.buffer, bytes.byteOffset, CHUNK_SIZE), words: new Uint32Array(bytes.buffer, bytes.byteOffset, CHUNK_SIZE / 4) });
    if (this.dirty !== undefined) markPages(this.dirty, addr, CHUNK_SIZE);
    return true;
  }

  /** Whether the 64 KiB chunk holding `addr` was ever allocated (written). */
  chunkAllocated(addr: number): boolean {
    return this.chunks.has(Math.floor(addr / CHUNK_SIZE));
  }
}

/** Set the dirty bits of every page [addr, addr + len) touches (len > 0). */
function markPages(d: Uint32Array, addr: number, len: number): void {
  const last = Math.floor((addr + len - 1) / DIRTY_PAGE_SIZE);
  for (let p = Math.floor(addr / DIRTY_PAGE_SIZE); p <= last; p++) d[p >>> 5] |= 1 << (p & 31);
}
