/**
 * The VMM's view of the operating system: the system calls a VMM process makes on its host,
 * shaped as the raw Linux calls (a non-negative result or a negative errno), and the process's
 * own memory. The host kernel model implements it; the VMM consumes only this interface, so
 * nothing of the host's internals crosses the vmm↔host seam except uAPI bytes and mappings.
 */

import type { RegionOps } from '../kit/memory-region.js';
import type { WordWindow } from '../kit/sparse-memory.js';

/** mmap(2) protection bits (Linux values). */
export const PROT_READ = 0x1;
export const PROT_WRITE = 0x2;
export const PROT_EXEC = 0x4;
/** mmap(2) flags (Linux values, arm64). */
export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const MAP_ANONYMOUS = 0x20;
export const MAP_HUGETLB = 0x40000;
/** poll(2) event bits. */
export const POLLIN = 0x1;

/**
 * A view of anonymous memory the process mapped (guest RAM): loads and stores at offsets from
 * the start of the view, and direct word windows for ring walks (QEMU's address_space_map).
 * Accesses outside what is mapped are EFAULT ({@link ErrnoError}).
 */
export interface MemoryView extends RegionOps {
  /**
   * Read `count` words at `offset` into `out[at..]` when they lie in one backing page and one
   * memory chunk; false otherwise (then use `read`).
   */
  readWords(offset: number, out: Uint32Array, at: number, count: number): boolean;
  /** Map the words at `offset` into `win` up to the end of the backing page; false if it cannot. */
  mapWords(offset: number, win: WordWindow): boolean;
}

/** The process's own memory: what the VMM reads and writes through its pointers. */
export interface UserMemory {
  /** Copy `length` bytes at `va` out (EFAULT on an unmapped byte), into `out` (exactly `length` bytes) when given. */
  load(va: number, length: number, out?: Uint8Array): Uint8Array;
  /** Copy `data` to `va` (EFAULT on an unmapped byte). */
  store(va: number, data: Uint8Array): void;
  /** 32-bit load (device mappings reach their device). */
  read32(va: number): number;
  /** 32-bit store (device mappings reach their device). */
  write32(va: number, value: number): void;
  /** A view of the anonymous mapping that starts at `va` (guest RAM for the memory API). */
  view(va: number): MemoryView;
  /**
   * The device behind the device mapping (mmap of a file) at `va`: accesses reach the device
   * model directly, as the VMM's loads and stores to that mapping would.
   */
  device(va: number): RegionOps;
}

/** The system calls a VMM makes. Every call returns a non-negative result or a negative errno. */
export interface Syscalls {
  /** The host's base page size (sysconf(_SC_PAGESIZE)). */
  readonly pageSize: number;
  /** The process's own memory. */
  readonly memory: UserMemory;
  /** open(2): `/dev/iommu`, a VFIO device cdev `/dev/vfio/devices/vfioN`. Returns an fd. */
  open(path: string): number;
  /** close(2). */
  close(fd: number): number;
  /** ioctl(2) with `argp` a pointer in the process's memory. */
  ioctl(fd: number, request: number, argp: number): number;
  /**
   * mmap(2). Anonymous memory: `fd` = -1 and `MAP_PRIVATE | MAP_ANONYMOUS` (plus `MAP_HUGETLB`
   * for hugepages); a file: `MAP_SHARED` with the file's offset cookie. `addr` is a hint and
   * ignored. Returns the address.
   */
  mmap(addr: number, length: number, prot: number, flags: number, fd: number, offset: number): number;
  /** munmap(2) of a whole mapping. */
  munmap(va: number, length: number): number;
  /** read(2) into the process's memory at `bufVa`; returns the bytes read (0: nothing ready). */
  read(fd: number, bufVa: number, count: number): number;
  /**
   * pread(2): `count` bytes at file `offset` into the process's memory at `bufVa`; the bytes
   * read or a negative errno (a VFIO device file: region `index` at offset `index << 40`).
   */
  pread(fd: number, bufVa: number, count: number, offset: number): number;
  /** pwrite(2): `count` bytes from `bufVa` to file `offset`; the bytes written or a negative errno. */
  pwrite(fd: number, bufVa: number, count: number, offset: number): number;
  /** poll(2) of one fd without waiting: the ready events (`POLLIN`), or a negative errno. */
  poll(fd: number): number;
  /**
   * Readiness notification (what a main loop gets from epoll): `cb` runs when `fd` becomes
   * readable; `undefined` stops watching.
   */
  watchFd(fd: number, cb: (() => void) | undefined): number;
  /** The entries of a sysfs directory (e.g. `/sys/bus/pci/devices/BDF/vfio-dev`), or a negative errno. */
  readdir(path: string): string[] | number;
  /** The target of a sysfs link (e.g. `/sys/bus/pci/devices/BDF/iommu`), or a negative errno. */
  readlink(path: string): string | number;
}

/**
 * mmap(2) of private anonymous read/write memory (hugepage-backed with `hugepages`): the
 * address, or a negative errno.
 */
export function mmapAnonymous(sys: Pick<Syscalls, 'mmap'>, length: number, hugepages = false): number {
  return sys.mmap(0, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | (hugepages ? MAP_HUGETLB : 0), -1, 0);
}
