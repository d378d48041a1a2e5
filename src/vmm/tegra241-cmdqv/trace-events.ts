/**
 * Trace events of the VMM's Tegra241 CMDQV, named and shaped as QEMU's hw/arm/trace-events
 * (tegra241-cmdqv.c section; docs/reference/qemu-accel-smmuv3.md §14.2).
 */

import { defineTrace, type TraceEvent } from '../../kit/trace.js';

const u32 = (name: string) => ({ name, type: 'u32' }) as const;
const i32 = (name: string) => ({ name, type: 'i32' }) as const;
const u64 = (name: string) => ({ name, type: 'u64' }) as const;
const str = (name: string) => ({ name, type: 'str' }) as const;

export const T_READ_MMIO = defineTrace('tegra241_cmdqv_read_mmio', [u64('offset'), u64('val'), u32('size')], 'offset: 0x%x val: 0x%x size: 0x%x');
export const T_WRITE_MMIO = defineTrace('tegra241_cmdqv_write_mmio', [u64('offset'), u64('val'), u32('size')], 'offset: 0x%x val: 0x%x size: 0x%x');
export const T_READ_VCMDQ_PAGE0 = defineTrace(
  'tegra241_cmdqv_read_vcmdq_page0',
  [i32('index'), str('aperture'), str('backing'), u64('offset0'), u64('val')],
  'vcmdq %d (%s, %s) offset 0x%x val 0x%x',
);
export const T_WRITE_VCMDQ_PAGE0 = defineTrace(
  'tegra241_cmdqv_write_vcmdq_page0',
  [i32('index'), str('aperture'), str('backing'), u64('offset0'), u64('val')],
  'vcmdq %d (%s, %s) offset 0x%x val 0x%x',
);
export const T_READ_VCMDQ_PAGE1 = defineTrace('tegra241_cmdqv_read_vcmdq_page1', [i32('index'), str('aperture'), u64('offset0'), u64('val')], 'vcmdq %d (%s) offset 0x%x val 0x%x');
export const T_WRITE_VCMDQ_PAGE1 = defineTrace('tegra241_cmdqv_write_vcmdq_page1', [i32('index'), str('aperture'), u64('offset0'), u64('val')], 'vcmdq %d (%s) offset 0x%x val 0x%x');
export const T_ERR_MAP = defineTrace('tegra241_cmdqv_err_map', [u32('map3'), u32('map2'), u32('map1'), u32('map0')], 'hw irq received. error (hex) maps: %04X:%04X:%04X:%04X');
export const T_INIT_REGS = defineTrace('tegra241_cmdqv_init_regs', [u32('param')], 'register init, param=0x%08X');

export const TRACE_EVENTS: readonly TraceEvent[] = [
  T_READ_MMIO, T_WRITE_MMIO, T_READ_VCMDQ_PAGE0, T_WRITE_VCMDQ_PAGE0, T_READ_VCMDQ_PAGE1, T_WRITE_VCMDQ_PAGE1, T_ERR_MAP, T_INIT_REGS,
];
