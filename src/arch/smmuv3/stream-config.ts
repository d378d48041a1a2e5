/**
 * Decoding an STE and a CD into the configuration a translation uses (docs/reference/smmuv3.md
 * §5): what the architecture says each field means. An implementation's own limits (QEMU's
 * emulated SMMUv3 refuses several legal encodings) are checked by its device on top of this.
 *
 * Shared by the host SMMU (over host-physical memory) and the VMM's emulated SMMUv3 (over guest
 * memory) through {@link Translator}.
 */

import { addressBits, CD, granuleFromTg, STE, STE_CFG_ABORT, STE_CFG_BYPASS, STE_CFG_NESTED, STE_CFG_S1, STE_CFG_S2 } from './structures.js';
import type { Granule, WalkConfig } from './page-table.js';

/** What an STE asks for. */
export type StreamKind = 'abort' | 'bypass' | 's1' | 's2' | 'nested';

/** A decoded STE and the CDs decoded under it (the configuration cache entry of one StreamID). */
export interface StreamConfig {
  readonly kind: StreamKind;
  /** S2VMID (0 when stage 2 is not in use, unless the device says otherwise). */
  vmid: number;
  readonly s2: WalkConfig | undefined;
  /** S1ContextPtr: the CD table address (an IPA when nested). */
  readonly s1ctxPtr: number;
  /** S1CDMax: log2 of the number of CDs. */
  readonly s1cdmax: number;
  /** STE.S2R: record stage-2 faults. */
  readonly s2RecordFaults: boolean;
  /** Decoded CDs by SubstreamID. */
  readonly cds: Map<number, CdConfig>;
}

/** A decoded CD. */
export interface CdConfig {
  readonly asid: number;
  readonly s1: WalkConfig;
  /** CD.R: record stage-1 faults. */
  readonly recordFaults: boolean;
  /** CD.EPD0 on a device that takes it as the architecture does: every TT0 walk faults. */
  readonly tt0Disabled?: boolean;
}

/** Stage-2 start level from STE.S2SL0 (its meaning depends on the granule). */
export function s2StartLevel(granule: number, sl0: number): number {
  if (granule === 4096) return 2 - sl0;
  return 3 - sl0;
}

/** Decode an STE (16 words); undefined when it is not valid or names an unusable stage 2. */
export function decodeSte(w: Uint32Array): StreamConfig | undefined {
  if (!STE.V.getWords(w[0]!, w[1]!)) return undefined;
  const cfg = STE.CFG.getWords(w[0]!, w[1]!);
  const s1ctxPtr = STE.S1CTXPTR.addressWords(w[0]!, w[1]!);
  const s1cdmax = STE.S1CDMAX.getWords(w[0]!, w[1]!);
  const s2RecordFaults = STE.S2R.getWords(w[4]!, w[5]!) === 1;
  const base = { s1ctxPtr, s1cdmax, s2RecordFaults, cds: new Map<number, CdConfig>() };
  if (cfg === STE_CFG_ABORT) return { kind: 'abort', vmid: 0, s2: undefined, ...base };
  if (cfg === STE_CFG_BYPASS) return { kind: 'bypass', vmid: 0, s2: undefined, ...base };
  let s2: WalkConfig | undefined;
  let vmid = 0;
  if (cfg === STE_CFG_S2 || cfg === STE_CFG_NESTED) {
    const lo = w[4]!;
    const hi = w[5]!;
    const granule = granuleFromTg(STE.S2TG.getWords(lo, hi));
    if (!granule || !STE.S2AA64.getWords(lo, hi)) return undefined;
    vmid = STE.S2VMID.getWords(lo, hi);
    s2 = {
      stage: 2,
      granule: granule as Granule,
      inputBits: 64 - STE.S2T0SZ.getWords(lo, hi),
      oasBits: addressBits(STE.S2PS.getWords(lo, hi)),
      ttb: STE.S2TTB.addressWords(w[6]!, w[7]!),
      startLevel: s2StartLevel(granule, STE.S2SL0.getWords(lo, hi)),
      unprivileged: false,
    };
  }
  if (cfg === STE_CFG_S2) return { kind: 's2', vmid, s2, ...base };
  if (cfg === STE_CFG_S1) return { kind: 's1', vmid: 0, s2: undefined, ...base };
  if (cfg === STE_CFG_NESTED) return { kind: 'nested', vmid, s2, ...base };
  return undefined;
}

/** Decode a CD (16 words); undefined when it is not valid, not AArch64, or TT0 is unusable. */
export function decodeCd(w: Uint32Array): CdConfig | undefined {
  const lo = w[0]!;
  const hi = w[1]!;
  const granule = granuleFromTg(CD.TG0.getWords(lo, hi));
  if (!CD.V.getWords(lo, hi) || !CD.AA64.getWords(lo, hi) || !granule || CD.EPD0.getWords(lo, hi)) return undefined;
  return {
    asid: CD.ASID.getWords(lo, hi),
    recordFaults: CD.R.getWords(lo, hi) === 1,
    s1: {
      stage: 1,
      granule: granule as Granule,
      inputBits: 64 - CD.T0SZ.getWords(lo, hi),
      oasBits: addressBits(CD.IPS.getWords(lo, hi)),
      ttb: CD.TTB0.addressWords(w[2]!, w[3]!),
      // Every field present, in the stage-2 order: the walker then sees one object shape.
      startLevel: undefined,
      unprivileged: false,
    },
  };
}
