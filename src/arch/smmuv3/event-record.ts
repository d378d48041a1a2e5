/**
 * A translation or configuration fault as the translation sequence found it
 * ({@link FaultRecord}), and its encoding as a 32-byte event record (docs/reference/smmuv3.md
 * §6.1). Which fields a record carries is the device's choice ({@link EventFields}): the host
 * SMMU writes every field it knows, QEMU's emulated SMMUv3 only those its record builder sets
 * for the event type (docs/reference/qemu-smmuv3.md §5).
 */

import { CLASS_IN, EVT } from './structures.js';

/** What went wrong, for the device to record (reused: filling it allocates nothing). */
export class FaultRecord {
  /** Event number (Evt.*); 0 = abort without an event. */
  id = 0;
  sid = 0;
  /** SubstreamID, and whether it is valid (SSV). */
  ssid = 0;
  ssv = false;
  /** Input address of the transaction. */
  addr = 0;
  /** IPA of the transaction (host records: the IPA field). */
  ipa = 0;
  /**
   * Second address (QEMU's ADDR2): the IPA for a stage-2 fault, the descriptor or structure
   * address for a fetch abort, 0 otherwise.
   */
  addr2 = 0;
  /** Fetch address of an F_STE_FETCH / F_CD_FETCH. */
  fetchAddr = 0;
  /** Stage 2 faulted. */
  s2 = 0;
  /** CLASS_CD / CLASS_TT / CLASS_IN. */
  cls = CLASS_IN;
  /** Read (1) or write (0). */
  rnw = 1;

  /** Start a new fault of `id` for `sid` at `addr`; every other field to its default. */
  reset(id: number, sid: number, addr: number): this {
    this.id = id;
    this.sid = sid;
    this.ssid = 0;
    this.ssv = false;
    this.addr = addr;
    this.ipa = 0;
    this.addr2 = 0;
    this.fetchAddr = 0;
    this.s2 = 0;
    this.cls = CLASS_IN;
    this.rnw = 1;
    return this;
  }
}

/** Bits of an {@link EventFields} mask: which fields beyond EventID and StreamID to write. */
export const EF_SSID = 1 << 0;
/** dword2: the input address. */
export const EF_ADDR = 1 << 1;
export const EF_RNW = 1 << 2;
/** S2 and CLASS. */
export const EF_S2_CLASS = 1 << 3;
/** dword3 as the IPA field [51:12] (from {@link FaultRecord.ipa}). */
export const EF_IPA = 1 << 4;
/** dword3 as a whole 64-bit address (from {@link FaultRecord.addr2}). */
export const EF_ADDR2 = 1 << 5;
/** dword3 as a whole 64-bit address from {@link FaultRecord.fetchAddr}. */
export const EF_FETCH_ADDR2 = 1 << 6;
/** dword2 from {@link FaultRecord.fetchAddr} instead of the input address. */
export const EF_FETCH_ADDR = 1 << 7;

/** A mask of EF_* bits. */
export type EventFields = number;

/** Words of an event record holding dword2 (input address) and dword3 (IPA / ADDR2). */
const DW2 = 4;
const DW3 = 6;
const TWO32 = 2 ** 32;

/** Encode `f` into the 8 words of `e` (cleared first), writing the fields `fields` names. */
export function encodeEvent(f: FaultRecord, fields: EventFields, e: Uint32Array): Uint32Array {
  e.fill(0);
  EVT.ID.setWords(e, 0, f.id);
  if ((fields & EF_SSID) !== 0 && (f.ssv || f.ssid !== 0)) {
    EVT.SSV.setWords(e, 0, f.ssv ? 1 : 0);
    EVT.SSID.setWords(e, 0, f.ssid);
  }
  EVT.SID.setWords(e, 0, f.sid);
  if ((fields & EF_RNW) !== 0) EVT.RNW.setWords(e, 2, f.rnw);
  if ((fields & EF_S2_CLASS) !== 0) {
    EVT.S2.setWords(e, 2, f.s2);
    EVT.CLASS.setWords(e, 2, f.cls);
  }
  const a = (fields & EF_FETCH_ADDR) !== 0 ? f.fetchAddr : (fields & EF_ADDR) !== 0 ? f.addr : 0;
  // `>>> 0` is the exact low word of any address below 2^53 (`%` above 2^31 is a floating-point call).
  e[DW2] = a >>> 0;
  e[DW2 + 1] = Math.floor(a / TWO32);
  if ((fields & EF_IPA) !== 0) EVT.IPA_PAGE.setWords(e, DW3, Math.floor(f.ipa / 2 ** EVT.IPA_PAGE.lsb));
  else if ((fields & (EF_ADDR2 | EF_FETCH_ADDR2)) !== 0) {
    const a2 = (fields & EF_FETCH_ADDR2) !== 0 ? f.fetchAddr : f.addr2;
    e[DW3] = a2 >>> 0;
    e[DW3 + 1] = Math.floor(a2 / TWO32);
  }
  return e;
}
