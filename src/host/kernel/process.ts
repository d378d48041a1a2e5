/**
 * A user process on the host (the VMM): its address space and file descriptors, with
 * system-call-shaped entry points. Every call returns a non-negative result or a negative
 * errno, like the raw system calls.
 */

import type { RegionOps } from '../../kit/memory-region.js';
import { SYSCALL_READ, type EventPathObserver, type SyscallObserver } from '../../kit/trace.js';
import { Errno, ErrnoError } from '../../uapi/errno.js';
import * as V from '../../uapi/vfio.js';
import { MAP_ANONYMOUS, MAP_HUGETLB, MAP_SHARED, POLLIN, type MemoryView, type Syscalls, type UserMemory } from '../../uapi/syscalls.js';
import { IommufdContext } from '../iommufd/iommufd.js';
import { ProcessMemory, UserMemoryOps } from '../memory/process-memory.js';
import type { HostDevice } from './host-device.js';
import { vfioDeviceIoctl, vfioPciRw } from './vfio-pci-file.js';
import type { HostKernel } from './host-kernel.js';

/**
 * A device mapping as the process reaches it: each load/store runs with the kernel's `current`
 * set to the process, so what the device does in response (errors, trace records) is the
 * process's.
 */
class ProcessDeviceOps implements RegionOps {
  constructor(
    private readonly ops: RegionOps,
    private readonly proc: Process,
  ) {}
  // Device models never throw at an access (bad input is logged), so no try/finally is needed.
  read(offset: number, size: 1 | 2 | 4): number {
    const prev = this.proc.kernel.current;
    this.proc.kernel.current = this.proc;
    const v = this.ops.read(offset, size);
    this.proc.kernel.current = prev;
    return v;
  }
  write(offset: number, size: 1 | 2 | 4, value: number): void {
    const prev = this.proc.kernel.current;
    this.proc.kernel.current = this.proc;
    this.ops.write(offset, size, value);
    this.proc.kernel.current = prev;
  }
  read64(offset: number): bigint {
    const prev = this.proc.kernel.current;
    this.proc.kernel.current = this.proc;
    const v = this.ops.read64(offset);
    this.proc.kernel.current = prev;
    return v;
  }
  write64(offset: number, value: bigint): void {
    const prev = this.proc.kernel.current;
    this.proc.kernel.current = this.proc;
    this.ops.write64(offset, value);
    this.proc.kernel.current = prev;
  }
}

/** The process's own loads and stores, over its address space. */
class ProcessUserMemory implements UserMemory {
  constructor(
    private readonly mem: ProcessMemory,
    private readonly proc: Process,
  ) {}
  load(va: number, length: number, out?: Uint8Array): Uint8Array {
    return this.mem.copyFromUser(va, length, out);
  }
  store(va: number, data: Uint8Array): void {
    this.mem.copyToUser(va, data);
  }
  read32(va: number): number {
    return this.mem.read32(va);
  }
  write32(va: number, value: number): void {
    this.mem.write32(va, value);
  }
  view(va: number): MemoryView {
    const m = this.mem.find(va);
    if (!m || m.kind !== 'anon' || m.va !== va) throw new ErrnoError(Errno.EFAULT, `no anonymous mapping starts at 0x${va.toString(16)}`);
    return new UserMemoryOps(this.mem, va);
  }
  device(va: number): RegionOps {
    const m = this.mem.find(va);
    if (!m || m.kind !== 'device' || !m.ops || m.va !== va) throw new ErrnoError(Errno.EFAULT, `no device mapping starts at 0x${va.toString(16)}`);
    return new ProcessDeviceOps(m.ops, this.proc);
  }
}

/** An open file. */
export type OpenFile =
  | { kind: 'iommufd'; ctx: IommufdContext }
  | { kind: 'vfio'; dev: HostDevice; ctx: IommufdContext | undefined }
  | {
      kind: 'veventq';
      /** read(2) into user memory at `va`: bytes copied (EFAULT thrown when none could be). */
      read: (va: number, max: number) => number;
      readable: () => boolean;
      close: () => void;
      watch: (cb: (() => void) | undefined) => void;
    };

/** A host process: the {@link Syscalls} a VMM makes, and the kernel's side of its state. */
export class Process implements Syscalls {
  /** The address space (kernel side: translation, pinning, copy_{from,to}_user). */
  readonly mem: ProcessMemory;
  readonly memory: UserMemory;
  readonly pageSize: number;
  private readonly fds = new Map<number, OpenFile>();
  private nextFd = 3;
  /** The process's mappings (va -> length), for the unmap at exit. */
  private readonly mappings = new Map<number, number>();
  private exited = false;

  constructor(
    readonly kernel: HostKernel,
    readonly pid: number,
  ) {
    this.mem = new ProcessMemory(kernel.phys);
    this.memory = new ProcessUserMemory(this.mem, this);
    this.pageSize = kernel.phys.pageSize;
  }

  /**
   * Process exit (kernel side), as do_exit: the address space goes first (every mapping,
   * anonymous and device), then the files are closed in fd order. Whatever the process still
   * held on the host is released; its fds are gone (EBADF) and its memory unmapped.
   */
  exit(): void {
    if (this.exited) return;
    this.exited = true;
    for (const [va, length] of [...this.mappings]) this.munmap(va, length);
    for (const fd of [...this.fds.keys()].sort((a, b) => a - b)) this.close(fd);
  }

  /** Install a file in the fd table (kernel side). */
  installFile(f: OpenFile): number {
    const fd = this.nextFd++;
    this.fds.set(fd, f);
    return fd;
  }

  /** open(2) of `/dev/iommu` or a VFIO device cdev `/dev/vfio/devices/vfioN`. */
  open(path: string): number {
    if (path === '/dev/iommu') return this.installFile({ kind: 'iommufd', ctx: new IommufdContext(this.kernel, this) });
    const m = /^\/dev\/vfio\/devices\/vfio(\d+)$/.exec(path);
    const dev = m ? this.kernel.devices[Number(m[1])] : undefined;
    if (!dev) return -Errno.ENOENT;
    return this.installFile({ kind: 'vfio', dev, ctx: undefined });
  }

  /** close(2). */
  close(fd: number): number {
    const k = this.kernel;
    const prev = k.current;
    k.current = this;
    try {
      return this.closeFile(fd);
    } finally {
      k.current = prev;
    }
  }

  private closeFile(fd: number): number {
    const f = this.fds.get(fd);
    if (!f) return -Errno.EBADF;
    this.fds.delete(fd);
    if (f.kind === 'veventq') f.close();
    if (f.kind === 'vfio' && f.ctx) f.ctx.unbindDevice(f.dev);
    // A VFIO file bound to the context keeps it (and its own use of it) until it closes.
    if (f.kind === 'iommufd') f.ctx.close();
    return 0;
  }

  /** The iommufd context behind `fd` (for the kernel's cross-file lookups). */
  iommufdOf(fd: number): IommufdContext | undefined {
    const f = this.fds.get(fd);
    return f?.kind === 'iommufd' ? f.ctx : undefined;
  }

  /** ioctl(2). */
  ioctl(fd: number, request: number, argp: number): number {
    const obs = this.syscallObserver;
    if (obs === undefined) return this.ioctlEntered(fd, request, argp);
    obs.enter(request);
    let ret = -Errno.EFAULT;
    try {
      ret = this.ioctlEntered(fd, request, argp);
      return ret;
    } finally {
      obs.leave(ret);
    }
  }

  /** Told at this process's syscall entry and exit (ioctl, read; modelled time, trace); none by default. */
  syscallObserver: SyscallObserver | undefined;
  /** Given to this process's vEVENTQs as they are allocated (modelled time, trace); none by default. */
  eventObserver: EventPathObserver | undefined;

  private ioctlEntered(fd: number, request: number, argp: number): number {
    const f = this.fds.get(fd);
    if (!f) return -Errno.EBADF;
    const k = this.kernel;
    const prev = k.current;
    k.current = this;
    try {
      if (f.kind === 'iommufd') return f.ctx.ioctl(request, argp);
      if (f.kind === 'vfio') return this.vfioIoctl(f, request, argp);
      return -Errno.ENOTTY;
    } finally {
      k.current = prev;
    }
  }

  private vfioIoctl(f: Extract<OpenFile, { kind: 'vfio' }>, request: number, argp: number): number {
    if (request === V.VFIO_DEVICE_GET_INFO || request === V.VFIO_DEVICE_GET_REGION_INFO || request === V.VFIO_DEVICE_RESET) {
      // The device's own ioctls need a bound file (vfio's access_granted).
      if (!f.ctx) return -Errno.EINVAL;
      try {
        return vfioDeviceIoctl(this.mem, f.dev, request, argp);
      } catch (e) {
        if (e instanceof ErrnoError) return -e.errno;
        throw e;
      }
    }
    try {
      const layout =
        request === V.VFIO_DEVICE_BIND_IOMMUFD
          ? V.vfio_device_bind_iommufd
          : request === V.VFIO_DEVICE_ATTACH_IOMMUFD_PT
            ? V.vfio_device_attach_iommufd_pt
            : request === V.VFIO_DEVICE_DETACH_IOMMUFD_PT
              ? V.vfio_device_detach_iommufd_pt
              : undefined;
      if (!layout) return -Errno.ENOTTY;
      const argsz = new DataView(this.mem.copyFromUser(argp, 4).buffer).getUint32(0, true);
      // VFIO reads only the struct it knows (bytes past it are ignored, whatever argsz says).
      if (argsz < layout.minSize) return -Errno.EINVAL;
      const k = new Uint8Array(layout.size);
      k.set(this.mem.copyFromUser(argp, layout.size));
      const v = layout.decode(k) as Record<string, number>;
      if (v.flags !== 0) return -Errno.EINVAL;
      if (request === V.VFIO_DEVICE_BIND_IOMMUFD) {
        if (f.ctx) return -Errno.EINVAL;
        const ctx = this.iommufdOf(v.iommufd!);
        if (!ctx) return -Errno.EBADF;
        v.out_devid = ctx.bindDevice(f.dev);
        f.ctx = ctx;
        // vfio-pci enables the device at first open with a reset: its config as it came up.
        f.dev.config.reset();
      } else {
        const b = f.dev.binding;
        if (!f.ctx || !b) return -Errno.EINVAL;
        if (request === V.VFIO_DEVICE_ATTACH_IOMMUFD_PT) f.ctx.attach(b.obj.id, v.pt_id!);
        else f.ctx.detach(b.obj);
      }
      this.mem.copyToUser(argp, layout.encode(v as never).subarray(0, Math.min(argsz, layout.size)));
      return 0;
    } catch (e) {
      if (e instanceof ErrnoError) return -e.errno;
      throw e;
    }
  }

  /** mmap(2): anonymous memory, or a file (only iommufd files can be mapped). */
  mmap(_addr: number, length: number, prot: number, flags: number, fd: number, offset: number): number {
    const k = this.kernel;
    const prev = k.current;
    k.current = this;
    try {
      const va = this.mmapFile(length, prot, flags, fd, offset);
      if (va >= 0) this.mappings.set(va, this.mem.find(va)!.length);
      return va;
    } finally {
      k.current = prev;
    }
  }

  private mmapFile(length: number, prot: number, flags: number, fd: number, offset: number): number {
    if (flags & MAP_ANONYMOUS) {
      if (fd !== -1 || offset !== 0) return -Errno.EINVAL;
      try {
        return this.mem.mmapAnon(length, { hugepages: (flags & MAP_HUGETLB) !== 0 });
      } catch (e) {
        if (e instanceof ErrnoError) return -e.errno;
        throw e;
      }
    }
    const f = this.fds.get(fd);
    if (!f) return -Errno.EBADF;
    if (f.kind !== 'iommufd') return -Errno.ENODEV;
    return f.ctx.mmap(length, prot, (flags & MAP_SHARED) !== 0, offset);
  }

  /** munmap(2). */
  munmap(va: number, length: number): number {
    const k = this.kernel;
    const prev = k.current;
    k.current = this;
    try {
      this.mem.munmap(va, length);
      this.mappings.delete(va);
      return 0;
    } catch (e) {
      if (e instanceof ErrnoError) return -e.errno;
      throw e;
    } finally {
      k.current = prev;
    }
  }

  /**
   * Register a readiness callback for `fd` (what a main loop's fd handler gets from epoll).
   * The callback runs when the file becomes readable; pass undefined to stop watching.
   */
  watchFd(fd: number, cb: (() => void) | undefined): number {
    const f = this.fds.get(fd);
    if (!f) return -Errno.EBADF;
    if (f.kind !== 'veventq') return -Errno.EPERM;
    f.watch(cb);
    return 0;
  }

  /** poll(2) without waiting: POLLIN when a vEVENTQ holds a record. */
  poll(fd: number): number {
    const f = this.fds.get(fd);
    if (!f) return -Errno.EBADF;
    if (f.kind !== 'veventq') return 0;
    return f.readable() ? POLLIN : 0;
  }

  /** Entries of the sysfs directories the VMM reads: PCI devices and their VFIO cdev. */
  readdir(path: string): string[] | number {
    if (path === '/sys/bus/pci/devices') return this.kernel.devices.map((d) => d.bdf);
    const m = /^\/sys\/bus\/pci\/devices\/([^/]+)\/vfio-dev$/.exec(path);
    if (!m) return -Errno.ENOENT;
    const index = this.kernel.devices.findIndex((d) => d.bdf === m[1]);
    return index < 0 ? -Errno.ENOENT : [`vfio${index}`];
  }

  /** sysfs links the VMM reads: a PCI device's `iommu` (its IOMMU instance). */
  readlink(path: string): string | number {
    const m = /^\/sys\/bus\/pci\/devices\/([^/]+)\/iommu$/.exec(path);
    const dev = m ? this.kernel.devices.find((d) => d.bdf === m[1]) : undefined;
    return dev ? `../../../../virtual/iommu/${dev.smmu.name}` : -Errno.ENOENT;
  }

  /** pread(2): a VFIO device file's config region; other files cannot be read at an offset here. */
  pread(fd: number, bufVa: number, count: number, offset: number): number {
    return this.vfioRw(fd, bufVa, count, offset, false);
  }

  /** pwrite(2): a VFIO device file's config region. */
  pwrite(fd: number, bufVa: number, count: number, offset: number): number {
    return this.vfioRw(fd, bufVa, count, offset, true);
  }

  private vfioRw(fd: number, bufVa: number, count: number, offset: number, write: boolean): number {
    const f = this.fds.get(fd);
    if (!f) return -Errno.EBADF;
    if (f.kind !== 'vfio' || !f.ctx) return -Errno.EINVAL;
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(count) || count < 0) return -Errno.EINVAL;
    const k = this.kernel;
    const prev = k.current;
    k.current = this;
    try {
      return vfioPciRw(this.mem, f.dev, bufVa, count, offset, write);
    } catch (e) {
      if (e instanceof ErrnoError) return -e.errno;
      throw e;
    } finally {
      k.current = prev;
    }
  }

  /** read(2): vEVENTQ files return whole records and never block (0 when empty). */
  read(fd: number, bufVa: number, count: number): number {
    const obs = this.syscallObserver;
    if (obs === undefined) return this.readEntered(fd, bufVa, count);
    obs.enter(SYSCALL_READ);
    let ret = -Errno.EFAULT;
    try {
      ret = this.readEntered(fd, bufVa, count);
      return ret;
    } finally {
      obs.leave(ret);
    }
  }

  private readEntered(fd: number, bufVa: number, count: number): number {
    const f = this.fds.get(fd);
    if (!f) return -Errno.EBADF;
    if (f.kind !== 'veventq') return -Errno.EINVAL;
    try {
      return f.read(bufVa, count);
    } catch (e) {
      if (e instanceof ErrnoError) return -e.errno;
      throw e;
    }
  }
}
