/**
 * The host's physical SMMUv3: register file, stream table and context-descriptor fetch with a
 * configuration cache, nested (stage 1 + stage 2) translation with an IOTLB, the command
 * engine shared by the main command queue and the CMDQV's VCMDQs, and the event queue.
 *
 * The host kernel model drives it through its registers (like the real driver); devices use
 * {@link HostSmmu.translate} for DMA.
 *
 * State apart from runtime: the architectural state is {@link HostSmmuState}, the register
 * file's words (every queue index, GERROR/GERRORN, the stream-table and queue bases), saved and
 * restored through {@link Persist}. The configuration cache (decoded STEs and CDs) and the
 * IOTLB are runtime accelerations and are not saved: a restore empties them, which the
 * architecture allows at any time (an SMMU may drop cached entries whenever it likes), and
 * they refill from the tables in memory on the next access.
 */

import type { ModelLog } from '../../kit/log.js';
import { MemoryRegion } from '../../kit/memory-region.js';
import { RegisterBank } from '../../kit/register-bank.js';
import { cloneState, type Persist } from '../../kit/persist.js';
import type { Tracer } from '../../kit/trace.js';
import { CERROR_ABT, CERROR_ILL, D0, D1, Op, opName } from '../../arch/smmuv3/commands.js';
import { CMDQ_ENTRY_BYTES, EVENTQ_ENTRY_BYTES, qAdvance, qFull, qIndex, qIndexMask, qWrapMask } from '../../arch/smmuv3/queue.js';
import * as R from '../../arch/smmuv3/registers.js';
import {
  addressBits,
  CD,
  CLASS_IN,
  CLASS_TT,
  EVT,
  Evt,
  granuleFromTg,
  STE,
  STE_CFG_ABORT,
  STE_CFG_BYPASS,
  STE_CFG_NESTED,
  STE_CFG_S1,
  STE_CFG_S2,
  CD_BYTES,
  CD_WORDS,
  STE_BYTES,
  STE_WORDS,
} from '../../arch/smmuv3/structures.js';
import type { SmmuConfig } from '../config.js';
import type { PhysicalMemory } from '../memory/physical-memory.js';
import { CommandReader } from './command-reader.js';
import { Iotlb, MIN_ENTRY_SIZE, NO_ASID, PERM_R, PERM_W } from './iotlb.js';
import {
  FAULT_ACCESS,
  FAULT_ADDR_SIZE,
  FAULT_NONE,
  FAULT_PERMISSION,
  FAULT_S2_ON_TABLE,
  FAULT_TRANSLATION,
  FAULT_WALK_ABORT,
  walk,
  WalkResult,
  type Granule,
  type TableReader,
  type WalkConfig,
} from './page-table.js';
import { T_HOST_CMD, T_HOST_CMDQ_ERROR, T_HOST_EVENT } from './trace-events.js';

/** Access kinds for {@link HostSmmu.translate}. */
export const ACCESS_READ = 1;
export const ACCESS_WRITE = 2;

/** Outcome of a DMA translation. */
export class Translation {
  /** Host PA (valid when `ok`). */
  pa = 0;
  ok = false;
  /** Event ID recorded for the fault (0 when ok or aborted silently). */
  event = 0;
  /** Whether the IOTLB supplied the result. */
  hit = false;
}

/** Decoded, cached stream configuration. */
interface StreamConfig {
  readonly kind: 'abort' | 'bypass' | 's1' | 's2' | 'nested';
  readonly vmid: number;
  readonly s2: WalkConfig | undefined;
  readonly s1ctxPtr: number;
  readonly s1cdmax: number;
  readonly cds: Map<number, CdConfig>;
}

interface CdConfig {
  readonly asid: number;
  readonly s1: WalkConfig;
}

/** Counters of the SMMU's work. */
export interface SmmuStats {
  commands: number;
  syncs: number;
  tlbi: number;
  cfgi: number;
  atcInv: number;
  cerrors: number;
  events: number;
  eventsLost: number;
  translations: number;
  walks: number;
}

/** Words of an event record holding the input address (dword2) and the IPA (dword3). */
const EVT_INPUT_ADDR_WORD = 4;
const EVT_IPA_WORD = 6;

// The command switch's fields, as masks and shifts on the words they live in (derived once
// from the command tables: the switch runs for every command of every queue).
const OPCODE_MASK = D0.OPCODE.wordMask(0);
/** The per-command trace event, bound in this module: read once per command, and an imported binding costs an extra load. */
const T_CMD = T_HOST_CMD;
/** dword0 [63:32] is word 1: VMID [47:32], ASID [63:48], StreamID [63:32]. */
const VMID_SHIFT = D0.VMID.lsb - 32;
const VMID_MASK = D0.VMID.max;
const ASID_SHIFT = D0.ASID.lsb - 32;
const ASID_MASK = D0.ASID.max;
/** GERROR.CMDQ_ERR as a toggle mask. */
const CMDQ_ERR = R.GERROR.f.CMDQ_ERR.set(0, 1);
/** EVENTQ_PROD.OVFLG in place. */
const OVFLG_MASK = R.EVENTQ_PROD.f.OVFLG.wordMask(0);

/** The VMID of a command (words). */
function cmdVmid(w: Uint32Array): number {
  return (w[1]! >>> VMID_SHIFT) & VMID_MASK;
}

/** The ASID of a command (words). */
function cmdAsid(w: Uint32Array): number {
  return (w[1]! >>> ASID_SHIFT) & ASID_MASK;
}

/** The StreamID of a command (words). */
function cmdSid(w: Uint32Array): number {
  return D0.SID.getWords(w[0]!, w[1]!);
}

/** The host SMMU's architectural state (see the module comment). */
export interface HostSmmuState {
  /** The register file's words (the `RegisterFile` array itself, not a copy). */
  readonly registers: Uint32Array;
}


/** The host SMMUv3 hardware model. */
export class HostSmmu implements Persist<HostSmmuState> {
  readonly bank: RegisterBank;
  readonly mmio: MemoryRegion;
  readonly iotlb: Iotlb;
  readonly stats: SmmuStats = {
    commands: 0, syncs: 0, tlbi: 0, cfgi: 0, atcInv: 0, cerrors: 0, events: 0, eventsLost: 0, translations: 0, walks: 0,
  };
  /** Interrupt lines to the host kernel. */
  onEventIrq: () => void = () => {};
  onGerrorIrq: () => void = () => {};

  private readonly state: HostSmmuState;
  /** Configuration cache: decoded STEs (and their CDs) by StreamID. */
  private readonly streams = new Map<number, StreamConfig | null>();
  private readonly mem;
  private readonly command = new Uint32Array(CMDQ_ENTRY_BYTES / 4);
  private readonly reader: CommandReader;
  private readonly walkOut = new WalkResult();
  private readonly s2Out = new WalkResult();
  private readonly eventRecord = new Uint32Array(EVENTQ_ENTRY_BYTES / 4);
  private readonly regs: R.Smmuv3Registers;

  constructor(
    readonly config: SmmuConfig,
    readonly phys: PhysicalMemory,
    private readonly log: ModelLog,
    private readonly tracer: Tracer,
  ) {
    this.mem = phys.mem;
    this.reader = new CommandReader(phys.mem);
    const layout = R.smmuv3Layout();
    this.bank = new RegisterBank(`smmuv3:${config.name}`, layout, log);
    this.state = { registers: this.bank.file.words };
    this.iotlb = new Iotlb();
    this.regs = R.smmuv3Registers();
    this.reset();
    this.bank.onWrite(R.CR0, () => {
      // Enables take effect at once: CR0ACK mirrors CR0.
      this.bank.file.set32(this.regs.cr0ack, this.bank.file.get32(this.regs.cr0));
      this.processCmdq();
    });
    this.bank.onWrite(R.IRQ_CTRL, () => this.bank.file.set32(this.regs.irqCtrlAck, this.bank.file.get32(this.regs.irqCtrl)));
    this.bank.onWrite(R.CMDQ_PROD, () => this.processCmdq());
    this.bank.onWrite(R.GERRORN, () => this.processCmdq());
    this.bank.onWrite(R.STRTAB_BASE, () => this.streams.clear());
    this.bank.onWrite(R.STRTAB_BASE_CFG, () => this.streams.clear());
    this.mmio = MemoryRegion.mmio(`smmuv3:${config.name}`, R.SMMUV3_MMIO_SIZE, this.bank);
  }

  /** Restore every register to reset and empty all caches. */
  reset(): void {
    this.bank.reset();
    const file = this.bank.file;
    this.config.idr.forEach((value, i) => file.set32(this.regs.idr[i]!, value));
    file.set32(this.regs.iidr, this.config.iidr);
    file.set32(this.regs.aidr, this.config.aidr);
    this.dropCaches();
  }

  /** A deep copy of the architectural state (the register file). */
  save(): HostSmmuState {
    return cloneState(this.state);
  }

  /** Load a saved state; the configuration cache and the IOTLB start empty (see the module comment). */
  restore(saved: HostSmmuState): void {
    this.state.registers.set(saved.registers);
    this.dropCaches();
  }

  private dropCaches(): void {
    this.streams.clear();
    this.iotlb.invalidateAll();
  }

  /** IDR1.CMDQS: log2 of the largest command queue (also the VCMDQ limit). */
  get cmdqs(): number {
    return R.IDR1.f.CMDQS.get(this.config.idr[1]);
  }

  /** Whether the main command queue is stopped on an unacknowledged error. */
  get cmdqErrorActive(): boolean {
    const f = this.bank.file;
    return R.GERROR.f.CMDQ_ERR.get((f.get32(this.regs.gerror) ^ f.get32(this.regs.gerrorn)) >>> 0) === 1;
  }

  // ------------------------------------------------------------------------------------------
  // Command engine

  /** Consume the main command queue until empty, disabled, or stopped by an error. */
  private processCmdq(): void {
    const f = this.bank.file;
    if (!R.CR0.f.CMDQEN.get(f.get32(this.regs.cr0)) || this.cmdqErrorActive) return;
    const baseLo = f.words[this.regs.cmdqBase.slot]!;
    const base = f.address(this.regs.cmdqBase, R.CMDQ_BASE.f.ADDR);
    const log2 = Math.min(R.CMDQ_BASE.f.LOG2SIZE.get(baseLo), this.cmdqs);
    const wrapMask = qWrapMask(log2);
    const idxMask = qIndexMask(log2);
    const end = f.get32(this.regs.cmdqProd) & wrapMask;
    let cons = f.get32(this.regs.cmdqCons) & wrapMask;
    const w = this.command;
    const reader = this.reader;
    const entryBytes = CMDQ_ENTRY_BYTES; // read once: an imported binding costs a load per use
    reader.reset();
    while (cons !== end) {
      if (!reader.read(base + (cons & idxMask) * entryBytes, w)) {
        this.stopQueue(cons, CERROR_ABT);
        return;
      }
      const err = this.execute(w, 'cmdq');
      if (err !== 0) {
        this.stopQueue(cons, err);
        return;
      }
      cons = (cons + 1) & wrapMask;
    }
    f.set32(this.regs.cmdqCons, cons);
  }

  private stopQueue(cons: number, err: number): void {
    const f = this.bank.file;
    f.set32(this.regs.cmdqCons, R.CMDQ_CONS.f.ERR.set(cons, err));
    f.set32(this.regs.gerror, f.get32(this.regs.gerror) ^ CMDQ_ERR);
    this.stats.cerrors++;
    this.tracer.emit(T_HOST_CMDQ_ERROR, this.config.name, cons, err);
    this.onGerrorIrq();
  }

  /**
   * Execute one command held in `w` (4 words). Returns 0 or a CERROR code. Shared by the main
   * CMDQ and the CMDQV's VCMDQs (which filter and rewrite guest commands first).
   */
  execute(w: Uint32Array, queue: string): number {
    this.stats.commands++;
    const op = w[0]! & OPCODE_MASK;
    let err = 0;
    // Cases are compared in order: the hot ones (a run of TLBIs, each batch's CMD_SYNC) first.
    switch (op) {
      case Op.TLBI_NH_VA:
      case Op.TLBI_NH_VAA: {
        this.stats.tlbi++;
        // Nothing cached for the VMID: no need to decode the range (the common steady state).
        const vmid = cmdVmid(w);
        if (!this.iotlb.hasVmid(vmid)) break;
        const va = D1.ADDR_PAGE.addressWords(w[2]!, w[3]!);
        this.iotlb.invalidateVa(vmid, op === Op.TLBI_NH_VA ? cmdAsid(w) : undefined, va, rangeLength(w), D1.LEAF.get(w[2]!) === 1);
        break;
      }
      case Op.TLBI_NH_ASID:
        this.stats.tlbi++;
        this.iotlb.invalidateAsid(cmdVmid(w), cmdAsid(w));
        break;
      case Op.SYNC:
        this.stats.syncs++;
        break;
      case Op.PREFETCH_CFG:
      case Op.PREFETCH_ADDR:
      case Op.PRI_RESP:
      case Op.RESUME:
      case Op.STALL_TERM:
        break;
      case Op.CFGI_STE:
        this.stats.cfgi++;
        this.streams.delete(cmdSid(w));
        break;
      case Op.CFGI_STE_RANGE: {
        this.stats.cfgi++;
        const range = D1.RANGE.get(w[2]!);
        if (range >= 31) this.streams.clear();
        else {
          const span = 2 ** (range + 1);
          const first = Math.floor(cmdSid(w) / span) * span;
          for (const sid of [...this.streams.keys()]) if (sid >= first && sid < first + span) this.streams.delete(sid);
        }
        break;
      }
      case Op.CFGI_CD:
        this.stats.cfgi++;
        this.streams.get(cmdSid(w))?.cds.delete(D0.SSID.get(w[0]!));
        break;
      case Op.CFGI_CD_ALL:
        this.stats.cfgi++;
        this.streams.get(cmdSid(w))?.cds.clear();
        break;
      case Op.TLBI_NH_ALL:
        this.stats.tlbi++;
        this.iotlb.invalidateVmidStage1(cmdVmid(w));
        break;
      case Op.TLBI_S12_VMALL:
        this.stats.tlbi++;
        this.iotlb.invalidateVmid(cmdVmid(w));
        break;
      case Op.TLBI_S2_IPA: {
        this.stats.tlbi++;
        const ipa = D1.IPA_PAGE.addressWords(w[2]!, w[3]!);
        this.iotlb.invalidateIpa(cmdVmid(w), ipa, rangeLength(w));
        break;
      }
      case Op.TLBI_NSNH_ALL:
        this.stats.tlbi++;
        this.iotlb.invalidateAll();
        break;
      case Op.TLBI_EL2_ALL:
      case Op.TLBI_EL2_ASID:
      case Op.TLBI_EL2_VA:
      case Op.TLBI_EL2_VAA:
        // No EL2 (host stage-1) translations are cached by this model.
        this.stats.tlbi++;
        break;
      case Op.ATC_INV:
        // No device in this model has an ATC; the command completes.
        this.stats.atcInv++;
        break;
      default:
        err = CERROR_ILL;
    }
    if (this.tracer.enabled(T_CMD)) this.tracer.emit(T_CMD, this.config.name, queue, opName(op), err);
    return err;
  }

  // ------------------------------------------------------------------------------------------
  // Configuration: STE and CD fetch

  private streamConfig(sid: number, iova: number): StreamConfig | undefined {
    const cached = this.streams.get(sid);
    if (cached) return cached;
    const f = this.bank.file;
    const cfgWord = f.get32(this.regs.strtabCfg);
    const log2 = R.STRTAB_BASE_CFG.f.LOG2SIZE.get(cfgWord);
    if (R.STRTAB_BASE_CFG.f.FMT.get(cfgWord) !== 0) {
      this.log.unimp(this.bank.source, '2-level stream table');
      return undefined;
    }
    if (sid >= 2 ** log2) {
      this.event(Evt.C_BAD_STREAMID, sid, iova, 0, 0);
      return undefined;
    }
    const base = f.address(this.regs.strtabBase, R.STRTAB_BASE.f.ADDR);
    const steAddr = base + sid * STE_BYTES;
    const w = new Uint32Array(STE_WORDS);
    for (let i = 0; i < STE_WORDS; i++) w[i] = this.mem.read32(steAddr + i * 4);
    const sc = this.decodeSte(w);
    if (!sc) {
      this.event(Evt.C_BAD_STE, sid, iova, 0, 0);
      return undefined;
    }
    this.streams.set(sid, sc);
    return sc;
  }

  private decodeSte(w: Uint32Array): StreamConfig | undefined {
    if (!STE.V.getWords(w[0]!, w[1]!)) return undefined;
    const cfg = STE.CFG.getWords(w[0]!, w[1]!);
    const base = { s1ctxPtr: STE.S1CTXPTR.addressWords(w[0]!, w[1]!), s1cdmax: STE.S1CDMAX.getWords(w[0]!, w[1]!), cds: new Map() };
    if (cfg === STE_CFG_ABORT) return { kind: 'abort', vmid: 0, s2: undefined, ...base };
    if (cfg === STE_CFG_BYPASS) return { kind: 'bypass', vmid: 0, s2: undefined, ...base };
    let s2: WalkConfig | undefined;
    let vmid = 0;
    if (cfg === STE_CFG_S2 || cfg === STE_CFG_NESTED) {
      const lo = w[4]!;
      const hi = w[5]!;
      const granule = granuleFromTg(STE.S2TG.getWords(lo, hi));
      if (!granule || !STE.S2AA64.getWords(lo, hi)) return undefined;
      vmid = STE.S2VMID.getWords(lo, hi);
      s2 = {
        stage: 2,
        granule: granule as Granule,
        inputBits: 64 - STE.S2T0SZ.getWords(lo, hi),
        oasBits: addressBits(STE.S2PS.getWords(lo, hi)),
        ttb: STE.S2TTB.addressWords(w[6]!, w[7]!),
        startLevel: s2StartLevel(granule, STE.S2SL0.getWords(lo, hi)),
      };
    }
    if (cfg === STE_CFG_S2) return { kind: 's2', vmid, s2, ...base };
    if (cfg === STE_CFG_S1) return { kind: 's1', vmid: 0, s2: undefined, ...base };
    if (cfg === STE_CFG_NESTED) return { kind: 'nested', vmid, s2, ...base };
    return undefined;
  }

  private fetchCd(sc: StreamConfig, sid: number, ssid: number, iova: number): CdConfig | undefined {
    const cached = sc.cds.get(ssid);
    if (cached) return cached;
    if (ssid >= 2 ** sc.s1cdmax) {
      this.event(Evt.C_BAD_SUBSTREAMID, sid, iova, 0, 0);
      return undefined;
    }
    let addr = sc.s1ctxPtr + ssid * CD_BYTES;
    if (sc.kind === 'nested') {
      // The CD pointer is an IPA: fetch through stage 2.
      const r = walk(sc.s2!, this.physReader, addr, ACCESS_READ, this.s2Out);
      if (r.fault !== FAULT_NONE) {
        this.event(Evt.F_CD_FETCH, sid, iova, 1, addr);
        return undefined;
      }
      addr = r.outputAddress;
    }
    const w = new Uint32Array(CD_WORDS);
    for (let i = 0; i < CD_WORDS; i++) w[i] = this.mem.read32(addr + i * 4);
    const lo = w[0]!;
    const hi = w[1]!;
    const granule = granuleFromTg(CD.TG0.getWords(lo, hi));
    if (!CD.V.getWords(lo, hi) || !CD.AA64.getWords(lo, hi) || !granule || CD.EPD0.getWords(lo, hi)) {
      this.event(Evt.C_BAD_CD, sid, iova, 0, 0);
      return undefined;
    }
    const cd: CdConfig = {
      asid: CD.ASID.getWords(lo, hi),
      s1: {
        stage: 1,
        granule: granule as Granule,
        inputBits: 64 - CD.T0SZ.getWords(lo, hi),
        oasBits: addressBits(CD.IPS.getWords(lo, hi)),
        ttb: CD.TTB0.addressWords(w[2]!, w[3]!),
      },
    };
    sc.cds.set(ssid, cd);
    return cd;
  }

  // ------------------------------------------------------------------------------------------
  // Translation

  private readonly physReader: TableReader = {
    readTableWord: (addr: number) => (addr >= 0 && addr + 4 <= this.mem.size ? this.mem.read32(addr) : -1),
  };

  /** Stage-1 table reads in a nested walk go through stage 2 of the current stream. */
  private nestedS2: WalkConfig | undefined;
  private readonly nestedReader: TableReader & { lastFault: number; faultAddress: number } = {
    lastFault: 0,
    faultAddress: 0,
    readTableWord: (ipa: number) => {
      const r = walk(this.nestedS2!, this.physReader, ipa, ACCESS_READ, this.s2Out);
      if (r.fault !== FAULT_NONE) {
        this.nestedReader.lastFault = r.fault;
        this.nestedReader.faultAddress = ipa;
        return -1;
      }
      return this.mem.read32(r.outputAddress);
    },
  };

  /**
   * Translate a device access: StreamID `sid`, SubstreamID `ssid` (0 without PASID), input
   * address `iova`, `access` = ACCESS_READ or ACCESS_WRITE. Faults record an event.
   */
  translate(sid: number, ssid: number, iova: number, access: number, out: Translation): Translation {
    this.stats.translations++;
    out.ok = false;
    out.hit = false;
    out.event = 0;
    const f = this.bank.file;
    if (!R.CR0.f.SMMUEN.get(f.get32(this.regs.cr0))) {
      if (R.GBPA.f.ABORT.get(f.get32(this.regs.gbpa))) return out;
      out.pa = iova;
      out.ok = true;
      return out;
    }
    const sc = this.streamConfig(sid, iova);
    if (!sc) return this.faulted(out);
    if (sc.kind === 'abort') return out;
    if (sc.kind === 'bypass') {
      out.pa = iova;
      out.ok = true;
      return out;
    }
    const perm = access === ACCESS_WRITE ? PERM_W : PERM_R;
    let asid = NO_ASID;
    let cd: CdConfig | undefined;
    if (sc.kind !== 's2') {
      cd = this.fetchCd(sc, sid, ssid, iova);
      if (!cd) return this.faulted(out);
      asid = cd.asid;
    }
    const hit = this.iotlb.lookup(sc.vmid, asid, iova);
    if (hit) {
      if ((hit.perm & perm) === 0) {
        this.event(Evt.F_PERMISSION, sid, iova, sc.kind === 's2' ? 1 : 0, hit.ipa + (iova - hit.iova), access, ssid);
        return this.faulted(out);
      }
      out.pa = hit.pa + (iova - hit.iova);
      out.ok = true;
      out.hit = true;
      return out;
    }
    this.stats.walks++;
    let ipa = iova;
    let s1Size = Infinity;
    let s1Perm = PERM_R | PERM_W;
    let global = false;
    if (cd) {
      let reader: TableReader = this.physReader;
      if (sc.kind === 'nested') {
        this.nestedS2 = sc.s2;
        this.nestedReader.lastFault = 0;
        reader = this.nestedReader;
      }
      const r = walk(cd.s1, reader, iova, access, this.walkOut);
      if (r.fault !== FAULT_NONE) {
        if (r.fault === FAULT_S2_ON_TABLE || (sc.kind === 'nested' && this.nestedReader.lastFault !== 0)) {
          this.event(s2EventId(this.nestedReader.lastFault), sid, iova, 1, this.nestedReader.faultAddress, access, ssid, CLASS_TT);
        } else {
          this.event(s1EventId(r.fault), sid, iova, 0, 0, access, ssid);
        }
        return this.faulted(out);
      }
      ipa = r.outputAddress;
      s1Size = r.blockSize;
      s1Perm = r.perm;
      global = !r.nG;
    }
    let pa = ipa;
    let size = s1Size;
    let s2Perm = PERM_R | PERM_W;
    if (sc.s2) {
      const r2 = walk(sc.s2, this.physReader, ipa, access, this.s2Out);
      if (r2.fault !== FAULT_NONE) {
        this.event(s2EventId(r2.fault), sid, iova, 1, ipa, access, ssid, CLASS_IN);
        return this.faulted(out);
      }
      pa = r2.outputAddress;
      size = Math.min(size, r2.blockSize);
      s2Perm = r2.perm;
    }
    if (!Number.isFinite(size)) size = MIN_ENTRY_SIZE;
    const combined = s1Perm & s2Perm;
    const base = Math.floor(iova / size) * size;
    this.iotlb.insert({
      vmid: sc.vmid,
      asid: cd ? asid : 0,
      global,
      stage1: cd !== undefined,
      iova: base,
      size,
      ipa: Math.floor(ipa / size) * size,
      pa: pa - (iova - base),
      perm: combined,
    });
    if ((combined & perm) === 0) {
      this.event(Evt.F_PERMISSION, sid, iova, (s2Perm & perm) === 0 ? 1 : 0, ipa, access, ssid);
      return this.faulted(out);
    }
    out.pa = pa;
    out.ok = true;
    return out;
  }

  private faulted(out: Translation): Translation {
    out.ok = false;
    out.event = this.lastEventId;
    return out;
  }

  // ------------------------------------------------------------------------------------------
  // Event queue

  private lastEventId = 0;

  /** Build and queue an event record (docs/reference/smmuv3.md §6.1). */
  private event(id: number, sid: number, iova: number, s2: number, ipa: number, access = ACCESS_READ, ssid = 0, cls = CLASS_IN): void {
    this.lastEventId = id;
    const e = this.eventRecord;
    e.fill(0);
    EVT.ID.setWords(e, 0, id);
    if (ssid !== 0) {
      EVT.SSV.setWords(e, 0, 1);
      EVT.SSID.setWords(e, 0, ssid);
    }
    EVT.SID.setWords(e, 0, sid);
    EVT.RNW.setWords(e, 2, access === ACCESS_READ ? 1 : 0);
    EVT.S2.setWords(e, 2, s2);
    EVT.CLASS.setWords(e, 2, cls);
    e[EVT_INPUT_ADDR_WORD] = iova % 2 ** 32;
    e[EVT_INPUT_ADDR_WORD + 1] = Math.floor(iova / 2 ** 32);
    EVT.IPA_PAGE.setWords(e, EVT_IPA_WORD, Math.floor(ipa / 2 ** EVT.IPA_PAGE.lsb));
    this.tracer.emit(T_HOST_EVENT, this.config.name, id, sid, iova);
    this.pushEvent(e);
  }

  /** Append a 32-byte record to the event queue (overflow toggles EVENTQ_PROD.OVFLG). */
  private pushEvent(e: Uint32Array): void {
    this.stats.events++;
    const f = this.bank.file;
    if (!R.CR0.f.EVENTQEN.get(f.get32(this.regs.cr0))) {
      this.stats.eventsLost++;
      return;
    }
    const lo = f.words[this.regs.eventqBase.slot]!;
    const hi = f.words[this.regs.eventqBase.slot + 1]!;
    const base = R.EVENTQ_BASE.f.ADDR.addressWords(lo, hi);
    const log2 = R.EVENTQ_BASE.f.LOG2SIZE.getWords(lo, hi);
    const prodReg = f.get32(this.regs.eventqProd);
    const cons = f.get32(this.regs.eventqCons);
    if (qFull(prodReg, cons, log2)) {
      this.stats.eventsLost++;
      const overflow = R.EVENTQ_PROD.f.OVFLG;
      f.set32(this.regs.eventqProd, overflow.set(prodReg, overflow.get(prodReg) ^ 1));
      return;
    }
    const addr = base + qIndex(prodReg, log2) * EVENTQ_ENTRY_BYTES;
    for (let i = 0; i < e.length; i++) this.mem.write32(addr + i * 4, e[i]!);
    f.set32(this.regs.eventqProd, ((prodReg & OVFLG_MASK) | qAdvance(prodReg, 1, log2)) >>> 0);
    if (R.IRQ_CTRL.f.EVENTQ_IRQEN.get(f.get32(this.regs.irqCtrl))) this.onEventIrq();
  }
}

/** Stage-2 start level from STE.S2SL0 (Arm: meaning depends on the granule). */
function s2StartLevel(granule: number, sl0: number): number {
  if (granule === 4096) return 2 - sl0;
  return 3 - sl0;
}

/** Bytes covered by a TLBI_NH_VA / S2_IPA command: range form when TG ≠ 0, else one address. */
function rangeLength(w: Uint32Array): number {
  const tg = D1.TG.get(w[2]!);
  if (tg === 0) return 1;
  const granule = 2 ** (2 * tg + 10);
  const num = D0.NUM.get(w[0]!);
  const scale = D0.SCALE.get(w[0]!);
  return (num + 1) * 2 ** scale * granule;
}

function s1EventId(fault: number): number {
  switch (fault) {
    case FAULT_ACCESS:
      return Evt.F_ACCESS;
    case FAULT_PERMISSION:
      return Evt.F_PERMISSION;
    case FAULT_ADDR_SIZE:
      return Evt.F_ADDR_SIZE;
    case FAULT_WALK_ABORT:
      return Evt.F_WALK_EABT;
    default:
      return Evt.F_TRANSLATION;
  }
}

function s2EventId(fault: number): number {
  return fault === FAULT_TRANSLATION || fault === FAULT_S2_ON_TABLE ? Evt.F_TRANSLATION : s1EventId(fault);
}


