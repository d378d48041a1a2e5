/**
 * The guest CPU's loads and stores as the machine takes them (the {@link GuestBus} of
 * `VirtMachine.guestPlatform()`). With KVM a guest load from RAM is a plain load through
 * stage 2: no VMM code runs. So a 32-bit access that falls in guest RAM goes straight to the
 * RAM backing (its own page TLB, see `UserMemoryOps`), counted as the address space counts a RAM
 * access; everything else (MMIO that traps, the mapped VINTF page0, holes) is dispatched by the
 * address space. Which addresses are plain RAM is read from the flattened view, again whenever
 * the memory tree changes, so a region placed over RAM takes its accesses back.
 */

import { ACCESS_OK, type AddressSpace } from '../../kit/address-space.js';
import type { GuestBus } from '../../kit/guest-seam.js';
import { RAM_RULES, type MemoryRegion, type RegionOps } from '../../kit/memory-region.js';

/** The guest's loads and stores on one machine. */
export class CpuBus implements GuestBus {
  /** Topology version the RAM window below was read at (−1: not yet). */
  private epoch = -1;
  /** [ramStart, ramEnd): guest addresses served by `ram` alone (empty when RAM is not plain or is shadowed at its base). */
  private ramStart = 0;
  private ramEnd = 0;

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
    this.refresh();
    return this.as.read32(a);
  }

  write32(a: number, v: number): void {
    this.checkOpen();
    if (a >= this.ramStart && a + 4 <= this.ramEnd && this.epoch === this.as.root.topologyVersion) {
      this.as.stats.ram++;
      this.ram.stats.writes++;
      this.ramOps.write(a - this.ramBase, 4, v >>> 0);
      return;
    }
    this.refresh();
    this.as.write32(a, v);
  }

  read64(a: number): bigint {
    this.checkOpen();
    return this.as.read(a, 8).value;
  }

  write64(a: number, v: bigint): void {
    this.checkOpen();
    this.as.write(a, 8, v);
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
