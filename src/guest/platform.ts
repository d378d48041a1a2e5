/**
 * What the guest driver model sees of its machine: loads and stores to guest-physical
 * addresses (MMIO traps or RAM, decided by the machine), interrupt lines, time, and a simple
 * allocator for its own memory (rings, tables, buffers), as a kernel's page allocator would be.
 */

import type { VirtualClock } from '../kit/clock.js';

export type { GuestBus, GuestPlatform } from '../kit/guest-seam.js';

/** The guest's page allocator has no room for a request (a kernel would fail the allocation). */
export class GuestOutOfMemory extends Error {
  constructor(readonly bytes: number) {
    super(`guest out of memory allocating ${bytes} bytes`);
    this.name = 'GuestOutOfMemory';
  }
}

/** A bump allocator with natural alignment over a guest RAM range (the guest's page allocator). */
export class GuestAllocator {
  private next: number;
  constructor(
    private readonly base: number,
    private readonly size: number,
  ) {
    this.next = base;
  }

  /** `bytes` of zeroed memory aligned to `align` (default: size rounded to a power of two, min 4 KiB). */
  alloc(bytes: number, align = Math.max(4096, 2 ** Math.ceil(Math.log2(bytes)))): number {
    const at = Math.ceil(this.next / align) * align;
    if (at + bytes > this.base + this.size) throw new GuestOutOfMemory(bytes);
    this.next = at + bytes;
    return at;
  }

  /** The allocator's cursor (the kernel memory it stands for is in guest RAM). */
  save(): number {
    return this.next;
  }

  /** Take a saved cursor back. */
  restore(next: number): void {
    if (!(next >= this.base && next <= this.base + this.size)) throw new RangeError(`guest allocator cursor 0x${next.toString(16)} outside its range`);
    this.next = next;
  }

  /** Bytes handed out so far. */
  get used(): number {
    return this.next - this.base;
  }

  /** Bytes still free (before alignment). */
  get free(): number {
    return Math.max(0, this.base + this.size - this.next);
  }
}

/** Poll `cond` every microsecond for up to one second of model time (readl_poll_timeout). */
export function pollTimeout(clock: VirtualClock, cond: () => boolean): boolean {
  return clock.poll(cond, 1000, 1_000_000_000);
}
