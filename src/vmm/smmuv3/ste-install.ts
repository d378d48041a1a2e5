/**
 * Guest stream table lookup and the nested-STE data the accelerated SMMUv3 hands to the host
 * (docs/reference/qemu-accel-smmuv3.md §10, docs/reference/iommufd-uapi.md §9). The stream table lives in guest memory; a
 * lookup that fails is reported as the event the architecture names, and the accel path then
 * installs nothing, as QEMU's `smmu_find_ste` + `smmuv3_accel_install_ste` do.
 */

import { Evt, NESTED_STE_MASK, STE, STE_BYTES, STE_CFG_BYPASS, STE_CFG_S1 } from '../../arch/smmuv3/structures.js';
import { Field } from '../../kit/bits.js';
import type { WordWindow } from '../../kit/sparse-memory.js';
import { iommu_hwpt_arm_smmuv3 } from '../../uapi/iommufd.js';

/** Guest-physical memory as the SMMU's table walker sees it (32-bit little-endian words). */
export interface GuestMemory {
  read32(gpa: number): number;
  write32(gpa: number, v: number): void;
  /**
   * Optional fast path: read `count` words at `gpa` into `out[at..]`; returns false when it
   * cannot (then the caller falls back to read32).
   */
  readWords?(gpa: number, out: Uint32Array, at: number, count: number): boolean;
  /**
   * Optional fast path: map the RAM at the word-aligned `gpa` into `win` for direct reads (the
   * command queue walk); false when it cannot (then the caller uses the reads above).
   */
  mapWords?(gpa: number, win: WordWindow): boolean;
}

/** STRTAB_BASE_CFG.FMT: 2-level stream table. */
export const STRTAB_FMT_2LVL = 1;

/** Bytes per STE, and its log2 (a linear table of 2^n STEs spans 2^(n + STE_BYTES_LOG2) bytes). */
const STE_BYTES_LOG2 = Math.log2(STE_BYTES);
/** Bytes per level-1 stream table descriptor. */
const L1STD_BYTES = 8;
/** STE.Config bit 2: set for bypass and the translating configurations, clear for abort. */
const STE_CFG_NOT_ABORT = 0b100;

/** Level-1 stream table descriptor (8 bytes): Span [4:0], L2Ptr [51:6]. */
const L1STD = {
  SPAN: new Field('Span', 0, 5),
  L2PTR: new Field('L2Ptr', 6, 46),
} as const;

/** The stream table registers, decoded. */
export interface StreamTable {
  /** STRTAB_BASE.ADDR as a byte address. */
  readonly base: number;
  /** STRTAB_BASE_CFG.LOG2SIZE. */
  readonly log2size: number;
  /** STRTAB_BASE_CFG.SPLIT. */
  readonly split: number;
  /** STRTAB_BASE_CFG.FMT. */
  readonly fmt: number;
  /** The implementation's StreamID width (IDR1.SIDSIZE). */
  readonly sidSize: number;
}

/** Hooks for the walk's trace points. */
export interface SteWalkTrace {
  twoLevel?(strtabBase: number, l1ptr: number, l1Off: number, l2ptr: number, l2Off: number, maxL2: number): void;
  fetch?(addr: number): void;
}

/** Outcome of a lookup: the first four STE words, or the event the walk would record. */
export type SteLookup =
  | { readonly ok: true; readonly addr: number; readonly words: Uint32Array }
  | { readonly ok: false; readonly event: number; readonly addr: number };

function alignDown(a: number, shift: number): number {
  const m = 2 ** shift;
  return Math.floor(a / m) * m;
}

/** Read `n` words at `gpa`; undefined when guest memory cannot be read (an external abort). */
function readWords(mem: GuestMemory, gpa: number, n: number): Uint32Array | undefined {
  const w = new Uint32Array(n);
  try {
    for (let i = 0; i < n; i++) w[i] = mem.read32(gpa + 4 * i);
  } catch {
    return undefined;
  }
  return w;
}

/**
 * Find the STE of `sid` (linear or 2-level table). The table base is aligned down to the
 * table size, as QEMU does. A 2-level descriptor with Span = s covers 2^(s-1) STEs (the
 * architecture's definition; QEMU's bound is looser, see the module report).
 */
export function findSte(mem: GuestMemory, st: StreamTable, sid: number, trace: SteWalkTrace = {}): SteLookup {
  const log2 = st.log2size;
  if (sid >= 2 ** Math.min(log2, st.sidSize)) return { ok: false, event: Evt.C_BAD_STREAMID, addr: 0 };
  let addr: number;
  if (st.fmt === STRTAB_FMT_2LVL) {
    const shift = Math.max(5, log2 - st.split - 1 + 3);
    const base = alignDown(st.base, shift);
    const l1Off = Math.floor(sid / 2 ** st.split);
    const l2Off = sid % 2 ** st.split;
    const l1ptr = base + l1Off * L1STD_BYTES;
    const d = readWords(mem, l1ptr, 2);
    if (!d) return { ok: false, event: Evt.F_STE_FETCH, addr: l1ptr };
    const span = L1STD.SPAN.getWords(d[0]!, d[1]!);
    if (span === 0) return { ok: false, event: Evt.C_BAD_STREAMID, addr: l1ptr };
    const l2ptr = L1STD.L2PTR.getWords(d[0]!, d[1]!) * 2 ** L1STD.L2PTR.lsb;
    const maxL2 = 2 ** (span - 1) - 1;
    trace.twoLevel?.(st.base, l1ptr, l1Off, l2ptr, l2Off, maxL2);
    if (l2Off > maxL2) return { ok: false, event: Evt.C_BAD_STE, addr: l1ptr };
    addr = l2ptr + l2Off * STE_BYTES;
  } else {
    addr = alignDown(st.base, log2 + STE_BYTES_LOG2) + sid * STE_BYTES;
  }
  trace.fetch?.(addr);
  const words = readWords(mem, addr, 4);
  if (!words) return { ok: false, event: Evt.F_STE_FETCH, addr };
  return { ok: true, addr, words };
}

/** What a guest STE asks the host for. */
export type SteKind = 'abort' | 'bypass' | 'translate' | 'invalid';

/**
 * Classify an STE as QEMU's accel install does: V = 0 or Config without bit 2 → abort;
 * Config = bypass → bypass; Config = S1 translate → translate; stage-2 and nested
 * configurations (not offered by a stage-1 vSMMU) → invalid.
 */
export function classifySte(w: Uint32Array): SteKind {
  const v = STE.V.getWords(w[0]!, w[1]!);
  const cfg = STE.CFG.getWords(w[0]!, w[1]!);
  if (!v || !(cfg & STE_CFG_NOT_ABORT)) return 'abort';
  if (cfg === STE_CFG_BYPASS) return 'bypass';
  if (cfg === STE_CFG_S1) return 'translate';
  return 'invalid';
}

/** The 16-byte `iommu_hwpt_arm_smmuv3` for a guest STE's first two dwords, masked. */
export function nestedSteData(w: Uint32Array): { data: Uint8Array; ste0: bigint; ste1: bigint } {
  const m = NESTED_STE_MASK;
  const lo0 = (w[0]! & m[0]) >>> 0;
  const hi0 = (w[1]! & m[1]) >>> 0;
  const lo1 = (w[2]! & m[2]) >>> 0;
  const hi1 = (w[3]! & m[3]) >>> 0;
  const ste0 = (BigInt(hi0) << 32n) | BigInt(lo0);
  const ste1 = (BigInt(hi1) << 32n) | BigInt(lo1);
  return { data: iommu_hwpt_arm_smmuv3.encode({ ste: [ste0, ste1] }), ste0, ste1 };
}

/** The pre-allocated abort and bypass HWPTs' STE data (docs/reference/qemu-accel-smmuv3.md §4.5 step 2). */
export const ABORT_STE_DATA = (): Uint8Array => iommu_hwpt_arm_smmuv3.encode({ ste: [1n, 0n] });
export const BYPASS_STE_DATA = (): Uint8Array => iommu_hwpt_arm_smmuv3.encode({ ste: [1n | (BigInt(STE_CFG_BYPASS) << 1n), 0n] });
