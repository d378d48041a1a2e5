/**
 * Linux errno values (asm-generic/errno-base.h and errno.h, as on arm64) and the error type
 * that carries one across the uAPI seam.
 */

/** Errno numbers by name. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENOTTY: 25,
  ENOSPC: 28,
  ESPIPE: 29,
  ERANGE: 34,
  EOVERFLOW: 75,
  EOPNOTSUPP: 95,
  ETIMEDOUT: 110,
} as const;

/** An errno name. */
export type ErrnoName = keyof typeof Errno;

const names = new Map<number, ErrnoName>(Object.entries(Errno).map(([k, v]) => [v, k as ErrnoName]));

/** Name of an errno value (`EINVAL`), or `E<n>` for values not listed. */
export function errnoName(errno: number): string {
  return names.get(errno) ?? `E${errno}`;
}

/** Linux strerror texts by errno name: the stack's errnos, and the socket ones a VMM meets opening its chardevs. */
const STRERROR: Record<string, string> = {
  EPERM: 'Operation not permitted',
  ENOENT: 'No such file or directory',
  EIO: 'Input/output error',
  ENXIO: 'No such device or address',
  E2BIG: 'Argument list too long',
  EBADF: 'Bad file descriptor',
  EAGAIN: 'Resource temporarily unavailable',
  ENOMEM: 'Cannot allocate memory',
  EFAULT: 'Bad address',
  EBUSY: 'Device or resource busy',
  EEXIST: 'File exists',
  ENODEV: 'No such device',
  EINVAL: 'Invalid argument',
  ENOTTY: 'Inappropriate ioctl for device',
  ENOSPC: 'No space left on device',
  ERANGE: 'Numerical result out of range',
  EOVERFLOW: 'Value too large for defined data type',
  EOPNOTSUPP: 'Operation not supported',
  ETIMEDOUT: 'Connection timed out',
  EACCES: 'Permission denied',
  EADDRINUSE: 'Address already in use',
  ECONNREFUSED: 'Connection refused',
};

/** strerror(errno). */
export function strerror(errno: number): string {
  return strerrorOfName(errnoName(errno)) ?? `Unknown error ${errno}`;
}

/** The strerror text of an errno name (`ENOENT`), if known. */
export function strerrorOfName(name: string): string | undefined {
  return Object.hasOwn(STRERROR, name) ? STRERROR[name] : undefined;
}

/** An error carrying a Linux errno, raised by the host kernel model and seen by the VMM. */
export class ErrnoError extends Error {
  /** Positive errno value. */
  readonly errno: number;
  /** Errno name, e.g. `EINVAL`. */
  readonly code: string;

  constructor(errno: number, message?: string) {
    const code = errnoName(errno);
    super(message ? `${code}: ${message}` : code);
    this.name = 'ErrnoError';
    this.errno = errno;
    this.code = code;
  }
}

/** Throw an {@link ErrnoError} (for one-line argument checks). */
export function fail(errno: number, message?: string): never {
  throw new ErrnoError(errno, message);
}
