/**
 * Tegra241 CMDQV register map (docs/reference/tegra241-cmdqv.md §2–3; field names after the NVIDIA QEMU
 * prototype where Linux names none, docs/reference/tegra241-cmdqv.md §3.6). Declared once as data and shared by the
 * host silicon model and the VMM's emulated CMDQV.
 */

import type { Field } from '../../kit/bits.js';
import { defineRegister, instanceOffset } from '../../kit/registers.js';
import { Op } from '../smmuv3/commands.js';

/** Aperture layout (offsets from the CMDQV base; the config page is at 0). */
export const CMDQV_VCMDQ_PAGE0 = 0x10000;
export const CMDQV_VCMDQ_PAGE1 = 0x20000;
export const CMDQV_VINTF_PAGES = 0x30000;
/** Stride of one VINTF's page0+page1 pair. */
export const CMDQV_VINTF_STRIDE = 0x20000;
export const CMDQV_PAGE_SIZE = 0x10000;
/** Bytes of one VCMDQ slot in a page. */
export const VCMDQ_SLOT = 0x80;
/** Offset of VINTF v's register block in the config page. */
export const VINTF_BLOCK = 0x1000;
export const VINTF_BLOCK_STRIDE = 0x100;

/** Aperture size for `vintfs` VINTFs: 0x30000 + 0x20000·vintfs (64 → 0x830000). */
export function cmdqvApertureSize(vintfs: number): number {
  return CMDQV_VINTF_PAGES + CMDQV_VINTF_STRIDE * vintfs;
}

/** Offset of VINTF `vintf`'s register block in the config page. */
export function vintfBlockOffset(vintf: number): number {
  return VINTF_BLOCK + VINTF_BLOCK_STRIDE * vintf;
}

/** Offset of global VCMDQ `vcmdq`'s page0 slot (the direct, global view). */
export function vcmdqPage0Offset(vcmdq: number): number {
  return CMDQV_VCMDQ_PAGE0 + VCMDQ_SLOT * vcmdq;
}

/** Offset of global VCMDQ `vcmdq`'s page1 slot (the direct, global view). */
export function vcmdqPage1Offset(vcmdq: number): number {
  return CMDQV_VCMDQ_PAGE1 + VCMDQ_SLOT * vcmdq;
}

/** Offset of VINTF `vintf`'s page0 (the page a user VINTF's owner maps). */
export function vintfPage0Offset(vintf: number): number {
  return CMDQV_VINTF_PAGES + CMDQV_VINTF_STRIDE * vintf;
}

/** Offset of logical VCMDQ `lvcmdq`'s page0 slot in VINTF `vintf`'s page0. */
export function lvcmdqPage0Offset(vintf: number, lvcmdq: number): number {
  return vintfPage0Offset(vintf) + VCMDQ_SLOT * lvcmdq;
}

/** Offset of logical VCMDQ `lvcmdq`'s page1 slot in VINTF `vintf`'s page1. */
export function lvcmdqPage1Offset(vintf: number, lvcmdq: number): number {
  return vintfPage0Offset(vintf) + CMDQV_PAGE_SIZE + VCMDQ_SLOT * lvcmdq;
}

// ---- global registers ------------------------------------------------------------------

export const CONFIG = defineRegister({
  name: 'CONFIG', offset: 0x0, width: 32, reset: 0x0002_0083,
  fields: {
    CMDQV_EN: { lsb: 0, width: 1 },
    CMDQV_PER_CMD_OFFSET: { lsb: 1, width: 3 },
    CMDQ_MAX_CLK_BATCH: { lsb: 4, width: 8 },
    CMDQ_MAX_CMD_BATCH: { lsb: 12, width: 8 },
    CONS_DRAM_EN: { lsb: 20, width: 1 },
  },
});
export const PARAM = defineRegister({
  name: 'PARAM', offset: 0x4, width: 32, access: 'RO',
  fields: {
    CMDQV_VER: { lsb: 0, width: 4 },
    CMDQV_NUM_CMDQ_LOG2: { lsb: 4, width: 4 },
    CMDQV_NUM_VI_LOG2: { lsb: 8, width: 4 },
    CMDQV_NUM_SID_PER_VI_LOG2: { lsb: 12, width: 4 },
  },
});
export const STATUS = defineRegister({
  name: 'STATUS', offset: 0x8, width: 32, access: 'RO', reset: 1, fields: { CMDQV_ENABLED: { lsb: 0, width: 1 } },
});
export const VI_ERR_MAP = defineRegister({ name: 'VI_ERR_MAP_{i}', offset: 0x14, width: 32, access: 'RO', repeat: { count: 2, stride: 4 } });
export const VI_INT_MASK = defineRegister({ name: 'VI_INT_MASK_{i}', offset: 0x1c, width: 32, repeat: { count: 2, stride: 4 } });
export const CMDQ_ERR_MAP = defineRegister({ name: 'CMDQ_ERR_MAP_{i}', offset: 0x24, width: 32, access: 'RO', repeat: { count: 4, stride: 4 } });
/** CMDQ_ALLOC_MAP_q for each of the (up to 128) global VCMDQs; a VMM exposes fewer. */
export const CMDQ_ALLOC_MAP = defineRegister({
  name: 'CMDQ_ALLOC_MAP_{i}', offset: 0x200, width: 32, repeat: { count: 128, stride: 4 },
  fields: { ALLOC: { lsb: 0, width: 1 }, LVCMDQ: { lsb: 1, width: 7 }, VIRT_INTF_INDX: { lsb: 15, width: 6 } },
});

/** PARAM value describing a CMDQV of the given version and log2 sizes. */
export function paramValue(p: { readonly version: number; readonly log2Vcmdqs: number; readonly log2Vintfs: number; readonly log2SidsPerVintf: number }): number {
  const F = PARAM.f;
  let v = F.CMDQV_VER.set(0, p.version);
  v = F.CMDQV_NUM_CMDQ_LOG2.set(v, p.log2Vcmdqs);
  v = F.CMDQV_NUM_VI_LOG2.set(v, p.log2Vintfs);
  return F.CMDQV_NUM_SID_PER_VI_LOG2.set(v, p.log2SidsPerVintf);
}

/** CMDQ_ALLOC_MAP value mapping a global VCMDQ as logical queue `lvcmdq` of VINTF `vintf`. */
export function allocMapValue(vintf: number, lvcmdq: number, alloc: boolean): number {
  const F = CMDQ_ALLOC_MAP.f;
  return F.ALLOC.set(F.LVCMDQ.set(F.VIRT_INTF_INDX.set(0, vintf), lvcmdq), alloc ? 1 : 0);
}

/** Offset of CMDQ_ALLOC_MAP for global VCMDQ `vcmdq`. */
export function allocMapOffset(vcmdq: number): number {
  return instanceOffset(CMDQ_ALLOC_MAP, vcmdq);
}

// ---- per-VINTF block (0x100 bytes at 0x1000 + 0x100·v); offsets relative to the block --------

export const VINTF_CONFIG = defineRegister({
  name: 'CONFIG', offset: 0x0, width: 32,
  fields: { ENABLE: { lsb: 0, width: 1 }, VMID: { lsb: 1, width: 16 }, HYP_OWN: { lsb: 17, width: 1 } },
});
export const VINTF_STATUS = defineRegister({
  name: 'STATUS', offset: 0x4, width: 32, access: 'RO',
  fields: { ENABLE_OK: { lsb: 0, width: 1 }, STATUS: { lsb: 1, width: 3 }, VI_NUM_LVCMDQ: { lsb: 16, width: 8 } },
});
export const VINTF_SID_MATCH = defineRegister({
  name: 'SID_MATCH_{i}', offset: 0x40, width: 32, repeat: { count: 16, stride: 4 },
  fields: { ENABLE: { lsb: 0, width: 1 }, VIRT_SID: { lsb: 1, width: 20 } },
});
export const VINTF_SID_REPLACE = defineRegister({ name: 'SID_REPLACE_{i}', offset: 0x80, width: 32, repeat: { count: 16, stride: 4 } });
/** Hardware view: two 64-bit maps (Linux reads LVCMDQ_ERR_MAP_64(m) with readq). */
export const VINTF_LVCMDQ_ERR_MAP_64 = defineRegister({
  name: 'LVCMDQ_ERR_MAP_64_{i}', offset: 0xc0, width: 64, access: 'RO', repeat: { count: 2, stride: 8 },
});

// ---- per-VCMDQ page0 slot ------------------------------------------------------------------

const GERROR_FIELDS = {
  CMDQ_ERR: { lsb: 0, width: 1 },
  CONS_DRAM_WR_ABT_ERR: { lsb: 1, width: 1 },
  CMDQ_INIT_ERR: { lsb: 2, width: 1 },
} as const;

export const VCMDQ_CONS = defineRegister({
  name: 'CONS_INDX', offset: 0x0, width: 32,
  fields: { RD: { lsb: 0, width: 20 }, ERR: { lsb: 24, width: 7, access: 'RO' } },
});
export const VCMDQ_PROD = defineRegister({ name: 'PROD_INDX', offset: 0x4, width: 32, fields: { WR: { lsb: 0, width: 20 } } });
export const VCMDQ_CONFIG = defineRegister({ name: 'CONFIG', offset: 0x8, width: 32, fields: { CMDQ_EN: { lsb: 0, width: 1 } } });
export const VCMDQ_STATUS = defineRegister({ name: 'STATUS', offset: 0xc, width: 32, access: 'RO', fields: { CMDQ_EN_OK: { lsb: 0, width: 1 } } });
export const VCMDQ_GERROR = defineRegister({ name: 'GERROR', offset: 0x10, width: 32, access: 'RO', fields: GERROR_FIELDS });
export const VCMDQ_GERRORN = defineRegister({ name: 'GERRORN', offset: 0x14, width: 32, fields: GERROR_FIELDS });

// ---- per-VCMDQ page1 slot ------------------------------------------------------------------

export const VCMDQ_BASE = defineRegister({
  name: 'BASE', offset: 0x0, width: 64, fields: { LOG2SIZE: { lsb: 0, width: 5 }, ADDR: { lsb: 5, width: 43 } },
});
export const VCMDQ_CONS_INDX_BASE = defineRegister({
  name: 'CONS_INDX_BASE_DRAM', offset: 0x8, width: 64, fields: { ADDR: { lsb: 0, width: 48 } },
});

/** BASE value of a VCMDQ ring at `addr` (32-byte aligned, below 2^48) of 2^`log2size` entries. */
export function vcmdqBaseValue(addr: number, log2size: number): bigint {
  const F = VCMDQ_BASE.f;
  return F.ADDR.setBig(F.LOG2SIZE.setBig(0n, BigInt(log2size)), BigInt(addr) >> BigInt(F.ADDR.lsb));
}

/**
 * A CONFIG register whose enable bit a STATUS bit follows (the global CMDQV, a VINTF, a VCMDQ):
 * drivers write the enable and poll the status. Offsets are in the CMDQV aperture.
 */
export interface EnableHandshake {
  readonly config: number;
  readonly status: number;
  readonly enable: Field;
  readonly enabled: Field;
}

/** The global CMDQV enable (CONFIG.CMDQV_EN → STATUS.CMDQV_ENABLED). */
export const CMDQV_ENABLE: EnableHandshake = {
  config: CONFIG.spec.offset, status: STATUS.spec.offset, enable: CONFIG.f.CMDQV_EN, enabled: STATUS.f.CMDQV_ENABLED,
};

/** VINTF `vintf`'s enable (CONFIG.ENABLE → STATUS.ENABLE_OK). */
export function vintfEnable(vintf: number): EnableHandshake {
  const block = vintfBlockOffset(vintf);
  return {
    config: block + VINTF_CONFIG.spec.offset, status: block + VINTF_STATUS.spec.offset,
    enable: VINTF_CONFIG.f.ENABLE, enabled: VINTF_STATUS.f.ENABLE_OK,
  };
}

/** The enable of the VCMDQ whose page0 slot is at `page0` (CONFIG.CMDQ_EN → STATUS.CMDQ_EN_OK). */
export function vcmdqEnable(page0: number): EnableHandshake {
  return {
    config: page0 + VCMDQ_CONFIG.spec.offset, status: page0 + VCMDQ_STATUS.spec.offset,
    enable: VCMDQ_CONFIG.f.CMDQ_EN, enabled: VCMDQ_STATUS.f.CMDQ_EN_OK,
  };
}

/** CERROR code 4 of a VCMDQ (CMDQV only): illegal access. */
export const CERROR_ILL_ACCESS = 4;

/**
 * Opcodes a guest-owned (HYP_OWN = 0) VCMDQ executes (docs/reference/tegra241-cmdqv.md §4.9): the one list
 * the silicon's filter and the guest driver's routing both derive from.
 */
export const GUEST_VCMDQ_OPCODES: readonly number[] = [Op.TLBI_NH_ASID, Op.TLBI_NH_VA, Op.ATC_INV, Op.SYNC];
