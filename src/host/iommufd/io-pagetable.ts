/**
 * IOAS address spaces (docs/reference/iommufd-uapi.md §12): IOVA ranges of user memory, mirrored
 * into the paging domains of the HWPTs allocated on them (the driver builds their page tables).
 *
 * Pinning is lazy, as in Linux: an area records the user range; its pages are pinned (a
 * reference taken on each) when a domain needs them — at IOAS_MAP when the IOAS has a domain,
 * else when the first domain is added (EFAULT then if the memory is gone). They stay pinned,
 * whatever the process does to its mapping, until the area is unmapped or the last domain
 * goes. A range pinned by an internal access (a HW queue) cannot be unmapped (EBUSY).
 */

import { Errno, ErrnoError } from '../../uapi/errno.js';
import type { PinnedRuns } from '../memory/process-memory.js';
import type { IommuPagingDomain } from './driver.js';

/** One mapped IOVA range. */
export interface IoasArea {
  readonly iova: number;
  readonly length: number;
  /** The user address the range maps. */
  readonly uva: number;
  /** The pinned memory behind the range, as physically contiguous runs; undefined until pinned. */
  runs: PinnedRuns | undefined;
  readonly writable: boolean;
  /** Internal accesses (HW queues) pinning part of this area. */
  locks: number;
}

/** What pins user memory: the owning process's address space. */
export interface UserPinner {
  /** Pin [va, va + length) (EFAULT on memory that is not there). */
  pinRuns(va: number, length: number): PinnedRuns;
}

/** Input address size of an IOAS: the IOVA window every domain mirroring it must cover. */
export const IOVA_BITS = 48;

/** An IOAS: IOVA → user memory, pinned while a domain mirrors it. */
export class IoAddressSpace {
  readonly areas: IoasArea[] = [];
  /** The paging domains (HWPTs) mirroring this IOAS. */
  readonly domains = new Set<IommuPagingDomain>();

  constructor(
    readonly pageSize: number,
    private readonly pinner: UserPinner,
  ) {}

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

  /**
   * Add an area for `length` bytes of user memory at `uva`; EEXIST on overlap. With domains the
   * pages are pinned and mapped now (EFAULT, ENOMEM: nothing changed).
   */
  map(iova: number, uva: number, length: number, writable: boolean): IoasArea {
    if (iova % this.pageSize !== 0 || length % this.pageSize !== 0 || length === 0) {
      throw new ErrnoError(Errno.EINVAL, 'IOVA or length not aligned to the IOAS page size');
    }
    if (iova + length > 2 ** IOVA_BITS) throw new ErrnoError(Errno.EINVAL, 'IOVA beyond the input address size');
    for (const a of this.areas) {
      if (iova < a.iova + a.length && a.iova < iova + length) throw new ErrnoError(Errno.EEXIST, 'IOVA range already mapped');
    }
    const area: IoasArea = { iova, length, uva, runs: undefined, writable, locks: 0 };
    if (this.domains.size === 0) {
      this.areas.push(area);
      return area;
    }
    area.runs = this.pinner.pinRuns(uva, length);
    try {
      for (const d of this.domains) d.mapArea(area);
    } catch (e) {
      // Unmapping a range a domain never got is a walk over holes.
      for (const d of this.domains) d.unmapArea(area);
      area.runs.unpin();
      throw e;
    }
    this.areas.push(area);
    return area;
  }

  /**
   * Mirror the IOAS into a new domain: pin what is not pinned yet and map every area. On
   * failure (EFAULT, ENOMEM) the pins taken here are dropped and the domain is not added; the
   * caller frees it.
   */
  addDomain(domain: IommuPagingDomain): void {
    const pinnedHere: IoasArea[] = [];
    try {
      for (const a of this.areas) {
        if (a.runs) continue;
        a.runs = this.pinner.pinRuns(a.uva, a.length);
        pinnedHere.push(a);
      }
      for (const a of this.areas) domain.mapArea(a);
    } catch (e) {
      for (const a of pinnedHere) {
        a.runs!.unpin();
        a.runs = undefined;
      }
      throw e;
    }
    this.domains.add(domain);
  }

  /** A domain stops mirroring the IOAS; with the last one gone the pages are unpinned. */
  removeDomain(domain: IommuPagingDomain): void {
    this.domains.delete(domain);
    if (this.domains.size !== 0) return;
    for (const a of this.areas) {
      if (a.locks > 0 || !a.runs) continue;
      a.runs.unpin();
      a.runs = undefined;
    }
  }

  /**
   * Remove the areas covering exactly [iova, iova + length) (all areas when `all`). ENOENT if
   * a covered area is only partly inside, or nothing is mapped (except for `all`, where an
   * empty IOAS unmaps nothing); EBUSY if pinned by a HW queue. Returns the bytes unmapped.
   */
  unmap(iova: number, length: number, all: boolean): { bytes: number; areas: IoasArea[] } {
    const hit = all ? [...this.areas] : this.areas.filter((a) => a.iova < iova + length && iova < a.iova + a.length);
    if (hit.length === 0 && !all) throw new ErrnoError(Errno.ENOENT, 'nothing mapped in the range');
    if (!all && hit.some((a) => a.iova < iova || a.iova + a.length > iova + length)) {
      throw new ErrnoError(Errno.ENOENT, 'range splits a mapping');
    }
    if (hit.some((a) => a.locks > 0)) throw new ErrnoError(Errno.EBUSY, 'range pinned by a HW queue');
    for (const a of hit) {
      this.areas.splice(this.areas.indexOf(a), 1);
      // The domains (and their IOTLBs) forget the range before its pages can be freed.
      for (const d of this.domains) d.unmapArea(a);
      a.runs?.unpin();
      a.runs = undefined;
    }
    return { bytes: hit.reduce((n, a) => n + a.length, 0), areas: hit };
  }

  /** The area fully containing [iova, iova + length), or undefined. */
  areaFor(iova: number, length: number): IoasArea | undefined {
    return this.areas.find((a) => iova >= a.iova && iova + length <= a.iova + a.length);
  }

  /** The pinned runs of an area a domain or an access uses (EFAULT if not pinned). */
  static pinned(a: IoasArea): PinnedRuns {
    if (!a.runs) throw new ErrnoError(Errno.EFAULT, 'IOAS area is not pinned (no domain)');
    return a.runs;
  }

  /** Host PA of an IOVA inside a pinned area. */
  static paOf(a: IoasArea, iova: number): number {
    return IoAddressSpace.pinned(a).paAt(iova - a.iova);
  }
}
