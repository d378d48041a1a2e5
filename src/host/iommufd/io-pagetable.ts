/**
 * IOAS address spaces (docs/reference/iommufd-uapi.md §12): IOVA ranges of pinned user memory, mirrored
 * into the paging domains of the HWPTs allocated on them (the driver builds their page tables).
 * A range pinned by an internal access (a HW queue) cannot be unmapped (EBUSY).
 */

import { Errno, ErrnoError } from '../../uapi/errno.js';
import type { PinnedRuns } from '../memory/process-memory.js';
import type { IommuPagingDomain } from './driver.js';

/** One mapped IOVA range. */
export interface IoasArea {
  readonly iova: number;
  readonly length: number;
  /** The pinned memory behind the range, as physically contiguous runs. */
  readonly runs: PinnedRuns;
  readonly writable: boolean;
  /** Internal accesses (HW queues) pinning part of this area. */
  locks: number;
}

/** Input address size of an IOAS: the IOVA window every domain mirroring it must cover. */
export const IOVA_BITS = 48;

/** An IOAS: IOVA → pinned host pages. */
export class IoAddressSpace {
  readonly areas: IoasArea[] = [];
  /** The paging domains (HWPTs) mirroring this IOAS. */
  readonly domains = new Set<IommuPagingDomain>();

  constructor(readonly pageSize: number) {}

  /** Find a free IOVA for `length` bytes (lowest fit above 0, aligned to the length's size class). */
  allocIova(length: number): number {
    const align = Math.min(2 ** Math.floor(Math.log2(length)), 2 ** 30);
    let cand = align;
    for (const a of [...this.areas].sort((x, y) => x.iova - y.iova)) {
      if (cand + length <= a.iova) break;
      cand = Math.max(cand, Math.ceil((a.iova + a.length) / align) * align);
    }
    if (cand + length > 2 ** IOVA_BITS) throw new ErrnoError(Errno.ENOSPC, 'no free IOVA window');
    return cand;
  }

  /** Add an area; EEXIST on overlap. */
  map(iova: number, runs: PinnedRuns, length: number, writable: boolean): IoasArea {
    if (iova % this.pageSize !== 0 || length % this.pageSize !== 0 || length === 0) {
      throw new ErrnoError(Errno.EINVAL, 'IOVA or length not aligned to the IOAS page size');
    }
    if (iova + length > 2 ** IOVA_BITS) throw new ErrnoError(Errno.EINVAL, 'IOVA beyond the input address size');
    for (const a of this.areas) {
      if (iova < a.iova + a.length && a.iova < iova + length) throw new ErrnoError(Errno.EEXIST, 'IOVA range already mapped');
    }
    const area: IoasArea = { iova, length, runs, writable, locks: 0 };
    this.areas.push(area);
    for (const d of this.domains) d.mapArea(area);
    return area;
  }

  /**
   * Remove the areas covering exactly [iova, iova + length) (all areas for iova 0, length
   * 2^64 − 1). ENOENT if a covered area is only partly inside or nothing is mapped; EBUSY if
   * pinned. Returns the bytes unmapped.
   */
  unmap(iova: number, length: number, all: boolean): { bytes: number; areas: IoasArea[] } {
    const hit = all ? [...this.areas] : this.areas.filter((a) => a.iova < iova + length && iova < a.iova + a.length);
    if (hit.length === 0) throw new ErrnoError(Errno.ENOENT, 'nothing mapped in the range');
    if (!all && hit.some((a) => a.iova < iova || a.iova + a.length > iova + length)) {
      throw new ErrnoError(Errno.ENOENT, 'range splits a mapping');
    }
    if (hit.some((a) => a.locks > 0)) throw new ErrnoError(Errno.EBUSY, 'range pinned by a HW queue');
    for (const a of hit) {
      this.areas.splice(this.areas.indexOf(a), 1);
      for (const d of this.domains) d.unmapArea(a);
    }
    return { bytes: hit.reduce((n, a) => n + a.length, 0), areas: hit };
  }

  /** The area fully containing [iova, iova + length), or undefined. */
  areaFor(iova: number, length: number): IoasArea | undefined {
    return this.areas.find((a) => iova >= a.iova && iova + length <= a.iova + a.length);
  }

  /** Host PA of an IOVA inside an area. */
  static paOf(a: IoasArea, iova: number): number {
    return a.runs.paAt(iova - a.iova);
  }
}
