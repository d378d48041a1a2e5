/**
 * The register file of the emulated Tegra241 CMDQV (spec qemu-cmdqv.md §2): one VINTF, two
 * VCMDQs. The guest-visible config page and the per-VCMDQ page0/page1 caches, declared once
 * with QEMU's reset values and access rules (reserved bits are stored, HYP_OWN is forced to 0).
 */

import { defineRegister, RegisterLayout } from '../../kit/registers.js';

/** Number of VCMDQs and SID pairs exposed (QEMU: CMDQV_NUM_CMDQ_LOG2 = 1, SIDs log2 4). */
export const VCMDQS = 2;
export const SIDS = 16;
/** PARAM: VER 1, 2 VCMDQs, 1 VINTF, 16 SIDs. */
export const PARAM_VALUE = 0x0000_4011;
/** Size of the block. */
export const CMDQV_IO_LEN = 0x50000;

const stored = 'stored' as const;

export const CONFIG = defineRegister({
  name: 'CONFIG', offset: 0x0, width: 32, reset: 0x0002_0083, reserved: stored,
  fields: {
    CMDQV_EN: { lsb: 0, width: 1 }, CMDQV_PER_CMD_OFFSET: { lsb: 1, width: 3 }, CMDQ_MAX_CLK_BATCH: { lsb: 4, width: 8 },
    CMDQ_MAX_CMD_BATCH: { lsb: 12, width: 8 }, CONS_DRAM_EN: { lsb: 20, width: 1 },
  },
});
export const PARAM = defineRegister({
  name: 'PARAM', offset: 0x4, width: 32, access: 'RO', reset: PARAM_VALUE,
  fields: {
    CMDQV_VER: { lsb: 0, width: 4 }, CMDQV_NUM_CMDQ_LOG2: { lsb: 4, width: 4 }, CMDQV_NUM_VI_LOG2: { lsb: 8, width: 4 },
    CMDQV_NUM_SID_PER_VI_LOG2: { lsb: 12, width: 4 },
  },
});
export const STATUS = defineRegister({ name: 'STATUS', offset: 0x8, width: 32, access: 'RO', reset: 1, fields: { CMDQV_ENABLED: { lsb: 0, width: 1 } } });
export const VI_ERR_MAP = defineRegister({ name: 'VI_ERR_MAP_{i}', offset: 0x14, width: 32, access: 'RO', repeat: { count: 2, stride: 4 } });
export const VI_INT_MASK = defineRegister({ name: 'VI_INT_MASK_{i}', offset: 0x1c, width: 32, repeat: { count: 2, stride: 4 } });
export const CMDQ_ERR_MAP = defineRegister({ name: 'CMDQ_ERR_MAP_{i}', offset: 0x24, width: 32, access: 'RO', repeat: { count: 4, stride: 4 } });
export const CMDQ_ALLOC_MAP = defineRegister({
  name: 'CMDQ_ALLOC_MAP_{i}', offset: 0x200, width: 32, repeat: { count: VCMDQS, stride: 4 }, reserved: stored,
  fields: { ALLOC: { lsb: 0, width: 1 }, LVCMDQ: { lsb: 1, width: 7 }, VIRT_INTF_INDX: { lsb: 15, width: 6 } },
});
export const VINTF0_CONFIG = defineRegister({
  name: 'VINTF0_CONFIG', offset: 0x1000, width: 32, reserved: stored,
  fields: { ENABLE: { lsb: 0, width: 1 }, VMID: { lsb: 1, width: 16 }, HYP_OWN: { lsb: 17, width: 1, access: 'RAZ/WI' } },
});
export const VINTF0_STATUS = defineRegister({
  name: 'VINTF0_STATUS', offset: 0x1004, width: 32, access: 'RO',
  fields: { ENABLE_OK: { lsb: 0, width: 1 }, STATUS: { lsb: 1, width: 3 }, VI_NUM_LVCMDQ: { lsb: 16, width: 8 } },
});
export const VINTF0_SID_MATCH = defineRegister({
  name: 'VINTF0_SID_MATCH_{i}', offset: 0x1040, width: 32, repeat: { count: SIDS, stride: 4 }, reserved: stored,
  fields: { ENABLE: { lsb: 0, width: 1 }, VIRT_SID: { lsb: 1, width: 20 } },
});
export const VINTF0_SID_REPLACE = defineRegister({
  name: 'VINTF0_SID_REPLACE_{i}', offset: 0x1080, width: 32, repeat: { count: SIDS, stride: 4 }, reserved: stored,
  fields: { PHYS_SID: { lsb: 0, width: 20 } },
});
export const VINTF0_LVCMDQ_ERR_MAP = defineRegister({
  name: 'VINTF0_LVCMDQ_ERR_MAP_{i}', offset: 0x10c0, width: 32, access: 'RO', repeat: { count: 4, stride: 4 },
});

/** The config page (0x0000–0x10CC). */
export const CONFIG_PAGE = new RegisterLayout('tegra241-cmdqv config', 0x2000, [
  CONFIG, PARAM, STATUS, VI_ERR_MAP, VI_INT_MASK, CMDQ_ERR_MAP, CMDQ_ALLOC_MAP,
  VINTF0_CONFIG, VINTF0_STATUS, VINTF0_SID_MATCH, VINTF0_SID_REPLACE, VINTF0_LVCMDQ_ERR_MAP,
]);

// Page0 cache of one VCMDQ: values stored as written (no masking), STATUS/GERROR read-only.
export const P0_CONS = defineRegister({
  name: 'CONS_INDX', offset: 0x0, width: 32, reserved: stored, fields: { RD: { lsb: 0, width: 20 }, ERR: { lsb: 24, width: 7 } },
});
export const P0_PROD = defineRegister({ name: 'PROD_INDX', offset: 0x4, width: 32, reserved: stored, fields: { WR: { lsb: 0, width: 20 } } });
export const P0_CONFIG = defineRegister({ name: 'CONFIG', offset: 0x8, width: 32, reserved: stored, fields: { CMDQ_EN: { lsb: 0, width: 1 } } });
export const P0_STATUS = defineRegister({ name: 'STATUS', offset: 0xc, width: 32, access: 'RO', fields: { CMDQ_EN_OK: { lsb: 0, width: 1 } } });
const GERR = { CMDQ_ERR: { lsb: 0, width: 1 }, CONS_DRAM_WR_ABT_ERR: { lsb: 1, width: 1 }, CMDQ_INIT_ERR: { lsb: 2, width: 1 } } as const;
export const P0_GERROR = defineRegister({ name: 'GERROR', offset: 0x10, width: 32, access: 'RO', fields: GERR });
export const P0_GERRORN = defineRegister({ name: 'GERRORN', offset: 0x14, width: 32, reserved: stored, fields: GERR });
export const PAGE0 = new RegisterLayout('tegra241-cmdqv vcmdq page0', 0x80, [P0_CONS, P0_PROD, P0_CONFIG, P0_STATUS, P0_GERROR, P0_GERRORN]);

// Page1 cache: BASE and CONS_INDX_BASE_DRAM, 64-bit, stored verbatim.
export const P1_BASE = defineRegister({
  name: 'BASE', offset: 0x0, width: 64, reserved: stored, fields: { LOG2SIZE: { lsb: 0, width: 5 }, ADDR: { lsb: 5, width: 43 } },
});
export const P1_CONS_INDX_BASE = defineRegister({ name: 'CONS_INDX_BASE_DRAM', offset: 0x8, width: 64 });
export const PAGE1 = new RegisterLayout('tegra241-cmdqv vcmdq page1', 0x80, [P1_BASE, P1_CONS_INDX_BASE]);
