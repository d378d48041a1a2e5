/**
 * SMMUv3 in-memory structures: stream table entries (64 bytes) and context descriptors
 * (64 bytes), fields declared on their 64-bit words (Arm IHI 0070, as Linux's arm-smmu-v3.h
 * names them), and event records (32 bytes, docs/reference/smmuv3.md §6).
 */

import { Field } from '../../kit/bits.js';

/** Bytes of a stream table entry and of a context descriptor, and the 32-bit words they hold. */
export const STE_BYTES = 64;
export const CD_BYTES = 64;
export const STE_WORDS = STE_BYTES / 4;
export const CD_WORDS = CD_BYTES / 4;

/** STE word 0..3 fields. */
export const STE = {
  V: new Field('V', 0, 1),
  CFG: new Field('Config', 1, 3),
  S1FMT: new Field('S1Fmt', 4, 2),
  S1CTXPTR: new Field('S1ContextPtr', 6, 46),
  S1CDMAX: new Field('S1CDMax', 59, 5),
  // word 1
  S1DSS: new Field('S1DSS', 0, 2),
  S1CIR: new Field('S1CIR', 2, 2),
  S1COR: new Field('S1COR', 4, 2),
  S1CSH: new Field('S1CSH', 6, 2),
  MEV: new Field('MEV', 19, 1),
  S1STALLD: new Field('S1STALLD', 27, 1),
  EATS: new Field('EATS', 28, 2),
  STRW: new Field('STRW', 30, 2),
  SHCFG: new Field('SHCFG', 44, 2),
  // word 2
  S2VMID: new Field('S2VMID', 0, 16),
  S2T0SZ: new Field('S2T0SZ', 32, 6),
  S2SL0: new Field('S2SL0', 38, 2),
  S2IR0: new Field('S2IR0', 40, 2),
  S2OR0: new Field('S2OR0', 42, 2),
  S2SH0: new Field('S2SH0', 44, 2),
  S2TG: new Field('S2TG', 46, 2),
  S2PS: new Field('S2PS', 48, 3),
  S2AA64: new Field('S2AA64', 51, 1),
  S2ENDI: new Field('S2ENDI', 52, 1),
  S2AFFD: new Field('S2AFFD', 53, 1),
  S2PTW: new Field('S2PTW', 54, 1),
  S2S: new Field('S2S', 57, 1),
  S2R: new Field('S2R', 58, 1),
  // word 3
  S2TTB: new Field('S2TTB', 4, 48),
} as const;

/** STE.Config values. */
export const STE_CFG_ABORT = 0b000;
export const STE_CFG_BYPASS = 0b100;
export const STE_CFG_S1 = 0b101;
export const STE_CFG_S2 = 0b110;
export const STE_CFG_NESTED = 0b111;

/** STE.EATS values: ATS translation requests aborted, or fully translated. */
export const STE_EATS_ABT = 0b00;
export const STE_EATS_TRANS = 0b01;

/**
 * STE fields a guest may set in a nested HWPT (docs/reference/iommufd-uapi.md §9): in dword 0 V, Config,
 * S1Fmt, S1ContextPtr and S1CDMax; in dword 1 S1DSS, S1CIR, S1COR, S1CSH, S1STALLD and EATS.
 */
export const STE_NESTED_FIELDS = {
  dword0: [STE.V, STE.CFG, STE.S1FMT, STE.S1CTXPTR, STE.S1CDMAX],
  dword1: [STE.S1DSS, STE.S1CIR, STE.S1COR, STE.S1CSH, STE.S1STALLD, STE.EATS],
} as const;

const orMasks = (fields: readonly Field[]): bigint => fields.reduce((m, f) => m | f.mask, 0n);

/** The nested-STE masks as 64-bit dword masks (0xF80F_FFFF_FFFF_FFFF, 0x3800_00FF). */
export const STE_NESTED_MASK_D0: bigint = orMasks(STE_NESTED_FIELDS.dword0);
export const STE_NESTED_MASK_D1: bigint = orMasks(STE_NESTED_FIELDS.dword1);

/** The same masks as 32-bit words 0..3 (dword 0 low, high; dword 1 low, high). */
export const NESTED_STE_MASK: readonly [number, number, number, number] = [
  Number(STE_NESTED_MASK_D0 & 0xffff_ffffn),
  Number(STE_NESTED_MASK_D0 >> 32n),
  Number(STE_NESTED_MASK_D1 & 0xffff_ffffn),
  Number(STE_NESTED_MASK_D1 >> 32n),
];

/** CD word 0..3 fields. */
export const CD = {
  T0SZ: new Field('T0SZ', 0, 6),
  TG0: new Field('TG0', 6, 2),
  IR0: new Field('IR0', 8, 2),
  OR0: new Field('OR0', 10, 2),
  SH0: new Field('SH0', 12, 2),
  EPD0: new Field('EPD0', 14, 1),
  ENDI: new Field('ENDI', 15, 1),
  T1SZ: new Field('T1SZ', 16, 6),
  TG1: new Field('TG1', 22, 2),
  EPD1: new Field('EPD1', 30, 1),
  V: new Field('V', 31, 1),
  IPS: new Field('IPS', 32, 3),
  AFFD: new Field('AFFD', 35, 1),
  TBI: new Field('TBI', 38, 2),
  AA64: new Field('AA64', 41, 1),
  HD: new Field('HD', 42, 1),
  HA: new Field('HA', 43, 1),
  S: new Field('S', 44, 1),
  R: new Field('R', 45, 1),
  A: new Field('A', 46, 1),
  ASET: new Field('ASET', 47, 1),
  ASID: new Field('ASID', 48, 16),
  // word 1
  TTB0: new Field('TTB0', 4, 48),
  // word 2
  TTB1: new Field('TTB1', 4, 48),
} as const;

/** STRTAB_BASE_CFG and L1 descriptor fields. */
export const STRTAB = {
  LOG2SIZE: new Field('LOG2SIZE', 0, 6),
  SPLIT: new Field('SPLIT', 6, 5),
  FMT: new Field('FMT', 16, 2),
  ADDR: new Field('ADDR', 6, 46),
} as const;

/** Granule in bytes from a CD TG0 / STE S2TG encoding (0 = 4K, 1 = 64K, 2 = 16K). */
export function granuleFromTg(tg: number): 4096 | 16384 | 65536 | 0 {
  return tg === 0 ? 4096 : tg === 1 ? 65536 : tg === 2 ? 16384 : 0;
}

/** The CD TG0 / STE S2TG encoding of a granule (inverse of {@link granuleFromTg}). */
export function tgFromGranule(granule: 4096 | 16384 | 65536): number {
  return granule === 4096 ? 0 : granule === 65536 ? 1 : 2;
}

/** Address sizes in bits, indexed by their IPS/PS/OAS encoding. */
const ADDRESS_BITS = [32, 36, 40, 42, 44, 48, 52] as const;

/** Output address size in bits from an IPS/PS/OAS encoding. */
export function addressBits(ps: number): number {
  return ADDRESS_BITS[ps] ?? 48;
}

/** The IPS/PS/OAS encoding of an address size in bits (inverse of {@link addressBits}). */
export function addressSizeEncoding(bits: (typeof ADDRESS_BITS)[number]): number {
  return ADDRESS_BITS.indexOf(bits);
}

/** Event IDs (docs/reference/smmuv3.md §6.2). */
export const Evt = {
  F_UUT: 0x01,
  C_BAD_STREAMID: 0x02,
  F_STE_FETCH: 0x03,
  C_BAD_STE: 0x04,
  F_BAD_ATS_TREQ: 0x05,
  F_STREAM_DISABLED: 0x06,
  F_TRANSL_FORBIDDEN: 0x07,
  C_BAD_SUBSTREAMID: 0x08,
  F_CD_FETCH: 0x09,
  C_BAD_CD: 0x0a,
  F_WALK_EABT: 0x0b,
  F_TRANSLATION: 0x10,
  F_ADDR_SIZE: 0x11,
  F_ACCESS: 0x12,
  F_PERMISSION: 0x13,
} as const;

/** Event record fields: dword0 in w0/w1, dword1 in w2/w3, dword2 w4/w5, dword3 w6/w7. */
export const EVT = {
  ID: new Field('EventID', 0, 8),
  SSV: new Field('SSV', 11, 1),
  SSID: new Field('SubstreamID', 12, 20),
  SID: new Field('StreamID', 32, 32),
  // dword1
  STAG: new Field('STAG', 0, 16),
  STALL: new Field('Stall', 31, 1),
  PNU: new Field('PnU', 33, 1),
  IND: new Field('InD', 34, 1),
  RNW: new Field('RnW', 35, 1),
  S2: new Field('S2', 39, 1),
  CLASS: new Field('CLASS', 40, 2),
  TTRNW: new Field('TTRnW', 44, 1),
  // dword3
  IPA_PAGE: new Field('IPA', 12, 40),
} as const;

/** Event CLASS values. */
export const CLASS_CD = 0;
export const CLASS_TT = 1;
export const CLASS_IN = 2;

/**
 * The 16 words of a stage-1 CD translating through TT0 only (EPD1 = 1, AArch64, 4 KiB granule,
 * V, A): the CD a driver writes for one address space. `ips` is the IPS encoding (default 4:
 * 44 bits), `t0sz` defaults to 16 (48-bit input), `record` sets R (default on).
 */
export function buildCd(f: { asid: number; ttb0: number; t0sz?: number; ips?: number; record?: boolean }): Uint32Array {
  const w = new Uint32Array(CD_WORDS);
  CD.T0SZ.setWords(w, 0, f.t0sz ?? 16);
  CD.EPD1.setWords(w, 0, 1);
  CD.V.setWords(w, 0, 1);
  CD.IPS.setWords(w, 0, f.ips ?? 4);
  CD.AA64.setWords(w, 0, 1);
  CD.R.setWords(w, 0, f.record === false ? 0 : 1);
  CD.A.setWords(w, 0, 1);
  CD.ASID.setWords(w, 0, f.asid);
  CD.TTB0.setWords(w, 2, f.ttb0 / 2 ** CD.TTB0.lsb);
  return w;
}
