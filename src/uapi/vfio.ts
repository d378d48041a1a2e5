/**
 * The VFIO device-cdev ioctls a VMM uses to bind a device to iommufd and attach it to a page
 * table (include/uapi/linux/vfio.h): `VFIO_DEVICE_BIND_IOMMUFD`, `VFIO_DEVICE_ATTACH_IOMMUFD_PT`,
 * `VFIO_DEVICE_DETACH_IOMMUFD_PT`. Like iommufd they are `_IO(';', nr)` with VFIO_BASE = 100.
 */

import { _IO } from './iommufd.js';
import { defineStruct } from './layout.js';

/** `VFIO_TYPE` (';') and `VFIO_BASE`. */
export const VFIO_TYPE = 0x3b;
export const VFIO_BASE = 100;

export const vfio_device_bind_iommufd = defineStruct('vfio_device_bind_iommufd', 16, [
  { name: 'argsz', offset: 0, type: 'u32' },
  { name: 'flags', offset: 4, type: 'u32' },
  { name: 'iommufd', offset: 8, type: 's32' },
  { name: 'out_devid', offset: 12, type: 'u32' },
]);

export const vfio_device_attach_iommufd_pt = defineStruct('vfio_device_attach_iommufd_pt', 16, [
  { name: 'argsz', offset: 0, type: 'u32' },
  { name: 'flags', offset: 4, type: 'u32' },
  { name: 'pt_id', offset: 8, type: 'u32' },
  { name: 'pasid', offset: 12, type: 'u32' },
]);

export const vfio_device_detach_iommufd_pt = defineStruct('vfio_device_detach_iommufd_pt', 12, [
  { name: 'argsz', offset: 0, type: 'u32' },
  { name: 'flags', offset: 4, type: 'u32' },
  { name: 'pasid', offset: 8, type: 'u32' },
]);

export const VFIO_DEVICE_BIND_IOMMUFD = _IO(VFIO_TYPE, VFIO_BASE + 18);
export const VFIO_DEVICE_ATTACH_IOMMUFD_PT = _IO(VFIO_TYPE, VFIO_BASE + 19);
export const VFIO_DEVICE_DETACH_IOMMUFD_PT = _IO(VFIO_TYPE, VFIO_BASE + 20);
