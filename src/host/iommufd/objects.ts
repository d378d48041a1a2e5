/**
 * iommufd objects (docs/reference/iommufd-uapi.md §13): each has an ID in its context's table and a
 * count of users — other objects, open file descriptors or mappings that reference it. An
 * object can be destroyed only when nothing uses it (else EBUSY).
 *
 * State apart from runtime: each object keeps its kernel state (ID, user count, types, indexes,
 * addresses, the IOMMU instance it belongs to) in one plain record, `state`; the fields beside
 * it are runtime references — to other objects (the graph the ID table also describes), to the
 * host device, the IOAS area, the vEVENTQ and the driver's domain or vIOMMU operations. The
 * per-vIOMMU maps are indexes of that graph by virt_id, HW queue index and vEVENTQ type.
 */

import type { RegionOps } from '../../kit/memory-region.js';
import type { HostDevice } from '../kernel/host-device.js';
import type { IommuDomain, IommuPagingDomain, ViommuCore, ViommuOps } from './driver.js';
import type { IoAddressSpace, IoasArea } from './io-pagetable.js';
import type { MmapTable } from './mmap-table.js';
import type { VeventQueue } from './veventq.js';

/** Object kinds. */
export type ObjKind = 'device' | 'ioas' | 'hwpt_paging' | 'hwpt_nested' | 'viommu' | 'vdevice' | 'hw_queue' | 'veventq';

/** The state every object has. */
export interface ObjectState {
  /** ID in the context's table (0 until added). */
  id: number;
  /** References held on this object by others. */
  users: number;
}

/** Base of every object. */
export abstract class IommufdObject<S extends ObjectState = ObjectState> {
  abstract readonly kind: ObjKind;
  /** Objects this one holds a reference on (released when it is destroyed). */
  readonly holds: IommufdObject[] = [];

  constructor(readonly state: S) {}

  get id(): number {
    return this.state.id;
  }

  get users(): number {
    return this.state.users;
  }
  set users(count: number) {
    this.state.users = count;
  }

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

const fresh = (): ObjectState => ({ id: 0, users: 0 });

/** A device bound to this context (VFIO_DEVICE_BIND_IOMMUFD). */
export class DeviceObj extends IommufdObject {
  readonly kind = 'device';
  /** The HWPT it is attached to, if any. */
  attached: HwptPagingObj | HwptNestedObj | undefined;
  /** Its vDEVICE, if any. */
  vdevice: VdeviceObj | undefined;
  constructor(readonly dev: HostDevice) {
    super(fresh());
  }
}

/** An IOAS. */
export class IoasObj extends IommufdObject {
  readonly kind = 'ioas';
  constructor(readonly ioas: IoAddressSpace) {
    super(fresh());
  }
}

/** State of a paging HWPT. */
export interface HwptPagingState extends ObjectState {
  /** Allocated with NEST_PARENT: a stage-2 domain that vIOMMUs nest on. */
  readonly nestParent: boolean;
  /** The IOMMU instance its domain belongs to. */
  readonly iommu: string;
}

/** A paging HWPT; with NEST_PARENT it is a stage-2 domain that vIOMMUs nest on. */
export class HwptPagingObj extends IommufdObject<HwptPagingState> {
  readonly kind = 'hwpt_paging';
  constructor(
    readonly ioas: IoasObj,
    readonly domain: IommuPagingDomain,
    nestParent: boolean,
    iommu: string,
  ) {
    super({ ...fresh(), nestParent, iommu });
  }
}

/** A nested HWPT: the driver's nested domain (a guest STE for SMMUv3) on a vIOMMU. */
export class HwptNestedObj extends IommufdObject {
  readonly kind = 'hwpt_nested';
  constructor(
    readonly viommu: ViommuObj,
    readonly domain: IommuDomain,
  ) {
    super(fresh());
  }
}

/** State of a vIOMMU. */
export interface ViommuState extends ObjectState {
  /** `iommu_viommu_type`. */
  readonly type: number;
  /** The IOMMU instance it virtualises. */
  readonly iommu: string;
}

/** A vIOMMU; its driver's part is `ops`. */
export class ViommuObj extends IommufdObject<ViommuState> implements ViommuCore {
  readonly kind = 'viommu';
  readonly vdevices = new Map<bigint, VdeviceObj>();
  readonly veventqs = new Map<number, VeventqObj>();
  readonly hwQueues = new Map<number, HwQueueObj>();
  constructor(
    type: number,
    iommu: string,
    readonly parent: HwptPagingObj,
    readonly ops: ViommuOps,
    private readonly mmaps: MmapTable,
  ) {
    super({ ...fresh(), type, iommu });
  }

  reportEvent(type: number, payload: Uint8Array): boolean {
    const veventq = this.veventqs.get(type);
    if (!veventq) return false;
    veventq.queue.report(payload);
    return true;
  }

  allocMmap(length: number, ops: RegionOps): number {
    return this.mmaps.alloc(this, length, ops);
  }
}

/** State of a vDEVICE. */
export interface VdeviceState extends ObjectState {
  /** The guest's ID of the device (a virtual StreamID for SMMUv3). */
  readonly virtId: bigint;
}

/** A vDEVICE: virtual ID → device on a vIOMMU. */
export class VdeviceObj extends IommufdObject<VdeviceState> {
  readonly kind = 'vdevice';
  constructor(
    readonly viommu: ViommuObj,
    readonly device: DeviceObj,
    virtId: bigint,
  ) {
    super({ ...fresh(), virtId });
  }

  get virtId(): bigint {
    return this.state.virtId;
  }
}

/** State of a HW queue. */
export interface HwQueueState extends ObjectState {
  /** Queue index within its vIOMMU (a logical VCMDQ for Tegra241 CMDQV). */
  readonly index: number;
  /** Host physical address and length of the queue memory. */
  readonly pa: number;
  readonly length: number;
}

/** A HW queue (logical VCMDQ). */
export class HwQueueObj extends IommufdObject<HwQueueState> {
  readonly kind = 'hw_queue';
  constructor(
    readonly viommu: ViommuObj,
    index: number,
    readonly area: IoasArea,
    pa: number,
    length: number,
  ) {
    super({ ...fresh(), index, pa, length });
  }

  get index(): number {
    return this.state.index;
  }
}

/** State of a vEVENTQ object (its queue's own state is the {@link VeventQueue}'s). */
export interface VeventqState extends ObjectState {
  /** File descriptor of its event file in the owning process (-1 before it is installed). */
  fd: number;
}

/** A vEVENTQ. */
export class VeventqObj extends IommufdObject<VeventqState> {
  readonly kind = 'veventq';
  constructor(
    readonly viommu: ViommuObj,
    readonly queue: VeventQueue,
  ) {
    super({ ...fresh(), fd: -1 });
  }
}
