/**
 * The seam between iommufd core and the IOMMU driver behind a device, as Linux splits them:
 * the core keeps objects, the IOAS, reference counts and ioctl dispatch; the driver supplies
 * the iommufd parts of its `iommu_ops` ({@link IommuDriverOps}: hw_info, paging domains, device
 * table entries, vIOMMU allocation) and per-vIOMMU `viommu_ops` ({@link ViommuOps}: nested
 * domains, cache invalidation, vDEVICEs, HW queues, events). The core calls only these; every
 * architecture-specific check lives behind them. A device reaches its driver through the host
 * IOMMU instance it sits behind (`SmmuInstance.iommufd`).
 */

import type { RegionOps } from '../../kit/memory-region.js';
import { ErrnoError } from '../../uapi/errno.js';
import type { HostDevice } from '../kernel/host-device.js';
import type { IoasArea } from './io-pagetable.js';

/**
 * Driver data passed with an ioctl (Linux's `iommu_user_data`): a type tag, a length and the
 * user buffer behind them, read and written only when the driver asks.
 */
export interface UserData {
  readonly type: number;
  readonly length: number;
  /** Copy the `length` bytes in from the user (EFAULT on a bad pointer). */
  copyIn(): Uint8Array;
  /**
   * Copy the data in as a driver struct of `kernelSize` bytes (Linux's
   * `iommu_copy_struct_from_user`): shorter than `minSize` is EINVAL, a longer one needs a zero
   * tail (E2BIG), a shorter one is zero-extended.
   */
  copyStruct(kernelSize: number, minSize: number): Uint8Array;
  /**
   * Report a driver struct back into the user buffer (Linux's `iommu_copy_struct_to_user`): a
   * buffer shorter than `minSize` or longer than the struct is EINVAL; otherwise the user's
   * length is copied (EFAULT on a bad pointer).
   */
  copyStructOut(bytes: Uint8Array, minSize: number): void;
}

/**
 * The entry a driver installs in its device table for an attached device (an SMMUv3 STE),
 * opaque to the core.
 */
export type DeviceTableEntry = Uint32Array;

/** A domain a device can be attached to (Linux's `iommu_domain` and its attach op). */
export interface IommuDomain {
  /**
   * Check that `dev` may attach and build its device-table entry; nothing is written yet.
   * `vdeviceOnViommu`: whether the device has a vDEVICE on the domain's vIOMMU (nested domains).
   */
  prepareAttach(dev: HostDevice, vdeviceOnViommu: boolean): DeviceTableEntry;
}

/** A paging domain mirroring an IOAS (a stage-2 domain when it is a nesting parent). */
export interface IommuPagingDomain extends IommuDomain {
  /** Map an IOAS area into the domain's page tables. */
  mapArea(area: IoasArea): void;
  /** Unmap an IOAS area and invalidate what the IOMMU cached of it. */
  unmapArea(area: IoasArea): void;
  /** Release the domain's hardware resources (its VMID). */
  free(): void;
}

/** Where a driver's vIOMMU reaches back into the core. */
export interface ViommuCore {
  /** Queue `payload` on the vIOMMU's vEVENTQ of `type`; false when it has none. */
  reportEvent(type: number, payload: Uint8Array): boolean;
  /** Export `length` bytes of device registers to mmap(2) of the iommufd file; returns the offset. */
  allocMmap(length: number, ops: RegionOps): number;
}

/**
 * Thrown by {@link ViommuOps.invalidate} when an entry is rejected: the entries before it were
 * issued, and `handled` of them is what the ioctl reports back in entry_num.
 */
export class InvalidateEntryError extends ErrnoError {
  constructor(
    errno: number,
    message: string,
    readonly handled: number,
  ) {
    super(errno, message);
  }
}

/** A driver's vIOMMU (Linux's `iommufd_viommu_ops`). */
export interface ViommuOps {
  /** IOMMU_HWPT_INVALIDATE data type this vIOMMU takes, and its kernel entry size in bytes. */
  readonly invalidateDataType: number;
  readonly invalidateEntrySize: number;
  /**
   * Called once the core object exists, with the allocation's user data (for output fields):
   * may throw, and the core then destroys the vIOMMU.
   */
  init(core: ViommuCore, data: UserData): void;
  /** Release what the vIOMMU holds on the hardware. */
  destroy(): void;
  /** Build a nested domain from the user's data (IOMMU_HWPT_ALLOC on a vIOMMU). */
  allocNestedDomain(data: UserData): IommuDomain;
  /**
   * Convert `count` entries held as little-endian words (entry size / 4 per entry) in place and
   * issue them. Throws {@link InvalidateEntryError} on a rejected entry.
   */
  invalidate(words: Uint32Array, count: number): void;
  /**
   * A vDEVICE `virtId` (any u64 the core accepted) → `dev` was created / is going away. Init may
   * throw the driver's errno (a virt_id out of its range); the core then keeps nothing.
   */
  vdeviceInit(virtId: bigint, dev: HostDevice): void;
  vdeviceDestroy(virtId: bigint): void;
  /** Whether the vIOMMU has HW queues of `type`. */
  supportsHwQueue(type: number): boolean;
  /** Set up HW queue `index` on `length` bytes of physically contiguous memory at `pa`. */
  hwQueueInit(index: number, pa: number, length: number): void;
  hwQueueDestroy(index: number): void;
  /**
   * Load the guest-visible registers of HW queue `index` (a restored VM's, as its VMM saved
   * them from its page0). Not a uAPI call in Linux: the support a restore needs (docs/design.md
   * "Snapshot and migration"). Absent when the vIOMMU has no such queues.
   */
  hwQueueLoadState?(index: number, page0: Uint32Array): void;
  /**
   * A hardware event `record` of a device with vDEVICE `virtId` on this vIOMMU, attached to a
   * nested domain: report it to a vEVENTQ if it qualifies; returns whether it was reported.
   */
  forwardEvent(core: ViommuCore, virtId: bigint, record: Uint32Array): boolean;
}

/** The iommufd side of one IOMMU instance's driver (Linux's `iommu_ops`, iommufd parts). */
export interface IommuDriverOps {
  /** Name of the IOMMU instance: objects of different instances never mix (EINVAL). */
  readonly instance: string;
  /**
   * IOMMU_GET_HW_INFO of `type` (the default type when the user did not ask for one).
   * EOPNOTSUPP for types this IOMMU does not report.
   */
  hwInfo(type: number): { type: number; data: Uint8Array };
  /** Whether `dev` can use PCIe ATS through this IOMMU (`IOMMU_CAP_PCI_ATS_SUPPORTED`). */
  atsSupported(dev: HostDevice): boolean;
  /** A paging domain of `granule`-sized pages. */
  allocPagingDomain(granule: 4096 | 16384 | 65536): IommuPagingDomain;
  /** Whether vIOMMUs of `type` can be allocated on this IOMMU. */
  supportsViommu(type: number): boolean;
  /** Allocate a vIOMMU of a supported `type` nesting on `parent`. */
  allocViommu(type: number, parent: IommuPagingDomain, data: UserData): ViommuOps;
  /** Write `dev`'s device-table entry. */
  install(dev: HostDevice, entry: DeviceTableEntry): void;
  /** Make `dev` abort all DMA (its state when attached to nothing). */
  block(dev: HostDevice): void;
}
