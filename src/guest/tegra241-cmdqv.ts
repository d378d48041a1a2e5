/**
 * The guest's tegra241-cmdqv driver model (Linux's, as it runs in a VM — docs/reference/tegra241-cmdqv.md
 * §4.2–4.9, the sequence replayed in docs/reference/qemu-accel-smmuv3.md §6): probe, device reset, VINTF0 init
 * (learning HYP_OWN = 0, so only TLBI_NH_ASID, TLBI_NH_VA and ATC_INV go to its queues), VCMDQ
 * rings sized by the SMMU's IDR1.CMDQS, LVCMDQs mapped only once the VINTF is enabled and torn
 * down with a flushing CMD_SYNC (§4.5, §4.10), command submission with CONS polling, and the
 * error interrupt handler that skips the bad command and acknowledges through GERRORN.
 */

import { buildCommand, CERROR_ILL, D0, Op, SYNC_CS_NONE } from '../arch/smmuv3/commands.js';
import { instanceOffset } from '../kit/registers.js';
import { GuestCommandQueue, type GuestCommandQueueState } from './command-queue.js';
import * as R from '../arch/smmuv3/registers.js';
import * as C from '../arch/tegra241-cmdqv/registers.js';
import type { GuestSmmu } from './arm-smmu-v3.js';
import { pollTimeout, type GuestPlatform } from './platform.js';

/** The driver's own ring cap (log2 entries), below the SMMU's IDR1.CMDQS cap. */
const VCMDQ_MAX_LOG2 = 12;
/**
 * Opcodes the driver routes to a guest-owned VCMDQ: the ones the VCMDQ executes, less CMD_SYNC,
 * which the queue adds itself after every batch.
 */
const GUEST_OPS: ReadonlySet<number> = new Set(C.GUEST_VCMDQ_OPCODES.filter((op) => op !== Op.SYNC));
/** The flushing batch: one CMD_SYNC (CS=NONE); the SMMU queue appends its own completion CMD_SYNC after it. */
const FLUSH_SYNC: readonly Uint32Array[] = [buildCommand(Op.SYNC, { cs: SYNC_CS_NONE })];
/** The guest sees one VINTF: VINTF0. */
const VINTF0 = 0;
/** VINTF0's bit in VI_ERR_MAP (bit v is VINTF v). */
const VINTF0_BIT = 1 << VINTF0;


interface Vcmdq {
  /** Logical queue index in VINTF0. */
  readonly lvcmdq: number;
  readonly queue: GuestCommandQueue;
  enabled: boolean;
}

/** Counters. */
export interface GuestCmdqvStats {
  commands: number;
  batches: number;
  errorsHandled: number;
  irqs: number;
}

/** The driver's state apart from guest RAM (see {@link GuestCmdqv.save}). */
export interface GuestCmdqvState {
  readonly param: number;
  readonly hypOwn: boolean;
  readonly stats: GuestCmdqvStats;
  readonly queues: readonly { readonly lvcmdq: number; readonly ring: number; readonly log2: number; readonly queue: GuestCommandQueueState; readonly enabled: boolean }[];
}

/** The guest's CMDQV. */
export class GuestCmdqv {
  readonly numVintfs: number;
  readonly numVcmdqs: number;
  readonly perVintf: number;
  /** SID_MATCH/SID_REPLACE pairs per VINTF (PARAM). */
  readonly numSidsPerVintf: number;
  /** Whether the VINTF stayed hypervisor-owned (false in a VM: HYP_OWN reads back 0). */
  hypOwn = false;
  readonly queues: Vcmdq[] = [];
  readonly stats: GuestCmdqvStats = { commands: 0, batches: 0, errorsHandled: 0, irqs: 0 };
  /** PARAM as probed. */
  private readonly param: number;

  /**
   * Probe and reset the CMDQV; with `saved`, take over a driver saved by {@link save} instead
   * (a restored VM: nothing is written).
   */
  constructor(
    readonly platform: GuestPlatform,
    readonly base: number,
    readonly smmu: GuestSmmu,
    readonly gsiv: number | undefined,
    saved?: GuestCmdqvState,
  ) {
    const param = saved ? saved.param : this.rd(C.PARAM.spec.offset);
    this.param = param;
    this.numVcmdqs = 2 ** C.PARAM.f.CMDQV_NUM_CMDQ_LOG2.get(param);
    this.numVintfs = 2 ** C.PARAM.f.CMDQV_NUM_VI_LOG2.get(param);
    this.perVintf = this.numVcmdqs / this.numVintfs;
    this.numSidsPerVintf = 2 ** C.PARAM.f.CMDQV_NUM_SID_PER_VI_LOG2.get(param);
    if (saved) {
      this.hypOwn = saved.hypOwn;
      Object.assign(this.stats, saved.stats);
      for (const q of saved.queues) {
        const queue = this.newQueue(q.lvcmdq, q.ring, q.log2);
        queue.restore(q.queue);
        this.queues.push({ lvcmdq: q.lvcmdq, queue, enabled: q.enabled });
      }
    } else {
      // Probe: make sure the CMDQV is enabled.
      this.writeConfig(C.CMDQV_ENABLE, C.CMDQV_ENABLE.enable.set(this.rd(C.CMDQV_ENABLE.config), 1));
      this.deviceReset();
    }
    if (gsiv !== undefined) {
      const line = platform.irq(gsiv);
      if (line) line.onRaise = () => this.isr();
    }
  }

  private rd(off: number): number {
    return this.platform.bus.read32(this.base + off);
  }
  private wr(off: number, v: number): void {
    this.platform.bus.write32(this.base + off, v);
  }

  /** Write an enable register and poll its status until it follows. */
  private writeConfig(reg: C.EnableHandshake, value: number): void {
    this.wr(reg.config, value);
    const on = reg.enable.get(value);
    if (!pollTimeout(this.platform.clock, () => reg.enabled.get(this.rd(reg.status)) === on)) {
      throw new Error(`tegra241-cmdqv: failed to ${on ? 'enable' : 'disable'} (0x${reg.config.toString(16)})`);
    }
  }

  private page0(lvcmdq: number): number {
    return C.lvcmdqPage0Offset(VINTF0, lvcmdq);
  }
  private page1(lvcmdq: number): number {
    return C.lvcmdqPage1Offset(VINTF0, lvcmdq);
  }

  /**
   * device_reset: CMDQV off and on, every global VCMDQ assigned to its (VINTF, LVCMDQ) slot but
   * left unmapped, then VINTF0 init with hyp_own = true (the VMM forces it to 0).
   */
  private deviceReset(): void {
    const cfg = this.rd(C.CMDQV_ENABLE.config);
    this.writeConfig(C.CMDQV_ENABLE, C.CMDQV_ENABLE.enable.set(cfg, 0));
    this.writeConfig(C.CMDQV_ENABLE, C.CMDQV_ENABLE.enable.set(cfg, 1));
    let q = 0;
    for (let vintf = 0; vintf < this.numVintfs; vintf++) {
      for (let l = 0; l < this.perVintf; l++) this.wr(C.allocMapOffset(q++), C.allocMapValue(vintf, l, false));
    }
    if (this.queues.length === 0) this.allocQueues();
    this.vintfInit();
  }

  /** The LVCMDQ rings: min(driver cap, SMMU IDR1.CMDQS), naturally aligned in guest RAM. */
  private allocQueues(): void {
    const log2 = Math.min(VCMDQ_MAX_LOG2, R.IDR1.f.CMDQS.get(this.smmu.idr1));
    for (let lvcmdq = 0; lvcmdq < this.perVintf; lvcmdq++) {
      const ring = this.smmu.mem.alloc(2 ** log2 * 16);
      this.queues.push({ lvcmdq, queue: this.newQueue(lvcmdq, ring, log2), enabled: false });
    }
  }

  /** The driver's queue object of LVCMDQ `lvcmdq` over `ring`. */
  private newQueue(lvcmdq: number, ring: number, log2: number): GuestCommandQueue {
    const p0 = this.base + this.page0(lvcmdq);
    return new GuestCommandQueue(this.platform.bus, this.platform.clock, ring, log2, p0 + C.VCMDQ_PROD.spec.offset, p0 + C.VCMDQ_CONS.spec.offset, SYNC_CS_NONE, undefined, `VCMDQ ${lvcmdq}`);
  }

  /** The driver's state apart from guest RAM: what a snapshot of the guest keeps. */
  save(): GuestCmdqvState {
    return {
      param: this.param,
      hypOwn: this.hypOwn,
      stats: { ...this.stats },
      queues: this.queues.map((q) => ({ lvcmdq: q.lvcmdq, ring: q.queue.ring, log2: q.queue.log2, queue: q.queue.save(), enabled: q.enabled })),
    };
  }

  /** VINTF0 init: reset it, enable it, then map and initialise its LVCMDQs in ascending order (the hardware requires it). */
  private vintfInit(): void {
    this.vintfDeinit();
    const vintf = C.vintfEnable(VINTF0);
    const hypOwn = C.VINTF_CONFIG.f.HYP_OWN.set(0, 1);
    this.wr(vintf.config, hypOwn);
    this.writeConfig(vintf, vintf.enable.set(hypOwn, 1));
    this.hypOwn = C.VINTF_CONFIG.f.HYP_OWN.get(this.rd(vintf.config)) === 1;
    for (const q of this.queues) {
      this.mapQueue(q, true);
      this.queueInit(q);
    }
  }

  /**
   * VINTF0 teardown: each LVCMDQ deinitialised and unmapped in descending order (the hardware
   * requires it), the VINTF disabled, and its SID_MATCH/SID_REPLACE pairs cleared.
   */
  private vintfDeinit(): void {
    for (let l = this.queues.length - 1; l >= 0; l--) {
      const q = this.queues[l]!;
      this.queueDeinit(q);
      this.mapQueue(q, false);
    }
    this.writeConfig(C.vintfEnable(VINTF0), 0);
    const block = C.vintfBlockOffset(VINTF0);
    for (let s = 0; s < this.numSidsPerVintf; s++) {
      this.wr(block + instanceOffset(C.VINTF_SID_MATCH, s), 0);
      this.wr(block + instanceOffset(C.VINTF_SID_REPLACE, s), 0);
    }
  }

  /** Set or clear CMDQ_ALLOC_MAP.ALLOC of a queue, keeping its (VINTF, LVCMDQ) assignment. */
  private mapQueue(q: Vcmdq, map: boolean): void {
    const off = C.allocMapOffset(VINTF0 * this.perVintf + q.lvcmdq);
    this.wr(off, C.CMDQ_ALLOC_MAP.f.ALLOC.set(this.rd(off), map ? 1 : 0));
  }

  /**
   * Disable a queue, then flush: a CMD_SYNC on the SMMU's own CMDQ makes an ATC_INV timeout the
   * queue left behind surface now rather than in the VM that gets the queue next.
   */
  private queueDeinit(q: Vcmdq): void {
    const p0 = this.page0(q.lvcmdq);
    const p1 = this.base + this.page1(q.lvcmdq);
    this.writeConfig(C.vcmdqEnable(p0), 0);
    this.smmu.submit(FLUSH_SYNC);
    this.wr(p0 + C.VCMDQ_PROD.spec.offset, 0);
    this.wr(p0 + C.VCMDQ_CONS.spec.offset, 0);
    this.platform.bus.write64(p1 + C.VCMDQ_BASE.spec.offset, 0n);
    this.platform.bus.write64(p1 + C.VCMDQ_CONS_INDX_BASE.spec.offset, 0n);
    const gerror = this.rd(p0 + C.VCMDQ_GERROR.spec.offset);
    if (this.rd(p0 + C.VCMDQ_GERRORN.spec.offset) !== gerror) this.wr(p0 + C.VCMDQ_GERRORN.spec.offset, gerror);
    q.queue.resetIndexes();
    q.enabled = false;
  }

  private queueInit(q: Vcmdq): void {
    this.queueDeinit(q);
    this.platform.bus.write64(this.base + this.page1(q.lvcmdq) + C.VCMDQ_BASE.spec.offset, C.vcmdqBaseValue(q.queue.ring, q.queue.log2));
    const enable = C.vcmdqEnable(this.page0(q.lvcmdq));
    this.writeConfig(enable, enable.enable.set(0, 1));
    q.enabled = true;
  }

  /** Driver removal (tegra241_cmdqv_remove): VINTF0 torn down; the queues stay allocated in guest RAM. */
  remove(): void {
    this.vintfDeinit();
  }

  /** Whether a command may go to a VCMDQ (the guest filter of a non-hyp-owned VINTF). */
  accepts(cmd: Uint32Array): boolean {
    return this.hypOwn || GUEST_OPS.has(D0.OPCODE.get(cmd[0]!));
  }

  /** Submit accepted commands on logical queue `lvcmdq` (the CPU's), then a CMD_SYNC (CS = NONE). */
  submit(cmds: readonly Uint32Array[], lvcmdq = 0): void {
    const q = this.queues[lvcmdq % this.queues.length]!;
    if (!q.enabled) throw new Error(`VCMDQ ${q.lvcmdq} not enabled`);
    q.queue.submit(cmds);
    this.stats.commands += cmds.length + 1;
    this.stats.batches++;
  }

  /** Error interrupt: for VINTF0's queues in error, skip the bad command and acknowledge. */
  isr(): void {
    this.stats.irqs++;
    const vintfErrors = this.rd(instanceOffset(C.VI_ERR_MAP, 0));
    if (!(vintfErrors & VINTF0_BIT)) return;
    const maps = C.VINTF_LVCMDQ_ERR_MAP_64.spec.repeat!.count;
    for (let m = 0; m < maps; m++) {
      const map = this.platform.bus.read64(this.base + C.vintfBlockOffset(VINTF0) + instanceOffset(C.VINTF_LVCMDQ_ERR_MAP_64, m));
      for (let bit = 0; bit < 64; bit++) {
        if (((map >> BigInt(bit)) & 1n) === 0n) continue;
        const lvcmdq = 64 * m + bit;
        const q = this.queues[lvcmdq];
        if (!q) continue;
        const p0 = this.page0(lvcmdq);
        const gerror = this.rd(p0 + C.VCMDQ_GERROR.spec.offset);
        if (C.VCMDQ_GERROR.f.CMDQ_ERR.get(gerror ^ this.rd(p0 + C.VCMDQ_GERRORN.spec.offset)) === 0) continue;
        const cons = this.rd(p0 + C.VCMDQ_CONS.spec.offset);
        const err = C.VCMDQ_CONS.f.ERR.get(cons);
        if (err === CERROR_ILL || err >= C.CERROR_ILL_ACCESS) {
          const at = q.queue.slot(cons);
          const sync = buildCommand(Op.SYNC, { cs: SYNC_CS_NONE });
          for (let i = 0; i < 4; i++) this.platform.bus.write32(at + i * 4, sync[i]!);
        }
        this.wr(p0 + C.VCMDQ_GERRORN.spec.offset, gerror);
        this.stats.errorsHandled++;
      }
    }
  }
}
