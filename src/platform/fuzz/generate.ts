/**
 * Structure-aware generation of hostile guest operations, seeded and reproducible. Besides
 * random accesses of every width and alignment in and around the SMMU and CMDQV apertures, it
 * emits the sequences that drive the devices' state machines (queue bases, enables, doorbells,
 * PROD jumps past the ring) and writes command rings, STEs and CDs with legal, illegal and
 * malformed contents, so the fuzzer reaches deep states instead of bouncing off the first check.
 */

import { buildCommand, Op } from '../../arch/smmuv3/commands.js';
import * as R from '../../arch/smmuv3/registers.js';
import * as C from '../../arch/tegra241-cmdqv/registers.js';
import type { AccessSize } from '../../kit/memory-region.js';
import { mulberry32 } from '../../kit/prng.js';
import type { FuzzOp } from './ops.js';

/** Where the generated operations aim: the machine's layout. */
export interface FuzzTargets {
  readonly smmuBase: number;
  readonly cmdqvBase: number | undefined;
  readonly ramBase: number;
  readonly ramSize: number;
}

/** The part of guest RAM the generator places rings, tables and descriptors in. */
const AREA_BYTES = 0x40_0000;
const SIZES: readonly AccessSize[] = [1, 2, 4, 8];
const SMMU_REGISTERS = [
  R.CR0, R.CR1, R.CR2, R.GBPA, R.IRQ_CTRL, R.GERRORN, R.STRTAB_BASE, R.STRTAB_BASE_CFG,
  R.CMDQ_BASE, R.CMDQ_PROD, R.CMDQ_CONS, R.EVENTQ_BASE, R.EVENTQ_PROD, R.EVENTQ_CONS, R.GERROR,
].map((reg) => reg.spec.offset);
/** Offsets in the CMDQV aperture that drive its state machines. */
const CMDQV_OFFSETS: readonly number[] = [
  C.CONFIG.spec.offset, C.VI_INT_MASK.spec.offset, C.CMDQ_ALLOC_MAP.spec.offset, C.CMDQ_ALLOC_MAP.spec.offset + 4,
  C.vintfBlockOffset(0) + C.VINTF_CONFIG.spec.offset, C.vintfBlockOffset(0) + C.VINTF_SID_MATCH.spec.offset,
  C.vintfBlockOffset(0) + C.VINTF_SID_REPLACE.spec.offset,
  ...[0, 1].flatMap((q) => [
    C.vcmdqPage0Offset(q) + C.VCMDQ_PROD.spec.offset, C.vcmdqPage0Offset(q) + C.VCMDQ_CONS.spec.offset,
    C.vcmdqPage0Offset(q) + C.VCMDQ_CONFIG.spec.offset, C.vcmdqPage0Offset(q) + C.VCMDQ_GERRORN.spec.offset,
    C.vcmdqPage1Offset(q) + C.VCMDQ_BASE.spec.offset,
    C.lvcmdqPage0Offset(0, q) + C.VCMDQ_PROD.spec.offset, C.lvcmdqPage0Offset(0, q) + C.VCMDQ_CONFIG.spec.offset,
    C.lvcmdqPage0Offset(0, q) + C.VCMDQ_GERRORN.spec.offset, C.lvcmdqPage1Offset(0, q) + C.VCMDQ_BASE.spec.offset,
  ]),
];
const OPCODES: readonly number[] = [
  Op.TLBI_NH_VA, Op.TLBI_NH_ASID, Op.TLBI_NH_VAA, Op.TLBI_NH_ALL, Op.TLBI_S12_VMALL, Op.TLBI_S2_IPA, Op.TLBI_NSNH_ALL,
  Op.SYNC, Op.CFGI_STE, Op.CFGI_STE_RANGE, Op.CFGI_CD, Op.CFGI_CD_ALL, Op.ATC_INV, Op.PREFETCH_CFG, Op.TLBI_EL2_ALL,
];

/** A seeded generator of guest operations against `targets`. */
export class OpGenerator {
  private readonly random: () => number;

  constructor(
    seed: number,
    private readonly targets: FuzzTargets,
  ) {
    this.random = mulberry32(seed);
  }

  private int(n: number): number {
    return Math.floor(this.random() * n);
  }

  private pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  private u32(): number {
    return this.int(2 ** 32);
  }

  /** An address in the fuzz area of guest RAM, aligned to `align`. */
  private areaAddr(align: number): number {
    return this.targets.ramBase + Math.floor(this.int(AREA_BYTES) / align) * align;
  }

  /** A value a register might plausibly get: small, a queue base (address | log2size), or anything. */
  private value(size: AccessSize): bigint {
    const r = this.random();
    let v: bigint;
    if (r < 0.3) v = BigInt(this.int(4));
    else if (r < 0.6) v = BigInt(this.areaAddr(32)) | BigInt(this.int(21));
    else if (r < 0.7) v = BigInt(this.targets.ramBase + this.targets.ramSize - 32 + this.int(64)) | 5n; // at or past RAM end
    else v = (BigInt(this.u32()) << 32n) | BigInt(this.u32());
    return size === 8 ? v : v & ((1n << BigInt(size * 8)) - 1n);
  }

  private access(base: number, offsets: readonly number[], span: number, out: FuzzOp[]): void {
    let off = this.random() < 0.75 ? this.pick(offsets) : this.int(span);
    if (this.random() < 0.1) off += this.int(8) - 4; // misaligned, and just outside
    const size = this.pick(SIZES);
    if (this.random() < 0.6) out.push({ op: 'write', addr: base + off, size, value: `0x${this.value(size).toString(16)}` });
    else out.push({ op: 'read', addr: base + off, size });
  }

  /** One command: legal, legal with random fields, an unknown opcode, or random words. */
  private command(): number[] {
    const r = this.random();
    if (r < 0.55) {
      const w = buildCommand(this.pick(OPCODES), {
        asid: this.int(4) === 0 ? this.int(0x10000) : this.int(4),
        vmid: this.int(4),
        sid: this.int(4) === 0 ? this.u32() & 0xfffff : this.int(0x20),
        addr: this.int(0x1000) * 4096,
        num: this.int(32),
        scale: this.int(8),
        tg: this.int(4),
        leaf: this.random() < 0.5,
        range: this.int(32),
        cs: this.int(3),
      });
      return [...w];
    }
    if (r < 0.8) return [this.int(0x80), this.u32(), this.u32(), this.u32()];
    return [this.u32(), this.u32(), this.u32(), this.u32()];
  }

  /**
   * Fill part of a would-be ring, STE/CD table or page table: commands, descriptor-shaped words,
   * or translation-table descriptors (valid table/page entries pointing into the area, at
   * themselves (a loop), misaligned or out of RAM).
   */
  private memory(out: FuzzOp[]): void {
    const gpa = this.areaAddr(16);
    const n = 1 + this.int(16);
    const words: number[] = [];
    const kind = this.random();
    for (let i = 0; i < n; i++) {
      if (kind < 0.5) words.push(...this.command());
      // STE/CD-ish: V bit and config fields set, pointers into (or out of) RAM.
      else if (kind < 0.75) words.push(1 | (this.int(8) << 1), this.int(4), this.areaAddr(64) >>> 0, this.int(2) ? 0 : this.u32());
      else {
        // Two 64-bit descriptors: bits [1:0] = 0b11 (table/page) or 0b01 (block), an output address.
        const target = this.pick([this.areaAddr(4096), gpa & ~0xfff, this.areaAddr(8), this.targets.ramBase + this.targets.ramSize, this.u32() * 4096]);
        for (let d = 0; d < 2; d++) words.push(((target % 2 ** 32) & ~0xfff) | this.pick([3, 3, 1, 0, 0x403, 0x703]), Math.floor(target / 2 ** 32) & 0xfffff);
      }
    }
    out.push({ op: 'ram', gpa, words });
  }

  /** A bring-up sequence: a queue base in RAM, enables, a doorbell (sometimes past the ring). */
  private sequence(out: FuzzOp[]): void {
    const t = this.targets;
    const log2 = this.int(4) === 0 ? this.int(32) : 2 + this.int(6);
    const base = BigInt(this.areaAddr(4096)) | BigInt(log2);
    const prod = this.int(4) === 0 ? this.u32() : this.int(2 ** Math.min(log2 + 1, 20));
    const w = (addr: number, size: AccessSize, v: bigint | number) => out.push({ op: 'write', addr, size, value: `0x${BigInt(v).toString(16)}` });
    if (t.cmdqvBase === undefined || this.random() < 0.4) {
      w(t.smmuBase + R.CMDQ_BASE.spec.offset, 8, base);
      w(t.smmuBase + R.CR0.spec.offset, 4, this.int(4) === 0 ? this.int(32) : 0b1101);
      w(t.smmuBase + R.CMDQ_PROD.spec.offset, 4, prod);
      return;
    }
    const q = this.int(2);
    const cv = t.cmdqvBase;
    w(cv + C.CONFIG.spec.offset, 4, this.int(4) === 0 ? this.u32() : 1);
    w(cv + C.CMDQ_ALLOC_MAP.spec.offset + 4 * q, 4, this.int(4) === 0 ? this.u32() : C.allocMapValue(0, q, true));
    w(cv + C.vintfBlockOffset(0) + C.VINTF_CONFIG.spec.offset, 4, this.int(4) === 0 ? this.u32() : 1 | (this.int(4) << 1));
    w(cv + C.lvcmdqPage1Offset(0, q) + C.VCMDQ_BASE.spec.offset, 8, base);
    w(cv + C.lvcmdqPage0Offset(0, q) + C.VCMDQ_CONFIG.spec.offset, 4, 1);
    w(cv + C.lvcmdqPage0Offset(0, q) + C.VCMDQ_PROD.spec.offset, 4, prod);
  }

  /** Append the next burst of operations (one to a few) to `out`. */
  next(out: FuzzOp[]): void {
    const t = this.targets;
    const r = this.random();
    if (r < 0.35) this.access(t.smmuBase, SMMU_REGISTERS, 0x20000, out);
    else if (r < 0.65 && t.cmdqvBase !== undefined) this.access(t.cmdqvBase, CMDQV_OFFSETS, 0x50000, out);
    else if (r < 0.8) this.memory(out);
    else if (r < 0.9) this.sequence(out);
    else if (r < 0.92) out.push({ op: 'dma', iova: this.int(4) === 0 ? this.u32() * 4096 : this.int(0x1000) * 4096 + this.int(4096), write: this.random() < 0.5 });
    else if (r < 0.995) out.push({ op: 'loop' });
    else out.push({ op: 'reset' });
  }

  /** The first `count` operations of this seed. */
  take(count: number): FuzzOp[] {
    const out: FuzzOp[] = [];
    while (out.length < count) this.next(out);
    out.length = count;
    return out;
  }
}
