/**
 * The guest's tegra241-cmdqv driver model (Linux's, as it runs in a VM — spec linux-cmdqv.md
 * §2.2–2.9, the sequence replayed in qemu-cmdqv.md §3.8): probe, device reset, VINTF0 init
 * (learning HYP_OWN = 0, so only TLBI_NH_ASID, TLBI_NH_VA and ATC_INV go to its queues), VCMDQ
 * rings sized by the SMMU's IDR1.CMDQS, command submission with CONS polling, and the error
 * interrupt handler that skips the bad command and acknowledges through GERRORN.
 */

import { buildCommand, CERROR_ILL, Op, SYNC_CS_NONE } from '../arch/smmuv3/commands.js';
import { GuestCommandQueue } from './command-queue.js';
import * as R from '../arch/smmuv3/registers.js';
import * as C from '../arch/tegra241-cmdqv/registers.js';
import type { GuestSmmu } from './arm-smmu-v3.js';
import { pollTimeout, type GuestPlatform } from './platform.js';

/** The driver's own ring cap (log2 entries), below the SMMU's IDR1.CMDQS cap. */
const VCMDQ_MAX_LOG2 = 12;
/** Opcodes a guest-owned VCMDQ accepts (the driver's filter). */
const GUEST_OPS: ReadonlySet<number> = new Set([Op.TLBI_NH_ASID, Op.TLBI_NH_VA, Op.ATC_INV]);

interface Vcmdq {
  readonly l: number;
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

/** The guest's CMDQV. */
export class GuestCmdqv {
  readonly numVintfs: number;
  readonly numVcmdqs: number;
  readonly perVintf: number;
  /** Whether the VINTF stayed hypervisor-owned (false in a VM: HYP_OWN reads back 0). */
  hypOwn = false;
  readonly queues: Vcmdq[] = [];
  readonly stats: GuestCmdqvStats = { commands: 0, batches: 0, errorsHandled: 0, irqs: 0 };

  constructor(
    readonly p: GuestPlatform,
    readonly base: number,
    readonly smmu: GuestSmmu,
    readonly gsiv: number | undefined,
  ) {
    const param = this.rd(C.PARAM.spec.offset);
    this.numVcmdqs = 2 ** C.PARAM.f.CMDQV_NUM_CMDQ_LOG2.get(param);
    this.numVintfs = 2 ** C.PARAM.f.CMDQV_NUM_VI_LOG2.get(param);
    this.perVintf = this.numVcmdqs / this.numVintfs;
    // Probe: make sure the CMDQV is enabled.
    this.writeConfig(C.CONFIG.spec.offset, C.STATUS.spec.offset, this.rd(0) | 1);
    this.deviceReset();
    if (gsiv !== undefined) {
      const line = p.irq(gsiv);
      if (line) line.onRaise = () => this.isr();
    }
  }

  private rd(off: number): number {
    return this.p.bus.read32(this.base + off);
  }
  private wr(off: number, v: number): void {
    this.p.bus.write32(this.base + off, v);
  }

  private writeConfig(cfg: number, status: number, v: number): void {
    this.wr(cfg, v);
    if (!pollTimeout(this.p.clock, () => (this.rd(status) & 1) === (v & 1))) {
      throw new Error(`tegra241-cmdqv: failed to ${v & 1 ? 'enable' : 'disable'} (0x${cfg.toString(16)})`);
    }
  }

  private page0(l: number): number {
    return C.CMDQV_VINTF_PAGES + C.VCMDQ_SLOT * l;
  }
  private page1(l: number): number {
    return C.CMDQV_VINTF_PAGES + C.CMDQV_PAGE_SIZE + C.VCMDQ_SLOT * l;
  }

  /** device_reset, then VINTF0 init with hyp_own = true (the VMM forces it to 0). */
  private deviceReset(): void {
    const cfg = this.rd(C.CONFIG.spec.offset);
    this.writeConfig(C.CONFIG.spec.offset, C.STATUS.spec.offset, cfg & ~1);
    this.writeConfig(C.CONFIG.spec.offset, C.STATUS.spec.offset, cfg | 1);
    let q = 0;
    for (let vi = 0; vi < this.numVintfs; vi++) {
      for (let l = 0; l < this.perVintf; l++) this.wr(0x200 + 4 * q++, (vi << 15) | (l << 1) | 1);
    }
    // Rings: min(driver cap, SMMU IDR1.CMDQS), naturally aligned in guest RAM.
    const log2 = Math.min(VCMDQ_MAX_LOG2, R.IDR1.f.CMDQS.get(this.smmu.idr1));
    for (let l = 0; l < this.perVintf; l++) {
      const p0 = this.base + this.page0(l);
      const queue = new GuestCommandQueue(this.p.bus, this.p.clock, this.smmu.mem.alloc(2 ** log2 * 16), log2, p0 + 0x4, p0, SYNC_CS_NONE, undefined, `VCMDQ ${l}`);
      this.queues.push({ l, queue, enabled: false });
    }
    this.vintfDeinit();
    this.wr(C.VINTF_BLOCK, 1 << 17);
    this.writeConfig(C.VINTF_BLOCK, C.VINTF_BLOCK + 4, (1 << 17) | 1);
    this.hypOwn = ((this.rd(C.VINTF_BLOCK) >>> 17) & 1) === 1;
    for (const q of this.queues) this.queueInit(q);
  }

  private vintfDeinit(): void {
    for (const q of this.queues) this.queueDeinit(q);
    this.writeConfig(C.VINTF_BLOCK, C.VINTF_BLOCK + 4, 0);
  }

  private queueDeinit(q: Vcmdq): void {
    const p0 = this.page0(q.l);
    this.writeConfig(p0 + 0x8, p0 + 0xc, 0);
    this.wr(p0 + 0x4, 0);
    this.wr(p0 + 0x0, 0);
    this.p.bus.write64(this.base + this.page1(q.l), 0n);
    this.p.bus.write64(this.base + this.page1(q.l) + 8, 0n);
    const gerror = this.rd(p0 + 0x10);
    if (this.rd(p0 + 0x14) !== gerror) this.wr(p0 + 0x14, gerror);
    q.queue.resetIndexes();
    q.enabled = false;
  }

  private queueInit(q: Vcmdq): void {
    this.queueDeinit(q);
    this.p.bus.write64(this.base + this.page1(q.l), BigInt(q.queue.ring) | BigInt(q.queue.log2));
    const p0 = this.page0(q.l);
    this.writeConfig(p0 + 0x8, p0 + 0xc, 1);
    q.enabled = true;
  }

  /** Whether a command may go to a VCMDQ (the guest filter of a non-hyp-owned VINTF). */
  accepts(cmd: Uint32Array): boolean {
    return this.hypOwn || GUEST_OPS.has(cmd[0]! & 0xff);
  }

  /** Submit accepted commands on logical queue `l` (the CPU's), then a CMD_SYNC (CS = NONE). */
  submit(cmds: readonly Uint32Array[], l = 0): void {
    const q = this.queues[l % this.queues.length]!;
    if (!q.enabled) throw new Error(`VCMDQ ${q.l} not enabled`);
    q.queue.submit(cmds);
    this.stats.commands += cmds.length + 1;
    this.stats.batches++;
  }

  /** Error interrupt: for VINTF0's queues in error, skip the bad command and acknowledge. */
  isr(): void {
    this.stats.irqs++;
    const vmap = this.rd(0x14);
    if (!(vmap & 1)) return;
    for (let w = 0; w < 2; w++) {
      const map = this.p.bus.read64(this.base + C.VINTF_BLOCK + 0xc0 + 8 * w);
      for (let bit = 0; bit < 64; bit++) {
        if (((map >> BigInt(bit)) & 1n) === 0n) continue;
        const l = 64 * w + bit;
        const q = this.queues[l];
        if (!q) continue;
        const p0 = this.page0(l);
        const gerror = this.rd(p0 + 0x10);
        if (((gerror ^ this.rd(p0 + 0x14)) & 1) === 0) continue;
        const cons = this.rd(p0);
        const err = (cons >>> 24) & 0x7f;
        if (err === CERROR_ILL || err > 3) {
          const at = q.queue.slot(cons);
          const sync = buildCommand(Op.SYNC, { cs: SYNC_CS_NONE });
          for (let i = 0; i < 4; i++) this.p.bus.write32(at + i * 4, sync[i]!);
        }
        this.wr(p0 + 0x14, gerror);
        this.stats.errorsHandled++;
      }
    }
  }
}
