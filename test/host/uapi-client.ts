// A minimal user-space client of the simulated host for tests: builds uAPI structs as bytes in
// the process's own memory and calls ioctl/mmap/read with pointers to them, like a VMM would.
import type { Process } from '../../src/host/kernel/process.js';
import { HostKernel } from '../../src/host/kernel/host-kernel.js';
import { mmapAnonymous, PROT_READ, PROT_WRITE, MAP_SHARED } from '../../src/uapi/syscalls.js';
import * as U from '../../src/uapi/iommufd.js';
import type { AnyStruct } from '../../src/uapi/layout.js';
import * as V from '../../src/uapi/vfio.js';

export interface CallResult {
  ret: number;
  out: Record<string, unknown>;
}

export class UapiClient {
  readonly scratch: number;
  private bump = 0;
  readonly fd: number;

  constructor(readonly proc: Process) {
    this.scratch = mmapAnonymous(proc, 1 << 20);
    this.fd = proc.open('/dev/iommu');
  }

  /** Allocate `n` bytes of user memory in the scratch area (8-byte aligned). */
  alloc(n: number): number {
    const va = this.scratch + 4096 + this.bump;
    this.bump += Math.ceil(n / 8) * 8;
    if (this.bump > (1 << 20) - 8192) this.bump = 0;
    return va;
  }

  /** Write bytes to user memory. */
  put(bytes: Uint8Array): number {
    const va = this.alloc(bytes.length);
    this.proc.mem.copyToUser(va, bytes);
    return va;
  }

  /** Call an iommufd ioctl with `value` encoded by its struct; `size` overrides the size field. */
  call(io: U.IoctlDef, value: Record<string, unknown>, opts: { size?: number; extra?: Uint8Array; fd?: number } = {}): CallResult {
    const layout = io.struct as AnyStruct;
    const size = opts.size ?? layout.size + (opts.extra?.length ?? 0);
    const bytes = new Uint8Array(Math.max(size, layout.size) + 8);
    layout.encode({ ...value, size } as never, bytes);
    if (opts.extra) bytes.set(opts.extra, layout.size);
    const va = this.put(bytes);
    const ret = this.proc.ioctl(opts.fd ?? this.fd, io.number, va);
    const out = layout.decode(this.proc.mem.copyFromUser(va, layout.size)) as Record<string, unknown>;
    return { ret, out };
  }

  /** Call and expect success; returns the output struct. */
  ok(io: U.IoctlDef, value: Record<string, unknown>): Record<string, unknown> {
    const r = this.call(io, value);
    if (r.ret !== 0) throw new Error(`${io.name} failed with ${r.ret}: ${this.proc.kernel.lastError}`);
    return r.out;
  }

  /** Open the VFIO cdev of device `n`, bind it to this iommufd; returns {vfio fd, dev_id}. */
  bind(n: number): { vfio: number; devId: number } {
    const vfio = this.proc.open(`/dev/vfio/devices/vfio${n}`);
    const bytes = V.vfio_device_bind_iommufd.encode({ argsz: 16, iommufd: this.fd });
    const va = this.put(bytes);
    const ret = this.proc.ioctl(vfio, V.VFIO_DEVICE_BIND_IOMMUFD, va);
    if (ret !== 0) throw new Error(`bind failed ${ret}`);
    return { vfio, devId: V.vfio_device_bind_iommufd.decode(this.proc.mem.copyFromUser(va, 16)).out_devid as number };
  }

  /** Attach a bound device to a page table. */
  attach(vfio: number, ptId: number): number {
    const va = this.put(V.vfio_device_attach_iommufd_pt.encode({ argsz: 16, pt_id: ptId }));
    return this.proc.ioctl(vfio, V.VFIO_DEVICE_ATTACH_IOMMUFD_PT, va);
  }

  /** mmap of the iommufd file. */
  mmap(length: number, offset: number, prot = PROT_READ | PROT_WRITE, flags = MAP_SHARED): number {
    return this.proc.mmap(0, length, prot, flags, this.fd, offset);
  }
}

/** A VM on the host: guest RAM in the IOAS, a nesting-parent HWPT, a bound device. */
export interface VmSetup {
  kernel: HostKernel;
  c: UapiClient;
  ramVa: number;
  ramBytes: number;
  ioasId: number;
  s2Id: number;
  devId: number;
  vfio: number;
}

/** Build a VM: `ramBytes` of guest RAM at IPA 0 (hugepage-backed unless told otherwise). */
export function makeVm(kernel: HostKernel, devIndex: number, ramBytes = 2 ** 30, hugepages = true): VmSetup {
  const proc = kernel.createProcess();
  const c = new UapiClient(proc);
  const ramVa = mmapAnonymous(proc, ramBytes, hugepages);
  const { vfio, devId } = c.bind(devIndex);
  const ioasId = c.ok(U.IOMMU_IOAS_ALLOC, {}).out_ioas_id as number;
  c.ok(U.IOMMU_IOAS_MAP, {
    flags: U.iommufd_ioas_map_flags.IOMMU_IOAS_MAP_FIXED_IOVA | 6,
    ioas_id: ioasId,
    user_va: BigInt(ramVa),
    length: BigInt(ramBytes),
    iova: 0n,
  });
  const s2Id = c.ok(U.IOMMU_HWPT_ALLOC, { flags: 1, dev_id: devId, pt_id: ioasId }).out_hwpt_id as number;
  return { kernel, c, ramVa, ramBytes, ioasId, s2Id, devId, vfio };
}
