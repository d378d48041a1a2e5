/**
 * The host kernel's tegra241-cmdqv driver model (spec linux-cmdqv.md §2.2–2.10): probe and
 * device reset, VINTF0 for the host, user VINTFs (one per vIOMMU), logical VCMDQs for HW
 * queues, SID match/replace pairs for vDEVICEs, and the error ISR that reports user VINTF
 * errors as vEVENTs. It programs the silicon only through its register aperture.
 */

import type { ModelLog } from '../../kit/log.js';
import * as C from '../../arch/tegra241-cmdqv/registers.js';
import { Errno, ErrnoError } from '../../uapi/errno.js';
import type { Tegra241CmdqvHw } from '../tegra241-cmdqv/cmdqv.js';
import type { SmmuDriver } from './arm-smmu-v3.js';

const VINTF_STRIDE = C.VINTF_BLOCK_STRIDE;

/** Lowest index in [from, to) not used as a key of `used`, or -1 (the driver's id allocators). */
function firstFree(from: number, to: number, used: ReadonlyMap<number, unknown>): number {
  for (let i = from; i < to; i++) if (!used.has(i)) return i;
  return -1;
}

/** What the driver keeps per user VINTF. */
export interface UserVintf {
  readonly index: number;
  readonly vmid: number;
  /** Logical queue → global queue, for queues that exist. */
  readonly queues: Map<number, number>;
  /** SID pair slot → physical SID. */
  readonly sids: Map<number, number>;
  /** Called with the two LVCMDQ_ERR_MAP_64 words when the ISR sees an error on this VINTF. */
  onError: (map: [bigint, bigint]) => void;
}

/** Kernel driver for one CMDQV. */
export class CmdqvDriver {
  readonly numVintfs: number;
  readonly numVcmdqs: number;
  /** Logical VCMDQs per VINTF (N). */
  readonly perVintf: number;
  readonly sidsPerVintf: number;
  readonly version: number;
  private readonly vintfs = new Map<number, UserVintf>();

  constructor(
    readonly hw: Tegra241CmdqvHw,
    private readonly smmu: SmmuDriver,
    private readonly log: ModelLog,
  ) {
    const param = this.rd(C.PARAM.spec.offset);
    this.version = C.PARAM.f.CMDQV_VER.get(param);
    this.numVcmdqs = 2 ** C.PARAM.f.CMDQV_NUM_CMDQ_LOG2.get(param);
    this.numVintfs = 2 ** C.PARAM.f.CMDQV_NUM_VI_LOG2.get(param);
    this.perVintf = this.numVcmdqs / this.numVintfs;
    this.sidsPerVintf = 2 ** C.PARAM.f.CMDQV_NUM_SID_PER_VI_LOG2.get(param);
    this.deviceReset();
    hw.onErrorIrq = () => this.isr();
  }

  private rd(off: number): number {
    return this.hw.read(off, 4);
  }
  private wr(off: number, v: number): void {
    this.hw.write(off, 4, v);
  }

  /** Write a CONFIG value and poll STATUS bit 0 until it follows EN (spec §2.5). */
  private writeConfig(cfgOff: number, statusOff: number, value: number, what: string): void {
    this.wr(cfgOff, value);
    if ((this.rd(statusOff) & 1) !== (value & 1)) {
      throw new ErrnoError(Errno.ETIMEDOUT, `${what}: failed to ${value & 1 ? 'enable' : 'disable'}`);
    }
  }

  /** device_reset: toggle the global enable and pre-assign every VCMDQ (ALLOC = 0). */
  private deviceReset(): void {
    const cfg = this.rd(C.CONFIG.spec.offset);
    this.writeConfig(C.CONFIG.spec.offset, C.STATUS.spec.offset, cfg & ~1, 'CMDQV');
    this.writeConfig(C.CONFIG.spec.offset, C.STATUS.spec.offset, cfg | 1, 'CMDQV');
    let q = 0;
    for (let vi = 0; vi < this.numVintfs; vi++) {
      for (let l = 0; l < this.perVintf; l++) this.wr(0x200 + 4 * q++, (vi << 15) | (l << 1));
    }
    // VINTF0 belongs to the host (HYP_OWN = 1, VMID 0). Host invalidations use the main CMDQ.
    this.writeConfig(C.VINTF_BLOCK, C.VINTF_BLOCK + 4, (1 << 17) | 1, 'VINTF0');
  }

  private vintfBase(vi: number): number {
    return C.VINTF_BLOCK + VINTF_STRIDE * vi;
  }

  /** vIOMMU alloc: a free VINTF, guest-owned, with the stage-2 VMID; no queue is mapped. */
  allocVintf(vmid: number): UserVintf {
    const index = firstFree(1, this.numVintfs, this.vintfs);
    if (index < 0) throw new ErrnoError(Errno.ENOSPC, 'no more available vintf');
    const base = this.vintfBase(index);
    this.vintfDeinit(index);
    const value = C.VINTF_CONFIG.f.VMID.set(0, vmid);
    this.wr(base, value);
    this.writeConfig(base, base + 4, value | 1, `VINTF${index}`);
    const v: UserVintf = { index, vmid, queues: new Map(), sids: new Map(), onError: () => {} };
    this.vintfs.set(index, v);
    return v;
  }

  /** vIOMMU destroy: disable and unmap its queues, disable the VINTF, clear its SIDs. */
  freeVintf(v: UserVintf): void {
    for (const l of [...v.queues.keys()].sort((a, b) => b - a)) this.freeQueue(v, l);
    this.vintfDeinit(v.index);
    this.vintfs.delete(v.index);
  }

  private vintfDeinit(vi: number): void {
    const base = this.vintfBase(vi);
    this.writeConfig(base, base + 4, 0, `VINTF${vi}`);
    for (let s = 0; s < this.sidsPerVintf; s++) {
      this.wr(base + 0x40 + 4 * s, 0);
      this.wr(base + 0x80 + 4 * s, 0);
    }
  }

  /** Offset of the VINTF's page0 in the aperture (what mmap exports). */
  page0Offset(v: UserVintf): number {
    return this.hw.vintfPage0Offset(v.index);
  }

  /**
   * HW queue alloc (spec §2.10.4): logical queue `l` at host PA `pa`, `length` bytes. Maps the
   * LVCMDQ, resets it, writes BASE; enabling is left to the guest.
   */
  allocQueue(v: UserVintf, l: number, pa: number, length: number, cmdqs: number): void {
    if (l >= this.perVintf) throw new ErrnoError(Errno.EINVAL, `logical queue ${l} >= ${this.perVintf}`);
    if (v.queues.has(l)) throw new ErrnoError(Errno.EEXIST, `logical queue ${l} exists`);
    if (l > 0 && !v.queues.has(l - 1)) throw new ErrnoError(Errno.EIO, `logical queue ${l - 1} must be allocated first`);
    if (length < 32 || (length & (length - 1)) !== 0 || length > 2 ** (cmdqs + 4)) {
      throw new ErrnoError(Errno.EINVAL, `queue length ${length} not a power of two in [32, 2^${cmdqs + 4}]`);
    }
    if (pa % length !== 0 || pa >= 2 ** 48 || pa % 32 !== 0) {
      throw new ErrnoError(Errno.EINVAL, `queue base 0x${pa.toString(16)} not aligned to its length or above 48 bits`);
    }
    const q = v.index * this.perVintf + l;
    const alloc = 0x200 + 4 * q;
    this.wr(alloc, this.rd(alloc) | 1);
    v.queues.set(l, q);
    this.queueDeinit(q);
    const log2size = Math.log2(length) - 4;
    this.hw.write64(C.CMDQV_VCMDQ_PAGE1 + 0x80 * q, BigInt(pa) | BigInt(log2size));
  }

  /** HW queue destroy: reset and unmap. */
  freeQueue(v: UserVintf, l: number): void {
    const q = v.queues.get(l);
    if (q === undefined) return;
    this.queueDeinit(q);
    const alloc = 0x200 + 4 * q;
    this.wr(alloc, this.rd(alloc) & ~1);
    v.queues.delete(l);
  }

  /** VCMDQ deinit through the global page0/page1 views (spec §2.5). */
  private queueDeinit(q: number): void {
    const p0 = C.CMDQV_VCMDQ_PAGE0 + 0x80 * q;
    const p1 = C.CMDQV_VCMDQ_PAGE1 + 0x80 * q;
    this.writeConfig(p0 + 0x8, p0 + 0xc, 0, `VCMDQ${q}`);
    // Flush a pending ATC_INV timeout on the main CMDQ before the queue changes hands.
    this.smmu.sync();
    this.wr(p0 + 0x4, 0);
    this.wr(p0 + 0x0, 0);
    this.hw.write64(p1, 0n);
    this.hw.write64(p1 + 0x8, 0n);
    const gerror = this.rd(p0 + 0x10);
    if (this.rd(p0 + 0x14) !== gerror) {
      this.log.guestError('tegra241-cmdqv', `VCMDQ${q}: uncleared error detected, resetting`);
      this.wr(p0 + 0x14, gerror);
    }
  }

  /** vDEVICE: program a SID_MATCH/SID_REPLACE pair. Returns the pair index. */
  allocSid(v: UserVintf, vsid: number, psid: number): number {
    if (vsid > 0xfffff) throw new ErrnoError(Errno.EINVAL, `vSID 0x${vsid.toString(16)} wider than 20 bits`);
    const s = firstFree(0, this.sidsPerVintf, v.sids);
    if (s < 0) throw new ErrnoError(Errno.ENOSPC, 'no free SID pair');
    const base = this.vintfBase(v.index);
    this.wr(base + 0x80 + 4 * s, psid);
    this.wr(base + 0x40 + 4 * s, ((vsid << 1) | 1) >>> 0);
    v.sids.set(s, psid);
    return s;
  }

  /** vDEVICE destroy: clear its pair. */
  freeSid(v: UserVintf, s: number): void {
    const base = this.vintfBase(v.index);
    this.wr(base + 0x40 + 4 * s, 0);
    this.wr(base + 0x80 + 4 * s, 0);
    v.sids.delete(s);
  }

  /** Error interrupt: user VINTF errors become vEVENTs; the host acknowledges nothing for them. */
  private isr(): void {
    const map = BigInt(this.rd(0x14)) | (BigInt(this.rd(0x18)) << 32n);
    for (let vi = 0; vi < this.numVintfs; vi++) {
      if (((map >> BigInt(vi)) & 1n) === 0n) continue;
      const base = this.vintfBase(vi);
      const m0 = this.hw.read64(base + 0xc0);
      const m1 = this.hw.read64(base + 0xc8);
      if (vi === 0) {
        this.log.guestError('tegra241-cmdqv', `host VINTF0 queue error, map 0x${m0.toString(16)}`);
        continue;
      }
      const v = this.vintfs.get(vi);
      if (v) v.onError([m0, m1]);
      else this.log.guestError('tegra241-cmdqv', `error on unowned VINTF${vi}`);
    }
  }
}
