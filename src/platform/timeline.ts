/**
 * Modelled time and the Perfetto story of a run. The platform (the composition root) hangs one
 * {@link Timeline} on the layers' seams: the VMM address space's exit path (every trapped or
 * direct guest access), the VMM process's syscall entry (every ioctl), and each host command
 * queue's consumption (SMMU CMDQ, every VCMDQ). At each seam it charges the cost model's
 * figure to the virtual clock (arithmetic only: one preset number per exit, ioctl or access,
 * one multiply-add per consumed batch) and, when a trace is being written, records a slice.
 *
 * The trace has one process per layer, a thread per queue, B/E slices for VM exits, MMIO
 * emulation, ioctls, consumed batches and host-SMMU DMA translations, flow arrows from the guest's access (a doorbell on
 * page0, or a trapped CMDQ_PROD write through the ioctl) to the queue that consumed its
 * commands, and counters (ring occupancy, VM exits so far). Names follow QEMU's and Linux's
 * trace events where one exists (`kvm_exit`, `memory_region_ops_write`, `sys_enter_ioctl`).
 */

import { ACCESS_DIRECT, ACCESS_TRAPPED, type AccessObserver } from '../kit/address-space.js';
import type { VirtualClock } from '../kit/clock.js';
import { TRACK_PIDS, type ChromeTraceWriter, type QueueObserver, type SyscallObserver, type TraceEvent, type TranslationObserver } from '../kit/trace.js';
import { IOCTLS } from '../uapi/iommufd.js';
import { VFIO_IOCTLS } from '../uapi/vfio.js';
import type { CostModel } from './cost-model.js';

/** Trace processes, one per layer (pid = sort order, top to bottom as the stack is drawn). */
export const TRACE_PID = { guest: 1, vmm: 2, hostKernel: 3, hostSmmu: 4, cmdqv: 5 } as const;
/** Threads of the guest, VMM and host-kernel processes. */
const TID_VCPU = 1;
const TID_MAIN_LOOP = 2;
const TID_SYSCALLS = 1;
const TID_HOST_EVENTS = 2;
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

/** The host units whose queues the timeline observes. */
export interface TimelineUnit {
  readonly name: string;
  readonly smmu: { cmdqObserver: QueueObserver | undefined; translationObserver: TranslationObserver | undefined };
  readonly cmdqv: { observer: QueueObserver | undefined; readonly numVcmdqs: number } | undefined;
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
  private readonly ioctlNames = new Map<number, string>();
  /** What each nesting depth opened (so leave closes exactly that). */
  private readonly opened = new Uint8Array(MAX_DEPTH);
  private depth = 0;
  /** The guest access now being handled is traced: flows start from its slice. */
  private causeOpen = false;
  /** The flow the current ioctl continues (0 none). */
  private ioctlFlow = 0;
  private inIoctl = 0;
  private nextFlow = 1;
  private exitCount = 0;
  /** Unit names by index (for thread names). */
  private readonly units: TimelineUnit[] = [];

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
    for (const i of IOCTLS) this.ioctlNames.set(i.number, i.name);
    for (const i of VFIO_IOCTLS) this.ioctlNames.set(i.number, i.name);
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
    this.trace?.threadName(TRACE_PID.hostSmmu, smmuTid + 2, `${u.name} DMA translations`);
    if (u.cmdqv) {
      const base = 1 + i * VCMDQ_TIDS;
      u.cmdqv.observer = new QueueTrack(this, TRACE_PID.cmdqv, base, this.vcmdqCmdNs, `${u.name} VCMDQ`);
      for (let q = 0; q < Math.min(u.cmdqv.numVcmdqs, VCMDQ_TIDS); q++) this.trace?.threadName(TRACE_PID.cmdqv, base + q, `${u.name} VCMDQ${q}`);
    }
  }

  /** Stop observing the units (their queues charge nothing afterwards). */
  detachUnits(): void {
    for (const u of this.units) {
      u.smmu.cmdqObserver = undefined;
      u.smmu.translationObserver = undefined;
      if (u.cmdqv) u.cmdqv.observer = undefined;
    }
    this.units.length = 0;
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
    const what = d < MAX_DEPTH ? this.opened[d]! : OPENED_NONE;
    if (flags & ACCESS_TRAPPED) {
      this.clock.charge(this.emulationNs);
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

  /** ioctl(2) entry. */
  enterSyscall(request: number): void {
    this.inIoctl++;
    const tr = this.trace;
    if (tr === undefined || !tr.recording) {
      if (tr) tr.dropped++;
      this.clock.charge(this.ioctlNs);
      return;
    }
    const now = this.clock.now;
    tr.begin(TRACE_PID.hostKernel, TID_SYSCALLS, this.ioctlNames.get(request) ?? 'sys_enter_ioctl', 'syscalls', now, { request: hexAddr(request) });
    if (this.causeOpen && this.inIoctl === 1) {
      const id = this.nextFlow++;
      tr.flow('s', TRACE_PID.guest, TID_VCPU, id, 'trapped invalidation', now);
      tr.flow('t', TRACE_PID.hostKernel, TID_SYSCALLS, id, 'trapped invalidation', now);
      this.ioctlFlow = id;
    }
    this.clock.charge(this.ioctlNs);
  }

  /** ioctl(2) exit. */
  leaveSyscall(ret: number): void {
    this.inIoctl--;
    if (this.inIoctl === 0) this.ioctlFlow = 0;
    this.trace?.end(TRACE_PID.hostKernel, TID_SYSCALLS, this.clock.now, { ret });
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
    if (this.ioctlFlow !== 0) {
      tr.flow('f', pid, tid, this.ioctlFlow, 'trapped invalidation', now);
      this.ioctlFlow = 0;
    } else if (this.causeOpen && this.inIoctl === 0) {
      const id = this.nextFlow++;
      tr.flow('s', TRACE_PID.guest, TID_VCPU, id, 'doorbell', now);
      tr.flow('f', pid, tid, id, 'doorbell', now);
    }
    this.clock.charge(costNs);
    const end = this.clock.now;
    tr.end(pid, tid, end);
    tr.counter(pid, counter, end, 0);
  }

  /** The syscall side as a {@link SyscallObserver} (one object, made once). */
  readonly syscalls: SyscallObserver = {
    enter: (request) => this.enterSyscall(request),
    leave: (ret) => this.leaveSyscall(ret),
  };
}

function hexAddr(n: number): string {
  return `0x${n.toString(16)}`;
}
