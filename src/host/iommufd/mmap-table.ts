/**
 * The mmap(2) offsets of one iommufd file (docs/reference/iommufd-uapi.md §11): a driver exports device
 * registers of a vIOMMU (a VINTF's page0) at an offset the VMM then maps. Offsets start at one
 * page and are never reused within the file.
 */

import type { RegionOps } from '../../kit/memory-region.js';
import type { ViommuObj } from './objects.js';

/** One exported region. */
export interface MmapRegion {
  readonly viommu: ViommuObj;
  readonly length: number;
  readonly ops: RegionOps;
}

/** The offset → region table of one iommufd file. */
export class MmapTable {
  private readonly regions = new Map<number, MmapRegion>();
  private nextOffset: number;

  constructor(firstOffset: number) {
    this.nextOffset = firstOffset;
  }

  /** Export `length` bytes of `ops` for `viommu`; returns the offset. */
  alloc(viommu: ViommuObj, length: number, ops: RegionOps): number {
    const offset = this.nextOffset;
    this.nextOffset += length;
    this.regions.set(offset, { viommu, length, ops });
    return offset;
  }

  /** The region at `offset`, if any. */
  get(offset: number): MmapRegion | undefined {
    return this.regions.get(offset);
  }

  /** Withdraw every region of `viommu` (it is being destroyed). */
  release(viommu: ViommuObj): void {
    for (const [offset, region] of this.regions) if (region.viommu === viommu) this.regions.delete(offset);
  }

  /** Withdraw everything (the file is released). */
  clear(): void {
    this.regions.clear();
  }
}
