/**
 * The Tegra241 CMDQV silicon (spec linux-cmdqv.md §1): global config page, VINTF register
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
import { RegisterBank } from '../../kit/register-bank.js';
import { RegisterLayout, type RegisterInfo } from '../../kit/registers.js';
import { defineTrace, type Tracer } from '../../kit/trace.js';
import { CERROR_ABT, CERROR_ILL, Op, opName } from '../../arch/smmuv3/commands.js';
import { qIndexMask, qWrapMask } from '../../arch/smmuv3/queue.js';
import { CommandReader } from '../smmuv3/command-reader.js';
import * as C from '../../arch/tegra241-cmdqv/registers.js';
import type { CmdqvConfig } from '../config.js';
import type { PhysicalMemory } from '../memory/physical-memory.js';
import type { HostSmmu } from '../smmuv3/smmu.js';

const T_QUEUE_ERROR = defineTrace(
  'tegra241_cmdqv_hw_queue_error',
  [
    { name: 'vcmdq', type: 'u32' },
    { name: 'vintf', type: 'u32' },
    { name: 'lvcmdq', type: 'u32' },
    { name: 'cons', type: 'u32' },
    { name: 'cerror', type: 'u32' },
    { name: 'opcode', type: 'str' },
  ],
  'vcmdq %u (vintf %u lvcmdq %u) stopped at cons=0x%x cerror=%u on %s',
);
const T_CONSUME = defineTrace(
  'tegra241_cmdqv_hw_consume',
  [
    { name: 'vcmdq', type: 'u32' },
    { name: 'count', type: 'u32' },
    { name: 'cons', type: 'u32' },
  ],
  'vcmdq %u consumed %u commands, cons=0x%x',
);

const MAX_LVCMDQ = 128;
const NO_QUEUE = -1;

let layouts: { global: RegisterLayout; vintf: RegisterLayout; page0: RegisterLayout; page1: RegisterLayout } | undefined;
const ALLOC_MAP = C.CMDQ_ALLOC_MAP;

function cmdqvLayouts() {
  layouts ??= {
    global: new RegisterLayout('tegra241-cmdqv-global', 0x1000, [
      C.CONFIG, C.PARAM, C.STATUS, C.VI_ERR_MAP, C.VI_INT_MASK, C.CMDQ_ERR_MAP, ALLOC_MAP,
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

/** The CMDQV hardware model attached to one host SMMU. */
export class Tegra241CmdqvHw {
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

  /** (vintf · 128 + lvcmdq) → global VCMDQ, from CMDQ_ALLOC_MAP entries with ALLOC = 1. */
  private readonly logical: Int16Array;
  private readonly cmd = new Uint32Array(4);
  private readonly reader: CommandReader;
  private readonly allocRegs: RegisterInfo[];
  private readonly g;
  private readonly v;
  private readonly q;

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
    this.reader = new CommandReader(phys.mem);
    const L = cmdqvLayouts();
    this.global = new RegisterBank('tegra241-cmdqv-hw', L.global, log);
    for (let i = 0; i < this.numVintfs; i++) this.vintfs.push(new RegisterBank(`tegra241-cmdqv-hw vintf${i}`, L.vintf, log));
    for (let i = 0; i < this.numVcmdqs; i++) {
      this.page0.push(new RegisterBank(`tegra241-cmdqv-hw vcmdq${i}`, L.page0, log));
      this.page1.push(new RegisterBank(`tegra241-cmdqv-hw vcmdq${i}`, L.page1, log));
    }
    this.logical = new Int16Array(this.numVintfs * MAX_LVCMDQ).fill(NO_QUEUE);
    this.allocRegs = Array.from({ length: 128 }, (_, i) => L.global.get(`CMDQ_ALLOC_MAP_${i}`));
    this.g = {
      config: L.global.get('CONFIG'),
      param: L.global.get('PARAM'),
      status: L.global.get('STATUS'),
      viErr: wordSlots([L.global.get('VI_ERR_MAP_0'), L.global.get('VI_ERR_MAP_1')]),
      viMask: wordSlots([L.global.get('VI_INT_MASK_0'), L.global.get('VI_INT_MASK_1')]),
      cmdqErr: wordSlots([0, 1, 2, 3].map((i) => L.global.get(`CMDQ_ERR_MAP_${i}`))),
    };
    this.v = {
      config: L.vintf.get('CONFIG'),
      status: L.vintf.get('STATUS'),
      match: Array.from({ length: 16 }, (_, i) => L.vintf.get(`SID_MATCH_${i}`)),
      replace: Array.from({ length: 16 }, (_, i) => L.vintf.get(`SID_REPLACE_${i}`)),
      err: wordSlots([L.vintf.get('LVCMDQ_ERR_MAP_64_0'), L.vintf.get('LVCMDQ_ERR_MAP_64_1')]),
    };
    this.q = {
      cons: L.page0.get('CONS_INDX'),
      prod: L.page0.get('PROD_INDX'),
      config: L.page0.get('CONFIG'),
      status: L.page0.get('STATUS'),
      gerror: L.page0.get('GERROR'),
      gerrorn: L.page0.get('GERRORN'),
      base: L.page1.get('BASE'),
    };
    this.wireHooks();
    this.reset();
    this.mmio = MemoryRegion.mmio('tegra241-cmdqv', C.cmdqvApertureSize(this.numVintfs), this);
  }

  /** Power-on reset of every register. */
  reset(): void {
    this.global.reset();
    this.global.file.set32(
      this.g.param,
      this.config.version | (this.config.log2Vcmdqs << 4) | (this.config.log2Vintfs << 8) | (this.config.log2SidsPerVintf << 12),
    );
    for (const b of this.vintfs) b.reset();
    for (const b of this.page0) b.reset();
    for (const b of this.page1) b.reset();
    this.logical.fill(NO_QUEUE);
  }

  private wireHooks(): void {
    this.global.onWrite(C.CONFIG, () => {
      const en = C.CONFIG.f.CMDQV_EN.get(this.global.file.get32(this.g.config));
      this.global.file.set32(this.g.status, en);
      if (en) for (let q = 0; q < this.numVcmdqs; q++) this.consume(q);
    });
    this.global.onWrite(ALLOC_MAP, (reg, prev) => this.remap(reg.instance, prev));
    this.vintfs.forEach((bank, vi) => {
      bank.onWrite(C.VINTF_CONFIG, () => {
        const en = C.VINTF_CONFIG.f.ENABLE.get(bank.file.get32(this.v.config));
        bank.file.setField(this.v.status, C.VINTF_STATUS.f.ENABLE_OK, en);
        if (en) for (let l = 0; l < MAX_LVCMDQ; l++) this.consumeLogical(vi, l);
      });
    });
    this.page0.forEach((bank, q) => {
      bank.onWrite(C.VCMDQ_CONFIG, () => {
        const en = C.VCMDQ_CONFIG.f.CMDQ_EN.get(bank.file.get32(this.q.config));
        bank.file.set32(this.q.status, en);
        if (en) this.consume(q);
      });
      bank.onWrite(C.VCMDQ_PROD, () => this.consume(q));
      bank.onWrite(C.VCMDQ_GERRORN, () => this.acknowledge(q));
    });
  }

  /** CMDQ_ALLOC_MAP_q changed: update the logical-queue decode of the VINTF apertures. */
  private remap(q: number, prev: number): void {
    const now = this.global.file.get32(this.allocRegs[q]!);
    const F = ALLOC_MAP.f;
    if (F.ALLOC.get(prev)) {
      const key = F.VIRT_INTF_INDX.get(prev) * MAX_LVCMDQ + F.LVCMDQ.get(prev);
      if (this.logical[key] === q) this.logical[key] = NO_QUEUE;
    }
    if (F.ALLOC.get(now) && q < this.numVcmdqs) {
      const vi = F.VIRT_INTF_INDX.get(now);
      if (vi >= this.numVintfs) {
        this.log.guestError('tegra241-cmdqv-hw', `CMDQ_ALLOC_MAP_${q}: VINTF ${vi} does not exist`);
        return;
      }
      this.logical[vi * MAX_LVCMDQ + F.LVCMDQ.get(now)] = q;
    }
  }

  /** Global VCMDQ mapped as logical queue `l` of VINTF `vi`, or -1. */
  globalQueue(vi: number, l: number): number {
    return vi < this.numVintfs && l < MAX_LVCMDQ ? this.logical[vi * MAX_LVCMDQ + l]! : NO_QUEUE;
  }

  private consumeLogical(vi: number, l: number): void {
    const q = this.globalQueue(vi, l);
    if (q !== NO_QUEUE) this.consume(q);
  }

  /** Whether queue q may run: CMDQV, its VINTF and the queue enabled, mapped, no active error. */
  private runnable(q: number): number {
    const gf = this.global.file;
    if (!(gf.get32(this.g.status) & 1)) return -1;
    const alloc = gf.get32(this.allocRegs[q]!);
    if (!(alloc & 1)) return -1;
    const vi = ALLOC_MAP.f.VIRT_INTF_INDX.get(alloc);
    if (vi >= this.numVintfs || !(this.vintfs[vi]!.file.get32(this.v.status) & 1)) return -1;
    const p0 = this.page0[q]!.file;
    if (!(p0.get32(this.q.status) & 1)) return -1;
    if ((p0.get32(this.q.gerror) ^ p0.get32(this.q.gerrorn)) & 1) return -1;
    return vi;
  }

  /** Consume queue q until empty or stopped (hot path: no allocation per command). */
  consume(q: number): void {
    const vi = this.runnable(q);
    if (vi < 0) return;
    const p0 = this.page0[q]!.file;
    const p1 = this.page1[q]!.file;
    const baseLo = p1.words[this.q.base.slot]!;
    const baseHi = p1.words[this.q.base.slot + 1]!;
    const log2 = Math.min(C.VCMDQ_BASE.f.LOG2SIZE.getWords(baseLo, baseHi), 19);
    const ring = C.VCMDQ_BASE.f.ADDR.getWords(baseLo, baseHi) * 32;
    const vf = this.vintfs[vi]!.file;
    const vcfg = vf.get32(this.v.config);
    const guestOwned = !C.VINTF_CONFIG.f.HYP_OWN.get(vcfg);
    const vmid = C.VINTF_CONFIG.f.VMID.get(vcfg);
    const prod = p0.get32(this.q.prod) & 0xfffff;
    const consReg = p0.get32(this.q.cons);
    const wrapMask = qWrapMask(log2);
    const idxMask = qIndexMask(log2);
    const end = prod & wrapMask;
    let cons = consReg & wrapMask;
    const w = this.cmd;
    let n = 0;
    let vmidReplaced = 0;
    const reader = this.reader;
    const opAsid = Op.TLBI_NH_ASID;
    const opVa = Op.TLBI_NH_VA;
    const opSync = Op.SYNC;
    reader.reset();
    while (cons !== end) {
      let err = 0;
      if (!reader.read(ring + (cons & idxMask) * 16, w)) {
        err = CERROR_ABT;
      } else {
        if (guestOwned) {
          // The guest-owned VINTF rules, inlined for the common TLBI case.
          const op = w[0]! & 0xff;
          if (op === opAsid || op === opVa) {
            w[1] = ((w[1]! & 0xffff_0000) | vmid) >>> 0;
            vmidReplaced++;
          } else if (op !== opSync) {
            err = this.filterGuestCommand(vf, w);
          }
        }
        if (err === 0) err = this.smmu.execute(w, 'vcmdq');
      }
      n++;
      if (err !== 0) {
        this.stats.commands += n;
        this.stats.vmidReplaced += vmidReplaced;
        this.stop(q, vi, cons, err, w[0]! & 0xff);
        return;
      }
      cons = (cons + 1) & wrapMask;
    }
    this.stats.vmidReplaced += vmidReplaced;
    this.stats.commands += n;
    p0.set32(this.q.cons, ((consReg & 0x7f00_0000) | cons) >>> 0);
    if (n > 0 && this.tracer.enabled(T_CONSUME)) this.tracer.emit(T_CONSUME, q, n, cons);
  }

  /**
   * The guest-owned VINTF rules for the commands the consume loop does not inline: ATC_INV
   * gets its StreamID replaced through SID_MATCH/SID_REPLACE; anything else is refused.
   * Returns a CERROR code, 0 if the command may run.
   */
  private filterGuestCommand(vf: RegisterBank['file'], w: Uint32Array): number {
    if ((w[0]! & 0xff) === Op.ATC_INV) {
      const vsid = w[1]!;
      for (let s = 0; s < this.sidsPerVintf; s++) {
        const m = vf.get32(this.v.match[s]!);
        if (m & 1 && C.VINTF_SID_MATCH.f.VIRT_SID.get(m) === vsid) {
          w[1] = vf.get32(this.v.replace[s]!);
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
  private stop(q: number, vi: number, cons: number, err: number, op: number): void {
    const p0 = this.page0[q]!.file;
    p0.set32(this.q.cons, C.VCMDQ_CONS.f.ERR.set(cons, err));
    p0.set32(this.q.gerror, (p0.get32(this.q.gerror) ^ 1) >>> 0);
    const l = ALLOC_MAP.f.LVCMDQ.get(this.global.file.get32(this.allocRegs[q]!));
    this.setBit(this.global.file, this.g.cmdqErr, q, true);
    const vf = this.vintfs[vi]!.file;
    this.setBit(vf, this.v.err, l, true);
    vf.setField(this.v.status, C.VINTF_STATUS.f.STATUS, 1);
    this.setBit(this.global.file, this.g.viErr, vi, true);
    this.tracer.emit(T_QUEUE_ERROR, q, vi, l, cons, err, opName(op));
    const masked = this.bitOf(this.global.file, this.g.viMask, vi);
    if (!masked) {
      this.stats.irqs++;
      this.onErrorIrq();
    }
  }

  /** GERRORN written: once it matches GERROR the queue's error is cleared and it resumes. */
  private acknowledge(q: number): void {
    const p0 = this.page0[q]!.file;
    if ((p0.get32(this.q.gerror) ^ p0.get32(this.q.gerrorn)) & 1) return;
    const alloc = this.global.file.get32(this.allocRegs[q]!);
    const vi = ALLOC_MAP.f.VIRT_INTF_INDX.get(alloc);
    const l = ALLOC_MAP.f.LVCMDQ.get(alloc);
    this.setBit(this.global.file, this.g.cmdqErr, q, false);
    if (vi < this.numVintfs) {
      const vf = this.vintfs[vi]!.file;
      this.setBit(vf, this.v.err, l, false);
      if (this.v.err.every((slot) => vf.words[slot] === 0)) {
        vf.setField(this.v.status, C.VINTF_STATUS.f.STATUS, 0);
        this.setBit(this.global.file, this.g.viErr, vi, false);
      }
    }
    this.consume(q);
  }

  /** Set or clear bit `bit` of a bitmap held in the word slots `slots` (LSB word first). */
  private setBit(file: RegisterBank['file'], slots: readonly number[], bit: number, on: boolean): void {
    const slot = slots[bit >>> 5]!;
    const m = (1 << (bit & 31)) >>> 0;
    file.words[slot] = on ? file.words[slot]! | m : file.words[slot]! & ~m;
  }

  private bitOf(file: RegisterBank['file'], slots: readonly number[], bit: number): boolean {
    return ((file.words[slots[bit >>> 5]!]! >>> (bit & 31)) & 1) === 1;
  }

  // ------------------------------------------------------------------------------------------
  // Aperture decode (RegionOps)

  /** Offset inside the bank returned by the last {@link decode} (no allocation per access). */
  private inner = 0;

  /** Resolve an aperture offset to a register bank, leaving the offset inside it in `inner`. */
  private decode(off: number): RegisterBank | undefined {
    if (off < 0x1000) {
      this.inner = off;
      return this.global;
    }
    if (off >= C.VINTF_BLOCK && off < C.VINTF_BLOCK + this.numVintfs * C.VINTF_BLOCK_STRIDE) {
      const rel = off - C.VINTF_BLOCK;
      this.inner = rel & 0xff;
      return this.vintfs[rel >>> 8];
    }
    if (off >= C.CMDQV_VCMDQ_PAGE0 && off < C.CMDQV_VINTF_PAGES) {
      const page1 = off >= C.CMDQV_VCMDQ_PAGE1;
      const rel = off - (page1 ? C.CMDQV_VCMDQ_PAGE1 : C.CMDQV_VCMDQ_PAGE0);
      const q = rel >>> 7;
      if (q >= this.numVcmdqs) return undefined;
      this.inner = rel & 0x7f;
      return (page1 ? this.page1 : this.page0)[q];
    }
    if (off >= C.CMDQV_VINTF_PAGES) {
      const rel = off - C.CMDQV_VINTF_PAGES;
      const vi = Math.floor(rel / C.CMDQV_VINTF_STRIDE);
      const inPair = rel - vi * C.CMDQV_VINTF_STRIDE;
      const page1 = inPair >= C.CMDQV_PAGE_SIZE;
      const inPage = page1 ? inPair - C.CMDQV_PAGE_SIZE : inPair;
      const q = this.globalQueue(vi, inPage >>> 7);
      if (q === NO_QUEUE) return undefined;
      this.inner = inPage & 0x7f;
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
    else this.log.guestError('tegra241-cmdqv-hw', `write to unmapped offset 0x${offset.toString(16)} dropped`);
  }

  read64(offset: number): bigint {
    const bank = this.decode(offset);
    return bank ? bank.read64(this.inner) : 0n;
  }

  write64(offset: number, value: bigint): void {
    const bank = this.decode(offset);
    if (bank) bank.write64(this.inner, value);
    else this.log.guestError('tegra241-cmdqv-hw', `64-bit write to unmapped offset 0x${offset.toString(16)} dropped`);
  }

  /** Offset of VINTF `vi`'s page0 in the aperture (what the kernel exports through mmap). */
  vintfPage0Offset(vi: number): number {
    return C.CMDQV_VINTF_PAGES + C.CMDQV_VINTF_STRIDE * vi;
  }

  /** Ops of VINTF `vi`'s page0 alone, for a user mapping of that page. */
  vintfPage0Ops(vi: number): RegionOps {
    const base = this.vintfPage0Offset(vi);
    return {
      read: (o, s) => this.read(base + o, s),
      write: (o, s, v) => this.write(base + o, s, v),
      read64: (o) => this.read64(base + o),
      write64: (o, v) => this.write64(base + o, v),
    };
  }
}
