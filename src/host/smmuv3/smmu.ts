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
import { EVENT_HOP_HOST_EVTQ, type EventPathObserver, type QueueObserver, type Tracer, type TranslationObserver } from '../../kit/trace.js';
import { CERROR_ABT, CERROR_ILL, D0, D1, Op, opName, tlbiRangeBytes } from '../../arch/smmuv3/commands.js';
import { EF_ADDR, EF_IPA, EF_RNW, EF_S2_CLASS, EF_SSID, encodeEvent, type FaultRecord } from '../../arch/smmuv3/event-record.js';
import type { Iotlb } from '../../arch/smmuv3/iotlb.js';
import { CMDQ_ENTRY_BYTES, EVENTQ_ENTRY_BYTES, qAdvance, qFull, qIndex, qIndexMask, qUsed, qWrapMask } from '../../arch/smmuv3/queue.js';
import * as R from '../../arch/smmuv3/registers.js';
import { Evt, STE_BYTES } from '../../arch/smmuv3/structures.js';
import { ACCESS_READ, ACCESS_WRITE, Translation, Translator, type TranslatorDevice } from '../../arch/smmuv3/translator.js';
import type { TableReader } from '../../arch/smmuv3/page-table.js';
import type { SmmuConfig } from '../config.js';
import type { PhysicalMemory } from '../memory/physical-memory.js';
import { CHUNK_MASK, CHUNK_SIZE, WordWindow, type SparseMemory } from '../../kit/sparse-memory.js';
import { CommandReader } from './command-reader.js';
import { T_HOST_CMD, T_HOST_CMDQ_ERROR, T_HOST_EVENT } from './trace-events.js';

// Access kinds and the translation outcome are the shared engine's (arch/smmuv3/translator.ts).
export { ACCESS_READ, ACCESS_WRITE, Translation };

/** The fields of the host's event records: every field the model knows (docs/reference/smmuv3.md §6.1). */
const HOST_EVENT_FIELDS = EF_SSID | EF_ADDR | EF_RNW | EF_S2_CLASS | EF_IPA;

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

// The command switch's fields, as masks and shifts on the words they live in (derived once
// from the command tables: the switch runs for every command of every queue).
const OPCODE_MASK = D0.OPCODE.wordMask(0);
/** The per-command trace event, bound in this module: read once per command, and an imported binding costs an extra load. */
const T_CMD = T_HOST_CMD;
/** The hot opcodes, bound in this module (an imported object costs a property load per use). */
const OP_TLBI_NH_VA = Op.TLBI_NH_VA;
const OP_TLBI_NH_VAA = Op.TLBI_NH_VAA;
const OP_SYNC = Op.SYNC;
/** dword0 [63:32] is word 1: VMID [47:32], ASID [63:48], StreamID [63:32]. */
const VMID_SHIFT = D0.VMID.lsb - 32;
const VMID_MASK = D0.VMID.max;
const ASID_SHIFT = D0.ASID.lsb - 32;
const ASID_MASK = D0.ASID.max;
/** GERROR.CMDQ_ERR as a toggle mask. */
const CMDQ_ERR = R.GERROR.f.CMDQ_ERR.set(0, 1);
/** EVENTQ_PROD.OVFLG in place. */
const OVFLG_MASK = R.EVENTQ_PROD.f.OVFLG.wordMask(0);
// Fields read per command batch, translation or event, bound in this module: each hop through
// the imported register tables (namespace, register, field) is a load per access, and on the
// CMDQV path those hops cost more than the register test itself.
const CR0_CMDQEN = R.CR0.f.CMDQEN.wordMask(0);
const CR0_SMMUEN = R.CR0.f.SMMUEN.wordMask(0);
const CR0_EVENTQEN = R.CR0.f.EVENTQEN.wordMask(0);
const GBPA_ABORT = R.GBPA.f.ABORT.wordMask(0);
const IRQ_EVENTQ_IRQEN = R.IRQ_CTRL.f.EVENTQ_IRQEN.wordMask(0);
const GERROR_CMDQ_ERR = R.GERROR.f.CMDQ_ERR.wordMask(0);
const CMDQ_BASE_ADDR = R.CMDQ_BASE.f.ADDR;
const CMDQ_BASE_LOG2SIZE = R.CMDQ_BASE.f.LOG2SIZE;
const EVENTQ_BASE_ADDR = R.EVENTQ_BASE.f.ADDR;
const EVENTQ_BASE_LOG2SIZE = R.EVENTQ_BASE.f.LOG2SIZE;
const D1_ADDR_PAGE = D1.ADDR_PAGE;
const D1_LEAF = D1.LEAF;

/**
 * Chunk windows a {@link PhysTableReader} keeps (direct-mapped by chunk index). 64, not 16: a
 * guest whose leaf tables span many chunks (row 3's 4096 IOVA slots: 128) walks each of them
 * past the few chunks of the upper levels, and with 16 slots it evicted one of those every
 * few walks (0.22 window misses per operation; 0.07 with 64).
 */
const TABLE_WINDOWS = 64;

/**
 * Table fetches from host-physical memory: outside RAM is an abort (−1). A walk reads its
 * descriptors from a handful of 64 KiB chunks (the guest's tables, the kernel's stage-2
 * tables), so the reader keeps those chunks' words, looked up by chunk index, and reads a
 * descriptor word as one array element. Only chunks that exist are kept (a fetch from
 * untouched memory reads 0 through read32 and allocates nothing); the windows are dropped when
 * SparseMemory.generation moves (a chunk replaced or dropped), so a kept window never goes stale.
 */
class PhysTableReader implements TableReader {
  private readonly size: number;
  private readonly index = new Float64Array(TABLE_WINDOWS).fill(-1);
  private readonly words: Uint32Array[] = [];
  private readonly win = new WordWindow();
  /** {@link SparseMemory.generation} the windows were taken under: a replaced or dropped chunk empties them all. */
  private gen: number;

  constructor(private readonly mem: SparseMemory) {
    this.gen = mem.generation;
    this.size = mem.size;
    for (let i = 0; i < TABLE_WINDOWS; i++) this.words.push(new Uint32Array(0));
  }

  readTableWord(addr: number): number {
    if (!(addr >= 0 && addr + 4 <= this.size)) return -1;
    const chunk = Math.floor(addr / CHUNK_SIZE);
    // Folded: the chunks of one walk are often 2^n chunks apart (guest RAM, kernel tables).
    const slot = (chunk ^ (chunk >>> 6) ^ (chunk >>> 12)) & (TABLE_WINDOWS - 1);
    // Descriptor words are aligned: `& CHUNK_MASK` is the offset in the chunk for any address below 2^53.
    if (this.index[slot] === chunk && (addr & 3) === 0 && this.gen === this.mem.generation) return this.words[slot]![(addr & CHUNK_MASK) >>> 2]!;
    return this.miss(addr, chunk, slot);
  }

  descHi = 0;

  /** Both words of the descriptor at the 8-byte aligned `addr` (same chunk): one window look-up. */
  readTableDesc(addr: number): number {
    if (!(addr >= 0 && addr + 8 <= this.size)) return -1;
    const chunk = Math.floor(addr / CHUNK_SIZE);
    const slot = (chunk ^ (chunk >>> 6) ^ (chunk >>> 12)) & (TABLE_WINDOWS - 1);
    if (this.index[slot] === chunk && (addr & 7) === 0 && this.gen === this.mem.generation) {
      const words = this.words[slot]!;
      const i = (addr & CHUNK_MASK) >>> 2;
      this.descHi = words[i + 1]!;
      return words[i]!;
    }
    const lo = this.miss(addr, chunk, slot);
    if (lo < 0) return -1;
    const hi = this.readTableWord(addr + 4);
    if (hi < 0) return -1;
    this.descHi = hi;
    return lo;
  }

  private miss(addr: number, chunk: number, slot: number): number {
    const mem = this.mem;
    if (this.gen !== mem.generation) {
      this.index.fill(-1);
      this.gen = mem.generation;
    }
    if ((addr & 3) === 0 && mem.chunkAllocated(addr) && mem.mapWords(chunk * CHUNK_SIZE, this.win)) {
      this.index[slot] = chunk;
      this.words[slot] = this.win.words;
    }
    return mem.read32(addr);
  }
}

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
  /** Told once per batch the command queue consumed (queue 0; modelled time, trace); none by default. */
  cmdqObserver: QueueObserver | undefined;
  /** Told after each translation (modelled time, trace); none by default. */
  translationObserver: TranslationObserver | undefined;
  /** Told around each event record written and taken by the host's event interrupt (modelled time, trace); none by default. */
  eventObserver: EventPathObserver | undefined;

  private readonly state: HostSmmuState;
  /** The shared translation engine: configuration cache, IOTLB, walks (arch/smmuv3/translator.ts). */
  private readonly engine: Translator;
  private readonly mem;
  private readonly command = new Uint32Array(CMDQ_ENTRY_BYTES / 4);
  private readonly reader: CommandReader;
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
    this.physReader = new PhysTableReader(phys.mem);
    this.engine = new Translator(this.physReader, this.steLocator);
    this.iotlb = this.engine.iotlb;
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
    this.bank.onWrite(R.STRTAB_BASE, () => this.engine.dropConfigs());
    this.bank.onWrite(R.STRTAB_BASE_CFG, () => this.engine.dropConfigs());
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
    this.engine.dropCaches();
  }

  /** IDR1.CMDQS: log2 of the largest command queue (also the VCMDQ limit). */
  get cmdqs(): number {
    return R.IDR1.f.CMDQS.get(this.config.idr[1]);
  }

  /** Whether the main command queue is stopped on an unacknowledged error. */
  get cmdqErrorActive(): boolean {
    const f = this.bank.file;
    return ((f.get32(this.regs.gerror) ^ f.get32(this.regs.gerrorn)) & GERROR_CMDQ_ERR) !== 0;
  }

  // ------------------------------------------------------------------------------------------
  // Command engine

  /** Consume the main command queue until empty, disabled, or stopped by an error. */
  private processCmdq(): void {
    const f = this.bank.file;
    if ((f.get32(this.regs.cr0) & CR0_CMDQEN) === 0 || this.cmdqErrorActive) return;
    const baseLo = f.words[this.regs.cmdqBase.slot]!;
    const base = f.address(this.regs.cmdqBase, CMDQ_BASE_ADDR);
    const log2 = Math.min(CMDQ_BASE_LOG2SIZE.get(baseLo), this.cmdqs);
    const wrapMask = qWrapMask(log2);
    const idxMask = qIndexMask(log2);
    const end = f.get32(this.regs.cmdqProd) & wrapMask;
    let cons = f.get32(this.regs.cmdqCons) & wrapMask;
    const w = this.command;
    const reader = this.reader;
    const entries = idxMask + 1;
    const trace = this.tracesCommands;
    const syncs0 = this.stats.syncs;
    let n = 0;
    // The reader's window from the last walk stays valid while no memory chunk is replaced (it
    // checks SparseMemory.generation), so a ring walked again and again maps its chunk once.
    while (cons !== end) {
      // One run: the commands up to PROD, the ring's end or the end of the mapped memory.
      const run = reader.nextRun(base, cons, end, entries, wrapMask, w);
      if (run === 0) {
        this.cmdqConsumed(n, syncs0);
        this.stopQueue(cons, CERROR_ABT);
        return;
      }
      const words = reader.words;
      let i = reader.at;
      for (let k = 0; k < run; k++, i += 4) {
        const err = this.execute(words, i);
        if (trace) this.traceCommand('cmdq', words, i, err);
        if (err !== 0) {
          this.cmdqConsumed(n + k + 1, syncs0);
          this.stopQueue((cons + k) & wrapMask, err);
          return;
        }
      }
      n += run;
      cons = (cons + run) & wrapMask;
    }
    this.cmdqConsumed(n, syncs0);
    f.set32(this.regs.cmdqCons, cons);
  }

  /** Count the `n` commands the command queue executed (`syncs0`: the CMD_SYNC count before) and tell the observer. */
  private cmdqConsumed(n: number, syncs0: number): void {
    this.stats.commands += n;
    if (n > 0) this.cmdqObserver?.consumed(0, n, this.stats.syncs - syncs0);
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
   * Whether executed commands are traced (T_HOST_CMD). The queue loops read it once per batch
   * and then call {@link traceCommand} after each command.
   */
  get tracesCommands(): boolean {
    return this.tracer.enabled(T_CMD);
  }

  /** Trace one executed command (`words[at..at + 3]`, its CERROR `err`) of queue `queue`. */
  traceCommand(queue: string, words: Uint32Array, at: number, err: number): void {
    this.tracer.emit(T_CMD, this.config.name, queue, opName(words[at]! & OPCODE_MASK), err);
  }

  /**
   * Execute the command held in `words[at..at + 3]` (straight from a mapped ring, or a copy a
   * VCMDQ rewrote). Returns 0 or a CERROR code. Shared by the main CMDQ and the CMDQV's VCMDQs
   * (which filter and rewrite guest commands first); the caller counts it in `stats.commands`
   * and traces it, once per batch rather than per command.
   *
   * The hot commands (a run of TLBI_NH_VAs, each batch's CMD_SYNC) are handled here, the rest in
   * {@link executeOther}: a body this small is inlined into the queue loops.
   */
  execute(words: Uint32Array, at: number): number {
    const op = words[at]! & OPCODE_MASK;
    if (op === OP_TLBI_NH_VA || op === OP_TLBI_NH_VAA) {
      this.stats.tlbi++;
      // Nothing cached for the VMID: no need to decode the range (the common steady state).
      if (this.iotlb.hasVmid((words[at + 1]! >>> VMID_SHIFT) & VMID_MASK)) this.invalidateVa(this.copyCommand(words, at), op);
      return 0;
    }
    if (op === OP_SYNC) {
      this.stats.syncs++;
      return 0;
    }
    return this.executeOther(this.copyCommand(words, at), op);
  }

  /** The command at `words[at..]` as the 4 words of {@link command} (for the decoders). */
  private copyCommand(words: Uint32Array, at: number): Uint32Array {
    const w = this.command;
    if (words !== w || at !== 0) {
      w[0] = words[at]!;
      w[1] = words[at + 1]!;
      w[2] = words[at + 2]!;
      w[3] = words[at + 3]!;
    }
    return w;
  }

  /** TLBI_NH_VA / TLBI_NH_VAA of a VMID that has IOTLB entries. */
  private invalidateVa(w: Uint32Array, op: number): void {
    const va = D1_ADDR_PAGE.addressWords(w[2]!, w[3]!);
    this.iotlb.invalidateVa(cmdVmid(w), op === OP_TLBI_NH_VA ? cmdAsid(w) : undefined, va, tlbiRangeBytes(w), D1_LEAF.get(w[2]!) === 1);
  }

  /** Every command but TLBI_NH_VA/VAA and CMD_SYNC; returns 0 or a CERROR code. */
  private executeOther(w: Uint32Array, op: number): number {
    switch (op) {
      case Op.TLBI_NH_ASID:
        this.stats.tlbi++;
        this.iotlb.invalidateAsid(cmdVmid(w), cmdAsid(w));
        return 0;
      case Op.PREFETCH_CFG:
      case Op.PREFETCH_ADDR:
      case Op.PRI_RESP:
      case Op.RESUME:
      case Op.STALL_TERM:
        return 0;
      case Op.CFGI_STE:
        this.stats.cfgi++;
        this.engine.invalidateSte(cmdSid(w));
        return 0;
      case Op.CFGI_STE_RANGE:
        this.stats.cfgi++;
        this.engine.invalidateSteRange(cmdSid(w), D1.RANGE.get(w[2]!));
        return 0;
      case Op.CFGI_CD:
        this.stats.cfgi++;
        this.engine.invalidateCd(cmdSid(w), D0.SSID.get(w[0]!));
        return 0;
      case Op.CFGI_CD_ALL:
        this.stats.cfgi++;
        this.engine.invalidateCdAll(cmdSid(w));
        return 0;
      case Op.TLBI_NH_ALL:
        this.stats.tlbi++;
        this.iotlb.invalidateVmidStage1(cmdVmid(w));
        return 0;
      case Op.TLBI_S12_VMALL:
        this.stats.tlbi++;
        this.iotlb.invalidateVmid(cmdVmid(w));
        return 0;
      case Op.TLBI_S2_IPA: {
        this.stats.tlbi++;
        const ipa = D1.IPA_PAGE.addressWords(w[2]!, w[3]!);
        this.iotlb.invalidateIpa(cmdVmid(w), ipa, tlbiRangeBytes(w));
        return 0;
      }
      case Op.TLBI_NSNH_ALL:
        this.stats.tlbi++;
        this.iotlb.invalidateAll();
        return 0;
      case Op.TLBI_EL2_ALL:
      case Op.TLBI_EL2_ASID:
      case Op.TLBI_EL2_VA:
      case Op.TLBI_EL2_VAA:
        // No EL2 (host stage-1) translations are cached by this model.
        this.stats.tlbi++;
        return 0;
      case Op.ATC_INV:
        // No device in this model has an ATC; the command completes.
        this.stats.atcInv++;
        return 0;
      default:
        return CERROR_ILL;
    }
  }

  // ------------------------------------------------------------------------------------------
  // Translation (the shared engine) and where the STEs live

  private readonly physReader: TableReader;

  /** A linear stream table (the 2-level format is not modelled on the host). */
  private readonly steLocator: TranslatorDevice = {
    steAddress: (sid: number, fault: FaultRecord): number => {
      const f = this.bank.file;
      const cfgWord = f.get32(this.regs.strtabCfg);
      if (R.STRTAB_BASE_CFG.f.FMT.get(cfgWord) !== 0) {
        this.log.unimp(this.bank.source, '2-level stream table');
        return -1;
      }
      if (sid >= 2 ** R.STRTAB_BASE_CFG.f.LOG2SIZE.get(cfgWord)) {
        fault.id = Evt.C_BAD_STREAMID;
        return -1;
      }
      return f.address(this.regs.strtabBase, R.STRTAB_BASE.f.ADDR) + sid * STE_BYTES;
    },
  };

  /**
   * Translate a device access: StreamID `sid`, SubstreamID `ssid` (0 without PASID), input
   * address `iova`, `access` = ACCESS_READ or ACCESS_WRITE. Faults record an event.
   */
  translate(sid: number, ssid: number, iova: number, access: number, out: Translation): Translation {
    this.stats.translations++;
    const f = this.bank.file;
    if ((f.get32(this.regs.cr0) & CR0_SMMUEN) === 0) {
      out.hit = false;
      out.event = 0;
      if ((f.get32(this.regs.gbpa) & GBPA_ABORT) !== 0) {
        out.ok = false;
        return out;
      }
      out.pa = iova;
      out.ok = true;
      return out;
    }
    const engine = this.engine;
    const walks = engine.stats.walks;
    engine.translate(sid, ssid, iova, access, out);
    const walked = engine.stats.walks - walks;
    this.stats.walks += walked;
    this.translationObserver?.translated(sid, iova, out.ok, walked);
    if (!out.ok && out.event !== 0) this.event(engine.fault);
    return out;
  }

  // ------------------------------------------------------------------------------------------
  // Event queue

  /** Build and queue the event record of a fault (docs/reference/smmuv3.md §6.1). */
  private event(fault: FaultRecord): void {
    const e = encodeEvent(fault, HOST_EVENT_FIELDS, this.eventRecord);
    // Tested first: emit's argument list is an array built per call, even when the event is off.
    if (this.tracer.enabled(T_HOST_EVENT)) this.tracer.emit(T_HOST_EVENT, this.config.name, fault.id, fault.sid, fault.addr);
    this.pushEvent(e, fault.id, fault.sid);
  }

  /** Append a 32-byte record to the event queue (overflow toggles EVENTQ_PROD.OVFLG). */
  private pushEvent(e: Uint32Array, id: number, sid: number): void {
    this.stats.events++;
    const f = this.bank.file;
    if ((f.get32(this.regs.cr0) & CR0_EVENTQEN) === 0) {
      this.stats.eventsLost++;
      return;
    }
    const lo = f.words[this.regs.eventqBase.slot]!;
    const hi = f.words[this.regs.eventqBase.slot + 1]!;
    const base = EVENTQ_BASE_ADDR.addressWords(lo, hi);
    const log2 = EVENTQ_BASE_LOG2SIZE.getWords(lo, hi);
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
    const prod = ((prodReg & OVFLG_MASK) | qAdvance(prodReg, 1, log2)) >>> 0;
    f.set32(this.regs.eventqProd, prod);
    const obs = this.eventObserver;
    obs?.enterHop(EVENT_HOP_HOST_EVTQ, 0, id, sid, qUsed(prod, cons, log2));
    if ((f.get32(this.regs.irqCtrl) & IRQ_EVENTQ_IRQEN) !== 0) this.onEventIrq();
    obs?.leaveHop(EVENT_HOP_HOST_EVTQ, qUsed(prod, f.get32(this.regs.eventqCons), log2));
  }
}
