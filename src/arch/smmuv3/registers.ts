/**
 * The SMMUv3 register file (Arm IHI 0070, page 0 and the page-1 event queue indexes), declared
 * once and shared by the host hardware model and the VMM's emulated SMMU.
 */

import { defineRegister, RegisterLayout, type RegisterDef, type RegisterInfo } from '../../kit/registers.js';

const ro = 'RO' as const;

export const IDR0 = defineRegister({
  name: 'IDR0', offset: 0x00, width: 32, access: ro,
  fields: {
    S2P: { lsb: 0, width: 1 }, S1P: { lsb: 1, width: 1 }, TTF: { lsb: 2, width: 2 }, COHACC: { lsb: 4, width: 1 },
    BTM: { lsb: 5, width: 1 }, HTTU: { lsb: 6, width: 2 }, DORMHINT: { lsb: 8, width: 1 }, HYP: { lsb: 9, width: 1 },
    ATS: { lsb: 10, width: 1 }, NS1ATS: { lsb: 11, width: 1 }, ASID16: { lsb: 12, width: 1 }, MSI: { lsb: 13, width: 1 },
    SEV: { lsb: 14, width: 1 }, ATOS: { lsb: 15, width: 1 }, PRI: { lsb: 16, width: 1 }, VMW: { lsb: 17, width: 1 },
    VMID16: { lsb: 18, width: 1 }, CD2L: { lsb: 19, width: 1 }, VATOS: { lsb: 20, width: 1 }, TTENDIAN: { lsb: 21, width: 2 },
    STALL_MODEL: { lsb: 24, width: 2 }, TERM_MODEL: { lsb: 26, width: 1 }, ST_LEVEL: { lsb: 27, width: 2 },
  },
});
export const IDR1 = defineRegister({
  name: 'IDR1', offset: 0x04, width: 32, access: ro,
  fields: {
    SIDSIZE: { lsb: 0, width: 6 }, SSIDSIZE: { lsb: 6, width: 5 }, PRIQS: { lsb: 11, width: 5 }, EVENTQS: { lsb: 16, width: 5 },
    CMDQS: { lsb: 21, width: 5 }, ATTR_PERMS_OVR: { lsb: 26, width: 1 }, ATTR_TYPES_OVR: { lsb: 27, width: 1 },
    REL: { lsb: 28, width: 1 }, QUEUES_PRESET: { lsb: 29, width: 1 }, TABLES_PRESET: { lsb: 30, width: 1 },
  },
});
export const IDR2 = defineRegister({ name: 'IDR2', offset: 0x08, width: 32, access: ro });
export const IDR3 = defineRegister({
  name: 'IDR3', offset: 0x0c, width: 32, access: ro,
  fields: { HAD: { lsb: 2, width: 1 }, PBHA: { lsb: 3, width: 1 }, XNX: { lsb: 4, width: 1 }, PPS: { lsb: 5, width: 1 }, MPAM: { lsb: 7, width: 1 }, FWB: { lsb: 8, width: 1 }, STT: { lsb: 9, width: 1 }, RIL: { lsb: 10, width: 1 }, BBML: { lsb: 11, width: 2 } },
});
export const IDR4 = defineRegister({ name: 'IDR4', offset: 0x10, width: 32, access: ro });
export const IDR5 = defineRegister({
  name: 'IDR5', offset: 0x14, width: 32, access: ro,
  fields: { OAS: { lsb: 0, width: 3 }, GRAN4K: { lsb: 4, width: 1 }, GRAN16K: { lsb: 5, width: 1 }, GRAN64K: { lsb: 6, width: 1 }, VAX: { lsb: 10, width: 2 }, STALL_MAX: { lsb: 16, width: 16 } },
});
export const IIDR = defineRegister({ name: 'IIDR', offset: 0x18, width: 32, access: ro });
export const AIDR = defineRegister({ name: 'AIDR', offset: 0x1c, width: 32, access: ro });
export const CR0 = defineRegister({
  name: 'CR0', offset: 0x20, width: 32,
  fields: { SMMUEN: { lsb: 0, width: 1 }, PRIQEN: { lsb: 1, width: 1 }, EVENTQEN: { lsb: 2, width: 1 }, CMDQEN: { lsb: 3, width: 1 }, ATSCHK: { lsb: 4, width: 1 }, VMW: { lsb: 6, width: 3 } },
});
export const CR0ACK = defineRegister({
  name: 'CR0ACK', offset: 0x24, width: 32, access: ro,
  fields: { SMMUEN: { lsb: 0, width: 1 }, PRIQEN: { lsb: 1, width: 1 }, EVENTQEN: { lsb: 2, width: 1 }, CMDQEN: { lsb: 3, width: 1 }, ATSCHK: { lsb: 4, width: 1 }, VMW: { lsb: 6, width: 3 } },
});
export const CR1 = defineRegister({
  name: 'CR1', offset: 0x28, width: 32,
  fields: { QUEUE_IC: { lsb: 0, width: 2 }, QUEUE_OC: { lsb: 2, width: 2 }, QUEUE_SH: { lsb: 4, width: 2 }, TABLE_IC: { lsb: 6, width: 2 }, TABLE_OC: { lsb: 8, width: 2 }, TABLE_SH: { lsb: 10, width: 2 } },
});
export const CR2 = defineRegister({
  name: 'CR2', offset: 0x2c, width: 32,
  fields: { E2H: { lsb: 0, width: 1 }, RECINVSID: { lsb: 1, width: 1 }, PTM: { lsb: 2, width: 1 } },
});
export const STATUSR = defineRegister({ name: 'STATUSR', offset: 0x40, width: 32, access: ro });
export const GBPA = defineRegister({
  name: 'GBPA', offset: 0x44, width: 32, reset: 0x1000,
  fields: {
    MEMATTR: { lsb: 0, width: 4 }, MTCFG: { lsb: 4, width: 1 }, ALLOCCFG: { lsb: 8, width: 4 }, SHCFG: { lsb: 12, width: 2 },
    PRIVCFG: { lsb: 16, width: 2 }, INSTCFG: { lsb: 18, width: 2 }, ABORT: { lsb: 20, width: 1 }, UPDATE: { lsb: 31, width: 1 },
  },
});
export const AGBPA = defineRegister({ name: 'AGBPA', offset: 0x48, width: 32 });
export const IRQ_CTRL = defineRegister({
  name: 'IRQ_CTRL', offset: 0x50, width: 32,
  fields: { GERROR_IRQEN: { lsb: 0, width: 1 }, PRIQ_IRQEN: { lsb: 1, width: 1 }, EVENTQ_IRQEN: { lsb: 2, width: 1 } },
});
export const IRQ_CTRLACK = defineRegister({
  name: 'IRQ_CTRLACK', offset: 0x54, width: 32, access: ro,
  fields: { GERROR_IRQEN: { lsb: 0, width: 1 }, PRIQ_IRQEN: { lsb: 1, width: 1 }, EVENTQ_IRQEN: { lsb: 2, width: 1 } },
});
const GERROR_FIELDS = {
  CMDQ_ERR: { lsb: 0, width: 1 }, EVENTQ_ABT_ERR: { lsb: 2, width: 1 }, PRIQ_ABT_ERR: { lsb: 3, width: 1 },
  MSI_CMDQ_ABT_ERR: { lsb: 4, width: 1 }, MSI_EVENTQ_ABT_ERR: { lsb: 5, width: 1 }, MSI_PRIQ_ABT_ERR: { lsb: 6, width: 1 },
  MSI_GERROR_ABT_ERR: { lsb: 7, width: 1 }, SFM_ERR: { lsb: 8, width: 1 },
} as const;
export const GERROR = defineRegister({ name: 'GERROR', offset: 0x60, width: 32, access: ro, fields: GERROR_FIELDS });
export const GERRORN = defineRegister({ name: 'GERRORN', offset: 0x64, width: 32, fields: GERROR_FIELDS });
export const GERROR_IRQ_CFG0 = defineRegister({ name: 'GERROR_IRQ_CFG0', offset: 0x68, width: 64, fields: { ADDR: { lsb: 2, width: 50 } } });
export const GERROR_IRQ_CFG1 = defineRegister({ name: 'GERROR_IRQ_CFG1', offset: 0x70, width: 32 });
export const GERROR_IRQ_CFG2 = defineRegister({ name: 'GERROR_IRQ_CFG2', offset: 0x74, width: 32 });
export const STRTAB_BASE = defineRegister({
  name: 'STRTAB_BASE', offset: 0x80, width: 64,
  fields: { ADDR: { lsb: 6, width: 46 }, RA: { lsb: 62, width: 1 } },
});
export const STRTAB_BASE_CFG = defineRegister({
  name: 'STRTAB_BASE_CFG', offset: 0x88, width: 32,
  fields: { LOG2SIZE: { lsb: 0, width: 6 }, SPLIT: { lsb: 6, width: 5 }, FMT: { lsb: 16, width: 2 } },
});
const QBASE_FIELDS = { LOG2SIZE: { lsb: 0, width: 5 }, ADDR: { lsb: 5, width: 47 }, RA: { lsb: 62, width: 1 } } as const;
export const CMDQ_BASE = defineRegister({ name: 'CMDQ_BASE', offset: 0x90, width: 64, fields: QBASE_FIELDS });
export const CMDQ_PROD = defineRegister({ name: 'CMDQ_PROD', offset: 0x98, width: 32, fields: { WR: { lsb: 0, width: 20 } } });
export const CMDQ_CONS = defineRegister({
  name: 'CMDQ_CONS', offset: 0x9c, width: 32,
  fields: { RD: { lsb: 0, width: 20 }, ERR: { lsb: 24, width: 7, access: 'RO' } },
});
export const EVENTQ_BASE = defineRegister({ name: 'EVENTQ_BASE', offset: 0xa0, width: 64, fields: QBASE_FIELDS });
export const EVENTQ_IRQ_CFG0 = defineRegister({ name: 'EVENTQ_IRQ_CFG0', offset: 0xb0, width: 64, fields: { ADDR: { lsb: 2, width: 50 } } });
export const EVENTQ_IRQ_CFG1 = defineRegister({ name: 'EVENTQ_IRQ_CFG1', offset: 0xb8, width: 32 });
export const EVENTQ_IRQ_CFG2 = defineRegister({ name: 'EVENTQ_IRQ_CFG2', offset: 0xbc, width: 32 });
/** Page 1 (offset 0x10000): event queue indexes. */
export const EVENTQ_PROD = defineRegister({
  name: 'EVENTQ_PROD', offset: 0x100a8, width: 32,
  fields: { WR: { lsb: 0, width: 20 }, OVFLG: { lsb: 31, width: 1 } },
});
export const EVENTQ_CONS = defineRegister({
  name: 'EVENTQ_CONS', offset: 0x100ac, width: 32,
  fields: { RD: { lsb: 0, width: 20 }, OVACKFLG: { lsb: 31, width: 1 } },
});

/** Every register, for building layouts. */
const SMMUV3_REGISTERS = [
  IDR0, IDR1, IDR2, IDR3, IDR4, IDR5, IIDR, AIDR, CR0, CR0ACK, CR1, CR2, STATUSR, GBPA, AGBPA, IRQ_CTRL, IRQ_CTRLACK,
  GERROR, GERRORN, GERROR_IRQ_CFG0, GERROR_IRQ_CFG1, GERROR_IRQ_CFG2, STRTAB_BASE, STRTAB_BASE_CFG, CMDQ_BASE,
  CMDQ_PROD, CMDQ_CONS, EVENTQ_BASE, EVENTQ_IRQ_CFG0, EVENTQ_IRQ_CFG1, EVENTQ_IRQ_CFG2, EVENTQ_PROD, EVENTQ_CONS,
] as const;

/** Size of the SMMUv3 register frame (two 64 KiB pages). */
export const SMMUV3_MMIO_SIZE = 0x20000;

let sharedLayout: RegisterLayout | undefined;
/** The SMMUv3 register layout (built once, shared by every SMMU model). */
export function smmuv3Layout(): RegisterLayout {
  sharedLayout ??= new RegisterLayout('smmuv3', SMMUV3_MMIO_SIZE, [...SMMUV3_REGISTERS]);
  return sharedLayout;
}

/** The registers an SMMUv3 model acts on, by name, in the shared layout (its slots and offsets). */
export interface Smmuv3Registers {
  readonly idr: readonly RegisterInfo[];
  readonly iidr: RegisterInfo;
  readonly aidr: RegisterInfo;
  readonly cr0: RegisterInfo;
  readonly cr0ack: RegisterInfo;
  readonly gbpa: RegisterInfo;
  readonly irqCtrl: RegisterInfo;
  readonly irqCtrlAck: RegisterInfo;
  readonly gerror: RegisterInfo;
  readonly gerrorn: RegisterInfo;
  readonly strtabBase: RegisterInfo;
  readonly strtabCfg: RegisterInfo;
  readonly cmdqBase: RegisterInfo;
  readonly cmdqProd: RegisterInfo;
  readonly cmdqCons: RegisterInfo;
  readonly eventqBase: RegisterInfo;
  readonly eventqProd: RegisterInfo;
  readonly eventqCons: RegisterInfo;
}

let sharedRegisters: Smmuv3Registers | undefined;
/** The named registers of {@link smmuv3Layout} (built once; the host and VMM models share them). */
export function smmuv3Registers(): Smmuv3Registers {
  if (!sharedRegisters) {
    const layout = smmuv3Layout();
    const get = (def: RegisterDef) => layout.get(def.spec.name);
    sharedRegisters = {
      idr: [IDR0, IDR1, IDR2, IDR3, IDR4, IDR5].map(get),
      iidr: get(IIDR), aidr: get(AIDR), cr0: get(CR0), cr0ack: get(CR0ACK), gbpa: get(GBPA),
      irqCtrl: get(IRQ_CTRL), irqCtrlAck: get(IRQ_CTRLACK), gerror: get(GERROR), gerrorn: get(GERRORN),
      strtabBase: get(STRTAB_BASE), strtabCfg: get(STRTAB_BASE_CFG), cmdqBase: get(CMDQ_BASE),
      cmdqProd: get(CMDQ_PROD), cmdqCons: get(CMDQ_CONS), eventqBase: get(EVENTQ_BASE),
      eventqProd: get(EVENTQ_PROD), eventqCons: get(EVENTQ_CONS),
    };
  }
  return sharedRegisters;
}
