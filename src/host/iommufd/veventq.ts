/**
 * A vEVENTQ: the per-vIOMMU event queue of one type, read through its own file descriptor
 * (spec linux-cmdqv.md §3.7). Sequence numbers, depth-limited queueing with a single trailing
 * "lost events" header, and read() copying whole records without blocking — as the kernel does.
 */

import { iommufd_vevent_header, iommu_veventq_flag } from '../../uapi/iommufd.js';

interface Record_ {
  readonly lost: boolean;
  readonly sequence: number;
  readonly payload: Uint8Array;
}

/** The queue state behind a vEVENTQ object. */
export class VeventQueue {
  private readonly records: Record_[] = [];
  private nextSeq = 0;
  /** Normal events queued (the lost-events header does not count). */
  private count = 0;
  /** Events dropped because the queue was full. */
  dropped = 0;
  /** Readiness notification (poll(2)/epoll wake-up of the reader). */
  onReport: (() => void) | undefined;

  constructor(
    readonly type: number,
    readonly depth: number,
  ) {}

  /** Number of records (including a lost-events header) waiting. */
  get pending(): number {
    return this.records.length;
  }

  /** Report one event (driver side). */
  report(payload: Uint8Array): void {
    const last = this.records[this.records.length - 1];
    if (this.count >= this.depth) {
      this.dropped++;
      // Replace (or add) the trailing lost-events header with the newest sequence number.
      if (last?.lost) this.records.pop();
      this.records.push({ lost: true, sequence: this.takeSeq(), payload: new Uint8Array(0) });
      this.onReport?.();
      return;
    }
    if (last?.lost) this.records.pop();
    this.records.push({ lost: false, sequence: this.takeSeq(), payload: payload.slice() });
    this.count++;
    this.onReport?.();
  }

  private takeSeq(): number {
    const s = this.nextSeq;
    this.nextSeq = (this.nextSeq + 1) & 0x7fff_ffff;
    return s;
  }

  /**
   * read(2): copy whole records (8-byte header + payload) while they fit in `max` bytes.
   * Returns the bytes (possibly empty: nothing queued or the first record does not fit).
   */
  read(max: number): Uint8Array {
    const parts: Uint8Array[] = [];
    let used = 0;
    while (this.records.length > 0) {
      const r = this.records[0]!;
      const need = iommufd_vevent_header.size + r.payload.length;
      if (used + need > max) break;
      const rec = new Uint8Array(need);
      iommufd_vevent_header.encode(
        { flags: r.lost ? iommu_veventq_flag.IOMMU_VEVENTQ_FLAG_LOST_EVENTS : 0, sequence: r.sequence },
        rec,
      );
      rec.set(r.payload, iommufd_vevent_header.size);
      parts.push(rec);
      used += need;
      this.records.shift();
      if (!r.lost) this.count--;
    }
    const out = new Uint8Array(used);
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
}
