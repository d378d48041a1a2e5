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

// VFIO device file calls, named and shaped as QEMU's hw/vfio/trace-events.

/** VFIO_DEVICE_GET_INFO's answer. */
export const T_VFIO_GET_DEVICE = defineTrace(
  'vfio_get_device',
  [str('name'), u32('flags'), u32('num_regions'), u32('num_irqs')],
  'Device %s flags: %u, regions: %u, irqs: %u',
);
/** VFIO_DEVICE_GET_REGION_INFO's answer for one region. */
export const T_VFIO_REGION = defineTrace(
  'vfio_region_setup',
  [str('name'), i32('index'), u32('flags'), u64('offset'), u64('size')],
  'Device %s, region %d, flags: 0x%x, offset: 0x%x, size: 0x%x',
);
/** A config read the VMM made on the device (pread). */
export const T_VFIO_CFG_READ = defineTrace('vfio_pci_read_config', [str('name'), u32('addr'), u32('len'), u32('val')], ' (%s, @0x%x, len=0x%x) 0x%x');
/** A config write the VMM forwarded to the device (pwrite). */
export const T_VFIO_CFG_WRITE = defineTrace('vfio_pci_write_config', [str('name'), u32('addr'), u32('val'), u32('len')], ' (%s, @0x%x, 0x%x, len=0x%x)');
/** VFIO_DEVICE_RESET and its return value. */
export const T_VFIO_RESET = defineTrace('vfio_pci_reset', [str('name'), i32('ret')], ' (%s) ret=%d');
/** A failed pread/pwrite of the config region. */
export const T_VFIO_CFG_ERROR = defineTrace('vfio_pci_config_error', [str('name'), str('op'), u32('addr'), u32('len'), i32('ret')], ' (%s) %s @0x%x len=0x%x failed: %d');

/** Every trace event of this folder. */
export const TRACE_EVENTS: readonly TraceEvent[] = [T_CALL, T_HWQ, T_MMAP, T_VFIO_GET_DEVICE, T_VFIO_REGION, T_VFIO_CFG_READ, T_VFIO_CFG_WRITE, T_VFIO_RESET, T_VFIO_CFG_ERROR];
