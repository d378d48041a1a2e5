/**
 * A vEVENTQ: the per-vIOMMU event queue of one type, read through its own file descriptor
 * (docs/reference/iommufd-uapi.md §8). Sequence numbers, depth-limited queueing with a single trailing
 * "lost events" header, and read() copying whole records without blocking — as the kernel does.
 *
 * The queue's kernel state (records, sequence, counters) is one plain record, `state`; the
 * reader's wake-up callback is runtime.
 */

import { EVENT_HOP_VEVENTQ, type EventPathObserver } from '../../kit/trace.js';
import { iommufd_vevent_header, iommu_veventq_flag } from '../../uapi/iommufd.js';

/** One queued record: an event, or the header saying events were lost. */
export interface VeventRecord {
  readonly lost: boolean;
  readonly sequence: number;
  readonly payload: Uint8Array;
}

/** The kernel state of a vEVENTQ. */
export interface VeventQueueState {
  /** `iommu_veventq_type`. */
  readonly type: number;
  readonly depth: number;
  readonly records: VeventRecord[];
  nextSequence: number;
  /** Normal events queued (the lost-events header does not count). */
  count: number;
  /** Events dropped because the queue was full. */
  dropped: number;
}

/** Byte offsets of iommufd_vevent_header's fields (uapi/iommufd.ts). */
const HDR_FLAGS = iommufd_vevent_header.field('flags').offset;
const HDR_SEQUENCE = iommufd_vevent_header.field('sequence').offset;

/** A record buffer and its view. */
interface RecordBuffer {
  readonly bytes: Uint8Array;
  readonly view: DataView;
}

/** Payload buffers a queue keeps for reuse. */
const MAX_SPARE = 4;

/** Sequence numbers wrap at 2^31. */
const SEQUENCE_MASK = 0x7fff_ffff;

/** The queue behind a vEVENTQ object. */
export class VeventQueue {
  readonly state: VeventQueueState;
  /** Readiness notification (poll(2)/epoll wake-up of the reader). */
  onReport: (() => void) | undefined;
  /** Told as records are queued and read (modelled time, trace; runtime), with {@link traceId} as the queue. */
  observer: EventPathObserver | undefined;
  /** The vEVENTQ's object id, which the observer is given. */
  traceId = 0;
  /** Buffers {@link read} builds records in (runtime, not state). */
  private readonly buffers: RecordBuffer[] = [];
  /** Payload copies of records already read, reused by {@link enqueue} (runtime, bounded). */
  private readonly spare: Uint8Array[] = [];

  constructor(type: number, depth: number) {
    this.state = { type, depth, records: [], nextSequence: 0, count: 0, dropped: 0 };
  }

  get type(): number {
    return this.state.type;
  }

  get depth(): number {
    return this.state.depth;
  }

  /** Events dropped because the queue was full. */
  get dropped(): number {
    return this.state.dropped;
  }

  /** Number of records (including a lost-events header) waiting. */
  get pending(): number {
    return this.state.records.length;
  }

  /** Report one event (driver side). */
  report(payload: Uint8Array): void {
    const obs = this.observer;
    if (obs === undefined) {
      this.enqueue(payload);
      return;
    }
    obs.enterHop(EVENT_HOP_VEVENTQ, this.traceId, this.state.type, -1, this.state.records.length + 1);
    this.enqueue(payload);
    obs.leaveHop(EVENT_HOP_VEVENTQ, this.state.records.length);
  }

  private enqueue(payload: Uint8Array): void {
    const { records } = this.state;
    const last = records[records.length - 1];
    if (this.state.count >= this.state.depth) {
      this.state.dropped++;
      // Replace (or add) the trailing lost-events header with the newest sequence number.
      if (last?.lost) records.pop();
      records.push({ lost: true, sequence: this.takeSequence(), payload: new Uint8Array(0) });
      this.onReport?.();
      return;
    }
    if (last?.lost) records.pop();
    records.push({ lost: false, sequence: this.takeSequence(), payload: this.copyOf(payload) });
    this.state.count++;
    this.onReport?.();
  }

  /**
   * A `need`-byte buffer for one record as read(2) copies it out, reused from read to read
   * (copyOut copies it before it returns): a queue's records are one size, bar the payload-less
   * lost-events header, so at most two buffers live.
   */
  private recordBuffer(need: number): RecordBuffer {
    const cached = this.buffers;
    for (const b of cached) if (b.bytes.length === need) return b;
    const bytes = new Uint8Array(need);
    const b = { bytes, view: new DataView(bytes.buffer) };
    if (cached.length >= 2) cached.shift();
    cached.push(b);
    return b;
  }

  /** A copy of `payload` the queue keeps: a read record's buffer when one of its size is spare. */
  private copyOf(payload: Uint8Array): Uint8Array {
    const spare = this.spare;
    const last = spare.length - 1;
    if (last >= 0 && spare[last]!.length === payload.length) {
      const copy = spare.pop()!;
      copy.set(payload);
      return copy;
    }
    return payload.slice();
  }

  private takeSequence(): number {
    const sequence = this.state.nextSequence;
    this.state.nextSequence = (sequence + 1) & SEQUENCE_MASK;
    return sequence;
  }

  /**
   * read(2): copy whole records (8-byte header + payload) to the reader with `copyOut(bytes, at)`
   * while they fit in `max` bytes; returns the bytes copied (0: nothing queued, or the first
   * record does not fit). A record is dequeued only once copied: when `copyOut` faults it stays
   * at the head, and the fault is thrown if nothing was copied before it (as the kernel restores
   * the event and returns EFAULT or the bytes done). `copyOut` must copy `bytes` before it
   * returns: the buffer is reused for the next record.
   */
  read(max: number, copyOut: (bytes: Uint8Array, at: number) => void): number {
    const { records } = this.state;
    let used = 0;
    while (records.length > 0) {
      const record = records[0]!;
      const need = iommufd_vevent_header.size + record.payload.length;
      if (used + need > max) break;
      const { bytes, view } = this.recordBuffer(need);
      view.setUint32(HDR_FLAGS, record.lost ? iommu_veventq_flag.IOMMU_VEVENTQ_FLAG_LOST_EVENTS : 0, true);
      view.setUint32(HDR_SEQUENCE, record.sequence, true);
      bytes.set(record.payload, iommufd_vevent_header.size);
      try {
        copyOut(bytes, used);
      } catch (e) {
        if (used === 0) throw e;
        break;
      }
      used += need;
      records.shift();
      if (!record.lost) {
        this.state.count--;
        // Copied out and dequeued: nothing refers to its payload any more.
        if (this.spare.length < MAX_SPARE) this.spare.push(record.payload);
      }
    }
    if (used > 0) this.observer?.level(EVENT_HOP_VEVENTQ, this.traceId, records.length);
    return used;
  }
}
