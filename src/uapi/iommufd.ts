/**
 * The iommufd uAPI (include/uapi/linux/iommufd.h, Linux 7.0): struct layouts, enum values and
 * ioctl numbers. Names are exactly the kernel header's. Facts: docs/reference/iommufd-uapi.md §2–13.
 */

import { defineStruct, type AnyStruct, type Struct } from './layout.js';

// ---------------------------------------------------------------------------------------------
// Structs (declaration order, offsets and sizes as the 7.0 header compiles on arm64)

export const iommu_destroy = defineStruct('iommu_destroy', 8, [
  { name: 'size', offset: 0, type: 'u32' },
  { name: 'id', offset: 4, type: 'u32' },
], 'id');

export const iommu_ioas_alloc = defineStruct('iommu_ioas_alloc', 12, [
  { name: 'size', offset: 0, type: 'u32' },
  { name: 'flags', offset: 4, type: 'u32' },
  { name: 'out_ioas_id', offset: 8, type: 'u32' },
], 'out_ioas_id');

export const iommu_iova_range = defineStruct('iommu_iova_range', 16, [
  { name: 'start', offset: 0, type: 'u64' },
  { name: 'last', offset: 8, type: 'u64' },
]);

export const iommu_ioas_iova_ranges = defineStruct('iommu_ioas_iova_ranges', 32, [
  { name: 'size', offset: 0, type: 'u32' },
  { name: 'ioas_id', offset: 4, type: 'u32' },
  { name: 'num_iovas', offset: 8, type: 'u32' },
  { name: '__reserved', offset: 12, type: 'u32' },
  { name: 'allowed_iovas', offset: 16, type: 'u64' },
  { name: 'out_iova_alignment', offset: 24, type: 'u64' },
], 'out_iova_alignment');

export const iommu_ioas_allow_iovas = defineStruct('iommu_ioas_allow_iovas', 24, [
  { name: 'size', offset: 0, type: 'u32' },
  { name: 'ioas_id', offset: 4, type: 'u32' },
  { name: 'num_iovas', offset: 8, type: 'u32' },
  { name: '__reserved', offset: 12, type: 'u32' },
  { name: 'allowed_iovas', offset: 16, type: 'u64' },
], 'allowed_iovas');

export const iommu_ioas_map = defineStruct('iommu_ioas_map', 40, [
  { name: 'size', offset: 0, type: 'u32' },
  { name: 'flags', offset: 4, type: 'u32' },
  { name: 'ioas_id', offset: 8, type: 'u32' },
  { name: '__reserved', offset: 12, type: 'u32' },
  { name: 'user_va', offset: 16, type: 'u64' },
  { name: 'length', offset: 24, type: 'u64' },
  { name: 'iova', offset: 32, type: 'u64' },
], 'iova');

export const iommu_ioas_copy = defineStruct('iommu_ioas_copy', 40, [
  { name: 'size', offset: 0, type: 'u32' },
  { name: 'flags', offset: 4, type: 'u32' },
  { name: 'dst_ioas_id', offset: 8, type: 'u32' },
  { name: 'src_ioas_id', offset: 12, type: 'u32' },
  { name: 'length', offset: 16, type: 'u64' },
  { name: 'dst_iova', offset: 24, type: 'u64' },
  { name: 'src_iova', offset: 32, type: 'u64' },
], 'src_iova');

export const iommu_ioas_unmap = defineStruct('iommu_ioas_unmap', 24, [
  { name: 'size', offset: 0, type: 'u32' },
  { name: 'ioas_id', offset: 4, type: 'u32' },
  { name: 'iova', offset: 8, type: 'u64' },
  { name: 'length', offset: 16, type: 'u64' },
], 'length');

export const iommu_hw_info = defineStruct('iommu_hw_info', 40, [
  { name: 'size', offset: 0, type: 'u32' },
  { name: 'flags', offset: 4, type: 'u32' },
  { name: 'dev_id', offset: 8, type: 'u32' },
  { name: 'data_len', offset: 12, type: 'u32' },
  { name: 'data_uptr', offset: 16, type: 'u64' },
  { name: 'in_data_type', offset: 24, type: 'u32' },
  { name: 'out_data_type', offset: 24, type: 'u32', union: true },
  { name: 'out_max_pasid_log2', offset: 28, type: 'u8' },
  { name: '__reserved', offset: 29, type: 'u8', count: 3 },
  { name: 'out_capabilities', offset: 32, type: 'u64' },
], '__reserved');

export const iommu_hw_info_arm_smmuv3 = defineStruct('iommu_hw_info_arm_smmuv3', 40, [
  { name: 'flags', offset: 0, type: 'u32' },
  { name: '__reserved', offset: 4, type: 'u32' },
  { name: 'idr', offset: 8, type: 'u32', count: 6 },
  { name: 'iidr', offset: 32, type: 'u32' },
  { name: 'aidr', offset: 36, type: 'u32' },
]);

export const iommu_hw_info_tegra241_cmdqv = defineStruct('iommu_hw_info_tegra241_cmdqv', 8, [
  { name: 'flags', offset: 0, type: 'u32' },
  { name: 'version', offset: 4, type: 'u8' },
  { name: 'log2vcmdqs', offset: 5, type: 'u8' },
  { name: 'log2vsids', offset: 6, type: 'u8' },
  { name: '__reserved', offset: 7, type: 'u8' },
]);

export const iommu_hwpt_alloc = defineStruct('iommu_hwpt_alloc', 48, [
  { name: 'size', offset: 0, type: 'u32' },
  { name: 'flags', offset: 4, type: 'u32' },
  { name: 'dev_id', offset: 8, type: 'u32' },
  { name: 'pt_id', offset: 12, type: 'u32' },
  { name: 'out_hwpt_id', offset: 16, type: 'u32' },
  { name: '__reserved', offset: 20, type: 'u32' },
  { name: 'data_type', offset: 24, type: 'u32' },
  { name: 'data_len', offset: 28, type: 'u32' },
  { name: 'data_uptr', offset: 32, type: 'u64' },
  { name: 'fault_id', offset: 40, type: 'u32' },
  { name: '__reserved2', offset: 44, type: 'u32' },
], '__reserved');

export const iommu_hwpt_arm_smmuv3 = defineStruct('iommu_hwpt_arm_smmuv3', 16, [
  { name: 'ste', offset: 0, type: 'u64', count: 2 },
]);

export const iommu_viommu_alloc = defineStruct('iommu_viommu_alloc', 40, [
  { name: 'size', offset: 0, type: 'u32' },
  { name: 'flags', offset: 4, type: 'u32' },
  { name: 'type', offset: 8, type: 'u32' },
  { name: 'dev_id', offset: 12, type: 'u32' },
  { name: 'hwpt_id', offset: 16, type: 'u32' },
  { name: 'out_viommu_id', offset: 20, type: 'u32' },
  { name: 'data_len', offset: 24, type: 'u32' },
  { name: '__reserved', offset: 28, type: 'u32' },
  { name: 'data_uptr', offset: 32, type: 'u64' },
], 'out_viommu_id');

export const iommu_viommu_tegra241_cmdqv = defineStruct('iommu_viommu_tegra241_cmdqv', 16, [
  { name: 'out_vintf_mmap_offset', offset: 0, type: 'u64' },
  { name: 'out_vintf_mmap_length', offset: 8, type: 'u64' },
]);

export const iommu_vdevice_alloc = defineStruct('iommu_vdevice_alloc', 24, [
  { name: 'size', offset: 0, type: 'u32' },
  { name: 'viommu_id', offset: 4, type: 'u32' },
  { name: 'dev_id', offset: 8, type: 'u32' },
  { name: 'out_vdevice_id', offset: 12, type: 'u32' },
  { name: 'virt_id', offset: 16, type: 'u64' },
], 'virt_id');

export const iommu_hw_queue_alloc = defineStruct('iommu_hw_queue_alloc', 40, [
  { name: 'size', offset: 0, type: 'u32' },
  { name: 'flags', offset: 4, type: 'u32' },
  { name: 'viommu_id', offset: 8, type: 'u32' },
  { name: 'type', offset: 12, type: 'u32' },
  { name: 'index', offset: 16, type: 'u32' },
  { name: 'out_hw_queue_id', offset: 20, type: 'u32' },
  { name: 'nesting_parent_iova', offset: 24, type: 'u64' },
  { name: 'length', offset: 32, type: 'u64' },
], 'length');

export const iommu_veventq_alloc = defineStruct('iommu_veventq_alloc', 32, [
  { name: 'size', offset: 0, type: 'u32' },
  { name: 'flags', offset: 4, type: 'u32' },
  { name: 'viommu_id', offset: 8, type: 'u32' },
  { name: 'type', offset: 12, type: 'u32' },
  { name: 'veventq_depth', offset: 16, type: 'u32' },
  { name: 'out_veventq_id', offset: 20, type: 'u32' },
  { name: 'out_veventq_fd', offset: 24, type: 'u32' },
  { name: '__reserved', offset: 28, type: 'u32' },
], 'out_veventq_fd');

export const iommufd_vevent_header = defineStruct('iommufd_vevent_header', 8, [
  { name: 'flags', offset: 0, type: 'u32' },
  { name: 'sequence', offset: 4, type: 'u32' },
]);

export const iommu_vevent_arm_smmuv3 = defineStruct('iommu_vevent_arm_smmuv3', 32, [
  { name: 'evt', offset: 0, type: 'u64', count: 4 },
]);

export const iommu_vevent_tegra241_cmdqv = defineStruct('iommu_vevent_tegra241_cmdqv', 16, [
  { name: 'lvcmdq_err_map', offset: 0, type: 'u64', count: 2 },
]);

export const iommu_hwpt_invalidate = defineStruct('iommu_hwpt_invalidate', 32, [
  { name: 'size', offset: 0, type: 'u32' },
  { name: 'hwpt_id', offset: 4, type: 'u32' },
  { name: 'data_uptr', offset: 8, type: 'u64' },
  { name: 'data_type', offset: 16, type: 'u32' },
  { name: 'entry_len', offset: 20, type: 'u32' },
  { name: 'entry_num', offset: 24, type: 'u32' },
  { name: '__reserved', offset: 28, type: 'u32' },
], '__reserved');

export const iommu_viommu_arm_smmuv3_invalidate = defineStruct('iommu_viommu_arm_smmuv3_invalidate', 16, [
  { name: 'cmd', offset: 0, type: 'u64', count: 2 },
]);

/** Every uAPI struct cmdqv uses, by kernel name. */
export const STRUCTS: Readonly<Record<string, AnyStruct>> = Object.fromEntries(
  [
    iommu_destroy,
    iommu_ioas_alloc,
    iommu_iova_range,
    iommu_ioas_iova_ranges,
    iommu_ioas_allow_iovas,
    iommu_ioas_map,
    iommu_ioas_copy,
    iommu_ioas_unmap,
    iommu_hw_info,
    iommu_hw_info_arm_smmuv3,
    iommu_hw_info_tegra241_cmdqv,
    iommu_hwpt_alloc,
    iommu_hwpt_arm_smmuv3,
    iommu_viommu_alloc,
    iommu_viommu_tegra241_cmdqv,
    iommu_vdevice_alloc,
    iommu_hw_queue_alloc,
    iommu_veventq_alloc,
    iommufd_vevent_header,
    iommu_vevent_arm_smmuv3,
    iommu_vevent_tegra241_cmdqv,
    iommu_hwpt_invalidate,
    iommu_viommu_arm_smmuv3_invalidate,
  ].map((s) => [s.name, s as AnyStruct]),
);

// ---------------------------------------------------------------------------------------------
// Enums (docs/reference/iommufd-uapi.md §3)

export const iommu_hw_info_type = {
  IOMMU_HW_INFO_TYPE_NONE: 0,
  IOMMU_HW_INFO_TYPE_DEFAULT: 0,
  IOMMU_HW_INFO_TYPE_INTEL_VTD: 1,
  IOMMU_HW_INFO_TYPE_ARM_SMMUV3: 2,
  IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV: 3,
  IOMMU_HW_INFO_TYPE_AMD: 4,
} as const;

export const iommufd_hw_info_flags = {
  IOMMU_HW_INFO_FLAG_INPUT_TYPE: 1,
} as const;

export const iommufd_hw_capabilities = {
  IOMMU_HW_CAP_DIRTY_TRACKING: 1,
  IOMMU_HW_CAP_PCI_PASID_EXEC: 2,
  IOMMU_HW_CAP_PCI_PASID_PRIV: 4,
  IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED: 8,
} as const;

export const iommu_viommu_type = {
  IOMMU_VIOMMU_TYPE_DEFAULT: 0,
  IOMMU_VIOMMU_TYPE_ARM_SMMUV3: 1,
  IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV: 2,
} as const;

export const iommu_veventq_type = {
  IOMMU_VEVENTQ_TYPE_DEFAULT: 0,
  IOMMU_VEVENTQ_TYPE_ARM_SMMUV3: 1,
  IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV: 2,
} as const;

export const iommu_veventq_flag = {
  IOMMU_VEVENTQ_FLAG_LOST_EVENTS: 1,
} as const;

export const iommu_hw_queue_type = {
  IOMMU_HW_QUEUE_TYPE_DEFAULT: 0,
  IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV: 1,
} as const;

export const iommu_hwpt_data_type = {
  IOMMU_HWPT_DATA_NONE: 0,
  IOMMU_HWPT_DATA_VTD_S1: 1,
  IOMMU_HWPT_DATA_ARM_SMMUV3: 2,
  IOMMU_HWPT_DATA_AMD_GUEST: 3,
} as const;

export const iommu_hwpt_invalidate_data_type = {
  IOMMU_HWPT_INVALIDATE_DATA_VTD_S1: 0,
  IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3: 1,
} as const;

export const iommufd_hwpt_alloc_flags = {
  IOMMU_HWPT_ALLOC_NEST_PARENT: 1,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING: 2,
  IOMMU_HWPT_FAULT_ID_VALID: 4,
  IOMMU_HWPT_ALLOC_PASID: 8,
} as const;

export const iommufd_ioas_map_flags = {
  IOMMU_IOAS_MAP_FIXED_IOVA: 1,
  IOMMU_IOAS_MAP_WRITEABLE: 2,
  IOMMU_IOAS_MAP_READABLE: 4,
} as const;

/** Every enum, by kernel name. */
export const ENUMS: Readonly<Record<string, Readonly<Record<string, number>>>> = {
  iommu_hw_info_type,
  iommufd_hw_info_flags,
  iommufd_hw_capabilities,
  iommu_viommu_type,
  iommu_veventq_type,
  iommu_veventq_flag,
  iommu_hw_queue_type,
  iommu_hwpt_data_type,
  iommu_hwpt_invalidate_data_type,
  iommufd_hwpt_alloc_flags,
  iommufd_ioas_map_flags,
};

// ---------------------------------------------------------------------------------------------
// Ioctls (docs/reference/iommufd-uapi.md §2.3): `_IO(';', nr)`, no direction or size bits.

/** `IOMMUFD_TYPE`, the ioctl type byte `';'`. */
export const IOMMUFD_TYPE = 0x3b;

/** Linux `_IO(type, nr)`. */
export function _IO(type: number, nr: number): number {
  return ((type & 0xff) << 8) | (nr & 0xff);
}

/**
 * One ioctl of the iommufd table, typed by the decoded value `S` of its argument struct, so a
 * handler written against `IoctlDef<S>` receives an `S`.
 */
export interface IoctlDef<S extends object = Record<string, unknown>> {
  readonly name: string;
  /** Command number (`IOMMUFD_CMD_*`). */
  readonly nr: number;
  /** Full ioctl request number. */
  readonly number: number;
  /** Argument struct, when cmdqv models this ioctl. */
  readonly struct: Struct<S> | undefined;
}

/** An ioctl whose argument struct cmdqv declares. */
export interface ModelledIoctlDef<S extends object> extends IoctlDef<S> {
  readonly struct: Struct<S>;
}

function ioctl<S extends object>(name: string, nr: number, struct: Struct<S>): ModelledIoctlDef<S>;
function ioctl(name: string, nr: number): IoctlDef;
function ioctl(name: string, nr: number, struct?: AnyStruct): IoctlDef {
  return { name, nr, number: _IO(IOMMUFD_TYPE, nr), struct };
}

export const IOMMU_DESTROY = ioctl('IOMMU_DESTROY', 0x80, iommu_destroy);
export const IOMMU_IOAS_ALLOC = ioctl('IOMMU_IOAS_ALLOC', 0x81, iommu_ioas_alloc);
export const IOMMU_IOAS_ALLOW_IOVAS = ioctl('IOMMU_IOAS_ALLOW_IOVAS', 0x82, iommu_ioas_allow_iovas);
export const IOMMU_IOAS_COPY = ioctl('IOMMU_IOAS_COPY', 0x83, iommu_ioas_copy);
export const IOMMU_IOAS_IOVA_RANGES = ioctl('IOMMU_IOAS_IOVA_RANGES', 0x84, iommu_ioas_iova_ranges);
export const IOMMU_IOAS_MAP = ioctl('IOMMU_IOAS_MAP', 0x85, iommu_ioas_map);
export const IOMMU_IOAS_UNMAP = ioctl('IOMMU_IOAS_UNMAP', 0x86, iommu_ioas_unmap);
export const IOMMU_OPTION = ioctl('IOMMU_OPTION', 0x87);
export const IOMMU_VFIO_IOAS = ioctl('IOMMU_VFIO_IOAS', 0x88);
export const IOMMU_HWPT_ALLOC = ioctl('IOMMU_HWPT_ALLOC', 0x89, iommu_hwpt_alloc);
export const IOMMU_GET_HW_INFO = ioctl('IOMMU_GET_HW_INFO', 0x8a, iommu_hw_info);
export const IOMMU_HWPT_SET_DIRTY_TRACKING = ioctl('IOMMU_HWPT_SET_DIRTY_TRACKING', 0x8b);
export const IOMMU_HWPT_GET_DIRTY_BITMAP = ioctl('IOMMU_HWPT_GET_DIRTY_BITMAP', 0x8c);
export const IOMMU_HWPT_INVALIDATE = ioctl('IOMMU_HWPT_INVALIDATE', 0x8d, iommu_hwpt_invalidate);
export const IOMMU_FAULT_QUEUE_ALLOC = ioctl('IOMMU_FAULT_QUEUE_ALLOC', 0x8e);
export const IOMMU_IOAS_MAP_FILE = ioctl('IOMMU_IOAS_MAP_FILE', 0x8f);
export const IOMMU_VIOMMU_ALLOC = ioctl('IOMMU_VIOMMU_ALLOC', 0x90, iommu_viommu_alloc);
export const IOMMU_VDEVICE_ALLOC = ioctl('IOMMU_VDEVICE_ALLOC', 0x91, iommu_vdevice_alloc);
export const IOMMU_IOAS_CHANGE_PROCESS = ioctl('IOMMU_IOAS_CHANGE_PROCESS', 0x92);
export const IOMMU_VEVENTQ_ALLOC = ioctl('IOMMU_VEVENTQ_ALLOC', 0x93, iommu_veventq_alloc);
export const IOMMU_HW_QUEUE_ALLOC = ioctl('IOMMU_HW_QUEUE_ALLOC', 0x94, iommu_hw_queue_alloc);

/** Every iommufd ioctl, in command-number order. */
export const IOCTLS: readonly IoctlDef[] = [
  IOMMU_DESTROY,
  IOMMU_IOAS_ALLOC,
  IOMMU_IOAS_ALLOW_IOVAS,
  IOMMU_IOAS_COPY,
  IOMMU_IOAS_IOVA_RANGES,
  IOMMU_IOAS_MAP,
  IOMMU_IOAS_UNMAP,
  IOMMU_OPTION,
  IOMMU_VFIO_IOAS,
  IOMMU_HWPT_ALLOC,
  IOMMU_GET_HW_INFO,
  IOMMU_HWPT_SET_DIRTY_TRACKING,
  IOMMU_HWPT_GET_DIRTY_BITMAP,
  IOMMU_HWPT_INVALIDATE,
  IOMMU_FAULT_QUEUE_ALLOC,
  IOMMU_IOAS_MAP_FILE,
  IOMMU_VIOMMU_ALLOC,
  IOMMU_VDEVICE_ALLOC,
  IOMMU_IOAS_CHANGE_PROCESS,
  IOMMU_VEVENTQ_ALLOC,
  IOMMU_HW_QUEUE_ALLOC,
];

/** Look up an ioctl by request number. */
export function ioctlByNumber(number: number): IoctlDef | undefined {
  return IOCTLS.find((i) => i.number === number);
}
