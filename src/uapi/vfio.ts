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

// ---------------------------------------------------------------------------------------------
// Device information and regions (docs/reference/iommufd-uapi.md §16): how a VMM learns what a
// vfio-pci device has and where its config space sits in the device file.

/** `struct vfio_device_info`: flags, region and IRQ counts. The kernel needs argsz up to num_irqs. */
export const vfio_device_info = defineStruct(
  'vfio_device_info',
  24,
  [
    { name: 'argsz', offset: 0, type: 'u32' },
    { name: 'flags', offset: 4, type: 'u32' },
    { name: 'num_regions', offset: 8, type: 'u32' },
    { name: 'num_irqs', offset: 12, type: 'u32' },
    { name: 'cap_offset', offset: 16, type: 'u32' },
    { name: 'pad', offset: 20, type: 'u32' },
  ],
  'num_irqs',
);

/** `vfio_device_info.flags`. */
export const VFIO_DEVICE_FLAGS_RESET = 1 << 0;
export const VFIO_DEVICE_FLAGS_PCI = 1 << 1;

/** `struct vfio_region_info`: one region's flags, size and offset in the device file. */
export const vfio_region_info = defineStruct('vfio_region_info', 32, [
  { name: 'argsz', offset: 0, type: 'u32' },
  { name: 'flags', offset: 4, type: 'u32' },
  { name: 'index', offset: 8, type: 'u32' },
  { name: 'cap_offset', offset: 12, type: 'u32' },
  { name: 'size', offset: 16, type: 'u64' },
  { name: 'offset', offset: 24, type: 'u64' },
]);

/** `vfio_region_info.flags`. */
export const VFIO_REGION_INFO_FLAG_READ = 1 << 0;
export const VFIO_REGION_INFO_FLAG_WRITE = 1 << 1;
export const VFIO_REGION_INFO_FLAG_MMAP = 1 << 2;
export const VFIO_REGION_INFO_FLAG_CAPS = 1 << 3;

/** vfio-pci region indexes: BAR0..5, the expansion ROM, config space, VGA. */
export const VFIO_PCI_BAR0_REGION_INDEX = 0;
export const VFIO_PCI_ROM_REGION_INDEX = 6;
export const VFIO_PCI_CONFIG_REGION_INDEX = 7;
export const VFIO_PCI_VGA_REGION_INDEX = 8;
export const VFIO_PCI_NUM_REGIONS = 9;
/** vfio-pci IRQ indexes: INTx, MSI, MSI-X, ERR, REQ. */
export const VFIO_PCI_NUM_IRQS = 5;

/** vfio-pci places region `index` at file offset `index << 40` (VFIO_PCI_OFFSET_SHIFT). */
export const VFIO_PCI_OFFSET_SHIFT = 40;

/** File offset of vfio-pci region `index` (a number: 8 << 40 is still exact in a double). */
export function vfioPciIndexToOffset(index: number): number {
  return index * 2 ** VFIO_PCI_OFFSET_SHIFT;
}

/** The region index of a vfio-pci file offset, and the offset inside it. */
export function vfioPciOffsetToIndex(offset: number): { index: number; within: number } {
  const index = Math.floor(offset / 2 ** VFIO_PCI_OFFSET_SHIFT);
  return { index, within: offset - index * 2 ** VFIO_PCI_OFFSET_SHIFT };
}

export const VFIO_DEVICE_GET_INFO = _IO(VFIO_TYPE, VFIO_BASE + 7);
export const VFIO_DEVICE_GET_REGION_INFO = _IO(VFIO_TYPE, VFIO_BASE + 8);
export const VFIO_DEVICE_RESET = _IO(VFIO_TYPE, VFIO_BASE + 11);

/** The VFIO ioctls cmdqv models, for the `cmdqv uapi` listing. */
export const VFIO_IOCTLS: readonly { readonly name: string; readonly number: number }[] = [
  { name: 'VFIO_DEVICE_GET_INFO', number: VFIO_DEVICE_GET_INFO },
  { name: 'VFIO_DEVICE_GET_REGION_INFO', number: VFIO_DEVICE_GET_REGION_INFO },
  { name: 'VFIO_DEVICE_RESET', number: VFIO_DEVICE_RESET },
  { name: 'VFIO_DEVICE_BIND_IOMMUFD', number: VFIO_DEVICE_BIND_IOMMUFD },
  { name: 'VFIO_DEVICE_ATTACH_IOMMUFD_PT', number: VFIO_DEVICE_ATTACH_IOMMUFD_PT },
  { name: 'VFIO_DEVICE_DETACH_IOMMUFD_PT', number: VFIO_DEVICE_DETACH_IOMMUFD_PT },
];

/** The VFIO structs cmdqv models, for the `cmdqv uapi` listing. */
export const VFIO_STRUCTS = [vfio_device_info, vfio_region_info, vfio_device_bind_iommufd, vfio_device_attach_iommufd_pt, vfio_device_detach_iommufd_pt] as const;
