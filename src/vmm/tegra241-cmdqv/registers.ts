/**
 * The register file of the emulated Tegra241 CMDQV (docs/reference/qemu-accel-smmuv3.md §3): one VINTF, two
 * VCMDQs. Derived from the architecture's table (`src/arch/tegra241-cmdqv/registers.ts`, the one
 * place offsets and fields are declared) with QEMU's differences: its reset values, reserved
 * bits stored as written, HYP_OWN forced to 0, VINTF0's block at 0x1000 in the config page,
 * 32-bit LVCMDQ error maps, and page0/page1 caches that keep every bit written.
 */

import { RegisterLayout, variant, type RegisterDef, type RegisterOverrides } from '../../kit/registers.js';
import * as C from '../../arch/tegra241-cmdqv/registers.js';

/** Number of VCMDQs and SID pairs exposed (QEMU: CMDQV_NUM_CMDQ_LOG2 = 1, SIDs log2 4). */
export const VCMDQS = 2;
const SIDS = 16;
/** PARAM: VER 1, 2 VCMDQs, 1 VINTF, 16 SIDs (0x4011). */
export const PARAM_VALUE = C.paramValue({ version: 1, log2Vcmdqs: Math.log2(VCMDQS), log2Vintfs: 0, log2SidsPerVintf: Math.log2(SIDS) });
/** Size of the block: the global pages plus VINTF0's page pair. */
export const CMDQV_IO_LEN = C.cmdqvApertureSize(1);

const stored = 'stored' as const;

export const CONFIG = variant(C.CONFIG, { reserved: stored });
export const PARAM = variant(C.PARAM, { reset: PARAM_VALUE });
export const STATUS = C.STATUS;
export const VI_ERR_MAP = C.VI_ERR_MAP;
export const VI_INT_MASK = C.VI_INT_MASK;
export const CMDQ_ERR_MAP = C.CMDQ_ERR_MAP;
export const CMDQ_ALLOC_MAP = variant(C.CMDQ_ALLOC_MAP, { repeat: { count: VCMDQS, stride: C.CMDQ_ALLOC_MAP.spec.repeat!.stride }, reserved: stored });

/** A VINTF register placed in VINTF0's block of the config page, named `VINTF0_<name>`. */
function vintf0<F extends string>(def: RegisterDef<F>, overrides: RegisterOverrides<F> = {}): RegisterDef<F> {
  return variant(def, { name: `VINTF0_${def.spec.name}`, offset: C.vintfBlockOffset(0) + def.spec.offset, ...overrides });
}

export const VINTF0_CONFIG = vintf0(C.VINTF_CONFIG, { reserved: stored, fieldAccess: { HYP_OWN: 'RAZ/WI' } });
export const VINTF0_STATUS = vintf0(C.VINTF_STATUS);
export const VINTF0_SID_MATCH = vintf0(C.VINTF_SID_MATCH, { repeat: { count: SIDS, stride: C.VINTF_SID_MATCH.spec.repeat!.stride }, reserved: stored });
export const VINTF0_SID_REPLACE = vintf0(C.VINTF_SID_REPLACE, { repeat: { count: SIDS, stride: C.VINTF_SID_REPLACE.spec.repeat!.stride } });
/** QEMU's view of the two 64-bit maps: four 32-bit words. */
export const VINTF0_LVCMDQ_ERR_MAP = vintf0(C.VINTF_LVCMDQ_ERR_MAP_64, {
  name: 'VINTF0_LVCMDQ_ERR_MAP_{i}', width: 32, repeat: { count: 4, stride: 4 },
});

/** The config page (0x0000–0x10CC). */
export const CONFIG_PAGE = new RegisterLayout('tegra241-cmdqv config', 0x2000, [
  CONFIG, PARAM, STATUS, VI_ERR_MAP, VI_INT_MASK, CMDQ_ERR_MAP, CMDQ_ALLOC_MAP,
  VINTF0_CONFIG, VINTF0_STATUS, VINTF0_SID_MATCH, VINTF0_SID_REPLACE, VINTF0_LVCMDQ_ERR_MAP,
]);

// Page0 cache of one VCMDQ: values stored as written (no masking), STATUS/GERROR read-only.
export const P0_CONS = variant(C.VCMDQ_CONS, { reserved: stored, fieldAccess: { ERR: 'RW' } });
export const P0_PROD = variant(C.VCMDQ_PROD, { reserved: stored });
export const P0_CONFIG = variant(C.VCMDQ_CONFIG, { reserved: stored });
export const P0_STATUS = C.VCMDQ_STATUS;
export const P0_GERROR = C.VCMDQ_GERROR;
export const P0_GERRORN = variant(C.VCMDQ_GERRORN, { reserved: stored });
export const PAGE0 = new RegisterLayout('tegra241-cmdqv vcmdq page0', C.VCMDQ_SLOT, [P0_CONS, P0_PROD, P0_CONFIG, P0_STATUS, P0_GERROR, P0_GERRORN]);

// Page1 cache: BASE and CONS_INDX_BASE_DRAM, 64-bit, stored verbatim.
export const P1_BASE = variant(C.VCMDQ_BASE, { reserved: stored });
export const P1_CONS_INDX_BASE = variant(C.VCMDQ_CONS_INDX_BASE, { reserved: stored });
export const PAGE1 = new RegisterLayout('tegra241-cmdqv vcmdq page1', C.VCMDQ_SLOT, [P1_BASE, P1_CONS_INDX_BASE]);
