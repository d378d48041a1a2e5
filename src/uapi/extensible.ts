/**
 * The kernel's extensible-struct rules for ioctl arguments and array entries (
 * docs/reference/iommufd-uapi.md §2.1): a user struct may be larger than the kernel's if the extra tail is zero
 * (else E2BIG), smaller ones are zero-extended, and anything below the minimum size is EINVAL.
 */

import { Errno, ErrnoError } from './errno.js';
import type { StructInfo } from './layout.js';

/** Whether every byte of `bytes[from..]` is zero. */
export function isZeroTail(bytes: Uint8Array, from: number): boolean {
  for (let i = from; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/**
 * Copy a user ioctl argument into a kernel-sized buffer. `user` holds exactly the `size`
 * bytes the caller declared (its first u32 must equal `user.length`).
 * @throws ErrnoError EINVAL below the minimum size, E2BIG on a non-zero unknown tail
 */
export function copyStructFromUser(layout: StructInfo, user: Uint8Array): Uint8Array {
  if (user.length < layout.minSize) {
    throw new ErrnoError(Errno.EINVAL, `${layout.name}: size ${user.length} below minimum ${layout.minSize}`);
  }
  if (user.length > layout.size && !isZeroTail(user, layout.size)) {
    throw new ErrnoError(Errno.E2BIG, `${layout.name}: non-zero bytes beyond the kernel's ${layout.size}-byte struct`);
  }
  const k = new Uint8Array(layout.size);
  k.set(user.subarray(0, Math.min(user.length, layout.size)));
  return k;
}

/** Bytes the kernel writes back to a user struct of `userSize` bytes: min(user, kernel). */
export function copyOutLength(layout: StructInfo, userSize: number): number {
  return Math.min(userSize, layout.size);
}

/**
 * Normalise one array entry of `entryLen` bytes (e.g. an invalidation command) to the kernel's
 * entry size: longer entries need a zero tail (else E2BIG), shorter ones are zero-extended.
 */
export function copyArrayEntry(kernelSize: number, entry: Uint8Array, out = new Uint8Array(kernelSize)): Uint8Array {
  if (entry.length > kernelSize && !isZeroTail(entry, kernelSize)) {
    throw new ErrnoError(Errno.E2BIG, `array entry of ${entry.length} bytes has a non-zero tail beyond ${kernelSize}`);
  }
  out.fill(0);
  out.set(entry.subarray(0, Math.min(entry.length, kernelSize)));
  return out;
}
