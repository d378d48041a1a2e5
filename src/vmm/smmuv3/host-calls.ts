/**
 * The accelerated SMMUv3's calls into its iommufd backend, counted, and its host-error
 * reports (QEMU's error_report / error_report_once): every part of the device goes through
 * here, so the ioctl count and the error list are kept in one place.
 */

import { RecentList } from '../../kit/recent-list.js';
import type { IommufdBackend } from '../backends/iommufd.js';
import type { AccelSmmuStats } from './accel-state.js';

/** Text of a thrown value, for a report. */
export function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Counted backend calls and error reports of one SMMU. */
export class HostCalls {
  /**
   * Host-side failures, as QEMU would print them with error_report: the newest kept, every one
   * counted (a guest can cause them at will, e.g. refused CFGI_STEs; issue 14 #9).
   */
  readonly errors = new RecentList<string>();
  private readonly reportedKinds = new Set<string>();

  constructor(
    /** `-object iommufd` of the VFIO devices behind this SMMU, if any. */
    readonly backend: IommufdBackend | undefined,
    private readonly stats: AccelSmmuStats,
  ) {}

  /** Run backend work (the backend must exist), counting the ioctls it makes. */
  run<V>(work: (backend: IommufdBackend) => V): V {
    const backend = this.backend!;
    const before = backend.callTotal;
    try {
      return work(backend);
    } finally {
      this.stats.ioctls += backend.callTotal - before;
    }
  }

  /** IOMMU_DESTROY of a host object; a failure is reported, not thrown. */
  freeId(id: number): void {
    const backend = this.backend!;
    this.run(() => backend.freeId(id, this.reportFailure));
  }

  /** error_report. */
  report(message: string): void {
    this.errors.push(message);
  }

  /** error_report_once, per kind of message. */
  reportOnce(kind: string, message: string): void {
    if (this.reportedKinds.has(kind)) return;
    this.reportedKinds.add(kind);
    this.report(message);
  }

  private readonly reportFailure = (message: string): void => this.report(message);
}
