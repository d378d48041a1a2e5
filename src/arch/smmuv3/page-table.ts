/**
 * Arm VMSAv8-64 translation tables (AArch64 long-descriptor format, 48-bit output addresses,
 * no 52-bit LPA): the descriptor formats and the table walker the SMMU uses for stage 1 and
 * stage 2.
 *
 * Geometry. A granule of 2^P bytes (P = 12, 14, 16 for 4, 16, 64 KiB) resolves P − 3 input
 * bits per level (9, 11, 13); level 3 is the last and maps pages. An input address space of
 * N bits needs ceil((N − P) / (P − 3)) levels, so the walk starts at level 4 − levels, and the
 * start-level table may be partial (16 KiB and 64 KiB granules with 48 bits). Stage 2 may
 * instead start at the level its SL0 field names, with up to 16 concatenated tables there.
 *
 * Descriptor (64-bit little-endian), bits [1:0]:
 * - 0b00 / 0b10: invalid (translation fault);
 * - level < 3: 0b11 table (next-level table address in [47:P]), 0b01 block where the granule
 *   allows one (4 KiB: level 1 = 1 GiB and level 2 = 2 MiB; 16 KiB: level 2 = 32 MiB;
 *   64 KiB: level 2 = 512 MiB), otherwise a translation fault;
 * - level 3: 0b11 page, 0b01 reserved (translation fault).
 * A leaf's output address is bits [47:blockShift]; bits [51:48] must be zero without LPA.
 *
 * Leaf attributes. Stage 1: AttrIndx[4:2], NS[5], AP[7:6] (AP[2] = bit 7 read-only, AP[1] =
 * bit 6 EL0 access), SH[9:8], AF[10], nG[11]; DBM[51], Contiguous[52], PXN[53], UXN[54].
 * Stage 1 table descriptors carry APTable[62:61] (bit 62: no writes below this table).
 * Stage 2: MemAttr[5:2], S2AP[7:6] (bit 6 read, bit 7 write), SH[9:8], AF[10];
 * Contiguous[52], XN[54:53].
 *
 * Faults are checked in the architectural order: translation (invalid descriptor or input
 * out of range), address size (output or table address beyond the OA size), access flag
 * (AF = 0 on the leaf; hardware AF update is not modelled), permission.
 *
 * Not modelled, because no device access in the stack depends on them: the Contiguous hint
 * (a walker may always ignore it), execute-never, shareability and memory attributes (the
 * model's memory is coherent), DBM dirty-state updates, NS/NSTable.
 *
 * The walker is a hot path: it allocates nothing, uses no bigint, and writes into a
 * caller-owned {@link WalkResult}.
 */

/** A translation granule in bytes. */
export type Granule = 4096 | 16384 | 65536;

/** No fault: the {@link WalkResult} holds a translation. */
export const FAULT_NONE = 0;
/** Invalid descriptor, disallowed block, reserved level-3 encoding, or input out of range. */
export const FAULT_TRANSLATION = 1;
/** The leaf's AF bit is 0. */
export const FAULT_ACCESS = 2;
/** The leaf does not permit the requested access. */
export const FAULT_PERMISSION = 3;
/** An output, table or TTB address lies beyond the configured output address size. */
export const FAULT_ADDR_SIZE = 4;
/** A descriptor fetch failed (external abort on the table walk). */
export const FAULT_WALK_ABORT = 5;
/**
 * A descriptor fetch failed because its stage-2 translation faulted (nested stage-1 walk);
 * {@link WalkResult.s2Fault} holds the stage-2 fault kind and {@link WalkResult.faultAddress}
 * the IPA of the descriptor.
 */
export const FAULT_S2_ON_TABLE = 6;

/** Read access / permission bit. */
export const ACCESS_R = 1;
/** Write access / permission bit. */
export const ACCESS_W = 2;

/** Shape of one walk. */
export interface WalkConfig {
  /** Stage 1 (CD) or stage 2 (STE) attribute format. */
  stage: 1 | 2;
  granule: Granule;
  /** Input address size: 64 − TxSZ. */
  inputBits: number;
  /** Output address size (IPS / S2PS decoded); values above {@link MAX_OA_BITS} act as 48. */
  oasBits: number;
  /** Address of the start-level table (for a nested stage 1, an IPA). */
  ttb: number;
  /**
   * Start level. Default: 4 − ceil((inputBits − P) / (P − 3)). Stage 2 passes the level its
   * SL0 names; a start level below the default uses concatenated tables there (the index is
   * not wrapped at the start level).
   */
  startLevel?: number;
  /**
   * Stage 1 only: treat the access as unprivileged (EL0), so a leaf with AP[1] = 0 grants no
   * access at all. Default false: the SMMU's accesses here are privileged-agnostic.
   */
  unprivileged?: boolean;
}

/**
 * Source of descriptors for a walk.
 *
 * A plain reader (physical memory) returns −1 when the fetch fails (e.g. outside RAM); the
 * walker reports {@link FAULT_WALK_ABORT}.
 *
 * A nested reader (a stage-1 walk whose table addresses are IPAs) translates each address
 * through stage 2 first. When that translation faults it returns −1 and sets
 * {@link lastFault} to the stage-2 fault kind (non-zero); the walker then reports
 * {@link FAULT_S2_ON_TABLE} with the kind copied to {@link WalkResult.s2Fault}. The walker
 * reads `lastFault` only right after a failed fetch, so a reader that can fail for other
 * reasons must set it to 0 for those failures (or the caller must reset it before the walk).
 */
export interface TableReader {
  /** The unsigned 32-bit little-endian word at `addr` (0..2^32 − 1), or −1 if the fetch fails. */
  readTableWord(addr: number): number;
  /** Stage-2 fault kind behind the last failed fetch, 0 or absent for a plain abort. */
  lastFault?: number;
  /**
   * Optional: the 64-bit descriptor at the 8-byte aligned `addr` in one call: its low word as
   * {@link readTableWord} would return it (−1: the fetch failed, as if either word's had), the
   * high word left in {@link descHi}. What two readTableWord calls give, for half the calls.
   */
  readTableDesc?(addr: number): number;
  /** The high word of the descriptor the last successful {@link readTableDesc} read. */
  descHi?: number;
}

/** Outcome of {@link walk}; reuse one instance per caller so that walks do not allocate. */
export class WalkResult {
  /** One of the `FAULT_*` constants. */
  fault = FAULT_NONE;
  /** Level of the leaf, or of the lookup that faulted. */
  level = 0;
  /** Output address of the input (block base + offset). Also set on a permission fault. */
  outputAddress = 0;
  /** Bytes the leaf maps (page or block size). Also set on a permission fault. */
  blockSize = 0;
  /** Output address of the start of the leaf's page or block. Also set on a permission fault. */
  blockBase = 0;
  /** Permissions the leaf grants: {@link ACCESS_R} | {@link ACCESS_W}. Also set on a permission fault. */
  perm = 0;
  /** Stage-1 nG: the translation belongs to one ASID. Always false for stage 2. */
  nG = false;
  /** For {@link FAULT_WALK_ABORT} and {@link FAULT_S2_ON_TABLE}: address of the descriptor whose fetch failed. */
  faultAddress = 0;
  /** For {@link FAULT_S2_ON_TABLE}: the stage-2 fault kind the reader recorded. */
  s2Fault = FAULT_NONE;
  /** Address of the last descriptor fetched (or attempted): the leaf's, after a leaf was reached. */
  descAddress = 0;
  /** Raw leaf descriptor, low word (valid when a leaf was reached). */
  descLo = 0;
  /** Raw leaf descriptor, high word (valid when a leaf was reached). */
  descHi = 0;
}

const TWO32 = 0x1_0000_0000;
/** Largest output address size: 48 bits (no 52-bit LPA). */
const MAX_OA_BITS = 48;

/** 2^n for n in 0..64, so the walk divides by a table entry instead of calling `2 **`. */
const POW2 = new Float64Array(65);
for (let i = 0; i <= 64; i++) POW2[i] = 2 ** i;

// Descriptor bits in the low word.
const D_VALID = 1 << 0;
const D_TABLE = 1 << 1; // at levels < 3; at level 3 the same bit marks a page
const D_AP1 = 1 << 6; // stage 1: EL0 access; stage 2 (S2AP[0]): read
const D_AP2 = 1 << 7; // stage 1: read-only; stage 2 (S2AP[1]): write
const D_AF = 1 << 10;
const D_NG = 1 << 11;
// Descriptor bits in the high word (bit n of the descriptor is bit n − 32 here).
const H_OA_MASK = 0x000f_ffff; // descriptor bits [51:32]: OA[47:32] plus the RES0 [51:48]
const H_APTABLE_RO = 1 << 30; // bit 62, stage-1 table descriptors

/** log2 of a granule, or 0 for anything else. */
function granuleShift(granule: number): number {
  return granule === 4096 ? 12 : granule === 16384 ? 14 : granule === 65536 ? 16 : 0;
}

/**
 * Default start level for an input size: 4 − number of levels needed. May be out of 0..3 for
 * sizes no walk can cover (the walker then reports a translation fault).
 */
export function defaultStartLevel(granule: Granule, inputBits: number): number {
  const p = granuleShift(granule);
  return 4 - Math.ceil((inputBits - p) / (p - 3));
}

/** Size of a block at `level`, or 0 when the granule has no block descriptors there. */
function blockSizeAt(granule: Granule, level: number): number {
  const p = granuleShift(granule);
  if (level === 3) return POW2[p]!;
  const ok = p === 12 ? level === 1 || level === 2 : level === 2;
  return ok ? POW2[p + (p - 3) * (3 - level)]! : 0;
}

/**
 * Translate `inputAddress` through the tables `cfg` describes, for `access` (a mask of
 * {@link ACCESS_R} / {@link ACCESS_W}; 0 = look up without a permission check). Fills and
 * returns `out`.
 */
export function walk(cfg: WalkConfig, reader: TableReader, inputAddress: number, access: number, out: WalkResult): WalkResult {
  out.fault = FAULT_NONE;
  out.outputAddress = 0;
  out.blockSize = 0;
  out.blockBase = 0;
  out.perm = 0;
  out.nG = false;
  out.faultAddress = 0;
  out.s2Fault = FAULT_NONE;
  out.descAddress = 0;
  out.descLo = 0;
  out.descHi = 0;

  const p = granuleShift(cfg.granule);
  const stride = p - 3;
  const start = cfg.startLevel ?? 4 - Math.ceil((cfg.inputBits - p) / stride);
  out.level = start;
  const inputBits = cfg.inputBits;
  if (
    p === 0 || !(start >= 0 && start <= 3) || !(inputBits > p && inputBits <= 64) ||
    !(inputAddress >= 0 && inputAddress < POW2[inputBits]!) || !Number.isInteger(inputAddress)
  ) {
    out.fault = FAULT_TRANSLATION;
    return out;
  }
  // Without LPA an OA size above 48 bits behaves as 48 (the largest implemented size).
  const oaLimit = POW2[Math.min(cfg.oasBits, MAX_OA_BITS)]!;
  let table = cfg.ttb;
  if (!(table < oaLimit)) {
    out.fault = FAULT_ADDR_SIZE;
    return out;
  }
  const indexMask = POW2[stride]! - 1;
  // The input address as 32-bit halves: a level's index is then integer shifts and a mask (a
  // `%` of a number above 2^31 is a floating-point remainder, a library call).
  const inLo = inputAddress >>> 0;
  const inHi = Math.floor(inputAddress / TWO32);
  const tableMask = (TWO32 - POW2[p]!) >>> 0; // table address bits [31:P] of the low word
  const stage1 = cfg.stage === 1;
  const pairs = reader.readTableDesc !== undefined;
  let writable = true; // stage-1 APTable[1] seen on the way down clears this

  for (let level = start; level <= 3; level++) {
    out.level = level;
    const shift = p + stride * (3 - level);
    let index: number;
    if (level === start) {
      // The start level is not wrapped: its table may be partial or concatenated.
      index = Math.floor(inputAddress / POW2[shift]!);
    } else if (shift < 32) {
      index = ((inLo >>> shift) | (shift === 0 ? 0 : inHi << (32 - shift))) & indexMask;
    } else {
      index = (inHi >>> (shift - 32)) & indexMask;
    }
    const descAddr = table + index * 8;
    out.descAddress = descAddr;
    let lo: number;
    let hi: number;
    // `& 7` keeps the low bits of any address below 2^53 (no floating-point `%`).
    if (pairs && (descAddr & 7) === 0) {
      lo = reader.readTableDesc!(descAddr);
      hi = lo < 0 ? -1 : reader.descHi!;
    } else {
      lo = reader.readTableWord(descAddr);
      hi = lo < 0 ? -1 : reader.readTableWord(descAddr + 4);
    }
    if (hi < 0) {
      const s2 = reader.lastFault;
      out.faultAddress = descAddr;
      if (s2 !== undefined && s2 !== FAULT_NONE) {
        out.fault = FAULT_S2_ON_TABLE;
        out.s2Fault = s2;
      } else {
        out.fault = FAULT_WALK_ABORT;
      }
      return out;
    }
    if ((lo & D_VALID) === 0) {
      out.fault = FAULT_TRANSLATION;
      return out;
    }
    if (level < 3 && (lo & D_TABLE) !== 0) {
      table = (hi & H_OA_MASK) * TWO32 + ((lo & tableMask) >>> 0);
      if (!(table < oaLimit)) {
        out.fault = FAULT_ADDR_SIZE;
        return out;
      }
      if (stage1 && (hi & H_APTABLE_RO) !== 0) writable = false;
      continue;
    }
    // A leaf: a page at level 3 (0b11), or a block (0b01) at a level that allows one.
    if (level === 3 ? (lo & D_TABLE) === 0 : blockSizeAt(cfg.granule, level) === 0) {
      out.fault = FAULT_TRANSLATION;
      return out;
    }
    const size = POW2[shift]!;
    const oaLo = (lo & ((TWO32 - size) >>> 0)) >>> 0; // every leaf shift is below 32
    const base = (hi & H_OA_MASK) * TWO32 + oaLo;
    out.descLo = lo >>> 0;
    out.descHi = hi >>> 0;
    if (!(base + size <= oaLimit)) {
      out.fault = FAULT_ADDR_SIZE;
      return out;
    }
    if ((lo & D_AF) === 0) {
      out.fault = FAULT_ACCESS;
      return out;
    }
    let perm: number;
    if (stage1) {
      if (cfg.unprivileged === true && (lo & D_AP1) === 0) perm = 0;
      else perm = ACCESS_R | ((lo & D_AP2) === 0 && writable ? ACCESS_W : 0);
      out.nG = (lo & D_NG) !== 0;
    } else {
      perm = ((lo & D_AP1) !== 0 ? ACCESS_R : 0) | ((lo & D_AP2) !== 0 ? ACCESS_W : 0);
    }
    out.perm = perm;
    out.blockSize = size;
    out.blockBase = base;
    out.outputAddress = base + (inputAddress - Math.floor(inputAddress / size) * size);
    if ((access & perm) !== access) out.fault = FAULT_PERMISSION;
    return out;
  }
  // Unreachable: level 3 always returns.
  out.fault = FAULT_TRANSLATION;
  return out;
}
