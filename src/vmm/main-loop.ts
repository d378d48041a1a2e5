import type { VirtualClock } from '../kit/clock.js';
import { POLLIN, type Syscalls } from '../uapi/syscalls.js';

/**
 * The VMM's main loop, as devices see it (QEMU's `qemu_set_fd_handler` and bottom halves).
 * Devices receive it as an explicit dependency: a device that owns a file descriptor (a
 * vEVENTQ) registers its read handler here, and deferred work runs on the loop, not inside
 * the guest access that caused it.
 */
export interface MainLoop {
  /**
   * Run `handler` on the loop whenever `fd` becomes readable; `undefined` removes the handler.
   * The handler reads what it needs (QEMU's read one record per call) and returns; the loop
   * calls it again while the fd stays readable.
   * @returns 0, or a negative errno from the host (e.g. -EBADF)
   */
  setFdHandler(fd: number, handler: (() => void) | undefined): number;
  /** Run `fn` on the loop, after the current guest access returns. */
  defer(fn: () => void): void;
}

/**
 * Model time of one main-loop iteration. Readiness that arises while a handler runs (the guest
 * reacting to the interrupt the handler raised, and the host reporting again) is seen by the
 * next poll, one iteration later: a storm the guest causes runs on the guest's time and never
 * keeps one iteration from returning (issue 14 #3).
 */
export const MAIN_LOOP_ITERATION_NS = 1_000;

/** One watched fd. */
interface FdWatch {
  readonly fd: number;
  readonly handler: () => void;
  /** Dispatches scheduled and not yet run. */
  scheduled: number;
  /** Whether the handler is running. */
  running: boolean;
  /** The timer callback of a dispatch, made once. */
  readonly dispatch: () => void;
}

/** The main loop of a VMM process whose loop is the virtual clock (see docs/design.md). */
export class ClockMainLoop implements MainLoop {
  private readonly watches = new Map<number, FdWatch>();

  constructor(
    private readonly sys: Pick<Syscalls, 'watchFd' | 'poll'>,
    private readonly clock: VirtualClock,
  ) {}

  setFdHandler(fd: number, handler: (() => void) | undefined): number {
    if (!handler) {
      this.watches.delete(fd);
      return this.sys.watchFd(fd, undefined);
    }
    const watch: FdWatch = { fd, handler, scheduled: 0, running: false, dispatch: () => this.dispatch(watch) };
    const err = this.sys.watchFd(fd, () => this.notify(watch));
    if (err === 0) this.watches.set(fd, watch);
    return err;
  }

  defer(fn: () => void): void {
    this.clock.schedule(0, fn);
  }

  /** The fd became readable: dispatch now, or next iteration if its handler is running. */
  private notify(watch: FdWatch): void {
    watch.scheduled++;
    this.clock.schedule(watch.running ? MAIN_LOOP_ITERATION_NS : 0, watch.dispatch);
  }

  private dispatch(watch: FdWatch): void {
    watch.scheduled--;
    if (this.watches.get(watch.fd) !== watch) return;
    watch.running = true;
    try {
      watch.handler();
    } finally {
      watch.running = false;
    }
    // Level-triggered: still readable with nothing scheduled, the next poll finds it.
    if (watch.scheduled === 0 && this.watches.get(watch.fd) === watch && this.sys.poll(watch.fd) & POLLIN) {
      watch.scheduled++;
      this.clock.schedule(MAIN_LOOP_ITERATION_NS, watch.dispatch);
    }
  }

  /**
   * The dispatches scheduled and not yet run, in firing order, by the fd they are for (a
   * snapshot keeps them: a vEVENTQ readable at the save is handled at the same model time after
   * a restore).
   * @throws Error when other deferred work is pending (nothing in the VMM defers work today)
   */
  pendingDispatches(): PendingDispatch[] {
    const byFn = new Map<() => void, number>();
    for (const w of this.watches.values()) byFn.set(w.dispatch, w.fd);
    return this.clock.pendingTimers().map((t) => {
      const fd = byFn.get(t.fn);
      if (fd === undefined) throw new Error('main loop: deferred work other than fd dispatches is pending');
      return { fd, at: t.at };
    });
  }

  /**
   * Replace what is scheduled with `pending` (after {@link VirtualClock.cancelAll}): each
   * dispatch for the watch of its fd, at its saved time and in the saved order.
   */
  restoreDispatches(pending: readonly PendingDispatch[]): void {
    for (const w of this.watches.values()) w.scheduled = 0;
    for (const p of pending) {
      const watch = this.watches.get(p.fd);
      if (!watch) throw new Error(`main loop: no handler for fd ${p.fd} to dispatch`);
      watch.scheduled++;
      this.clock.scheduleAt(p.at, watch.dispatch);
    }
  }
}

/** A scheduled fd dispatch: the fd and the model time it runs at. */
export interface PendingDispatch {
  readonly fd: number;
  readonly at: number;
}
