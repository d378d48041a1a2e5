/**
 * Host physical memory and its page allocators.
 *
 * Layout of the host PA space [0, ramBytes):
 * - a kernel zone at the bottom (1/16 of RAM): a buddy allocator of naturally aligned,
 *   physically contiguous blocks for the kernel's own structures (stream tables, queues, page
 *   tables), each returned with {@link PhysicalMemory.freeKernel} when its object goes;
 * - a user zone above it, cut into blocks of one hugepage (or {@link PAGE_BLOCK_PAGES} base
 *   pages without hugepages). A block is free, one hugepage (taken from the top), or a page
 *   block that hands out base pages (page blocks are taken from the bottom). A page block hands
 *   its pages out *scattered* (even pages first, then odd), so that virtually contiguous user
 *   memory is physically contiguous only when it is hugepage-backed — as on a real, fragmented
 *   host, which is what makes the HW-queue contiguity check meaningful. A page block whose
 *   pages are all free again becomes a free block (so it can become a hugepage).
 */

import { SparseMemory } from '../../kit/sparse-memory.js';
import { Errno, ErrnoError } from '../../uapi/errno.js';

/** Base pages per user-zone block when the host has no hugepages. */
const PAGE_BLOCK_PAGES = 512;

/** State of a user-zone block. */
const BLOCK_FREE = 0;
const BLOCK_HUGE = 1;
const BLOCK_PAGES = 2;

/** Base pages handed out by one page block. */
class PageBlock {
  /** Next never-used page, in the scattered order. */
  cursor = 0;
  /** Pages freed since, reused first. */
  readonly freed: number[] = [];
  used = 0;
  constructor(
    readonly base: number,
    readonly pages: number,
  ) {}
}

/** Host RAM plus the allocators of its zones. */
export class PhysicalMemory {
  readonly mem: SparseMemory;
  /** Kernel zone: free block addresses per order (block size = pageSize << order). */
  private readonly kernelFree: Set<number>[] = [];
  private readonly kernelEnd: number;
  private kernelUsed = 0;
  /** User zone. */
  private readonly userStart: number;
  private readonly blockSize: number;
  private readonly blockState: Uint8Array;
  private readonly pageBlocks = new Map<number, PageBlock>();
  /** Page blocks with a page to give; pages come from the last one. */
  private readonly partialBlocks: number[] = [];
  private userUsed = 0;

  constructor(
    readonly ramBytes: number,
    readonly pageSize: number,
    readonly hugepageSize: number,
  ) {
    this.mem = new SparseMemory(ramBytes);
    this.kernelEnd = Math.floor(ramBytes / 16 / hugepageSize) * hugepageSize || ramBytes / 16;
    // The kernel zone as maximal aligned buddy blocks; PA 0 is never handed out.
    let a = pageSize;
    while (a < this.kernelEnd) {
      let order = 0;
      while (a % (pageSize * 2 ** (order + 1)) === 0 && a + pageSize * 2 ** (order + 1) <= this.kernelEnd) order++;
      this.kernelSet(order).add(a);
      a += pageSize * 2 ** order;
    }
    this.userStart = this.kernelEnd;
    this.blockSize = hugepageSize > pageSize ? hugepageSize : pageSize * PAGE_BLOCK_PAGES;
    this.blockState = new Uint8Array(Math.floor((ramBytes - this.userStart) / this.blockSize));
  }

  /** Bytes of RAM the model actually holds (touched chunks). */
  get residentBytes(): number {
    return this.mem.residentBytes;
  }

  /** Bytes of the kernel zone allocated (rounded up to whole buddy blocks). */
  get kernelBytesInUse(): number {
    return this.kernelUsed;
  }

  /** Bytes of the user zone allocated (pages and hugepages). */
  get userBytesInUse(): number {
    return this.userUsed;
  }

  /**
   * A kernel allocation: `bytes` physically contiguous, aligned to `align` (default: the size
   * rounded up to a power of two, i.e. naturally aligned like dma_alloc_coherent rings),
   * zeroed. Release it with {@link freeKernel} and the same `bytes` and `align`.
   */
  allocKernel(bytes: number, align = 0): number {
    const order = this.kernelOrder(bytes, align);
    let o = order;
    while (o < this.kernelFree.length && this.kernelSet(o).size === 0) o++;
    if (o >= this.kernelFree.length) throw new ErrnoError(Errno.ENOMEM, 'kernel zone exhausted');
    const set = this.kernelSet(o);
    const base = set.values().next().value as number;
    set.delete(base);
    // Split down to the order asked for, freeing the upper halves.
    while (o > order) {
      o--;
      this.kernelSet(o).add(base + this.pageSize * 2 ** o);
    }
    this.kernelUsed += this.pageSize * 2 ** order;
    this.mem.fill(base, bytes, 0);
    return base;
  }

  /** Return a kernel allocation (merged with its free buddies). */
  freeKernel(pa: number, bytes: number, align = 0): void {
    let order = this.kernelOrder(bytes, align);
    this.kernelUsed -= this.pageSize * 2 ** order;
    let base = pa;
    for (;;) {
      const size = this.pageSize * 2 ** order;
      const buddy = base % (size * 2) === 0 ? base + size : base - size;
      const set = this.kernelSet(order);
      if (!set.delete(buddy)) break;
      base = Math.min(base, buddy);
      order++;
    }
    this.kernelSet(order).add(base);
  }

  /**
   * Whether `bytes` of hugepages (or of base pages) can be allocated now: what a hugetlb
   * reservation checks, and the model's overcommit check for anonymous memory.
   */
  canAllocate(bytes: number, hugepages: boolean): boolean {
    if (!hugepages) return bytes <= this.blockState.length * this.blockSize - this.userUsed;
    let free = 0;
    for (let i = 0; i < this.blockState.length; i++) if (this.blockState[i] === BLOCK_FREE) free++;
    return bytes <= free * this.blockSize;
  }

  /** One base page for anonymous memory (not contiguous with the previous one). */
  allocPage(): number {
    let index = this.partialBlocks[this.partialBlocks.length - 1];
    if (index === undefined) {
      index = this.takeBlock(false);
      this.blockState[index] = BLOCK_PAGES;
      this.pageBlocks.set(index, new PageBlock(this.blockBase(index), this.blockSize / this.pageSize));
      this.partialBlocks.push(index);
    }
    const b = this.pageBlocks.get(index)!;
    let pa = b.freed.pop();
    if (pa === undefined) {
      // Even pages first, then odd: consecutive allocations are never adjacent.
      const half = Math.ceil(b.pages / 2);
      const i = b.cursor++;
      pa = b.base + (i < half ? 2 * i : 2 * (i - half) + 1) * this.pageSize;
    }
    b.used++;
    if (b.used === b.pages) this.partialBlocks.pop();
    this.userUsed += this.pageSize;
    return pa;
  }

  /** One hugepage (aligned to its size), from the top of RAM down. */
  allocHugepage(): number {
    const index = this.takeBlock(true);
    this.blockState[index] = BLOCK_HUGE;
    this.userUsed += this.hugepageSize;
    return this.blockBase(index);
  }

  /** Return a page or hugepage (its contents are scrubbed). */
  free(pa: number, size: number): void {
    this.mem.fill(pa, size, 0);
    this.userUsed -= size;
    const index = Math.floor((pa - this.userStart) / this.blockSize);
    if (this.blockState[index] === BLOCK_HUGE) {
      this.blockState[index] = BLOCK_FREE;
      return;
    }
    const b = this.pageBlocks.get(index)!;
    if (b.used === b.pages) this.partialBlocks.push(index);
    b.used--;
    if (b.used > 0) {
      b.freed.push(pa);
      return;
    }
    // Every page back: the block is free again (and may become a hugepage).
    this.pageBlocks.delete(index);
    this.partialBlocks.splice(this.partialBlocks.indexOf(index), 1);
    this.blockState[index] = BLOCK_FREE;
  }

  private blockBase(index: number): number {
    return this.userStart + index * this.blockSize;
  }

  /** A free user-zone block: the highest for a hugepage, the lowest for a page block. */
  private takeBlock(fromTop: boolean): number {
    const n = this.blockState.length;
    for (let k = 0; k < n; k++) {
      const i = fromTop ? n - 1 - k : k;
      if (this.blockState[i] === BLOCK_FREE) return i;
    }
    throw new ErrnoError(Errno.ENOMEM, fromTop ? 'no free hugepage' : 'page zone exhausted');
  }

  private kernelOrder(bytes: number, align: number): number {
    return Math.max(0, Math.ceil(Math.log2(Math.max(bytes, align, this.pageSize) / this.pageSize)));
  }

  private kernelSet(order: number): Set<number> {
    while (this.kernelFree.length <= order) this.kernelFree.push(new Set());
    return this.kernelFree[order]!;
  }
}
