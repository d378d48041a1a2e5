/**
 * The host kernel's arm-smmu-v3 driver model: programs the SMMU through its registers, owns
 * the stream table, the main command queue and the event queue in host memory, allocates
 * VMIDs, and writes STEs. Invalidation commands from user space are pushed to the main CMDQ
 * in chunks with a CMD_SYNC, as the kernel does (docs/reference/iommufd-uapi.md §10).
 */

import type { ModelLog } from '../../kit/log.js';
import { WordWindow } from '../../kit/sparse-memory.js';
import { D0, Op, SYNC_CS_SEV } from '../../arch/smmuv3/commands.js';
import { qAdvance, qEmpty, qIndex, qUsed } from '../../arch/smmuv3/queue.js';
import * as R from '../../arch/smmuv3/registers.js';
import { STE_BYTES } from '../../arch/smmuv3/structures.js';
import { Errno, ErrnoError } from '../../uapi/errno.js';
import type { PhysicalMemory } from '../memory/physical-memory.js';
import type { HostSmmu } from '../smmuv3/smmu.js';

/** log2 entries of the kernel's command queue (64 KiB ring). */
const CMDQ_LOG2 = 12;
/** log2 entries of the kernel's event queue. */
const EVTQ_LOG2 = 10;
/** Commands per chunk before a CMD_SYNC (the kernel batches 64 including the sync). */
const CMDQ_BATCH = 63;
/** Read-allocate hint of STRTAB_BASE / CMDQ_BASE. */
const STRTAB_RA = R.STRTAB_BASE.f.RA.setBig(0n, 1n);
const CMDQ_RA = R.CMDQ_BASE.f.RA.setBig(0n, 1n);
/** CR0 values: the command queue alone, then everything (SMMUEN | EVENTQEN | CMDQEN). */
const CR0_CMDQ = R.CR0.f.CMDQEN.set(0, 1);
const CR0_ALL = R.CR0.f.SMMUEN.set(R.CR0.f.EVENTQEN.set(CR0_CMDQ, 1), 1);
/** IRQ_CTRL: global error and event queue interrupts. */
const IRQS = R.IRQ_CTRL.f.EVENTQ_IRQEN.set(R.IRQ_CTRL.f.GERROR_IRQEN.set(0, 1), 1);
const CONS_RD = R.CMDQ_CONS.f.RD;

/** The kernel-side driver of one SMMU. */
export class SmmuDriver {
  readonly sidBits: number;
  readonly cmdqs: number;
  private readonly strtab: number;
  private readonly cmdq: number;
  /** The command ring as words (little-endian hosts), else undefined and written by word stores. */
  private readonly ringWords: Uint32Array | undefined;
  private readonly evtq: number;
  private prod = 0;
  /** CONS as last read (kick); the driver never reads CONS per command. */
  private consShadow = 0;
  private evtCons = 0;
  private readonly vmids = new Set<number>();
  private nextVmid = 1;
  /** VMIDs allocated now (resource accounting). */
  get vmidsInUse(): number {
    return this.vmids.size;
  }
  /** Commands the kernel pushed to the main CMDQ (including syncs). */
  submitted = 0;
  /**
   * Event records drained from the event queue, handed to `onEvent`. The record is the
   * driver's one buffer, valid during the call (a consumer that keeps it copies it).
   */
  onEvent: (record: Uint32Array) => void = () => {};
  private readonly eventRecord = new Uint32Array(8);

  constructor(
    readonly hw: HostSmmu,
    private readonly phys: PhysicalMemory,
    private readonly log: ModelLog,
  ) {
    const b = hw.bank;
    const idr1 = b.read(R.IDR1.spec.offset, 4);
    this.sidBits = R.IDR1.f.SIDSIZE.get(idr1);
    this.cmdqs = R.IDR1.f.CMDQS.get(idr1);
    // Linear stream table covering every StreamID.
    this.strtab = phys.allocKernel(2 ** this.sidBits * STE_BYTES);
    this.cmdq = phys.allocKernel(2 ** CMDQ_LOG2 * 16);
    // The ring is one naturally aligned 64 KiB chunk: the driver writes it as words directly.
    const win = new WordWindow();
    this.ringWords = phys.mem.mapWords(this.cmdq, win) && win.index === 0 && win.bytes >= 2 ** CMDQ_LOG2 * 16 ? win.words : undefined;
    this.evtq = phys.allocKernel(2 ** EVTQ_LOG2 * 32);
    b.write(R.CR0.spec.offset, 4, 0);
    b.write64(R.STRTAB_BASE.spec.offset, BigInt(this.strtab) | STRTAB_RA);
    b.write(R.STRTAB_BASE_CFG.spec.offset, 4, R.STRTAB_BASE_CFG.f.LOG2SIZE.set(0, this.sidBits));
    b.write64(R.CMDQ_BASE.spec.offset, BigInt(this.cmdq) | BigInt(CMDQ_LOG2) | CMDQ_RA);
    b.write(R.CMDQ_PROD.spec.offset, 4, 0);
    b.write(R.CMDQ_CONS.spec.offset, 4, 0);
    b.write64(R.EVENTQ_BASE.spec.offset, BigInt(this.evtq) | BigInt(EVTQ_LOG2));
    b.write(R.EVENTQ_PROD.spec.offset, 4, 0);
    b.write(R.EVENTQ_CONS.spec.offset, 4, 0);
    b.write(R.CR0.spec.offset, 4, CR0_CMDQ);
    this.submit([cmdWords(Op.CFGI_STE_RANGE, 0, 0, 31, 0), cmdWords(Op.TLBI_NSNH_ALL, 0, 0, 0, 0)]);
    b.write(R.IRQ_CTRL.spec.offset, 4, IRQS);
    b.write(R.CR0.spec.offset, 4, CR0_ALL);
    hw.onEventIrq = () => this.drainEvents();
  }

  /** Allocate a VMID (1..65535; 0 is reserved for bypass). */
  allocVmid(): number {
    for (let n = 0; n < 0xffff; n++) {
      const v = this.nextVmid;
      this.nextVmid = (this.nextVmid % 0xffff) + 1;
      if (!this.vmids.has(v)) {
        this.vmids.add(v);
        return v;
      }
    }
    throw new ErrnoError(Errno.ENOSPC, 'no free VMID');
  }

  /** Release a VMID after invalidating everything tagged with it. */
  freeVmid(vmid: number): void {
    this.submit([cmdWords(Op.TLBI_S12_VMALL, vmid, 0, 0, 0)]);
    this.vmids.delete(vmid);
  }

  /** Write an STE (8 words) for `sid` and invalidate its cached copy. */
  writeSte(sid: number, ste: Uint32Array): void {
    const addr = this.strtab + sid * STE_BYTES;
    for (let i = 0; i < 16; i++) this.phys.mem.write32(addr + i * 4, i < 8 ? ste[i]! : 0);
    this.submit([cmdWords(Op.CFGI_STE, 0, sid, 1, 0)]);
  }

  /**
   * Push commands (each 4 words) to the main CMDQ in chunks of {@link CMDQ_BATCH}, each chunk
   * followed by a CMD_SYNC that is waited for. Throws ETIMEDOUT if the queue stalls on an error
   * (the kernel's "CMD_SYNC timeout"); the erroneous command is skipped as the driver does.
   */
  submit(cmds: readonly Uint32Array[]): void {
    const words = new Uint32Array(cmds.length * 4);
    cmds.forEach((c, i) => words.set(c.subarray(0, 4), i * 4));
    this.submitWords(words, cmds.length);
  }

  /** Issue a lone CMD_SYNC and wait for it. */
  sync(): void {
    this.pushAt(SYNC_WORDS, 0);
    this.kick();
  }

  /**
   * Push the first `count` commands held as words in `words`, in chunks of
   * {@link CMDQ_BATCH} each followed by a waited-for CMD_SYNC (the iommufd invalidation path).
   */
  submitWords(words: Uint32Array, count: number): void {
    for (let i = 0; i < count; i += CMDQ_BATCH) {
      const end = Math.min(count, i + CMDQ_BATCH);
      this.pushRun(words, i, end);
      this.pushAt(SYNC_WORDS, 0);
      this.kick();
    }
  }

  /** Push commands [from, to) of `words`: block copies into the ring when it is mapped. */
  private pushRun(words: Uint32Array, from: number, to: number): void {
    const ring = this.ringWords;
    const size = 2 ** CMDQ_LOG2;
    if (!ring || qUsed(this.prod, this.consShadow, CMDQ_LOG2) + (to - from) >= size) {
      for (let k = from; k < to; k++) this.pushAt(words, k * 4);
      return;
    }
    let k = from;
    while (k < to) {
      const slot = this.prod & (size - 1);
      const n = Math.min(to - k, size - slot); // up to the ring's end, then wrap
      ring.set(words.subarray(k * 4, (k + n) * 4), slot * 4);
      this.prod = qAdvance(this.prod, n, CMDQ_LOG2);
      k += n;
    }
    this.submitted += to - from;
  }

  private pushAt(w: Uint32Array, at: number): void {
    // The queue is consumed on every PROD write, so it is empty after each kick: a chunk of
    // 64 always fits, and CONS need not be read per command.
    if (qUsed(this.prod, this.consShadow, CMDQ_LOG2) >= 2 ** CMDQ_LOG2 - 1) this.kick();
    const slot = this.prod & (2 ** CMDQ_LOG2 - 1);
    const ring = this.ringWords;
    if (ring) {
      const i = slot * 4;
      ring[i] = w[at]!;
      ring[i + 1] = w[at + 1]!;
      ring[i + 2] = w[at + 2]!;
      ring[i + 3] = w[at + 3]!;
    } else {
      const addr = this.cmdq + slot * 16;
      const mem = this.phys.mem;
      mem.write32(addr, w[at]!);
      mem.write32(addr + 4, w[at + 1]!);
      mem.write32(addr + 8, w[at + 2]!);
      mem.write32(addr + 12, w[at + 3]!);
    }
    this.prod = qAdvance(this.prod, 1, CMDQ_LOG2);
    this.submitted++;
  }

  /** Publish PROD and wait (the hardware consumes synchronously) until CONS catches up. */
  kick(): void {
    const b = this.hw.bank;
    b.write(R.CMDQ_PROD.spec.offset, 4, this.prod);
    for (let tries = 0; tries < 4; tries++) {
      const cons = b.read(R.CMDQ_CONS.spec.offset, 4);
      this.consShadow = CONS_RD.get(cons);
      if (qEmpty(this.prod, this.consShadow, CMDQ_LOG2)) return;
      if (!this.hw.cmdqErrorActive) break;
      // CERROR: replace the bad command with a CMD_SYNC and acknowledge (skip-error routine).
      const addr = this.cmdq + qIndex(cons, CMDQ_LOG2) * 16;
      const bad = [0, 1, 2, 3].map((i) => this.phys.mem.read32(addr + i * 4));
      this.log.guestError(this.hw.bank.source, `CMDQ error ${R.CMDQ_CONS.f.ERR.get(cons)} on command ${bad.map((x) => x.toString(16)).join(' ')}; skipped`);
      const sync = cmdWords(Op.SYNC, 0, 0, 0, SYNC_CS_SEV);
      for (let i = 0; i < 4; i++) this.phys.mem.write32(addr + i * 4, sync[i]!);
      b.write(R.GERRORN.spec.offset, 4, b.read(R.GERROR.spec.offset, 4));
    }
    throw new ErrnoError(Errno.ETIMEDOUT, 'CMD_SYNC timeout');
  }

  /** Event queue interrupt: drain every record to `onEvent`. */
  private drainEvents(): void {
    const b = this.hw.bank;
    const prod = b.read(R.EVENTQ_PROD.spec.offset, 4);
    const rec = this.eventRecord;
    while (!qEmpty(R.EVENTQ_PROD.f.WR.get(prod), this.evtCons, EVTQ_LOG2)) {
      const addr = this.evtq + qIndex(this.evtCons, EVTQ_LOG2) * 32;
      for (let i = 0; i < 8; i++) rec[i] = this.phys.mem.read32(addr + i * 4);
      this.evtCons = qAdvance(this.evtCons, 1, EVTQ_LOG2);
      this.onEvent(rec);
    }
    // Acknowledge overflow by copying the flag.
    b.write(R.EVENTQ_CONS.spec.offset, 4, R.EVENTQ_CONS.f.OVACKFLG.set(this.evtCons, R.EVENTQ_PROD.f.OVFLG.get(prod)));
  }
}

const SYNC_WORDS = cmdWords(Op.SYNC, 0, 0, 0, SYNC_CS_SEV);

/** Build a command from the fields the kernel uses (dword0 high word, dword1 low word, CS). */
function cmdWords(op: number, vmidOrNone: number, sid: number, d1lo: number, cs: number): Uint32Array {
  const w = new Uint32Array(4);
  D0.OPCODE.setWords(w, 0, op);
  D0.SYNC_CS.setWords(w, 0, cs);
  const bySid = op === Op.CFGI_STE || op === Op.CFGI_STE_RANGE || op === Op.CFGI_CD || op === Op.CFGI_CD_ALL || op === Op.ATC_INV;
  if (bySid) D0.SID.setWords(w, 0, sid);
  else D0.VMID.setWords(w, 0, vmidOrNone);
  w[2] = d1lo; // dword1's low word: the RANGE / LEAF bits the kernel's commands use
  return w;
}
