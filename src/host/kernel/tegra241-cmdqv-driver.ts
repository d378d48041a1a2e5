/**
 * The host kernel's tegra241-cmdqv driver model (docs/reference/tegra241-cmdqv.md §4–5): probe and
 * device reset, VINTF0 for the host, user VINTFs (one per vIOMMU), logical VCMDQs for HW
 * queues, SID match/replace pairs for vDEVICEs, and the error ISR that reports user VINTF
 * errors as vEVENTs. It programs the silicon only through its register aperture.
 */

import type { ModelLog } from '../../kit/log.js';
import { instanceOffset } from '../../kit/registers.js';
import * as C from '../../arch/tegra241-cmdqv/registers.js';
import { Errno, ErrnoError } from '../../uapi/errno.js';
import type { Tegra241CmdqvHw } from '../tegra241-cmdqv/cmdqv.js';
import type { SmmuDriver } from './arm-smmu-v3.js';

const SRC = 'tegra241-cmdqv';
/** VINTF0 is the host's. */
const HOST_VINTF = 0;
/** SID_MATCH bit 0: the pair is in use. */
const SID_MATCH_ENABLE = C.VINTF_SID_MATCH.f.ENABLE.set(0, 1);


/** Lowest index in [from, to) whose entry in `used` is undefined, or -1 (the driver's id allocators). */
function firstFree(from: number, to: number, used: readonly unknown[]): number {
  for (let i = from; i < to; i++) if (used[i] === undefined) return i;
  return -1;
}

/** What the driver keeps per user VINTF. */
export interface UserVintf {
  readonly index: number;
  readonly vmid: number;
  /** Logical queue → global queue, for queues that exist. */
  readonly queues: (number | undefined)[];
  /** SID pair slot → physical SID, for pairs in use. */
  readonly sids: (number | undefined)[];
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
  /** User VINTFs by index. */
  private readonly vintfs: (UserVintf | undefined)[] = [];

  /** What user VINTFs hold now: VINTFs, logical queues, SID pairs (resource accounting). */
  get inUse(): { vintfs: number; queues: number; sidPairs: number } {
    let vintfs = 0;
    let queues = 0;
    let sidPairs = 0;
    for (const vintf of this.vintfs) {
      if (!vintf) continue;
      vintfs++;
      queues += vintf.queues.filter((q) => q !== undefined).length;
      sidPairs += vintf.sids.filter((s) => s !== undefined).length;
    }
    return { vintfs, queues, sidPairs };
  }

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

  /** Write an enable register and check that its status follows (docs/reference/tegra241-cmdqv.md §4.5). */
  private writeConfig(reg: C.EnableHandshake, value: number, what: string): void {
    this.wr(reg.config, value);
    const on = reg.enable.get(value);
    if (reg.enabled.get(this.rd(reg.status)) !== on) {
      throw new ErrnoError(Errno.ETIMEDOUT, `${what}: failed to ${on ? 'enable' : 'disable'}`);
    }
  }

  /** device_reset: toggle the global enable and pre-assign every VCMDQ (ALLOC = 0). */
  private deviceReset(): void {
    const EN = C.CMDQV_ENABLE.enable;
    const cfg = this.rd(C.CMDQV_ENABLE.config);
    this.writeConfig(C.CMDQV_ENABLE, EN.set(cfg, 0), 'CMDQV');
    this.writeConfig(C.CMDQV_ENABLE, EN.set(cfg, 1), 'CMDQV');
    let q = 0;
    for (let vintf = 0; vintf < this.numVintfs; vintf++) {
      for (let l = 0; l < this.perVintf; l++) this.wr(C.allocMapOffset(q++), C.allocMapValue(vintf, l, false));
    }
    // VINTF0 belongs to the host (HYP_OWN = 1, VMID 0). Host invalidations use the main CMDQ.
    const hostVintf = C.vintfEnable(HOST_VINTF);
    this.writeConfig(hostVintf, hostVintf.enable.set(C.VINTF_CONFIG.f.HYP_OWN.set(0, 1), 1), 'VINTF0');
  }

  /** vIOMMU alloc: a free VINTF, guest-owned, with the stage-2 VMID; no queue is mapped. */
  allocVintf(vmid: number): UserVintf {
    const index = firstFree(HOST_VINTF + 1, this.numVintfs, this.vintfs);
    if (index < 0) throw new ErrnoError(Errno.ENOSPC, 'no more available vintf');
    const enable = C.vintfEnable(index);
    this.vintfDeinit(index);
    const value = C.VINTF_CONFIG.f.VMID.set(0, vmid);
    this.wr(enable.config, value);
    this.writeConfig(enable, enable.enable.set(value, 1), `VINTF${index}`);
    const vintf: UserVintf = { index, vmid, queues: [], sids: [], onError: () => {} };
    this.vintfs[index] = vintf;
    return vintf;
  }

  /** vIOMMU destroy: disable and unmap its queues, disable the VINTF, clear its SIDs. */
  freeVintf(vintf: UserVintf): void {
    for (let l = vintf.queues.length - 1; l >= 0; l--) if (vintf.queues[l] !== undefined) this.freeQueue(vintf, l);
    this.vintfDeinit(vintf.index);
    this.vintfs[vintf.index] = undefined;
  }

  private vintfDeinit(index: number): void {
    this.writeConfig(C.vintfEnable(index), 0, `VINTF${index}`);
    for (let s = 0; s < this.sidsPerVintf; s++) this.clearSidPair(index, s);
  }

  /** Offsets of SID pair `slot` of VINTF `index`. */
  private sidPair(index: number, slot: number): { match: number; replace: number } {
    const block = C.vintfBlockOffset(index);
    return { match: block + instanceOffset(C.VINTF_SID_MATCH, slot), replace: block + instanceOffset(C.VINTF_SID_REPLACE, slot) };
  }

  private clearSidPair(index: number, slot: number): void {
    const pair = this.sidPair(index, slot);
    this.wr(pair.match, 0);
    this.wr(pair.replace, 0);
  }

  /** Offset of the VINTF's page0 in the aperture (what mmap exports). */
  page0Offset(vintf: UserVintf): number {
    return this.hw.vintfPage0Offset(vintf.index);
  }

  /**
   * HW queue alloc (docs/reference/tegra241-cmdqv.md §5.4): logical queue `lvcmdq` at host PA `pa`, `length` bytes. Maps
   * the LVCMDQ, resets it, writes BASE; enabling is left to the guest.
   */
  allocQueue(vintf: UserVintf, lvcmdq: number, pa: number, length: number, cmdqs: number): void {
    if (lvcmdq >= this.perVintf) throw new ErrnoError(Errno.EINVAL, `logical queue ${lvcmdq} >= ${this.perVintf}`);
    if (vintf.queues[lvcmdq] !== undefined) throw new ErrnoError(Errno.EEXIST, `logical queue ${lvcmdq} exists`);
    if (lvcmdq > 0 && vintf.queues[lvcmdq - 1] === undefined) throw new ErrnoError(Errno.EIO, `logical queue ${lvcmdq - 1} must be allocated first`);
    if (length < 32 || (length & (length - 1)) !== 0 || length > 2 ** (cmdqs + 4)) {
      throw new ErrnoError(Errno.EINVAL, `queue length ${length} not a power of two in [32, 2^${cmdqs + 4}]`);
    }
    if (pa % length !== 0 || pa >= 2 ** 48 || pa % 32 !== 0) {
      throw new ErrnoError(Errno.EINVAL, `queue base 0x${pa.toString(16)} not aligned to its length or above 48 bits`);
    }
    const q = vintf.index * this.perVintf + lvcmdq;
    const alloc = C.allocMapOffset(q);
    this.wr(alloc, C.CMDQ_ALLOC_MAP.f.ALLOC.set(this.rd(alloc), 1));
    vintf.queues[lvcmdq] = q;
    this.queueDeinit(q);
    const log2size = Math.log2(length) - 4;
    this.hw.write64(C.vcmdqPage1Offset(q) + C.VCMDQ_BASE.spec.offset, C.vcmdqBaseValue(pa, log2size));
  }

  /**
   * Load a restored logical queue's page0 words (CONS, PROD, CONFIG, STATUS, GERROR, GERRORN)
   * into its global VCMDQ as they were saved, error maps included; nothing runs.
   */
  loadQueueState(vintf: UserVintf, lvcmdq: number, page0: Uint32Array): void {
    const q = vintf.queues[lvcmdq];
    if (q === undefined) throw new ErrnoError(Errno.EINVAL, `logical queue ${lvcmdq} does not exist`);
    this.hw.loadQueueState(q, vintf.index, lvcmdq, page0);
  }

  /** HW queue destroy: reset and unmap. */
  freeQueue(vintf: UserVintf, lvcmdq: number): void {
    const q = vintf.queues[lvcmdq];
    if (q === undefined) return;
    this.queueDeinit(q);
    const alloc = C.allocMapOffset(q);
    this.wr(alloc, C.CMDQ_ALLOC_MAP.f.ALLOC.set(this.rd(alloc), 0));
    vintf.queues[lvcmdq] = undefined;
  }

  /** VCMDQ deinit through the global page0/page1 views (docs/reference/tegra241-cmdqv.md §4.5). */
  private queueDeinit(q: number): void {
    const p0 = C.vcmdqPage0Offset(q);
    const p1 = C.vcmdqPage1Offset(q);
    this.writeConfig(C.vcmdqEnable(p0), 0, `VCMDQ${q}`);
    // Flush a pending ATC_INV timeout on the main CMDQ before the queue changes hands.
    this.smmu.sync();
    this.wr(p0 + C.VCMDQ_PROD.spec.offset, 0);
    this.wr(p0 + C.VCMDQ_CONS.spec.offset, 0);
    this.hw.write64(p1 + C.VCMDQ_BASE.spec.offset, 0n);
    this.hw.write64(p1 + C.VCMDQ_CONS_INDX_BASE.spec.offset, 0n);
    const gerror = this.rd(p0 + C.VCMDQ_GERROR.spec.offset);
    if (this.rd(p0 + C.VCMDQ_GERRORN.spec.offset) !== gerror) {
      this.log.guestError(SRC, `VCMDQ${q}: uncleared error detected, resetting`);
      this.wr(p0 + C.VCMDQ_GERRORN.spec.offset, gerror);
    }
  }

  /**
   * vDEVICE: program a SID_MATCH/SID_REPLACE pair. Returns the pair index. `vsid` is any u32:
   * the driver writes the 32-bit truncation of (vSID << 1 | ENABLE) and the register keeps its
   * VIRT_SID field (docs/reference/tegra241-cmdqv.md §5.5).
   */
  allocSid(vintf: UserVintf, vsid: number, psid: number): number {
    const slot = firstFree(0, this.sidsPerVintf, vintf.sids);
    if (slot < 0) throw new ErrnoError(Errno.ENOSPC, 'no free SID pair');
    const pair = this.sidPair(vintf.index, slot);
    this.wr(pair.replace, psid);
    this.wr(pair.match, ((vsid << 1) | SID_MATCH_ENABLE) >>> 0);
    vintf.sids[slot] = psid;
    return slot;
  }

  /** vDEVICE destroy: clear its pair. */
  freeSid(vintf: UserVintf, slot: number): void {
    this.clearSidPair(vintf.index, slot);
    vintf.sids[slot] = undefined;
  }

  /** Error interrupt: user VINTF errors become vEVENTs; the host acknowledges nothing for them. */
  private isr(): void {
    const map = BigInt(this.rd(instanceOffset(C.VI_ERR_MAP, 0))) | (BigInt(this.rd(instanceOffset(C.VI_ERR_MAP, 1))) << 32n);
    for (let index = 0; index < this.numVintfs; index++) {
      if (((map >> BigInt(index)) & 1n) === 0n) continue;
      const block = C.vintfBlockOffset(index);
      const map0 = this.hw.read64(block + instanceOffset(C.VINTF_LVCMDQ_ERR_MAP_64, 0));
      const map1 = this.hw.read64(block + instanceOffset(C.VINTF_LVCMDQ_ERR_MAP_64, 1));
      if (index === HOST_VINTF) {
        this.log.guestError(SRC, `host VINTF0 queue error, map 0x${map0.toString(16)}`);
        continue;
      }
      const vintf = this.vintfs[index];
      if (vintf) vintf.onError([map0, map1]);
      else this.log.guestError(SRC, `error on unowned VINTF${index}`);
    }
  }
}
