/**
 * Modelled time and the Perfetto story of a run. The platform (the composition root) hangs one
 * {@link Timeline} on the layers' seams: the VMM address space's exit path (every trapped or
 * direct guest access), the VMM process's syscall entry (every ioctl), and each host command
 * queue's consumption (SMMU CMDQ, every VCMDQ). At each seam it charges the cost model's
 * figure to the virtual clock (arithmetic only: one preset number per exit, ioctl or access,
 * one multiply-add per consumed batch) and, when a trace is being written, records a slice.
 *
 * The trace has one process per layer, a thread per queue, B/E slices for VM exits, MMIO
 * emulation, the VMM's walk of a trapped CMDQ, syscalls, consumed batches, host-SMMU DMA
 * translations and each hop of a fault record (host SMMU event queue → vEVENTQ → VMM → guest
 * event queue); flow arrows from the guest's access (a doorbell on page0, or a trapped
 * CMDQ_PROD write through the VMM's walk and the ioctl) to the queue that consumed its
 * commands, and along each fault record's hops; counters (ring occupancy per queue, VM exits
 * and syscalls so far). Names follow QEMU's and Linux's trace events and functions where one
 * exists (`kvm_exit`, `memory_region_ops_write`, `smmuv3_cmdq_consume`,
 * `smmuv3_accel_event_read`, `smmuv3_propagate_event`, `iommufd_viommu_report_event`).
 *
 * Hot paths stay as they were without a trace: the CMDQ walk observer is attached only when a
 * trace is written (with it, a trapped access's emulation cost is charged when the walk begins,
 * so the walk's slice shows the device model's work; the access's total is the same).
 */

import { Evt } from '../arch/smmuv3/structures.js';
import { ACCESS_DIRECT, ACCESS_TRAPPED, type AccessObserver } from '../kit/address-space.js';
import type { VirtualClock } from '../kit/clock.js';
import {
  EVENT_HOP_GUEST_EVTQ,
  EVENT_HOP_HOST_EVTQ,
  EVENT_HOP_VEVENTQ,
  EVENT_HOP_VMM_READ,
  SYSCALL_READ,
  TRACK_PIDS,
  type ChromeTraceWriter,
  type CommandWalkObserver,
  type EventPathObserver,
  type QueueObserver,
  type SyscallObserver,
  type TraceEvent,
  type TranslationObserver,
} from '../kit/trace.js';
import { IOCTLS, iommu_veventq_type } from '../uapi/iommufd.js';
import { VFIO_IOCTLS } from '../uapi/vfio.js';
import type { CostModel } from './cost-model.js';

/** Trace processes, one per layer (pid = sort order, top to bottom as the stack is drawn). */
export const TRACE_PID = { guest: 1, vmm: 2, hostKernel: 3, hostSmmu: 4, cmdqv: 5 } as const;
/** Threads of the guest, VMM and host-kernel processes. */
const TID_VCPU = 1;
const TID_MAIN_LOOP = 2;
const TID_SYSCALLS = 1;
const TID_HOST_EVENTS = 2;
/** Host-kernel threads from here on: one per vEVENTQ, in order of first use. */
const TID_VEVENTQ_BASE = 3;
/** Guest threads from here on: each vSMMU's event queue. */
const TID_GUEST_EVTQ_BASE = 2;
/** Host SMMU threads: 3 per SMMU (CMDQ, event queue, DMA translations); CMDQV threads: 256 per SMMU (one per VCMDQ). */
const SMMU_TIDS = 3;
const VCMDQ_TIDS = 256;

/** What {@link Timeline.enter} opened at a nesting depth. */
const OPENED_NONE = 0;
const OPENED_EXIT = 1;
const OPENED_DIRECT = 2;
const OPENED_DIRECT_UNTRACED = 3;
/** Deepest nesting of observed accesses tracked (deeper ones are charged but not traced). */
const MAX_DEPTH = 16;
/** Flag in {@link Timeline.opened}: the access's emulation was charged already (by a CMDQ walk). */
const EMULATION_CHARGED = 8;
const OPENED_KIND = 7;
/** Flows waiting at a vEVENTQ for the VMM's read, per queue (older ones are forgotten). */
const MAX_QUEUED_FLOWS = 64;
/** Flow names. */
const FLOW_TRAPPED = 'trapped invalidation';
const FLOW_DOORBELL = 'doorbell';
const FLOW_EVENT = 'fault event';
/** Event IDs by number, for slice arguments. */
const EVENT_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(Evt).map(([name, id]) => [id, name]));

/** The host units whose queues the timeline observes. */
export interface TimelineUnit {
  readonly name: string;
  readonly smmu: { cmdqObserver: QueueObserver | undefined; translationObserver: TranslationObserver | undefined; eventObserver: EventPathObserver | undefined };
  readonly cmdqv: { observer: QueueObserver | undefined; readonly numVcmdqs: number } | undefined;
}

/** The VMM's SMMUs (and their CMDQV devices) whose walks and event paths the timeline observes. */
export interface TimelineVmmSmmu {
  readonly name: string;
  readonly observers: { walk: CommandWalkObserver | undefined; events: EventPathObserver | undefined };
  readonly cmdqv: { eventObserver: EventPathObserver | undefined } | undefined;
}

/** Passes hops on to the timeline with its SMMU's index as the queue of the per-SMMU hops. */
class EventHops implements EventPathObserver {
  constructor(
    private readonly t: Timeline,
    private readonly index: number,
  ) {}
  enterHop(hop: number, queue: number, kind: number, sid: number, pending: number): void {
    this.t.enterHop(hop, hop === EVENT_HOP_HOST_EVTQ || hop === EVENT_HOP_GUEST_EVTQ ? this.index : queue, kind, sid, pending);
  }
  leaveHop(hop: number, pending: number): void {
    this.t.leaveHop(hop, pending);
  }
  level(hop: number, queue: number, pending: number): void {
    this.t.level(hop, queue, pending);
  }
}

/** A vSMMU's trapped CMDQ walk: a slice on the VMM's vCPU thread, the guest ring's occupancy. */
class WalkTrack implements CommandWalkObserver {
  constructor(
    private readonly t: Timeline,
    private readonly counter: string,
  ) {}
  walkBegin(pending: number): void {
    this.t.walkBegin(this.counter, pending);
  }
  walkEnd(pending: number): void {
    this.t.walkEnd(this.counter, pending);
  }
}

/** A queue's observer: charges the batch and records it on its own track. */
class QueueTrack implements QueueObserver {
  constructor(
    private readonly t: Timeline,
    private readonly pid: number,
    private readonly tidBase: number,
    private readonly perCommandNs: number,
    private readonly label: string,
  ) {}
  consumed(queue: number, commands: number, syncs: number): void {
    this.t.batch(this.pid, this.tidBase + queue, this.label, queue, commands, commands * this.perCommandNs + syncs * this.t.syncWaitNs);
  }
}

/** A host SMMU's translations: charged per translation and per walk, recorded on its DMA track. */
class TranslationTrack implements TranslationObserver {
  constructor(
    private readonly clock: VirtualClock,
    private readonly trace: ChromeTraceWriter | undefined,
    private readonly tid: number,
    private readonly hitNs: number,
    private readonly walkNs: number,
  ) {}
  translated(sid: number, iova: number, ok: boolean, walks: number): void {
    const cost = this.hitNs + walks * this.walkNs;
    const tr = this.trace;
    if (tr === undefined || !tr.recording) {
      if (tr) tr.dropped++;
      this.clock.charge(cost);
      return;
    }
    tr.begin(TRACE_PID.hostSmmu, this.tid, walks > 0 ? 'smmuv3_translate (walk)' : 'smmuv3_translate (IOTLB hit)', 'dma', this.clock.now, {
      sid,
      iova: hexAddr(iova),
      ok,
      walks,
    });
    this.clock.charge(cost);
    tr.end(TRACE_PID.hostSmmu, this.tid, this.clock.now);
  }
}

/**
 * Modelled time and trace recording at the layers' seams (see the module comment). Without a
 * trace writer it only charges time.
 */
export class Timeline implements AccessObserver {
  /** Preset costs (ns), read once from the cost model. */
  private readonly exitNs: number;
  private readonly emulationNs: number;
  private readonly directNs: number;
  private readonly ioctlNs: number;
  readonly syncWaitNs: number;
  private readonly hostCmdNs: number;
  private readonly vcmdqCmdNs: number;
  private readonly dmaNs: number;
  private readonly walkNs: number;
  private readonly eventIrqNs: number;
  private readonly ioctlNames = new Map<number, string>();
  /** What each nesting depth opened (so leave closes exactly that). */
  private readonly opened = new Uint8Array(MAX_DEPTH);
  private depth = 0;
  /** The guest access now being handled is traced: flows start from its slice. */
  private causeOpen = false;
  /** The current ioctl was made by a traced guest access and its flow is not drawn yet. */
  private ioctlFlowPending = false;
  private inIoctl = 0;
  /** A VMM CMDQ walk is open (its slice on the VMM's vCPU thread). */
  private walkOpen = false;
  private nextFlow = 1;
  private exitCount = 0;
  private syscallCount = 0;
  /** Unit names by index (for thread names). */
  private readonly units: TimelineUnit[] = [];
  /** The VMM's SMMUs by index. */
  private readonly vmmSmmus: TimelineVmmSmmu[] = [];

  // The event path (cold: a few calls per fault record).
  /** Open hops, innermost last: each one's queue, and whether it drew a slice. */
  private readonly hopQueues: number[] = [];
  private readonly hopTraced: boolean[] = [];
  /** The host-SMMU hop open now: its unit, and the flow it starts (drawn once a vEVENTQ takes the record). */
  private hostHopUnit = -1;
  private hostHopFlow = 0;
  /** The open host hop's interrupt cost was charged (at its vEVENTQ report). */
  private hostHopCharged = false;
  /** The VMM read hop open now: its vEVENTQ, and the flow of the record it read (0 none). */
  private vmmHopQueue = -1;
  private vmmHopFlow = 0;
  /** Flows of records waiting on each vEVENTQ, oldest first. */
  private readonly queuedFlows = new Map<number, number[]>();
  /** Host-kernel thread of each vEVENTQ. */
  private readonly veventqTids = new Map<number, number>();

  constructor(
    private readonly clock: VirtualClock,
    costs: CostModel,
    private readonly trace: ChromeTraceWriter | undefined,
  ) {
    this.exitNs = costs.vmExitNs;
    this.emulationNs = costs.mmioEmulationNs;
    this.directNs = costs.directMmioNs;
    this.ioctlNs = costs.ioctlNs;
    this.syncWaitNs = costs.syncWaitNs;
    this.hostCmdNs = costs.hostCmdqCommandNs;
    this.vcmdqCmdNs = costs.vcmdqCommandNs;
    this.dmaNs = costs.dmaTranslationNs;
    this.walkNs = costs.tableWalkNs;
    this.eventIrqNs = costs.eventIrqNs;
    for (const i of IOCTLS) this.ioctlNames.set(i.number, i.name);
    for (const i of VFIO_IOCTLS) this.ioctlNames.set(i.number, i.name);
    this.ioctlNames.set(SYSCALL_READ, 'read');
    if (trace) {
      trace.processName(TRACE_PID.guest, 'guest vCPU');
      trace.threadName(TRACE_PID.guest, TID_VCPU, 'vCPU 0');
      trace.processName(TRACE_PID.vmm, 'VMM (qemu-system-aarch64)');
      trace.threadName(TRACE_PID.vmm, TID_VCPU, 'vCPU 0 thread (MMIO emulation)');
      trace.threadName(TRACE_PID.vmm, TID_MAIN_LOOP, 'main loop');
      trace.processName(TRACE_PID.hostKernel, 'host kernel');
      trace.threadName(TRACE_PID.hostKernel, TID_SYSCALLS, 'VMM syscalls (iommufd, vfio)');
      trace.threadName(TRACE_PID.hostKernel, TID_HOST_EVENTS, 'trace events');
      trace.processName(TRACE_PID.hostSmmu, 'host SMMUv3');
      trace.processName(TRACE_PID.cmdqv, 'CMDQV silicon (Tegra241)');
    }
  }

  /** Observe a host SMMU's command queue and its CMDQV's VCMDQs (each gets a track). */
  attachUnit(u: TimelineUnit): void {
    const i = this.units.length;
    this.units.push(u);
    const smmuTid = 1 + i * SMMU_TIDS;
    u.smmu.cmdqObserver = new QueueTrack(this, TRACE_PID.hostSmmu, smmuTid, this.hostCmdNs, `${u.name} CMDQ`);
    this.trace?.threadName(TRACE_PID.hostSmmu, smmuTid, `${u.name} CMDQ`);
    this.trace?.threadName(TRACE_PID.hostSmmu, smmuTid + 1, `${u.name} event queue`);
    u.smmu.translationObserver = new TranslationTrack(this.clock, this.trace, smmuTid + 2, this.dmaNs, this.walkNs);
    u.smmu.eventObserver = new EventHops(this, i);
    this.trace?.threadName(TRACE_PID.hostSmmu, smmuTid + 2, `${u.name} DMA translations`);
    if (u.cmdqv) {
      const base = 1 + i * VCMDQ_TIDS;
      u.cmdqv.observer = new QueueTrack(this, TRACE_PID.cmdqv, base, this.vcmdqCmdNs, `${u.name} VCMDQ`);
      for (let q = 0; q < Math.min(u.cmdqv.numVcmdqs, VCMDQ_TIDS); q++) this.trace?.threadName(TRACE_PID.cmdqv, base + q, `${u.name} VCMDQ${q}`);
    }
  }

  /**
   * Observe one of the VMM's SMMUs: its event path (always: fault records cost modelled time)
   * and, when a trace is written, its trapped CMDQ walk.
   */
  attachVmmSmmu(v: TimelineVmmSmmu): void {
    const i = this.vmmSmmus.length;
    this.vmmSmmus.push(v);
    const hops = new EventHops(this, i);
    v.observers.events = hops;
    if (v.cmdqv) v.cmdqv.eventObserver = hops;
    if (this.trace === undefined) return;
    v.observers.walk = new WalkTrack(this, `${v.name} CMDQ (guest, trapped) occupancy`);
    this.trace.threadName(TRACE_PID.guest, TID_GUEST_EVTQ_BASE + i, `${v.name} event queue`);
  }

  /** The observer the host gives the VMM process's vEVENTQs (their hops name the vEVENTQ). */
  readonly veventqs: EventPathObserver = new EventHops(this, -1);

  /** Stop observing the units and the VMM's SMMUs (their queues charge nothing afterwards). */
  detachUnits(): void {
    for (const u of this.units) {
      u.smmu.cmdqObserver = undefined;
      u.smmu.translationObserver = undefined;
      u.smmu.eventObserver = undefined;
      if (u.cmdqv) u.cmdqv.observer = undefined;
    }
    this.units.length = 0;
    for (const v of this.vmmSmmus) {
      v.observers.walk = undefined;
      v.observers.events = undefined;
      if (v.cmdqv) v.cmdqv.eventObserver = undefined;
    }
    this.vmmSmmus.length = 0;
  }

  /** Track (pid × TRACK_PIDS + tid) for a tracer record: host events on the host kernel, the rest on the VMM's main loop. */
  placeRecord(hostEvents: ReadonlySet<TraceEvent>): (ev: TraceEvent) => number {
    return (ev) => (hostEvents.has(ev) ? TRACE_PID.hostKernel * TRACK_PIDS + TID_HOST_EVENTS : TRACE_PID.vmm * TRACK_PIDS + TID_MAIN_LOOP);
  }

  // -- AccessObserver: the VMM address space's exit path --------------------------------------

  enter(flags: number, addr: number, write: boolean): void {
    const d = this.depth++;
    const tr = this.trace;
    if (flags & ACCESS_TRAPPED) {
      this.exitCount++;
      if (tr === undefined || d >= MAX_DEPTH || !tr.recording) {
        if (tr) tr.dropped++;
        if (d < MAX_DEPTH) this.opened[d] = OPENED_NONE;
        this.clock.charge(this.exitNs);
        return;
      }
      const now = this.clock.now;
      this.opened[d] = OPENED_EXIT;
      if (d === 0) this.causeOpen = true;
      tr.begin(TRACE_PID.guest, TID_VCPU, 'kvm_exit', 'kvm', now, { reason: 'MMIO', addr: hexAddr(addr), write });
      tr.counter(TRACE_PID.guest, 'VM exits', now, this.exitCount);
      this.clock.charge(this.exitNs);
      tr.begin(TRACE_PID.vmm, TID_VCPU, write ? 'memory_region_ops_write' : 'memory_region_ops_read', 'memory', this.clock.now, { addr: hexAddr(addr) });
      return;
    }
    // ACCESS_DIRECT: a page0 access that does not trap (a doorbell write, a CONS poll).
    if (tr === undefined || !write || d >= MAX_DEPTH || !tr.recording) {
      if (tr && write) tr.dropped++;
      if (d < MAX_DEPTH) this.opened[d] = OPENED_DIRECT_UNTRACED;
      this.clock.charge(this.directNs);
      return;
    }
    this.opened[d] = OPENED_DIRECT;
    if (d === 0) this.causeOpen = true;
    tr.begin(TRACE_PID.guest, TID_VCPU, 'vcmdq page0 write (no exit)', 'guest', this.clock.now, { addr: hexAddr(addr) });
    this.clock.charge(this.directNs);
  }

  leave(flags: number): void {
    const d = --this.depth;
    const opened = d < MAX_DEPTH ? this.opened[d]! : OPENED_NONE;
    const what = opened & OPENED_KIND;
    if (flags & ACCESS_TRAPPED) {
      if ((opened & EMULATION_CHARGED) === 0) this.clock.charge(this.emulationNs);
      if (what === OPENED_EXIT) {
        const now = this.clock.now;
        this.trace!.end(TRACE_PID.vmm, TID_VCPU, now);
        this.trace!.end(TRACE_PID.guest, TID_VCPU, now);
      }
    } else if (what === OPENED_DIRECT && flags & ACCESS_DIRECT) {
      this.trace!.end(TRACE_PID.guest, TID_VCPU, this.clock.now);
    }
    if (d === 0) this.causeOpen = false;
  }

  // -- SyscallObserver: the VMM process's syscall entry -----------------------------------------

  /** ioctl(2) or read(2) ({@link SYSCALL_READ}) entry. */
  enterSyscall(request: number): void {
    this.inIoctl++;
    this.syscallCount++;
    const tr = this.trace;
    if (tr === undefined || !tr.recording) {
      if (tr) tr.dropped++;
      this.clock.charge(this.ioctlNs);
      return;
    }
    const now = this.clock.now;
    const args = request === SYSCALL_READ ? undefined : { request: hexAddr(request) };
    tr.begin(TRACE_PID.hostKernel, TID_SYSCALLS, this.ioctlNames.get(request) ?? 'sys_enter_ioctl', 'syscalls', now, args);
    tr.counter(TRACE_PID.hostKernel, 'syscalls', now, this.syscallCount);
    // The flow is drawn when (if) a queue consumes what this call submitted (see batch).
    if (this.causeOpen && this.inIoctl === 1) this.ioctlFlowPending = true;
    this.clock.charge(this.ioctlNs);
  }

  /** ioctl(2) or read(2) exit. */
  leaveSyscall(ret: number): void {
    this.inIoctl--;
    if (this.inIoctl === 0) this.ioctlFlowPending = false;
    this.trace?.end(TRACE_PID.hostKernel, TID_SYSCALLS, this.clock.now, { ret });
  }

  // -- CommandWalkObserver: the VMM's walk of a trapped guest CMDQ (only with a trace) -----------

  /** A walk of `pending` commands begins: it carries the trapped access's emulation cost. */
  walkBegin(counter: string, pending: number): void {
    const d = this.depth - 1;
    const tr = this.trace!;
    const traced = tr.recording;
    if (traced) {
      const now = this.clock.now;
      tr.counter(TRACE_PID.vmm, counter, now, pending);
      tr.begin(TRACE_PID.vmm, TID_VCPU, 'smmuv3_cmdq_consume', 'smmuv3', now, { pending });
      this.walkOpen = true;
    } else tr.dropped++;
    if (d >= 0 && d < MAX_DEPTH && (this.opened[d]! & EMULATION_CHARGED) === 0) {
      this.opened[d] = this.opened[d]! | EMULATION_CHARGED;
      this.clock.charge(this.emulationNs);
    }
  }

  /** The walk ended with `pending` commands left. */
  walkEnd(counter: string, pending: number): void {
    if (!this.walkOpen) return;
    this.walkOpen = false;
    const tr = this.trace!;
    const now = this.clock.now;
    tr.end(TRACE_PID.vmm, TID_VCPU, now);
    tr.counter(TRACE_PID.vmm, counter, now, pending);
  }

  /** One consumed batch on (pid, tid): charge `costNs`, record the slice, its flow and the ring occupancy. */
  batch(pid: number, tid: number, label: string, queue: number, commands: number, costNs: number): void {
    const tr = this.trace;
    if (tr === undefined || !tr.recording) {
      if (tr) tr.dropped++;
      this.clock.charge(costNs);
      return;
    }
    const now = this.clock.now;
    const counter = `${label}${queue === 0 && label.endsWith('CMDQ') ? '' : queue} occupancy`;
    tr.counter(pid, counter, now, commands);
    tr.begin(pid, tid, `consume ${commands} command${commands === 1 ? '' : 's'}`, 'queue', now, { commands });
    if (this.ioctlFlowPending) {
      // Guest exit → the VMM's walk → the ioctl → this queue: every slice is still open now.
      this.ioctlFlowPending = false;
      if (tr.hasRoom(4)) {
        const id = this.nextFlow++;
        tr.flow('s', TRACE_PID.guest, TID_VCPU, id, FLOW_TRAPPED, now);
        if (this.walkOpen) tr.flow('t', TRACE_PID.vmm, TID_VCPU, id, FLOW_TRAPPED, now);
        tr.flow('t', TRACE_PID.hostKernel, TID_SYSCALLS, id, FLOW_TRAPPED, now);
        tr.flow('f', pid, tid, id, FLOW_TRAPPED, now);
      }
    } else if (this.causeOpen && this.inIoctl === 0 && tr.hasRoom(2)) {
      const id = this.nextFlow++;
      tr.flow('s', TRACE_PID.guest, TID_VCPU, id, FLOW_DOORBELL, now);
      tr.flow('f', pid, tid, id, FLOW_DOORBELL, now);
    }
    this.clock.charge(costNs);
    const end = this.clock.now;
    tr.end(pid, tid, end);
    tr.counter(pid, counter, end, 0);
  }

  // -- EventPathObserver: a fault record's hops (see kit/trace.ts) ------------------------------

  /** Work on a record at `hop` begins (queue: unit / VMM SMMU index, or the vEVENTQ's id). */
  enterHop(hop: number, queue: number, kind: number, sid: number, pending: number): void {
    // The host's interrupt and handler, once per record: charged where the record reaches a
    // vEVENTQ (that slice shows the handler's work), or when the host hop ends without one.
    const irq = hop === EVENT_HOP_VEVENTQ;
    if (irq) this.hostHopCharged = true;
    const tr = this.trace;
    const traced = tr !== undefined && tr.recording;
    this.hopQueues.push(queue);
    this.hopTraced.push(traced);
    if (hop === EVENT_HOP_HOST_EVTQ) {
      this.hostHopCharged = false;
      this.hostHopUnit = queue;
      this.hostHopFlow = traced ? this.nextFlow++ : 0;
    } else if (hop === EVENT_HOP_VMM_READ) {
      this.vmmHopQueue = queue;
      this.vmmHopFlow = 0;
    }
    if (!traced) {
      if (tr) tr.dropped++;
      if (irq) this.clock.charge(this.eventIrqNs);
      return;
    }
    const now = this.clock.now;
    const event = EVENT_NAMES.get(kind) ?? hexAddr(kind);
    switch (hop) {
      case EVENT_HOP_HOST_EVTQ: {
        const name = this.units[queue]?.name ?? `smmu${queue}`;
        tr.counter(TRACE_PID.hostSmmu, `${name} event queue occupancy`, now, pending);
        tr.begin(TRACE_PID.hostSmmu, 1 + queue * SMMU_TIDS + 1, 'smmuv3_host_event', 'events', now, { event, sid: hexAddr(sid) });
        break;
      }
      case EVENT_HOP_VEVENTQ: {
        const tid = this.veventqTid(queue, kind);
        tr.counter(TRACE_PID.hostKernel, `vEVENTQ ${queue} occupancy`, now, pending);
        tr.begin(TRACE_PID.hostKernel, tid, 'iommufd_viommu_report_event', 'events', now, { veventq: queue, type: veventqTypeName(kind) });
        let id = this.hostHopFlow;
        this.hostHopFlow = 0;
        if (id !== 0 && tr.hasRoom(2)) {
          tr.flow('s', TRACE_PID.hostSmmu, 1 + this.hostHopUnit * SMMU_TIDS + 1, id, FLOW_EVENT, now);
          tr.flow('t', TRACE_PID.hostKernel, tid, id, FLOW_EVENT, now);
        } else if (tr.hasRoom(1)) {
          id = this.nextFlow++;
          tr.flow('s', TRACE_PID.hostKernel, tid, id, FLOW_EVENT, now);
        } else id = 0;
        if (id !== 0) this.queueFlow(queue, id);
        break;
      }
      case EVENT_HOP_VMM_READ:
        tr.begin(TRACE_PID.vmm, TID_MAIN_LOOP, kind === iommu_veventq_type.IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV ? 'tegra241_cmdqv_event_read' : 'smmuv3_accel_event_read', 'events', now, { veventq: queue });
        break;
      case EVENT_HOP_GUEST_EVTQ: {
        const tid = TID_GUEST_EVTQ_BASE + queue;
        tr.counter(TRACE_PID.guest, `${this.vmmSmmus[queue]?.name ?? queue} event queue occupancy`, now, pending);
        tr.begin(TRACE_PID.guest, tid, 'smmuv3_propagate_event', 'events', now, { event, sid: hexAddr(sid) });
        const id = this.vmmHopFlow;
        this.vmmHopFlow = 0;
        if (id !== 0 && tr.hasRoom(2)) {
          tr.flow('t', TRACE_PID.vmm, TID_MAIN_LOOP, id, FLOW_EVENT, now);
          tr.flow('f', TRACE_PID.guest, tid, id, FLOW_EVENT, now);
        }
        break;
      }
    }
    if (irq) this.clock.charge(this.eventIrqNs);
  }

  /** The work at the innermost open hop ended, leaving `pending` records in its queue. */
  leaveHop(hop: number, pending: number): void {
    const traced = this.hopTraced.pop() ?? false;
    const queue = this.hopQueues.pop() ?? -1;
    const tr = this.trace;
    if (hop === EVENT_HOP_HOST_EVTQ && !this.hostHopCharged) this.clock.charge(this.eventIrqNs);
    const now = this.clock.now;
    switch (hop) {
      case EVENT_HOP_HOST_EVTQ: {
        this.hostHopUnit = -1;
        this.hostHopFlow = 0;
        if (!traced) return;
        tr!.end(TRACE_PID.hostSmmu, 1 + queue * SMMU_TIDS + 1, now);
        tr!.counter(TRACE_PID.hostSmmu, `${this.units[queue]?.name ?? `smmu${queue}`} event queue occupancy`, now, pending);
        return;
      }
      case EVENT_HOP_VEVENTQ: {
        if (traced) tr!.end(TRACE_PID.hostKernel, this.veventqTid(queue, 0), now);
        this.level(EVENT_HOP_VEVENTQ, queue, pending);
        return;
      }
      case EVENT_HOP_VMM_READ: {
        const id = this.vmmHopFlow;
        this.vmmHopFlow = 0;
        this.vmmHopQueue = -1;
        if (!traced) return;
        // A record no guest queue took (a CMDQV error: the VMM sets registers and pulses an IRQ) ends here.
        if (id !== 0 && tr!.hasRoom(1)) tr!.flow('f', TRACE_PID.vmm, TID_MAIN_LOOP, id, FLOW_EVENT, now);
        tr!.end(TRACE_PID.vmm, TID_MAIN_LOOP, now);
        return;
      }
      case EVENT_HOP_GUEST_EVTQ: {
        if (!traced) return;
        tr!.end(TRACE_PID.guest, TID_GUEST_EVTQ_BASE + queue, now);
        tr!.counter(TRACE_PID.guest, `${this.vmmSmmus[queue]?.name ?? queue} event queue occupancy`, now, pending);
        return;
      }
    }
  }

  /** The consumer of vEVENTQ `queue` took records (`pending` left): the VMM's read takes their flows. */
  level(hop: number, queue: number, pending: number): void {
    if (hop !== EVENT_HOP_VEVENTQ) return;
    const flows = this.queuedFlows.get(queue);
    if (flows !== undefined) {
      let taken = 0;
      while (flows.length > Math.max(0, pending)) taken = flows.shift()!;
      if (taken !== 0 && this.vmmHopQueue === queue) this.vmmHopFlow = taken;
    }
    const tr = this.trace;
    if (tr !== undefined && tr.recording && pending >= 0) tr.counter(TRACE_PID.hostKernel, `vEVENTQ ${queue} occupancy`, this.clock.now, pending);
  }

  /** The host-kernel thread of vEVENTQ `queue` (named on first use). */
  private veventqTid(queue: number, type: number): number {
    let tid = this.veventqTids.get(queue);
    if (tid === undefined) {
      tid = TID_VEVENTQ_BASE + this.veventqTids.size;
      this.veventqTids.set(queue, tid);
      this.trace?.threadName(TRACE_PID.hostKernel, tid, `vEVENTQ ${queue} (${veventqTypeName(type)})`);
    }
    return tid;
  }

  private queueFlow(queue: number, id: number): void {
    let flows = this.queuedFlows.get(queue);
    if (flows === undefined) this.queuedFlows.set(queue, (flows = []));
    flows.push(id);
    if (flows.length > MAX_QUEUED_FLOWS) flows.shift();
  }

  /** The syscall side as a {@link SyscallObserver} (one object, made once). */
  readonly syscalls: SyscallObserver = {
    enter: (request) => this.enterSyscall(request),
    leave: (ret) => this.leaveSyscall(ret),
  };
}

function veventqTypeName(type: number): string {
  if (type === iommu_veventq_type.IOMMU_VEVENTQ_TYPE_ARM_SMMUV3) return 'SMMUv3';
  if (type === iommu_veventq_type.IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV) return 'Tegra241 CMDQV';
  return `type ${type}`;
}

function hexAddr(n: number): string {
  return `0x${n.toString(16)}`;
}
