/**
 * Fault injection at the vmm↔host seam: a {@link Syscalls} that passes every call through to the
 * host except the ones a fault names, which fail with the given errno before reaching the
 * kernel — exactly what the VMM would see if the kernel refused that call (nothing changed on
 * the host). `cmdqv run --inject SPEC` and the fuzz campaign use it.
 *
 * Spec syntax (comma-separated list): `ioctl=NAME:ERRNO[:N]` fails the N-th (default 1st) call of
 * the ioctl NAME (e.g. `IOMMU_HW_QUEUE_ALLOC`, `VFIO_DEVICE_BIND_IOMMUFD`); `mmap=ERRNO[:N]`
 * fails the N-th mmap of a file (a vIOMMU region such as VINTF page0); `open=PATH:ERRNO[:N]` fails
 * the N-th open of PATH.
 */

import { Errno, errnoName } from '../uapi/errno.js';
import { IOCTLS } from '../uapi/iommufd.js';
import { MAP_ANONYMOUS, type Syscalls, type UserMemory } from '../uapi/syscalls.js';
import { VFIO_DEVICE_ATTACH_IOMMUFD_PT, VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_DETACH_IOMMUFD_PT } from '../uapi/vfio.js';

/** One fault to inject. */
export type FaultSpec =
  | { readonly call: 'ioctl'; readonly ioctl: string; readonly errno: number; readonly nth: number }
  | { readonly call: 'mmap'; readonly errno: number; readonly nth: number }
  | { readonly call: 'open'; readonly path: string; readonly errno: number; readonly nth: number };

/** A fault that fired: which call, which occurrence, the errno returned. */
export interface InjectedFault {
  readonly spec: string;
  readonly call: string;
  readonly nth: number;
  readonly errno: string;
}

/** ioctl request numbers by name (iommufd and the VFIO cdev ioctls the VMM issues). */
const IOCTL_NUMBERS: ReadonlyMap<string, number> = new Map([
  ...IOCTLS.map((io) => [io.name, io.number] as const),
  ['VFIO_DEVICE_BIND_IOMMUFD', VFIO_DEVICE_BIND_IOMMUFD] as const,
  ['VFIO_DEVICE_ATTACH_IOMMUFD_PT', VFIO_DEVICE_ATTACH_IOMMUFD_PT] as const,
  ['VFIO_DEVICE_DETACH_IOMMUFD_PT', VFIO_DEVICE_DETACH_IOMMUFD_PT] as const,
]);
const IOCTL_NAMES: ReadonlyMap<number, string> = new Map([...IOCTL_NUMBERS].map(([name, nr]) => [nr, name]));

/** A user error in an inject spec (the message names the problem). */
export class FaultSpecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FaultSpecError';
  }
}

function parseErrno(text: string, spec: string): number {
  const errno = (Errno as Record<string, number>)[text];
  if (errno === undefined) throw new FaultSpecError(`--inject ${spec}: unknown errno '${text}' (one of ${Object.keys(Errno).join(', ')})`);
  return errno;
}

function parseNth(text: string | undefined, spec: string): number {
  if (text === undefined) return 1;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new FaultSpecError(`--inject ${spec}: occurrence '${text}' must be a positive integer`);
  return n;
}

/** Parse a comma-separated inject spec. */
export function parseFaultSpecs(text: string): FaultSpec[] {
  const out: FaultSpec[] = [];
  for (const spec of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const eq = spec.indexOf('=');
    const call = eq < 0 ? spec : spec.slice(0, eq);
    const parts = eq < 0 ? [] : spec.slice(eq + 1).split(':');
    if (call === 'ioctl') {
      const [name, errno, nth, extra] = parts;
      if (!name || !errno || extra !== undefined) throw new FaultSpecError(`--inject ${spec}: expected ioctl=NAME:ERRNO[:N]`);
      if (!IOCTL_NUMBERS.has(name)) throw new FaultSpecError(`--inject ${spec}: unknown ioctl '${name}' (one of ${[...IOCTL_NUMBERS.keys()].join(', ')})`);
      out.push({ call, ioctl: name, errno: parseErrno(errno, spec), nth: parseNth(nth, spec) });
    } else if (call === 'mmap') {
      const [errno, nth, extra] = parts;
      if (!errno || extra !== undefined) throw new FaultSpecError(`--inject ${spec}: expected mmap=ERRNO[:N]`);
      out.push({ call, errno: parseErrno(errno, spec), nth: parseNth(nth, spec) });
    } else if (call === 'open') {
      const [path, errno, nth, extra] = parts;
      if (!path || !errno || extra !== undefined) throw new FaultSpecError(`--inject ${spec}: expected open=PATH:ERRNO[:N]`);
      out.push({ call, path, errno: parseErrno(errno, spec), nth: parseNth(nth, spec) });
    } else {
      throw new FaultSpecError(`--inject ${spec}: unknown call '${call}' (ioctl=..., mmap=..., open=...)`);
    }
  }
  return out;
}

function describe(fault: FaultSpec): string {
  const errno = errnoName(fault.errno);
  if (fault.call === 'ioctl') return `ioctl=${fault.ioctl}:${errno}:${fault.nth}`;
  if (fault.call === 'open') return `open=${fault.path}:${errno}:${fault.nth}`;
  return `mmap=${errno}:${fault.nth}`;
}

/** Syscalls with faults injected; everything else reaches `inner` unchanged. */
export class FaultInjectingSyscalls implements Syscalls {
  /** Faults that fired, in order. */
  readonly injected: InjectedFault[] = [];
  private readonly counts = new Map<string, number>();

  constructor(
    private readonly inner: Syscalls,
    private readonly faults: readonly FaultSpec[],
  ) {}

  /** Calls seen so far, by kind (`ioctl NAME`, `mmap`, `open PATH`): the call sites a fault can name. */
  get callCounts(): ReadonlyMap<string, number> {
    return this.counts;
  }

  get pageSize(): number {
    return this.inner.pageSize;
  }

  get memory(): UserMemory {
    return this.inner.memory;
  }

  /** Count one call under `key`; the errno of a fault that names this occurrence, else 0. */
  private fault(key: string, call: string, matches: (f: FaultSpec) => boolean): number {
    const nth = (this.counts.get(key) ?? 0) + 1;
    this.counts.set(key, nth);
    const hit = this.faults.find((f) => f.nth === nth && matches(f));
    if (!hit) return 0;
    this.injected.push({ spec: describe(hit), call, nth, errno: errnoName(hit.errno) });
    return hit.errno;
  }

  open(path: string): number {
    const errno = this.fault(`open ${path}`, `open(${path})`, (f) => f.call === 'open' && f.path === path);
    return errno ? -errno : this.inner.open(path);
  }

  close(fd: number): number {
    return this.inner.close(fd);
  }

  ioctl(fd: number, request: number, argp: number): number {
    const name = IOCTL_NAMES.get(request);
    if (name !== undefined) {
      const errno = this.fault(`ioctl ${name}`, name, (f) => f.call === 'ioctl' && f.ioctl === name);
      if (errno) return -errno;
    }
    return this.inner.ioctl(fd, request, argp);
  }

  mmap(addr: number, length: number, prot: number, flags: number, fd: number, offset: number): number {
    if ((flags & MAP_ANONYMOUS) === 0) {
      const errno = this.fault('mmap', `mmap(fd ${fd}, offset 0x${offset.toString(16)})`, (f) => f.call === 'mmap');
      if (errno) return -errno;
    }
    return this.inner.mmap(addr, length, prot, flags, fd, offset);
  }

  munmap(va: number, length: number): number {
    return this.inner.munmap(va, length);
  }

  read(fd: number, bufVa: number, count: number): number {
    return this.inner.read(fd, bufVa, count);
  }

  pread(fd: number, bufVa: number, count: number, offset: number): number {
    return this.inner.pread(fd, bufVa, count, offset);
  }

  pwrite(fd: number, bufVa: number, count: number, offset: number): number {
    return this.inner.pwrite(fd, bufVa, count, offset);
  }

  poll(fd: number): number {
    return this.inner.poll(fd);
  }

  watchFd(fd: number, cb: (() => void) | undefined): number {
    return this.inner.watchFd(fd, cb);
  }

  readdir(path: string): string[] | number {
    return this.inner.readdir(path);
  }

  readlink(path: string): string | number {
    return this.inner.readlink(path);
  }
}
