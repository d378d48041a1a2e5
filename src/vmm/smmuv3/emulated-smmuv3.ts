/**
 * QEMU's emulated SMMUv3 (`-device arm-smmuv3,primary-bus=X` without accel, and the machine-wide
 * `-machine virt,iommu=smmuv3`): every translation and every invalidation done in the VMM, over
 * guest memory (docs/reference/qemu-smmuv3.md).
 *
 * The guest sees the same register frame as the accelerated SMMUv3 (`register-frame.ts`) with
 * QEMU's ID registers (`idr.ts`: `stage` = 1 | 2 | nested sets S1P/S2P). Translation is the
 * shared SMMUv3 engine (`arch/smmuv3/translator.ts`, the host SMMU runs the same one over host
 * memory) with QEMU's stream-table lookup and STE/CD limits (`emulated-config.ts`) and QEMU's
 * fault reporting (R bits honoured, no IOTLB fill on a permission fault, CLASS_CD for a nested CD
 * fetch). The command queue (`emulated-cmdq.ts`) acts on the engine's configuration cache and
 * IOTLB; faults go to the guest event queue (`emulated-events.ts`). PCI devices reach it through
 * {@link PciIommu.translate}.
 *
 * State apart from runtime: {@link EmulatedSmmuV3State} (the register file's words and the IDRs)
 * through {@link Persist}. The configuration cache and the IOTLB are not saved: a restore empties
 * them (QEMU's vmstate does not carry them either) and they refill from guest memory.
 *
 * Where this model differs from QEMU (hw/arm/smmuv3.c + smmu-common.c), deliberately:
 * - `reset()` restores every register's declared reset value (QEMU keeps STRTAB_*, CR1/CR2, the
 *   IRQ configuration and the queue bases across reset, only resetting LOG2SIZE to 19).
 * - Pages 0 and 1 are not aliased (EVENTQ_PROD/CONS only at 0x100A8/0x100AC).
 * - A 2-level stream table descriptor's Span s covers 2^(s-1) STEs (the architecture; QEMU
 *   accepts 2^s − 1), as the accelerated SMMUv3 does.
 * - Only TT0 of a CD is used: addresses above TT0's range fault (QEMU also walks TT1 when
 *   EPD1 = 0; Linux sets EPD1). A CD with EPD0 = 1 faults every TT0 access, as QEMU does.
 *   STE.S2AA64 = 0 is C_BAD_STE (QEMU asserts). STE.S2AFFD is ignored: AF = 0 always faults (QEMU skips the check with S2AFFD).
 * - The IOTLB is the shared engine's (one entry per page or block, tagged VMID + ASID, the IPA
 *   kept): TLBI_S2_IPA also drops the nested entries built on that IPA, and when full it evicts
 *   one entry (QEMU empties its 256-entry table).
 * - The configuration cache is keyed by StreamID (QEMU: by PCI device, which is one StreamID).
 * - STRTAB_BASE / STRTAB_BASE_CFG writes do not flush the cache (as QEMU: CFGI_ALL does).
 */

import * as R from '../../arch/smmuv3/registers.js';
import { ACCESS_READ, ACCESS_WRITE, Translation, Translator, type FaultModel } from '../../arch/smmuv3/translator.js';
import type { TableReader } from '../../arch/smmuv3/page-table.js';
import { hex } from '../../kit/bits.js';
import type { IrqLine } from '../../kit/irq.js';
import type { ModelLog } from '../../kit/log.js';
import type { MemoryRegion } from '../../kit/memory-region.js';
import { cloneState, type Persist } from '../../kit/persist.js';
import type { RegisterBank } from '../../kit/register-bank.js';
import type { Tracer } from '../../kit/trace.js';
import type { DmaTranslation, PciIommu } from '../pci/iommu.js';
import type { AccelObservers } from './accel-state.js';
import { EmulatedCommandQueue, type EmulatedCmdqStats } from './emulated-cmdq.js';
import { EmulatedConfigRules } from './emulated-config.js';
import { EmulatedEventQueue, EVENT_NAMES, type EmulatedEventStats } from './emulated-events.js';
import { initialIdr, type Idr } from './idr.js';
import { validateProperties, type AccelSmmuV3Properties } from './properties.js';
import { SmmuRegisterFrame } from './register-frame.js';
import type { GuestMemory } from './ste-install.js';
import * as T from './trace-events.js';

/** QEMU's fault reporting (docs/reference/qemu-smmuv3.md §5.1). */
const QEMU_FAULTS: FaultModel = { honourRecordBits: true, cacheOnPermissionFault: false, cdFetchS2FaultAsWalk: true, cacheStreamOnBadCd: false, tableFetchFaultIsRead: true, epd0TranslationFault: true };
/** QEMU's SMMU_IOTLB_MAX_SIZE. */
export const EMULATED_IOTLB_ENTRIES = 256;
/** Bypass and GBPA bypass translate one 4 KiB page at a time (QEMU's TARGET_PAGE mask). */
const BYPASS_PAGE = 0x1000;

/** The emulated SMMUv3's saved state (plain data, see `kit/persist.ts`). */
export interface EmulatedSmmuV3State {
  /** The register file's words (the `RegisterFile` array itself, not a copy). */
  readonly registers: Uint32Array;
  /** ID registers as derived from the properties. */
  idr: Idr;
}

/** Counters of the device's work (diagnostics, not saved). */
export interface EmulatedSmmuStats extends EmulatedCmdqStats, EmulatedEventStats {
  /** Calls to {@link EmulatedSmmuV3.translate}. */
  translations: number;
  /** Translations that walked the tables (IOTLB misses). */
  walks: number;
}

/** What the device needs from the machine. */
export interface EmulatedSmmuV3Deps {
  /** Guest-physical memory as DMA sees it: stream table, CDs, page tables, queues. */
  readonly guestMemory: GuestMemory;
  readonly log: ModelLog;
  readonly tracer: Tracer;
}

/** The emulated (non-accel) SMMUv3. */
export class EmulatedSmmuV3 implements PciIommu, Persist<EmulatedSmmuV3State> {
  readonly props: Readonly<AccelSmmuV3Properties>;
  /** The 0x20000-byte register frame (sysbus MMIO 0). */
  readonly mmio: MemoryRegion;
  /** EVENTQ, PRIQ, CMD_SYNC, GERROR (sysbus IRQs 0–3). */
  readonly irqs: readonly [IrqLine, IrqLine, IrqLine, IrqLine];
  readonly bank: RegisterBank;
  readonly stats: EmulatedSmmuStats = { commands: 0, tlbi: 0, cfgi: 0, syncs: 0, cmdqErrors: 0, events: 0, eventsLost: 0, translations: 0, walks: 0 };
  /** The shared translation engine (configuration cache + IOTLB), for tests and reports. */
  readonly engine: Translator;

  private readonly state: EmulatedSmmuV3State;
  private readonly frame: SmmuRegisterFrame;
  /** The platform's observers of the CMDQ walk and the event queue (modelled time, trace). */
  readonly observers: AccelObservers = { walk: undefined, events: undefined };
  private readonly cmdq: EmulatedCommandQueue;
  private readonly events: EmulatedEventQueue;
  private readonly translation = new Translation();
  private readonly name: string;

  /** Realize: validate the properties (throws an Error with QEMU's text) and reset. */
  constructor(
    opts: AccelSmmuV3Properties,
    private readonly deps: EmulatedSmmuV3Deps,
  ) {
    if (opts.accel) throw new Error('EmulatedSmmuV3 is the accel=off SMMUv3');
    validateProperties(opts);
    this.props = Object.freeze({ ...opts });
    this.name = `arm-smmuv3:${opts.id}`;
    this.frame = new SmmuRegisterFrame(opts.id, this.name, deps.log, deps.tracer);
    this.bank = this.frame.bank;
    this.mmio = this.frame.mmio;
    this.irqs = this.frame.irqs;
    this.state = { registers: this.bank.file.words, idr: initialIdr(opts) };
    this.engine = new Translator(dmaReader(deps.guestMemory), new EmulatedConfigRules(this.frame, deps.guestMemory, deps.log, deps.tracer), QEMU_FAULTS, EMULATED_IOTLB_ENTRIES);
    this.cmdq = new EmulatedCommandQueue(this.frame, this.engine, deps.guestMemory, this.stats, deps.log, deps.tracer, this.observers);
    this.events = new EmulatedEventQueue(this.frame, () => this.state.idr, deps.guestMemory, this.stats, deps.log, deps.tracer, this.observers);
    this.bank
      .onWrite(R.CR0, () => this.writeCr0())
      .onWrite(R.GBPA, (_reg, prevLo) => this.writeGbpa(prevLo))
      .onWrite(R.GERRORN, (_reg, prevLo) => this.writeGerrorn(prevLo))
      .onWrite(R.CMDQ_PROD, () => this.cmdq.consume())
      .onWrite(R.CMDQ_CONS, (_reg, _lo, _hi, written) => this.writeCmdqCons(written));
    // QEMU implements no AGBPA and keeps no EVENTQ_IRQ_CFG* (MSIs are not offered: IDR0.MSI = 0):
    // they read as zero and ignore writes (docs/reference/qemu-smmuv3.md §6).
    for (const def of [R.AGBPA, R.EVENTQ_IRQ_CFG0, R.EVENTQ_IRQ_CFG1, R.EVENTQ_IRQ_CFG2]) this.bank.onWrite(def, (reg, lo, hi) => this.ignoreWrite(reg.slot, reg.width, lo, hi));
    this.reset();
  }

  /** System reset: registers to their reset values, configuration cache and IOTLB emptied. */
  reset(): void {
    this.frame.reset(this.state.idr);
    this.engine.dropCaches();
    this.deps.tracer.emit(T.T_RESET_EXIT);
  }

  /** A deep copy of the architectural state. */
  save(): EmulatedSmmuV3State {
    return cloneState(this.state);
  }

  /** Load a saved state; the configuration cache and the IOTLB start empty. */
  restore(saved: EmulatedSmmuV3State): void {
    const copy = cloneState(saved);
    this.state.registers.set(copy.registers);
    this.state.idr = copy.idr;
    this.engine.dropCaches();
  }

  /**
   * Translate one DMA access of StreamID `sid` at `iova` (QEMU's smmuv3_translate): GBPA while
   * SMMUEN = 0, else STE → CD → IOTLB / walk. A fault is recorded in the guest event queue
   * before returning. Allocation-free on an IOTLB hit (a walk allocates only the entry it caches).
   */
  translate(sid: number, iova: number, write: boolean, out: DmaTranslation): DmaTranslation {
    this.stats.translations++;
    const frame = this.frame;
    const tracer = this.deps.tracer;
    out.ok = false;
    out.fault = 0;
    out.span = 0;
    if (!frame.smmuEnabled) {
      if (R.GBPA.f.ABORT.get(frame.file.get32(frame.regs.gbpa))) {
        tracer.emit(T.T_TRANSLATE_ABORT, this.name, sid, iova, write ? 1 : 0);
        return out;
      }
      tracer.emit(T.T_TRANSLATE_DISABLE, this.name, sid, iova, write ? 1 : 0);
      return bypass(iova, out);
    }
    const engine = this.engine;
    const t = this.translation;
    const walks = engine.stats.walks;
    engine.translate(sid, 0, iova, write ? ACCESS_WRITE : ACCESS_READ, t);
    this.stats.walks += engine.stats.walks - walks;
    if (t.ok) {
      out.ok = true;
      out.pa = t.pa;
      out.span = t.span;
      if (tracer.enabled(T.T_TRANSLATE_SUCCESS) || tracer.enabled(T.T_TRANSLATE_BYPASS)) this.traceSuccess(sid, iova, write);
      return out;
    }
    if (t.event === 0) {
      // Abort without a record: STE.Config abort (traced), or a fault its stage's R bit does not
      // record (QEMU still reports the failed translation).
      if (engine.cachedConfig(sid)?.kind === 'abort') tracer.emit(T.T_TRANSLATE_ABORT, this.name, sid, iova, write ? 1 : 0);
      else this.deps.log.guestError(this.name, `${this.name} translation failed for iova=${hex(iova)} (no recorded event)`);
      return out;
    }
    out.fault = t.event;
    this.deps.log.guestError(this.name, `${this.name} translation failed for iova=${hex(iova)} (${EVENT_NAMES.get(t.event) ?? t.event})`);
    this.events.recordEvent(engine.fault);
    return out;
  }

  private traceSuccess(sid: number, iova: number, write: boolean): void {
    const tracer = this.deps.tracer;
    if (this.engine.cachedConfig(sid)?.kind === 'bypass') tracer.emit(T.T_TRANSLATE_BYPASS, this.name, sid, iova, write ? 1 : 0);
    else tracer.emit(T.T_TRANSLATE_SUCCESS, this.name, sid, iova, this.translation.pa, write ? 3 : 1);
  }

  // ------------------------------------------------------------------------------------------
  // Register writes with side effects (QEMU's smmu_writel)

  /** Undo a write to a register QEMU reads as zero. */
  private ignoreWrite(slot: number, width: number, prevLo: number, prevHi: number): void {
    const words = this.frame.file.words;
    words[slot] = prevLo;
    if (width === 64) words[slot + 1] = prevHi;
  }

  /**
   * QEMU stores the whole CMDQ_CONS word: a write also sets ERR (the register frame keeps ERR
   * read-only for the accelerated SMMUv3), so a driver that rewrites CONS clears the error code.
   */
  private writeCmdqCons(written: number): void {
    const { file, regs } = this.frame;
    file.set32(regs.cmdqCons, R.CMDQ_CONS.f.ERR.set(file.get32(regs.cmdqCons), R.CMDQ_CONS.f.ERR.get(written)));
  }

  private writeCr0(): void {
    const { file, regs } = this.frame;
    file.set32(regs.cr0ack, file.get32(regs.cr0));
    this.cmdq.consume();
  }

  private writeGbpa(prevLo: number): void {
    this.frame.updateGbpa(prevLo);
  }

  private writeGerrorn(prev: number): void {
    this.frame.acknowledgeGerrorn(prev);
    // Acknowledging CMDQ_ERR lets the command queue run again.
    this.cmdq.consume();
  }
}

/** An access that bypasses translation: the input address, one page at a time. */
function bypass(iova: number, out: DmaTranslation): DmaTranslation {
  out.ok = true;
  out.pa = iova;
  out.span = BYPASS_PAGE - (iova % BYPASS_PAGE);
  return out;
}

/** Table and structure reads over guest memory: −1 (an external abort) outside RAM. */
function dmaReader(mem: GuestMemory): TableReader {
  const word = new Uint32Array(1);
  if (mem.readWords !== undefined) {
    const readWords = mem.readWords.bind(mem);
    return { readTableWord: (addr: number) => (readWords(addr, word, 0, 1) ? word[0]! : -1) };
  }
  return {
    readTableWord: (addr: number) => {
      try {
        return mem.read32(addr) >>> 0;
      } catch {
        return -1;
      }
    },
  };
}
