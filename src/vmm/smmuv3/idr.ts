/**
 * The ID registers the emulated SMMUv3 advertises: QEMU's defaults (stage 1 only, AArch64
 * tables, coherent, 16-bit ASID/VMID, 2-level stream table, 16-bit StreamIDs, CMDQS and
 * EVENTQS 19, range invalidation, 44-bit OAS, all three granules), the property overrides,
 * the resolution of `auto` properties from the host's IDRs, and the host compatibility check
 * with QEMU's exact messages (hw/arm/smmuv3.c `smmuv3_init_id_regs`, smmuv3-accel.c).
 */

import { IDR0, IDR1, IDR3, IDR5 } from '../../arch/smmuv3/registers.js';
import { SSIDSIZE_MAX, type AccelSmmuV3Properties } from './properties.js';

/** IDR0..IDR5 as six uint32 values. */
export type Idr = [number, number, number, number, number, number];

/** QEMU's SMMU_IDR1_SIDSIZE: 16-bit StreamIDs. */
const SMMU_SIDSIZE = 16;
/** QEMU's SMMU_CMDQS / SMMU_EVENTQS: 2^19 entries. */
export const SMMU_CMDQS = 19;
export const SMMU_EVENTQS = 19;
/** IDR5.OAS encodings QEMU uses. */
const OAS_44 = 4;
const OAS_48 = 5;
/** QEMU's AIDR (SMMUv3.1). */
export const SMMU_AIDR = 0x1;

/** Output address bits of an IDR5.OAS encoding (QEMU's smmuv3_oas_bits). */
export function oasBits(oas: number): number {
  return [32, 36, 40, 42, 44, 48, 52, 56][oas] ?? 0;
}

/**
 * The ID registers at realize: QEMU's defaults, then the explicit property overrides
 * (`smmuv3_accel_idr_override`). `auto` properties keep the defaults here (ATS off, RIL on,
 * no SSIDs, 44-bit OAS) until {@link autoFinalise} copies the host's values.
 */
export function initialIdr(p: AccelSmmuV3Properties): Idr {
  let i0 = 0;
  const stage = p.stage ?? '1';
  if (stage === '2') i0 = IDR0.f.S2P.set(i0, 1);
  else if (stage === 'nested') i0 = IDR0.f.S2P.set(IDR0.f.S1P.set(i0, 1), 1);
  else i0 = IDR0.f.S1P.set(i0, 1);
  i0 = IDR0.f.TTF.set(i0, 2); // AArch64 tables only
  i0 = IDR0.f.COHACC.set(i0, 1);
  i0 = IDR0.f.ASID16.set(i0, 1);
  i0 = IDR0.f.VMID16.set(i0, 1);
  i0 = IDR0.f.TTENDIAN.set(i0, 2); // little endian
  i0 = IDR0.f.STALL_MODEL.set(i0, 1); // no stall
  i0 = IDR0.f.TERM_MODEL.set(i0, 1); // terminated transactions abort
  i0 = IDR0.f.ST_LEVEL.set(i0, 1); // 2-level stream table

  let i1 = IDR1.f.SIDSIZE.set(0, SMMU_SIDSIZE);
  i1 = IDR1.f.EVENTQS.set(i1, SMMU_EVENTQS);
  i1 = IDR1.f.CMDQS.set(i1, SMMU_CMDQS);

  let i3 = IDR3.f.HAD.set(0, 1);
  if (IDR0.f.S2P.get(i0)) i3 = IDR3.f.XNX.set(i3, 1); // XNX is a stage-2 feature
  i3 = IDR3.f.RIL.set(i3, 1);
  i3 = IDR3.f.BBML.set(i3, 2);

  let i5 = IDR5.f.OAS.set(0, OAS_44);
  i5 = IDR5.f.GRAN4K.set(i5, 1);
  i5 = IDR5.f.GRAN16K.set(i5, 1);
  i5 = IDR5.f.GRAN64K.set(i5, 1);

  if (p.accel) {
    // Only explicit values override the defaults; `auto` is resolved from the host later.
    if (p.ril === 'off') i3 = IDR3.f.RIL.set(i3, 0);
    if (p.ats === 'on') i0 = IDR0.f.ATS.set(i0, 1);
    if (p.oas === 48) i5 = IDR5.f.OAS.set(i5, OAS_48);
    if (p.ssidsize !== 'auto' && p.ssidsize > 0) i1 = IDR1.f.SSIDSIZE.set(i1, p.ssidsize);
  }
  return [i0 >>> 0, i1 >>> 0, 0, i3 >>> 0, 0, i5 >>> 0];
}

/**
 * Resolve the `auto` properties from the host's IDRs (QEMU's `smmuv3_accel_auto_finalise`):
 * ATS, RIL and SSIDSIZE are copied; OAS takes the host's size capped at the 48 bits the model
 * implements. Returns the new IDRs (the input is not modified).
 */
export function autoFinalise(idr: Idr, host: Idr, p: AccelSmmuV3Properties): Idr {
  const out: Idr = [...idr];
  if (p.ats === 'auto') out[0] = IDR0.f.ATS.set(out[0], IDR0.f.ATS.get(host[0]));
  if (p.ril === 'auto') out[3] = IDR3.f.RIL.set(out[3], IDR3.f.RIL.get(host[3]));
  if (p.ssidsize === 'auto') out[1] = IDR1.f.SSIDSIZE.set(out[1], Math.min(IDR1.f.SSIDSIZE.get(host[1]), SSIDSIZE_MAX));
  if (p.oas === 'auto') out[5] = IDR5.f.OAS.set(out[5], Math.min(IDR5.f.OAS.get(host[5]), OAS_48));
  return out.map((v) => v >>> 0) as Idr;
}

/**
 * Whether the host SMMU behind a device can back this vSMMU (QEMU's
 * `smmuv3_accel_check_hw_compatible`). Returns QEMU's message for the first mismatch, or
 * undefined when compatible.
 */
export function hostIncompatibility(vsmmu: Idr, host: Idr): string | undefined {
  const h = host;
  const q = vsmmu;
  if (IDR0.f.ST_LEVEL.get(h[0]) !== IDR0.f.ST_LEVEL.get(q[0])) {
    return `Host SMMUv3 Stream Table format mismatch (host STLEVEL=${IDR0.f.ST_LEVEL.get(h[0])}, QEMU STLEVEL=${IDR0.f.ST_LEVEL.get(q[0])})`;
  }
  if (IDR0.f.TTENDIAN.get(h[0]) > IDR0.f.TTENDIAN.get(q[0])) {
    return "Host SMMUv3 doesn't support Little-endian translation table";
  }
  if (IDR0.f.TTF.get(h[0]) < IDR0.f.TTF.get(q[0])) {
    return "Host SMMUv3 doesn't support AArch64 translation table format";
  }
  if (IDR1.f.SIDSIZE.get(h[1]) < IDR1.f.SIDSIZE.get(q[1])) {
    return `Host SMMUv3 SIDSIZE not compatible (host=${IDR1.f.SIDSIZE.get(h[1])}, QEMU=${IDR1.f.SIDSIZE.get(q[1])})`;
  }
  if (IDR1.f.SSIDSIZE.get(h[1]) < IDR1.f.SSIDSIZE.get(q[1])) {
    return `Host SMMUv3 SSIDSIZE not compatible (host=${IDR1.f.SSIDSIZE.get(h[1])}, QEMU=${IDR1.f.SSIDSIZE.get(q[1])})`;
  }
  if (IDR3.f.RIL.get(h[3]) < IDR3.f.RIL.get(q[3])) return "Host SMMUv3 doesn't support Range Invalidation";
  if (IDR5.f.OAS.get(h[5]) < IDR5.f.OAS.get(q[5])) {
    return `Host SMMUv3 supports only ${oasBits(IDR5.f.OAS.get(h[5]))}-bit IPA, but the vSMMU OAS implies ${oasBits(IDR5.f.OAS.get(q[5]))}-bit IPA`;
  }
  if (IDR0.f.ATS.get(h[0]) < IDR0.f.ATS.get(q[0])) return "Host SMMUv3 doesn't support Address Translation Services";
  if (IDR5.f.GRAN4K.get(h[5]) !== IDR5.f.GRAN4K.get(q[5])) return "Host SMMUv3 doesn't support 4K translation granule";
  if (IDR5.f.GRAN16K.get(h[5]) !== IDR5.f.GRAN16K.get(q[5])) return "Host SMMUv3 doesn't support 16K translation granule";
  if (IDR5.f.GRAN64K.get(h[5]) !== IDR5.f.GRAN64K.get(q[5])) return "Host SMMUv3 doesn't support 64K translation granule";
  return undefined;
}
