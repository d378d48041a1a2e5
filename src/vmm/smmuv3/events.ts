/**
 * The accelerated SMMUv3's event path: the SMMUv3 vEVENTQ on the host vIOMMU (allocated once
 * the guest enables its event queue, watched on the VMM's main loop) and the guest event queue
 * the host's records are written into, with its overflow flag, interrupt and write aborts.
 */

import { EVENTQ_ENTRY_BYTES, qAdvance, qEmpty, qFull, qIndex, qUsed, qWrapMask } from '../../arch/smmuv3/queue.js';
import * as R from '../../arch/smmuv3/registers.js';
import { EVT, Evt } from '../../arch/smmuv3/structures.js';
import { hex } from '../../kit/bits.js';
import type { ModelLog } from '../../kit/log.js';
import { EVENT_HOP_GUEST_EVTQ, EVENT_HOP_VMM_READ, type Tracer } from '../../kit/trace.js';
import { iommu_veventq_type } from '../../uapi/iommufd.js';
import type { MainLoop } from '../main-loop.js';
import type { AccelObservers, AccelSmmuStats, AccelSmmuV3State } from './accel-state.js';
import type { HostCalls } from './host-calls.js';
import { SMMU_EVENTQS } from './idr.js';
import { SMMU_IRQ_EVTQ, SMMU_IRQ_GERROR, type SmmuRegisterFrame } from './register-frame.js';
import type { GuestMemory } from './ste-install.js';
import * as T from './trace-events.js';

/** Event ID → name, for traces. */
const EVENT_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(Evt).map(([name, id]) => [id, name]));

/** GERROR.EVENTQ_ABT_ERR as a toggle mask. */
const EVENTQ_ABT_ERR = R.GERROR.f.EVENTQ_ABT_ERR.set(0, 1);

/** What the event path works with. */
export interface EventPathDeps {
  readonly state: AccelSmmuV3State;
  readonly frame: SmmuRegisterFrame;
  readonly host: HostCalls;
  readonly stats: AccelSmmuStats;
  readonly guestMemory: GuestMemory;
  readonly mainLoop: MainLoop;
  readonly log: ModelLog;
  readonly tracer: Tracer;
  readonly observers: AccelObservers;
}

/** The vEVENTQ and the guest event queue of one accelerated SMMUv3. */
export class EventPath {
  /** The record {@link readRecord} reads into: propagated before the next read. */
  private readonly record = new Uint8Array(EVENTQ_ENTRY_BYTES);

  constructor(private readonly deps: EventPathDeps) {}

  /**
   * Allocate the SMMUv3 vEVENTQ once a vIOMMU exists and the guest has enabled EVENTQ, and
   * watch it on the main loop.
   */
  allocVeventq(): void {
    const { state, frame } = this.deps;
    const viommu = state.viommu;
    if (!viommu || state.veventq || !frame.eventqEnabled) return;
    const depth = 2 ** frame.eventqLog2(state.idr);
    state.veventq = this.deps.host.run((backend) => backend.allocVeventq(viommu.id, iommu_veventq_type.IOMMU_VEVENTQ_TYPE_ARM_SMMUV3, depth));
    this.watch(state.veventq.fd);
  }

  /** Stop watching, close and destroy the vEVENTQ. */
  freeVeventq(): void {
    const { state, host } = this.deps;
    const veventq = state.veventq;
    if (!veventq) return;
    this.deps.mainLoop.setFdHandler(veventq.fd, undefined);
    host.backend!.closeFd(veventq.fd);
    host.freeId(veventq.id);
    state.veventq = undefined;
  }

  /** Watch the vEVENTQ's fd on the main loop (also after a restore). */
  watch(fd: number): void {
    const err = this.deps.mainLoop.setFdHandler(fd, this.onReadable);
    if (err < 0) this.deps.host.report(`vEVENTQ fd ${fd}: cannot watch it (errno ${-err})`);
  }

  /**
   * Drain the SMMUv3 vEVENTQ into the guest event queue, at most its depth plus an overflow
   * header (so it always ends). Returns the number of records delivered.
   */
  pollEvents(): number {
    let delivered = 0;
    // Bounded: a queue cannot hold more records than its depth plus one overflow header.
    for (let i = 0; i <= 2 ** SMMU_EVENTQS + 1; i++) {
      const read = this.readOne();
      if (read === 'none') break;
      if (read === 'delivered') delivered++;
    }
    return delivered;
  }

  /**
   * Read and deliver one record (QEMU's fd handler: one read per call, the main loop calls again
   * while the fd stays readable). A failed read(2) consumed nothing and reads as 'none'.
   */
  private readOne(): 'none' | 'skipped' | 'delivered' {
    const veventq = this.deps.state.veventq;
    const observer = this.deps.observers.events;
    if (!veventq || observer === undefined) return this.readRecord();
    observer.enterHop(EVENT_HOP_VMM_READ, veventq.id, veventq.type, -1, -1);
    try {
      return this.readRecord();
    } finally {
      observer.leaveHop(EVENT_HOP_VMM_READ, -1);
    }
  }

  /** {@link readOne}'s work: one read(2) of the vEVENTQ, and the record it read delivered. */
  private readRecord(): 'none' | 'skipped' | 'delivered' {
    const veventq = this.deps.state.veventq;
    const { host } = this.deps;
    const backend = host.backend;
    if (!veventq || !backend) return 'none';
    const read = backend.readVevent(veventq, EVENTQ_ENTRY_BYTES, this.record);
    if (read.kind === 'none') return 'none';
    if (read.kind === 'error') {
      host.reportOnce(read.message.replace(/\d+/g, '#'), read.message);
      return /read failed/.test(read.message) ? 'none' : 'skipped';
    }
    if (read.lost) host.reportOnce('lost', `vEVENTQ(type ${veventq.type} id ${veventq.id}): lost ${read.lost} event(s)`);
    this.propagateEvent(read.payload);
    return 'delivered';
  }

  /** The main loop's read handler: one function for the device's life. */
  private readonly onReadable = (): void => {
    this.readOne();
  };

  /**
   * Write one host event record into the guest event queue. A full queue loses the event and
   * flags the overflow in EVENTQ_PROD.OVFLG; a write that aborts raises GERROR.EVENTQ_ABT_ERR.
   */
  private propagateEvent(record: Uint8Array): void {
    const { frame, stats } = this.deps;
    const { file, regs } = frame;
    const word0 = leWord(record, 0);
    const word1 = leWord(record, 4);
    const id = EVT.ID.get(word0);
    const sid = EVT.SID.getWords(word0, word1);
    // The event's name is looked up only when the trace is on.
    const tracer = this.deps.tracer;
    if (tracer.enabled(T.T_PROPAGATE_EVENT)) tracer.emit(T.T_PROPAGATE_EVENT, EVENT_NAMES.get(id) ?? `0x${id.toString(16)}`, sid);
    if (!frame.eventqEnabled) {
      stats.eventsLost++;
      return;
    }
    const log2 = frame.eventqLog2(this.deps.state.idr);
    const prod = file.get32(regs.eventqProd);
    const cons = file.get32(regs.eventqCons);
    if (qFull(prod, cons, log2)) {
      stats.eventsLost++;
      const overflow = R.EVENTQ_PROD.f.OVFLG;
      if (overflow.get(prod) === R.EVENTQ_CONS.f.OVACKFLG.get(cons)) file.set32(regs.eventqProd, overflow.set(prod, overflow.get(prod) ^ 1));
      return;
    }
    const at = frame.address(regs.eventqBase, R.EVENTQ_BASE.f.ADDR) + qIndex(prod, log2) * EVENTQ_ENTRY_BYTES;
    try {
      for (let i = 0; i < EVENTQ_ENTRY_BYTES / 4; i++) this.deps.guestMemory.write32(at + 4 * i, leWord(record, 4 * i));
    } catch {
      this.deps.log.guestError(frame.logSource, `event queue write abort at ${hex(at, 12)}`);
      frame.triggerIrq(SMMU_IRQ_GERROR, EVENTQ_ABT_ERR);
      return;
    }
    const next = ((prod & ~qWrapMask(log2)) | qAdvance(prod, 1, log2)) >>> 0;
    file.set32(regs.eventqProd, next);
    stats.events++;
    const observer = this.deps.observers.events;
    // The guest's interrupt handler drains the queue inside triggerIrq: the hop spans it.
    observer?.enterHop(EVENT_HOP_GUEST_EVTQ, 0, id, sid, qUsed(next, cons, log2));
    if (!qEmpty(next, cons, log2)) frame.triggerIrq(SMMU_IRQ_EVTQ);
    observer?.leaveHop(EVENT_HOP_GUEST_EVTQ, qUsed(file.get32(regs.eventqProd), file.get32(regs.eventqCons), log2));
  }
}

/** The little-endian 32-bit word at byte `at` of `b` (no DataView per record). */
function leWord(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}
