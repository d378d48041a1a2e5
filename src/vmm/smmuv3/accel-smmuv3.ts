/**
 * The VMM's emulated accelerated SMMUv3 (QEMU `-device arm-smmuv3,accel=on`).
 *
 * The guest sees an ordinary SMMUv3 register file (two 64 KiB pages, declared in
 * `arch/smmuv3/registers.ts`) whose command queue is trapped: configuration commands install
 * the guest's STEs on the host as nested HWPTs of an iommufd vIOMMU, invalidations are
 * forwarded with IOMMU_HWPT_INVALIDATE, and host faults come back through a vEVENTQ into the
 * guest's event queue. Stage 1 is walked by the host SMMU in guest memory; stage 2 is the
 * VMM's nesting-parent HWPT over guest RAM. A CMDQV extension (Tegra241) plugs in through
 * {@link CmdqvOps} (docs/reference/qemu-accel-smmuv3.md §4, §7–10, §12.2).
 *
 * The device is assembled from its parts, one file each: the register frame
 * (`register-frame.ts`), the trapped command-queue walk (`cmdq-walk.ts`, with the command table
 * and forwarding batch in `cmdq.ts`), the host objects and STE installs (`viommu.ts`) and the
 * event path (`events.ts`). Its architectural state is one plain {@link AccelSmmuV3State}
 * (`accel-state.ts`: the register file's words, the derived IDRs, the host objects it keeps),
 * saved and restored through {@link Persist}; the selected CMDQV ops, backend, main loop,
 * counters and error reports are runtime.
 *
 * Nothing the guest writes can throw out of the MMIO handlers: bad input is logged with
 * `ModelLog.guestError` and gets the architected outcome; host failures are kept in
 * {@link AccelSmmuV3.hostErrors} (QEMU's error_report) and, on the command queue, become
 * CERROR_ILL (as QEMU's forwarding failures do).
 *
 * Where this model differs from QEMU (hw/arm/smmuv3.c + smmuv3-accel.c), deliberately:
 * - Forwarded invalidations are batched (see `cmdq.ts`); QEMU sends one per ioctl.
 * - SMMUEN 0→1 installs every device's STE and 1→0 attaches the GBPA HWPT; a GBPA update
 *   re-attaches only while the SMMU is disabled (GBPA has no effect otherwise). QEMU changes
 *   host attachments only on CFGI_* and GBPA updates (the latter even with SMMUEN = 1).
 * - A device joining an existing vIOMMU is attached to the configuration in force at once
 *   (QEMU leaves it on VFIO's stage-2 HWPT until the next reset or CFGI_STE); a device
 *   attached while SMMUEN = 1 gets abort, then its STE (QEMU: the GBPA HWPT).
 * - ATC_INV is forwarded when IDR0.ATS is advertised (QEMU tests its OnOffAuto `ats` field
 *   for zero, which is true only for `auto`).
 * - TLBI_S12_VMALL / TLBI_S2_IPA are "unhandled" (traced) as docs/reference/qemu-accel-smmuv3.md §12.2 says; QEMU's code
 *   raises CERROR_ILL for them on a stage-1-only SMMU.
 * - Nested STE data is masked to the bits the host accepts (S1ContextPtr [51:6]); QEMU's
 *   mask keeps RES0 bits 55:52, which the host refuses with EIO.
 * - Stream table: a 2-level descriptor's Span s covers 2^(s-1) STEs (architecture; QEMU
 *   accepts indexes up to 2^s - 1); a linear table is aligned to 2^(LOG2SIZE+6) bytes.
 * - A full guest event queue drops the event and toggles EVENTQ_PROD.OVFLG (architecture);
 *   events while EVENTQ is disabled are dropped. QEMU raises GERROR.EVENTQ_ABT_ERR for both.
 * - The command queue is capped at the current IDR1.CMDQS (after the CMDQV's cap, docs/reference/qemu-accel-smmuv3.md §7.2);
 *   QEMU caps it at the constant 19.
 * - `reset()` restores every register's declared reset value (QEMU keeps STRTAB_*, CR1/CR2,
 *   IRQ configuration and queue base addresses across reset, only resetting LOG2SIZE to 19).
 * - Pages 0 and 1 are not aliased: only the registers of the table exist (EVENTQ_PROD/CONS at
 *   0x100A8/0x100AC); QEMU decodes `offset & ~0x10000`.
 * - `oas=auto` takes the host's OAS capped at 48 bits.
 * - Events are drained by {@link AccelSmmuV3.pollEvents}, which the device registers itself as
 *   the vEVENTQ's fd handler on the main loop it is given.
 */

import * as R from '../../arch/smmuv3/registers.js';
import { Field } from '../../kit/bits.js';
import type { IrqLine } from '../../kit/irq.js';
import type { ModelLog } from '../../kit/log.js';
import type { MemoryRegion } from '../../kit/memory-region.js';
import { cloneState, type Persist } from '../../kit/persist.js';
import type { RegisterBank } from '../../kit/register-bank.js';
import type { Tracer } from '../../kit/trace.js';
import { iommu_hw_info_arm_smmuv3, iommu_hw_info_type, iommu_hwpt_data_type } from '../../uapi/iommufd.js';
import type { IommufdBackend, Veventq } from '../backends/iommufd.js';
import type { MainLoop } from '../main-loop.js';
import { emptyStats, type AccelDeviceState, type AccelSmmuStats, type AccelSmmuV3State } from './accel-state.js';
import { CommandQueueWalk } from './cmdq-walk.js';
import { SMMUV3_CMDQV_NONE, type AccelHostDevice, type CmdqvHost, type CmdqvOps } from './cmdqv-ops.js';
import { EventPath } from './events.js';
import { HostCalls, messageOf } from './host-calls.js';
import { autoFinalise, hostIncompatibility, initialIdr, type Idr } from './idr.js';
import { hasAutoProperty, validateProperties, type AccelSmmuV3Properties } from './properties.js';
import { SmmuRegisterFrame } from './register-frame.js';
import type { GuestMemory } from './ste-install.js';
import * as T from './trace-events.js';
import { AccelViommu } from './viommu.js';

export { SMMU_IRQ_CMD_SYNC, SMMU_IRQ_EVTQ, SMMU_IRQ_GERROR, SMMU_IRQ_PRIQ } from './register-frame.js';
export type { AccelDeviceState, AccelSmmuStats, AccelSmmuV3State, ViommuState } from './accel-state.js';

/** Migration blocker text registered when accel=on (docs/reference/qemu-accel-smmuv3.md §8.3). */
export const MIGRATION_BLOCKER_TEXT = 'Migration not supported with SMMUv3 accelerator mode enabled';
/** Unplug blocker on the device that created the vIOMMU while a CMDQV is active (docs/reference/qemu-accel-smmuv3.md §8.1). */
export const CMDQV_UNPLUG_BLOCKER_TEXT =
  'CMDQV is active: removing the device that established the viommu association would break the guest CMDQV';
/** Hint appended when cmdqv=on and the host cannot provide it (docs/reference/qemu-accel-smmuv3.md §4.2). */
const CMDQV_NOT_SUPPORTED_HINT = 'CMDQV requested but not supported';

/** The devfn of a PCI requester ID (bus << 8 | devfn), which the attach traces name. */
const RID_DEVFN = new Field('devfn', 0, 8);

/** What the SMMU needs from the machine. */
export interface AccelSmmuV3Deps {
  /** `-object iommufd` of the VFIO devices behind this SMMU (required once a device attaches). */
  readonly backend: IommufdBackend | undefined;
  /** Guest-physical memory: stream table, command and event queues. */
  readonly guestMemory: GuestMemory;
  /** The VMM's event loop: the vEVENTQ's fd handler is registered there. */
  readonly mainLoop: MainLoop;
  readonly log: ModelLog;
  readonly tracer: Tracer;
  /** The CMDQV implementation, bound to this SMMU (Tegra241); absent = not compiled in. */
  readonly cmdqvFactory?: (host: CmdqvHost) => CmdqvOps;
  /** Smallest page size backing guest RAM (QEMU's qemu_minrampagesize), for the CMDQV. */
  readonly minRamPageSize: () => number;
}

/** The accelerated SMMUv3. */
export class AccelSmmuV3 implements Persist<AccelSmmuV3State> {
  readonly props: Readonly<AccelSmmuV3Properties>;
  /** The 0x20000-byte register frame (sysbus MMIO 0). */
  readonly mmio: MemoryRegion;
  /** EVENTQ, PRIQ, CMD_SYNC, GERROR (sysbus IRQs 0–3). */
  readonly irqs: readonly [IrqLine, IrqLine, IrqLine, IrqLine];
  /** Register file and MMIO dispatch. */
  readonly bank: RegisterBank;
  readonly stats: AccelSmmuStats = emptyStats();
  /** Set when accel=on: migration is refused. */
  readonly migrationBlocker: string | undefined;

  private readonly state: AccelSmmuV3State;
  private readonly frame: SmmuRegisterFrame;
  private readonly hostCalls: HostCalls;
  private readonly viommu: AccelViommu;
  private readonly events: EventPath;
  private readonly cmdq: CommandQueueWalk;
  /** Selected CMDQV ops (runtime: the CMDQV device keeps its own state). */
  private cmdqv: CmdqvOps | undefined;
  private cmdqvHostView: CmdqvHost | undefined;

  /**
   * Realize: validate the properties (throws an Error with QEMU's text), derive the ID
   * registers and reset the register file.
   */
  constructor(
    opts: AccelSmmuV3Properties,
    private readonly deps: AccelSmmuV3Deps,
  ) {
    validateProperties(opts);
    this.props = Object.freeze({ ...opts });
    this.migrationBlocker = opts.accel ? MIGRATION_BLOCKER_TEXT : undefined;
    this.frame = new SmmuRegisterFrame(opts.id, `arm-smmuv3:${opts.id}`, deps.log, deps.tracer);
    this.bank = this.frame.bank;
    this.mmio = this.frame.mmio;
    this.irqs = this.frame.irqs;
    this.state = {
      registers: this.bank.file.words,
      idr: initialIdr(opts),
      autoFinalised: false,
      s2Hwpt: undefined,
      viommu: undefined,
      veventq: undefined,
      devices: [],
    };
    this.hostCalls = new HostCalls(deps.backend, this.stats);
    const parts = { state: this.state, frame: this.frame, host: this.hostCalls, stats: this.stats, guestMemory: deps.guestMemory, log: deps.log, tracer: deps.tracer };
    this.events = new EventPath({ ...parts, mainLoop: deps.mainLoop });
    this.viommu = new AccelViommu({ ...parts, events: this.events });
    this.cmdq = new CommandQueueWalk({ ...parts, viommu: this.viommu });
    this.bank
      .onWrite(R.CR0, (_reg, prevLo) => this.writeCr0(prevLo))
      .onWrite(R.GBPA, (_reg, prevLo) => this.writeGbpa(prevLo))
      .onWrite(R.GERRORN, (_reg, prevLo) => this.writeGerrorn(prevLo))
      .onWrite(R.CMDQ_PROD, () => this.cmdq.consume());
    this.frame.reset(this.state.idr);
  }

  // ------------------------------------------------------------------------------------------
  // Public API

  /** The most recent host-side failures (QEMU's error_report), oldest first; see {@link hostErrorCount}. */
  get hostErrors(): string[] {
    return this.hostCalls.errors.entries();
  }

  /** Host-side failures reported since the device was created (exact, beyond those kept). */
  get hostErrorCount(): number {
    return this.hostCalls.errors.total;
  }

  /** Whether any property waits for the first host device (`auto`). */
  get autoMode(): boolean {
    return this.props.accel && hasAutoProperty(this.props);
  }

  /** Whether the `auto` properties have been resolved from a host device. */
  get autoFinalised(): boolean {
    return this.state.autoFinalised;
  }

  /**
   * IDR0.ATS as the guest sees it: `ats=on`, or `ats=auto` once resolved from the host. The
   * IORT root-complex ATS attribute is built from this (docs/reference/acpi.md §2.4).
   */
  get atsAdvertised(): boolean {
    return R.IDR0.f.ATS.get(this.state.idr[0]) === 1;
  }

  /** The selected CMDQV ops, if any. */
  get cmdqvOps(): CmdqvOps | undefined {
    return this.cmdqv;
  }

  /** SMMUV3_CMDQV_NONE, or the selected CMDQV's type (QEMU's smmuv3_accel_cmdqv_type). */
  cmdqvType(): number {
    return this.cmdqv ? this.cmdqv.getType() : SMMUV3_CMDQV_NONE;
  }

  /** The iommufd vIOMMU id, once a device has attached. */
  get viommuId(): number | undefined {
    return this.state.viommu?.id;
  }

  /** The pre-allocated abort / bypass nested HWPTs. */
  get abortHwptId(): number | undefined {
    return this.state.viommu?.abortHwpt;
  }
  get bypassHwptId(): number | undefined {
    return this.state.viommu?.bypassHwpt;
  }

  /** The SMMUv3 vEVENTQ, once allocated. */
  get veventq(): Readonly<Veventq> | undefined {
    return this.state.veventq;
  }

  /**
   * The nesting-parent (stage-2) HWPT the vIOMMU is built on. In QEMU this is the HWPT VFIO
   * allocated for the device's address space, which for every device behind an accelerated
   * SMMU is the one shared alias of system memory — so the machine allocates it once (over
   * the IOAS holding guest RAM, with IOMMU_HWPT_ALLOC_NEST_PARENT), attaches the devices to it
   * and hands its id here before the first {@link attachDevice}. Unplugged devices return to
   * it.
   */
  setS2Hwpt(hwptId: number): void {
    this.state.s2Hwpt = hwptId;
  }

  /** The nesting-parent HWPT given with {@link setS2Hwpt}. */
  get s2HwptId(): number | undefined {
    return this.state.s2Hwpt;
  }

  /** Accel state of the device with guest StreamID `sid` (for reports and tests). */
  deviceState(sid: number): { devId: number; vdevId: number | undefined; s1Hwpt: number | undefined; blocker: string | undefined } | undefined {
    const device = this.viommu.findDevice(sid);
    return device && { devId: device.hostDevice.devId, vdevId: device.vdevId, s1Hwpt: device.s1Hwpt, blocker: device.blocker };
  }

  /**
   * A VFIO device behind this SMMU is realized (QEMU's set_iommu_device, docs/reference/qemu-accel-smmuv3.md §4.1 step 3): check
   * the host SMMU, resolve `auto` properties, and — for the first device — select the CMDQV,
   * allocate the vIOMMU with its abort/bypass HWPTs and attach the GBPA-selected one. Throws an
   * Error with QEMU's message when the device cannot be used (its realize fails).
   */
  attachDevice(dev: AccelHostDevice): void {
    if (!this.props.accel) throw new Error(`arm-smmuv3 ${this.props.id}: accel=off has no host-backed devices`);
    if (!this.deps.backend) throw new Error('vfio-pci endpoint devices without an iommufd backend not allowed when using arm-smmuv3,accel=on');
    const existing = this.viommu.findDevice(dev.guestSid);
    if (existing) {
      if (existing.hostDevice.devId !== dev.devId) throw new Error(`Device already has an associated hiodi 0x${dev.devId.toString(16)}`);
      return;
    }
    this.checkHostCompatible(dev);
    // Not a copy: the guest StreamID follows the live bus number (firmware numbers root ports).
    const device: AccelDeviceState = { hostDevice: dev, vdevId: undefined, s1Hwpt: undefined, blocker: undefined };
    const viommu = this.state.viommu;
    if (!viommu) {
      if (!this.cmdqv) this.selectCmdqv(dev);
      this.viommu.allocViommu(dev, this.cmdqv);
      if (this.cmdqv) device.blocker = CMDQV_UNPLUG_BLOCKER_TEXT;
      const created = this.state.viommu!;
      device.hwpt = this.frame.smmuEnabled ? created.abortHwpt : this.viommu.gbpaHwpt();
    } else {
      // A device joining the vIOMMU leaves VFIO's stage-2-only HWPT at once (QEMU leaves it
      // there until the next reset or CFGI_STE).
      const hwpt = this.frame.smmuEnabled ? viommu.abortHwpt : this.viommu.gbpaHwpt();
      this.hostCalls.run((backend) => backend.attachDevice(dev.vfioFd, hwpt));
      device.hwpt = hwpt;
    }
    this.state.devices.push(device);
    // Attached while the SMMU is on (hot-plug): its STE is in force, not GBPA.
    if (this.frame.smmuEnabled) this.viommu.installSteReporting(device);
    this.deps.tracer.emit(T.T_ACCEL_SET_IOMMU_DEVICE, RID_DEVFN.get(dev.guestSid), dev.devId);
  }

  /**
   * `device_del` of a device (QEMU's unset_iommu_device, docs/reference/qemu-accel-smmuv3.md §8.1): refused while it holds the
   * CMDQV unplug blocker; otherwise it returns to the stage-2 HWPT, its nested HWPT and vDEVICE
   * are destroyed, and the vIOMMU goes with the last device.
   */
  unplug(dev: AccelHostDevice): void {
    const devices = this.state.devices;
    const index = devices.findIndex((device) => device.hostDevice.devId === dev.devId);
    if (index < 0) return;
    const device = devices[index]!;
    const { devId, vfioFd, guestSid } = device.hostDevice;
    if (device.blocker) throw new Error(device.blocker);
    const s2Hwpt = this.state.s2Hwpt;
    if (s2Hwpt !== undefined) {
      try {
        this.hostCalls.run((backend) => backend.attachDevice(vfioFd, s2Hwpt));
      } catch {
        this.hostCalls.report(`Unable to attach the default HW pagetable: hiodi devid 0x${devId.toString(16)}`);
      }
    }
    if (device.s1Hwpt !== undefined) this.hostCalls.freeId(device.s1Hwpt);
    if (device.vdevId !== undefined) this.hostCalls.freeId(device.vdevId);
    devices.splice(index, 1);
    this.deps.tracer.emit(T.T_ACCEL_UNSET_IOMMU_DEVICE, RID_DEVFN.get(guestSid), devId);
    if (devices.length === 0) this.viommu.freeViommu();
  }

  /**
   * Device reset (docs/reference/qemu-accel-smmuv3.md §7.1): the SMMUv3 registers (IDR1.CMDQS back to 19), then the accel reset
   * (the GBPA-selected HWPT for every device), then the CMDQV's reset (which may cap CMDQS).
   */
  reset(): void {
    this.deps.tracer.emit(T.T_RESET_EXIT);
    this.frame.reset(this.state.idr);
    this.viommu.attachGbpaHwptAll();
    const cmdqv = this.cmdqv;
    if (cmdqv) this.hostCalls.run(() => cmdqv.reset());
  }

  /**
   * Drain the SMMUv3 vEVENTQ into the guest event queue (the vEVENTQ's main-loop handler).
   * Returns the number of records delivered.
   */
  pollEvents(): number {
    return this.events.pollEvents();
  }

  /** A deep copy of the architectural state (registers, IDRs, host objects, devices). */
  save(): AccelSmmuV3State {
    return cloneState(this.state);
  }

  /**
   * Load a state saved from an SMMU built with the same properties and deps, and re-derive
   * the runtime: the vEVENTQ's main-loop handler follows the restored vEVENTQ.
   */
  restore(saved: AccelSmmuV3State): void {
    const copy = cloneState(saved);
    const state = this.state;
    const watchedFd = state.veventq?.fd;
    state.registers.set(copy.registers);
    state.idr = copy.idr;
    state.autoFinalised = copy.autoFinalised;
    state.s2Hwpt = copy.s2Hwpt;
    state.viommu = copy.viommu;
    state.veventq = copy.veventq;
    state.devices.splice(0, state.devices.length, ...copy.devices);
    const restoredFd = copy.veventq?.fd;
    if (watchedFd === restoredFd) return;
    if (watchedFd !== undefined) this.deps.mainLoop.setFdHandler(watchedFd, undefined);
    if (restoredFd !== undefined) this.events.watch(restoredFd);
  }

  /**
   * Load a state saved on another machine (possibly another host) into this SMMU, which the
   * same command line built on its own host: registers and ID registers come from the image;
   * the host objects are this machine's or made again, in the order the guest's bring-up made
   * them — vDEVICEs, the SMMUv3 vEVENTQ, then `restoreCmdqv` (the CMDQV's HW queues) here, and
   * the nested stage-1 HWPTs in the step this returns (a machine with several SMMUs runs every
   * first step, then every second, as the guest brings up every SMMU before attaching domains).
   * Each device is attached to the same kind of HWPT it had (abort, bypass, its stage-1, stage
   * 2). Host ids differ from the image's; the guest never sees them. Both steps throw (with the
   * host's reason) when a call fails: the caller closes the machine.
   */
  restoreOnHost(saved: AccelSmmuV3State, restoreCmdqv?: () => void): () => void {
    const state = this.state;
    state.registers.set(saved.registers);
    state.idr = [...saved.idr] as Idr;
    state.autoFinalised = saved.autoFinalised;
    const viommu = state.viommu;
    const was = saved.viommu;
    if (!viommu || !was || !this.deps.backend) {
      restoreCmdqv?.();
      return () => {};
    }
    const devices = saved.devices.map((s) => {
      const device = this.viommu.findDevice(s.hostDevice.guestSid);
      if (!device) throw new Error(`${this.props.id}: no device with guest SID 0x${s.hostDevice.guestSid.toString(16)} to restore`);
      return { s, device };
    });
    for (const { s, device } of devices) {
      if (s.vdevId !== undefined && device.vdevId === undefined) {
        const { devId } = device.hostDevice;
        device.vdevId = this.hostCalls.run((b) => b.allocVdev(devId, viommu.id, device.hostDevice.guestSid));
      }
    }
    if (saved.veventq) this.events.allocVeventq();
    restoreCmdqv?.();
    return () => {
      for (const { s, device } of devices) this.restoreAttachment(saved, s, device);
    };
  }

  /** A restored device's nested HWPT (again from its saved STE data) and attachment. */
  private restoreAttachment(saved: AccelSmmuV3State, s: AccelDeviceState, device: AccelDeviceState): void {
    const viommu = this.state.viommu!;
    const was = saved.viommu!;
    if (s.s1Hwpt !== undefined && s.s1Data) {
      const data = s.s1Data;
      const { devId } = device.hostDevice;
      device.s1Hwpt = this.hostCalls.run((b) => b.allocHwpt(devId, viommu.id, 0, iommu_hwpt_data_type.IOMMU_HWPT_DATA_ARM_SMMUV3, data));
      device.s1Data = data.slice();
    }
    if (s.hwpt === undefined) return;
    let hwpt: number | undefined;
    if (s.hwpt === was.abortHwpt) hwpt = viommu.abortHwpt;
    else if (s.hwpt === was.bypassHwpt) hwpt = viommu.bypassHwpt;
    else if (s.hwpt === s.s1Hwpt) hwpt = device.s1Hwpt;
    else if (s.hwpt === saved.s2Hwpt) hwpt = this.state.s2Hwpt;
    if (hwpt === undefined) throw new Error(`${this.props.id}: device 0x${s.hostDevice.guestSid.toString(16)} was attached to HWPT ${s.hwpt}, which the image does not describe`);
    const target = hwpt;
    this.hostCalls.run((b) => b.attachDevice(device.hostDevice.vfioFd, target));
    device.hwpt = target;
  }

  // ------------------------------------------------------------------------------------------
  // Register writes with side effects

  private writeCr0(prevLo: number): void {
    const { file, regs } = this.frame;
    file.set32(regs.cr0ack, file.get32(regs.cr0)); // acknowledged at once: reserved bits are RAZ in both
    const wasOn = R.CR0.f.SMMUEN.get(prevLo) === 1;
    const isOn = this.frame.smmuEnabled;
    if (isOn !== wasOn) {
      // The configuration in force changes: STEs when the SMMU turns on, GBPA when it turns off.
      if (isOn) this.viommu.installAll();
      else this.viommu.attachGbpaHwptAll();
    }
    this.cmdq.consume();
    try {
      this.events.allocVeventq();
    } catch (e) {
      this.hostCalls.report(messageOf(e));
    }
  }

  private writeGbpa(prevLo: number): void {
    if (this.frame.updateGbpa(prevLo) && !this.frame.smmuEnabled) this.viommu.attachGbpaHwptAll();
  }

  private writeGerrorn(prev: number): void {
    this.frame.acknowledgeGerrorn(prev);
    // Acknowledging CMDQ_ERR lets the command queue run again.
    this.cmdq.consume();
  }

  // ------------------------------------------------------------------------------------------
  // Device attach: host check, CMDQV selection

  /** QEMU's smmuv3_accel_hw_compatible: the host's ARM_SMMUV3 hw_info against our IDRs. */
  private checkHostCompatible(dev: AccelHostDevice): void {
    const info = this.hostCalls.run((backend) => backend.getDeviceInfo(dev.devId, iommu_hw_info_type.IOMMU_HW_INFO_TYPE_DEFAULT, iommu_hw_info_arm_smmuv3.size));
    if (info.type !== iommu_hw_info_type.IOMMU_HW_INFO_TYPE_ARM_SMMUV3) {
      throw new Error(`Wrong data type (${info.type}) for Host SMMUv3 device info`);
    }
    const hostIdr = (iommu_hw_info_arm_smmuv3.decode(info.data).idr as number[]).slice(0, 6) as Idr;
    if (this.autoMode && !this.state.autoFinalised) {
      // Resolved once, from the first device; later devices must match these values.
      this.state.idr = autoFinalise(this.state.idr, hostIdr, this.props);
      this.state.autoFinalised = true;
      this.frame.syncIdr(this.state.idr, false);
    }
    const why = hostIncompatibility(this.state.idr, hostIdr);
    if (why) throw new Error(why);
  }

  /** CMDQV selection (docs/reference/qemu-accel-smmuv3.md §4.2): off / auto (errors suppressed) / on (errors fail the attach). */
  private selectCmdqv(dev: AccelHostDevice): void {
    const mode = this.props.cmdqv;
    if (mode === 'off') return;
    const factory = this.deps.cmdqvFactory;
    if (!factory) {
      if (mode === 'on') throw new Error(`No CMDQV ops found\n${CMDQV_NOT_SUPPORTED_HINT}`);
      return;
    }
    const ops = factory(this.cmdqvHost(this.deps.backend!));
    try {
      this.hostCalls.run(() => ops.probe(dev));
    } catch (e) {
      if (mode === 'auto') return;
      throw new Error(`${messageOf(e)}\n${CMDQV_NOT_SUPPORTED_HINT}`);
    }
    this.hostCalls.run(() => ops.init());
    this.cmdqv = ops;
  }

  /** What the CMDQV sees of this SMMU: one view for the device's life. */
  private cmdqvHost(backend: IommufdBackend): CmdqvHost {
    this.cmdqvHostView ??= {
      backend,
      getCmdqs: () => this.frame.cmdqs,
      setCmdqs: (cmdqs: number) => {
        this.frame.cmdqs = Math.max(0, Math.min(cmdqs, R.IDR1.f.CMDQS.max));
      },
      minRamPageSize: () => this.deps.minRamPageSize(),
    };
    return this.cmdqvHostView;
  }
}
