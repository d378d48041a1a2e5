/**
 * Memory regions, after QEMU's memory API: a tree of regions (containers, trapped MMIO,
 * guest RAM, RAM-device) placed at offsets with priorities. An {@link AddressSpace} flattens
 * the tree and dispatches guest-physical accesses.
 */

import type { SparseMemory } from './sparse-memory.js';

/** Access sizes in bytes. */
export type AccessSize = 1 | 2 | 4 | 8;

/**
 * What a region is, which decides whether a guest access traps:
 * - `mmio`: emulated by the VMM — every access is a VM exit.
 * - `ram`: guest memory — direct, no exit.
 * - `ram-device`: memory of another model (e.g. a host device page mapped into the guest) —
 *   direct, no exit, but the access reaches that model.
 * - `container`: holds subregions only.
 */
export type RegionKind = 'container' | 'mmio' | 'ram' | 'ram-device';

/**
 * Device-side handlers of a region. 1-, 2- and 4-byte accesses use numbers; 8-byte accesses
 * use bigint (64-bit convention, see bits.ts).
 */
export interface RegionOps {
  read(offset: number, size: 1 | 2 | 4): number;
  write(offset: number, size: 1 | 2 | 4, value: number): void;
  read64(offset: number): bigint;
  write64(offset: number, value: bigint): void;
}

/** Valid accesses of a region, as QEMU's `MemoryRegionOps.valid`. */
export interface AccessRules {
  /** Allowed access sizes. */
  readonly sizes: readonly AccessSize[];
  /** Whether accesses not aligned to their size are allowed. */
  readonly unaligned: boolean;
}

/** Default rules: MMIO takes aligned 4/8-byte accesses, memory takes anything. */
export const MMIO_RULES: AccessRules = { sizes: [4, 8], unaligned: false };
export const RAM_RULES: AccessRules = { sizes: [1, 2, 4, 8], unaligned: true };

/** A subregion placement. */
export interface Subregion {
  readonly offset: number;
  readonly region: MemoryRegion;
  readonly priority: number;
  /** Insertion order in its container, to break priority ties (the newer wins, as in QEMU). */
  readonly seq: number;
}

/** Per-region access counters. */
export interface RegionStats {
  reads: number;
  writes: number;
}

/** A node of the memory tree. */
export class MemoryRegion {
  private readonly subs: Subregion[] = [];
  private isEnabled = true;
  /** Containers this region is placed in (changes below propagate up to their address spaces). */
  private readonly containers: MemoryRegion[] = [];
  /** Next insertion sequence number among this container's subregions. */
  private nextSeq = 0;
  private version = 0;
  /** Bitmask of allowed sizes (bit n set = size n allowed). */
  readonly sizeMask: number;
  readonly stats: RegionStats = { reads: 0, writes: 0 };

  /**
   * @param name      name shown in logs and `info mtree`-style dumps
   * @param size      byte size
   * @param kind      see {@link RegionKind}
   * @param ops       handlers (absent for containers)
   * @param rules     valid access sizes/alignment
   * @param skipIommuMap for RAM-device regions: the VMM must not map it into the IOMMU
   *                  (QEMU's `ram_device` skip flag); recorded for the machine to honour
   */
  constructor(
    readonly name: string,
    readonly size: number,
    readonly kind: RegionKind,
    readonly ops: RegionOps | undefined,
    readonly rules: AccessRules,
    readonly skipIommuMap = false,
  ) {
    if (!(size > 0) || !Number.isSafeInteger(size)) throw new RangeError(`region ${name}: bad size ${size}`);
    if (kind !== 'container' && !ops) throw new Error(`region ${name}: ${kind} region needs ops`);
    let mask = 0;
    for (const s of rules.sizes) mask |= s;
    this.sizeMask = mask;
  }

  /** A trapped MMIO region. */
  static mmio(name: string, size: number, ops: RegionOps, rules: AccessRules = MMIO_RULES): MemoryRegion {
    return new MemoryRegion(name, size, 'mmio', ops, rules);
  }

  /** A RAM region backed by `memory` starting at `memoryOffset`. */
  static ram(name: string, size: number, memory: SparseMemory, memoryOffset = 0): MemoryRegion {
    return new MemoryRegion(name, size, 'ram', new MemoryOps(memory, memoryOffset), RAM_RULES);
  }

  /** A RAM-device region: direct (untrapped) access to another model's memory or registers. */
  static ramDevice(
    name: string,
    size: number,
    ops: RegionOps,
    opts: { skipIommuMap?: boolean; rules?: AccessRules } = {},
  ): MemoryRegion {
    return new MemoryRegion(name, size, 'ram-device', ops, opts.rules ?? RAM_RULES, opts.skipIommuMap ?? false);
  }

  /** A pure container. */
  static container(name: string, size: number): MemoryRegion {
    return new MemoryRegion(name, size, 'container', undefined, RAM_RULES);
  }

  /**
   * Bumped on every change of the tree below (and including) this region: placement, removal,
   * enable/disable. An address space re-flattens when its root's version moves.
   */
  get topologyVersion(): number {
    return this.version;
  }

  private topologyChanged(): void {
    this.version++;
    for (const c of this.containers) c.topologyChanged();
  }

  /** Whether `region` is this region or lies below it. */
  private contains(region: MemoryRegion): boolean {
    return region === this || this.subs.some((s) => s.region.contains(region));
  }

  /** Whether the region takes part in dispatch. */
  get enabled(): boolean {
    return this.isEnabled;
  }

  /** Enable/disable the region (a disabled region is invisible; what it shadowed shows). */
  setEnabled(on: boolean): void {
    if (on !== this.isEnabled) {
      this.isEnabled = on;
      this.topologyChanged();
    }
  }

  /** Subregions, highest priority first (newest first among equals). */
  get subregions(): readonly Subregion[] {
    return this.subs;
  }

  /**
   * Place `region` at `offset`. Subregions shadow the parent's own ops; among overlapping
   * siblings the higher `priority` wins.
   */
  addSubregion(offset: number, region: MemoryRegion, priority = 0): void {
    if (offset < 0 || offset + region.size > this.size) {
      throw new RangeError(`subregion ${region.name} at 0x${offset.toString(16)} does not fit in ${this.name}`);
    }
    if (this.subs.some((s) => s.region === region)) throw new Error(`${region.name} is already in ${this.name}`);
    if (region.contains(this)) throw new Error(`${region.name} contains ${this.name}: placing it there would make a loop`);
    this.subs.push({ offset, region, priority, seq: this.nextSeq++ });
    this.subs.sort((a, b) => b.priority - a.priority || b.seq - a.seq);
    region.containers.push(this);
    this.topologyChanged();
  }

  /** Remove a subregion. */
  removeSubregion(region: MemoryRegion): void {
    const i = this.subs.findIndex((s) => s.region === region);
    if (i < 0) throw new Error(`${region.name} is not in ${this.name}`);
    this.subs.splice(i, 1);
    region.containers.splice(region.containers.indexOf(this), 1);
    this.topologyChanged();
  }

  /** Whether `region` is a direct subregion. */
  hasSubregion(region: MemoryRegion): boolean {
    return this.subs.some((s) => s.region === region);
  }
}

/** Region ops over sparse memory (RAM, or a RAM-device backed by a plain page). */
export class MemoryOps implements RegionOps {
  constructor(
    readonly memory: SparseMemory,
    readonly base = 0,
  ) {}
  read(offset: number, size: 1 | 2 | 4): number {
    return this.memory.read(this.base + offset, size);
  }
  write(offset: number, size: 1 | 2 | 4, value: number): void {
    this.memory.write(this.base + offset, size, value);
  }
  read64(offset: number): bigint {
    return this.memory.read64(this.base + offset);
  }
  write64(offset: number, value: bigint): void {
    this.memory.write64(this.base + offset, value);
  }
}
