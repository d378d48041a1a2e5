/**
 * The simulated host: physical memory, SMMUv3 instances (each with its kernel driver and, when
 * present, its Tegra241 CMDQV and driver), assignable devices, and the processes (VMMs) that use
 * them through system calls. Several VMs (iommufd contexts) can share one host.
 */

import { VirtualClock } from '../../kit/clock.js';
import { ModelLog } from '../../kit/log.js';
import { traceCatalog, Tracer, type TraceEvent } from '../../kit/trace.js';
import { TRACE_EVENTS as IOMMUFD_EVENTS } from '../iommufd/trace-events.js';
import { TRACE_EVENTS as SMMUV3_EVENTS } from '../smmuv3/trace-events.js';
import { TRACE_EVENTS as CMDQV_EVENTS } from '../tegra241-cmdqv/trace-events.js';
import { DEFAULT_HOST, validateHostConfig, type HostConfig } from '../config.js';
import { PhysicalMemory } from '../memory/physical-memory.js';
import { HostSmmu } from '../smmuv3/smmu.js';
import { Tegra241CmdqvHw } from '../tegra241-cmdqv/cmdqv.js';
import type { IommuDriverOps } from '../iommufd/driver.js';
import { SmmuDriver } from './arm-smmu-v3.js';
import { ArmSmmuV3Iommufd } from './arm-smmu-v3-iommufd.js';
import { HostDevice } from './host-device.js';
import { Process } from './process.js';
import { CmdqvDriver } from './tegra241-cmdqv-driver.js';
import { Tegra241CmdqvIommufd } from './tegra241-cmdqv-iommufd.js';

/** Every trace event of the host (iommufd, SMMUv3, Tegra241 CMDQV). */
export const HOST_TRACE_EVENTS: readonly TraceEvent[] = traceCatalog(IOMMUFD_EVENTS, SMMUV3_EVENTS, CMDQV_EVENTS);

/** One SMMU with its driver and optional CMDQV. */
export interface SmmuInstance {
  readonly name: string;
  readonly hw: HostSmmu;
  readonly driver: SmmuDriver;
  readonly cmdqvHw: Tegra241CmdqvHw | undefined;
  readonly cmdqv: CmdqvDriver | undefined;
  /** The driver's iommufd operations (the SMMUv3's, extended by the CMDQV's when present). */
  readonly iommufd: IommuDriverOps;
}

/** Counters of the kernel's work. */
export interface KernelStats {
  ioctls: number;
  hwQueues: number;
  invalidatedCommands: number;
  eventsForwarded: number;
  eventsLogged: number;
}

/** The host. */
export class HostKernel {
  readonly phys: PhysicalMemory;
  readonly log: ModelLog;
  readonly tracer: Tracer;
  readonly clock: VirtualClock;
  readonly smmus = new Map<string, SmmuInstance>();
  readonly devices: HostDevice[] = [];
  readonly stats: KernelStats = { ioctls: 0, hwQueues: 0, invalidatedCommands: 0, eventsForwarded: 0, eventsLogged: 0 };
  /**
   * The process the kernel is working for (Linux's `current`): set for the length of each of a
   * process's system calls and of its loads/stores to a device mapping, so the host's log and
   * trace attribute what a VM causes to that VM's process.
   */
  current: Process | undefined = undefined;
  /** Message of the last failed ioctl (what the kernel would have logged, for diagnostics). */
  lastError = '';
  private nextPid = 100;

  constructor(
    readonly config: HostConfig = DEFAULT_HOST,
    opts: { log?: ModelLog; tracer?: Tracer; clock?: VirtualClock } = {},
  ) {
    const errs = validateHostConfig(config);
    if (errs.length) throw new Error(`invalid host description: ${errs.join('; ')}`);
    // The host's own dmesg and trace: no VM's log or tracer (a VM sees its own entries by pid).
    this.log = opts.log ?? new ModelLog();
    this.tracer = opts.tracer ?? new Tracer(HOST_TRACE_EVENTS);
    this.clock = opts.clock ?? new VirtualClock();
    this.log.now = () => this.clock.now;
    this.tracer.now = () => this.clock.now;
    this.log.pid = () => this.current?.pid ?? 0;
    this.tracer.pid = () => this.current?.pid ?? 0;
    this.phys = new PhysicalMemory(config.ramBytes, config.pageSize, config.hugepages ? config.hugepageSize : config.pageSize);
    for (const s of config.smmus) {
      const hw = new HostSmmu(s, this.phys, this.log, this.tracer);
      const driver = new SmmuDriver(hw, this.phys, this.log);
      const cmdqvHw = s.cmdqv ? new Tegra241CmdqvHw(s.cmdqv, hw, this.phys, this.log, this.tracer) : undefined;
      const cmdqv = cmdqvHw ? new CmdqvDriver(cmdqvHw, driver, this.log) : undefined;
      const iommufd = cmdqv
        ? new Tegra241CmdqvIommufd(s.name, hw, driver, this.phys, cmdqv)
        : new ArmSmmuV3Iommufd(s.name, hw, driver, this.phys);
      const inst: SmmuInstance = { name: s.name, hw, driver, cmdqvHw, cmdqv, iommufd };
      driver.onEvent = (rec) => this.handleEvent(inst, rec);
      this.smmus.set(s.name, inst);
    }
    for (const d of config.devices) this.devices.push(new HostDevice(d, this.smmus.get(d.smmu)!));
  }

  /** Start a process (a VMM). */
  createProcess(): Process {
    return new Process(this, this.nextPid++);
  }

  /** Device by PCI address. */
  device(bdf: string): HostDevice | undefined {
    return this.devices.find((d) => d.bdf === bdf);
  }

  /** SMMU event: forward to the owning VM's vEVENTQ when it qualifies, else log it. */
  private handleEvent(smmu: SmmuInstance, rec: Uint32Array): void {
    const sid = rec[1]!;
    const dev = this.devices.find((d) => d.smmu === smmu && d.sid === sid);
    if (dev?.binding && dev.binding.ctx.forwardEvent(dev.binding.obj, rec)) {
      this.stats.eventsForwarded++;
      return;
    }
    this.stats.eventsLogged++;
    // The event concerns the VM the device is bound to, whoever the kernel was running for.
    const prev = this.current;
    if (dev?.binding) this.current = dev.binding.ctx.proc;
    this.log.guestError(`smmuv3:${smmu.name}`, `event 0x${(rec[0]! & 0xff).toString(16)} for SID 0x${sid.toString(16)} not forwarded`);
    this.current = prev;
  }
}
