/**
 * The guest's arm-smmu-v3 driver model: resets and enables the (emulated) SMMU as Linux does —
 * stream table, command queue and event queue in guest RAM, interrupts, SMMUEN — installs
 * STEs, submits commands on its command queue with CMD_SYNC and CONS polling, skips a command
 * that raised a CERROR, and drains the event queue. A CMDQV (if found) provides extra queues
 * for the commands it accepts (see {@link GuestCmdqv}).
 */

import { buildCommand, CERROR_ATC_INV_SYNC, CERROR_ILL, Op, SYNC_CS_SEV } from '../arch/smmuv3/commands.js';
import { qAdvance, qEmpty, qIndex } from '../arch/smmuv3/queue.js';
import { STE_BYTES } from '../arch/smmuv3/structures.js';
import { GuestCommandQueue, type GuestCommandQueueState } from './command-queue.js';
import * as R from '../arch/smmuv3/registers.js';
import { GuestAllocator, pollTimeout, type GuestPlatform } from './platform.js';

/** The driver's cap on its command queue (log2 entries). */
const CMDQ_MAX_LOG2 = 10;
const EVTQ_LOG2 = 8;
/** Event records the driver keeps (the newest ones). */
const EVENT_LOG_DEPTH = 256;
/** CR0 values of the enable sequence: CMDQ first, then the event queue, then the SMMU. */
const CR0_CMDQ = R.CR0.f.CMDQEN.set(0, 1);
const CR0_QUEUES = R.CR0.f.EVENTQEN.set(CR0_CMDQ, 1);
const CR0_ALL = R.CR0.f.SMMUEN.set(CR0_QUEUES, 1);
/** IRQ_CTRL: global error and event queue interrupts. */
const IRQS = R.IRQ_CTRL.f.EVENTQ_IRQEN.set(R.IRQ_CTRL.f.GERROR_IRQEN.set(0, 1), 1);
/** Read-allocate hint of STRTAB_BASE / CMDQ_BASE. */
const STRTAB_RA = R.STRTAB_BASE.f.RA.setBig(0n, 1n);
const CMDQ_RA = R.CMDQ_BASE.f.RA.setBig(0n, 1n);

/** Counters of the guest driver's work. */
export interface GuestSmmuStats {
  commands: number;
  syncs: number;
  cerrorsSkipped: number;
  events: number;
}

/** The driver's state apart from guest RAM (see {@link GuestSmmu.save}). */
export interface GuestSmmuState {
  readonly idr1: number;
  readonly idr3: number;
  readonly strtab: number;
  readonly cmdq: number;
  readonly evtq: number;
  readonly queue: GuestCommandQueueState;
  readonly stats: GuestSmmuStats;
  readonly events: readonly Uint32Array[];
  readonly evtCons: number;
  readonly gerrorIrq: boolean;
}

/** One SMMU as the guest driver sees it. */
export class GuestSmmu {
  readonly sidBits: number;
  readonly cmdqLog2: number;
  readonly ril: boolean;
  /** Raw IDR1, for the CMDQV driver's queue sizing. */
  readonly idr1: number;
  /** Raw IDR3 as probed. */
  private readonly idr3: number;
  readonly stats: GuestSmmuStats = { commands: 0, syncs: 0, cerrorsSkipped: 0, events: 0 };
  /** The most recent event records drained from the event queue (8 words each; at most 256). */
  readonly events: Uint32Array[] = [];
  private readonly strtab: number;
  private readonly queue: GuestCommandQueue;
  private readonly evtq: number;
  private evtCons = 0;
  /** Whether {@link handleGerror} is wired to the SMMU's GERROR interrupt (as Linux does). */
  gerrorIrq = false;

  /**
   * Probe and enable the SMMU; with `saved`, take over a driver saved by {@link save} instead
   * (a restored VM: the SMMU is already programmed, nothing is written).
   */
  constructor(
    readonly platform: GuestPlatform,
    readonly base: number,
    readonly mem: GuestAllocator,
    readonly identifier: number,
    saved?: GuestSmmuState,
  ) {
    const b = platform.bus;
    this.idr1 = saved ? saved.idr1 : b.read32(base + R.IDR1.spec.offset);
    const idr3 = saved ? saved.idr3 : b.read32(base + R.IDR3.spec.offset);
    this.idr3 = idr3;
    this.sidBits = Math.min(R.IDR1.f.SIDSIZE.get(this.idr1), 16);
    this.cmdqLog2 = Math.min(R.IDR1.f.CMDQS.get(this.idr1), CMDQ_MAX_LOG2);
    this.ril = R.IDR3.f.RIL.get(idr3) === 1;
    // Disable, then build the structures.
    if (!saved) this.writeCr0(0);
    this.strtab = saved ? saved.strtab : mem.alloc(2 ** this.sidBits * STE_BYTES);
    const cmdq = saved ? saved.cmdq : mem.alloc(2 ** this.cmdqLog2 * 16);
    // Without a GERROR interrupt the poll loop stands in for the handler.
    this.queue = new GuestCommandQueue(b, platform.clock, cmdq, this.cmdqLog2, base + R.CMDQ_PROD.spec.offset, base + R.CMDQ_CONS.spec.offset, SYNC_CS_SEV, (cons) => {
      if (!this.gerrorIrq) this.handleCmdqError(cons);
    }, `SMMU ${identifier}`);
    this.evtq = saved ? saved.evtq : mem.alloc(2 ** EVTQ_LOG2 * 32);
    if (saved) {
      this.queue.restore(saved.queue);
      Object.assign(this.stats, saved.stats);
      for (const e of saved.events) this.events.push(e.slice());
      this.evtCons = saved.evtCons;
      this.gerrorIrq = saved.gerrorIrq;
      return;
    }
    b.write64(base + R.STRTAB_BASE.spec.offset, BigInt(this.strtab) | STRTAB_RA);
    b.write32(base + R.STRTAB_BASE_CFG.spec.offset, this.sidBits);
    b.write64(base + R.CMDQ_BASE.spec.offset, BigInt(cmdq) | BigInt(this.cmdqLog2) | CMDQ_RA);
    b.write32(base + R.CMDQ_PROD.spec.offset, 0);
    b.write32(base + R.CMDQ_CONS.spec.offset, 0);
    this.writeCr0(CR0_CMDQ);
    this.submit([buildCommand(Op.CFGI_STE_RANGE, { range: 31 }), buildCommand(Op.TLBI_NSNH_ALL)]);
    b.write64(base + R.EVENTQ_BASE.spec.offset, BigInt(this.evtq) | BigInt(EVTQ_LOG2));
    b.write32(base + R.EVENTQ_PROD.spec.offset, 0);
    b.write32(base + R.EVENTQ_CONS.spec.offset, 0);
    this.writeCr0(CR0_QUEUES);
    b.write32(base + R.IRQ_CTRL.spec.offset, IRQS);
    if (!pollTimeout(platform.clock, () => b.read32(base + R.IRQ_CTRLACK.spec.offset) === IRQS)) throw new Error('failed to enable irqs');
    this.writeCr0(CR0_ALL);
  }

  /** The driver's state (its structures are in guest RAM): what a snapshot of the guest keeps. */
  save(): GuestSmmuState {
    return {
      idr1: this.idr1,
      idr3: this.idr3,
      strtab: this.strtab,
      cmdq: this.queue.ring,
      evtq: this.evtq,
      queue: this.queue.save(),
      stats: { ...this.stats },
      events: this.events.map((e) => e.slice()),
      evtCons: this.evtCons,
      gerrorIrq: this.gerrorIrq,
    };
  }

  private writeCr0(v: number): void {
    const b = this.platform.bus;
    b.write32(this.base + R.CR0.spec.offset, v);
    if (!pollTimeout(this.platform.clock, () => b.read32(this.base + R.CR0ACK.spec.offset) === v)) {
      throw new Error(`SMMU ${this.identifier}: CR0 write of 0x${v.toString(16)} not acknowledged`);
    }
  }

  /** Write an STE (8 words) for `sid` and invalidate it. */
  writeSte(sid: number, ste: Uint32Array): void {
    const addr = this.strtab + sid * STE_BYTES;
    for (let i = 0; i < 16; i++) this.platform.bus.write32(addr + i * 4, i < 8 ? ste[i]! : 0);
    this.submit([buildCommand(Op.CFGI_STE, { sid, leaf: true })]);
  }

  /**
   * Submit commands on the SMMU command queue, then a CMD_SYNC, and wait for CONS to pass it.
   * On a CERROR the bad command is skipped (replaced with a CMD_SYNC) and GERRORN acknowledged.
   */
  submit(cmds: readonly Uint32Array[]): void {
    this.queue.submit(cmds);
    this.stats.commands = this.queue.commands;
    this.stats.syncs = this.queue.syncs;
  }

  /**
   * The GERROR interrupt handler (Linux's arm_smmu_gerror_handler, CMDQ_ERR part): skip the
   * bad command and acknowledge. Another error the resumed queue hits is a new interrupt.
   */
  handleGerror(): void {
    this.handleCmdqError(this.platform.bus.read32(this.base + R.CMDQ_CONS.spec.offset));
  }

  /** If CMDQ_ERR is active (GERROR differs from GERRORN), skip the command at CONS and acknowledge. */
  private handleCmdqError(cons: number): void {
    const b = this.platform.bus;
    const gerror = b.read32(this.base + R.GERROR.spec.offset);
    if (R.GERROR.f.CMDQ_ERR.get(gerror ^ b.read32(this.base + R.GERRORN.spec.offset))) this.skipError(cons, gerror);
  }

  /** Linux's skip-error routine on the main CMDQ. */
  private skipError(cons: number, gerror: number): void {
    const err = R.CMDQ_CONS.f.ERR.get(cons);
    if (err === CERROR_ILL || err > CERROR_ATC_INV_SYNC) {
      const at = this.queue.slot(cons);
      const sync = buildCommand(Op.SYNC, { cs: SYNC_CS_SEV });
      for (let i = 0; i < 4; i++) this.platform.bus.write32(at + i * 4, sync[i]!);
    }
    this.stats.cerrorsSkipped++;
    this.platform.bus.write32(this.base + R.GERRORN.spec.offset, gerror);
  }

  /** Event queue interrupt handler: drain records. */
  drainEvents(): number {
    const b = this.platform.bus;
    const prod = b.read32(this.base + R.EVENTQ_PROD.spec.offset);
    let n = 0;
    while (!qEmpty(R.EVENTQ_PROD.f.WR.get(prod), this.evtCons, EVTQ_LOG2)) {
      const at = this.evtq + qIndex(this.evtCons, EVTQ_LOG2) * 32;
      // The log keeps the last 256 records: once full, the oldest one's array takes the new record.
      const rec = this.events.length >= EVENT_LOG_DEPTH ? this.events.shift()! : new Uint32Array(8);
      for (let i = 0; i < 8; i++) rec[i] = b.read32(at + i * 4);
      this.events.push(rec);
      this.evtCons = qAdvance(this.evtCons, 1, EVTQ_LOG2);
      n++;
    }
    // Acknowledge an overflow by copying its flag.
    b.write32(this.base + R.EVENTQ_CONS.spec.offset, R.EVENTQ_CONS.f.OVACKFLG.set(this.evtCons, R.EVENTQ_PROD.f.OVFLG.get(prod)));
    this.stats.events += n;
    return n;
  }
}
