/**
 * Trace events of the SMMUv3 (accelerated and emulated), named and shaped as QEMU's hw/arm/trace-events
 * (smmuv3.c and smmuv3-accel.c sections; docs/reference/qemu-accel-smmuv3.md §14.2).
 */

import { defineTrace, type TraceEvent } from '../../kit/trace.js';

const u32 = (name: string) => ({ name, type: 'u32' }) as const;
const i32 = (name: string) => ({ name, type: 'i32' }) as const;
const u64 = (name: string) => ({ name, type: 'u64' }) as const;
const str = (name: string) => ({ name, type: 'str' }) as const;

export const T_READ_MMIO = defineTrace('smmuv3_read_mmio', [u64('addr'), u64('val'), u32('size'), u32('r')], 'addr: 0x%x val:0x%x size: 0x%x(%d)');
export const T_WRITE_MMIO = defineTrace('smmuv3_write_mmio', [u64('addr'), u64('val'), u32('size'), u32('r')], 'addr: 0x%x val:0x%x size: 0x%x(%d)');
export const T_TRIGGER_IRQ = defineTrace('smmuv3_trigger_irq', [i32('irq')], 'irq=%d');
export const T_WRITE_GERROR = defineTrace('smmuv3_write_gerror', [u32('toggled'), u32('gerror')], 'toggled=0x%x, new GERROR=0x%x');
export const T_WRITE_GERRORN = defineTrace('smmuv3_write_gerrorn', [u32('acked'), u32('gerrorn')], 'acked=0x%x, new GERRORN=0x%x');
export const T_CMDQ_CONSUME = defineTrace(
  'smmuv3_cmdq_consume',
  [u32('prod'), u32('cons'), u32('prod_wrap'), u32('cons_wrap')],
  'prod=%d cons=%d prod.wrap=%d cons.wrap=%d',
);
export const T_CMDQ_OPCODE = defineTrace('smmuv3_cmdq_opcode', [str('opcode')], '<--- %s');
export const T_CMDQ_CONSUME_OUT = defineTrace(
  'smmuv3_cmdq_consume_out',
  [u32('prod'), u32('cons'), u32('prod_wrap'), u32('cons_wrap')],
  'prod:%d, cons:%d, prod_wrap:%d, cons_wrap:%d ',
);
export const T_CMDQ_CONSUME_ERROR = defineTrace('smmuv3_cmdq_consume_error', [str('cmd_name'), u32('cmd_error')], 'Error on %s command execution: %d');
export const T_CMDQ_CFGI_STE = defineTrace('smmuv3_cmdq_cfgi_ste', [i32('streamid')], 'streamid= %d');
export const T_CMDQ_CFGI_STE_RANGE = defineTrace('smmuv3_cmdq_cfgi_ste_range', [u32('start'), u32('end')], 'start=0x%x - end=0x%x');
export const T_CMDQ_CFGI_CD = defineTrace('smmuv3_cmdq_cfgi_cd', [u32('sid')], 'sid=0x%x');
export const T_CMDQ_TLBI_NH_ASID = defineTrace('smmuv3_cmdq_tlbi_nh_asid', [i32('asid')], 'asid=%d');
export const T_CMDQ_TLBI_NSNH = defineTrace('smmuv3_cmdq_tlbi_nsnh', [], '');
export const T_RANGE_INVAL = defineTrace(
  'smmuv3_range_inval',
  [i32('vmid'), i32('asid'), u64('addr'), u32('tg'), u64('num_pages'), u32('ttl'), u32('leaf'), i32('stage')],
  'vmid=%d asid=%d addr=0x%x tg=%d num_pages=0x%x ttl=%d leaf=%d stage=%d',
);
export const T_UNHANDLED_CMD = defineTrace('smmuv3_unhandled_cmd', [u32('type')], 'Unhandled command type=%d');
export const T_FIND_STE = defineTrace('smmuv3_find_ste', [u32('sid'), u32('features'), u32('sid_split')], 'sid=0x%x features:0x%x, sid_split:0x%x');
export const T_FIND_STE_2LVL = defineTrace(
  'smmuv3_find_ste_2lvl',
  [u64('strtab_base'), u64('l1ptr'), i32('l1_off'), u64('l2ptr'), i32('l2_off'), i32('max_l2_ste')],
  'strtab_base:0x%x l1ptr:0x%x l1_off:0x%x, l2ptr:0x%x l2_off:0x%x max_l2_ste:%d',
);
export const T_GET_STE = defineTrace('smmuv3_get_ste', [u64('addr')], 'STE addr: 0x%x');
export const T_PROPAGATE_EVENT = defineTrace('smmuv3_propagate_event', [str('type'), u32('sid')], '%s sid=0x%x');
export const T_RESET_EXIT = defineTrace('smmu_reset_exit', [], '');
export const T_ACCEL_SET_IOMMU_DEVICE = defineTrace('smmuv3_accel_set_iommu_device', [i32('devfn'), u32('devid')], 'devfn=0x%x (hiodi devid=0x%x)');
export const T_ACCEL_UNSET_IOMMU_DEVICE = defineTrace('smmuv3_accel_unset_iommu_device', [i32('devfn'), u32('devid')], 'devfn=0x%x (hiodi devid=0x%x)');
export const T_ACCEL_TRANSLATE_STE = defineTrace(
  'smmuv3_accel_translate_ste',
  [u32('vsid'), u32('hwpt_id'), u64('ste_1'), u64('ste_0')],
  'vSID=0x%x hwpt_id=0x%x ste=%x:%x',
);
export const T_ACCEL_INSTALL_STE = defineTrace('smmuv3_accel_install_ste', [u32('vsid'), str('type'), u32('hwpt_id')], 'vSID=0x%x ste type=%s hwpt_id=0x%x');

// The emulated SMMUv3 (accel=off): translation, configuration cache and IOTLB (hw/arm/smmuv3.c,
// smmu-common.c; docs/reference/qemu-smmuv3.md §7).
export const T_TRANSLATE_SUCCESS = defineTrace(
  'smmuv3_translate_success',
  [str('n'), u32('sid'), u64('iova'), u64('translated'), i32('perm')],
  '%s sid=0x%x iova=0x%x translated=0x%x perm=0x%x',
);
export const T_TRANSLATE_DISABLE = defineTrace('smmuv3_translate_disable', [str('n'), u32('sid'), u64('addr'), u32('is_write')], '%s sid=0x%x bypass (smmu disabled) iova:0x%x is_write=%d');
export const T_TRANSLATE_BYPASS = defineTrace('smmuv3_translate_bypass', [str('n'), u32('sid'), u64('addr'), u32('is_write')], '%s sid=0x%x STE bypass iova:0x%x is_write=%d');
export const T_TRANSLATE_ABORT = defineTrace('smmuv3_translate_abort', [str('n'), u32('sid'), u64('addr'), u32('is_write')], '%s sid=0x%x abort on iova:0x%x is_write=%d');
export const T_RECORD_EVENT = defineTrace('smmuv3_record_event', [str('type'), u32('sid')], '%s sid=0x%x');
export const T_DECODE_CD = defineTrace('smmuv3_decode_cd', [u32('oas')], 'oas=%d');
export const T_CONFIG_CACHE_INV = defineTrace('smmuv3_config_cache_inv', [u32('sid')], 'Config cache INV for sid=0x%x');
export const T_CMDQ_TLBI_NH = defineTrace('smmuv3_cmdq_tlbi_nh', [i32('vmid')], 'vmid=%d');
export const T_CMDQ_TLBI_S12_VMID = defineTrace('smmuv3_cmdq_tlbi_s12_vmid', [i32('vmid')], 'vmid=%d');
export const T_IOTLB_INV_ALL = defineTrace('smmu_iotlb_inv_all', [], 'IOTLB invalidate all');
export const T_IOTLB_INV_ASID_VMID = defineTrace('smmu_iotlb_inv_asid_vmid', [i32('asid'), i32('vmid')], 'IOTLB invalidate asid=%d vmid=%d');
export const T_IOTLB_INV_VMID = defineTrace('smmu_iotlb_inv_vmid', [i32('vmid')], 'IOTLB invalidate vmid=%d');
export const T_IOTLB_INV_VMID_S1 = defineTrace('smmu_iotlb_inv_vmid_s1', [i32('vmid')], 'IOTLB invalidate vmid=%d');

/** Every trace event of the SMMUv3 devices. */
export const TRACE_EVENTS: readonly TraceEvent[] = [
  T_READ_MMIO, T_WRITE_MMIO, T_TRIGGER_IRQ, T_WRITE_GERROR, T_WRITE_GERRORN, T_CMDQ_CONSUME,
  T_CMDQ_OPCODE, T_CMDQ_CONSUME_OUT, T_CMDQ_CONSUME_ERROR, T_CMDQ_CFGI_STE, T_CMDQ_CFGI_STE_RANGE,
  T_CMDQ_CFGI_CD, T_CMDQ_TLBI_NH_ASID, T_CMDQ_TLBI_NSNH, T_RANGE_INVAL, T_UNHANDLED_CMD,
  T_FIND_STE, T_FIND_STE_2LVL, T_GET_STE, T_PROPAGATE_EVENT, T_RESET_EXIT,
  T_ACCEL_SET_IOMMU_DEVICE, T_ACCEL_UNSET_IOMMU_DEVICE, T_ACCEL_TRANSLATE_STE, T_ACCEL_INSTALL_STE,
  T_TRANSLATE_SUCCESS, T_TRANSLATE_DISABLE, T_TRANSLATE_BYPASS, T_TRANSLATE_ABORT, T_RECORD_EVENT, T_DECODE_CD,
  T_CONFIG_CACHE_INV, T_CMDQ_TLBI_NH, T_CMDQ_TLBI_S12_VMID, T_IOTLB_INV_ALL, T_IOTLB_INV_ASID_VMID, T_IOTLB_INV_VMID,
  T_IOTLB_INV_VMID_S1,
];
