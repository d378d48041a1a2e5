/**
 * A guest command queue as the Linux driver drives it (SMMU CMDQ or a CMDQV VCMDQ): write the
 * commands and a CMD_SYNC into the ring, publish PROD, and poll CONS until it passes the sync.
 * Like Linux (arm_smmu_cmdq_issue_cmdlist), space is judged from the last CONS it read; the
 * hardware CONS is read again only when that says the queue is full
 * (arm_smmu_cmdq_poll_until_not_full), not once per command.
 */

import type { VirtualClock } from '../kit/clock.js';
import { buildCommand, Op } from '../arch/smmuv3/commands.js';
import { qAdvance, qEmpty, qIndex, qUsed } from '../arch/smmuv3/queue.js';
import { CMDQ_CONS } from '../arch/smmuv3/registers.js';
import type { GuestBus } from './platform.js';
import { pollTimeout } from './platform.js';

/** CONS.RD: the read index (with wrap bit) below the error field (same in SMMU CMDQ and VCMDQ CONS). */
const CONS_RD = CMDQ_CONS.f.RD;

/** What the driver keeps of a queue beyond the ring in guest RAM. */
export interface GuestCommandQueueState {
  readonly prod: number;
  readonly cons: number;
  readonly commands: number;
  readonly syncs: number;
}

/** One queue: its ring in guest RAM and its PROD/CONS registers. */
export class GuestCommandQueue {
  prod = 0;
  /** The last CONS read index seen (Linux's cached llq.cons). */
  private cons = 0;
  /** Commands written (including syncs). */
  commands = 0;
  /** CMD_SYNCs waited for. */
  syncs = 0;
  /** The CMD_SYNC that ends every batch (built once). */
  private readonly sync: Uint32Array;
  /** Entries the ring holds at most (one slot stays free), worked out once: `2 ** log2` per command is a pow call. */
  private readonly capacity: number;

  constructor(
    private readonly bus: GuestBus,
    private readonly clock: VirtualClock,
    readonly ring: number,
    readonly log2: number,
    private readonly prodReg: number,
    private readonly consReg: number,
    syncCs: number,
    /** Called with CONS on every poll that has not finished (the SMMU driver's error check). */
    private readonly onPoll: ((cons: number) => void) | undefined,
    private readonly what: string,
  ) {
    this.sync = buildCommand(Op.SYNC, { cs: syncCs });
    this.capacity = 2 ** log2 - 1;
  }

  /** The driver's view of the queue (its cached indexes and counters). */
  save(): GuestCommandQueueState {
    return { prod: this.prod, cons: this.cons, commands: this.commands, syncs: this.syncs };
  }

  /** Load a view saved by {@link save}. */
  restore(s: GuestCommandQueueState): void {
    this.prod = s.prod;
    this.cons = s.cons;
    this.commands = s.commands;
    this.syncs = s.syncs;
  }

  /** Forget the indexes (after the hardware queue was reset to 0/0). */
  resetIndexes(): void {
    this.prod = 0;
    this.cons = 0;
  }

  /** Address of slot `index`. */
  slot(index: number): number {
    return this.ring + qIndex(index, this.log2) * 16;
  }

  /** Write `cmds` and a CMD_SYNC, publish, and wait for completion. */
  submit(cmds: readonly Uint32Array[]): void {
    const b = this.bus;
    const sync = this.sync;
    const log2 = this.log2;
    const capacity = this.capacity;
    for (let k = 0; k <= cmds.length; k++) {
      const c = k < cmds.length ? cmds[k]! : sync;
      if (qUsed(this.prod, this.cons, log2) >= capacity) {
        this.cons = CONS_RD.get(b.read32(this.consReg));
        if (qUsed(this.prod, this.cons, log2) >= capacity) this.kick();
      }
      const at = this.slot(this.prod);
      b.write32(at, c[0]!);
      b.write32(at + 4, c[1]!);
      b.write32(at + 8, c[2]!);
      b.write32(at + 12, c[3]!);
      this.prod = qAdvance(this.prod, 1, log2);
      this.commands++;
    }
    this.syncs++;
    this.kick();
  }

  /** One poll of CONS: whether the queue has drained (made once, not per kick). */
  private readonly drained = (): boolean => {
    const cons = this.bus.read32(this.consReg);
    this.cons = CONS_RD.get(cons);
    if (qEmpty(this.prod, this.cons, this.log2)) return true;
    this.onPoll?.(cons);
    return false;
  };

  private kick(): void {
    const b = this.bus;
    b.write32(this.prodReg, this.prod);
    const done = pollTimeout(this.clock, this.drained);
    if (!done) throw new Error(`${this.what}: CMD_SYNC timeout (cons 0x${b.read32(this.consReg).toString(16)}, prod 0x${this.prod.toString(16)})`);
  }
}
