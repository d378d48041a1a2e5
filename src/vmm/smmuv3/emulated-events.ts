/**
 * The emulated SMMUv3's event queue: QEMU's smmuv3_record_event / smmuv3_write_eventq
 * (docs/reference/qemu-smmuv3.md §5). A fault becomes a 32-byte record with the fields QEMU
 * fills for its type, written at EVENTQ_PROD in guest memory; the event interrupt pulses when
 * the queue is not empty afterwards. Nothing is recorded while EVENTQ is disabled; a full queue
 * or a write that aborts raises GERROR.EVENTQ_ABT_ERR instead (QEMU's behaviour).
 */

import {
  EF_ADDR,
  EF_ADDR2,
  EF_FETCH_ADDR,
  EF_FETCH_ADDR2,
  EF_RNW,
  EF_S2_CLASS,
  EF_SSID,
  encodeEvent,
  type EventFields,
  type FaultRecord,
} from '../../arch/smmuv3/event-record.js';
import { EVENTQ_ENTRY_BYTES, qAdvance, qEmpty, qFull, qIndex, qUsed, qWrapMask } from '../../arch/smmuv3/queue.js';
import * as R from '../../arch/smmuv3/registers.js';
import { Evt } from '../../arch/smmuv3/structures.js';
import { hex } from '../../kit/bits.js';
import type { ModelLog } from '../../kit/log.js';
import { EVENT_HOP_GUEST_EVTQ, type Tracer } from '../../kit/trace.js';
import type { AccelObservers } from './accel-state.js';
import type { Idr } from './idr.js';
import { SMMU_IRQ_EVTQ, SMMU_IRQ_GERROR, type SmmuRegisterFrame } from './register-frame.js';
import type { GuestMemory } from './ste-install.js';
import * as T from './trace-events.js';

/** The fields QEMU's record builder fills, by event type (docs/reference/qemu-smmuv3.md §5.2). */
const WALK_FIELDS = EF_SSID | EF_S2_CLASS | EF_ADDR | EF_RNW | EF_ADDR2;
const QEMU_EVENT_FIELDS: ReadonlyMap<number, EventFields> = new Map([
  [Evt.C_BAD_STREAMID, EF_SSID],
  [Evt.F_STE_FETCH, EF_SSID | EF_FETCH_ADDR2],
  [Evt.C_BAD_STE, EF_SSID],
  [Evt.C_BAD_SUBSTREAMID, EF_SSID],
  [Evt.F_CD_FETCH, EF_SSID | EF_FETCH_ADDR],
  [Evt.C_BAD_CD, EF_SSID],
  [Evt.F_WALK_EABT, WALK_FIELDS],
  [Evt.F_TRANSLATION, WALK_FIELDS],
  [Evt.F_ADDR_SIZE, WALK_FIELDS],
  [Evt.F_ACCESS, WALK_FIELDS],
  [Evt.F_PERMISSION, WALK_FIELDS],
]);

/** Event ID → name, for traces and the guest-error log. */
export const EVENT_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(Evt).map(([name, id]) => [id, name]));

/** GERROR.EVENTQ_ABT_ERR as a toggle mask. */
const EVENTQ_ABT_ERR = R.GERROR.f.EVENTQ_ABT_ERR.set(0, 1);

/** Counters of the event queue. */
export interface EmulatedEventStats {
  /** Records written to the guest event queue. */
  events: number;
  /** Faults not written: EVENTQ disabled, queue full, or write abort. */
  eventsLost: number;
}

/** The event queue of one emulated SMMUv3. */
export class EmulatedEventQueue {
  private readonly record = new Uint32Array(EVENTQ_ENTRY_BYTES / 4);

  constructor(
    private readonly frame: SmmuRegisterFrame,
    private readonly idr: () => Idr,
    private readonly mem: GuestMemory,
    private readonly stats: EmulatedEventStats,
    private readonly log: ModelLog,
    private readonly tracer: Tracer,
    private readonly observers?: Pick<AccelObservers, 'events'>,
  ) {}

  /** Record `fault` in the guest event queue as QEMU does. */
  recordEvent(fault: FaultRecord): void {
    const frame = this.frame;
    if (!frame.eventqEnabled) {
      this.stats.eventsLost++;
      return;
    }
    const e = encodeEvent(fault, QEMU_EVENT_FIELDS.get(fault.id) ?? EF_SSID, this.record);
    const name = EVENT_NAMES.get(fault.id) ?? `0x${fault.id.toString(16)}`;
    this.tracer.emit(T.T_RECORD_EVENT, name, fault.sid);
    if (!this.write(e, fault.id, fault.sid)) {
      this.stats.eventsLost++;
      frame.triggerIrq(SMMU_IRQ_GERROR, EVENTQ_ABT_ERR);
    }
  }

  /** Write one record at PROD; false when the queue is full or the write aborts. */
  private write(e: Uint32Array, id: number, sid: number): boolean {
    const { file, regs } = this.frame;
    const log2 = this.frame.eventqLog2(this.idr());
    const prod = file.get32(regs.eventqProd);
    const cons = file.get32(regs.eventqCons);
    if (qFull(prod, cons, log2)) return false;
    const at = this.frame.address(regs.eventqBase, R.EVENTQ_BASE.f.ADDR) + qIndex(prod, log2) * EVENTQ_ENTRY_BYTES;
    const mem = this.mem;
    if (!(mem.readWords?.(at, this.probe, 0, 1) ?? true)) {
      this.log.guestError(this.frame.logSource, `event queue write abort at ${hex(at, 12)}`);
      return false;
    }
    try {
      for (let i = 0; i < e.length; i++) mem.write32(at + 4 * i, e[i]!);
    } catch {
      this.log.guestError(this.frame.logSource, `event queue write abort at ${hex(at, 12)}`);
      return false;
    }
    // QEMU's queue_prod_incr keeps only the wrap and index bits: OVFLG and any stray bits a
    // guest wrote into EVENTQ_PROD are cleared (docs/reference/qemu-smmuv3.md §5.2).
    const next = qAdvance(prod, 1, log2) & qWrapMask(log2);
    file.set32(regs.eventqProd, next);
    this.stats.events++;
    const observer = this.observers?.events;
    // The guest's interrupt handler drains the queue inside triggerIrq: the hop spans it.
    observer?.enterHop(EVENT_HOP_GUEST_EVTQ, 0, id, sid, qUsed(next, cons, log2));
    if (!qEmpty(next, cons, log2)) this.frame.triggerIrq(SMMU_IRQ_EVTQ);
    observer?.leaveHop(EVENT_HOP_GUEST_EVTQ, qUsed(file.get32(regs.eventqProd), file.get32(regs.eventqCons), log2));
    return true;
  }

  private readonly probe = new Uint32Array(1);
}
