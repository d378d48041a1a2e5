/**
 * The VMM's emulated accelerated SMMUv3 (QEMU `-device arm-smmuv3,accel=on`).
 *
 * The guest sees an ordinary SMMUv3 register file (two 64 KiB pages, declared in
 * `arch/smmuv3/registers.ts`) whose command queue is trapped: configuration commands install
 * the guest's STEs on the host as nested HWPTs of an iommufd vIOMMU, invalidations are
 * forwarded with IOMMU_HWPT_INVALIDATE, and host faults come back through a vEVENTQ into the
 * guest's event queue. Stage 1 is walked by the host SMMU in guest memory; stage 2 is the
 * VMM's nesting-parent HWPT over guest RAM. A CMDQV extension (Tegra241) plugs in through
 * {@link CmdqvOps} (spec qemu-cmdqv.md §3.1–3.4, §3.9–3.15, §5.2).
 *
 * All state lives in the register file (guest-visible registers) and in {@link AccelState}
 * (host objects). Nothing the guest writes can throw out of the MMIO handlers: bad input is
 * logged with `ModelLog.guestError` and gets the architected outcome; host failures are kept
 * in {@link AccelSmmuV3.hostErrors} (QEMU's error_report) and, on the command queue, become
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
 * - TLBI_S12_VMALL / TLBI_S2_IPA are "unhandled" (traced) as spec §5.2 says; QEMU's code
 *   raises CERROR_ILL for them on a stage-1-only SMMU.
 * - Nested STE data is masked to the bits the host accepts (S1ContextPtr [51:6]); QEMU's
 *   mask keeps RES0 bits 55:52, which the host refuses with EIO.
 * - Stream table: a 2-level descriptor's Span s covers 2^(s-1) STEs (architecture; QEMU
 *   accepts indexes up to 2^s - 1); a linear table is aligned to 2^(LOG2SIZE+6) bytes.
 * - A full guest event queue drops the event and toggles EVENTQ_PROD.OVFLG (architecture);
 *   events while EVENTQ is disabled are dropped. QEMU raises GERROR.EVENTQ_ABT_ERR for both.
 * - The command queue is capped at the current IDR1.CMDQS (after the CMDQV's cap, §3.10);
 *   QEMU caps it at the constant 19.
 * - `reset()` restores every register's declared reset value (QEMU keeps STRTAB_*, CR1/CR2,
 *   IRQ configuration and queue base addresses across reset, only resetting LOG2SIZE to 19).
 * - Pages 0 and 1 are not aliased: only the registers of the table exist (EVENTQ_PROD/CONS at
 *   0x100A8/0x100AC); QEMU decodes `offset & ~0x10000`.
 * - `oas=auto` takes the host's OAS capped at 48 bits.
 * - Events are drained by {@link AccelSmmuV3.pollEvents} (no main-loop fd handler).
 */

import { CERROR_ABT, CERROR_ILL, CERROR_NONE, D0, D1, Op, opName, SYNC_CS_IRQ } from '../../arch/smmuv3/commands.js';
import { qAdvance, qEmpty, qFull, qIndex, qIndexMask, qWrap, qWrapMask } from '../../arch/smmuv3/queue.js';
import * as R from '../../arch/smmuv3/registers.js';
import { Evt } from '../../arch/smmuv3/structures.js';
import { hex } from '../../kit/bits.js';
import { IrqLine } from '../../kit/irq.js';
import type { ModelLog } from '../../kit/log.js';
import { MemoryRegion, type RegionOps } from '../../kit/memory-region.js';
import { RegisterBank } from '../../kit/register-bank.js';
import { WordWindow } from '../../kit/sparse-memory.js';
import type { RegisterDef, RegisterInfo } from '../../kit/registers.js';
import type { Tracer } from '../../kit/trace.js';
import { iommu_hw_info_arm_smmuv3, iommu_hw_info_type, iommu_hwpt_data_type, iommu_veventq_type, iommu_viommu_type, iommu_hwpt_invalidate_data_type } from '../../uapi/iommufd.js';
import type { IommufdBackend, Veventq } from '../backends/iommufd.js';
import { SMMUV3_CMDQV_NONE, type AccelHostDevice, type CmdqvHost, type CmdqvOps } from './cmdqv-ops.js';
import { CMD_SSEC, COMMAND_TABLE, CommandBatch, flushCommands, type CommandClass } from './cmdq.js';
import { autoFinalise, hostIncompatibility, initialIdr, SMMU_AIDR, SMMU_CMDQS, SMMU_EVENTQS, type Idr } from './idr.js';
import { hasAutoProperty, validateProperties, type AccelSmmuV3Properties } from './properties.js';
import { ABORT_STE_DATA, BYPASS_STE_DATA, classifySte, findSte, nestedSteData, STRTAB_FMT_2LVL, type GuestMemory, type SteLookup } from './ste-install.js';
import * as T from './traces.js';

/** Interrupt outputs, in sysbus order (QEMU's SMMUIrq). */
export const SMMU_IRQ_EVTQ = 0;
export const SMMU_IRQ_PRIQ = 1;
export const SMMU_IRQ_CMD_SYNC = 2;
export const SMMU_IRQ_GERROR = 3;

/** Migration blocker text registered when accel=on (§3.13). */
export const MIGRATION_BLOCKER_TEXT = 'Migration not supported with SMMUv3 accelerator mode enabled';
/** Unplug blocker on the device that created the vIOMMU while a CMDQV is active (§3.11). */
export const CMDQV_UNPLUG_BLOCKER_TEXT =
  'CMDQV is active: removing the device that established the viommu association would break the guest CMDQV';
/** Hint appended when cmdqv=on and the host cannot provide it (§3.2). */
export const CMDQV_NOT_SUPPORTED_HINT = 'CMDQV requested but not supported';

/** Size of an event record in the guest event queue (and of an ARM_SMMUV3 vEVENT payload). */
const EVT_SIZE = 32;
/** Size of a command. */
const CMD_SIZE = 16;

/** What the SMMU needs from the machine. */
export interface AccelSmmuV3Deps {
  /** `-object iommufd` of the VFIO devices behind this SMMU (required once a device attaches). */
  readonly backend: IommufdBackend | undefined;
  /** Guest-physical memory: stream table, command and event queues. */
  readonly guestMemory: GuestMemory;
  readonly log: ModelLog;
  readonly tracer: Tracer;
  /** The CMDQV implementation, bound to this SMMU (Tegra241); absent = not compiled in. */
  readonly cmdqvFactory?: (host: CmdqvHost) => CmdqvOps;
  /** Smallest page size backing guest RAM (QEMU's qemu_minrampagesize), for the CMDQV. */
  readonly minRamPageSize: () => number;
}

/** Counters of the device's work. */
export interface AccelSmmuStats {
  /** Commands read from the trapped command queue. */
  commands: number;
  /** Commands delivered to the host with IOMMU_HWPT_INVALIDATE. */
  forwarded: number;
  /** IOMMU_HWPT_INVALIDATE calls. */
  invalidateCalls: number;
  /** Every ioctl this device made through the backend (including failed ones). */
  ioctls: number;
  /** STEs installed on the host. */
  steInstalls: number;
  /** Command-queue errors (CERROR_*). */
  cmdqErrors: number;
  /** Event records written to the guest event queue. */
  events: number;
  /** Events lost: guest queue full (overflow flagged) or disabled. */
  eventsLost: number;
}

/** Per-device accel state (QEMU's SMMUv3AccelDevice). */
interface AccelDevice {
  readonly dev: AccelHostDevice;
  /** vDEVICE (virt_id = guest SID), allocated on the first STE install. */
  vdevId: number | undefined;
  /** Current nested stage-1 HWPT, if a translate STE is installed. */
  s1Hwpt: number | undefined;
  /** Unplug blocker message (the device that established the vIOMMU with a CMDQV). */
  blocker: string | undefined;
}

/** The host objects behind the vSMMU (QEMU's SMMUv3AccelState). */
interface AccelState {
  /** Nesting-parent (stage-2) HWPT of guest RAM, shared by every device (set by the machine). */
  s2Hwpt: number | undefined;
  viommu: { id: number; s2Hwpt: number; abortHwpt: number; bypassHwpt: number } | undefined;
  /** SMMUv3 vEVENTQ (type ARM_SMMUV3), allocated once the guest enables its event queue. */
  veventq: Veventq | undefined;
  /** Selected CMDQV ops. */
  ops: CmdqvOps | undefined;
  readonly devices: AccelDevice[];
  /** `auto` properties resolved from the first host device. */
  autoFinalised: boolean;
}

/** The registers the device model acts on. */
interface Regs {
  readonly idr: readonly RegisterInfo[];
  readonly iidr: RegisterInfo;
  readonly aidr: RegisterInfo;
  readonly cr0: RegisterInfo;
  readonly cr0ack: RegisterInfo;
  readonly gbpa: RegisterInfo;
  readonly irqCtrl: RegisterInfo;
  readonly irqCtrlAck: RegisterInfo;
  readonly gerror: RegisterInfo;
  readonly gerrorn: RegisterInfo;
  readonly strtabBase: RegisterInfo;
  readonly strtabCfg: RegisterInfo;
  readonly cmdqBase: RegisterInfo;
  readonly cmdqProd: RegisterInfo;
  readonly cmdqCons: RegisterInfo;
  readonly eventqBase: RegisterInfo;
  readonly eventqProd: RegisterInfo;
  readonly eventqCons: RegisterInfo;
}

/** Event ID → name, for traces. */
const EVENT_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(Evt).map(([k, v]) => [v, k]));

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The accelerated SMMUv3. */
export class AccelSmmuV3 {
  readonly props: Readonly<AccelSmmuV3Properties>;
  /** The 0x20000-byte register frame (sysbus MMIO 0). */
  readonly mmio: MemoryRegion;
  /** EVENTQ, PRIQ, CMD_SYNC, GERROR (sysbus IRQs 0–3). */
  readonly irqs: readonly [IrqLine, IrqLine, IrqLine, IrqLine];
  /** Register file and MMIO dispatch. */
  readonly bank: RegisterBank;
  readonly stats: AccelSmmuStats = {
    commands: 0, forwarded: 0, invalidateCalls: 0, ioctls: 0, steInstalls: 0, cmdqErrors: 0, events: 0, eventsLost: 0,
  };
  /** Set when accel=on: migration is refused. */
  readonly migrationBlocker: string | undefined;
  /** Host-side failures, as QEMU would print them with error_report. */
  readonly hostErrors: string[] = [];
  /** Command-queue scratch: the command being decoded and the forwarding batch. */
  private readonly cmdBuf = new Uint32Array(4);
  private readonly batch = new CommandBatch();
  /** Direct view of the guest RAM under the command queue being walked. */
  private readonly ringWindow = new WordWindow();

  /** ID registers as derived from the properties and the host (CMDQS at its default). */
  private idr: Idr;
  private readonly st: AccelState = { s2Hwpt: undefined, viommu: undefined, veventq: undefined, ops: undefined, devices: [], autoFinalised: false };
  private readonly reported = new Set<string>();
  private readonly r: Regs;
  private readonly logSource: string;
  private host: CmdqvHost | undefined;

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
    this.logSource = `arm-smmuv3:${opts.id}`;
    this.migrationBlocker = opts.accel ? MIGRATION_BLOCKER_TEXT : undefined;
    this.idr = initialIdr(opts);
    const L = R.smmuv3Layout();
    this.bank = new RegisterBank(this.logSource, L, deps.log);
    const get = (d: RegisterDef) => L.get(d.spec.name);
    this.r = {
      idr: [R.IDR0, R.IDR1, R.IDR2, R.IDR3, R.IDR4, R.IDR5].map(get),
      iidr: get(R.IIDR), aidr: get(R.AIDR), cr0: get(R.CR0), cr0ack: get(R.CR0ACK), gbpa: get(R.GBPA),
      irqCtrl: get(R.IRQ_CTRL), irqCtrlAck: get(R.IRQ_CTRLACK), gerror: get(R.GERROR), gerrorn: get(R.GERRORN),
      strtabBase: get(R.STRTAB_BASE), strtabCfg: get(R.STRTAB_BASE_CFG), cmdqBase: get(R.CMDQ_BASE),
      cmdqProd: get(R.CMDQ_PROD), cmdqCons: get(R.CMDQ_CONS), eventqBase: get(R.EVENTQ_BASE),
      eventqProd: get(R.EVENTQ_PROD), eventqCons: get(R.EVENTQ_CONS),
    };
    this.bank
      .onWrite(R.CR0, (_r, prevLo) => this.writeCr0(prevLo))
      .onWrite(R.IRQ_CTRL, () => this.file.set32(this.r.irqCtrlAck, this.file.get32(this.r.irqCtrl)))
      .onWrite(R.GBPA, (_r, prevLo) => this.writeGbpa(prevLo))
      .onWrite(R.GERRORN, (_r, prevLo) => this.writeGerrorn(prevLo))
      .onWrite(R.CMDQ_PROD, () => this.consumeCmdq());
    this.mmio = MemoryRegion.mmio(`arm-smmuv3:${opts.id}`, R.SMMUV3_MMIO_SIZE, this.tracedOps());
    this.irqs = [
      new IrqLine(`${opts.id}.eventq`),
      new IrqLine(`${opts.id}.priq`),
      new IrqLine(`${opts.id}.cmd-sync`),
      new IrqLine(`${opts.id}.gerror`),
    ];
    this.resetRegisters();
  }

  // ------------------------------------------------------------------------------------------
  // Public API

  /** Whether any property waits for the first host device (`auto`). */
  get autoMode(): boolean {
    return this.props.accel && hasAutoProperty(this.props);
  }

  /** Whether the `auto` properties have been resolved from a host device. */
  get autoFinalised(): boolean {
    return this.st.autoFinalised;
  }

  /** The selected CMDQV ops, if any. */
  get cmdqvOps(): CmdqvOps | undefined {
    return this.st.ops;
  }

  /** SMMUV3_CMDQV_NONE, or the selected CMDQV's type (QEMU's smmuv3_accel_cmdqv_type). */
  cmdqvType(): number {
    return this.st.ops ? this.st.ops.getType() : SMMUV3_CMDQV_NONE;
  }

  /** The iommufd vIOMMU id, once a device has attached. */
  get viommuId(): number | undefined {
    return this.st.viommu?.id;
  }

  /** The pre-allocated abort / bypass nested HWPTs. */
  get abortHwptId(): number | undefined {
    return this.st.viommu?.abortHwpt;
  }
  get bypassHwptId(): number | undefined {
    return this.st.viommu?.bypassHwpt;
  }

  /** The SMMUv3 vEVENTQ, once allocated. */
  get veventq(): Readonly<Veventq> | undefined {
    return this.st.veventq;
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
    this.st.s2Hwpt = hwptId;
  }

  /** The nesting-parent HWPT given with {@link setS2Hwpt}. */
  get s2HwptId(): number | undefined {
    return this.st.s2Hwpt;
  }

  /** Accel state of the device with guest StreamID `sid` (for reports and tests). */
  deviceState(sid: number): { devId: number; vdevId: number | undefined; s1Hwpt: number | undefined; blocker: string | undefined } | undefined {
    const d = this.findDevice(sid);
    return d && { devId: d.dev.devId, vdevId: d.vdevId, s1Hwpt: d.s1Hwpt, blocker: d.blocker };
  }

  /**
   * A VFIO device behind this SMMU is realized (QEMU's set_iommu_device, §3.1 step 3): check
   * the host SMMU, resolve `auto` properties, and — for the first device — select the CMDQV,
   * allocate the vIOMMU with its abort/bypass HWPTs and attach the GBPA-selected one. Throws an
   * Error with QEMU's message when the device cannot be used (its realize fails).
   */
  attachDevice(dev: AccelHostDevice): void {
    if (!this.props.accel) throw new Error(`arm-smmuv3 ${this.props.id}: accel=off has no host-backed devices`);
    const be = this.deps.backend;
    if (!be) throw new Error('vfio-pci endpoint devices without an iommufd backend not allowed when using arm-smmuv3,accel=on');
    const existing = this.findDevice(dev.guestSid);
    if (existing) {
      if (existing.dev.devId !== dev.devId) throw new Error(`Device already has an associated hiodi 0x${dev.devId.toString(16)}`);
      return;
    }
    this.checkHostCompatible(dev);
    const d: AccelDevice = { dev, vdevId: undefined, s1Hwpt: undefined, blocker: undefined };
    if (!this.st.viommu) {
      if (!this.st.ops) this.selectCmdqv(dev);
      this.allocViommu(be, dev);
      if (this.st.ops) d.blocker = CMDQV_UNPLUG_BLOCKER_TEXT;
    } else {
      // A device joining the vIOMMU leaves VFIO's stage-2-only HWPT at once (QEMU leaves it
      // there until the next reset or CFGI_STE).
      const vi = this.st.viommu;
      this.be((b) => b.attachDevice(dev.vfioFd, this.smmuEnabled ? vi.abortHwpt : this.gbpaHwpt()));
    }
    this.st.devices.push(d);
    if (this.smmuEnabled) {
      // Attached while the SMMU is on (hot-plug): its STE is in force, not GBPA.
      try {
        this.installSte(d);
      } catch (e) {
        this.report(`${messageOf(e)}\nDevice 0x${dev.guestSid.toString(16)}: Failed to install STE`);
      }
    }
    this.deps.tracer.emit(T.T_ACCEL_SET_IOMMU_DEVICE, dev.guestSid & 0xff, dev.devId);
  }

  /**
   * `device_del` of a device (QEMU's unset_iommu_device, §3.11): refused while it holds the
   * CMDQV unplug blocker; otherwise it returns to the stage-2 HWPT, its nested HWPT and vDEVICE
   * are destroyed, and the vIOMMU goes with the last device.
   */
  unplug(dev: AccelHostDevice): void {
    const i = this.st.devices.findIndex((d) => d.dev.devId === dev.devId);
    if (i < 0) return;
    const d = this.st.devices[i]!;
    if (d.blocker) throw new Error(d.blocker);
    const be = this.deps.backend!;
    if (this.st.s2Hwpt !== undefined) {
      try {
        this.be((b) => b.attachDevice(d.dev.vfioFd, this.st.s2Hwpt!));
      } catch {
        this.report(`Unable to attach the default HW pagetable: hiodi devid 0x${d.dev.devId.toString(16)}`);
      }
    }
    if (d.s1Hwpt !== undefined) this.freeId(be, d.s1Hwpt);
    if (d.vdevId !== undefined) this.freeId(be, d.vdevId);
    this.st.devices.splice(i, 1);
    this.deps.tracer.emit(T.T_ACCEL_UNSET_IOMMU_DEVICE, d.dev.guestSid & 0xff, d.dev.devId);
    if (this.st.devices.length === 0) this.freeViommu(be);
  }

  /**
   * Device reset (§3.9): the SMMUv3 registers (IDR1.CMDQS back to 19), then the accel reset
   * (the GBPA-selected HWPT for every device), then the CMDQV's reset (which may cap CMDQS).
   */
  reset(): void {
    this.deps.tracer.emit(T.T_RESET_EXIT);
    this.resetRegisters();
    this.attachGbpaHwptAll();
    if (this.st.ops) this.be(() => this.st.ops!.reset());
  }

  /**
   * Drain the SMMUv3 vEVENTQ into the guest event queue (what QEMU's fd handler does on each
   * readiness notification). Returns the number of records delivered.
   */
  pollEvents(): number {
    const q = this.st.veventq;
    const be = this.deps.backend;
    if (!q || !be) return 0;
    let n = 0;
    // Bounded: a queue cannot hold more records than its depth plus one overflow header.
    for (let i = 0; i <= 2 ** SMMU_EVENTQS + 1; i++) {
      const r = be.readVevent(q, EVT_SIZE);
      if (r.kind === 'none') break;
      if (r.kind === 'error') {
        this.reportOnce(r.message.replace(/\d+/g, '#'), r.message);
        // A failed read(2) consumed nothing; stop instead of spinning on it.
        if (/read failed/.test(r.message)) break;
        continue;
      }
      if (r.lost) this.reportOnce('lost', `vEVENTQ(type ${q.type} id ${q.id}): lost ${r.lost} event(s)`);
      this.propagateEvent(r.payload);
      n++;
    }
    return n;
  }

  // ------------------------------------------------------------------------------------------
  // CmdqvHost

  private cmdqvHost(be: IommufdBackend): CmdqvHost {
    this.host ??= {
      backend: be,
      getCmdqs: () => this.file.field(this.r.idr[1]!, R.IDR1.f.CMDQS),
      setCmdqs: (cmdqs: number) => {
        this.file.setField(this.r.idr[1]!, R.IDR1.f.CMDQS, Math.max(0, Math.min(cmdqs, R.IDR1.f.CMDQS.max)));
      },
      minRamPageSize: () => this.deps.minRamPageSize(),
    };
    return this.host;
  }

  // ------------------------------------------------------------------------------------------
  // Registers

  private get file() {
    return this.bank.file;
  }

  /** MMIO ops: the register bank, with QEMU's read/write trace points. */
  private tracedOps(): RegionOps {
    const b = this.bank;
    const tr = this.deps.tracer;
    return {
      read: (off, size) => {
        const v = b.read(off, size);
        tr.emit(T.T_READ_MMIO, off, v, size, 0);
        return v;
      },
      write: (off, size, v) => {
        b.write(off, size, v);
        tr.emit(T.T_WRITE_MMIO, off, v, size, 0);
      },
      read64: (off) => {
        const v = b.read64(off);
        tr.emit(T.T_READ_MMIO, off, v, 8, 0);
        return v;
      },
      write64: (off, v) => {
        b.write64(off, v);
        tr.emit(T.T_WRITE_MMIO, off, v, 8, 0);
      },
    };
  }

  /** Register reset: declared reset values, then the ID registers and queue sizes. */
  private resetRegisters(): void {
    this.bank.reset();
    this.syncIdr(true);
    this.file.set32(this.r.iidr, 0);
    this.file.set32(this.r.aidr, SMMU_AIDR);
    // QEMU resets the queues' LOG2SIZE to the maximum (CMDQS / EVENTQS = 19).
    this.file.setField(this.r.cmdqBase, R.CMDQ_BASE.f.LOG2SIZE, SMMU_CMDQS);
    this.file.setField(this.r.eventqBase, R.EVENTQ_BASE.f.LOG2SIZE, SMMU_EVENTQS);
  }

  /** Copy the derived ID registers into the register file; CMDQS keeps its cap unless resetting. */
  private syncIdr(resetCmdqs: boolean): void {
    const cmdqs = this.file.field(this.r.idr[1]!, R.IDR1.f.CMDQS);
    this.idr.forEach((v, i) => this.file.set32(this.r.idr[i]!, v));
    if (!resetCmdqs) this.file.setField(this.r.idr[1]!, R.IDR1.f.CMDQS, cmdqs);
  }

  private get smmuEnabled(): boolean {
    return R.CR0.f.SMMUEN.get(this.file.get32(this.r.cr0)) === 1;
  }

  private writeCr0(prevLo: number): void {
    const cr0 = this.file.get32(this.r.cr0);
    this.file.set32(this.r.cr0ack, cr0); // acknowledged at once: reserved bits are RAZ in both
    const wasOn = R.CR0.f.SMMUEN.get(prevLo) === 1;
    if (this.smmuEnabled !== wasOn) {
      // The configuration in force changes: STEs when the SMMU turns on, GBPA when it turns off.
      if (this.smmuEnabled) this.installAll();
      else this.attachGbpaHwptAll();
    }
    this.consumeCmdq();
    try {
      this.allocVeventq();
    } catch (e) {
      this.report(messageOf(e));
    }
  }

  private writeGbpa(prevLo: number): void {
    const v = this.file.get32(this.r.gbpa);
    if (!R.GBPA.f.UPDATE.get(v)) {
      // Without UPDATE the write is ignored (the only behaviour allowed from SMMUv3.2).
      this.file.set32(this.r.gbpa, prevLo);
      return;
    }
    // The update completes synchronously: UPDATE reads back as 0.
    this.file.setField(this.r.gbpa, R.GBPA.f.UPDATE, 0);
    if (!this.smmuEnabled) this.attachGbpaHwptAll();
  }

  private writeGerrorn(prev: number): void {
    const gerror = this.file.get32(this.r.gerror);
    const now = this.file.get32(this.r.gerrorn);
    const pending = (gerror ^ prev) >>> 0;
    const toggled = (prev ^ now) >>> 0;
    if (toggled & ~pending) {
      this.deps.log.guestError(this.logSource, `guest toggles non pending errors = ${hex((toggled & ~pending) >>> 0)}`);
    }
    this.deps.tracer.emit(T.T_WRITE_GERRORN, (toggled & pending) >>> 0, now);
    // Acknowledging CMDQ_ERR lets the command queue run again.
    this.consumeCmdq();
  }

  /** Pulse an interrupt if enabled; for GERROR, toggle the newly raised (not pending) errors. */
  private triggerIrq(irq: number, gerrorMask = 0): void {
    let pulse = false;
    const ctrl = this.file.get32(this.r.irqCtrl);
    switch (irq) {
      case SMMU_IRQ_EVTQ:
        pulse = R.IRQ_CTRL.f.EVENTQ_IRQEN.get(ctrl) === 1;
        break;
      case SMMU_IRQ_PRIQ:
        this.deps.log.unimp(this.logSource, 'PRI not yet supported');
        break;
      case SMMU_IRQ_CMD_SYNC:
        pulse = true;
        break;
      case SMMU_IRQ_GERROR: {
        const gerror = this.file.get32(this.r.gerror);
        const pending = gerror ^ this.file.get32(this.r.gerrorn);
        const raised = (~pending & gerrorMask) >>> 0;
        if (!raised) return; // already pending: nothing new to signal
        const next = (gerror ^ raised) >>> 0;
        this.file.set32(this.r.gerror, next);
        this.deps.tracer.emit(T.T_WRITE_GERROR, raised, next);
        pulse = R.IRQ_CTRL.f.GERROR_IRQEN.get(ctrl) === 1;
        break;
      }
      default:
        return;
    }
    if (pulse) {
      this.deps.tracer.emit(T.T_TRIGGER_IRQ, irq);
      this.irqs[irq]!.pulse();
    }
  }

  // ------------------------------------------------------------------------------------------
  // Command queue

  /** log2 entries of the command queue: CMDQ_BASE.LOG2SIZE capped at IDR1.CMDQS. */
  private cmdqLog2(): number {
    return Math.min(this.file.field(this.r.cmdqBase, R.CMDQ_BASE.f.LOG2SIZE), this.file.field(this.r.idr[1]!, R.IDR1.f.CMDQS));
  }

  private eventqLog2(): number {
    return Math.min(this.file.field(this.r.eventqBase, R.EVENTQ_BASE.f.LOG2SIZE), R.IDR1.f.EVENTQS.get(this.idr[1]));
  }

  /**
   * Consume the command queue up to PROD, synchronously (QEMU's smmuv3_cmdq_consume). Stops
   * at the first failing command with CONS pointing at it, CONS.ERR set and GERROR.CMDQ_ERR
   * toggled; nothing runs again until the guest acknowledges through GERRORN.
   */
  private consumeCmdq(): void {
    if (!R.CR0.f.CMDQEN.get(this.file.get32(this.r.cr0))) return;
    const tr = this.deps.tracer;
    const log2 = this.cmdqLog2();
    const base = this.file.field(this.r.cmdqBase, R.CMDQ_BASE.f.ADDR) * 32;
    const prod = this.file.get32(this.r.cmdqProd);
    const consReg = this.file.get32(this.r.cmdqCons);
    let cons = consReg;
    let err = CERROR_NONE;
    let errOp = 0;
    const batch = this.batch;
    batch.count = 0;
    const viommu = this.st.viommu;

    // Index in the batch of the command the host refused (-1: none); the queue stops there.
    let refused = -1;

    // Per-walk constants, so that the common run of guest TLBIs is forwarded without calls out.
    const wm = qWrapMask(log2);
    const im = qIndexMask(log2);
    const traceEach = tr.enabled(T.T_CMDQ_CONSUME) || tr.enabled(T.T_CMDQ_OPCODE);
    // TLBI_NH_{ASID,VA,VAA} need nothing but a vIOMMU and stage 1 (see checkForward).
    const tlbiDirect = viommu !== undefined && this.stage1 && !tr.enabled(T.T_CMDQ_TLBI_NH_ASID) && !tr.enabled(T.T_RANGE_INVAL);
    const mem = this.deps.guestMemory;
    const win = this.ringWindow;
    // Guest-physical range [winLo, winHi) currently mapped by `win` (empty at first).
    let winLo = 0;
    let winHi = 0;
    const c = this.cmdBuf;
    // Opcodes as locals: the loop compares against them per command.
    const opVa = Op.TLBI_NH_VA;
    const opAsid = Op.TLBI_NH_ASID;
    const opVaa = Op.TLBI_NH_VAA;
    // A CMDQ_ERR still pending (not yet acknowledged) keeps the queue stopped.
    let stopped = this.cmdqErrPending();
    if (stopped && traceEach && ((prod ^ cons) & wm) !== 0 && tr.enabled(T.T_CMDQ_CONSUME)) {
      // As QEMU: the walk starts (traced), then finds the queue stopped by the pending error.
      tr.emit(T.T_CMDQ_CONSUME, qIndex(prod, log2), qIndex(cons, log2), qWrap(prod, log2), qWrap(cons, log2));
    }

    while (!stopped && ((prod ^ cons) & wm) !== 0) {
      if (traceEach && tr.enabled(T.T_CMDQ_CONSUME)) tr.emit(T.T_CMDQ_CONSUME, qIndex(prod, log2), qIndex(cons, log2), qWrap(prod, log2), qWrap(cons, log2));
      const gpa = base + (cons & im) * CMD_SIZE;
      let w: Uint32Array;
      let at: number;
      if (gpa >= winLo && gpa < winHi) {
        w = win.words;
        at = win.index + ((gpa - winLo) >>> 2);
      } else if (this.mapRing(mem, gpa)) {
        winLo = gpa;
        winHi = gpa + win.bytes;
        w = win.words;
        at = win.index;
      } else {
        winLo = 0; // mapRing may have changed `win`: forget the old window
        winHi = 0;
        const r = this.readCommand(gpa);
        if (!r) {
          if ((refused = this.flushBatch()) >= 0) break;
          err = CERROR_ABT;
          break;
        }
        w = r;
        at = 0;
      }
      const op = w[at]! & 0xff;
      errOp = op;
      if (traceEach && tr.enabled(T.T_CMDQ_OPCODE)) tr.emit(T.T_CMDQ_OPCODE, opName(op));
      this.stats.commands++;
      const next = ((cons & ~wm) | ((cons + 1) & wm)) >>> 0;
      if (tlbiDirect && (op === opVa || op === opAsid || op === opVaa)) {
        batch.pushFrom(w, at, cons);
        cons = next;
        if (w === win.words && !traceEach) {
          // The TLBIs right after it in the mapped window go straight in too, without the
          // outer loop's per-command work; the run ends at PROD, the ring's end, the window's
          // end, a full batch or any other opcode.
          let g = gpa + CMD_SIZE;
          let k = at + 4;
          let more = 0;
          while (!batch.full && ((prod ^ cons) & wm) !== 0 && (cons & im) !== 0 && g < winHi) {
            const o = w[k]! & 0xff;
            if (o !== opVa && o !== opAsid && o !== opVaa) break;
            batch.pushFrom(w, k, cons);
            cons = ((cons & ~wm) | ((cons + 1) & wm)) >>> 0;
            g += CMD_SIZE;
            k += 4;
            more++;
          }
          this.stats.commands += more;
        }
        if (batch.full && (refused = this.flushBatch()) >= 0) break;
        continue;
      }
      if (w !== c) {
        c[0] = w[at]!;
        c[1] = w[at + 1]!;
        c[2] = w[at + 2]!;
        c[3] = w[at + 3]!;
      }
      const cls = COMMAND_TABLE.get(op);
      if (cls === 'forward' || cls === 'forward_sid' || cls === 'atc_inv') {
        const f = this.checkForward(cls, c, op);
        if (f === 'forward') {
          batch.push(c, cons);
          cons = next;
          if (batch.full && (refused = this.flushBatch()) >= 0) break;
          continue;
        }
        if (f !== CERROR_NONE) {
          if ((refused = this.flushBatch()) >= 0) break;
          errOp = op;
          err = f;
          break;
        }
        cons = next;
        continue;
      }
      // Everything else is ordered after the invalidations before it.
      if ((refused = this.flushBatch()) >= 0) break;
      const e = this.execute(cls, c, op);
      if (e !== CERROR_NONE) {
        err = e;
        break;
      }
      cons = next;
      stopped = this.cmdqErrPending();
    }
    if (err === CERROR_NONE && refused < 0) refused = this.flushBatch();
    if (refused >= 0) {
      // Stop at the refused command, as QEMU's per-command forwarding would have.
      cons = batch.cons[refused]!;
      err = CERROR_ILL;
      errOp = D0.OPCODE.get(batch.words[refused * 4]!);
    }

    let consOut = ((consReg & ~qWrapMask(log2)) | (cons & qWrapMask(log2))) >>> 0;
    if (err !== CERROR_NONE) {
      this.stats.cmdqErrors++;
      if (err === CERROR_ILL) this.deps.log.guestError(this.logSource, `Illegal command type: ${errOp}`);
      tr.emit(T.T_CMDQ_CONSUME_ERROR, opName(errOp), err);
      consOut = R.CMDQ_CONS.f.ERR.set(consOut, err);
      this.file.set32(this.r.cmdqCons, consOut);
      this.triggerIrq(SMMU_IRQ_GERROR, R.GERROR.f.CMDQ_ERR.set(0, 1));
    } else {
      this.file.set32(this.r.cmdqCons, consOut);
    }
    tr.emit(T.T_CMDQ_CONSUME_OUT, qIndex(prod, log2), qIndex(consOut, log2), qWrap(prod, log2), qWrap(consOut, log2));
  }

  /**
   * Send the forwarding batch with IOMMU_HWPT_INVALIDATE and empty it. Returns -1 when the host
   * took every command, else the index in the batch of the one it refused (reported); its words
   * and CONS stay readable in the batch until the next push.
   */
  private flushBatch(): number {
    const batch = this.batch;
    const n = batch.count;
    if (n === 0) return -1;
    const r = flushCommands(batch, this.issueInvalidate);
    batch.count = 0;
    if (r.failedAt === undefined) {
      this.stats.forwarded += n;
      return -1;
    }
    this.stats.forwarded += r.failedAt;
    this.report(messageOf(r.error));
    return r.failedAt;
  }

  /**
   * One IOMMU_HWPT_INVALIDATE of `entries` on the vIOMMU. A single function object for the
   * device's life: the command loop inlines it, and a per-call closure would deoptimise that.
   */
  private readonly issueInvalidate = (entries: Uint8Array): void => {
    const b = this.deps.backend!;
    const before = b.callTotal;
    this.stats.invalidateCalls++;
    try {
      b.invalidateCache(this.st.viommu!.id, iommu_hwpt_invalidate_data_type.IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3, entries);
    } finally {
      this.stats.ioctls += b.callTotal - before;
    }
  };

  /** Whether GERROR.CMDQ_ERR is raised and not yet acknowledged through GERRORN. */
  private cmdqErrPending(): boolean {
    return R.GERROR.f.CMDQ_ERR.get((this.file.get32(this.r.gerror) ^ this.file.get32(this.r.gerrorn)) >>> 0) === 1;
  }

  /** Map the ring memory at `gpa` into {@link ringWindow}; false when it needs word reads. */
  private mapRing(mem: GuestMemory, gpa: number): boolean {
    try {
      return mem.mapWords?.(gpa, this.ringWindow) === true && this.ringWindow.bytes >= CMD_SIZE;
    } catch {
      return false; // unbacked: readCommand reports the abort
    }
  }

  /** One 16-byte command from guest memory, or undefined on an external abort. */
  private readCommand(gpa: number): Uint32Array | undefined {
    // One reusable buffer: forwarded commands are copied into the batch.
    const w = this.cmdBuf;
    const mem = this.deps.guestMemory;
    try {
      if (!mem.readWords?.(gpa, w, 0, 4)) for (let i = 0; i < 4; i++) w[i] = mem.read32(gpa + 4 * i) >>> 0;
    } catch {
      this.deps.log.guestError(this.logSource, `command fetch abort at ${hex(gpa, 12)}`);
      return undefined;
    }
    return w;
  }

  private get stage1(): boolean {
    return R.IDR0.f.S1P.get(this.file.get32(this.r.idr[0]!)) === 1;
  }

  /**
   * The forwardable opcodes: whether this one goes to the host ('forward'), completes locally
   * (CERROR_NONE), or is illegal here. No host side effects.
   */
  private checkForward(cls: 'forward' | 'forward_sid' | 'atc_inv', w: Uint32Array, op: number): 'forward' | number {
    const tr = this.deps.tracer;
    const sid = w[1]!;
    if (cls === 'forward_sid') {
      if (CMD_SSEC.get(w[0]!)) return CERROR_ILL;
      const d = this.findDevice(sid);
      if (!d) return CERROR_NONE;
      if (!this.stage1) return CERROR_ILL;
      tr.emit(T.T_CMDQ_CFGI_CD, sid);
      return this.st.viommu && d.vdevId !== undefined ? 'forward' : CERROR_NONE;
    }
    if (cls === 'atc_inv') {
      const d = this.findDevice(sid);
      if (!d || !R.IDR0.f.ATS.get(this.file.get32(this.r.idr[0]!))) {
        tr.emit(T.T_UNHANDLED_CMD, op);
        return CERROR_NONE;
      }
      return this.st.viommu && d.vdevId !== undefined ? 'forward' : CERROR_NONE;
    }
    if (!this.stage1) return CERROR_ILL;
    switch (op) {
      case Op.TLBI_NH_ASID:
        tr.emit(T.T_CMDQ_TLBI_NH_ASID, D0.ASID.getWords(w[0]!, w[1]!));
        break;
      case Op.TLBI_NH_VA:
      case Op.TLBI_NH_VAA:
        // Decoding the trace arguments costs more than forwarding: only when enabled.
        if (tr.enabled(T.T_RANGE_INVAL)) tr.emit(
          T.T_RANGE_INVAL, -1, op === Op.TLBI_NH_VA ? D0.ASID.getWords(w[0]!, w[1]!) : -1, D1.ADDR_PAGE.getWords(w[2]!, w[3]!) * 4096,
          D1.TG.get(w[2]!), (D0.NUM.get(w[0]!) + 1) * 2 ** D0.SCALE.get(w[0]!), D1.TTL.get(w[2]!), D1.LEAF.get(w[2]!), 1,
        );
        break;
      case Op.TLBI_NH_ALL: // with stage 2 it only drops this VMID's stage-1 entries locally
        if (R.IDR0.f.S2P.get(this.file.get32(this.r.idr[0]!))) return CERROR_NONE;
        tr.emit(T.T_CMDQ_TLBI_NSNH);
        break;
      default: // TLBI_NSNH_ALL
        tr.emit(T.T_CMDQ_TLBI_NSNH);
        break;
    }
    return this.st.viommu ? 'forward' : CERROR_NONE;
  }

  /** Execute a command that is not forwarded; returns its CERROR. */
  private execute(cls: CommandClass | undefined, w: Uint32Array, op: number): number {
    const tr = this.deps.tracer;
    switch (cls) {
      case 'sync':
        if (D0.SYNC_CS.get(w[0]!) === SYNC_CS_IRQ) this.triggerIrq(SMMU_IRQ_CMD_SYNC);
        return CERROR_NONE;
      case 'noop':
        return CERROR_NONE;
      case 'cfgi_ste': {
        if (CMD_SSEC.get(w[0]!)) return CERROR_ILL;
        const sid = w[1]!;
        const d = this.findDevice(sid);
        if (!d) return CERROR_NONE;
        tr.emit(T.T_CMDQ_CFGI_STE, sid | 0);
        try {
          this.installSte(d);
        } catch (e) {
          this.report(messageOf(e));
          return CERROR_ILL;
        }
        return CERROR_NONE;
      }
      case 'cfgi_ste_range': {
        if (CMD_SSEC.get(w[0]!)) return CERROR_ILL;
        const span = 2 ** (D1.RANGE.get(w[2]!) + 1);
        const start = Math.floor(w[1]! / span) * span;
        const end = start + span - 1;
        tr.emit(T.T_CMDQ_CFGI_STE_RANGE, start >>> 0, end >>> 0);
        if (!this.st.viommu) return CERROR_NONE;
        let ok = true;
        for (const d of this.st.devices) {
          const sid = d.dev.guestSid;
          if (sid < start || sid > end) continue;
          try {
            this.installSte(d);
          } catch (e) {
            this.report(`${messageOf(e)}\nDevice 0x${sid.toString(16)}: Failed to install STE`);
            ok = false;
          }
        }
        if (!ok) {
          this.report('Failed to install all STEs properly');
          return CERROR_ILL;
        }
        return CERROR_NONE;
      }
      case 'unhandled':
        tr.emit(T.T_UNHANDLED_CMD, op);
        return CERROR_NONE;
      default:
        return CERROR_ILL;
    }
  }

  // ------------------------------------------------------------------------------------------
  // Stream table and STE installation

  private findDevice(sid: number): AccelDevice | undefined {
    return this.st.devices.find((d) => d.dev.guestSid === sid);
  }

  /** The guest STE of `sid` from the stream table in guest memory. */
  private lookupSte(sid: number): SteLookup {
    const cfg = this.file.get32(this.r.strtabCfg);
    const fmt = R.STRTAB_BASE_CFG.f.FMT.get(cfg);
    const split = R.STRTAB_BASE_CFG.f.SPLIT.get(cfg);
    const tr = this.deps.tracer;
    tr.emit(T.T_FIND_STE, sid, fmt === STRTAB_FMT_2LVL ? 1 : 0, split);
    return findSte(
      this.deps.guestMemory,
      {
        base: this.file.field(this.r.strtabBase, R.STRTAB_BASE.f.ADDR) * 64,
        log2size: R.STRTAB_BASE_CFG.f.LOG2SIZE.get(cfg),
        split,
        fmt,
        sidSize: R.IDR1.f.SIDSIZE.get(this.file.get32(this.r.idr[1]!)),
      },
      sid,
      {
        twoLevel: (b, l1, l1o, l2, l2o, max) => tr.emit(T.T_FIND_STE_2LVL, b, l1, l1o, l2, l2o, max),
        fetch: (a) => tr.emit(T.T_GET_STE, a),
      },
    );
  }

  private gbpaHwpt(): number {
    const v = this.st.viommu!;
    return R.GBPA.f.ABORT.get(this.file.get32(this.r.gbpa)) ? v.abortHwpt : v.bypassHwpt;
  }

  /**
   * Install the guest STE of a device on the host (QEMU's smmuv3_accel_install_ste, §3.15):
   * the vDEVICE first (it programs the host's SID mapping even for abort/bypass), then the
   * abort, bypass or a new nested stage-1 HWPT, and the previous stage-1 HWPT is freed.
   * Throws with QEMU's message on failure.
   */
  private installSte(d: AccelDevice): void {
    const vi = this.st.viommu;
    const be = this.deps.backend;
    if (!vi || !be) return;
    const sid = d.dev.guestSid;
    if (d.vdevId === undefined) d.vdevId = this.be((b) => b.allocVdev(d.dev.devId, vi.id, sid));
    const ste = this.lookupSte(sid);
    if (!ste.ok) return; // no STE to install (bad StreamID or fetch abort)
    let hwpt: number | undefined;
    let s1: number | undefined;
    if (!this.smmuEnabled) {
      hwpt = this.gbpaHwpt();
    } else {
      switch (classifySte(ste.words)) {
        case 'abort':
          hwpt = vi.abortHwpt;
          break;
        case 'bypass':
          hwpt = vi.bypassHwpt;
          break;
        case 'translate': {
          const n = nestedSteData(ste.words);
          s1 = this.be((b) => b.allocHwpt(d.dev.devId, vi.id, 0, iommu_hwpt_data_type.IOMMU_HWPT_DATA_ARM_SMMUV3, n.data));
          this.deps.tracer.emit(T.T_ACCEL_TRANSLATE_STE, sid, s1, n.ste1, n.ste0);
          hwpt = s1;
          break;
        }
        case 'invalid':
          break;
      }
    }
    if (hwpt === undefined) throw new Error(`Invalid STE config for sid 0x${sid.toString(16)}`);
    try {
      this.be((b) => b.attachDevice(d.dev.vfioFd, hwpt));
    } catch (e) {
      if (s1 !== undefined) this.freeId(be, s1);
      throw e;
    }
    if (d.s1Hwpt !== undefined) this.freeId(be, d.s1Hwpt);
    d.s1Hwpt = s1;
    const type = hwpt === vi.abortHwpt ? 'abort' : hwpt === vi.bypassHwpt ? 'bypass' : 'translate';
    this.stats.steInstalls++;
    this.deps.tracer.emit(T.T_ACCEL_INSTALL_STE, sid, type, hwpt);
  }

  /** The SMMU was enabled: install every device's STE. */
  private installAll(): void {
    for (const d of this.st.devices) {
      try {
        this.installSte(d);
      } catch (e) {
        this.report(`${messageOf(e)}\nDevice 0x${d.dev.guestSid.toString(16)}: Failed to install STE`);
      }
    }
  }

  /** Attach the GBPA-selected HWPT to every device (QEMU's smmuv3_accel_attach_gbpa_hwpt). */
  private attachGbpaHwptAll(): void {
    if (!this.st.viommu) return;
    const hwpt = this.gbpaHwpt();
    let ok = true;
    for (const d of this.st.devices) {
      try {
        this.be((b) => b.attachDevice(d.dev.vfioFd, hwpt));
      } catch (e) {
        this.report(`${messageOf(e)}\nFailed to attach GBPA hwpt ${hwpt} for hiodi devid ${d.dev.devId}`);
        ok = false;
      }
    }
    if (!ok) this.report('Failed to attach all GBPA based HWPTs properly');
  }

  // ------------------------------------------------------------------------------------------
  // Device attach: host check, CMDQV selection, vIOMMU

  /** QEMU's smmuv3_accel_hw_compatible: the host's ARM_SMMUV3 hw_info against our IDRs. */
  private checkHostCompatible(dev: AccelHostDevice): void {
    const info = this.be((b) => b.getDeviceInfo(dev.devId, iommu_hw_info_type.IOMMU_HW_INFO_TYPE_DEFAULT, iommu_hw_info_arm_smmuv3.size));
    if (info.type !== iommu_hw_info_type.IOMMU_HW_INFO_TYPE_ARM_SMMUV3) {
      throw new Error(`Wrong data type (${info.type}) for Host SMMUv3 device info`);
    }
    const host = (iommu_hw_info_arm_smmuv3.decode(info.data).idr as number[]).slice(0, 6) as Idr;
    if (this.autoMode && !this.st.autoFinalised) {
      // Resolved once, from the first device; later devices must match these values.
      this.idr = autoFinalise(this.idr, host, this.props);
      this.st.autoFinalised = true;
      this.syncIdr(false);
    }
    const why = hostIncompatibility(this.idr, host);
    if (why) throw new Error(why);
  }

  /** CMDQV selection (§3.2): off / auto (errors suppressed) / on (errors fail the attach). */
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
      this.be(() => ops.probe(dev));
    } catch (e) {
      if (mode === 'auto') return;
      throw new Error(`${messageOf(e)}\n${CMDQV_NOT_SUPPORTED_HINT}`);
    }
    this.be(() => ops.init());
    this.st.ops = ops;
  }

  /**
   * Allocate the vIOMMU (through the CMDQV when selected, else plain ARM_SMMUV3), the abort and
   * bypass HWPTs, the vEVENTQ if the guest already enabled its event queue, and attach the
   * GBPA-selected HWPT (§3.4). Failures unwind in reverse order.
   */
  private allocViommu(be: IommufdBackend, dev: AccelHostDevice): void {
    const hint = (e: unknown) => new Error(`${messageOf(e)}\nUnable to alloc vIOMMU: hiodi devid 0x${dev.devId.toString(16)}: `);
    const s2 = this.st.s2Hwpt;
    if (s2 === undefined) throw hint(new Error('no nesting-parent HWPT (setS2Hwpt was not called)'));
    const ops = this.st.ops;
    const undo: (() => void)[] = [];
    try {
      const id = ops
        ? this.be(() => ops.allocViommu(dev, s2))
        : this.be((b) => b.allocViommu(dev.devId, iommu_viommu_type.IOMMU_VIOMMU_TYPE_ARM_SMMUV3, s2).viommuId);
      undo.push(() => (ops ? this.be(() => ops.freeViommu()) : this.freeId(be, id)));
      const nested = iommu_hwpt_data_type.IOMMU_HWPT_DATA_ARM_SMMUV3;
      const abortHwpt = this.be((b) => b.allocHwpt(dev.devId, id, 0, nested, ABORT_STE_DATA()));
      undo.push(() => this.freeId(be, abortHwpt));
      const bypassHwpt = this.be((b) => b.allocHwpt(dev.devId, id, 0, nested, BYPASS_STE_DATA()));
      undo.push(() => this.freeId(be, bypassHwpt));
      this.st.viommu = { id, s2Hwpt: s2, abortHwpt, bypassHwpt };
      undo.push(() => {
        this.st.viommu = undefined;
      });
      this.allocVeventq();
      undo.push(() => this.freeVeventq(be));
      // GBPA while the SMMU is off (cold plug); abort until the STE is installed when it is on.
      this.be((b) => b.attachDevice(dev.vfioFd, this.smmuEnabled ? abortHwpt : this.gbpaHwpt()));
    } catch (e) {
      for (const u of undo.reverse()) u();
      throw hint(e);
    }
  }

  /** The generic vIOMMU free (last device gone): vEVENTQ, bypass, abort, vIOMMU. */
  private freeViommu(be: IommufdBackend): void {
    const vi = this.st.viommu;
    if (!vi) return;
    this.freeVeventq(be);
    this.freeId(be, vi.bypassHwpt);
    this.freeId(be, vi.abortHwpt);
    this.freeId(be, vi.id);
    this.st.viommu = undefined;
  }

  // ------------------------------------------------------------------------------------------
  // Events

  /** Allocate the SMMUv3 vEVENTQ once a vIOMMU exists and the guest has enabled EVENTQ. */
  private allocVeventq(): void {
    const vi = this.st.viommu;
    if (!vi || this.st.veventq || !R.CR0.f.EVENTQEN.get(this.file.get32(this.r.cr0))) return;
    const depth = 2 ** this.eventqLog2();
    this.st.veventq = this.be((b) => b.allocVeventq(vi.id, iommu_veventq_type.IOMMU_VEVENTQ_TYPE_ARM_SMMUV3, depth));
  }

  private freeVeventq(be: IommufdBackend): void {
    const q = this.st.veventq;
    if (!q) return;
    be.closeFd(q.fd);
    this.freeId(be, q.id);
    this.st.veventq = undefined;
  }

  /**
   * Write one host event record into the guest event queue. A full queue loses the event and
   * flags the overflow in EVENTQ_PROD.OVFLG; a write that aborts raises GERROR.EVENTQ_ABT_ERR.
   */
  private propagateEvent(rec: Uint8Array): void {
    const dv = new DataView(rec.buffer, rec.byteOffset, rec.byteLength);
    const id = rec[0]!;
    const sid = dv.getUint32(4, true);
    this.deps.tracer.emit(T.T_PROPAGATE_EVENT, EVENT_NAMES.get(id) ?? `0x${id.toString(16)}`, sid);
    if (!R.CR0.f.EVENTQEN.get(this.file.get32(this.r.cr0))) {
      this.stats.eventsLost++;
      return;
    }
    const log2 = this.eventqLog2();
    const prod = this.file.get32(this.r.eventqProd);
    const cons = this.file.get32(this.r.eventqCons);
    if (qFull(prod, cons, log2)) {
      this.stats.eventsLost++;
      const ov = R.EVENTQ_PROD.f.OVFLG;
      if (ov.get(prod) === R.EVENTQ_CONS.f.OVACKFLG.get(cons)) this.file.set32(this.r.eventqProd, ov.set(prod, ov.get(prod) ^ 1));
      return;
    }
    const base = this.file.field(this.r.eventqBase, R.EVENTQ_BASE.f.ADDR) * 32;
    const at = base + qIndex(prod, log2) * EVT_SIZE;
    try {
      for (let i = 0; i < EVT_SIZE / 4; i++) this.deps.guestMemory.write32(at + 4 * i, dv.getUint32(4 * i, true));
    } catch {
      this.deps.log.guestError(this.logSource, `event queue write abort at ${hex(at, 12)}`);
      this.triggerIrq(SMMU_IRQ_GERROR, R.GERROR.f.EVENTQ_ABT_ERR.set(0, 1));
      return;
    }
    const next = ((prod & ~qWrapMask(log2)) | qAdvance(prod, 1, log2)) >>> 0;
    this.file.set32(this.r.eventqProd, next);
    this.stats.events++;
    if (!qEmpty(next, cons, log2)) this.triggerIrq(SMMU_IRQ_EVTQ);
  }

  // ------------------------------------------------------------------------------------------
  // Host calls

  /** Run backend work, counting the ioctls it makes. */
  private be<V>(fn: (b: IommufdBackend) => V): V {
    const b = this.deps.backend!;
    const before = b.callTotal;
    try {
      return fn(b);
    } finally {
      this.stats.ioctls += b.callTotal - before;
    }
  }

  private freeId(be: IommufdBackend, id: number): void {
    this.be(() => be.freeId(id, (m) => this.report(m)));
  }

  /** error_report. */
  private report(msg: string): void {
    this.hostErrors.push(msg);
  }

  /** error_report_once, per kind of message. */
  private reportOnce(key: string, msg: string): void {
    if (this.reported.has(key)) return;
    this.reported.add(key);
    this.report(msg);
  }
}
