/**
 * An address space: the flattened view of a memory-region tree, dispatching guest-physical
 * accesses to regions. Invalid sizes/alignment are rejected the way QEMU's memory core does
 * (the device is not called; a guest error is logged), and every access reports whether it
 * trapped (an MMIO access, i.e. a VM exit) or went directly to memory or a RAM-device.
 */

import { hex } from './bits.js';
import type { ModelLog } from './log.js';
import { RAM_RULES, type AccessSize, type MemoryRegion } from './memory-region.js';

/** Access outcome flags (bitwise OR). */
export const ACCESS_OK = 0;
/** The access was handled by the VMM (a VM exit). */
export const ACCESS_TRAPPED = 1;
/** Rejected: size or alignment not valid for the region (device not called). */
export const ACCESS_INVALID = 2;
/** Nothing is mapped at the address. */
export const ACCESS_UNASSIGNED = 4;

/** The access reached a RAM-device directly (no exit: e.g. a mapped VINTF page0). */
export const ACCESS_DIRECT = 8;

/**
 * Told around every access that trapped or reached a RAM-device directly (not plain RAM):
 * where the platform charges modelled time and records the trace (platform/timeline.ts).
 * One object for the whole run: the hot path makes two method calls, no allocation.
 */
export interface AccessObserver {
  /** Before the access takes effect; `flags` has {@link ACCESS_TRAPPED} or {@link ACCESS_DIRECT}. */
  enter(flags: number, addr: number, write: boolean): void;
  /** After it took effect (or was refused). */
  leave(flags: number): void;
}

/** Flags an {@link AccessObserver} is told about. */
const OBSERVED = ACCESS_TRAPPED | ACCESS_DIRECT;

/** A contiguous piece of the flattened view. */
export interface FlatRange {
  readonly start: number;
  /** Exclusive end. */
  readonly end: number;
  readonly region: MemoryRegion;
  /** Guest address of offset 0 of `region`. */
  readonly regionBase: number;
}

/** Result of an API-edge access. */
export interface AccessResult {
  /** Value read (0n for writes and failed reads). */
  readonly value: bigint;
  /** Whether the access was a VM exit (handled by emulation). */
  readonly trapped: boolean;
  /** Whether the access completed (false: invalid or unassigned; a guest error was logged). */
  readonly ok: boolean;
  /** Name of the region that took it, if any. */
  readonly region: string | undefined;
}

/** Counters of one address space. */
export interface AddressSpaceStats {
  /** Accesses handled by emulation (MMIO + unassigned + invalid MMIO): VM exits. */
  exits: number;
  /** Accesses that reached a RAM-device directly (e.g. mapped VINTF page0). */
  direct: number;
  /** Accesses to RAM. */
  ram: number;
  /** Accesses rejected for size/alignment. */
  invalid: number;
  /** Accesses to unmapped addresses. */
  unassigned: number;
}

/** Dispatches accesses over the flattened tree rooted at `root`. */
export class AddressSpace {
  readonly stats: AddressSpaceStats = { exits: 0, direct: 0, ram: 0, invalid: 0, unassigned: 0 };
  /** Flags of the last {@link read32} (hot-path reads return only the value). */
  lastFlags = ACCESS_OK;
  private ranges: FlatRange[] = [];
  private starts = new Float64Array(0);
  private epoch = -1;
  private hit: FlatRange | undefined;
  /** Told about exits and direct accesses (modelled time, trace); none by default. */
  observer: AccessObserver | undefined;

  constructor(
    readonly name: string,
    readonly root: MemoryRegion,
    private readonly log: ModelLog,
  ) {}

  /** The flattened view, sorted by address. */
  flatView(): readonly FlatRange[] {
    this.sync();
    return this.ranges;
  }

  /** Which region (and offset in it) serves `addr`, if any. */
  resolve(addr: number): { region: MemoryRegion; offset: number } | undefined {
    const r = this.lookup(addr);
    return r ? { region: r.region, offset: addr - r.regionBase } : undefined;
  }

  /** Read `size` bytes at `addr` (API edge: bigint value plus outcome). */
  read(addr: number, size: AccessSize): AccessResult {
    const r = this.lookup(addr);
    const flags = this.admit(r, addr, size, false);
    const obs = flags & OBSERVED ? this.observer : undefined;
    obs?.enter(flags, addr, false);
    if (flags & (ACCESS_INVALID | ACCESS_UNASSIGNED)) {
      obs?.leave(flags);
      return result(0n, flags, r);
    }
    const off = addr - r!.regionBase;
    const ops = r!.region.ops!;
    const value = size === 8 ? ops.read64(off) : BigInt(ops.read(off, size));
    obs?.leave(flags);
    return result(value, flags, r);
  }

  /** Write `size` bytes at `addr` (API edge). */
  write(addr: number, size: AccessSize, value: bigint | number): AccessResult {
    const r = this.lookup(addr);
    const flags = this.admit(r, addr, size, true);
    const obs = flags & OBSERVED ? this.observer : undefined;
    obs?.enter(flags, addr, true);
    if (!(flags & (ACCESS_INVALID | ACCESS_UNASSIGNED))) {
      const off = addr - r!.regionBase;
      const ops = r!.region.ops!;
      if (size === 8) ops.write64(off, BigInt.asUintN(64, BigInt(value)));
      else ops.write(off, size, Number(BigInt.asUintN(size * 8, BigInt(value))));
    }
    obs?.leave(flags);
    return result(0n, flags, r);
  }

  /** Hot-path 32-bit read; outcome flags are left in {@link lastFlags}. */
  read32(addr: number): number {
    const r = this.lookup(addr);
    if (r !== undefined && r.region.kind === 'ram' && r.region.rules === RAM_RULES && addr + 4 <= r.end) {
      // Plain RAM (any size, any alignment): what admit would decide, without its checks.
      this.lastFlags = ACCESS_OK;
      this.stats.ram++;
      r.region.stats.reads++;
      return r.region.ops!.read(addr - r.regionBase, 4);
    }
    const flags = this.admit(r, addr, 4, false);
    this.lastFlags = flags;
    const obs = flags & OBSERVED ? this.observer : undefined;
    if (obs === undefined) return flags & (ACCESS_INVALID | ACCESS_UNASSIGNED) ? 0 : r!.region.ops!.read(addr - r!.regionBase, 4);
    obs.enter(flags, addr, false);
    const value = flags & (ACCESS_INVALID | ACCESS_UNASSIGNED) ? 0 : r!.region.ops!.read(addr - r!.regionBase, 4);
    obs.leave(flags);
    return value;
  }

  /** Hot-path 32-bit write; returns the outcome flags. */
  write32(addr: number, value: number): number {
    const r = this.lookup(addr);
    if (r !== undefined && r.region.kind === 'ram' && r.region.rules === RAM_RULES && addr + 4 <= r.end) {
      this.stats.ram++;
      r.region.stats.writes++;
      r.region.ops!.write(addr - r.regionBase, 4, value >>> 0);
      return ACCESS_OK;
    }
    const flags = this.admit(r, addr, 4, true);
    const obs = flags & OBSERVED ? this.observer : undefined;
    obs?.enter(flags, addr, true);
    if (!(flags & (ACCESS_INVALID | ACCESS_UNASSIGNED))) r!.region.ops!.write(addr - r!.regionBase, 4, value >>> 0);
    obs?.leave(flags);
    return flags;
  }

  /** Validate an access, count it, and log the rejection if it is invalid. */
  private admit(r: FlatRange | undefined, addr: number, size: number, write: boolean): number {
    if (!r) {
      this.stats.unassigned++;
      this.stats.exits++;
      this.log.guestError(
        'memory',
        `Unassigned ${write ? 'write' : 'read'} at addr ${hex(addr, 16)}, size ${size}, address space '${this.name}'`,
      );
      return ACCESS_UNASSIGNED | ACCESS_TRAPPED;
    }
    const region = r.region;
    const trapped = region.kind === 'mmio' ? ACCESS_TRAPPED : ACCESS_OK;
    const off = addr - r.regionBase;
    let reason: string | undefined;
    if ((region.sizeMask & size) === 0) {
      const sizes = region.rules.sizes;
      reason = `invalid size (min:${Math.min(...sizes)} max:${Math.max(...sizes)})`;
    } else if (!region.rules.unaligned && off % size !== 0) {
      reason = 'unaligned';
    } else if (addr + size > r.end) {
      reason = 'crosses the end of the region';
    }
    if (trapped) this.stats.exits++;
    if (reason !== undefined) {
      this.stats.invalid++;
      this.log.guestError(
        'memory',
        `Invalid ${write ? 'write' : 'read'} at addr ${hex(addr, 16)}, size ${size}, region '${region.name}', reason: ${reason}`,
      );
      return ACCESS_INVALID | trapped;
    }
    if (write) region.stats.writes++;
    else region.stats.reads++;
    if (region.kind === 'ram') this.stats.ram++;
    else if (region.kind === 'ram-device') {
      this.stats.direct++;
      return ACCESS_DIRECT;
    }
    return trapped;
  }

  /** The flat range holding `addr` (the one every access at `addr` dispatches through), or undefined. */
  rangeAt(addr: number): FlatRange | undefined {
    return this.lookup(addr);
  }

  private lookup(addr: number): FlatRange | undefined {
    if (this.epoch !== this.root.topologyVersion) this.sync();
    const h = this.hit;
    if (h && addr >= h.start && addr < h.end) return h;
    const s = this.starts;
    let lo = 0;
    let hi = s.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (s[mid]! <= addr) lo = mid + 1;
      else hi = mid - 1;
    }
    const r = hi >= 0 ? this.ranges[hi] : undefined;
    if (r && addr < r.end) {
      this.hit = r;
      return r;
    }
    return undefined;
  }

  private sync(): void {
    const epoch = this.root.topologyVersion;
    if (epoch === this.epoch) return;
    const out: FlatRange[] = [];
    render(this.root, 0, 0, this.root.size, out);
    this.ranges = out;
    this.starts = Float64Array.from(out, (r) => r.start);
    this.epoch = epoch;
    this.hit = undefined;
  }
}

function result(value: bigint, flags: number, r: FlatRange | undefined): AccessResult {
  return {
    value,
    trapped: (flags & ACCESS_TRAPPED) !== 0,
    ok: (flags & (ACCESS_INVALID | ACCESS_UNASSIGNED)) === 0,
    region: r?.region.name,
  };
}

/**
 * Paint `region` (placed at `base`, clipped to [clipStart, clipEnd)) into `out`, which stays
 * sorted by start. Subregions are painted first in priority order, so they own their range;
 * the region's own ops then fill the remaining holes (QEMU's render order).
 */
function render(region: MemoryRegion, base: number, clipStart: number, clipEnd: number, out: FlatRange[]): void {
  if (!region.enabled) return;
  const s = Math.max(base, clipStart);
  const e = Math.min(base + region.size, clipEnd);
  if (s >= e) return;
  for (const sub of region.subregions) render(sub.region, base + sub.offset, s, e, out);
  if (region.kind === 'container') return;
  // Fill the gaps of [s, e) not yet covered.
  let cursor = s;
  let i = 0;
  while (i < out.length && out[i]!.end <= cursor) i++;
  while (cursor < e) {
    const next = out[i];
    if (next && next.start <= cursor) {
      cursor = next.end;
      i++;
      continue;
    }
    const gapEnd = next ? Math.min(next.start, e) : e;
    if (gapEnd > cursor) {
      out.splice(i, 0, { start: cursor, end: gapEnd, region, regionBase: base });
      i++;
    }
    cursor = gapEnd;
  }
}
