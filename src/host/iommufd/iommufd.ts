/**
 * One open /dev/iommu: the kernel's iommufd context. `ioctl()` takes the request number and a
 * user pointer, copies the argument struct in under the extensible-struct rules, validates it
 * the way the kernel does (docs/reference/iommufd-uapi.md §2–13), acts, and copies the result out. Errors are
 * returned as negative errnos, as the system call does.
 *
 * This is iommufd core: the object table, IOAS, reference counts and ioctl dispatch. What
 * depends on the IOMMU (hardware info, domains, device-table entries, vIOMMU types, command
 * conversion, HW queues, events) is asked of the driver behind the device's host IOMMU through
 * the operations of ./driver.ts.
 */

import { LITTLE_ENDIAN_HOST } from '../../kit/sparse-memory.js';
import { Errno, ErrnoError } from '../../uapi/errno.js';
import * as U from '../../uapi/iommufd.js';
import type { StructInfo, StructOf } from '../../uapi/layout.js';
import type { HostDevice } from '../kernel/host-device.js';
import type { HostKernel } from '../kernel/host-kernel.js';
import type { Process } from '../kernel/process.js';
import { PROT_EXEC } from '../../uapi/syscalls.js';
import { InvalidateEntryError, type IommuDriverOps, type UserData } from './driver.js';
import { IoAddressSpace } from './io-pagetable.js';
import { MmapTable } from './mmap-table.js';
import {
  DeviceObj,
  HwptNestedObj,
  HwptPagingObj,
  HwQueueObj,
  IoasObj,
  type IommufdObject,
  VdeviceObj,
  VeventqObj,
  ViommuObj,
} from './objects.js';
import { T_IOMMUFD_IOCTL } from './trace-events.js';
import { clearUser, copyFromUserInto, copyIoctlArg, copyStructFromUserVa, copyToUserFrom, readUserU32 } from './user-copy.js';
import { VeventQueue } from './veventq.js';

const U64_MAX = 0xffff_ffff_ffff_ffffn;
/** Bytes of one word of an invalidation array. */
const WORD_BYTES = 4;
/**
 * log2 of the pages in the largest single kernel allocation (arm64 MAX_PAGE_ORDER: 10 with
 * 4 KiB pages, 11 with 16 KiB, 13 with 64 KiB): kmalloc beyond page size << order fails (ENOMEM).
 */
const MAX_PAGE_ORDER: Readonly<Record<number, number>> = { 4096: 10, 16384: 11, 65536: 13 };
/** Every IOMMU_IOAS_MAP flag. */
const IOAS_MAP_FLAGS =
  U.iommufd_ioas_map_flags.IOMMU_IOAS_MAP_FIXED_IOVA | U.iommufd_ioas_map_flags.IOMMU_IOAS_MAP_WRITEABLE | U.iommufd_ioas_map_flags.IOMMU_IOAS_MAP_READABLE;

/** A modelled ioctl: its uAPI definition and the handler that receives its decoded struct. */
export interface IoctlHandler<S extends object> {
  readonly def: U.ModelledIoctlDef<S>;
  handle(arg: S): void;
}

/** Bind `handle` to `def`, the struct type flowing from the definition to the handler. */
function ioctlHandler<S extends object>(def: U.ModelledIoctlDef<S>, handle: (arg: S) => void): IoctlHandler<S> {
  return { def, handle };
}

/** The decoded argument of each handled ioctl. */
type IoasAllocArg = StructOf<typeof U.iommu_ioas_alloc>;
type IoasMapArg = StructOf<typeof U.iommu_ioas_map>;
type IoasUnmapArg = StructOf<typeof U.iommu_ioas_unmap>;
type HwInfoArg = StructOf<typeof U.iommu_hw_info>;
type HwptAllocArg = StructOf<typeof U.iommu_hwpt_alloc>;
type HwptInvalidateArg = StructOf<typeof U.iommu_hwpt_invalidate>;
type ViommuAllocArg = StructOf<typeof U.iommu_viommu_alloc>;
type VdeviceAllocArg = StructOf<typeof U.iommu_vdevice_alloc>;
type HwQueueAllocArg = StructOf<typeof U.iommu_hw_queue_alloc>;
type VeventqAllocArg = StructOf<typeof U.iommu_veventq_alloc>;

/** Driver data behind an ioctl's (type, length, user pointer) triple. */
class UserBuffer implements UserData {
  constructor(
    private readonly proc: Process,
    readonly type: number,
    readonly length: number,
    private readonly uptr: bigint,
  ) {}

  copyIn(): Uint8Array {
    return this.proc.mem.copyFromUser(Number(this.uptr), this.length);
  }

  copyStruct(kernelSize: number, minSize: number): Uint8Array {
    if (this.length < minSize) throw new ErrnoError(Errno.EINVAL, `driver data of ${this.length} bytes, below ${minSize}`);
    return copyStructFromUserVa(this.proc.mem, kernelSize, Number(this.uptr), this.length);
  }

  copyStructOut(bytes: Uint8Array, minSize: number): void {
    if (this.length < minSize || this.length > bytes.length) {
      throw new ErrnoError(Errno.EINVAL, `driver data of ${this.length} bytes cannot take a ${bytes.length}-byte report (minimum ${minSize})`);
    }
    this.proc.mem.copyToUser(Number(this.uptr), bytes.subarray(0, this.length));
  }
}

/** The context's own state: ID allocation and the file's lifetime. */
interface ContextState {
  nextId: number;
  /**
   * References on the file (docs/reference/iommufd-uapi.md §13): its open descriptor, each
   * mmap, each bound device (its VFIO file) and each open vEVENTQ fd. Released at zero.
   */
  fileRefs: number;
}

/** The iommufd context behind one file descriptor. */
export class IommufdContext {
  /** The object table: ID → object, or null for an ID kept as a tombstone. */
  private readonly objects = new Map<number, IommufdObject | null>();
  private readonly state: ContextState = { nextId: 1, fileRefs: 1 };
  private readonly mmaps: MmapTable;
  private readonly handlers = new Map<number, IoctlHandler<object>>();
  /** Set by a handler that must copy its struct out even though it fails (entry_num). */
  private copyOutOnError = false;
  /**
   * The kernel's copy of an IOMMU_HWPT_INVALIDATE array, reused from call to call (grown when
   * short); nothing holds it past the ioctl.
   */
  private invalidateBuffer = new Uint32Array(0);
  /** Largest single kernel allocation in bytes (KMALLOC_MAX_SIZE). */
  private readonly kmallocMax: number;

  constructor(
    readonly kernel: HostKernel,
    readonly proc: Process,
  ) {
    this.mmaps = new MmapTable(kernel.config.pageSize);
    this.kmallocMax = kernel.config.pageSize * 2 ** MAX_PAGE_ORDER[kernel.config.pageSize]!;
    const handlers: IoctlHandler<object>[] = [
      ioctlHandler(U.IOMMU_DESTROY, (arg) => this.destroy(arg.id)),
      ioctlHandler(U.IOMMU_IOAS_ALLOC, (arg) => this.ioasAlloc(arg)),
      ioctlHandler(U.IOMMU_IOAS_MAP, (arg) => this.ioasMap(arg)),
      ioctlHandler(U.IOMMU_IOAS_UNMAP, (arg) => this.ioasUnmap(arg)),
      ioctlHandler(U.IOMMU_GET_HW_INFO, (arg) => this.getHwInfo(arg)),
      ioctlHandler(U.IOMMU_HWPT_ALLOC, (arg) => this.hwptAlloc(arg)),
      ioctlHandler(U.IOMMU_HWPT_INVALIDATE, (arg) => this.hwptInvalidate(arg)),
      ioctlHandler(U.IOMMU_VIOMMU_ALLOC, (arg) => this.viommuAlloc(arg)),
      ioctlHandler(U.IOMMU_VDEVICE_ALLOC, (arg) => this.vdeviceAlloc(arg)),
      ioctlHandler(U.IOMMU_HW_QUEUE_ALLOC, (arg) => this.hwQueueAlloc(arg)),
      ioctlHandler(U.IOMMU_VEVENTQ_ALLOC, (arg) => this.veventqAlloc(arg)),
    ];
    for (const handler of handlers) this.handlers.set(handler.def.number, handler);
  }

  // ------------------------------------------------------------------------------------------
  // Dispatch

  /** ioctl(2) on this file: returns 0 or a negative errno. */
  ioctl(request: number, argp: number): number {
    const def = U.ioctlByNumber(request);
    const name = def?.name ?? `0x${request.toString(16)}`;
    let ret = 0;
    try {
      if (!def) throw new ErrnoError(Errno.ENOTTY, 'unknown ioctl');
      // The core copies the argument (size, minimum, tail) before any handler runs, so an ioctl
      // the model does not implement still answers EFAULT / EINVAL / E2BIG first.
      const size = def.struct ? this.readUser32(argp) : 0;
      const kernelArg = def.struct ? copyIoctlArg(this.proc.mem, def.struct, argp, size) : undefined;
      const handler = this.handlers.get(request);
      if (!handler || !kernelArg) {
        this.kernel.log.unimp('iommufd', `${def.name} is not modelled`);
        throw new ErrnoError(Errno.EOPNOTSUPP, `${def.name} is not modelled`);
      }
      const layout = handler.def.struct;
      const arg = layout.decode(kernelArg);
      this.copyOutOnError = false;
      try {
        handler.handle(arg);
      } catch (e) {
        if (this.copyOutOnError) this.copyOut(layout, layout.encode(arg), argp, size);
        throw e;
      }
      this.copyOut(layout, layout.encode(arg), argp, size);
    } catch (e) {
      if (!(e instanceof ErrnoError)) throw e;
      ret = -e.errno;
      this.kernel.lastError = e.message;
    }
    // Tested first: emit's argument list is an array built per call, even when the event is off.
    const tracer = this.kernel.tracer;
    if (tracer.enabled(T_IOMMUFD_IOCTL)) tracer.emit(T_IOMMUFD_IOCTL, name, ret);
    this.kernel.stats.ioctls++;
    return ret;
  }

  private readUser32(va: number): number {
    return readUserU32(this.proc.mem, va);
  }

  private copyOut(layout: StructInfo, bytes: Uint8Array, argp: number, size: number): void {
    copyToUserFrom(this.proc.mem, argp, bytes.subarray(0, Math.min(size, layout.size)));
  }

  // ------------------------------------------------------------------------------------------
  // Object table

  private add<T extends IommufdObject>(o: T): T {
    o.state.id = this.state.nextId++;
    this.objects.set(o.id, o);
    return o;
  }

  private get(id: number): IommufdObject {
    const o = this.objects.get(id);
    if (!o) throw new ErrnoError(Errno.ENOENT, `no object ${id}`);
    return o;
  }

  private getKind<T extends IommufdObject>(id: number, kind: IommufdObject['kind'], errno = Errno.ENOENT): T {
    const o = this.objects.get(id);
    if (!o) throw new ErrnoError(Errno.ENOENT, `no object ${id}`);
    if (o.kind !== kind) throw new ErrnoError(errno, `object ${id} is a ${o.kind}, not a ${kind}`);
    return o as T;
  }

  /** The live object `id`, if any (read-only inspection: what a migration re-created, tests). */
  lookup(id: number): IommufdObject | undefined {
    return this.objects.get(id) ?? undefined;
  }

  // ------------------------------------------------------------------------------------------
  // What a restore needs that the uAPI does not offer (docs/design.md "Snapshot and migration").
  // Not ioctls: the composition root calls them, standing for the kernel support a real restore
  // would need.

  /** Load the guest-visible registers of HW queue `hwQueueId` (see ViommuOps.hwQueueLoadState). */
  loadHwQueueState(hwQueueId: number, page0: Uint32Array): void {
    const queue = this.getKind<HwQueueObj>(hwQueueId, 'hw_queue');
    const load = queue.viommu.ops.hwQueueLoadState;
    if (!load) throw new ErrnoError(Errno.EOPNOTSUPP, `HW queue ${hwQueueId}: its vIOMMU cannot load queue state`);
    load.call(queue.viommu.ops, queue.index, page0);
  }

  /** The payloads of the events vEVENTQ `veventqId` holds, oldest first (lost-event headers left out). */
  pendingVevents(veventqId: number): Uint8Array[] {
    const veventq = this.getKind<VeventqObj>(veventqId, 'veventq');
    return veventq.queue.state.records.filter((r) => !r.lost).map((r) => r.payload.slice());
  }

  /** Queue `payloads` on vEVENTQ `veventqId` as if the hardware had reported them. */
  injectVevents(veventqId: number, payloads: readonly Uint8Array[]): void {
    const veventq = this.getKind<VeventqObj>(veventqId, 'veventq');
    for (const p of payloads) veventq.queue.report(p);
  }

  /** Number of live objects (for tests and leak checks). */
  get objectCount(): number {
    let n = 0;
    for (const o of this.objects.values()) if (o) n++;
    return n;
  }

  /** The driver of the IOMMU a device sits behind. */
  private driverOf(dev: HostDevice): IommuDriverOps {
    return dev.smmu.iommufd;
  }

  /** Bind a device (VFIO_DEVICE_BIND_IOMMUFD); returns its dev_id. */
  bindDevice(dev: HostDevice): number {
    if (dev.binding) throw new ErrnoError(Errno.EBUSY, `${dev.bdf} is already bound`);
    const o = this.add(new DeviceObj(dev));
    o.users++; // held by the VFIO file until unbind
    dev.binding = { ctx: this, obj: o };
    this.state.fileRefs++; // the VFIO file holds the context until it unbinds
    return o.id;
  }

  /** Unbind (close of the VFIO file): detach, and destroy its vDEVICE leaving a tombstone. */
  unbindDevice(dev: HostDevice): void {
    const binding = dev.binding;
    if (!binding || binding.ctx !== this) return;
    const o = binding.obj;
    if (o.vdevice) {
      const vdevice = o.vdevice;
      this.destroyObject(vdevice);
      this.objects.set(vdevice.id, null);
    }
    this.detach(o);
    o.users--;
    this.objects.delete(o.id);
    dev.binding = undefined;
    this.put();
  }

  /**
   * close(2) of the iommufd descriptor. The context lives on while anything else references the
   * file: a mapping, a bound device or an open vEVENTQ fd (each took a reference).
   */
  close(): void {
    this.put();
  }

  /** Drop one reference on the file; the last one releases the context. */
  private put(): void {
    if (--this.state.fileRefs === 0) this.release();
  }

  /**
   * The last reference to the iommufd file went away: every object is destroyed, newest first,
   * releasing what it holds on the hardware (HW queues, SID pairs, VINTFs, VMIDs). No device is
   * bound by then (a bound device holds a reference).
   */
  private release(): void {
    const live = [...this.objects.values()].filter((o): o is IommufdObject => o !== null).sort((a, b) => b.id - a.id);
    for (const o of live) this.destroyObject(o);
    this.objects.clear();
    this.mmaps.clear();
  }

  private destroy(id: number): void {
    const o = this.get(id);
    if (o.users > 0) throw new ErrnoError(Errno.EBUSY, `object ${id} (${o.kind}) is in use`);
    this.destroyObject(o);
    this.objects.delete(id);
  }

  private destroyObject(o: IommufdObject): void {
    switch (o.kind) {
      case 'hwpt_paging': {
        const hwpt = o as HwptPagingObj;
        hwpt.ioas.ioas.removeDomain(hwpt.domain);
        hwpt.domain.free();
        break;
      }
      case 'ioas':
        // Nothing mirrors it any more (a HWPT holds it): unmap everything, dropping any pins.
        (o as IoasObj).ioas.unmap(0, 0, true);
        break;
      case 'viommu': {
        const viommu = o as ViommuObj;
        viommu.ops.destroy();
        this.mmaps.release(viommu);
        break;
      }
      case 'vdevice': {
        const vdevice = o as VdeviceObj;
        const viommu = vdevice.viommu;
        viommu.ops.vdeviceDestroy(vdevice.virtId);
        viommu.vdevices.delete(vdevice.virtId);
        vdevice.device.vdevice = undefined;
        break;
      }
      case 'hw_queue': {
        const queue = o as HwQueueObj;
        queue.viommu.ops.hwQueueDestroy(queue.index);
        queue.area.locks--;
        queue.viommu.hwQueues.delete(queue.index);
        break;
      }
      case 'veventq': {
        const veventq = o as VeventqObj;
        veventq.viommu.veventqs.delete(veventq.queue.type);
        break;
      }
      default:
        break;
    }
    o.releaseHolds();
  }

  // ------------------------------------------------------------------------------------------
  // IOAS

  private ioasAlloc(arg: IoasAllocArg): void {
    if (arg.flags !== 0) throw new ErrnoError(Errno.EOPNOTSUPP, 'flags');
    arg.out_ioas_id = this.add(new IoasObj(new IoAddressSpace(this.kernel.config.pageSize, this.proc.mem))).id;
  }

  private ioasMap(arg: IoasMapArg): void {
    const F = U.iommufd_ioas_map_flags;
    const flags = arg.flags;
    if (flags & ~IOAS_MAP_FLAGS || arg.__reserved !== 0) throw new ErrnoError(Errno.EOPNOTSUPP, 'unknown flags or reserved field');
    const { iova, length } = arg;
    if (iova >= U64_MAX || length >= U64_MAX || iova + length > 2n ** 53n) throw new ErrnoError(Errno.EOVERFLOW, 'iova/length');
    if (!(flags & (F.IOMMU_IOAS_MAP_READABLE | F.IOMMU_IOAS_MAP_WRITEABLE))) throw new ErrnoError(Errno.EINVAL, 'neither readable nor writeable');
    const ioas = this.getKind<IoasObj>(arg.ioas_id, 'ioas');
    const len = Number(length);
    const pageSize = this.kernel.config.pageSize;
    if (len === 0 || len % pageSize !== 0) throw new ErrnoError(Errno.EINVAL, 'length not a multiple of the IOAS alignment');
    const uva = Number(arg.user_va);
    if (uva % pageSize !== 0) throw new ErrnoError(Errno.EINVAL, 'user_va not page aligned');
    const at = flags & F.IOMMU_IOAS_MAP_FIXED_IOVA ? Number(iova) : ioas.ioas.allocIova(len);
    // Pins now only when a domain needs the pages (docs/reference/iommufd-uapi.md §12).
    ioas.ioas.map(at, uva, len, (flags & F.IOMMU_IOAS_MAP_WRITEABLE) !== 0);
    arg.iova = BigInt(at);
  }

  private ioasUnmap(arg: IoasUnmapArg): void {
    const ioas = this.getKind<IoasObj>(arg.ioas_id, 'ioas');
    const { iova, length } = arg;
    const all = iova === 0n && length === U64_MAX;
    if (!all && (iova >= U64_MAX || length >= U64_MAX)) throw new ErrnoError(Errno.EOVERFLOW, 'iova/length');
    // docs/reference/iommufd-uapi.md §12: length 0 is EINVAL, a range past 2^64 EOVERFLOW.
    if (!all && length === 0n) throw new ErrnoError(Errno.EINVAL, 'length 0');
    if (!all && iova + length - 1n > U64_MAX) throw new ErrnoError(Errno.EOVERFLOW, 'iova + length wraps');
    const unmapped = ioas.ioas.unmap(Number(iova), Number(length), all);
    arg.length = BigInt(unmapped.bytes);
  }

  // ------------------------------------------------------------------------------------------
  // Device info and page tables

  private deviceObj(id: number): DeviceObj {
    return this.getKind<DeviceObj>(id, 'device');
  }

  private getHwInfo(arg: HwInfoArg): void {
    const INPUT_TYPE = U.iommufd_hw_info_flags.IOMMU_HW_INFO_FLAG_INPUT_TYPE;
    const flags = arg.flags;
    if (flags & ~INPUT_TYPE) throw new ErrnoError(Errno.EOPNOTSUPP, 'flags');
    if (arg.__reserved.some((x) => x !== 0)) throw new ErrnoError(Errno.EOPNOTSUPP, 'reserved');
    const dev = this.deviceObj(arg.dev_id).dev;
    const want = flags & INPUT_TYPE ? arg.in_data_type : U.iommu_hw_info_type.IOMMU_HW_INFO_TYPE_DEFAULT;
    const { type, data } = this.driverOf(dev).hwInfo(want);
    // The driver's data, cut to the user's length, then the rest of the user buffer cleared.
    const userLen = arg.data_len;
    const uptr = Number(arg.data_uptr);
    const copied = Math.min(userLen, data.length);
    if (copied > 0) this.proc.mem.copyToUser(uptr, data.subarray(0, copied));
    if (userLen > copied) clearUser(this.proc.mem, uptr + copied, userLen - copied);
    arg.data_len = data.length;
    arg.in_data_type = type;
    arg.out_data_type = type;
    arg.out_max_pasid_log2 = 0;
    // Dirty tracking is not modelled; ATS is reported in the negative so 0 from an older kernel reads as "may use ATS".
    arg.out_capabilities = this.driverOf(dev).atsSupported(dev) ? 0n : BigInt(U.iommufd_hw_capabilities.IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED);
  }

  private hwptAlloc(arg: HwptAllocArg): void {
    if (arg.__reserved !== 0) throw new ErrnoError(Errno.EOPNOTSUPP, 'reserved');
    const DT = U.iommu_hwpt_data_type;
    const { data_type: dataType, data_len: dataLen, flags } = arg;
    if ((dataType === DT.IOMMU_HWPT_DATA_NONE) !== (dataLen === 0)) throw new ErrnoError(Errno.EINVAL, 'data_type/data_len mismatch');
    const dev = this.deviceObj(arg.dev_id);
    const pt = this.get(arg.pt_id);
    const AF = U.iommufd_hwpt_alloc_flags;
    const driver = this.driverOf(dev.dev);
    if (pt.kind === 'ioas') {
      if (flags & ~(AF.IOMMU_HWPT_ALLOC_NEST_PARENT | AF.IOMMU_HWPT_ALLOC_DIRTY_TRACKING)) throw new ErrnoError(Errno.EOPNOTSUPP, 'flags');
      if (flags & AF.IOMMU_HWPT_ALLOC_DIRTY_TRACKING) throw new ErrnoError(Errno.EOPNOTSUPP, 'dirty tracking not supported');
      if (dataType !== DT.IOMMU_HWPT_DATA_NONE) throw new ErrnoError(Errno.EOPNOTSUPP, 'data for a paging HWPT');
      const ioasObj = pt as IoasObj;
      const domain = driver.allocPagingDomain(this.kernel.config.pageSize);
      try {
        ioasObj.ioas.addDomain(domain);
      } catch (e) {
        domain.free();
        throw e;
      }
      const hwpt = this.add(new HwptPagingObj(ioasObj, domain, (flags & AF.IOMMU_HWPT_ALLOC_NEST_PARENT) !== 0, driver.instance));
      hwpt.hold(ioasObj);
      arg.out_hwpt_id = hwpt.id;
      return;
    }
    if (pt.kind !== 'viommu') throw new ErrnoError(Errno.EINVAL, `pt_id is a ${pt.kind}`);
    const viommu = pt as ViommuObj;
    if (flags & ~AF.IOMMU_HWPT_FAULT_ID_VALID) throw new ErrnoError(Errno.EOPNOTSUPP, 'flags for a nested HWPT');
    if (viommu.state.iommu !== driver.instance) throw new ErrnoError(Errno.EINVAL, 'vIOMMU of another IOMMU');
    if (flags & AF.IOMMU_HWPT_FAULT_ID_VALID) throw new ErrnoError(Errno.ENOENT, `no fault object ${arg.fault_id}`);
    const domain = viommu.ops.allocNestedDomain(new UserBuffer(this.proc, dataType, dataLen, arg.data_uptr));
    const hwpt = this.add(new HwptNestedObj(viommu, domain));
    hwpt.hold(viommu);
    arg.out_hwpt_id = hwpt.id;
  }

  // ------------------------------------------------------------------------------------------
  // vIOMMU, vDEVICE, HW queue, vEVENTQ

  private viommuAlloc(arg: ViommuAllocArg): void {
    const type = arg.type;
    if (arg.flags !== 0 || type === U.iommu_viommu_type.IOMMU_VIOMMU_TYPE_DEFAULT) throw new ErrnoError(Errno.EOPNOTSUPP, 'flags or type');
    const dev = this.deviceObj(arg.dev_id);
    const driver = this.driverOf(dev.dev);
    if (!driver.supportsViommu(type)) throw new ErrnoError(Errno.EOPNOTSUPP, `vIOMMU type ${type} not supported`);
    const parent = this.getKind<HwptPagingObj>(arg.hwpt_id, 'hwpt_paging');
    if (!parent.state.nestParent) throw new ErrnoError(Errno.EINVAL, 'HWPT is not a nesting parent');
    if (parent.state.iommu !== driver.instance) throw new ErrnoError(Errno.EINVAL, 'parent HWPT of another SMMU');
    const data = new UserBuffer(this.proc, type, arg.data_len, arg.data_uptr);
    const ops = driver.allocViommu(type, parent.domain, data);
    const viommu = this.add(new ViommuObj(type, driver.instance, parent, ops, this.mmaps));
    viommu.hold(parent);
    try {
      ops.init(viommu, data);
    } catch (e) {
      this.destroyObject(viommu);
      this.objects.delete(viommu.id);
      throw e;
    }
    arg.out_viommu_id = viommu.id;
  }

  private vdeviceAlloc(arg: VdeviceAllocArg): void {
    const virtId = arg.virt_id;
    const viommu = this.getKind<ViommuObj>(arg.viommu_id, 'viommu');
    const dev = this.deviceObj(arg.dev_id);
    if (this.driverOf(dev.dev).instance !== viommu.state.iommu) throw new ErrnoError(Errno.EINVAL, 'device behind another IOMMU');
    if (dev.vdevice) throw new ErrnoError(Errno.EEXIST, 'device already has a vDEVICE');
    // The core takes any u64 (its xarray index is an unsigned long); the range is the driver's.
    const id = virtId;
    if (viommu.vdevices.has(id)) throw new ErrnoError(Errno.EEXIST, `virt_id 0x${id.toString(16)} in use`);
    const vdevice = new VdeviceObj(viommu, dev, id);
    viommu.ops.vdeviceInit(id, dev.dev);
    this.add(vdevice);
    vdevice.hold(viommu);
    viommu.vdevices.set(id, vdevice);
    dev.vdevice = vdevice;
    arg.out_vdevice_id = vdevice.id;
  }

  private hwQueueAlloc(arg: HwQueueAllocArg): void {
    if (arg.flags !== 0 || arg.type === U.iommu_hw_queue_type.IOMMU_HW_QUEUE_TYPE_DEFAULT) throw new ErrnoError(Errno.EOPNOTSUPP, 'flags or type');
    const { length, nesting_parent_iova: iova } = arg;
    if (length === 0n) throw new ErrnoError(Errno.EINVAL, 'length 0');
    if (iova + length - 1n > U64_MAX) throw new ErrnoError(Errno.EOVERFLOW, 'iova + length overflows');
    const viommu = this.getKind<ViommuObj>(arg.viommu_id, 'viommu');
    if (!viommu.ops.supportsHwQueue(arg.type)) throw new ErrnoError(Errno.EOPNOTSUPP, 'vIOMMU has no HW queues of this type');
    const pageSize = this.kernel.config.pageSize;
    const start = Number(iova);
    const len = Number(length);
    const first = Math.floor(start / pageSize) * pageSize;
    const end = Math.ceil((start + len) / pageSize) * pageSize;
    const area = viommu.parent.ioas.ioas.areaFor(first, end - first);
    if (!area) throw new ErrnoError(Errno.ENOENT, 'queue memory not mapped in the parent IOAS');
    const pa = IoAddressSpace.paOf(area, start);
    if (!IoAddressSpace.pinned(area).contiguous(first - area.iova, end - first)) {
      throw new ErrnoError(Errno.EFAULT, 'queue memory is not physically contiguous');
    }
    const index = arg.index;
    viommu.ops.hwQueueInit(index, pa, len);
    const queue = this.add(new HwQueueObj(viommu, index, area, pa, len));
    area.locks++;
    queue.hold(viommu);
    const previous = viommu.hwQueues.get(index - 1);
    if (previous) queue.hold(previous);
    viommu.hwQueues.set(index, queue);
    this.kernel.stats.hwQueues++;
    arg.out_hw_queue_id = queue.id;
  }

  private veventqAlloc(arg: VeventqAllocArg): void {
    const type = arg.type;
    if (arg.flags !== 0 || arg.__reserved !== 0 || type === U.iommu_veventq_type.IOMMU_VEVENTQ_TYPE_DEFAULT) {
      throw new ErrnoError(Errno.EOPNOTSUPP, 'flags, reserved or type');
    }
    if (arg.veventq_depth === 0) throw new ErrnoError(Errno.EINVAL, 'depth 0');
    const viommu = this.getKind<ViommuObj>(arg.viommu_id, 'viommu');
    if (viommu.veventqs.has(type)) throw new ErrnoError(Errno.EEXIST, `a vEVENTQ of type ${type} exists`);
    const veventq = this.add(new VeventqObj(viommu, new VeventQueue(type, arg.veventq_depth)));
    veventq.hold(viommu);
    viommu.veventqs.set(type, veventq);
    veventq.queue.observer = this.proc.eventObserver;
    veventq.queue.traceId = veventq.id;
    veventq.state.fd = this.proc.installFile({
      kind: 'veventq',
      read: (va: number, max: number) => veventq.queue.read(max, (bytes, at) => this.proc.mem.copyToUser(va + at, bytes)),
      readable: () => veventq.queue.pending > 0,
      close: () => {
        veventq.users--;
        veventq.queue.onReport = undefined;
        this.put();
      },
      watch: (onReady) => {
        veventq.queue.onReport = onReady;
      },
    });
    veventq.users++;
    this.state.fileRefs++; // the vEVENTQ file holds the context until it closes
    arg.out_veventq_id = veventq.id;
    arg.out_veventq_fd = veventq.state.fd;
  }

  private hwptInvalidate(arg: HwptInvalidateArg): void {
    // The kernel copies the struct back on every path, entry_num = the entries handled
    // (docs/reference/iommufd-uapi.md §10).
    this.copyOutOnError = true;
    const num = arg.entry_num;
    arg.entry_num = 0;
    if (arg.__reserved !== 0) throw new ErrnoError(Errno.EOPNOTSUPP, 'reserved');
    const uptr = Number(arg.data_uptr);
    const entryLen = arg.entry_len;
    if (num !== 0 && (uptr === 0 || entryLen === 0)) throw new ErrnoError(Errno.EINVAL, 'no array');
    const o = this.get(arg.hwpt_id);
    // A nested HWPT would need its domain's own invalidation op; the SMMUv3 nested domain has
    // none (its commands go through the vIOMMU).
    if (o.kind === 'hwpt_nested') throw new ErrnoError(Errno.EOPNOTSUPP, 'nested HWPT has no cache invalidation op');
    if (o.kind !== 'viommu') throw new ErrnoError(Errno.EINVAL, `${o.kind} cannot be invalidated`);
    const ops = (o as ViommuObj).ops;
    // The driver's order: its kernel copy of the array is allocated first (ENOMEM above the
    // allocator's limit, entry_num left as given), then the type, the count and the copy.
    const entrySize = ops.invalidateEntrySize;
    if (num * entrySize > this.kmallocMax) {
      arg.entry_num = num;
      throw new ErrnoError(Errno.ENOMEM, `${num} entries exceed one kernel allocation`);
    }
    if (arg.data_type !== ops.invalidateDataType) throw new ErrnoError(Errno.EINVAL, 'data_type');
    if (num === 0) throw new ErrnoError(Errno.EINVAL, 'empty array');
    const words = this.copyInvalidateArray(uptr, entryLen, num, entrySize);
    try {
      ops.invalidate(words, num);
    } catch (e) {
      // Entries before the rejected one were issued: entry_num reports how many.
      if (e instanceof InvalidateEntryError) arg.entry_num = e.handled;
      throw e;
    }
    this.kernel.stats.invalidatedCommands += num;
    arg.entry_num = num;
  }

  /**
   * The invalidation array as little-endian words at the kernel's entry size: a view of one copy
   * when entries are exactly that size (the common case), else entry by entry under the
   * extensible-struct rule (a longer entry needs a zero tail: E2BIG / EFAULT).
   */
  private copyInvalidateArray(uptr: number, entryLen: number, num: number, entrySize: number): Uint32Array {
    const entryWords = entrySize / WORD_BYTES;
    if (entryLen === entrySize && LITTLE_ENDIAN_HOST) {
      // copy_from_user into the context's invalidation buffer: a fresh 16 KiB+ array per call
      // (allocated outside the JS heap and zero-filled) cost more than the copy itself.
      const bytes = num * entrySize;
      if (this.invalidateBuffer.byteLength < bytes) this.invalidateBuffer = new Uint32Array(Math.ceil(bytes / WORD_BYTES));
      copyFromUserInto(this.proc.mem, uptr, bytes, new Uint8Array(this.invalidateBuffer.buffer, 0, bytes));
      return this.invalidateBuffer.subarray(0, num * entryWords);
    }
    const words = new Uint32Array(num * entryWords);
    for (let i = 0; i < num; i++) {
      const entry = copyStructFromUserVa(this.proc.mem, entrySize, uptr + i * entryLen, entryLen);
      const view = new DataView(entry.buffer);
      for (let k = 0; k < entryWords; k++) words[i * entryWords + k] = view.getUint32(k * WORD_BYTES, true);
    }
    return words;
  }

  // ------------------------------------------------------------------------------------------
  // Attach (VFIO_DEVICE_ATTACH_IOMMUFD_PT) and events

  /** Attach a bound device to a HWPT: writes its device-table entry. */
  attach(devId: number, ptId: number): void {
    const dev = this.deviceObj(devId);
    const pt = this.get(ptId);
    const driver = this.driverOf(dev.dev);
    let entry: Uint32Array;
    if (pt.kind === 'hwpt_paging') {
      const hwpt = pt as HwptPagingObj;
      if (hwpt.state.iommu !== driver.instance) throw new ErrnoError(Errno.EINVAL, 'HWPT of another SMMU');
      entry = hwpt.domain.prepareAttach(dev.dev, false);
    } else if (pt.kind === 'hwpt_nested') {
      const hwpt = pt as HwptNestedObj;
      if (hwpt.viommu.state.iommu !== driver.instance) throw new ErrnoError(Errno.EINVAL, 'HWPT of another SMMU');
      entry = hwpt.domain.prepareAttach(dev.dev, dev.vdevice?.viommu === hwpt.viommu);
    } else {
      throw new ErrnoError(Errno.EINVAL, `cannot attach to a ${pt.kind}`);
    }
    this.detach(dev);
    driver.install(dev.dev, entry);
    dev.attached = pt as HwptPagingObj | HwptNestedObj;
    pt.users++;
  }

  /** Detach: the device aborts DMA. */
  detach(dev: DeviceObj): void {
    if (!dev.attached) return;
    dev.attached.users--;
    dev.attached = undefined;
    this.driverOf(dev.dev).block(dev.dev);
  }

  /** Forward an IOMMU event of a device bound here to its vIOMMU's vEVENTQ, if it qualifies. */
  forwardEvent(dev: DeviceObj, record: Uint32Array): boolean {
    const vdevice = dev.vdevice;
    if (!vdevice || dev.attached?.kind !== 'hwpt_nested') return false;
    return vdevice.viommu.ops.forwardEvent(vdevice.viommu, vdevice.virtId, record);
  }

  // ------------------------------------------------------------------------------------------
  // mmap

  /** mmap(2) on this file (docs/reference/iommufd-uapi.md §11); returns the user address or a negative errno. */
  mmap(length: number, prot: number, shared: boolean, offset: number): number {
    const pageSize = this.kernel.config.pageSize;
    if (length % pageSize !== 0 || length === 0 || !shared) return -Errno.EINVAL;
    if (prot & PROT_EXEC) return -Errno.EPERM;
    const region = this.mmaps.get(offset);
    if (!region || region.length !== length) return -Errno.ENXIO;
    const viommu = region.viommu;
    viommu.users++;
    this.state.fileRefs++;
    return this.proc.mem.mapDevice(length, region.ops, () => {
      viommu.users--;
      this.put();
    });
  }
}
