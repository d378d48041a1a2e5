/**
 * The walk of the accelerated SMMUv3's trapped command queue (QEMU's smmuv3_cmdq_consume):
 * read each command from the guest ring, forward invalidations to the host in batches
 * (`cmdq.ts`), execute the rest here (CMD_SYNC, STE installs), and stop at the first failing
 * command with CONS.ERR and GERROR.CMDQ_ERR.
 *
 * This is the trapped path's hot loop (docs/design.md, Performance notes): the ring is read
 * through a direct window on guest RAM, a run of TLBI_NH_{ASID,VA,VAA} is copied straight into
 * the batch, and every function the loop calls is created once per device.
 */

import { CERROR_ABT, CERROR_ILL, CERROR_NONE, D0, D1, Op, opName, SYNC_CS_IRQ } from '../../arch/smmuv3/commands.js';
import { CMDQ_ENTRY_BYTES, qIndex, qIndexMask, qUsed, qWrap, qWrapMask } from '../../arch/smmuv3/queue.js';
import * as R from '../../arch/smmuv3/registers.js';
import { hex } from '../../kit/bits.js';
import type { ModelLog } from '../../kit/log.js';
import { WordWindow } from '../../kit/sparse-memory.js';
import type { Tracer } from '../../kit/trace.js';
import { iommu_hwpt_invalidate_data_type } from '../../uapi/iommufd.js';
import type { AccelObservers, AccelSmmuStats, AccelSmmuV3State } from './accel-state.js';
import { CMD_SSEC, COMMAND_TABLE, CommandBatch, flushCommands, MAX_BATCH, type CommandClass } from './cmdq.js';
import { messageOf, type HostCalls } from './host-calls.js';
import { SMMU_IRQ_CMD_SYNC, type SmmuRegisterFrame } from './register-frame.js';
import type { GuestMemory } from './ste-install.js';
import * as T from './trace-events.js';
import type { AccelViommu } from './viommu.js';

/** Words per command. */
const CMD_WORDS = CMDQ_ENTRY_BYTES / 4;
/** A module-local copy: the walk reads it per command, and an imported binding costs a load per use. */
const CMD_BYTES = CMDQ_ENTRY_BYTES;
/** dword0's opcode within word 0, for the loop's per-command test. */
const OPCODE_MASK = D0.OPCODE.wordMask(0);
/** The opcodes the loop forwards without decoding (they need only a vIOMMU and stage 1). */
const OP_TLBI_NH_ASID = Op.TLBI_NH_ASID;
const OP_TLBI_NH_VA = Op.TLBI_NH_VA;
const OP_TLBI_NH_VAA = Op.TLBI_NH_VAA;

/** The command classes that may go to the host. */
type ForwardClass = 'forward' | 'forward_sid' | 'atc_inv';

/** What the command-queue walk works with. */
export interface CommandQueueDeps {
  readonly state: AccelSmmuV3State;
  readonly frame: SmmuRegisterFrame;
  readonly viommu: AccelViommu;
  readonly host: HostCalls;
  readonly stats: AccelSmmuStats;
  readonly guestMemory: GuestMemory;
  readonly log: ModelLog;
  readonly tracer: Tracer;
  readonly observers: AccelObservers;
}

/** The trapped command queue of one accelerated SMMUv3. */
export class CommandQueueWalk {
  /** The command being decoded (a copy out of the ring, or a word-by-word read). */
  private readonly command = new Uint32Array(CMD_WORDS);
  /** Forwardable commands waiting for one IOMMU_HWPT_INVALIDATE. */
  private readonly batch = new CommandBatch();
  /** Direct view of the guest RAM under the ring being walked. */
  private readonly ringWindow = new WordWindow();

  // The walk in progress: state shared by the steps of {@link consume}.
  /** Guest-physical range [windowLo, windowHi) `ringWindow` maps (empty when none). */
  private windowLo = 0;
  private windowHi = 0;
  /** Index in the array {@link fetch} returned of the command it fetched. */
  private fetchedAt = 0;
  /** Ring masks of this walk. */
  private wrapMask = 0;
  private indexMask = 0;
  /** The CERROR the walk stops with, and the opcode it names. */
  private error = CERROR_NONE;
  private errorOp = 0;
  /** Index in the batch of the command the host refused (-1: none); the queue stops there. */
  private refused = -1;

  constructor(private readonly deps: CommandQueueDeps) {}

  /**
   * Consume the command queue up to PROD, synchronously. Stops at the first failing command
   * with CONS pointing at it, CONS.ERR set and GERROR.CMDQ_ERR toggled; nothing runs again
   * until the guest acknowledges through GERRORN.
   */
  consume(): void {
    const { frame, tracer, stats } = this.deps;
    if (!frame.cmdqEnabled) return;
    const { file, regs } = frame;
    const log2 = frame.cmdqLog2();
    const base = frame.address(regs.cmdqBase, R.CMDQ_BASE.f.ADDR);
    const prod = file.get32(regs.cmdqProd);
    const consReg = file.get32(regs.cmdqCons);
    const wrapMask = qWrapMask(log2);
    const indexMask = qIndexMask(log2);
    // Attached only while a trace is written: one test when it is not.
    const observer = this.deps.observers.walk;
    if (observer !== undefined) observer.walkBegin(qUsed(prod, consReg, log2));
    this.startWalk(wrapMask, indexMask);
    const batch = this.batch;
    const traceEach = tracer.enabled(T.T_CMDQ_CONSUME) || tracer.enabled(T.T_CMDQ_OPCODE);
    // TLBI_NH_{ASID,VA,VAA} need nothing but a vIOMMU and stage 1 (see checkForward).
    const tlbiDirect = this.deps.state.viommu !== undefined && frame.stage1 && !tracer.enabled(T.T_CMDQ_TLBI_NH_ASID) && !tracer.enabled(T.T_RANGE_INVAL);
    let cons = consReg;
    // A CMDQ_ERR still pending (not yet acknowledged) keeps the queue stopped.
    let stopped = frame.cmdqErrPending();
    if (stopped && traceEach && ((prod ^ cons) & wrapMask) !== 0 && tracer.enabled(T.T_CMDQ_CONSUME)) {
      // As QEMU: the walk starts (traced), then finds the queue stopped by the pending error.
      tracer.emit(T.T_CMDQ_CONSUME, qIndex(prod, log2), qIndex(cons, log2), qWrap(prod, log2), qWrap(cons, log2));
    }

    while (!stopped && ((prod ^ cons) & wrapMask) !== 0) {
      if (traceEach && tracer.enabled(T.T_CMDQ_CONSUME)) tracer.emit(T.T_CMDQ_CONSUME, qIndex(prod, log2), qIndex(cons, log2), qWrap(prod, log2), qWrap(cons, log2));
      const gpa = base + (cons & indexMask) * CMD_BYTES;
      const words = this.fetch(gpa);
      if (words === undefined) {
        if (this.flush()) this.error = CERROR_ABT;
        break;
      }
      const at = this.fetchedAt;
      const op = words[at]! & OPCODE_MASK;
      this.errorOp = op;
      if (traceEach && tracer.enabled(T.T_CMDQ_OPCODE)) tracer.emit(T.T_CMDQ_OPCODE, opName(op));
      stats.commands++;
      const next = ((cons & ~wrapMask) | ((cons + 1) & wrapMask)) >>> 0;
      if (tlbiDirect && (op === OP_TLBI_NH_VA || op === OP_TLBI_NH_ASID || op === OP_TLBI_NH_VAA)) {
        batch.pushFrom(words, at, cons);
        cons = next;
        if (words === this.ringWindow.words && !traceEach) cons = this.forwardTlbiRun(words, at + CMD_WORDS, gpa + CMDQ_ENTRY_BYTES, cons, prod);
        if (batch.full && !this.flush()) break;
        continue;
      }
      const command = this.copyCommand(words, at);
      const cls = COMMAND_TABLE.get(op);
      if (cls === 'forward' || cls === 'forward_sid' || cls === 'atc_inv') {
        const after = this.forwardCommand(cls, command, op, cons);
        if (after < 0) break;
        cons = after;
        continue;
      }
      // Everything else is ordered after the invalidations before it.
      if (!this.flush()) break;
      const error = this.execute(cls, command, op);
      if (error !== CERROR_NONE) {
        this.error = error;
        break;
      }
      cons = next;
      stopped = frame.cmdqErrPending();
    }
    this.finishWalk(prod, consReg, cons, log2);
    if (observer !== undefined) observer.walkEnd(qUsed(prod, cons, log2));
  }

  /** Reset the walk's cursor. */
  private startWalk(wrapMask: number, indexMask: number): void {
    this.batch.count = 0;
    this.windowLo = 0;
    this.windowHi = 0;
    this.wrapMask = wrapMask;
    this.indexMask = indexMask;
    this.error = CERROR_NONE;
    this.errorOp = 0;
    this.refused = -1;
  }

  /**
   * The command at `gpa`: the array holding it (its index in {@link fetchedAt}), or undefined
   * on an external abort. Reads through the mapped ring window when it can.
   */
  private fetch(gpa: number): Uint32Array | undefined {
    const window = this.ringWindow;
    if (gpa >= this.windowLo && gpa < this.windowHi) {
      this.fetchedAt = window.index + ((gpa - this.windowLo) >>> 2);
      return window.words;
    }
    if (this.mapRing(gpa)) {
      this.windowLo = gpa;
      this.windowHi = gpa + window.bytes;
      this.fetchedAt = window.index;
      return window.words;
    }
    this.windowLo = 0; // mapRing may have changed the window: forget the old one
    this.windowHi = 0;
    this.fetchedAt = 0;
    return this.readCommand(gpa);
  }

  /**
   * The TLBIs right after a forwarded one in the mapped window go straight into the batch,
   * without the outer loop's per-command work. `at`/`gpa` name the command after it and `cons`
   * its CONS; the run ends at PROD, the ring's end, the window's end, a full batch or any other
   * opcode. Its bounds are worked out once, the opcodes scanned, and the run copied into the
   * batch in one block. Returns CONS after the run.
   */
  private forwardTlbiRun(words: Uint32Array, at: number, gpa: number, cons: number, prod: number): number {
    const batch = this.batch;
    const wrapMask = this.wrapMask;
    const indexMask = this.indexMask;
    const slot = cons & indexMask;
    // Slot 0 follows the ring's last slot: the ring's start is elsewhere, the outer loop maps it.
    if (slot === 0) return cons;
    let limit = MAX_BATCH - batch.count;
    const pending = (prod - cons) & wrapMask;
    if (pending < limit) limit = pending;
    if (indexMask + 1 - slot < limit) limit = indexMask + 1 - slot;
    const inWindow = Math.floor((this.windowHi - gpa) / CMD_BYTES);
    if (inWindow < limit) limit = inWindow;
    let n = 0;
    for (let k = at; n < limit; n++, k += CMD_WORDS) {
      const op = words[k]! & OPCODE_MASK;
      if (op !== OP_TLBI_NH_VA && op !== OP_TLBI_NH_ASID && op !== OP_TLBI_NH_VAA) break;
    }
    if (n === 0) return cons;
    batch.pushRun(words, at, n, cons);
    this.deps.stats.commands += n;
    return ((cons & ~wrapMask) | ((cons + n) & wrapMask)) >>> 0;
  }

  /** The command at `words[at..]` in {@link command} (the general path decodes it there). */
  private copyCommand(words: Uint32Array, at: number): Uint32Array {
    const command = this.command;
    if (words !== command) {
      command[0] = words[at]!;
      command[1] = words[at + 1]!;
      command[2] = words[at + 2]!;
      command[3] = words[at + 3]!;
    }
    return command;
  }

  /**
   * A forwardable command at `cons`: batched, completed locally, or illegal. Returns the next
   * CONS, or -1 when the walk stops (the error or the refused command recorded).
   */
  private forwardCommand(cls: ForwardClass, command: Uint32Array, op: number, cons: number): number {
    const verdict = this.checkForward(cls, command, op);
    const next = ((cons & ~this.wrapMask) | ((cons + 1) & this.wrapMask)) >>> 0;
    if (verdict === 'forward') {
      this.batch.push(command, cons);
      return this.batch.full && !this.flush() ? -1 : next;
    }
    if (verdict !== CERROR_NONE) {
      if (this.flush()) {
        this.errorOp = op;
        this.error = verdict;
      }
      return -1;
    }
    return next;
  }

  /** Set CONS (with CONS.ERR and GERROR.CMDQ_ERR when the walk failed) and trace the result. */
  private finishWalk(prod: number, consReg: number, cons: number, log2: number): void {
    const { frame, tracer } = this.deps;
    const { file, regs } = frame;
    const batch = this.batch;
    if (this.error === CERROR_NONE && this.refused < 0) this.refused = this.flushBatch();
    if (this.refused >= 0) {
      // Stop at the refused command, as QEMU's per-command forwarding would have.
      cons = batch.cons[this.refused]!;
      this.error = CERROR_ILL;
      this.errorOp = D0.OPCODE.get(batch.words[this.refused * CMD_WORDS]!);
    }
    const wrapMask = qWrapMask(log2);
    let consOut = ((consReg & ~wrapMask) | (cons & wrapMask)) >>> 0;
    const error = this.error;
    if (error !== CERROR_NONE) {
      this.deps.stats.cmdqErrors++;
      frame.stopCmdq(consOut, error, this.errorOp);
      consOut = file.get32(regs.cmdqCons);
    } else {
      file.set32(regs.cmdqCons, consOut);
    }
    tracer.emit(T.T_CMDQ_CONSUME_OUT, qIndex(prod, log2), qIndex(consOut, log2), qWrap(prod, log2), qWrap(consOut, log2));
  }

  /** Send the batch; false when the host refused a command (recorded in {@link refused}). */
  private flush(): boolean {
    this.refused = this.flushBatch();
    return this.refused < 0;
  }

  /**
   * Send the forwarding batch with IOMMU_HWPT_INVALIDATE and empty it. Returns -1 when the host
   * took every command, else the index in the batch of the one it refused (reported); its words
   * and CONS stay readable in the batch until the next push.
   */
  private flushBatch(): number {
    const batch = this.batch;
    const count = batch.count;
    if (count === 0) return -1;
    const result = flushCommands(batch, this.issueInvalidate);
    batch.count = 0;
    if (result.failedAt === undefined) {
      this.deps.stats.forwarded += count;
      if (result.batchError !== undefined) {
        this.deps.host.report(`${messageOf(result.batchError)} (batch of ${count}; every command passed when re-sent alone)`);
      }
      return -1;
    }
    this.deps.stats.forwarded += result.failedAt;
    this.deps.host.report(messageOf(result.error));
    return result.failedAt;
  }

  /**
   * One IOMMU_HWPT_INVALIDATE of `entries` on the vIOMMU. A single function object for the
   * device's life: the command loop inlines it, and a per-call closure would deoptimise that.
   */
  private readonly issueInvalidate = (entries: Uint8Array): void => {
    const { host, stats, state } = this.deps;
    const backend = host.backend!;
    const before = backend.callTotal;
    stats.invalidateCalls++;
    try {
      backend.invalidateCache(state.viommu!.id, iommu_hwpt_invalidate_data_type.IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3, entries);
    } finally {
      stats.ioctls += backend.callTotal - before;
    }
  };

  /** Map the ring memory at `gpa` into {@link ringWindow}; false when it needs word reads. */
  private mapRing(gpa: number): boolean {
    try {
      return this.deps.guestMemory.mapWords?.(gpa, this.ringWindow) === true && this.ringWindow.bytes >= CMDQ_ENTRY_BYTES;
    } catch {
      return false; // unbacked: readCommand reports the abort
    }
  }

  /** One command from guest memory into {@link command}, or undefined on an external abort. */
  private readCommand(gpa: number): Uint32Array | undefined {
    // One reusable buffer: forwarded commands are copied into the batch.
    const command = this.command;
    const memory = this.deps.guestMemory;
    try {
      if (!memory.readWords?.(gpa, command, 0, CMD_WORDS)) for (let i = 0; i < CMD_WORDS; i++) command[i] = memory.read32(gpa + 4 * i) >>> 0;
    } catch {
      this.deps.log.guestError(this.deps.frame.logSource, `command fetch abort at ${hex(gpa, 12)}`);
      return undefined;
    }
    return command;
  }

  /**
   * The forwardable opcodes: whether this one goes to the host ('forward'), completes locally
   * (CERROR_NONE), or is illegal here. No host side effects.
   */
  private checkForward(cls: ForwardClass, command: Uint32Array, op: number): 'forward' | number {
    const { tracer, frame, state, viommu } = this.deps;
    const sid = D0.SID.getWords(command[0]!, command[1]!);
    if (cls === 'forward_sid') {
      if (CMD_SSEC.get(command[0]!)) return CERROR_ILL;
      const device = viommu.findDevice(sid);
      if (!device) return CERROR_NONE;
      if (!frame.stage1) return CERROR_ILL;
      tracer.emit(T.T_CMDQ_CFGI_CD, sid);
      return state.viommu && device.vdevId !== undefined ? 'forward' : CERROR_NONE;
    }
    if (cls === 'atc_inv') {
      const device = viommu.findDevice(sid);
      if (!device || !frame.ats) {
        tracer.emit(T.T_UNHANDLED_CMD, op);
        return CERROR_NONE;
      }
      return state.viommu && device.vdevId !== undefined ? 'forward' : CERROR_NONE;
    }
    if (!frame.stage1) return CERROR_ILL;
    switch (op) {
      case Op.TLBI_NH_ASID:
        tracer.emit(T.T_CMDQ_TLBI_NH_ASID, D0.ASID.getWords(command[0]!, command[1]!));
        break;
      case Op.TLBI_NH_VA:
      case Op.TLBI_NH_VAA:
        // Decoding the trace arguments costs more than forwarding: only when enabled.
        if (tracer.enabled(T.T_RANGE_INVAL)) {
          const w0 = command[0]!;
          const w1 = command[1]!;
          const w2 = command[2]!;
          const w3 = command[3]!;
          tracer.emit(
            T.T_RANGE_INVAL, -1, op === Op.TLBI_NH_VA ? D0.ASID.getWords(w0, w1) : -1, D1.ADDR_PAGE.getWords(w2, w3) * 4096,
            D1.TG.get(w2), (D0.NUM.get(w0) + 1) * 2 ** D0.SCALE.get(w0), D1.TTL.get(w2), D1.LEAF.get(w2), 1,
          );
        }
        break;
      case Op.TLBI_NH_ALL: // with stage 2 it only drops this VMID's stage-1 entries locally
        if (frame.stage2) return CERROR_NONE;
        tracer.emit(T.T_CMDQ_TLBI_NSNH);
        break;
      default: // TLBI_NSNH_ALL
        tracer.emit(T.T_CMDQ_TLBI_NSNH);
        break;
    }
    return state.viommu ? 'forward' : CERROR_NONE;
  }

  /** Execute a command that is not forwarded; returns its CERROR. */
  private execute(cls: CommandClass | undefined, command: Uint32Array, op: number): number {
    const { tracer, viommu, state } = this.deps;
    switch (cls) {
      case 'sync':
        if (D0.SYNC_CS.get(command[0]!) === SYNC_CS_IRQ) this.deps.frame.triggerIrq(SMMU_IRQ_CMD_SYNC);
        return CERROR_NONE;
      case 'noop':
        return CERROR_NONE;
      case 'cfgi_ste': {
        if (CMD_SSEC.get(command[0]!)) return CERROR_ILL;
        const sid = D0.SID.getWords(command[0]!, command[1]!);
        const device = viommu.findDevice(sid);
        if (!device) return CERROR_NONE;
        tracer.emit(T.T_CMDQ_CFGI_STE, sid | 0);
        try {
          viommu.installSte(device);
        } catch (e) {
          this.deps.host.report(messageOf(e));
          return CERROR_ILL;
        }
        return CERROR_NONE;
      }
      case 'cfgi_ste_range': {
        if (CMD_SSEC.get(command[0]!)) return CERROR_ILL;
        const span = 2 ** (D1.RANGE.get(command[2]!) + 1);
        const start = Math.floor(D0.SID.getWords(command[0]!, command[1]!) / span) * span;
        const end = start + span - 1;
        tracer.emit(T.T_CMDQ_CFGI_STE_RANGE, start >>> 0, end >>> 0);
        if (!state.viommu) return CERROR_NONE;
        let ok = true;
        for (const device of state.devices) {
          const sid = device.hostDevice.guestSid;
          if (sid < start || sid > end) continue;
          if (!viommu.installSteReporting(device)) ok = false;
        }
        if (!ok) {
          this.deps.host.report('Failed to install all STEs properly');
          return CERROR_ILL;
        }
        return CERROR_NONE;
      }
      case 'unhandled':
        tracer.emit(T.T_UNHANDLED_CMD, op);
        return CERROR_NONE;
      default:
        return CERROR_ILL;
    }
  }
}
