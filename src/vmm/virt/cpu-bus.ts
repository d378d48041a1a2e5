/**
 * The guest CPU's loads and stores as the machine takes them (the {@link GuestBus} of
 * `VirtMachine.guestPlatform()`). With KVM a guest load from RAM is a plain load through
 * stage 2: no VMM code runs. So a 32-bit access that falls in guest RAM goes straight to the
 * RAM backing (its own page TLB, see `UserMemoryOps`), counted as the address space counts a RAM
 * access; everything else (MMIO that traps, the mapped VINTF page0, holes) is dispatched by the
 * address space. Which addresses are plain RAM is read from the flattened view, again whenever
 * the memory tree changes, so a region placed over RAM takes its accesses back.
 *
 * The RAM-device range of the last direct access (the mapped VINTF page0: doorbells and CONS
 * polls) is kept the same way: an aligned 32-bit access inside it is counted and observed as the
 * address space's dispatch would (a direct access: modelled time, trace) and goes to the
 * region's ops without the dispatch's general checks, which the range passed when it was kept.
 */

import { ACCESS_DIRECT, ACCESS_OK, type AddressSpace, type FlatRange } from '../../kit/address-space.js';
import type { GuestBus } from '../../kit/guest-seam.js';
import { RAM_RULES, type MemoryRegion, type RegionOps } from '../../kit/memory-region.js';

/** The guest's loads and stores on one machine. */
export class CpuBus implements GuestBus {
  /** Topology version the RAM window below was read at (−1: not yet). */
  private epoch = -1;
  /** [ramStart, ramEnd): guest addresses served by `ram` alone (empty when RAM is not plain or is shadowed at its base). */
  private ramStart = 0;
  private ramEnd = 0;
  /** The RAM-device range of the last direct access (start > end: none), and the topology version it was found at. */
  private devStart = 1;
  private devEnd = 0;
  private devEpoch = -1;
  private devRange: FlatRange | undefined;

  /**
   * @param as      the machine's address space
   * @param ram     the guest RAM region (plain RAM, placed at `ramBase`)
   * @param ramOps  its ops (the VMM's view of the RAM mapping)
   * @param ramBase guest address of the region's offset 0
   * @param checkOpen throws once the machine is closed
   */
  constructor(
    private readonly as: AddressSpace,
    private readonly ram: MemoryRegion,
    private readonly ramOps: RegionOps,
    private readonly ramBase: number,
    private readonly checkOpen: () => void,
  ) {}

  read32(a: number): number {
    this.checkOpen();
    if (a >= this.ramStart && a + 4 <= this.ramEnd && this.epoch === this.as.root.topologyVersion) {
      // What AddressSpace.read32 does for plain RAM, with the RAM ops called directly.
      const as = this.as;
      as.lastFlags = ACCESS_OK;
      as.stats.ram++;
      this.ram.stats.reads++;
      return this.ramOps.read(a - this.ramBase, 4);
    }
    return this.readOther(a);
  }

  /** A load outside plain RAM (kept apart so that {@link read32} stays small enough to inline). */
  private readOther(a: number): number {
    const d = this.devRange;
    if (d !== undefined && a >= this.devStart && a + 4 <= this.devEnd && (a & 3) === 0 && this.devEpoch === this.as.root.topologyVersion) {
      // What AddressSpace.read32 does for an aligned word in a RAM-device region.
      const as = this.as;
      const region = d.region;
      region.stats.reads++;
      as.stats.direct++;
      as.lastFlags = ACCESS_DIRECT;
      const obs = as.observer;
      if (obs === undefined) return region.ops!.read(a - d.regionBase, 4);
      obs.enter(ACCESS_DIRECT, a, false);
      const value = region.ops!.read(a - d.regionBase, 4);
      obs.leave(ACCESS_DIRECT);
      return value;
    }
    this.refresh();
    const value = this.as.read32(a);
    if (this.as.lastFlags === ACCESS_DIRECT) this.keepDevice(a);
    return value;
  }

  write32(a: number, v: number): void {
    this.checkOpen();
    if (a >= this.ramStart && a + 4 <= this.ramEnd && this.epoch === this.as.root.topologyVersion) {
      this.as.stats.ram++;
      this.ram.stats.writes++;
      this.ramOps.write(a - this.ramBase, 4, v >>> 0);
      return;
    }
    this.writeOther(a, v);
  }

  /** A store outside plain RAM (see {@link readOther}). */
  private writeOther(a: number, v: number): void {
    const d = this.devRange;
    if (d !== undefined && a >= this.devStart && a + 4 <= this.devEnd && (a & 3) === 0 && this.devEpoch === this.as.root.topologyVersion) {
      // What AddressSpace.write32 does for an aligned word in a RAM-device region.
      const as = this.as;
      const region = d.region;
      region.stats.writes++;
      as.stats.direct++;
      const obs = as.observer;
      obs?.enter(ACCESS_DIRECT, a, true);
      region.ops!.write(a - d.regionBase, 4, v >>> 0);
      obs?.leave(ACCESS_DIRECT);
      return;
    }
    this.refresh();
    if (this.as.write32(a, v) === ACCESS_DIRECT) this.keepDevice(a);
  }

  read64(a: number): bigint {
    this.checkOpen();
    return this.as.read(a, 8).value;
  }

  write64(a: number, v: bigint): void {
    this.checkOpen();
    this.as.write(a, 8, v);
  }

  /**
   * Keep the RAM-device range holding `a` (just accessed directly, so valid for an aligned word)
   * when aligned words anywhere in it are valid accesses: size 4 allowed, the region's base
   * word-aligned (so an aligned address is an aligned offset).
   */
  private keepDevice(a: number): void {
    const r = this.as.rangeAt(a);
    this.devRange = undefined;
    this.devStart = 1;
    this.devEnd = 0;
    if (r === undefined) return;
    const region = r.region;
    if (region.kind !== 'ram-device' || (region.sizeMask & 4) === 0 || (r.regionBase & 3) !== 0) return;
    this.devRange = r;
    this.devStart = r.start;
    this.devEnd = r.end;
    this.devEpoch = this.as.root.topologyVersion;
  }

  /** Re-read the plain-RAM window after the memory tree changed. */
  private refresh(): void {
    const version = this.as.root.topologyVersion;
    if (version === this.epoch) return;
    this.epoch = version;
    this.ramStart = 0;
    this.ramEnd = 0;
    const region = this.ram;
    if (region.kind !== 'ram' || region.rules !== RAM_RULES) return;
    for (const r of this.as.flatView()) {
      if (r.region === region && r.regionBase === this.ramBase && r.start <= this.ramBase && this.ramBase < r.end) {
        this.ramStart = r.start;
        this.ramEnd = r.end;
        return;
      }
    }
  }
}
