/**
 * Trace events of the VMM's iommufd backend, named and shaped as QEMU's backends/trace-events
 * (iommufd section).
 */

import { defineTrace, type TraceEvent } from '../../kit/trace.js';

const i32 = (name: string) => ({ name, type: 'i32' }) as const;
const u32 = (name: string) => ({ name, type: 'u32' }) as const;
const u64 = (name: string) => ({ name, type: 'u64' }) as const;
const str = (name: string) => ({ name, type: 'str' }) as const;

/** One backend ioctl and its return value. */
export const T_CALL = defineTrace('iommufd_backend_call', [i32('iommufd'), str('ioctl'), i32('ret')], 'iommufd=%d %s ret=%d');
export const T_HWQ = defineTrace(
  'iommufd_backend_alloc_hw_queue',
  [i32('iommufd'), u32('viommu_id'), u32('vqueue_type'), u32('index'), u64('addr'), u64('size'), u32('vqueue_id'), i32('ret')],
  ' iommufd=%d viommu_id=%u vqueue_type=%u index=%u addr=0x%x size=0x%x vqueue_id=%u (%d)',
);
export const T_MMAP = defineTrace(
  'iommufd_backend_viommu_mmap',
  [i32('iommufd'), u32('viommu_id'), u64('size'), u64('offset')],
  ' iommufd=%d viommu_id=%u size=0x%x offset=0x%x',
);

/** Every trace event of this folder. */
export const TRACE_EVENTS: readonly TraceEvent[] = [T_CALL, T_HWQ, T_MMAP];
