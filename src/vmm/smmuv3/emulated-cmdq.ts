/**
 * The emulated SMMUv3's command queue, consumed in the VMM when the guest writes CMDQ_PROD
 * (and CR0, GERRORN): QEMU's smmuv3_cmdq_consume (docs/reference/qemu-smmuv3.md §4).
 * Configuration invalidations act on the engine's configuration cache, TLB invalidations on
 * its IOTLB (QEMU's keys: ASID −1 for stage-2-only entries is the engine's NO_ASID context, and
 * VMID −1 of a stage-1-only SMMU is VMID 0); CMD_SYNC with CS=IRQ pulses the CMD_SYNC
 * interrupt; an unknown or (for the stages offered) illegal command stops the queue with
 * CERROR_ILL in CMDQ_CONS.ERR and GERROR.CMDQ_ERR, a command fetch that aborts with CERROR_ABT.
 *
 * Hot loop: commands are read into one reusable buffer, the opcode switch tests the
 * invalidations first, and trace arguments are decoded only when their event is enabled.
 */

import { CERROR_ABT, CERROR_ILL, CERROR_NONE, D0, D1, Op, opName, SYNC_CS_IRQ, tlbiRangeBytes } from '../../arch/smmuv3/commands.js';
import { CMDQ_ENTRY_BYTES, qIndex, qIndexMask, qUsed, qWrap, qWrapMask } from '../../arch/smmuv3/queue.js';
import * as R from '../../arch/smmuv3/registers.js';
import type { Translator } from '../../arch/smmuv3/translator.js';
import { hex } from '../../kit/bits.js';
import type { ModelLog } from '../../kit/log.js';
import { WordWindow } from '../../kit/sparse-memory.js';
import type { Tracer } from '../../kit/trace.js';
import type { AccelObservers } from './accel-state.js';
import { CMD_SSEC } from './cmdq.js';
import { SMMU_IRQ_CMD_SYNC, type SmmuRegisterFrame } from './register-frame.js';
import type { GuestMemory } from './ste-install.js';
import * as T from './trace-events.js';

/** Words per command; module-local copies (an imported binding costs a load per use). */
const CMD_WORDS = CMDQ_ENTRY_BYTES / 4;
const CMD_BYTES = CMDQ_ENTRY_BYTES;
const OPCODE_MASK = D0.OPCODE.wordMask(0);
/** dword0 [63:32] is word 1: VMID [47:32], ASID [63:48]. */
const VMID_SHIFT = D0.VMID.lsb - 32;
const VMID_MASK = D0.VMID.max;
const ASID_SHIFT = D0.ASID.lsb - 32;
const ASID_MASK = D0.ASID.max;
const OP_TLBI_NH_VA = Op.TLBI_NH_VA;
const OP_TLBI_NH_VAA = Op.TLBI_NH_VAA;
const OP_TLBI_NH_ASID = Op.TLBI_NH_ASID;
const OP_SYNC = Op.SYNC;

/** Counters of the command queue. */
export interface EmulatedCmdqStats {
  /** Commands consumed. */
  commands: number;
  /** TLBI_* commands executed on the IOTLB. */
  tlbi: number;
  /** CFGI_* commands executed on the configuration cache. */
  cfgi: number;
  syncs: number;
  cmdqErrors: number;
}

/** The command queue of one emulated SMMUv3. */
export class EmulatedCommandQueue {
  private readonly command = new Uint32Array(CMD_WORDS);
  /** A direct window on the guest RAM holding the ring (valid for one consume call). */
  private readonly ringWindow = new WordWindow();
  private windowLo = 0;
  private windowHi = 0;

  constructor(
    private readonly frame: SmmuRegisterFrame,
    private readonly engine: Translator,
    private readonly mem: GuestMemory,
    private readonly stats: EmulatedCmdqStats,
    private readonly log: ModelLog,
    private readonly tracer: Tracer,
    private readonly observers?: Pick<AccelObservers, 'walk'>,
  ) {}

  /** Consume the queue up to PROD, or until an error stops it (QEMU's smmuv3_cmdq_consume). */
  consume(): void {
    const frame = this.frame;
    if (!frame.cmdqEnabled) return;
    const { file, regs } = frame;
    const tracer = this.tracer;
    const log2 = frame.cmdqLog2();
    const wrapMask = qWrapMask(log2);
    const indexMask = qIndexMask(log2);
    const base = frame.address(regs.cmdqBase, R.CMDQ_BASE.f.ADDR);
    const prod = file.get32(regs.cmdqProd) & wrapMask;
    const consReg = file.get32(regs.cmdqCons);
    let cons = consReg & wrapMask;
    // Attached only while a trace is written: one test when it is not.
    const observer = this.observers?.walk;
    if (observer !== undefined) observer.walkBegin(qUsed(prod, cons, log2));
    const traceConsume = tracer.enabled(T.T_CMDQ_CONSUME);
    const traceOpcode = tracer.enabled(T.T_CMDQ_OPCODE);
    this.windowLo = this.windowHi = 0;
    let error = CERROR_NONE;
    let op = 0;
    while (cons !== prod) {
      if (traceConsume) tracer.emit(T.T_CMDQ_CONSUME, qIndex(prod, log2), qIndex(cons, log2), qWrap(prod, log2), qWrap(cons, log2));
      if (frame.cmdqErrPending()) break;
      const w = this.read(base + (cons & indexMask) * CMD_BYTES);
      if (w === undefined) {
        error = CERROR_ABT;
        break;
      }
      op = w[0]! & OPCODE_MASK;
      if (traceOpcode) tracer.emit(T.T_CMDQ_OPCODE, opName(op));
      this.stats.commands++;
      error = this.execute(w, op);
      if (error !== CERROR_NONE) break;
      cons = (cons + 1) & wrapMask;
    }
    // CONS keeps the register's other bits; an error stops at the failing command.
    let consOut = ((consReg & ~wrapMask) | cons) >>> 0;
    if (error !== CERROR_NONE) {
      this.stats.cmdqErrors++;
      frame.stopCmdq(consOut, error, op);
      consOut = file.get32(regs.cmdqCons);
    } else {
      file.set32(regs.cmdqCons, consOut);
    }
    tracer.emit(T.T_CMDQ_CONSUME_OUT, qIndex(prod, log2), qIndex(consOut, log2), qWrap(prod, log2), qWrap(consOut, log2));
    if (observer !== undefined) observer.walkEnd(qUsed(prod, cons, log2));
  }

  /** The command at `gpa` in the reusable buffer, or undefined when the fetch aborts. */
  private read(gpa: number): Uint32Array | undefined {
    const w = this.command;
    // The ring is in RAM: copy the command out of a mapped window (one map per window, not
    // three calls per command).
    if (gpa < this.windowLo || gpa + CMD_BYTES > this.windowHi) this.mapRing(gpa);
    if (gpa >= this.windowLo && gpa + CMD_BYTES <= this.windowHi) {
      const win = this.ringWindow;
      const at = win.index + ((gpa - this.windowLo) >>> 2);
      const words = win.words;
      w[0] = words[at]!;
      w[1] = words[at + 1]!;
      w[2] = words[at + 2]!;
      w[3] = words[at + 3]!;
      return w;
    }
    const mem = this.mem;
    if (mem.readWords !== undefined) {
      if (mem.readWords(gpa, w, 0, CMD_WORDS)) return w;
    } else {
      try {
        for (let i = 0; i < CMD_WORDS; i++) w[i] = mem.read32(gpa + 4 * i) >>> 0;
        return w;
      } catch {
        // reported below
      }
    }
    this.log.guestError(this.frame.logSource, `command fetch abort at ${hex(gpa, 12)}`);
    return undefined;
  }

  /** Map the RAM from `gpa` into the ring window, or leave the window empty. */
  private mapRing(gpa: number): void {
    const win = this.ringWindow;
    if (this.mem.mapWords?.(gpa, win) === true && win.bytes >= CMD_BYTES) {
      this.windowLo = gpa;
      this.windowHi = gpa + win.bytes;
    } else {
      this.windowLo = this.windowHi = 0;
    }
  }

  /** Execute one command; returns its CERROR. */
  private execute(w: Uint32Array, op: number): number {
    const frame = this.frame;
    const engine = this.engine;
    const iotlb = engine.iotlb;
    // The VMID of a command counts only when stage 2 is offered (QEMU: -1, any VMID, else).
    const vmid = frame.stage2 ? (w[1]! >>> VMID_SHIFT) & VMID_MASK : 0;
    switch (op) {
      case OP_TLBI_NH_VA:
      case OP_TLBI_NH_VAA: {
        if (!frame.stage1) return CERROR_ILL;
        this.stats.tlbi++;
        const asid = op === OP_TLBI_NH_VA ? (w[1]! >>> ASID_SHIFT) & ASID_MASK : undefined;
        const va = D1.ADDR_PAGE.addressWords(w[2]!, w[3]!);
        if (this.tracer.enabled(T.T_RANGE_INVAL)) this.traceRange(w, vmid, asid ?? -1, va, 1);
        if (iotlb.hasVmid(vmid)) iotlb.invalidateVa(vmid, asid, va, tlbiRangeBytes(w), D1.LEAF.get(w[2]!) === 1);
        return CERROR_NONE;
      }
      case OP_SYNC:
        this.stats.syncs++;
        // QEMU tests the IRQ bit of CS: the reserved CS = 3 interrupts too (docs/reference/qemu-smmuv3.md §4).
        if ((D0.SYNC_CS.get(w[0]!) & SYNC_CS_IRQ) !== 0) frame.triggerIrq(SMMU_IRQ_CMD_SYNC);
        return CERROR_NONE;
      case OP_TLBI_NH_ASID: {
        if (!frame.stage1) return CERROR_ILL;
        this.stats.tlbi++;
        const asid = (w[1]! >>> ASID_SHIFT) & ASID_MASK;
        this.tracer.emit(T.T_CMDQ_TLBI_NH_ASID, asid);
        this.tracer.emit(T.T_IOTLB_INV_ASID_VMID, asid, frame.stage2 ? vmid : -1);
        iotlb.invalidateAsid(vmid, asid);
        return CERROR_NONE;
      }
      case Op.TLBI_NH_ALL:
        if (!frame.stage1) return CERROR_ILL;
        this.stats.tlbi++;
        if (frame.stage2) {
          // With stage 2 offered: only this VMID's stage-1 entries.
          this.tracer.emit(T.T_CMDQ_TLBI_NH, vmid);
          this.tracer.emit(T.T_IOTLB_INV_VMID_S1, vmid);
          iotlb.invalidateVmidStage1(vmid);
          return CERROR_NONE;
        }
        return this.invalidateAll();
      case Op.TLBI_NSNH_ALL:
        this.stats.tlbi++;
        return this.invalidateAll();
      case Op.TLBI_S12_VMALL:
        if (!frame.stage2) return CERROR_ILL;
        this.stats.tlbi++;
        this.tracer.emit(T.T_CMDQ_TLBI_S12_VMID, vmid);
        this.tracer.emit(T.T_IOTLB_INV_VMID, vmid);
        iotlb.invalidateVmid(vmid);
        return CERROR_NONE;
      case Op.TLBI_S2_IPA: {
        if (!frame.stage2) return CERROR_ILL;
        this.stats.tlbi++;
        const ipa = D1.IPA_PAGE.addressWords(w[2]!, w[3]!);
        if (this.tracer.enabled(T.T_RANGE_INVAL)) this.traceRange(w, vmid, -1, ipa, 2);
        iotlb.invalidateIpa(vmid, ipa, tlbiRangeBytes(w));
        return CERROR_NONE;
      }
      case Op.CFGI_STE:
      case Op.CFGI_CD:
      case Op.CFGI_CD_ALL: {
        if (CMD_SSEC.get(w[0]!)) return CERROR_ILL;
        this.stats.cfgi++;
        const sid = D0.SID.getWords(w[0]!, w[1]!);
        // QEMU's cache holds one decoded STE + CD per device: any of these drops it.
        if (op === Op.CFGI_STE) this.tracer.emit(T.T_CMDQ_CFGI_STE, sid | 0);
        else this.tracer.emit(T.T_CMDQ_CFGI_CD, sid);
        this.tracer.emit(T.T_CONFIG_CACHE_INV, sid);
        engine.invalidateSte(sid);
        return CERROR_NONE;
      }
      case Op.CFGI_STE_RANGE: {
        if (CMD_SSEC.get(w[0]!)) return CERROR_ILL;
        this.stats.cfgi++;
        const range = D1.RANGE.get(w[2]!);
        const sid = D0.SID.getWords(w[0]!, w[1]!);
        const span = 2 ** (range + 1);
        const start = range >= 31 ? 0 : Math.floor(sid / span) * span;
        this.tracer.emit(T.T_CMDQ_CFGI_STE_RANGE, start >>> 0, range >= 31 ? 0xffff_ffff : (start + span - 1) >>> 0);
        engine.invalidateSteRange(sid, range);
        return CERROR_NONE;
      }
      case Op.PREFETCH_CFG:
      case Op.PREFETCH_ADDR:
        return CERROR_NONE;
      case Op.TLBI_EL3_ALL:
      case Op.TLBI_EL3_VA:
      case Op.TLBI_EL2_ALL:
      case Op.TLBI_EL2_ASID:
      case Op.TLBI_EL2_VA:
      case Op.TLBI_EL2_VAA:
      case Op.ATC_INV:
      case Op.PRI_RESP:
      case Op.RESUME:
      case Op.STALL_TERM:
        this.tracer.emit(T.T_UNHANDLED_CMD, op);
        return CERROR_NONE;
      default:
        return CERROR_ILL;
    }
  }

  /** TLBI_NH_ALL without stage 2, and TLBI_NSNH_ALL: everything. */
  private invalidateAll(): number {
    this.tracer.emit(T.T_CMDQ_TLBI_NSNH);
    this.tracer.emit(T.T_IOTLB_INV_ALL);
    this.engine.iotlb.invalidateAll();
    return CERROR_NONE;
  }

  private traceRange(w: Uint32Array, vmid: number, asid: number, addr: number, stage: number): void {
    const w0 = w[0]!;
    const w2 = w[2]!;
    const tg = D1.TG.get(w2);
    const pages = tg === 0 ? 1 : (D0.NUM.get(w0) + 1) * 2 ** D0.SCALE.get(w0);
    this.tracer.emit(T.T_RANGE_INVAL, this.frame.stage2 ? vmid : -1, asid, addr, tg, pages, D1.TTL.get(w2), D1.LEAF.get(w2), stage);
  }
}
