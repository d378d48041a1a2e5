/**
 * The VMM's iommufd backend (QEMU's `-object iommufd`): thin wrappers that build uAPI structs
 * as bytes in the VMM process's memory, call the host through ioctl/mmap/read, and decode the
 * answers. Failures carry the errno and QEMU's message text (docs/reference/qemu-accel-smmuv3.md §13.1).
 */

import type { RegionOps } from '../../kit/memory-region.js';
import type { Tracer } from '../../kit/trace.js';
import { strerror } from '../../uapi/errno.js';
import * as U from '../../uapi/iommufd.js';
import type { AnyStruct } from '../../uapi/layout.js';
import { MAP_SHARED, mmapAnonymous, PROT_READ, PROT_WRITE, type Syscalls } from '../../uapi/syscalls.js';
import * as V from '../../uapi/vfio.js';
import { T_CALL, T_HWQ, T_MMAP } from './trace-events.js';

export { strerror };

/** A failed backend call: QEMU's message plus the errno text. */
export class BackendError extends Error {
  /** IOMMU_HWPT_INVALIDATE only: entries the kernel handled before failing (its entry_num). */
  entryNum: number | undefined = undefined;
  constructor(
    readonly errno: number,
    readonly what: string,
  ) {
    super(`${what}: ${strerror(errno)}`);
    this.name = 'BackendError';
  }
}

/** A vEVENT read outcome (tri-state, as the post-merge QEMU helper). */
export type VeventRead =
  | { kind: 'record'; sequence: number; payload: Uint8Array; lost: number }
  | { kind: 'none' }
  | { kind: 'error'; message: string };

/** Bookkeeping of one vEVENTQ (zero-initialised, unlike upstream's CMDQV one: quirk Q2). */
export interface Veventq {
  readonly id: number;
  readonly fd: number;
  readonly type: number;
  lastSeq: number;
  started: boolean;
}

/** Byte offsets of iommufd_vevent_header's fields. */
const VEVENT_HDR_FLAGS = U.iommufd_vevent_header.field('flags').offset;
const VEVENT_HDR_SEQUENCE = U.iommufd_vevent_header.field('sequence').offset;

/** Byte offsets of iommu_hwpt_invalidate's fields that change from call to call. */
const INV_HWPT_ID = U.iommu_hwpt_invalidate.field('hwpt_id').offset;
const INV_DATA_UPTR = U.iommu_hwpt_invalidate.field('data_uptr').offset;
const INV_DATA_TYPE = U.iommu_hwpt_invalidate.field('data_type').offset;
const INV_ENTRY_LEN = U.iommu_hwpt_invalidate.field('entry_len').offset;
const INV_ENTRY_NUM = U.iommu_hwpt_invalidate.field('entry_num').offset;
const TWO32 = 2 ** 32;

/** Whether `x` fits a u32 field as the layout encodes it. */
function fitsU32(x: number): boolean {
  return Number.isInteger(x) && x >= 0 && x <= 0xffff_ffff;
}

/** How many recent calls {@link IommufdBackend.calls} keeps. */
export const CALL_HISTORY = 4096;

/** `-object iommufd,id=...`: one /dev/iommu of the VMM process. */
export class IommufdBackend {
  readonly fd: number;
  /** Recent calls, oldest first: at least the last {@link CALL_HISTORY} (for reports and tests). */
  readonly calls: { name: string; args: Record<string, unknown>; ret: number }[] = [];
  /** Every call ever made, counted by name (unbounded history would grow without limit). */
  readonly callCounts = new Map<string, number>();
  /** Total calls made. */
  callTotal = 0;
  private readonly scratch: number;
  private readonly scratchSize = 1 << 16;
  /** IOMMU_HWPT_INVALIDATE arrays: a user buffer of entriesSize bytes at entriesVa (0: none yet). */
  private entriesVa = 0;
  private entriesSize = 0;
  /** IOMMU_HWPT_INVALIDATE's argument, encoded once by the layout; {@link invalidateCache} patches it. */
  private readonly invalidateBytes = U.iommu_hwpt_invalidate.encode({ hwpt_id: 0, data_uptr: 0n, data_type: 0, entry_len: 0, entry_num: 0 } as never);
  private readonly invalidateArg = new DataView(this.invalidateBytes.buffer, this.invalidateBytes.byteOffset, this.invalidateBytes.byteLength);

  constructor(
    readonly id: string,
    readonly sys: Syscalls,
    private readonly tracer: Tracer,
  ) {
    this.fd = sys.open('/dev/iommu');
    if (this.fd < 0) throw new BackendError(-this.fd, 'Could not open /dev/iommu');
    // Anonymous memory of the VMM process for ioctl arguments.
    this.scratch = mmapAnonymous(sys, this.scratchSize);
    if (this.scratch < 0) throw new BackendError(-this.scratch, 'failed to map memory for ioctl arguments');
  }

  /** Run an ioctl with `value` encoded at a user address; returns the decoded struct. */
  private ioctl(io: U.IoctlDef, value: Record<string, unknown>, what: string, extraIn?: { at: number; bytes: Uint8Array }): Record<string, unknown> {
    const layout = io.struct as AnyStruct;
    const ret = this.call(io, layout.encode(value as never), value, extraIn);
    if (ret < 0) throw new BackendError(-ret, what);
    return layout.decode(this.sys.memory.load(this.scratch, layout.size)) as Record<string, unknown>;
  }

  /**
   * Issue `io` with its argument `bytes` (encoding `value`) in the scratch page and `extraIn`
   * where it says, recorded and traced; the return value.
   */
  private call(io: U.IoctlDef, bytes: Uint8Array, value: Record<string, unknown>, extraIn?: { at: number; bytes: Uint8Array }): number {
    this.sys.memory.store(this.scratch, bytes);
    if (extraIn) this.sys.memory.store(extraIn.at, extraIn.bytes);
    const ret = this.sys.ioctl(this.fd, io.number, this.scratch);
    this.record(io.name, value, ret);
    this.tracer.emit(T_CALL, this.fd, io.name, ret);
    return ret;
  }

  private record(name: string, args: Record<string, unknown>, ret: number): void {
    this.callTotal++;
    this.callCounts.set(name, (this.callCounts.get(name) ?? 0) + 1);
    // Trim in blocks so recording stays O(1) amortised.
    if (this.calls.length >= 2 * CALL_HISTORY) this.calls.splice(0, CALL_HISTORY);
    this.calls.push({ name, args, ret });
  }

  /**
   * The user buffer for an invalidation array of `bytes`: grown when too small, in whole pages
   * (mmap takes nothing else), the new mapping made before the old one goes.
   */
  private entriesBuffer(bytes: number): number {
    if (bytes > this.entriesSize) {
      const page = this.sys.pageSize;
      const size = Math.ceil(Math.max(bytes, 2 * this.entriesSize) / page) * page;
      const va = mmapAnonymous(this.sys, size);
      if (va < 0) throw new BackendError(-va, 'failed to map the invalidation array');
      if (this.entriesVa) this.sys.munmap(this.entriesVa, this.entriesSize);
      this.entriesVa = va;
      this.entriesSize = size;
    }
    return this.entriesVa;
  }

  /** A user buffer in the scratch area for driver data (after the argument struct). */
  private dataVa(slot: number): number {
    return this.scratch + 256 + slot * 256;
  }

  /** Bind a VFIO device cdev to this iommufd; returns its dev_id. */
  bindDevice(vfioPath: string): { vfioFd: number; devId: number } {
    const vfioFd = this.sys.open(vfioPath);
    if (vfioFd < 0) throw new BackendError(-vfioFd, `failed to open ${vfioPath}`);
    const va = this.dataVa(8);
    this.sys.memory.store(va, V.vfio_device_bind_iommufd.encode({ argsz: 16, iommufd: this.fd }));
    const ret = this.sys.ioctl(vfioFd, V.VFIO_DEVICE_BIND_IOMMUFD, va);
    if (ret < 0) throw new BackendError(-ret, 'error bind device fd');
    return { vfioFd, devId: V.vfio_device_bind_iommufd.decode(this.sys.memory.load(va, 16)).out_devid as number };
  }

  /** VFIO_DEVICE_ATTACH_IOMMUFD_PT. */
  attachDevice(vfioFd: number, ptId: number): void {
    const va = this.dataVa(9);
    this.sys.memory.store(va, V.vfio_device_attach_iommufd_pt.encode({ argsz: 16, pt_id: ptId }));
    const ret = this.sys.ioctl(vfioFd, V.VFIO_DEVICE_ATTACH_IOMMUFD_PT, va);
    this.record('VFIO_DEVICE_ATTACH_IOMMUFD_PT', { pt_id: ptId }, ret);
    if (ret < 0) throw new BackendError(-ret, `error attach to hwpt ${ptId}`);
  }

  /** VFIO_DEVICE_GET_INFO on a bound device file. */
  vfioDeviceInfo(vfioFd: number): { flags: number; numRegions: number; numIrqs: number } {
    const L = V.vfio_device_info;
    const va = this.dataVa(10);
    this.sys.memory.store(va, L.encode({ argsz: L.size }));
    const ret = this.sys.ioctl(vfioFd, V.VFIO_DEVICE_GET_INFO, va);
    this.record('VFIO_DEVICE_GET_INFO', {}, ret);
    if (ret < 0) throw new BackendError(-ret, 'error getting device info');
    const out = L.decode(this.sys.memory.load(va, L.size));
    return { flags: out.flags as number, numRegions: out.num_regions as number, numIrqs: out.num_irqs as number };
  }

  /** VFIO_DEVICE_GET_REGION_INFO of region `index`. */
  vfioRegionInfo(vfioFd: number, index: number): { flags: number; size: number; offset: number } {
    const L = V.vfio_region_info;
    const va = this.dataVa(11);
    this.sys.memory.store(va, L.encode({ argsz: L.size, index }));
    const ret = this.sys.ioctl(vfioFd, V.VFIO_DEVICE_GET_REGION_INFO, va);
    this.record('VFIO_DEVICE_GET_REGION_INFO', { index }, ret);
    if (ret < 0) throw new BackendError(-ret, `error getting region ${index} info`);
    const out = L.decode(this.sys.memory.load(va, L.size));
    return { flags: out.flags as number, size: Number(out.size as bigint), offset: Number(out.offset as bigint) };
  }

  /** VFIO_DEVICE_RESET: 0 or a negative errno (QEMU only traces a failed reset). */
  vfioReset(vfioFd: number): number {
    const ret = this.sys.ioctl(vfioFd, V.VFIO_DEVICE_RESET, 0);
    this.record('VFIO_DEVICE_RESET', {}, ret);
    return ret;
  }

  /** pread of `len` (≤ 256) bytes of a device file at `offset`: the bytes, or a negative errno. */
  vfioPread(vfioFd: number, offset: number, len: number): Uint8Array | number {
    const va = this.dataVa(12);
    const ret = this.sys.pread(vfioFd, va, len, offset);
    if (ret < 0) return ret;
    return this.sys.memory.load(va, ret);
  }

  /** pwrite of `bytes` (≤ 256) to a device file at `offset`: bytes written, or a negative errno. */
  vfioPwrite(vfioFd: number, offset: number, bytes: Uint8Array): number {
    const va = this.dataVa(13);
    this.sys.memory.store(va, bytes);
    return this.sys.pwrite(vfioFd, va, bytes.length, offset);
  }

  allocIoas(): number {
    return this.ioctl(U.IOMMU_IOAS_ALLOC, {}, 'Failed to allocate ioas').out_ioas_id as number;
  }

  /** Map `length` bytes of VMM memory at `userVa` to IOVA `iova` (guest RAM: IOVA = guest PA). */
  mapDma(ioasId: number, iova: number, length: number, userVa: number, readonly = false): void {
    const F = U.iommufd_ioas_map_flags;
    this.ioctl(
      U.IOMMU_IOAS_MAP,
      { flags: F.IOMMU_IOAS_MAP_FIXED_IOVA | F.IOMMU_IOAS_MAP_READABLE | (readonly ? 0 : F.IOMMU_IOAS_MAP_WRITEABLE), ioas_id: ioasId, user_va: BigInt(userVa), length: BigInt(length), iova: BigInt(iova) },
      'IOMMU_IOAS_MAP failed',
    );
  }

  /** IOMMU_GET_HW_INFO; a non-default `type` sets the INPUT_TYPE flag (QEMU commit 3e79b45e). */
  getDeviceInfo(devId: number, type: number, dataLen: number): { type: number; data: Uint8Array; caps: bigint; maxPasidLog2: number } {
    const data = this.dataVa(0);
    const out = this.ioctl(
      U.IOMMU_GET_HW_INFO,
      { flags: type ? U.iommufd_hw_info_flags.IOMMU_HW_INFO_FLAG_INPUT_TYPE : 0, dev_id: devId, data_len: dataLen, data_uptr: BigInt(data), in_data_type: type },
      'Failed to get hardware info',
    );
    return {
      type: out.out_data_type as number,
      data: this.sys.memory.load(data, dataLen),
      caps: out.out_capabilities as bigint,
      maxPasidLog2: out.out_max_pasid_log2 as number,
    };
  }

  /** IOMMU_HWPT_ALLOC (paging on an IOAS, or nested on a vIOMMU with an STE). */
  allocHwpt(devId: number, ptId: number, flags: number, dataType: number, data?: Uint8Array): number {
    const va = this.dataVa(1);
    if (data) this.sys.memory.store(va, data);
    return this.ioctl(
      U.IOMMU_HWPT_ALLOC,
      { flags, dev_id: devId, pt_id: ptId, data_type: dataType, data_len: data?.length ?? 0, data_uptr: data ? BigInt(va) : 0n },
      'Failed to allocate hwpt',
    ).out_hwpt_id as number;
  }

  /** IOMMU_VIOMMU_ALLOC with optional driver data (in/out). */
  allocViommu(devId: number, type: number, hwptId: number, data?: Uint8Array): { viommuId: number; data: Uint8Array | undefined } {
    const va = this.dataVa(2);
    if (data) this.sys.memory.store(va, data);
    const out = this.ioctl(
      U.IOMMU_VIOMMU_ALLOC,
      { type, dev_id: devId, hwpt_id: hwptId, data_len: data?.length ?? 0, data_uptr: data ? BigInt(va) : 0n },
      'IOMMU_VIOMMU_ALLOC failed',
    );
    return { viommuId: out.out_viommu_id as number, data: data ? this.sys.memory.load(va, data.length) : undefined };
  }

  /** IOMMU_VDEVICE_ALLOC. */
  allocVdev(devId: number, viommuId: number, virtId: number): number {
    return this.ioctl(U.IOMMU_VDEVICE_ALLOC, { viommu_id: viommuId, dev_id: devId, virt_id: BigInt(virtId) }, 'IOMMU_VDEVICE_ALLOC failed')
      .out_vdevice_id as number;
  }

  /** IOMMU_HW_QUEUE_ALLOC. */
  allocHwQueue(viommuId: number, type: number, index: number, addr: number, length: number): number {
    let id = 0;
    let ret = 0;
    try {
      id = this.ioctl(
        U.IOMMU_HW_QUEUE_ALLOC,
        { viommu_id: viommuId, type, index, nesting_parent_iova: BigInt(addr), length: BigInt(length) },
        'IOMMU_HW_QUEUE_ALLOC failed',
      ).out_hw_queue_id as number;
    } catch (e) {
      ret = -(e as BackendError).errno;
      throw e;
    } finally {
      this.tracer.emit(T_HWQ, this.fd, viommuId, type, index, addr, length, id, ret);
    }
    return id;
  }

  /** mmap of a vIOMMU region (VINTF page0); returns the VMM address. */
  viommuMmap(viommuId: number, size: number, offset: number): number {
    this.tracer.emit(T_MMAP, this.fd, viommuId, size, offset);
    const va = this.sys.mmap(0, size, PROT_READ | PROT_WRITE, MAP_SHARED, this.fd, offset);
    if (va < 0) throw new BackendError(-va, 'IOMMUFD vIOMMU mmap failed');
    return va;
  }

  munmap(va: number, size: number): void {
    this.sys.munmap(va, size);
  }

  /** The device behind a mapping made by {@link viommuMmap} (loads/stores reach it directly). */
  mappedDevice(va: number): RegionOps {
    return this.sys.memory.device(va);
  }

  /** IOMMU_VEVENTQ_ALLOC. */
  allocVeventq(viommuId: number, type: number, depth: number): Veventq {
    const out = this.ioctl(U.IOMMU_VEVENTQ_ALLOC, { viommu_id: viommuId, type, veventq_depth: depth }, 'IOMMU_VEVENTQ_ALLOC failed');
    return { id: out.out_veventq_id as number, fd: out.out_veventq_fd as number, type, lastSeq: 0, started: false };
  }

  /** Close a vEVENTQ fd. */
  closeFd(fd: number): void {
    this.sys.close(fd);
  }

  /**
   * Read one record of `payloadLen` bytes and validate it: tri-state (record / nothing to
   * read / error), sequence gaps reported as `lost`, overflow headers as an error that
   * restarts sequence tracking (docs/reference/qemu-accel-smmuv3.md §11.2, with quirks Q1 and Q2 of §11.7 fixed).
   * With `into` (`payloadLen` bytes) the payload is read into it rather than a new array, for a
   * caller that is done with it before the next read.
   */
  readVevent(q: Veventq, payloadLen: number, into?: Uint8Array): VeventRead {
    const want = 8 + payloadLen;
    const va = this.dataVa(3);
    const n = this.sys.read(q.fd, va, want);
    if (n === 0) return { kind: 'none' };
    if (n < 0) return { kind: 'error', message: `vEVENTQ(type ${q.type} id ${q.id}): read failed (${strerror(-n)})` };
    // The header's two words straight from the buffer (no decoded object per record).
    const flags = this.sys.memory.read32(va + VEVENT_HDR_FLAGS);
    const sequence = this.sys.memory.read32(va + VEVENT_HDR_SEQUENCE);
    if (n === 8 && flags & U.iommu_veventq_flag.IOMMU_VEVENTQ_FLAG_LOST_EVENTS) {
      q.started = false;
      return { kind: 'error', message: `vEVENTQ(type ${q.type} id ${q.id}): overflowed` };
    }
    if (n < want) return { kind: 'error', message: `vEVENTQ(type ${q.type} id ${q.id}): short read(${n}/${want} bytes)` };
    const lost = q.started ? ((sequence - q.lastSeq - 1) >>> 0) & 0x7fff_ffff : 0;
    q.lastSeq = sequence;
    q.started = true;
    return { kind: 'record', sequence, payload: this.sys.memory.load(va + U.iommufd_vevent_header.size, payloadLen, into), lost };
  }

  /**
   * IOMMU_HWPT_INVALIDATE with raw 16-byte commands; returns entries handled. On failure the
   * {@link BackendError} carries the kernel's entry_num: how many entries it handled before the
   * one it refused.
   */
  invalidateCache(id: number, dataType: number, entries: Uint8Array, entryLen = 16): number {
    const va = this.entriesBuffer(entries.length);
    this.sys.memory.store(va, entries);
    const entryNum = entries.length / entryLen;
    const args = { hwpt_id: id, data_uptr: BigInt(va), data_type: dataType, entry_len: entryLen, entry_num: entryNum };
    // A value that does not fit its field is refused as the layout refuses it (RangeError).
    if (!(fitsU32(id) && fitsU32(dataType) && fitsU32(entryLen) && fitsU32(entryNum))) U.iommu_hwpt_invalidate.encode(args);
    // The struct as layout.encode writes it (encoded once, the fields that change patched in):
    // this call runs once per trapped batch, where encoding and decoding the struct showed.
    const arg = this.invalidateArg;
    arg.setUint32(INV_HWPT_ID, id, true);
    arg.setUint32(INV_DATA_UPTR, va >>> 0, true);
    arg.setUint32(INV_DATA_UPTR + 4, Math.floor(va / TWO32), true);
    arg.setUint32(INV_DATA_TYPE, dataType, true);
    arg.setUint32(INV_ENTRY_LEN, entryLen, true);
    arg.setUint32(INV_ENTRY_NUM, entryNum, true);
    const ret = this.call(U.IOMMU_HWPT_INVALIDATE, this.invalidateBytes, args);
    // The kernel copies the struct back with entry_num, also when it fails.
    const handled = this.sys.memory.read32(this.scratch + INV_ENTRY_NUM);
    if (ret < 0) {
      const e = new BackendError(-ret, 'IOMMU_HWPT_INVALIDATE failed');
      e.entryNum = handled;
      throw e;
    }
    return handled;
  }

  /**
   * Release the backend at VMM exit: unmap the ioctl buffers and close /dev/iommu (the kernel
   * then releases every object of the context once nothing else holds the file).
   */
  close(): void {
    if (this.entriesVa) this.sys.munmap(this.entriesVa, this.entriesSize);
    this.entriesVa = 0;
    this.entriesSize = 0;
    this.sys.munmap(this.scratch, this.scratchSize);
    this.sys.close(this.fd);
  }

  /** IOMMU_DESTROY; failures are only reported, as QEMU's free_id does. */
  freeId(id: number, report: (msg: string) => void): void {
    try {
      this.ioctl(U.IOMMU_DESTROY, { id }, 'IOMMU_DESTROY failed');
    } catch (e) {
      report(`Failed to free id: ${id} ${strerror((e as BackendError).errno)}`);
    }
  }
}
