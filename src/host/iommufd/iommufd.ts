/**
 * One open /dev/iommu: the kernel's iommufd context. `ioctl()` takes the request number and a
 * user pointer, copies the argument struct in under the extensible-struct rules, validates it
 * the way the kernel does (spec linux-cmdqv.md §3), acts, and copies the result out. Errors are
 * returned as negative errnos, as the system call does.
 */

import { LITTLE_ENDIAN_HOST } from '../../kit/sparse-memory.js';
import { defineTrace } from '../../kit/trace.js';
import { Op } from '../../arch/smmuv3/commands.js';
import * as R from '../../arch/smmuv3/registers.js';
import { STE } from '../../arch/smmuv3/structures.js';
import { Errno, ErrnoError } from '../../uapi/errno.js';
import { copyArrayEntry, copyStructFromUser } from '../../uapi/extensible.js';
import * as U from '../../uapi/iommufd.js';
import type { AnyStruct } from '../../uapi/layout.js';
import type { HostDevice } from '../kernel/host-device.js';
import type { HostKernel, SmmuInstance } from '../kernel/host-kernel.js';
import type { Process } from '../kernel/process.js';
import { IoAddressSpace, PagingDomain } from './io-pagetable.js';
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
import { VeventQueue } from './veventq.js';

const T_IOCTL = defineTrace(
  'iommufd_ioctl',
  [
    { name: 'name', type: 'str' },
    { name: 'ret', type: 'i32' },
  ],
  '%s ret=%d',
);

const U64_MAX = 0xffff_ffff_ffff_ffffn;
/** Guest STE bits a nested HWPT may carry (spec §3.8). */
const STE0_ALLOWED = 0xf80f_ffff_ffff_ffffn;
const STE1_ALLOWED = 0x0000_0000_3800_00ffn;
/** Event IDs forwarded to a vEVENTQ (spec §4.6). */
const FORWARDED_EVENTS = new Set([0x04, 0x06, 0x08, 0x0a, 0x10, 0x11, 0x12, 0x13]);

type Handler = (v: Record<string, unknown>) => void;

/** The iommufd context behind one file descriptor. */
export class IommufdContext {
  private readonly objects = new Map<number, IommufdObject | null>();
  private nextId = 1;
  private readonly mmaps = new Map<number, { viommu: ViommuObj; length: number }>();
  private nextMmapOffset: number;
  private readonly handlers = new Map<number, { layout: AnyStruct; fn: Handler }>();
  /** Set by a handler that must copy its struct out even though it fails (entry_num). */
  private copyOutOnError = false;

  constructor(
    readonly kernel: HostKernel,
    readonly proc: Process,
  ) {
    this.nextMmapOffset = kernel.config.pageSize;
    const h = (io: U.IoctlDef, fn: Handler) => this.handlers.set(io.number, { layout: io.struct!, fn });
    h(U.IOMMU_DESTROY, (v) => this.destroy(v.id as number));
    h(U.IOMMU_IOAS_ALLOC, (v) => this.ioasAlloc(v));
    h(U.IOMMU_IOAS_MAP, (v) => this.ioasMap(v));
    h(U.IOMMU_IOAS_UNMAP, (v) => this.ioasUnmap(v));
    h(U.IOMMU_GET_HW_INFO, (v) => this.getHwInfo(v));
    h(U.IOMMU_HWPT_ALLOC, (v) => this.hwptAlloc(v));
    h(U.IOMMU_HWPT_INVALIDATE, (v) => this.hwptInvalidate(v));
    h(U.IOMMU_VIOMMU_ALLOC, (v) => this.viommuAlloc(v));
    h(U.IOMMU_VDEVICE_ALLOC, (v) => this.vdeviceAlloc(v));
    h(U.IOMMU_HW_QUEUE_ALLOC, (v) => this.hwQueueAlloc(v));
    h(U.IOMMU_VEVENTQ_ALLOC, (v) => this.veventqAlloc(v));
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
      const h = this.handlers.get(request);
      if (!h) {
        this.kernel.log.unimp('iommufd', `${def.name} is not modelled`);
        throw new ErrnoError(Errno.EOPNOTSUPP, `${def.name} is not modelled`);
      }
      const size = this.readUser32(argp);
      const user = this.proc.mem.copyFromUser(argp, size);
      const k = copyStructFromUser(h.layout, user);
      const v = h.layout.decode(k) as Record<string, unknown>;
      this.copyOutOnError = false;
      try {
        h.fn(v);
      } catch (e) {
        if (this.copyOutOnError) this.copyOut(h.layout, v, argp, size);
        throw e;
      }
      this.copyOut(h.layout, v, argp, size);
    } catch (e) {
      if (!(e instanceof ErrnoError)) throw e;
      ret = -e.errno;
      this.kernel.lastError = e.message;
    }
    this.kernel.tracer.emit(T_IOCTL, name, ret);
    this.kernel.stats.ioctls++;
    return ret;
  }

  private readUser32(va: number): number {
    const b = this.proc.mem.copyFromUser(va, 4);
    return new DataView(b.buffer).getUint32(0, true);
  }

  private copyOut(layout: AnyStruct, v: Record<string, unknown>, argp: number, size: number): void {
    const out = layout.encode(v as never);
    this.proc.mem.copyToUser(argp, out.subarray(0, Math.min(size, layout.size)));
  }

  // ------------------------------------------------------------------------------------------
  // Object table

  private add<T extends IommufdObject>(o: T): T {
    o.id = this.nextId++;
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

  /** Number of live objects (for tests and leak checks). */
  get objectCount(): number {
    let n = 0;
    for (const o of this.objects.values()) if (o) n++;
    return n;
  }

  /** Bind a device (VFIO_DEVICE_BIND_IOMMUFD); returns its dev_id. */
  bindDevice(dev: HostDevice): number {
    if (dev.binding) throw new ErrnoError(Errno.EBUSY, `${dev.bdf} is already bound`);
    const o = this.add(new DeviceObj(dev));
    o.users++; // held by the VFIO file until unbind
    dev.binding = { ctx: this, obj: o };
    return o.id;
  }

  /** Unbind (close of the VFIO file): detach, and destroy its vDEVICE leaving a tombstone. */
  unbindDevice(dev: HostDevice): void {
    const b = dev.binding;
    if (!b || b.ctx !== this) return;
    const o = b.obj;
    if (o.vdevice) {
      const vd = o.vdevice;
      this.destroyObject(vd);
      this.objects.set(vd.id, null);
    }
    this.detach(o);
    o.users--;
    this.objects.delete(o.id);
    dev.binding = undefined;
  }

  /**
   * The last reference to the iommufd file went away (close, or process exit): every object is
   * destroyed, newest first, releasing what it holds on the hardware (HW queues, SID pairs,
   * VINTFs, VMIDs); bound devices are detached and unbound, as the kernel's release does.
   */
  private closed = false;
  private mappings = 0;

  /** close(2) of the file: released now, or at the last munmap (a mapping holds the file). */
  close(): void {
    this.closed = true;
    if (this.mappings === 0) this.release();
  }

  private release(): void {
    for (const o of this.objects.values()) {
      if (o?.kind === 'device') this.unbindDevice((o as DeviceObj).dev);
    }
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
        const h = o as HwptPagingObj;
        h.ioas.ioas.domains.delete(h.domain);
        this.smmuOf(h.smmuName).driver.freeVmid(h.domain.vmid);
        break;
      }
      case 'viommu': {
        const v = o as ViommuObj;
        if (v.vintf) this.smmuOf(v.smmuName).cmdqv!.freeVintf(v.vintf);
        this.mmaps.delete(v.mmapOffset);
        break;
      }
      case 'vdevice': {
        const vd = o as VdeviceObj;
        const vi = vd.viommu;
        if (vi.vintf && vd.sidSlot >= 0) this.smmuOf(vi.smmuName).cmdqv!.freeSid(vi.vintf, vd.sidSlot);
        vi.vdevices.delete(vd.virtId);
        vd.device.vdevice = undefined;
        break;
      }
      case 'hw_queue': {
        const q = o as HwQueueObj;
        this.smmuOf(q.viommu.smmuName).cmdqv!.freeQueue(q.viommu.vintf!, q.index);
        q.area.locks--;
        q.viommu.hwQueues.delete(q.index);
        break;
      }
      case 'veventq': {
        const e = o as VeventqObj;
        e.viommu.veventqs.delete(e.queue.type);
        break;
      }
      default:
        break;
    }
    o.releaseHolds();
  }

  private smmuOf(name: string): SmmuInstance {
    return this.kernel.smmus.get(name)!;
  }

  // ------------------------------------------------------------------------------------------
  // IOAS

  private ioasAlloc(v: Record<string, unknown>): void {
    if (v.flags !== 0) throw new ErrnoError(Errno.EOPNOTSUPP, 'flags');
    v.out_ioas_id = this.add(new IoasObj(new IoAddressSpace(this.kernel.config.pageSize))).id;
  }

  private ioasMap(v: Record<string, unknown>): void {
    const F = U.iommufd_ioas_map_flags;
    const flags = v.flags as number;
    if (flags & ~7 || v.__reserved !== 0) throw new ErrnoError(Errno.EOPNOTSUPP, 'unknown flags or reserved field');
    const iova = v.iova as bigint;
    const length = v.length as bigint;
    if (iova >= U64_MAX || length >= U64_MAX || iova + length > 2n ** 53n) throw new ErrnoError(Errno.EOVERFLOW, 'iova/length');
    if (!(flags & (F.IOMMU_IOAS_MAP_READABLE | F.IOMMU_IOAS_MAP_WRITEABLE))) throw new ErrnoError(Errno.EINVAL, 'neither readable nor writeable');
    const ioas = this.getKind<IoasObj>(v.ioas_id as number, 'ioas');
    const len = Number(length);
    const ps = this.kernel.config.pageSize;
    if (len === 0 || len % ps !== 0) throw new ErrnoError(Errno.EINVAL, 'length not a multiple of the IOAS alignment');
    const uva = Number(v.user_va as bigint);
    if (uva % ps !== 0) throw new ErrnoError(Errno.EINVAL, 'user_va not page aligned');
    const runs = this.proc.mem.pinRuns(uva, len);
    const at = flags & F.IOMMU_IOAS_MAP_FIXED_IOVA ? Number(iova) : ioas.ioas.allocIova(len);
    ioas.ioas.map(at, runs, len, (flags & F.IOMMU_IOAS_MAP_WRITEABLE) !== 0);
    v.iova = BigInt(at);
  }

  private ioasUnmap(v: Record<string, unknown>): void {
    const ioas = this.getKind<IoasObj>(v.ioas_id as number, 'ioas');
    const iova = v.iova as bigint;
    const length = v.length as bigint;
    const all = iova === 0n && length === U64_MAX;
    if (!all && (iova >= U64_MAX || length >= U64_MAX)) throw new ErrnoError(Errno.EOVERFLOW, 'iova/length');
    const r = ioas.ioas.unmap(Number(iova), Number(length), all);
    v.length = BigInt(r.bytes);
  }

  // ------------------------------------------------------------------------------------------
  // Device info and page tables

  private deviceObj(id: number): DeviceObj {
    return this.getKind<DeviceObj>(id, 'device');
  }

  private getHwInfo(v: Record<string, unknown>): void {
    const flags = v.flags as number;
    if (flags & ~U.iommufd_hw_info_flags.IOMMU_HW_INFO_FLAG_INPUT_TYPE) throw new ErrnoError(Errno.EOPNOTSUPP, 'flags');
    if ((v.__reserved as number[]).some((x) => x !== 0)) throw new ErrnoError(Errno.EOPNOTSUPP, 'reserved');
    const dev = this.deviceObj(v.dev_id as number).dev;
    const T = U.iommu_hw_info_type;
    const want = flags & 1 ? (v.in_data_type as number) : T.IOMMU_HW_INFO_TYPE_DEFAULT;
    let data: Uint8Array;
    let type: number;
    if (want === T.IOMMU_HW_INFO_TYPE_DEFAULT || want === T.IOMMU_HW_INFO_TYPE_ARM_SMMUV3) {
      const b = dev.smmu.hw.bank;
      const idr = [0, 1, 2, 3, 4, 5].map((i) => b.read(i * 4, 4));
      data = U.iommu_hw_info_arm_smmuv3.encode({ idr, iidr: b.read(R.IIDR.spec.offset, 4), aidr: b.read(R.AIDR.spec.offset, 4) });
      type = T.IOMMU_HW_INFO_TYPE_ARM_SMMUV3;
    } else if (want === T.IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV && dev.smmu.cmdqv) {
      const c = dev.smmu.cmdqv;
      data = U.iommu_hw_info_tegra241_cmdqv.encode({
        version: c.version,
        log2vcmdqs: Math.log2(c.perVintf),
        log2vsids: Math.log2(c.sidsPerVintf),
      });
      type = want;
    } else {
      throw new ErrnoError(Errno.EOPNOTSUPP, `hw_info type ${want} not supported by this IOMMU`);
    }
    const userLen = v.data_len as number;
    if (userLen > 0) {
      const buf = new Uint8Array(userLen);
      buf.set(data.subarray(0, Math.min(userLen, data.length)));
      this.proc.mem.copyToUser(Number(v.data_uptr as bigint), buf);
    }
    v.data_len = data.length;
    v.in_data_type = type;
    v.out_data_type = type;
    v.out_max_pasid_log2 = 0;
    v.out_capabilities = 0n;
  }

  private hwptAlloc(v: Record<string, unknown>): void {
    if (v.__reserved !== 0) throw new ErrnoError(Errno.EOPNOTSUPP, 'reserved');
    const DT = U.iommu_hwpt_data_type;
    const dataType = v.data_type as number;
    const dataLen = v.data_len as number;
    if ((dataType === DT.IOMMU_HWPT_DATA_NONE) !== (dataLen === 0)) throw new ErrnoError(Errno.EINVAL, 'data_type/data_len mismatch');
    const dev = this.deviceObj(v.dev_id as number);
    const pt = this.get(v.pt_id as number);
    const flags = v.flags as number;
    const AF = U.iommufd_hwpt_alloc_flags;
    if (pt.kind === 'ioas') {
      if (flags & ~(AF.IOMMU_HWPT_ALLOC_NEST_PARENT | AF.IOMMU_HWPT_ALLOC_DIRTY_TRACKING)) throw new ErrnoError(Errno.EOPNOTSUPP, 'flags');
      if (flags & AF.IOMMU_HWPT_ALLOC_DIRTY_TRACKING) throw new ErrnoError(Errno.EOPNOTSUPP, 'dirty tracking not supported');
      if (dataType !== DT.IOMMU_HWPT_DATA_NONE) throw new ErrnoError(Errno.EOPNOTSUPP, 'data for a paging HWPT');
      const ioasObj = pt as IoasObj;
      const smmu = dev.dev.smmu;
      const domain = new PagingDomain(smmu.driver.allocVmid(), smmu.driver, this.kernel.config.pageSize, this.kernel.phys);
      for (const a of ioasObj.ioas.areas) domain.mapArea(a);
      ioasObj.ioas.domains.add(domain);
      const h = this.add(new HwptPagingObj(ioasObj, domain, (flags & AF.IOMMU_HWPT_ALLOC_NEST_PARENT) !== 0, smmu.name));
      h.hold(ioasObj);
      v.out_hwpt_id = h.id;
      return;
    }
    if (pt.kind !== 'viommu') throw new ErrnoError(Errno.EINVAL, `pt_id is a ${pt.kind}`);
    const vi = pt as ViommuObj;
    if (flags & ~AF.IOMMU_HWPT_FAULT_ID_VALID) throw new ErrnoError(Errno.EOPNOTSUPP, 'flags for a nested HWPT');
    if (vi.smmuName !== dev.dev.smmu.name) throw new ErrnoError(Errno.EINVAL, 'vIOMMU of another IOMMU');
    if (flags & AF.IOMMU_HWPT_FAULT_ID_VALID) throw new ErrnoError(Errno.ENOENT, `no fault object ${v.fault_id as number}`);
    if (dataType !== DT.IOMMU_HWPT_DATA_ARM_SMMUV3 || dataLen !== U.iommu_hwpt_arm_smmuv3.size) {
      throw new ErrnoError(Errno.EINVAL, 'data must be an iommu_hwpt_arm_smmuv3');
    }
    const raw = U.iommu_hwpt_arm_smmuv3.decode(this.proc.mem.copyFromUser(Number(v.data_uptr as bigint), dataLen));
    const ste = validateGuestSte(raw.ste[0]!, raw.ste[1]!);
    const h = this.add(new HwptNestedObj(vi, ste));
    h.hold(vi);
    v.out_hwpt_id = h.id;
  }

  // ------------------------------------------------------------------------------------------
  // vIOMMU, vDEVICE, HW queue, vEVENTQ

  private viommuAlloc(v: Record<string, unknown>): void {
    const VT = U.iommu_viommu_type;
    const type = v.type as number;
    if (v.flags !== 0 || type === VT.IOMMU_VIOMMU_TYPE_DEFAULT) throw new ErrnoError(Errno.EOPNOTSUPP, 'flags or type');
    const dev = this.deviceObj(v.dev_id as number);
    const smmu = dev.dev.smmu;
    if (type !== VT.IOMMU_VIOMMU_TYPE_ARM_SMMUV3 && !(type === VT.IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV && smmu.cmdqv)) {
      throw new ErrnoError(Errno.EOPNOTSUPP, `vIOMMU type ${type} not supported`);
    }
    const parent = this.getKind<HwptPagingObj>(v.hwpt_id as number, 'hwpt_paging');
    if (!parent.nestParent) throw new ErrnoError(Errno.EINVAL, 'HWPT is not a nesting parent');
    if (parent.smmuName !== smmu.name) throw new ErrnoError(Errno.EINVAL, 'parent HWPT of another SMMU');
    let vintf;
    let out: Uint8Array | undefined;
    if (type === VT.IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV) {
      const len = v.data_len as number;
      if (len !== U.iommu_viommu_tegra241_cmdqv.size) throw new ErrnoError(Errno.EINVAL, 'user data must be iommu_viommu_tegra241_cmdqv');
      this.proc.mem.copyFromUser(Number(v.data_uptr as bigint), len);
      vintf = smmu.cmdqv!.allocVintf(parent.domain.vmid);
    }
    const vi = this.add(new ViommuObj(type, parent, smmu.name, parent.domain.vmid, vintf));
    vi.hold(parent);
    if (vintf) {
      vi.mmapOffset = this.nextMmapOffset;
      this.nextMmapOffset += 0x10000;
      this.mmaps.set(vi.mmapOffset, { viommu: vi, length: 0x10000 });
      vintf.onError = (map) => {
        const q = vi.veventqs.get(U.iommu_veventq_type.IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV);
        q?.queue.report(U.iommu_vevent_tegra241_cmdqv.encode({ lvcmdq_err_map: map }));
      };
      out = U.iommu_viommu_tegra241_cmdqv.encode({ out_vintf_mmap_offset: BigInt(vi.mmapOffset), out_vintf_mmap_length: 0x10000n });
      try {
        this.proc.mem.copyToUser(Number(v.data_uptr as bigint), out);
      } catch (e) {
        this.destroyObject(vi);
        this.objects.delete(vi.id);
        throw e;
      }
    }
    v.out_viommu_id = vi.id;
  }

  private vdeviceAlloc(v: Record<string, unknown>): void {
    const virtId = v.virt_id as bigint;
    const vi = this.getKind<ViommuObj>(v.viommu_id as number, 'viommu');
    const dev = this.deviceObj(v.dev_id as number);
    if (dev.dev.smmu.name !== vi.smmuName) throw new ErrnoError(Errno.EINVAL, 'device behind another IOMMU');
    if (dev.vdevice) throw new ErrnoError(Errno.EEXIST, 'device already has a vDEVICE');
    if (virtId > 0xffff_ffffn) throw new ErrnoError(Errno.EINVAL, 'virt_id wider than a StreamID');
    const id = Number(virtId);
    if (vi.vdevices.has(id)) throw new ErrnoError(Errno.EEXIST, `virt_id 0x${id.toString(16)} in use`);
    const vd = new VdeviceObj(vi, dev, id);
    if (vi.vintf) vd.sidSlot = this.smmuOf(vi.smmuName).cmdqv!.allocSid(vi.vintf, id, dev.dev.sid);
    this.add(vd);
    vd.hold(vi);
    vi.vdevices.set(id, vd);
    dev.vdevice = vd;
    v.out_vdevice_id = vd.id;
  }

  private hwQueueAlloc(v: Record<string, unknown>): void {
    const QT = U.iommu_hw_queue_type;
    if (v.flags !== 0 || v.type === QT.IOMMU_HW_QUEUE_TYPE_DEFAULT) throw new ErrnoError(Errno.EOPNOTSUPP, 'flags or type');
    const length = v.length as bigint;
    const iova = v.nesting_parent_iova as bigint;
    if (length === 0n) throw new ErrnoError(Errno.EINVAL, 'length 0');
    if (iova + length - 1n > U64_MAX) throw new ErrnoError(Errno.EOVERFLOW, 'iova + length overflows');
    const vi = this.getKind<ViommuObj>(v.viommu_id as number, 'viommu');
    if (!vi.vintf || v.type !== QT.IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV) throw new ErrnoError(Errno.EOPNOTSUPP, 'vIOMMU has no HW queues of this type');
    const ps = this.kernel.config.pageSize;
    const start = Number(iova);
    const len = Number(length);
    const first = Math.floor(start / ps) * ps;
    const end = Math.ceil((start + len) / ps) * ps;
    const area = vi.parent.ioas.ioas.areaFor(first, end - first);
    if (!area) throw new ErrnoError(Errno.ENOENT, 'queue memory not mapped in the parent IOAS');
    const pa = IoAddressSpace.paOf(area, start);
    if (!area.runs.contiguous(first - area.iova, end - first)) {
      throw new ErrnoError(Errno.EFAULT, 'queue memory is not physically contiguous');
    }
    const index = v.index as number;
    const smmu = this.smmuOf(vi.smmuName);
    smmu.cmdqv!.allocQueue(vi.vintf, index, pa, len, smmu.driver.cmdqs);
    const q = this.add(new HwQueueObj(vi, index, area, pa, len));
    area.locks++;
    q.hold(vi);
    const prev = vi.hwQueues.get(index - 1);
    if (prev) q.hold(prev);
    vi.hwQueues.set(index, q);
    this.kernel.stats.hwQueues++;
    v.out_hw_queue_id = q.id;
  }

  private veventqAlloc(v: Record<string, unknown>): void {
    const type = v.type as number;
    if (v.flags !== 0 || v.__reserved !== 0 || type === U.iommu_veventq_type.IOMMU_VEVENTQ_TYPE_DEFAULT) {
      throw new ErrnoError(Errno.EOPNOTSUPP, 'flags, reserved or type');
    }
    if (v.veventq_depth === 0) throw new ErrnoError(Errno.EINVAL, 'depth 0');
    const vi = this.getKind<ViommuObj>(v.viommu_id as number, 'viommu');
    if (vi.veventqs.has(type)) throw new ErrnoError(Errno.EEXIST, `a vEVENTQ of type ${type} exists`);
    const q = this.add(new VeventqObj(vi, new VeventQueue(type, v.veventq_depth as number)));
    q.hold(vi);
    vi.veventqs.set(type, q);
    q.fd = this.proc.installFile({
      kind: 'veventq',
      read: (max: number) => q.queue.read(max),
      readable: () => q.queue.pending > 0,
      close: () => {
        q.users--;
        q.queue.onReport = undefined;
      },
      watch: (cb) => {
        q.queue.onReport = cb;
      },
    });
    q.users++;
    v.out_veventq_id = q.id;
    v.out_veventq_fd = q.fd;
  }

  private hwptInvalidate(v: Record<string, unknown>): void {
    const num = v.entry_num as number;
    v.entry_num = 0;
    if (v.__reserved !== 0) {
      this.copyOutOnError = true;
      throw new ErrnoError(Errno.EOPNOTSUPP, 'reserved');
    }
    const uptr = Number(v.data_uptr as bigint);
    const entryLen = v.entry_len as number;
    if (num !== 0 && (uptr === 0 || entryLen === 0)) throw new ErrnoError(Errno.EINVAL, 'no array');
    const o = this.get(v.hwpt_id as number);
    if (o.kind !== 'hwpt_nested' && o.kind !== 'viommu') throw new ErrnoError(Errno.EINVAL, `${o.kind} cannot be invalidated`);
    const vi = o.kind === 'viommu' ? (o as ViommuObj) : (o as HwptNestedObj).viommu;
    if (v.data_type !== U.iommu_hwpt_invalidate_data_type.IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3) {
      throw new ErrnoError(Errno.EINVAL, 'data_type');
    }
    if (num === 0) throw new ErrnoError(Errno.EINVAL, 'empty array');
    const driver = this.smmuOf(vi.smmuName).driver;
    const all = this.proc.mem.copyFromUser(uptr, num * entryLen);
    // The commands as words, converted in place: a view of the copy when entries are exactly
    // 16 bytes (the common case), else normalised entry by entry.
    let words: Uint32Array;
    if (entryLen === 16 && LITTLE_ENDIAN_HOST) {
      words = new Uint32Array(all.buffer, all.byteOffset, num * 4);
    } else {
      words = new Uint32Array(num * 4);
      const entry = new Uint8Array(16);
      const dv = new DataView(entry.buffer);
      for (let i = 0; i < num; i++) {
        copyArrayEntry(16, all.subarray(i * entryLen, (i + 1) * entryLen), entry);
        for (let k = 0; k < 4; k++) words[i * 4 + k] = dv.getUint32(k * 4, true);
      }
    }
    let done = 0;
    try {
      for (; done < num; done++) convertGuestCommand(words, done * 4, vi);
    } catch (e) {
      // Commands converted before the bad one are still issued (the kernel's loop can drop them;
      // see docs/design.md), then entry_num reports how many were handled.
      if (done) driver.submitWords(words, done);
      v.entry_num = done;
      this.copyOutOnError = true;
      throw e;
    }
    driver.submitWords(words, num);
    this.kernel.stats.invalidatedCommands += num;
    v.entry_num = num;
  }

  // ------------------------------------------------------------------------------------------
  // Attach (VFIO_DEVICE_ATTACH_IOMMUFD_PT) and events

  /** Attach a bound device to a HWPT: writes its STE. */
  attach(devId: number, ptId: number): void {
    const dev = this.deviceObj(devId);
    const pt = this.get(ptId);
    const smmu = dev.dev.smmu;
    let ste: Uint32Array;
    if (pt.kind === 'hwpt_paging') {
      const h = pt as HwptPagingObj;
      if (h.smmuName !== smmu.name) throw new ErrnoError(Errno.EINVAL, 'HWPT of another SMMU');
      ste = s2Ste(h.domain, 0b110);
    } else if (pt.kind === 'hwpt_nested') {
      const h = pt as HwptNestedObj;
      if (h.viommu.smmuName !== smmu.name) throw new ErrnoError(Errno.EINVAL, 'HWPT of another SMMU');
      const cfg = STE.CFG.getWords(h.ste[0]!, h.ste[1]!);
      const valid = STE.V.getWords(h.ste[0]!, h.ste[1]!) === 1;
      if (valid && cfg === 0b101) {
        if (dev.vdevice?.viommu !== h.viommu) throw new ErrnoError(Errno.ENOENT, 'nested HWPT needs a vDEVICE for the device');
        ste = s2Ste(h.viommu.parent.domain, 0b111);
        ste[0] = ((h.ste[0]! & ~0b1110) | (ste[0]! & 0b1111)) >>> 0;
        ste[1] = h.ste[1]!;
        ste[2] = h.ste[2]!;
        ste[3] = h.ste[3]!;
        STE.MEV.setWords(ste, 2, 1);
      } else if (valid && cfg === 0b100) {
        ste = s2Ste(h.viommu.parent.domain, 0b110);
      } else {
        ste = new Uint32Array(8);
        ste[0] = 1; // V = 1, Config = abort
      }
    } else {
      throw new ErrnoError(Errno.EINVAL, `cannot attach to a ${pt.kind}`);
    }
    this.detach(dev);
    smmu.driver.writeSte(dev.dev.sid, ste);
    dev.attached = pt as HwptPagingObj | HwptNestedObj;
    pt.users++;
  }

  /** Detach: the STE becomes abort. */
  detach(dev: DeviceObj): void {
    if (!dev.attached) return;
    dev.attached.users--;
    dev.attached = undefined;
    const abort = new Uint32Array(8);
    abort[0] = 1;
    dev.dev.smmu.driver.writeSte(dev.dev.sid, abort);
  }

  /** Forward an SMMU event of a device bound here to its vIOMMU's vEVENTQ, if it qualifies. */
  forwardEvent(dev: DeviceObj, rec: Uint32Array): boolean {
    const id = rec[0]! & 0xff;
    const stall = (rec[2]! >>> 31) & 1;
    const s2 = (rec[3]! >>> 7) & 1;
    const vd = dev.vdevice;
    if (!FORWARDED_EVENTS.has(id) || stall || s2 || !vd || dev.attached?.kind !== 'hwpt_nested') return false;
    const q = vd.viommu.veventqs.get(U.iommu_veventq_type.IOMMU_VEVENTQ_TYPE_ARM_SMMUV3);
    if (!q) return false;
    const out = new Uint32Array(rec);
    out[1] = vd.virtId;
    q.queue.report(new Uint8Array(out.buffer));
    return true;
  }

  // ------------------------------------------------------------------------------------------
  // mmap

  /** mmap(2) on this file (spec §3.10); returns the user address or a negative errno. */
  mmap(length: number, prot: number, shared: boolean, offset: number): number {
    const ps = this.kernel.config.pageSize;
    if (length % ps !== 0 || length === 0 || !shared) return -Errno.EINVAL;
    if (prot & 4) return -Errno.EPERM;
    const m = this.mmaps.get(offset);
    if (!m || m.length !== length) return -Errno.ENXIO;
    const vi = m.viommu;
    const hw = this.smmuOf(vi.smmuName).cmdqv!.hw;
    vi.users++;
    this.mappings++;
    return this.proc.mem.mapDevice(length, hw.vintfPage0Ops(vi.vintf!.index), () => {
      vi.users--;
      this.mappings--;
      if (this.closed && this.mappings === 0) this.release();
    });
  }
}

/** Check a guest STE against what a nested HWPT may carry (spec §3.8); returns its 4 words. */
function validateGuestSte(d0: bigint, d1: bigint): Uint32Array {
  const w = new Uint32Array(4);
  if ((d0 & 1n) === 0n) return w; // V = 0: an abort STE
  if ((d0 & ~STE0_ALLOWED) !== 0n || (d1 & ~STE1_ALLOWED) !== 0n) throw new ErrnoError(Errno.EIO, 'STE has bits outside the allowed masks');
  const cfg = Number((d0 >> 1n) & 7n);
  if (cfg !== 0 && cfg !== 0b100 && cfg !== 0b101) throw new ErrnoError(Errno.EIO, `STE Config ${cfg} not allowed`);
  const eats = Number((d1 >> 28n) & 3n);
  if (eats > 1) throw new ErrnoError(Errno.EIO, `STE EATS ${eats} not allowed`);
  const d1s = d1 & ~(3n << 28n);
  w[0] = Number(d0 & 0xffff_ffffn);
  w[1] = Number(d0 >> 32n);
  w[2] = Number(d1s & 0xffff_ffffn);
  w[3] = Number(d1s >> 32n);
  return w;
}

/** A stage-2 (or nested, cfg 0b111) STE for a paging domain. */
function s2Ste(d: PagingDomain, cfg: number): Uint32Array {
  const w = new Uint32Array(8);
  w[0] = (1 | (cfg << 1)) >>> 0;
  const tg = d.granule === 4096 ? 0 : d.granule === 65536 ? 1 : 2;
  const levels = Math.ceil((48 - Math.log2(d.granule)) / (Math.log2(d.granule) - 3));
  const start = 4 - levels;
  const sl0 = d.granule === 4096 ? 2 - start : 3 - start;
  STE.S2VMID.setWords(w, 4, d.vmid);
  STE.S2T0SZ.setWords(w, 4, 64 - 48);
  STE.S2SL0.setWords(w, 4, sl0);
  STE.S2TG.setWords(w, 4, tg);
  STE.S2PS.setWords(w, 4, 5);
  STE.S2AA64.setWords(w, 4, 1);
  STE.S2R.setWords(w, 4, 1);
  STE.S2TTB.setWords(w, 6, d.tables.root / 16);
  return w;
}

/**
 * Convert one guest command for the host (spec §3.9), in place: VMID forced on TLBIs,
 * NSNH_ALL turned into NH_ALL, vSID → physical SID on ATC_INV/CFGI_CD*. Anything else: EIO.
 */
function convertGuestCommand(w: Uint32Array, i: number, vi: ViommuObj): void {
  const op = w[i]! & 0xff;
  // Cases are compared in order: the stage-1 TLBIs (nearly every entry) come first.
  switch (op) {
    case Op.TLBI_NH_VA:
    case Op.TLBI_NH_VAA:
    case Op.TLBI_NH_ALL:
    case Op.TLBI_NH_ASID:
      w[i + 1] = ((w[i + 1]! & 0xffff_0000) | vi.vmid) >>> 0;
      return;
    case Op.TLBI_NSNH_ALL:
      w[i] = Op.TLBI_NH_ALL;
      w[i + 1] = vi.vmid;
      w[i + 2] = 0;
      w[i + 3] = 0;
      return;
    case Op.ATC_INV:
    case Op.CFGI_CD:
    case Op.CFGI_CD_ALL: {
      const vd = vi.vdevices.get(w[i + 1]!);
      if (!vd) throw new ErrnoError(Errno.EIO, `no vDEVICE for vSID 0x${w[i + 1]!.toString(16)}`);
      w[i + 1] = vd.device.dev.sid;
      return;
    }
    default:
      throw new ErrnoError(Errno.EIO, `command 0x${op.toString(16)} not allowed`);
  }
}
