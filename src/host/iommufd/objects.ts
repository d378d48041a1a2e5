/**
 * iommufd objects (spec linux-cmdqv.md §3.12): each has an ID in its context's table and a
 * count of users — other objects, open file descriptors or mappings that reference it. An
 * object can be destroyed only when nothing uses it (else EBUSY).
 */

import type { HostDevice } from '../kernel/host-device.js';
import type { UserVintf } from '../kernel/tegra241-cmdqv-driver.js';
import type { IoAddressSpace, IoasArea, PagingDomain } from './io-pagetable.js';
import type { VeventQueue } from './veventq.js';

/** Object kinds. */
export type ObjKind = 'device' | 'ioas' | 'hwpt_paging' | 'hwpt_nested' | 'viommu' | 'vdevice' | 'hw_queue' | 'veventq';

/** Base of every object. */
export abstract class IommufdObject {
  abstract readonly kind: ObjKind;
  id = 0;
  /** References held on this object by others. */
  users = 0;
  /** Objects this one holds a reference on (released when it is destroyed). */
  readonly holds: IommufdObject[] = [];

  /** Take a reference on `other` for the lifetime of this object. */
  hold(other: IommufdObject): void {
    other.users++;
    this.holds.push(other);
  }

  /** Release the references this object holds. */
  releaseHolds(): void {
    for (const o of this.holds) o.users--;
    this.holds.length = 0;
  }
}

/** A device bound to this context (VFIO_DEVICE_BIND_IOMMUFD). */
export class DeviceObj extends IommufdObject {
  readonly kind = 'device';
  /** The HWPT it is attached to, if any. */
  attached: HwptPagingObj | HwptNestedObj | undefined;
  /** Its vDEVICE, if any. */
  vdevice: VdeviceObj | undefined;
  constructor(readonly dev: HostDevice) {
    super();
  }
}

export class IoasObj extends IommufdObject {
  readonly kind = 'ioas';
  constructor(readonly ioas: IoAddressSpace) {
    super();
  }
}

/** A paging HWPT; with NEST_PARENT it is a stage-2 domain that vIOMMUs nest on. */
export class HwptPagingObj extends IommufdObject {
  readonly kind = 'hwpt_paging';
  constructor(
    readonly ioas: IoasObj,
    readonly domain: PagingDomain,
    readonly nestParent: boolean,
    readonly smmuName: string,
  ) {
    super();
  }
}

/** A nested HWPT holding a guest STE (words 0 and 1). */
export class HwptNestedObj extends IommufdObject {
  readonly kind = 'hwpt_nested';
  constructor(
    readonly viommu: ViommuObj,
    /** Guest STE dword0/dword1 as four words, after validation (EATS stripped). */
    readonly ste: Uint32Array,
  ) {
    super();
  }
}

/** A vIOMMU (type ARM_SMMUV3 or TEGRA241_CMDQV). */
export class ViommuObj extends IommufdObject {
  readonly kind = 'viommu';
  readonly vdevices = new Map<number, VdeviceObj>();
  readonly veventqs = new Map<number, VeventqObj>();
  readonly hwQueues = new Map<number, HwQueueObj>();
  /** mmap offset of the VINTF page0 (TEGRA241_CMDQV type). */
  mmapOffset = 0;
  constructor(
    readonly type: number,
    readonly parent: HwptPagingObj,
    readonly smmuName: string,
    readonly vmid: number,
    readonly vintf: UserVintf | undefined,
  ) {
    super();
  }
}

/** A vDEVICE: virtual SID → device on a vIOMMU. */
export class VdeviceObj extends IommufdObject {
  readonly kind = 'vdevice';
  /** SID pair slot in the VINTF (TEGRA241_CMDQV vIOMMUs). */
  sidSlot = -1;
  constructor(
    readonly viommu: ViommuObj,
    readonly device: DeviceObj,
    readonly virtId: number,
  ) {
    super();
  }
}

/** A HW queue (logical VCMDQ). */
export class HwQueueObj extends IommufdObject {
  readonly kind = 'hw_queue';
  constructor(
    readonly viommu: ViommuObj,
    readonly index: number,
    readonly area: IoasArea,
    readonly pa: number,
    readonly length: number,
  ) {
    super();
  }
}

/** A vEVENTQ. */
export class VeventqObj extends IommufdObject {
  readonly kind = 'veventq';
  fd = -1;
  constructor(
    readonly viommu: ViommuObj,
    readonly queue: VeventQueue,
  ) {
    super();
  }
}
