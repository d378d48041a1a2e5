/**
 * The Tegra241 CMDQV silicon (docs/reference/tegra241-cmdqv.md §2–3): global config page, VINTF register
 * blocks with SID match/replace tables and error maps, 128 physical VCMDQs with page0/page1,
 * CMDQ_ALLOC_MAP mapping them into VINTFs as logical queues, and per-queue command consumption
 * from host-physical memory into the SMMU's command engine.
 *
 * A guest-owned VINTF (HYP_OWN = 0) executes only TLBI_NH_ASID, TLBI_NH_VA, ATC_INV and
 * CMD_SYNC; VMIDs are forced to the VINTF's VMID and ATC_INV StreamIDs are replaced through
 * SID_MATCH/SID_REPLACE, so a guest can reach only its own devices and TLB entries. Any other
 * command stops its queue with CERROR_ILL at that command and raises the error interrupt.
 */

import type { ModelLog } from '../../kit/log.js';
import { MemoryRegion, type RegionOps } from '../../kit/memory-region.js';
import { cloneState, type Persist } from '../../kit/persist.js';
import { RegisterBank } from '../../kit/register-bank.js';
import { RegisterLayout, type RegisterFile, type RegisterInfo } from '../../kit/registers.js';
import type { QueueObserver, Tracer } from '../../kit/trace.js';
import { CERROR_ABT, CERROR_ILL, D0, Op, opName } from '../../arch/smmuv3/commands.js';
import { qIndexMask, qWrapMask } from '../../arch/smmuv3/queue.js';
import { CommandReader } from '../smmuv3/command-reader.js';
import * as C from '../../arch/tegra241-cmdqv/registers.js';
import type { CmdqvConfig } from '../config.js';
import type { PhysicalMemory } from '../memory/physical-memory.js';
import type { HostSmmu } from '../smmuv3/smmu.js';
import { T_HW_CONSUME, T_HW_QUEUE_ERROR } from './trace-events.js';

/** Logical VCMDQs a VINTF can address (CMDQ_ALLOC_MAP.LVCMDQ is 7 bits). */
const MAX_LVCMDQ = 2 ** C.CMDQ_ALLOC_MAP.f.LVCMDQ.width;
const NO_QUEUE = -1;
const SRC = 'tegra241-cmdqv-hw';

// Decode and hot-path masks, derived once from the register and command tables.
const SLOT_SHIFT = Math.log2(C.VCMDQ_SLOT);
const SLOT_MASK = C.VCMDQ_SLOT - 1;
/** One VINTF page (page0 or page1) of the aperture. */
const PAGE_SIZE = C.CMDQV_PAGE_SIZE;
const VINTF_BLOCK_SHIFT = Math.log2(C.VINTF_BLOCK_STRIDE);
const VINTF_BLOCK_MASK = C.VINTF_BLOCK_STRIDE - 1;
const PROD_WR_MASK = C.VCMDQ_PROD.f.WR.wordMask(0);
const CONS_ERR_MASK = C.VCMDQ_CONS.f.ERR.wordMask(0);
const GERROR_CMDQ_ERR = C.VCMDQ_GERROR.f.CMDQ_ERR.wordMask(0);
const OPCODE_MASK = D0.OPCODE.wordMask(0);
// What a PROD write reads before consuming, as word masks and shifts (module-local: the
// register tables are imported namespaces, and each hop through them is a load per access).
const STATUS_ENABLED = C.STATUS.f.CMDQV_ENABLED.wordMask(0);
const ALLOC_BIT = C.CMDQ_ALLOC_MAP.f.ALLOC.wordMask(0);
const VINTF_INDX_SHIFT = C.CMDQ_ALLOC_MAP.f.VIRT_INTF_INDX.lsb;
const VINTF_INDX_MAX = C.CMDQ_ALLOC_MAP.f.VIRT_INTF_INDX.max;
const VINTF_ENABLE_OK = C.VINTF_STATUS.f.ENABLE_OK.wordMask(0);
const VINTF_HYP_OWN = C.VINTF_CONFIG.f.HYP_OWN.wordMask(0);
const VINTF_VMID_SHIFT = C.VINTF_CONFIG.f.VMID.lsb;
const VINTF_VMID_MAX = C.VINTF_CONFIG.f.VMID.max;
const VCMDQ_EN_OK = C.VCMDQ_STATUS.f.CMDQ_EN_OK.wordMask(0);
const BASE_LOG2SIZE = C.VCMDQ_BASE.f.LOG2SIZE;
const BASE_ADDR = C.VCMDQ_BASE.f.ADDR;
/** VMID of a TLBI command, in its second word (dword0 [47:32]). */
const VMID_W1_MASK = D0.VMID.wordMask(1);
/** What a guest-owned VINTF does with a command, by opcode. */
const GUEST_REFUSE = 0;
/** Runs as is (CMD_SYNC). */
const GUEST_RUN = 1;
/** Runs under the VINTF's VMID (the TLBIs). */
const GUEST_FORCE_VMID = 2;
/** Runs with its StreamID replaced through SID_MATCH/SID_REPLACE (ATC_INV). */
const GUEST_REPLACE_SID = 3;
/** Opcode → action, built once from the one list of guest opcodes in the arch table. */
const GUEST_ACTION = new Uint8Array(OPCODE_MASK + 1).fill(GUEST_REFUSE);
for (const op of C.GUEST_VCMDQ_OPCODES) {
  GUEST_ACTION[op] = op === Op.SYNC ? GUEST_RUN : op === Op.ATC_INV ? GUEST_REPLACE_SID : GUEST_FORCE_VMID;
}

let layouts: { global: RegisterLayout; vintf: RegisterLayout; page0: RegisterLayout; page1: RegisterLayout } | undefined;

function cmdqvLayouts() {
  layouts ??= {
    global: new RegisterLayout('tegra241-cmdqv-global', C.VINTF_BLOCK, [
      C.CONFIG, C.PARAM, C.STATUS, C.VI_ERR_MAP, C.VI_INT_MASK, C.CMDQ_ERR_MAP, C.CMDQ_ALLOC_MAP,
    ]),
    vintf: new RegisterLayout('tegra241-cmdqv-vintf', C.VINTF_BLOCK_STRIDE, [
      C.VINTF_CONFIG, C.VINTF_STATUS, C.VINTF_SID_MATCH, C.VINTF_SID_REPLACE, C.VINTF_LVCMDQ_ERR_MAP_64,
    ]),
    page0: new RegisterLayout('tegra241-vcmdq-page0', C.VCMDQ_SLOT, [
      C.VCMDQ_CONS, C.VCMDQ_PROD, C.VCMDQ_CONFIG, C.VCMDQ_STATUS, C.VCMDQ_GERROR, C.VCMDQ_GERRORN,
    ]),
    page1: new RegisterLayout('tegra241-vcmdq-page1', C.VCMDQ_SLOT, [C.VCMDQ_BASE, C.VCMDQ_CONS_INDX_BASE]),
  };
  return layouts;
}

/** Word slots of a bitmap spread over registers (a 64-bit register contributes two words). */
function wordSlots(regs: readonly RegisterInfo[]): number[] {
  return regs.flatMap((r) => (r.width === 64 ? [r.slot, r.slot + 1] : [r.slot]));
}

/**
 * Architectural state of the silicon: the words of every register file (held, not copied, by
 * the live banks) and the logical-queue decode that CMDQ_ALLOC_MAP writes build up.
 */
export interface CmdqvHwState {
  readonly global: Uint32Array;
  readonly vintfs: readonly Uint32Array[];
  readonly page0: readonly Uint32Array[];
  readonly page1: readonly Uint32Array[];
  /** (vintf · 128 + lvcmdq) → global VCMDQ, or -1. */
  readonly logical: Int32Array;
}

/** Counters of the silicon's work. */
export interface CmdqvStats {
  /** Commands consumed from VCMDQs (executed or stopped on). */
  commands: number;
  /** Guest commands whose VMID was overwritten. */
  vmidReplaced: number;
  /** ATC_INV commands whose StreamID was replaced. */
  sidReplaced: number;
  /** Commands refused by the guest filter or SID table. */
  refused: number;
  /** Error interrupts raised. */
  irqs: number;
}

/** The state of one queue walk shared by the consume loop and its per-run loop. */
interface RunState {
  /** The queue's VINTF is guest-owned (HYP_OWN = 0): guest rules apply. */
  guestOwned: boolean;
  /** The VINTF's VMID, forced into guest TLBIs. */
  vmid: number;
  /** The VINTF's register file (SID_MATCH / SID_REPLACE). */
  vintf: RegisterFile | undefined;
  /** Executed commands are traced (T_HOST_CMD). */
  trace: boolean;
  /** Commands the SMMU executed, and guest TLBIs whose VMID was forced, in this walk. */
  executed: number;
  vmidReplaced: number;
  /** The CERROR the walk stopped with (0: none). */
  error: number;
}

/** The CMDQV hardware model attached to one host SMMU. */
export class Tegra241CmdqvHw implements Persist<CmdqvHwState> {
  readonly numVcmdqs: number;
  readonly numVintfs: number;
  readonly sidsPerVintf: number;
  readonly mmio: MemoryRegion;
  readonly global: RegisterBank;
  readonly vintfs: RegisterBank[] = [];
  readonly page0: RegisterBank[] = [];
  readonly page1: RegisterBank[] = [];
  readonly stats: CmdqvStats = { commands: 0, vmidReplaced: 0, sidReplaced: 0, refused: 0, irqs: 0 };
  /** Error interrupt line (edge) to the host kernel. */
  onErrorIrq: () => void = () => {};
  /** Told once per batch a VCMDQ consumed (queue = VCMDQ index; modelled time, trace); none by default. */
  observer: QueueObserver | undefined;

  private readonly state: CmdqvHwState;
  /** One command, read from a ring (reused: no allocation per command). */
  private readonly cmd = new Uint32Array(4);
  /** The walk in progress: what {@link executeRun} needs of it, and what it counted. */
  private readonly walk: RunState = { guestOwned: false, vmid: 0, vintf: undefined, trace: false, executed: 0, vmidReplaced: 0, error: 0 };
  private readonly reader: CommandReader;
  /** Register instances of the global block, looked up once. */
  private readonly globalRegs;
  /** Register instances of a VINTF block. */
  private readonly vintfRegs;
  /** Register instances of a VCMDQ's page0 and page1. */
  private readonly vcmdqRegs;
  /** End of the VINTF register blocks in the config page. */
  private readonly vintfBlocksEnd: number;
  /** Word slots of the registers a PROD write reads (the same in every bank of a layout). */
  private readonly slots: {
    readonly status: number;
    readonly alloc: Int32Array;
    readonly vintfStatus: number;
    readonly vintfConfig: number;
    readonly prod: number;
    readonly cons: number;
    readonly qStatus: number;
    readonly gerror: number;
    readonly gerrorn: number;
    readonly base: number;
  };

  constructor(
    readonly config: CmdqvConfig,
    readonly smmu: HostSmmu,
    phys: PhysicalMemory,
    private readonly log: ModelLog,
    private readonly tracer: Tracer,
  ) {
    this.numVcmdqs = 2 ** config.log2Vcmdqs;
    this.numVintfs = 2 ** config.log2Vintfs;
    this.sidsPerVintf = 2 ** config.log2SidsPerVintf;
    this.vintfBlocksEnd = C.vintfBlockOffset(this.numVintfs);
    this.reader = new CommandReader(phys.mem);
    const L = cmdqvLayouts();
    this.global = new RegisterBank(SRC, L.global, log);
    for (let i = 0; i < this.numVintfs; i++) this.vintfs.push(new RegisterBank(`${SRC} vintf${i}`, L.vintf, log));
    for (let i = 0; i < this.numVcmdqs; i++) {
      this.page0.push(new RegisterBank(`${SRC} vcmdq${i}`, L.page0, log));
      this.page1.push(new RegisterBank(`${SRC} vcmdq${i}`, L.page1, log));
    }
    this.state = {
      global: this.global.file.words,
      vintfs: this.vintfs.map((bank) => bank.file.words),
      page0: this.page0.map((bank) => bank.file.words),
      page1: this.page1.map((bank) => bank.file.words),
      logical: new Int32Array(this.numVintfs * MAX_LVCMDQ).fill(NO_QUEUE),
    };
    this.globalRegs = {
      config: L.global.of(C.CONFIG),
      param: L.global.of(C.PARAM),
      status: L.global.of(C.STATUS),
      alloc: L.global.instancesOf(C.CMDQ_ALLOC_MAP),
      viErr: wordSlots(L.global.instancesOf(C.VI_ERR_MAP)),
      viMask: wordSlots(L.global.instancesOf(C.VI_INT_MASK)),
      cmdqErr: wordSlots(L.global.instancesOf(C.CMDQ_ERR_MAP)),
    };
    this.vintfRegs = {
      config: L.vintf.of(C.VINTF_CONFIG),
      status: L.vintf.of(C.VINTF_STATUS),
      match: L.vintf.instancesOf(C.VINTF_SID_MATCH),
      replace: L.vintf.instancesOf(C.VINTF_SID_REPLACE),
      err: wordSlots(L.vintf.instancesOf(C.VINTF_LVCMDQ_ERR_MAP_64)),
    };
    this.vcmdqRegs = {
      cons: L.page0.of(C.VCMDQ_CONS),
      prod: L.page0.of(C.VCMDQ_PROD),
      config: L.page0.of(C.VCMDQ_CONFIG),
      status: L.page0.of(C.VCMDQ_STATUS),
      gerror: L.page0.of(C.VCMDQ_GERROR),
      gerrorn: L.page0.of(C.VCMDQ_GERRORN),
      base: L.page1.of(C.VCMDQ_BASE),
    };
    this.slots = {
      status: this.globalRegs.status.slot,
      alloc: Int32Array.from(this.globalRegs.alloc, (r) => r.slot),
      vintfStatus: this.vintfRegs.status.slot,
      vintfConfig: this.vintfRegs.config.slot,
      prod: this.vcmdqRegs.prod.slot,
      cons: this.vcmdqRegs.cons.slot,
      qStatus: this.vcmdqRegs.status.slot,
      gerror: this.vcmdqRegs.gerror.slot,
      gerrorn: this.vcmdqRegs.gerrorn.slot,
      base: this.vcmdqRegs.base.slot,
    };
    this.wireHooks();
    this.reset();
    this.mmio = MemoryRegion.mmio('tegra241-cmdqv', C.cmdqvApertureSize(this.numVintfs), this);
  }

  /** Power-on reset of every register. */
  reset(): void {
    this.global.reset();
    this.global.file.set32(this.globalRegs.param, C.paramValue(this.config));
    for (const bank of this.vintfs) bank.reset();
    for (const bank of this.page0) bank.reset();
    for (const bank of this.page1) bank.reset();
    this.state.logical.fill(NO_QUEUE);
  }

  /** A copy of every register and of the logical-queue decode. */
  save(): CmdqvHwState {
    return cloneState(this.state);
  }

  /** Load a state saved from silicon of the same configuration. */
  restore(saved: CmdqvHwState): void {
    const state = this.state;
    state.global.set(saved.global);
    saved.vintfs.forEach((words, i) => state.vintfs[i]!.set(words));
    saved.page0.forEach((words, i) => state.page0[i]!.set(words));
    saved.page1.forEach((words, i) => state.page1[i]!.set(words));
    state.logical.set(saved.logical);
  }

  /**
   * Set VCMDQ q's page0 registers to `page0` (the words of its page0 layout) without running
   * anything, and its bits in the error maps (LVCMDQ `lvcmdq` of VINTF `vintf`) to whether it
   * is in error: a restored queue reads exactly as it was saved.
   */
  loadQueueState(q: number, vintf: number, lvcmdq: number, page0: Uint32Array): void {
    const words = this.state.page0[q]!;
    words.set(page0.subarray(0, words.length));
    const r = this.vcmdqRegs;
    const inError = ((words[r.gerror.slot]! ^ words[r.gerrorn.slot]!) & GERROR_CMDQ_ERR) !== 0;
    const setBit = (file: RegisterFile, slots: readonly number[], bit: number) => {
      const slot = slots[bit >>> 5]!;
      const mask = 1 << (bit & 31);
      file.words[slot] = inError ? (file.words[slot]! | mask) >>> 0 : (file.words[slot]! & ~mask) >>> 0;
    };
    setBit(this.vintfs[vintf]!.file, this.vintfRegs.err, lvcmdq);
    setBit(this.global.file, this.globalRegs.cmdqErr, q);
    if (inError) setBit(this.global.file, this.globalRegs.viErr, vintf);
  }

  private wireHooks(): void {
    this.global.onWrite(C.CONFIG, () => {
      const enabled = C.CONFIG.f.CMDQV_EN.get(this.global.file.get32(this.globalRegs.config));
      this.global.file.setField(this.globalRegs.status, C.STATUS.f.CMDQV_ENABLED, enabled);
      if (enabled) for (let q = 0; q < this.numVcmdqs; q++) this.consume(q);
    });
    this.global.onWrite(C.CMDQ_ALLOC_MAP, (reg, prev) => this.remap(reg.instance, prev));
    this.vintfs.forEach((bank, vintf) => {
      bank.onWrite(C.VINTF_CONFIG, () => {
        const enabled = C.VINTF_CONFIG.f.ENABLE.get(bank.file.get32(this.vintfRegs.config));
        bank.file.setField(this.vintfRegs.status, C.VINTF_STATUS.f.ENABLE_OK, enabled);
        if (enabled) for (let l = 0; l < MAX_LVCMDQ; l++) this.consumeLogical(vintf, l);
      });
    });
    this.page0.forEach((bank, q) => {
      bank.onWrite(C.VCMDQ_CONFIG, () => {
        const enabled = C.VCMDQ_CONFIG.f.CMDQ_EN.get(bank.file.get32(this.vcmdqRegs.config));
        bank.file.setField(this.vcmdqRegs.status, C.VCMDQ_STATUS.f.CMDQ_EN_OK, enabled);
        if (enabled) this.consume(q);
      });
      bank.onWrite(C.VCMDQ_PROD, () => this.consume(q));
      bank.onWrite(C.VCMDQ_GERRORN, () => this.acknowledge(q));
    });
  }

  /** CMDQ_ALLOC_MAP_q changed: update the logical-queue decode of the VINTF apertures. */
  private remap(q: number, prev: number): void {
    const now = this.global.file.get32(this.globalRegs.alloc[q]!);
    const F = C.CMDQ_ALLOC_MAP.f;
    const logical = this.state.logical;
    if (F.ALLOC.get(prev)) {
      const key = F.VIRT_INTF_INDX.get(prev) * MAX_LVCMDQ + F.LVCMDQ.get(prev);
      if (logical[key] === q) logical[key] = NO_QUEUE;
    }
    if (F.ALLOC.get(now) && q < this.numVcmdqs) {
      const vintf = F.VIRT_INTF_INDX.get(now);
      if (vintf >= this.numVintfs) {
        this.log.guestError(SRC, `CMDQ_ALLOC_MAP_${q}: VINTF ${vintf} does not exist`);
        return;
      }
      logical[vintf * MAX_LVCMDQ + F.LVCMDQ.get(now)] = q;
    }
  }

  /** Global VCMDQ mapped as logical queue `lvcmdq` of VINTF `vintf`, or -1. */
  globalQueue(vintf: number, lvcmdq: number): number {
    return vintf < this.numVintfs && lvcmdq < MAX_LVCMDQ ? this.state.logical[vintf * MAX_LVCMDQ + lvcmdq]! : NO_QUEUE;
  }

  private consumeLogical(vintf: number, lvcmdq: number): void {
    const q = this.globalQueue(vintf, lvcmdq);
    if (q !== NO_QUEUE) this.consume(q);
  }

  /** Whether queue q may run: CMDQV, its VINTF and the queue enabled, mapped, no active error. */
  private runnable(q: number): number {
    const st = this.state;
    const sl = this.slots;
    const g = st.global;
    if ((g[sl.status]! & STATUS_ENABLED) === 0) return -1;
    const alloc = g[sl.alloc[q]!]!;
    if ((alloc & ALLOC_BIT) === 0) return -1;
    const vintf = (alloc >>> VINTF_INDX_SHIFT) & VINTF_INDX_MAX;
    if (vintf >= this.numVintfs || (st.vintfs[vintf]![sl.vintfStatus]! & VINTF_ENABLE_OK) === 0) return -1;
    const p0 = st.page0[q]!;
    if ((p0[sl.qStatus]! & VCMDQ_EN_OK) === 0) return -1;
    if ((p0[sl.gerror]! ^ p0[sl.gerrorn]!) & GERROR_CMDQ_ERR) return -1;
    return vintf;
  }

  /** Consume queue q until empty or stopped (hot path: no allocation per command). */
  consume(q: number): void {
    const vintf = this.runnable(q);
    if (vintf < 0) return;
    const st = this.state;
    const sl = this.slots;
    const p0 = st.page0[q]!;
    const p1 = st.page1[q]!;
    const baseLo = p1[sl.base]!;
    const baseHi = p1[sl.base + 1]!;
    const log2 = Math.min(BASE_LOG2SIZE.getWords(baseLo, baseHi), 19);
    const ring = BASE_ADDR.addressWords(baseLo, baseHi);
    const vf = this.vintfs[vintf]!.file;
    const vintfConfig = st.vintfs[vintf]![sl.vintfConfig]!;
    const guestOwned = (vintfConfig & VINTF_HYP_OWN) === 0;
    const vmid = (vintfConfig >>> VINTF_VMID_SHIFT) & VINTF_VMID_MAX;
    const prod = p0[sl.prod]! & PROD_WR_MASK;
    const consReg = p0[sl.cons]!;
    const wrapMask = qWrapMask(log2);
    const idxMask = qIndexMask(log2);
    const end = prod & wrapMask;
    let cons = consReg & wrapMask;
    const w = this.cmd;
    let n = 0;
    const reader = this.reader;
    const smmu = this.smmu;
    const entries = idxMask + 1;
    const syncs0 = smmu.stats.syncs;
    const walk = this.walk;
    walk.guestOwned = guestOwned;
    walk.vmid = vmid;
    walk.vintf = vf;
    walk.trace = smmu.tracesCommands;
    walk.executed = 0;
    walk.vmidReplaced = 0;
    walk.error = 0;
    // The reader's window from the last walk stays valid while no memory chunk is replaced (it
    // checks SparseMemory.generation), so a ring walked again and again maps its chunk once.
    while (cons !== end) {
      // One run: the commands up to PROD, the ring's end or the end of the mapped memory,
      // whichever comes first (bounds and wrap worked out once per run, not per command).
      const run = reader.nextRun(ring, cons, end, entries, wrapMask, w);
      if (run === 0) {
        walk.error = CERROR_ABT;
        this.stopConsuming(q, vintf, cons, n + 1, syncs0);
        return;
      }
      const done = this.executeRun(reader.words, reader.at, run);
      if (done < run) {
        this.stopConsuming(q, vintf, (cons + done) & wrapMask, n + done + 1, syncs0);
        return;
      }
      n += run;
      cons = (cons + run) & wrapMask;
    }
    smmu.stats.commands += walk.executed;
    this.stats.vmidReplaced += walk.vmidReplaced;
    this.stats.commands += n;
    if (n > 0) this.observer?.consumed(q, n, smmu.stats.syncs - syncs0);
    p0[sl.cons] = ((consReg & CONS_ERR_MASK) | cons) >>> 0;
    if (n > 0 && this.tracer.enabled(T_HW_CONSUME)) this.tracer.emit(T_HW_CONSUME, q, n, cons);
  }

  /**
   * Run `run` commands from `words[at..]` (one run: consecutive slots in one mapped stretch):
   * the guest-owned VINTF rules, then the SMMU. Returns how many ran before one failed (its
   * CERROR in `walk.error`), or `run`. A method of its own, called once per run, so that V8
   * optimises it from complete feedback rather than on-stack part way through a long ring.
   */
  private executeRun(words: Uint32Array, at: number, run: number): number {
    const walk = this.walk;
    const w = this.cmd;
    const smmu = this.smmu;
    // Loop constants in locals (module-level bindings are slower to reach in the loop).
    const guestAction = GUEST_ACTION;
    const opcodeMask = OPCODE_MASK;
    const keepNonVmid = ~VMID_W1_MASK;
    const guestOwned = walk.guestOwned;
    const vmid = walk.vmid;
    const trace = walk.trace;
    let executed = 0;
    let vmidReplaced = 0;
    let k = 0;
    for (let i = at; k < run; k++, i += 4) {
      // Read as int32 (`| 0`): a word with bit 31 set (ASID >= 0x8000) would otherwise change
      // the loop's number representation, and V8 deoptimise it, part way through a ring.
      const w0 = words[i]! | 0;
      let w1 = words[i + 1]! | 0;
      let err = 0;
      let action = GUEST_RUN;
      if (guestOwned) {
        // The guest-owned VINTF rules, inlined for the common TLBI case.
        action = guestAction[w0 & opcodeMask]!;
        if (action === GUEST_FORCE_VMID) {
          w1 = (w1 & keepNonVmid) | vmid;
          vmidReplaced++;
        }
      }
      w[0] = w0;
      w[1] = w1;
      w[2] = words[i + 2]!;
      w[3] = words[i + 3]!;
      if (action !== GUEST_RUN && action !== GUEST_FORCE_VMID) err = this.filterGuestCommand(walk.vintf!, w, action);
      if (err === 0) {
        err = smmu.execute(w, 0);
        executed++;
        if (trace) smmu.traceCommand('vcmdq', w, 0, err);
      }
      if (err !== 0) {
        walk.error = err;
        break;
      }
    }
    walk.executed += executed;
    walk.vmidReplaced += vmidReplaced;
    return k;
  }

  /**
   * The consume loop stopped on command `cons` (`n` commands consumed with it) with the CERROR
   * in `walk.error`: account for the batch and stop the queue.
   */
  private stopConsuming(q: number, vintf: number, cons: number, n: number, syncs0: number): void {
    const walk = this.walk;
    this.smmu.stats.commands += walk.executed;
    this.stats.commands += n;
    this.stats.vmidReplaced += walk.vmidReplaced;
    this.observer?.consumed(q, n, this.smmu.stats.syncs - syncs0);
    this.stop(q, vintf, cons, walk.error, this.cmd[0]! & OPCODE_MASK);
  }

  /**
   * The guest-owned VINTF rules for the commands the consume loop does not inline (`action`
   * from the opcode table): ATC_INV gets its StreamID replaced through SID_MATCH/SID_REPLACE;
   * anything else is refused. Returns a CERROR code, 0 if the command may run.
   */
  private filterGuestCommand(vf: RegisterFile, w: Uint32Array, action: number): number {
    if (action === GUEST_REPLACE_SID) {
      const vsid = D0.SID.getWords(w[0]!, w[1]!);
      const ENABLE = C.VINTF_SID_MATCH.f.ENABLE;
      const VIRT_SID = C.VINTF_SID_MATCH.f.VIRT_SID;
      for (let s = 0; s < this.sidsPerVintf; s++) {
        const match = vf.get32(this.vintfRegs.match[s]!);
        if (ENABLE.get(match) && VIRT_SID.get(match) === vsid) {
          D0.SID.setWords(w, 0, vf.get32(this.vintfRegs.replace[s]!));
          this.stats.sidReplaced++;
          return 0;
        }
      }
      // No SID_MATCH hit: the guest names a device it does not own.
    }
    this.stats.refused++;
    return CERROR_ILL;
  }

  /** Stop queue q at `cons` with a CERROR and report it through the error maps and the IRQ. */
  private stop(q: number, vintf: number, cons: number, err: number, op: number): void {
    const regs = this.vcmdqRegs;
    const p0 = this.page0[q]!.file;
    p0.set32(regs.cons, C.VCMDQ_CONS.f.ERR.set(cons, err));
    p0.set32(regs.gerror, (p0.get32(regs.gerror) ^ GERROR_CMDQ_ERR) >>> 0);
    const lvcmdq = C.CMDQ_ALLOC_MAP.f.LVCMDQ.get(this.global.file.get32(this.globalRegs.alloc[q]!));
    this.setBit(this.global.file, this.globalRegs.cmdqErr, q, true);
    const vf = this.vintfs[vintf]!.file;
    this.setBit(vf, this.vintfRegs.err, lvcmdq, true);
    vf.setField(this.vintfRegs.status, C.VINTF_STATUS.f.STATUS, 1);
    this.setBit(this.global.file, this.globalRegs.viErr, vintf, true);
    this.tracer.emit(T_HW_QUEUE_ERROR, q, vintf, lvcmdq, cons, err, opName(op));
    const masked = this.bitOf(this.global.file, this.globalRegs.viMask, vintf);
    if (!masked) {
      this.stats.irqs++;
      this.onErrorIrq();
    }
  }

  /** GERRORN written: once it matches GERROR the queue's error is cleared and it resumes. */
  private acknowledge(q: number): void {
    const p0 = this.page0[q]!.file;
    if ((p0.get32(this.vcmdqRegs.gerror) ^ p0.get32(this.vcmdqRegs.gerrorn)) & GERROR_CMDQ_ERR) return;
    const alloc = this.global.file.get32(this.globalRegs.alloc[q]!);
    const vintf = C.CMDQ_ALLOC_MAP.f.VIRT_INTF_INDX.get(alloc);
    const lvcmdq = C.CMDQ_ALLOC_MAP.f.LVCMDQ.get(alloc);
    this.setBit(this.global.file, this.globalRegs.cmdqErr, q, false);
    if (vintf < this.numVintfs) {
      const vf = this.vintfs[vintf]!.file;
      this.setBit(vf, this.vintfRegs.err, lvcmdq, false);
      if (this.vintfRegs.err.every((slot) => vf.words[slot] === 0)) {
        vf.setField(this.vintfRegs.status, C.VINTF_STATUS.f.STATUS, 0);
        this.setBit(this.global.file, this.globalRegs.viErr, vintf, false);
      }
    }
    this.consume(q);
  }

  /** Set or clear bit `bit` of a bitmap held in the word slots `slots` (LSB word first). */
  private setBit(file: RegisterFile, slots: readonly number[], bit: number, on: boolean): void {
    const slot = slots[bit >>> 5]!;
    const mask = (1 << (bit & 31)) >>> 0;
    file.words[slot] = on ? file.words[slot]! | mask : file.words[slot]! & ~mask;
  }

  private bitOf(file: RegisterFile, slots: readonly number[], bit: number): boolean {
    return ((file.words[slots[bit >>> 5]!]! >>> (bit & 31)) & 1) === 1;
  }

  // ------------------------------------------------------------------------------------------
  // Aperture decode (RegionOps)

  /** Offset inside the bank returned by the last {@link decode} (no allocation per access). */
  private inner = 0;

  /** Resolve an aperture offset to a register bank, leaving the offset inside it in `inner`. */
  private decode(off: number): RegisterBank | undefined {
    if (off < C.VINTF_BLOCK) {
      this.inner = off;
      return this.global;
    }
    if (off < this.vintfBlocksEnd) {
      const rel = off - C.VINTF_BLOCK;
      this.inner = rel & VINTF_BLOCK_MASK;
      return this.vintfs[rel >>> VINTF_BLOCK_SHIFT];
    }
    if (off >= C.CMDQV_VCMDQ_PAGE0 && off < C.CMDQV_VINTF_PAGES) {
      const page1 = off >= C.CMDQV_VCMDQ_PAGE1;
      const rel = off - (page1 ? C.CMDQV_VCMDQ_PAGE1 : C.CMDQV_VCMDQ_PAGE0);
      const q = rel >>> SLOT_SHIFT;
      if (q >= this.numVcmdqs) return undefined;
      this.inner = rel & SLOT_MASK;
      return (page1 ? this.page1 : this.page0)[q];
    }
    if (off >= C.CMDQV_VINTF_PAGES) {
      const rel = off - C.CMDQV_VINTF_PAGES;
      const vintf = Math.floor(rel / C.CMDQV_VINTF_STRIDE);
      const inPair = rel - vintf * C.CMDQV_VINTF_STRIDE;
      const page1 = inPair >= C.CMDQV_PAGE_SIZE;
      const inPage = page1 ? inPair - C.CMDQV_PAGE_SIZE : inPair;
      const q = this.globalQueue(vintf, inPage >>> SLOT_SHIFT);
      if (q === NO_QUEUE) return undefined;
      this.inner = inPage & SLOT_MASK;
      return (page1 ? this.page1 : this.page0)[q];
    }
    return undefined;
  }

  read(offset: number, size: 1 | 2 | 4): number {
    const bank = this.decode(offset);
    return bank ? bank.read(this.inner, size) : 0;
  }

  write(offset: number, size: 1 | 2 | 4, value: number): void {
    const bank = this.decode(offset);
    if (bank) bank.write(this.inner, size, value);
    else this.log.guestError(SRC, `write to unmapped offset 0x${offset.toString(16)} dropped`);
  }

  read64(offset: number): bigint {
    const bank = this.decode(offset);
    return bank ? bank.read64(this.inner) : 0n;
  }

  write64(offset: number, value: bigint): void {
    const bank = this.decode(offset);
    if (bank) bank.write64(this.inner, value);
    else this.log.guestError(SRC, `64-bit write to unmapped offset 0x${offset.toString(16)} dropped`);
  }

  /**
   * A read of VINTF `vintf`'s page0 (at `base` in the aperture) at `o`: the logical queue's
   * bank found straight from the slot, as {@link decode} finds it (the guest's PROD/CONS
   * accesses, once or twice per command batch); anything else through the full decode.
   */
  private readVintfPage0(vintf: number, base: number, o: number, size: 1 | 2 | 4): number {
    if (o >= 0 && o < PAGE_SIZE) {
      const q = this.globalQueue(vintf, o >>> SLOT_SHIFT);
      if (q !== NO_QUEUE) return this.page0[q]!.read(o & SLOT_MASK, size);
    }
    return this.read(base + o, size);
  }

  /** A write of VINTF `vintf`'s page0 at `o`, decoded as {@link readVintfPage0} does. */
  private writeVintfPage0(vintf: number, base: number, o: number, size: 1 | 2 | 4, value: number): void {
    if (o >= 0 && o < PAGE_SIZE) {
      const q = this.globalQueue(vintf, o >>> SLOT_SHIFT);
      if (q !== NO_QUEUE) {
        this.page0[q]!.write(o & SLOT_MASK, size, value);
        return;
      }
    }
    this.write(base + o, size, value);
  }

  /** Offset of VINTF `vintf`'s page0 in the aperture (what the kernel exports through mmap). */
  vintfPage0Offset(vintf: number): number {
    return C.vintfPage0Offset(vintf);
  }

  /** Ops of VINTF `vintf`'s page0 alone, for a user mapping of that page. */
  vintfPage0Ops(vintf: number): RegionOps {
    const base = this.vintfPage0Offset(vintf);
    return {
      read: (o, s) => this.readVintfPage0(vintf, base, o, s),
      write: (o, s, v) => this.writeVintfPage0(vintf, base, o, s, v),
      read64: (o) => this.read64(base + o),
      write64: (o, v) => this.write64(base + o, v),
    };
  }
}
