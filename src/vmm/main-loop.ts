import type { VirtualClock } from '../kit/clock.js';
import type { Syscalls } from '../uapi/syscalls.js';

/**
 * The VMM's main loop, as devices see it (QEMU's `qemu_set_fd_handler` and bottom halves).
 * Devices receive it as an explicit dependency: a device that owns a file descriptor (a
 * vEVENTQ) registers its read handler here, and deferred work runs on the loop, not inside
 * the guest access that caused it.
 */
export interface MainLoop {
  /**
   * Run `handler` on the loop whenever `fd` becomes readable; `undefined` removes the handler.
   * @returns 0, or a negative errno from the host (e.g. -EBADF)
   */
  setFdHandler(fd: number, handler: (() => void) | undefined): number;
  /** Run `fn` on the loop, after the current guest access returns. */
  defer(fn: () => void): void;
}

/** The main loop of a VMM process whose loop is the virtual clock (see docs/design.md). */
export class ClockMainLoop implements MainLoop {
  constructor(
    private readonly sys: Pick<Syscalls, 'watchFd'>,
    private readonly clock: VirtualClock,
  ) {}
  setFdHandler(fd: number, handler: (() => void) | undefined): number {
    const clock = this.clock;
    return this.sys.watchFd(fd, handler ? () => clock.schedule(0, handler) : undefined);
  }
  defer(fn: () => void): void {
    this.clock.schedule(0, fn);
  }
}
