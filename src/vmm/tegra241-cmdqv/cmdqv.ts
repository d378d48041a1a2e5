/**
 * The VMM's Tegra241 CMDQV device (QEMU "Tegra241 CMDQV support for accelerated SMMUv3",
 * docs/reference/qemu-accel-smmuv3.md §3–11): the 0x50000 MMIO block with the config page and VINTF0 registers,
 * VCMDQ page0/page1 in the direct (0x10000/0x20000) and VINTF (0x30000/0x40000) apertures with
 * the hw/cache backing rule, HW-queue allocation as soon as BASE, ALLOC, CMDQV_EN and VINTF
 * ENABLE all hold ("any order"), the VINTF page0 RAM-device subregion (direct guest access,
 * no VM exit) while VINTF0 is enabled, error propagation from the vEVENTQ, reset, and the
 * IDR1.CMDQS cap. It implements the accelerated SMMU's {@link CmdqvOps}.
 */

import { hex, joinU64, splitU64 } from '../../kit/bits.js';
import { IrqLine } from '../../kit/irq.js';
import type { ModelLog } from '../../kit/log.js';
import { RecentList } from '../../kit/recent-list.js';
import { MemoryRegion, type RegionOps } from '../../kit/memory-region.js';
import { cloneState, type Persist } from '../../kit/persist.js';
import { RegisterBank } from '../../kit/register-bank.js';
import { instanceOffset, RegisterFile, registerSpan } from '../../kit/registers.js';
import type { Tracer } from '../../kit/trace.js';
import * as C from '../../arch/tegra241-cmdqv/registers.js';
import * as U from '../../uapi/iommufd.js';
import { BackendError, type Veventq } from '../backends/iommufd.js';
import type { MainLoop } from '../main-loop.js';
import { SMMUV3_CMDQV_TEGRA241, type AccelHostDevice, type CmdqvHost, type CmdqvOps } from '../smmuv3/cmdqv-ops.js';
import * as VmmRegs from './registers.js';
import * as T from './trace-events.js';

const SRC = 'tegra241-cmdqv';
const PAGE = C.CMDQV_PAGE_SIZE;
/** vEVENTQ depth: 1 << SMMU_EVENTQS. */
const VEVENTQ_DEPTH = 1 << 19;
const INIT_ERR = VmmRegs.P0_GERROR.f.CMDQ_INIT_ERR.wordMask(0);
/** VINTF0's bit in VI_ERR_MAP / VI_INT_MASK (bit v is VINTF v). */
const VINTF0_BIT = 1;

// Register offsets inside a VCMDQ's page0 and page1 slots (the decode switch cases).
const P0_CONS = instanceOffset(VmmRegs.P0_CONS);
const P0_PROD = instanceOffset(VmmRegs.P0_PROD);
const P0_CONFIG = instanceOffset(VmmRegs.P0_CONFIG);
const P0_GERRORN = instanceOffset(VmmRegs.P0_GERRORN);
const P1_BASE_LO = instanceOffset(VmmRegs.P1_BASE);
const P1_BASE_HI = P1_BASE_LO + 4;
const P1_DRAM_LO = instanceOffset(VmmRegs.P1_CONS_INDX_BASE);
const P1_DRAM_HI = P1_DRAM_LO + 4;

// The decoded windows: VCMDQ 0..1 page0 up to GERRORN, page1 up to CONS_INDX_BASE_DRAM's high
// word, each in the direct (global) aperture and aliased through VINTF0's pages.
const SLOT_SHIFT = Math.log2(C.VCMDQ_SLOT);
const PAGE0_DIRECT = C.vcmdqPage0Offset(0);
const PAGE0_DIRECT_LAST = C.vcmdqPage0Offset(VmmRegs.VCMDQS - 1) + P0_GERRORN;
const PAGE0_VI = C.lvcmdqPage0Offset(0, 0);
const PAGE0_VI_LAST = C.lvcmdqPage0Offset(0, VmmRegs.VCMDQS - 1) + P0_GERRORN;
const PAGE1_DIRECT = C.vcmdqPage1Offset(0);
const PAGE1_DIRECT_LAST = C.vcmdqPage1Offset(VmmRegs.VCMDQS - 1) + P1_DRAM_HI;
const PAGE1_VI = C.lvcmdqPage1Offset(0, 0);
const PAGE1_VI_LAST = C.lvcmdqPage1Offset(0, VmmRegs.VCMDQS - 1) + P1_DRAM_HI;

/** Config-page windows the decoder hands to the register table (others are unhandled). */
const CONFIG_WINDOWS = [
  [registerSpan(VmmRegs.CONFIG).start, registerSpan(VmmRegs.STATUS).end],
  [registerSpan(VmmRegs.VI_ERR_MAP).start, registerSpan(VmmRegs.CMDQ_ERR_MAP).end],
  [registerSpan(VmmRegs.CMDQ_ALLOC_MAP).start, registerSpan(VmmRegs.CMDQ_ALLOC_MAP).end],
  [registerSpan(VmmRegs.VINTF0_CONFIG).start, registerSpan(VmmRegs.VINTF0_LVCMDQ_ERR_MAP).end],
] as const;

/** Options of the device. */
export interface CmdqvDeviceDeps {
  readonly host: CmdqvHost;
  readonly log: ModelLog;
  readonly tracer: Tracer;
  /** The VMM's main loop: runs the vEVENTQ handler (later, not re-entrantly). */
  readonly mainLoop: MainLoop;
}

/**
 * Architectural state of the emulated CMDQV: its register files' words, held (not copied) by
 * the live register files.
 */
export interface CmdqvDeviceState {
  /** Config page (the words of {@link VmmRegs.CONFIG_PAGE}). */
  readonly config: Uint32Array;
  /** Per-VCMDQ page0 cache (the words of {@link VmmRegs.PAGE0}). */
  readonly page0: readonly Uint32Array[];
  /** Per-VCMDQ page1 cache (the words of {@link VmmRegs.PAGE1}). */
  readonly page1: readonly Uint32Array[];
}

/**
 * Loads a restored VCMDQ's page0 words into the HW queue just allocated for it, error state
 * included. iommufd has no call for it (a HW queue starts at CONS = PROD = 0, enabled only by
 * the VMM's CONFIG write); the platform supplies it as the kernel support a restore needs
 * (docs/design.md "Snapshot and migration").
 */
export type HwQueueLoader = (index: number, hwQueueId: number, page0: Uint32Array) => void;

/** Counters. */
export interface CmdqvDeviceStats {
  hwQueueAllocs: number;
  hwQueueFrees: number;
  allocFailures: number;
  errorEvents: number;
  /** vEVENTs pending at a reset, dropped (they describe queues the reset freed). */
  eventsDiscardedAtReset: number;
  irqs: number;
}

/** The emulated Tegra241 CMDQV. */
export class Tegra241Cmdqv implements CmdqvOps, RegionOps, Persist<CmdqvDeviceState> {
  /** The 0x50000 "tegra241-cmdqv" block (sysbus MMIO index 1); present after init(). */
  mmio: MemoryRegion | undefined;
  /** The error interrupt (sysbus IRQ index 4). */
  readonly irq = new IrqLine('tegra241-cmdqv');
  /** The config page: global registers and VINTF0's block. */
  readonly configPage: RegisterBank;
  readonly page0: RegisterFile[] = [];
  readonly page1: RegisterFile[] = [];
  readonly stats: CmdqvDeviceStats = { hwQueueAllocs: 0, hwQueueFrees: 0, allocFailures: 0, errorEvents: 0, eventsDiscardedAtReset: 0, irqs: 0 };
  /**
   * Errors printed with error_report (stderr in QEMU): the newest kept, every one counted (a
   * guest can cause them at will, e.g. refused BASE writes; issue 14 #9).
   */
  readonly errorReports = new RecentList<string>();

  /** HW queue id per VCMDQ (HW mode), or undefined (cache mode). */
  readonly hwQueue: (number | undefined)[] = [undefined, undefined];
  /**
   * HW queues whose IOMMU_DESTROY failed, per index: no longer used (the VCMDQ left HW mode),
   * but still the kernel's, so destroyed again before that index is allocated or the vIOMMU freed.
   */
  readonly undestroyed: (number | undefined)[] = [undefined, undefined];
  viommuId: number | undefined;
  /** VMM address of the mmap'd host VINTF page0. */
  page0Va: number | undefined;
  /** The RAM-device subregion at 0x30000, present while VINTF0 is enabled. */
  page0Region: MemoryRegion | undefined;
  veventq: Veventq | undefined;
  private readonly state: CmdqvDeviceState;
  private page0Ops: RegionOps | undefined;
  private readonly warned = new Set<string>();
  /** The vEVENTQ fd handler, made once. */
  private readonly onVeventqReadable = () => this.pollEvents();
  /** error_report into {@link errorReports}, made once. */
  private readonly report = (message: string): void => this.errorReports.push(message);
  /** Set by {@link noteDestroyFailure} while one IOMMU_DESTROY runs. */
  private destroyFailed = false;
  private readonly noteDestroyFailure = (message: string): void => {
    this.destroyFailed = true;
    this.report(message);
  };
  /** Register instances of the config page and the VCMDQ pages, looked up once. */
  private readonly regs;

  constructor(private readonly deps: CmdqvDeviceDeps) {
    this.configPage = new RegisterBank(SRC, VmmRegs.CONFIG_PAGE, deps.log);
    this.configPage.logKind = 'unimp';
    for (let i = 0; i < VmmRegs.VCMDQS; i++) {
      this.page0.push(new RegisterFile(VmmRegs.PAGE0));
      this.page1.push(new RegisterFile(VmmRegs.PAGE1));
    }
    this.state = {
      config: this.configPage.file.words,
      page0: this.page0.map((file) => file.words),
      page1: this.page1.map((file) => file.words),
    };
    const L = VmmRegs.CONFIG_PAGE;
    this.regs = {
      config: L.of(VmmRegs.CONFIG),
      status: L.of(VmmRegs.STATUS),
      viErr0: L.of(VmmRegs.VI_ERR_MAP, 0),
      viMask0: L.of(VmmRegs.VI_INT_MASK, 0),
      cmdqErr: L.instancesOf(VmmRegs.CMDQ_ERR_MAP),
      alloc: L.instancesOf(VmmRegs.CMDQ_ALLOC_MAP),
      vintfConfig: L.of(VmmRegs.VINTF0_CONFIG),
      vintfStatus: L.of(VmmRegs.VINTF0_STATUS),
      lvErr: L.instancesOf(VmmRegs.VINTF0_LVCMDQ_ERR_MAP),
      sids: [...L.instancesOf(VmmRegs.VINTF0_SID_MATCH), ...L.instancesOf(VmmRegs.VINTF0_SID_REPLACE)],
      p0: {
        cons: VmmRegs.PAGE0.of(VmmRegs.P0_CONS),
        prod: VmmRegs.PAGE0.of(VmmRegs.P0_PROD),
        config: VmmRegs.PAGE0.of(VmmRegs.P0_CONFIG),
        status: VmmRegs.PAGE0.of(VmmRegs.P0_STATUS),
        gerror: VmmRegs.PAGE0.of(VmmRegs.P0_GERROR),
        gerrorn: VmmRegs.PAGE0.of(VmmRegs.P0_GERRORN),
      },
      base: VmmRegs.PAGE1.of(VmmRegs.P1_BASE),
      dram: VmmRegs.PAGE1.of(VmmRegs.P1_CONS_INDX_BASE),
    };
    this.configPage.onWrite(VmmRegs.CONFIG, () => this.configWritten());
    this.configPage.onWrite(VmmRegs.CMDQ_ALLOC_MAP, (reg, prev) => this.allocMapWritten(reg.instance, prev));
    this.configPage.onWrite(VmmRegs.VINTF0_CONFIG, () => this.vintfConfigWritten());
  }

  /** The most recent error_report messages, oldest first (see {@link errorReports} for the count). */
  get errors(): string[] {
    return this.errorReports.entries();
  }

  // ------------------------------------------------------------------------------------------
  // CmdqvOps

  getType(): number {
    return SMMUV3_CMDQV_TEGRA241;
  }

  /** Probe the host (docs/reference/qemu-accel-smmuv3.md §4.2): hw_info of type TEGRA241_CMDQV with the required minimums. */
  probe(dev: AccelHostDevice): void {
    const type = U.iommu_hw_info_type.IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV;
    const info = this.deps.host.backend.getDeviceInfo(dev.devId, type, U.iommu_hw_info_tegra241_cmdqv.size);
    if (info.type !== type) throw new Error(`Host CMDQV: unexpected data type ${info.type} (expected ${type})`);
    const hwInfo = U.iommu_hw_info_tegra241_cmdqv.decode(info.data);
    if (hwInfo.version !== 1) throw new Error(`Host CMDQV: unsupported version ${hwInfo.version} (expected 1)`);
    if (hwInfo.log2vcmdqs < 1) throw new Error(`Host CMDQV: insufficient vCMDQs log2=${hwInfo.log2vcmdqs} (need >= 1)`);
    if (hwInfo.log2vsids < 4) throw new Error(`Host CMDQV: insufficient SIDs log2=${hwInfo.log2vsids} (need >= 4)`);
  }

  /** Create the MMIO block and IRQ; registers read zero until the first reset (docs/reference/qemu-accel-smmuv3.md §4.3). */
  init(): void {
    this.mmio = MemoryRegion.mmio(SRC, VmmRegs.CMDQV_IO_LEN, this);
    this.state.config.fill(0);
    for (const words of [...this.state.page0, ...this.state.page1]) words.fill(0);
  }

  /** vIOMMU of type TEGRA241_CMDQV, page0 mmap, CMDQV vEVENTQ (docs/reference/qemu-accel-smmuv3.md §4.4). */
  allocViommu(dev: AccelHostDevice, s2HwptId: number): number {
    const backend = this.deps.host.backend;
    const { viommuId, data } = backend.allocViommu(dev.devId, U.iommu_viommu_type.IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV, s2HwptId, new Uint8Array(16));
    const out = U.iommu_viommu_tegra241_cmdqv.decode(data!);
    let va: number;
    try {
      va = backend.viommuMmap(viommuId, PAGE, Number(out.out_vintf_mmap_offset));
    } catch (e) {
      backend.freeId(viommuId, this.report);
      throw new Error(`${(e as Error).message}: Tegra241 CMDQV: failed to mmap VINTF page0`);
    }
    let veventq: Veventq;
    try {
      veventq = backend.allocVeventq(viommuId, U.iommu_veventq_type.IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV, VEVENTQ_DEPTH);
    } catch (e) {
      backend.munmap(va, PAGE);
      backend.freeId(viommuId, this.report);
      throw new Error(`${(e as Error).message}: Tegra241 CMDQV: failed to alloc veventq`);
    }
    this.viommuId = viommuId;
    this.page0Va = va;
    this.veventq = veventq;
    this.page0Ops = backend.mappedDevice(va);
    this.deps.mainLoop.setFdHandler(veventq.fd, this.onVeventqReadable);
    return viommuId;
  }

  /** Error-unwind release (docs/reference/qemu-accel-smmuv3.md §4.6). */
  freeViommu(): void {
    if (this.viommuId === undefined) return;
    const backend = this.deps.host.backend;
    const report = this.report;
    // HW queues hold the vIOMMU: they go first (descending), or its destroy would fail EBUSY.
    this.unmapPage0();
    this.freeAll();
    if (this.veventq) {
      this.deps.mainLoop.setFdHandler(this.veventq.fd, undefined);
      backend.closeFd(this.veventq.fd);
      backend.freeId(this.veventq.id, report);
      this.veventq = undefined;
    }
    if (this.page0Va !== undefined) backend.munmap(this.page0Va, PAGE);
    this.page0Va = undefined;
    this.page0Ops = undefined;
    backend.freeId(this.viommuId, report);
    this.viommuId = undefined;
  }

  /** Device reset (docs/reference/qemu-accel-smmuv3.md §7.1): unmap page0, free queues, re-init registers, cap CMDQS. */
  reset(): void {
    this.unmapPage0();
    this.freeAll();
    this.discardEvents();
    // VINTF0 SID tables survive reset in QEMU (quirk Q4, kept: they are stored only).
    const file = this.configPage.file;
    const sids = this.regs.sids.map((reg) => file.get32(reg));
    this.configPage.reset();
    this.regs.sids.forEach((reg, i) => file.set32(reg, sids[i]!));
    for (const page of [...this.page0, ...this.page1]) page.reset();
    this.deps.tracer.emit(T.T_INIT_REGS, VmmRegs.PARAM_VALUE);
    const pageSize = this.deps.host.minRamPageSize();
    const cap = Math.min(Math.log2(pageSize) - 4, this.deps.host.getCmdqs());
    this.deps.host.setCmdqs(cap);
  }

  // ------------------------------------------------------------------------------------------
  // Persist

  /**
   * A copy of the registers. A VCMDQ in HW mode keeps its page0 registers in the host's VINTF
   * page, so the copy takes them from there.
   */
  save(): CmdqvDeviceState {
    const saved = cloneState(this.state);
    for (let i = 0; i < VmmRegs.VCMDQS; i++) {
      if (!this.hwMode(i)) continue;
      for (const reg of VmmRegs.PAGE0.registers) saved.page0[i]![reg.slot] = this.hostRead(i, reg.offset);
    }
    return saved;
  }

  /**
   * Load registers saved by {@link save}, then re-derive what follows from them: the HW queues
   * (allocated again from the cached page0 values when ready) and the VINTF page0 mapping.
   */
  restore(saved: CmdqvDeviceState, loadHwQueue?: HwQueueLoader): void {
    this.unmapPage0();
    this.freeAll();
    this.state.config.set(saved.config);
    saved.page0.forEach((words, i) => this.state.page0[i]!.set(words));
    saved.page1.forEach((words, i) => this.state.page1[i]!.set(words));
    if (this.vintfEnabled) {
      this.loadHwQueue = loadHwQueue;
      try {
        this.setupAll();
      } finally {
        this.loadHwQueue = undefined;
      }
      this.mapPage0();
    }
  }

  /** Set while {@link restore} re-creates HW queues with a loader. */
  private loadHwQueue: HwQueueLoader | undefined;

  // ------------------------------------------------------------------------------------------
  // Register side effects

  private get cmdqvEnabled(): boolean {
    return this.configPage.file.field(this.regs.status, VmmRegs.STATUS.f.CMDQV_ENABLED) === 1;
  }

  private get vintfEnabled(): boolean {
    return this.configPage.file.field(this.regs.vintfStatus, VmmRegs.VINTF0_STATUS.f.ENABLE_OK) === 1;
  }

  private configWritten(): void {
    const file = this.configPage.file;
    if (file.field(this.regs.config, VmmRegs.CONFIG.f.CMDQV_EN)) {
      file.set32(this.regs.status, VmmRegs.STATUS.f.CMDQV_ENABLED.set(0, 1));
      this.setupAll();
    } else {
      this.freeAll();
      file.set32(this.regs.status, 0);
    }
  }

  private allocMapWritten(i: number, prev: number): void {
    const ALLOC = VmmRegs.CMDQ_ALLOC_MAP.f.ALLOC;
    const now = this.configPage.file.field(this.regs.alloc[i]!, ALLOC);
    if (now && !ALLOC.get(prev)) this.setup(i);
    else if (!now && ALLOC.get(prev)) this.free(i);
  }

  private vintfConfigWritten(): void {
    const file = this.configPage.file;
    if (file.field(this.regs.vintfConfig, VmmRegs.VINTF0_CONFIG.f.ENABLE)) {
      file.setField(this.regs.vintfStatus, VmmRegs.VINTF0_STATUS.f.ENABLE_OK, 1);
      this.setupAll();
      this.mapPage0();
    } else {
      this.unmapPage0();
      this.freeAll();
      file.setField(this.regs.vintfStatus, VmmRegs.VINTF0_STATUS.f.ENABLE_OK, 0);
    }
  }

  private mapPage0(): void {
    if (this.page0Region || !this.mmio || !this.page0Ops) return;
    this.page0Region = MemoryRegion.ramDevice(`${SRC} vintf-page0`, PAGE, this.page0Ops, {
      skipIommuMap: true,
      rules: { sizes: [4, 8], unaligned: false },
    });
    this.mmio.addSubregion(C.vintfPage0Offset(0), this.page0Region, 1);
  }

  private unmapPage0(): void {
    if (!this.page0Region || !this.mmio) return;
    this.mmio.removeSubregion(this.page0Region);
    this.page0Region = undefined;
  }

  // ------------------------------------------------------------------------------------------
  // HW queues (docs/reference/qemu-accel-smmuv3.md §5)

  /** Whether VCMDQ i may be allocated: BASE ≠ 0, ALLOC, CMDQV enabled, VINTF0 enabled. */
  ready(i: number): boolean {
    return (
      this.page1[i]!.get64(this.regs.base) !== 0n &&
      this.configPage.file.field(this.regs.alloc[i]!, VmmRegs.CMDQ_ALLOC_MAP.f.ALLOC) === 1 &&
      this.cmdqvEnabled &&
      this.vintfEnabled
    );
  }

  /**
   * Allocate (or re-allocate) VCMDQ i's HW queue when ready; returns false on failure.
   *
   * The kernel destroys HW queues only in descending index (each holds the one below it,
   * docs/reference/qemu-accel-smmuv3.md §5.8), so re-creating queue i first takes down the live
   * queues above it, keeping their page0 registers, and re-creates them afterwards from those:
   * on hardware a BASE write changes nothing but that register (issue 14 #2).
   */
  setup(i: number): boolean {
    if (!this.ready(i) || this.viommuId === undefined) return true;
    const above = this.takeDownAbove(i);
    this.free(i);
    const ok = this.allocate(i, this.viommuId);
    // Ascending, as the kernel allocates; each from the registers it had.
    for (let j = i + 1; j < VmmRegs.VCMDQS; j++) if (above & (1 << j)) this.setup(j);
    return ok;
  }

  /**
   * Free the live HW queues above index i, highest first, after copying their page0 registers
   * into the cache. Returns the set of indexes freed (bit j for queue j).
   */
  private takeDownAbove(i: number): number {
    let above = 0;
    for (let j = VmmRegs.VCMDQS - 1; j > i; j--) {
      if (!this.hwMode(j)) continue;
      const cache = this.state.page0[j]!;
      for (const reg of VmmRegs.PAGE0.registers) cache[reg.slot] = this.hostRead(j, reg.offset);
      this.free(j, true);
      above |= 1 << j;
    }
    return above;
  }

  /** IOMMU_HW_QUEUE_ALLOC for ready queue i from its cached BASE, then sync the cache to HW. */
  private allocate(i: number, viommuId: number): boolean {
    const base = this.page1[i]!.get64(this.regs.base);
    const addr = Number(base & VmmRegs.P1_BASE.f.ADDR.mask);
    const size = 2 ** (Number(VmmRegs.P1_BASE.f.LOG2SIZE.getBig(base)) + 4);
    // A queue the VMM once failed to destroy still holds the index (and those below it).
    this.destroyUndestroyed();
    const cache = this.page0[i]!;
    const { p0 } = this.regs;
    try {
      this.hwQueue[i] = this.deps.host.backend.allocHwQueue(viommuId, U.iommu_hw_queue_type.IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV, i, addr, size);
    } catch (e) {
      if (!(e instanceof BackendError)) throw e;
      cache.set32(p0.gerror, cache.get32(p0.gerror) | INIT_ERR);
      cache.set32(p0.status, 0);
      this.stats.allocFailures++;
      this.report(e.message);
      this.deps.log.guestError(SRC, `vcmdq${i}: ${e.message}`);
      return false;
    }
    this.stats.hwQueueAllocs++;
    const load = this.loadHwQueue;
    if (load) {
      // A restore: the saved page0 words (taken from the source's host page) go to the new queue
      // as they were, error state included; pushing CONS/PROD/CONFIG would make it run.
      load(i, this.hwQueue[i]!, cache.words.slice());
      return true;
    }
    cache.set32(p0.gerror, cache.get32(p0.gerror) & ~INIT_ERR);
    cache.set32(p0.status, VmmRegs.P0_STATUS.f.CMDQ_EN_OK.set(0, 1));
    // Push the cache to HW. GERRORN is not replayed (quirk Q3: a stale GERRORN could stall the queue).
    this.hostWrite(i, P0_CONS, cache.get32(p0.cons));
    this.hostWrite(i, P0_PROD, cache.get32(p0.prod));
    this.hostWrite(i, P0_CONFIG, cache.get32(p0.config));
    return true;
  }

  private setupAll(): void {
    for (let i = 0; i < VmmRegs.VCMDQS; i++) if (!this.setup(i)) return;
  }

  /**
   * Free VCMDQ i's HW queue (if any): the VCMDQ leaves HW mode and its page0 cache is zeroed
   * (kept with `keepCache`). A destroy the kernel refuses is remembered in {@link undestroyed}
   * and retried, never forgotten.
   */
  free(i: number, keepCache = false): void {
    const id = this.hwQueue[i];
    if (id === undefined) return;
    this.hwQueue[i] = undefined;
    if (!keepCache) this.page0[i]!.words.fill(0);
    if (this.destroy(id)) this.stats.hwQueueFrees++;
    else this.undestroyed[i] = id;
  }

  /** Free in descending order (the uAPI requires it), then any queue a past destroy left. */
  private freeAll(): void {
    for (let i = VmmRegs.VCMDQS - 1; i >= 0; i--) this.free(i);
    this.destroyUndestroyed();
  }

  /** Retry the destroys the kernel refused before, highest index first. */
  private destroyUndestroyed(): void {
    for (let i = VmmRegs.VCMDQS - 1; i >= 0; i--) {
      const id = this.undestroyed[i];
      if (id === undefined || !this.destroy(id)) continue;
      this.undestroyed[i] = undefined;
      this.stats.hwQueueFrees++;
    }
  }

  /** IOMMU_DESTROY of `id`; a failure is reported. Returns whether the kernel destroyed it. */
  private destroy(id: number): boolean {
    this.destroyFailed = false;
    this.deps.host.backend.freeId(id, this.noteDestroyFailure);
    return !this.destroyFailed;
  }

  /** Read register `reg` of logical queue i's slot in the host VINTF page0. */
  private hostRead(i: number, reg: number): number {
    return this.page0Ops!.read(C.VCMDQ_SLOT * i + reg, 4);
  }

  /** Write register `reg` of logical queue i's slot in the host VINTF page0. */
  private hostWrite(i: number, reg: number, value: number): void {
    this.page0Ops!.write(C.VCMDQ_SLOT * i + reg, 4, value);
  }

  private hwMode(i: number): boolean {
    return this.hwQueue[i] !== undefined && this.page0Ops !== undefined;
  }

  // ------------------------------------------------------------------------------------------
  // MMIO decode (docs/reference/qemu-accel-smmuv3.md §3.1–3.2)

  read(offset: number, size: 1 | 2 | 4): number {
    return Number(this.readAny(offset, size));
  }

  read64(offset: number): bigint {
    return this.readAny(offset, 8);
  }

  write(offset: number, size: 1 | 2 | 4, value: number): void {
    if (size !== 4) {
      this.deps.log.guestError(SRC, `tegra241_cmdqv_write bad write size ${size} at ${hex(offset, 5)}`);
      return;
    }
    this.write32(offset, value >>> 0);
    this.deps.tracer.emit(T.T_WRITE_MMIO, offset, value >>> 0, 4);
  }

  write64(offset: number, value: bigint): void {
    const p1 = this.page1Decode(offset);
    if (p1 && (p1.reg === P1_BASE_LO || p1.reg === P1_DRAM_LO)) {
      this.page1Write(p1.index, p1.aperture, p1.reg, value, 8);
    } else {
      this.deps.log.unimp(SRC, `tegra241_cmdqv_write unhandled 64-bit write at ${hex(offset, 5)} (WI)`);
    }
    this.deps.tracer.emit(T.T_WRITE_MMIO, offset, value, 8);
  }

  private readAny(offset: number, size: number): bigint {
    if (offset >= VmmRegs.CMDQV_IO_LEN) {
      this.deps.log.unimp(SRC, `tegra241_cmdqv_read offset ${hex(offset, 5)} off limit (${hex(VmmRegs.CMDQV_IO_LEN, 5)})`);
      this.deps.tracer.emit(T.T_READ_MMIO, offset, 0n, size);
      return 0n;
    }
    const p0 = this.page0Decode(offset);
    if (p0) return BigInt(this.page0Read(p0.index, p0.aperture, p0.reg));
    const p1 = this.page1Decode(offset);
    if (p1) return this.page1Read(p1.index, p1.aperture, p1.reg, size);
    let value = 0;
    if (this.isConfigOffset(offset)) value = this.configPage.read(offset, 4);
    else this.deps.log.unimp(SRC, `tegra241_cmdqv_read unhandled read access at ${hex(offset, 5)}`);
    this.deps.tracer.emit(T.T_READ_MMIO, offset, value, size);
    return BigInt(value);
  }

  private write32(offset: number, value: number): void {
    if (offset >= VmmRegs.CMDQV_IO_LEN) {
      this.deps.log.unimp(SRC, `tegra241_cmdqv_write offset ${hex(offset, 5)} off limit (${hex(VmmRegs.CMDQV_IO_LEN, 5)})`);
      return;
    }
    const p0 = this.page0Decode(offset);
    if (p0) return this.page0Write(p0.index, p0.aperture, p0.reg, value);
    const p1 = this.page1Decode(offset);
    if (p1) return this.page1Write(p1.index, p1.aperture, p1.reg, BigInt(value), 4);
    if (this.isConfigOffset(offset)) this.configPage.write(offset, 4, value);
    else this.deps.log.unimp(SRC, `tegra241_cmdqv_write unhandled write access at ${hex(offset, 5)}`);
  }

  /** Config-page offsets the decoder hands to the register table (others are unhandled). */
  private isConfigOffset(offset: number): boolean {
    for (const [start, end] of CONFIG_WINDOWS) if (offset >= start && offset < end) return true;
    return false;
  }

  /** Page0 decode: direct 0x10000–0x10094, VINTF 0x30000–0x30094 (an alias of the direct view). */
  private page0Decode(offset: number): { index: number; aperture: 'direct' | 'vi'; reg: number } | undefined {
    let aperture: 'direct' | 'vi' = 'direct';
    let o = offset;
    if (o >= PAGE0_VI && o <= PAGE0_VI_LAST) {
      o -= PAGE0_VI - PAGE0_DIRECT;
      aperture = 'vi';
    }
    if (o < PAGE0_DIRECT || o > PAGE0_DIRECT_LAST) return undefined;
    const index = (o - PAGE0_DIRECT) >>> SLOT_SHIFT;
    return { index, aperture, reg: o - C.vcmdqPage0Offset(index) };
  }

  /** Page1 decode: direct 0x20000–0x2008C, VINTF 0x40000–0x4008C. */
  private page1Decode(offset: number): { index: number; aperture: 'direct' | 'vi'; reg: number } | undefined {
    let aperture: 'direct' | 'vi' = 'direct';
    let o = offset;
    if (o >= PAGE1_VI && o <= PAGE1_VI_LAST) {
      o -= PAGE1_VI - PAGE1_DIRECT;
      aperture = 'vi';
    }
    if (o < PAGE1_DIRECT || o > PAGE1_DIRECT_LAST) return undefined;
    const index = (o - PAGE1_DIRECT) >>> SLOT_SHIFT;
    return { index, aperture, reg: o - C.vcmdqPage1Offset(index) };
  }

  private page0Read(i: number, aperture: string, reg: number): number {
    let value: number;
    let backing = 'cache';
    if (this.hwMode(i)) {
      backing = 'hw';
      value = this.hostRead(i, reg);
    } else if (reg <= P0_GERRORN) {
      value = this.page0[i]!.get32(VmmRegs.PAGE0.registerAt(reg)!);
    } else {
      this.deps.log.unimp(SRC, `tegra241_cmdqv_read_vcmdq_page0 unhandled read access at ${hex(PAGE0_DIRECT + reg, 5)}`);
      value = 0;
    }
    this.deps.tracer.emit(T.T_READ_VCMDQ_PAGE0, i, aperture, backing, PAGE0_DIRECT + reg, value);
    return value;
  }

  private page0Write(i: number, aperture: string, reg: number, value: number): void {
    const hwReg = reg === P0_CONS || reg === P0_PROD || reg === P0_CONFIG || reg === P0_GERRORN;
    if (this.hwMode(i) && hwReg) {
      this.hostWrite(i, reg, value);
      this.deps.tracer.emit(T.T_WRITE_VCMDQ_PAGE0, i, aperture, 'hw', PAGE0_DIRECT + reg, value);
      return;
    }
    const cache = this.page0[i]!;
    const { p0 } = this.regs;
    switch (reg) {
      case P0_CONS:
        cache.set32(p0.cons, value);
        break;
      case P0_PROD:
        cache.set32(p0.prod, value);
        break;
      case P0_CONFIG:
        if (VmmRegs.P0_CONFIG.f.CMDQ_EN.get(value)) {
          if (!(cache.get32(p0.gerror) & INIT_ERR)) cache.set32(p0.status, VmmRegs.P0_STATUS.f.CMDQ_EN_OK.set(0, 1));
        } else {
          cache.set32(p0.status, 0);
        }
        cache.set32(p0.config, value);
        break;
      case P0_GERRORN:
        cache.set32(p0.gerrorn, value);
        break;
      default:
        this.deps.log.unimp(SRC, `tegra241_cmdqv_write_vcmdq_page0 unhandled write access at ${hex(PAGE0_DIRECT + reg, 5)}`);
    }
    this.deps.tracer.emit(T.T_WRITE_VCMDQ_PAGE0, i, aperture, 'cache', PAGE0_DIRECT + reg, value);
  }

  private page1Read(i: number, aperture: string, reg: number, size: number): bigint {
    const cache = this.page1[i]!;
    const base = cache.get64(this.regs.base);
    const dram = cache.get64(this.regs.dram);
    let value: bigint;
    switch (reg) {
      case P1_BASE_LO:
        value = size === 8 ? base : BigInt(splitU64(base)[0]);
        break;
      case P1_BASE_HI:
        value = BigInt(splitU64(base)[1]);
        break;
      case P1_DRAM_LO:
        value = size === 8 ? dram : BigInt(splitU64(dram)[0]);
        break;
      case P1_DRAM_HI:
        value = BigInt(splitU64(dram)[1]);
        break;
      default:
        this.deps.log.unimp(SRC, `tegra241_cmdqv_read_vcmdq_page1 unhandled read access at ${hex(PAGE1_DIRECT + reg, 5)}`);
        value = 0n;
    }
    this.deps.tracer.emit(T.T_READ_VCMDQ_PAGE1, i, aperture, PAGE1_DIRECT + reg, value);
    return value;
  }

  private page1Write(i: number, aperture: string, reg: number, value: bigint, size: number): void {
    const cache = this.page1[i]!;
    const isBase = reg === P1_BASE_LO || reg === P1_BASE_HI;
    const target = isBase ? this.regs.base : this.regs.dram;
    const [oldLo, oldHi] = splitU64(cache.get64(target));
    const low = reg === P1_BASE_LO || reg === P1_DRAM_LO;
    const high = reg === P1_BASE_HI || reg === P1_DRAM_HI;
    let handled = true;
    if (size === 8 && low) cache.set64(target, value);
    else if (size === 4 && low) cache.set64(target, joinU64(splitU64(value)[0], oldHi));
    else if (size === 4 && high) cache.set64(target, joinU64(oldLo, splitU64(value)[0]));
    else handled = false;
    this.deps.tracer.emit(T.T_WRITE_VCMDQ_PAGE1, i, aperture, PAGE1_DIRECT + reg, value);
    if (!handled) {
      this.deps.log.unimp(SRC, `tegra241_cmdqv_write_vcmdq_page1 unhandled ${size === 8 ? '64-bit ' : ''}write at ${hex(PAGE1_DIRECT + reg, 5)}`);
      return;
    }
    if (isBase) {
      const ok = this.setup(i);
      if (!ok) this.deps.log.guestError(SRC, `vcmdq${i}: HW queue allocation failed after BASE write`);
    }
  }

  // ------------------------------------------------------------------------------------------
  // Error path (docs/reference/qemu-accel-smmuv3.md §11)

  /**
   * The vEVENTQ fd handler: read one record, validate it, propagate it into the registers and
   * the IRQ, and return (QEMU's handler; the main loop calls again while records remain). A
   * record the guest's reaction causes is left for the next call, so a guest that acknowledges
   * without fixing the command cannot hold the loop (issue 14 #3).
   */
  pollEvents(): void {
    const veventq = this.veventq;
    if (!veventq) return;
    const record = this.deps.host.backend.readVevent(veventq, U.iommu_vevent_tegra241_cmdqv.size);
    if (record.kind === 'none') return;
    if (record.kind === 'error') {
      this.warnOnce(record.message);
      return;
    }
    if (record.lost) this.deps.log.guestError(SRC, `vEVENTQ(type ${veventq.type} id ${veventq.id}): lost ${record.lost} event(s)`);
    this.propagate(U.iommu_vevent_tegra241_cmdqv.decode(record.payload).lvcmdq_err_map);
  }

  /**
   * Drop the vEVENTs already queued: they report errors of queues a reset just freed, and
   * propagating them afterwards would set error maps a new machine does not have (found by
   * `cmdqv fuzz`: VI_ERR_MAP read 1 after reset).
   */
  private discardEvents(): void {
    const veventq = this.veventq;
    if (!veventq) return;
    for (let k = 0; k <= VEVENTQ_DEPTH; k++) {
      const record = this.deps.host.backend.readVevent(veventq, U.iommu_vevent_tegra241_cmdqv.size);
      if (record.kind === 'none') break;
      if (record.kind === 'record') this.stats.eventsDiscardedAtReset++;
    }
  }

  private warnOnce(message: string): void {
    const key = message.replace(/\d+/g, '#');
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.report(message);
    this.deps.log.guestError(SRC, message);
  }

  /** Copy the host's LVCMDQ error map into the VINTF0/global maps and pulse the IRQ if unmasked. */
  propagate(map: readonly bigint[]): void {
    const map0 = map[0]!;
    const map1 = map[1]!;
    if (map0 === 0n && map1 === 0n) return;
    const words = [...splitU64(map0), ...splitU64(map1)];
    const file = this.configPage.file;
    words.forEach((word, k) => {
      file.set32(this.regs.lvErr[k]!, word);
      file.set32(this.regs.cmdqErr[k]!, word);
    });
    file.set32(this.regs.viErr0, file.get32(this.regs.viErr0) | VINTF0_BIT);
    this.stats.errorEvents++;
    if (!(file.get32(this.regs.viMask0) & VINTF0_BIT)) {
      this.stats.irqs++;
      this.irq.pulse();
    }
    this.deps.tracer.emit(T.T_ERR_MAP, words[3]!, words[2]!, words[1]!, words[0]!);
  }
}
