/**
 * The kernel's user-memory helpers for arguments whose length the user chooses
 * (docs/reference/iommufd-uapi.md §2.1): `check_zeroed_user`, `copy_struct_from_user` and
 * `clear_user`. They walk the process's mappings page by page (`ProcessMemory.walk`) and never allocate the
 * user-chosen length, so a size field of 0xffffffff costs a walk to the first unmapped byte
 * (EFAULT), not a 4 GiB buffer.
 */

import { Errno, ErrnoError } from '../../uapi/errno.js';
import type { StructInfo } from '../../uapi/layout.js';
import type { ProcessMemory } from '../memory/process-memory.js';


/**
 * check_zeroed_user: whether [va, va + length) is all zero. Scans in address order, so a
 * non-zero byte before the first unmapped one gives false and an unmapped one first EFAULT.
 */
export function checkZeroedUser(mem: ProcessMemory, va: number, length: number): boolean {
  let zero = true;
  mem.walk(va, length, (pa, n) => {
    zero = mem.phys.mem.firstNonZero(pa, n) < 0;
    return !zero;
  });
  return zero;
}

/**
 * Host PA of [va, va + len) when it lies in one page of anonymous memory (so one physical read or
 * write covers it), else -1: the common case of an ioctl argument, which the per-page walk would
 * split into closures and views for a few dozen bytes.
 */
function onePagePa(mem: ProcessMemory, va: number, len: number): number {
  const m = mem.find(va);
  if (m === undefined || m.kind !== 'anon') return -1;
  const off = va - m.va;
  const page = Math.floor(off / m.pageSize);
  const inPage = off - page * m.pageSize;
  return inPage + len <= m.pageSize ? m.frames[page]! + inPage : -1;
}

/** copy_from_user of `len` bytes into `out` (from its start): EFAULT on any unmapped byte. */
export function copyFromUserInto(mem: ProcessMemory, va: number, len: number, out: Uint8Array<ArrayBuffer>): void {
  const pa = onePagePa(mem, va, len);
  if (pa >= 0) {
    mem.phys.mem.readBytes(pa, len, out);
    return;
  }
  mem.walk(va, len, (at, n, done) => {
    mem.phys.mem.readBytes(at, n, out.subarray(done, done + n));
  });
}

/** copy_to_user of `data`: EFAULT on any unmapped byte. */
export function copyToUserFrom(mem: ProcessMemory, va: number, data: Uint8Array): void {
  const pa = onePagePa(mem, va, data.length);
  if (pa >= 0) mem.phys.mem.writeBytes(pa, data);
  else mem.copyToUser(va, data);
}

/** A 32-bit little-endian user load (an ioctl argument's size field): EFAULT when unmapped. */
export function readUserU32(mem: ProcessMemory, va: number): number {
  const pa = onePagePa(mem, va, 4);
  // `& 3`: the low bits of any address below 2^53, without a floating-point `%`.
  if (pa >= 0 && (pa & 3) === 0) return mem.phys.mem.read32(pa) >>> 0;
  const bytes = mem.copyFromUser(va, 4);
  return new DataView(bytes.buffer).getUint32(0, true);
}

/**
 * copy_struct_from_user of a `usize`-byte user struct at `va` into a buffer of the kernel's
 * `kernelSize`: a longer user struct needs a zero tail (checked first: EFAULT or E2BIG), a
 * shorter one is zero-extended, then the common part is copied (EFAULT).
 */
export function copyStructFromUserVa(mem: ProcessMemory, kernelSize: number, va: number, usize: number): Uint8Array {
  const size = Math.min(kernelSize, usize);
  if (usize > kernelSize && !checkZeroedUser(mem, va + size, usize - size)) {
    throw new ErrnoError(Errno.E2BIG, `non-zero bytes beyond the kernel's ${kernelSize}-byte struct`);
  }
  const out = new Uint8Array(kernelSize);
  copyFromUserInto(mem, va, size, out);
  return out;
}

/**
 * An ioctl argument: `size` (the user's first u32) below the minimum is EINVAL, then the
 * struct is copied by {@link copyStructFromUserVa}.
 */
export function copyIoctlArg(mem: ProcessMemory, layout: StructInfo, va: number, size: number): Uint8Array {
  if (size < layout.minSize) throw new ErrnoError(Errno.EINVAL, `${layout.name}: size ${size} below minimum ${layout.minSize}`);
  return copyStructFromUserVa(mem, layout.size, va, size);
}

/** clear_user: zero [va, va + length); EFAULT at the first unmapped byte (earlier ones stay cleared). */
export function clearUser(mem: ProcessMemory, va: number, length: number): void {
  mem.walk(va, length, (pa, n) => {
    mem.phys.mem.fill(pa, n, 0);
    return false;
  });
}
