/**
 * Bit fields of registers and in-memory records.
 *
 * 64-bit convention (used across cmdqv):
 * - At API edges a 64-bit quantity is a `bigint` (register values, uAPI `__u64` fields).
 * - On hot paths a 64-bit quantity is two uint32 halves `lo`/`hi` (register files, command
 *   rings), and any field of at most 53 bits — which covers every physical/IOVA address the
 *   stack uses (≤ 52 bits) — is extracted as a plain `number`.
 * - 32-bit values are `number`s in the range [0, 2^32).
 */

const TWO32 = 0x1_0000_0000;

/** Low `n` bits set, for n in [0, 32], as an unsigned 32-bit number. */
export function ones32(n: number): number {
  return n >= 32 ? 0xffff_ffff : ((1 << n) >>> 0) - 1;
}

/**
 * A bit field: `width` bits starting at bit `lsb` of a 32- or 64-bit value.
 * Extract/deposit helpers so that call sites never write shifts by hand.
 */
export class Field {
  /** Highest bit covered by the field (inclusive). */
  readonly msb: number;
  /** Largest value the field can hold, as a number (exact for widths ≤ 53). */
  readonly max: number;
  private readonly m32: number;
  /** For fields straddling bit 32: multiplier of the high part and its mask (precomputed). */
  private readonly hiMul: number;
  private readonly hiMask: number;
  /** wordMask(0) and wordMask(1), precomputed for setWords. */
  private readonly wm0: number;
  private readonly wm1: number;
  /** 2^lsb: the byte unit of an address field (see {@link addressWords}). */
  private readonly unit: number;
  /**
   * setWords' constants (precomputed: it runs per command built and per event encoded): bits
   * of the field in the low word, 2^those bits, 2^(shift into the high word), whether any bit
   * lies in the high word.
   */
  private readonly lowBits: number;
  private readonly lowPow: number;
  private readonly hiShiftPow: number;
  private readonly inHi: boolean;

  constructor(
    readonly name: string,
    readonly lsb: number,
    readonly width: number,
  ) {
    if (!Number.isInteger(lsb) || !Number.isInteger(width) || lsb < 0 || width < 1 || lsb + width > 64) {
      throw new RangeError(`field ${name}: bits [${lsb + width - 1}:${lsb}] do not fit in 64 bits`);
    }
    this.msb = lsb + width - 1;
    this.max = 2 ** width - 1;
    this.m32 = ones32(Math.min(width, 32));
    this.hiMul = lsb < 32 ? 2 ** (32 - lsb) : 1;
    this.hiMask = this.msb >= 32 ? ones32(this.msb - 31) : 0;
    this.wm0 = this.wordMask(0);
    this.wm1 = this.wordMask(1);
    this.unit = 2 ** lsb;
    this.lowBits = Math.max(0, Math.min(32 - lsb, width));
    this.lowPow = 2 ** this.lowBits;
    this.hiShiftPow = 2 ** Math.max(0, lsb - 32);
    this.inHi = this.msb >= 32;
  }

  /**
   * An address field read in place from a 64-bit value's halves: the field's bits with the
   * bits below it as zero (e.g. a page-aligned VA whose field starts at bit 12); exact below 2^53.
   */
  addressWords(lo: number, hi: number): number {
    return this.getWords(lo, hi) * this.unit;
  }

  /** Mask of the field's bits within a 64-bit value. */
  get mask(): bigint {
    return ((1n << BigInt(this.width)) - 1n) << BigInt(this.lsb);
  }

  /** Mask of the field's bits within the low (`half` = 0) or high (1) 32-bit word. */
  wordMask(half: 0 | 1): number {
    const base = half * 32;
    const lo = Math.max(this.lsb, base);
    const hi = Math.min(this.msb, base + 31);
    if (lo > hi) return 0;
    return (ones32(hi - lo + 1) * 2 ** (lo - base)) >>> 0;
  }

  /** Extract from a 32-bit value (the field must lie in bits [31:0]). */
  get(value: number): number {
    return ((value >>> this.lsb) & this.m32) >>> 0;
  }

  /** Deposit `field` into a 32-bit value (the field must lie in bits [31:0]). */
  set(value: number, field: number): number {
    const m = this.m32 << this.lsb;
    return ((value & ~m) | ((field << this.lsb) & m)) >>> 0;
  }

  /** Extract from a 64-bit value held as halves; exact for fields of at most 53 bits. */
  getWords(lo: number, hi: number): number {
    const { lsb, msb } = this;
    if (msb < 32) return ((lo >>> lsb) & this.m32) >>> 0;
    if (lsb >= 32) return ((hi >>> (lsb - 32)) & this.m32) >>> 0;
    return (lo >>> lsb) + ((hi & this.hiMask) >>> 0) * this.hiMul;
  }

  /**
   * Deposit `field` (a number, at most 53 bits) into the 64-bit value held as `words[i]` (lo)
   * and `words[i + 1]` (hi).
   */
  setWords(words: Uint32Array, i: number, field: number): void {
    const lowPow = this.lowPow;
    if (this.lowBits > 0) {
      const m = this.wm0;
      const part = (field % lowPow) * this.unit;
      words[i] = ((words[i]! & ~m) | (part & m)) >>> 0;
    }
    if (this.inHi) {
      const m = this.wm1;
      const part = Math.floor(field / lowPow) * this.hiShiftPow;
      words[i + 1] = ((words[i + 1]! & ~m) | ((part % TWO32) & m)) >>> 0;
    }
  }

  /** Extract from a 64-bit bigint value. */
  getBig(value: bigint): bigint {
    return (value >> BigInt(this.lsb)) & ((1n << BigInt(this.width)) - 1n);
  }

  /** Deposit into a 64-bit bigint value. */
  setBig(value: bigint, field: bigint): bigint {
    const m = this.mask;
    return (value & ~m & 0xffff_ffff_ffff_ffffn) | ((field << BigInt(this.lsb)) & m);
  }
}

/** Split a 64-bit value into uint32 halves. */
export function splitU64(value: bigint): [lo: number, hi: number] {
  const v = BigInt.asUintN(64, value);
  return [Number(v & 0xffff_ffffn), Number(v >> 32n)];
}

/** Join uint32 halves into a 64-bit bigint. */
export function joinU64(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/** A number below 2^53 as uint32 halves (for addresses). */
export function numberToWords(value: number): [lo: number, hi: number] {
  return [value % TWO32 >>> 0, Math.floor(value / TWO32) >>> 0];
}

/** Halves to a number; exact while the value is below 2^53. */
export function wordsToNumber(lo: number, hi: number): number {
  return (hi >>> 0) * TWO32 + (lo >>> 0);
}

/** `0x`-prefixed, zero-padded hex of a 32-bit (`digits` = 8) or 64-bit (16) value. */
export function hex(value: number | bigint, digits = 8): string {
  return `0x${value.toString(16).padStart(digits, '0')}`;
}
