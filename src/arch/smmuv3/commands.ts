/**
 * SMMUv3 command formats (docs/reference/smmuv3.md §4.1–4.2). A command is 16 bytes: dword0 in
 * words w0 (low) / w1 (high), dword1 in w2 / w3. Fields are declared once on their dword.
 */

import { Field } from '../../kit/bits.js';

/** Command opcodes (dword0 [7:0]). */
export const Op = {
  PREFETCH_CFG: 0x01,
  PREFETCH_ADDR: 0x02,
  CFGI_STE: 0x03,
  CFGI_STE_RANGE: 0x04,
  CFGI_CD: 0x05,
  CFGI_CD_ALL: 0x06,
  TLBI_NH_ALL: 0x10,
  TLBI_NH_ASID: 0x11,
  TLBI_NH_VA: 0x12,
  TLBI_NH_VAA: 0x13,
  TLBI_EL3_ALL: 0x18,
  TLBI_EL3_VA: 0x1a,
  TLBI_EL2_ALL: 0x20,
  TLBI_EL2_ASID: 0x21,
  TLBI_EL2_VA: 0x22,
  TLBI_EL2_VAA: 0x23,
  TLBI_S12_VMALL: 0x28,
  TLBI_S2_IPA: 0x2a,
  TLBI_NSNH_ALL: 0x30,
  ATC_INV: 0x40,
  PRI_RESP: 0x41,
  RESUME: 0x44,
  STALL_TERM: 0x45,
  SYNC: 0x46,
} as const;

/** Opcode names for logs and traces. */
const OP_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(Op).map(([k, v]) => [v, k === 'SYNC' ? 'CMD_SYNC' : `CMD_${k}`]),
);

/** Name of an opcode, or `CMD_0x..` for unknown ones. */
export function opName(op: number): string {
  return OP_NAMES[op] ?? `CMD_0x${op.toString(16).padStart(2, '0')}`;
}

/** Fields of dword0. */
export const D0 = {
  OPCODE: new Field('OPCODE', 0, 8),
  SSV: new Field('SSV', 11, 1),
  ATC_GLOBAL: new Field('GLOBAL', 9, 1),
  SSID: new Field('SSID', 12, 20),
  SID: new Field('SID', 32, 32),
  NUM: new Field('NUM', 12, 5),
  SCALE: new Field('SCALE', 20, 5),
  VMID: new Field('VMID', 32, 16),
  ASID: new Field('ASID', 48, 16),
  SYNC_CS: new Field('CS', 12, 2),
  SYNC_MSH: new Field('MSH', 22, 2),
  SYNC_MSIATTR: new Field('MSIATTR', 24, 4),
  SYNC_MSIDATA: new Field('MSIDATA', 32, 32),
  RESP: new Field('RESP', 12, 2),
} as const;

/** Fields of dword1. */
export const D1 = {
  LEAF: new Field('LEAF', 0, 1),
  RANGE: new Field('RANGE', 0, 5),
  TTL: new Field('TTL', 8, 2),
  TG: new Field('TG', 10, 2),
  /** VA / IPA [63:12]; read as a page number (fits in a number for 52-bit addresses). */
  ADDR_PAGE: new Field('ADDR', 12, 41),
  /** TLBI_S2_IPA: IPA [51:12], as a page number. */
  IPA_PAGE: new Field('ADDR', 12, 40),
  ATC_SIZE: new Field('SIZE', 0, 6),
  SYNC_MSIADDR: new Field('MSIADDR', 2, 50),
  STAG: new Field('STAG', 0, 16),
} as const;

/** CMD_SYNC completion signal values. */
export const SYNC_CS_NONE = 0;
export const SYNC_CS_IRQ = 1;
export const SYNC_CS_SEV = 2;

/** CERROR codes in CONS.ERR [30:24] (docs/reference/smmuv3.md §4.4). */
export const CERROR_NONE = 0;
export const CERROR_ILL = 1;
export const CERROR_ABT = 2;
export const CERROR_ATC_INV_SYNC = 3;

/**
 * Build a command as four words. For tests and for the drivers; hot paths write words
 * directly into the ring instead.
 */
export function buildCommand(
  op: number,
  fields: {
    sid?: number;
    ssid?: number;
    vmid?: number;
    asid?: number;
    num?: number;
    scale?: number;
    leaf?: boolean;
    ttl?: number;
    tg?: number;
    addr?: number;
    size?: number;
    cs?: number;
    range?: number;
    ssv?: boolean;
  } = {},
): Uint32Array {
  const w = new Uint32Array(4);
  D0.OPCODE.setWords(w, 0, op);
  if (fields.ssid !== undefined) D0.SSID.setWords(w, 0, fields.ssid);
  if (fields.ssv) D0.SSV.setWords(w, 0, 1);
  if (fields.sid !== undefined) D0.SID.setWords(w, 0, fields.sid);
  if (fields.vmid !== undefined) D0.VMID.setWords(w, 0, fields.vmid);
  if (fields.asid !== undefined) D0.ASID.setWords(w, 0, fields.asid);
  if (fields.num !== undefined) D0.NUM.setWords(w, 0, fields.num);
  if (fields.scale !== undefined) D0.SCALE.setWords(w, 0, fields.scale);
  if (fields.cs !== undefined) D0.SYNC_CS.setWords(w, 0, fields.cs);
  if (fields.leaf) D1.LEAF.setWords(w, 2, 1);
  if (fields.range !== undefined) D1.RANGE.setWords(w, 2, fields.range);
  if (fields.ttl !== undefined) D1.TTL.setWords(w, 2, fields.ttl);
  if (fields.tg !== undefined) D1.TG.setWords(w, 2, fields.tg);
  if (fields.addr !== undefined) D1.ADDR_PAGE.setWords(w, 2, Math.floor(fields.addr / 4096));
  if (fields.size !== undefined) D1.ATC_SIZE.setWords(w, 2, fields.size);
  return w;
}

// tlbiRangeBytes runs per TLBI: its fields bound here, and 2^n from a table rather than `**`.
const D1_TG = D1.TG;
const D0_NUM = D0.NUM;
const D0_SCALE = D0.SCALE;
/** 2^n for n up to SCALE's largest value (31) and the largest granule shift (16). */
const RANGE_POW2 = Float64Array.from({ length: 32 }, (_, n) => 2 ** n);

/**
 * Bytes a TLBI_NH_VA / NH_VAA / S2_IPA command (words `w`) covers: the range form when TG ≠ 0
 * ((NUM + 1) · 2^SCALE pages of the TG granule), else 1 (the one address, any entry holding it).
 */
export function tlbiRangeBytes(w: Uint32Array): number {
  const tg = D1_TG.get(w[2]!);
  if (tg === 0) return 1;
  return (D0_NUM.get(w[0]!) + 1) * RANGE_POW2[D0_SCALE.get(w[0]!)]! * RANGE_POW2[2 * tg + 10]!;
}
