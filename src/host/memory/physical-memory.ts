/**
 * Host physical memory and its page allocator.
 *
 * Layout of the host PA space [0, ramBytes):
 * - a kernel zone at the bottom (1/16 of RAM): naturally aligned, physically contiguous
 *   allocations for the kernel's own structures (stream tables, queues, page tables);
 * - a hugepage zone at the top, handed out in aligned hugepage blocks;
 * - a page zone in between for ordinary anonymous memory, handed out *scattered* (every
 *   other page, alternating halves) so that virtually contiguous user memory is physically
 *   contiguous only when it is hugepage-backed — as on a real, fragmented host, which is what
 *   makes the HW-queue contiguity check meaningful.
 */

import { SparseMemory } from '../../kit/sparse-memory.js';
import { Errno, ErrnoError } from '../../uapi/errno.js';

/** Host RAM plus the allocators of its zones. */
export class PhysicalMemory {
  readonly mem: SparseMemory;
  private kernelNext: number;
  private readonly kernelEnd: number;
  private hugeNext: number;
  private readonly pageStart: number;
  private pageCursor = 0;
  private readonly freePages: number[] = [];
  private readonly freeHuge: number[] = [];

  constructor(
    readonly ramBytes: number,
    readonly pageSize: number,
    readonly hugepageSize: number,
  ) {
    this.mem = new SparseMemory(ramBytes);
    this.kernelNext = pageSize; // PA 0 is never handed out
    this.kernelEnd = Math.floor(ramBytes / 16 / hugepageSize) * hugepageSize || ramBytes / 16;
    this.hugeNext = Math.floor(ramBytes / hugepageSize) * hugepageSize;
    this.pageStart = this.kernelEnd;
  }

  /** Bytes of RAM the model actually holds (touched chunks). */
  get residentBytes(): number {
    return this.mem.residentBytes;
  }

  /**
   * A kernel allocation: `bytes` physically contiguous, aligned to `align` (default: the size
   * rounded up to a power of two, i.e. naturally aligned like dma_alloc_coherent rings).
   */
  allocKernel(bytes: number, align = 2 ** Math.ceil(Math.log2(Math.max(bytes, this.pageSize)))): number {
    const base = Math.ceil(this.kernelNext / align) * align;
    if (base + bytes > this.kernelEnd) throw new ErrnoError(Errno.ENOMEM, 'kernel zone exhausted');
    this.kernelNext = base + bytes;
    this.mem.fill(base, bytes, 0);
    return base;
  }

  /** One base page for anonymous memory (not contiguous with the previous one). */
  allocPage(): number {
    const reuse = this.freePages.pop();
    if (reuse !== undefined) return reuse;
    const zonePages = Math.floor((this.hugeNext - this.pageStart) / this.pageSize);
    const half = Math.floor(zonePages / 2);
    // Alternate between the two halves of the zone: consecutive allocations are far apart.
    const i = this.pageCursor++;
    const index = (i % 2) * half + Math.floor(i / 2);
    if (Math.floor(i / 2) >= half) throw new ErrnoError(Errno.ENOMEM, 'page zone exhausted');
    return this.pageStart + index * this.pageSize;
  }

  /** One hugepage (aligned to its size), from the top of RAM down. */
  allocHugepage(): number {
    const reuse = this.freeHuge.pop();
    if (reuse !== undefined) return reuse;
    const base = this.hugeNext - this.hugepageSize;
    if (base < this.pageStart + this.pageCursor * this.pageSize) throw new ErrnoError(Errno.ENOMEM, 'no free hugepage');
    this.hugeNext = base;
    return base;
  }

  /** Return a page or hugepage (its contents are scrubbed). */
  free(pa: number, size: number): void {
    this.mem.fill(pa, size, 0);
    if (size === this.hugepageSize && size !== this.pageSize) this.freeHuge.push(pa);
    else this.freePages.push(pa);
  }
}
