/**
 * Deterministic model time. Nothing in cmdqv reads the wall clock: polling loops, timeouts
 * and interrupt delivery advance this clock, so runs are reproducible.
 */

/** Handle of a scheduled callback. */
export interface TimerHandle {
  readonly id: number;
  readonly at: number;
}

interface Timer extends TimerHandle {
  readonly fn: () => void;
}

/** A virtual nanosecond clock with a timer queue (binary heap ordered by time, then id). */
export class VirtualClock {
  private nowNs = 0;
  private nextId = 1;
  private readonly heap: Timer[] = [];
  private readonly cancelled = new Set<number>();

  /** Current model time in nanoseconds. */
  get now(): number {
    return this.nowNs;
  }

  /** Number of timers still scheduled. */
  get pending(): number {
    return this.heap.length - this.cancelled.size;
  }

  /** Time of the earliest timer still scheduled, or undefined when none is. */
  nextDeadline(): number | undefined {
    let at: number | undefined;
    for (const t of this.heap) if (!this.cancelled.has(t.id) && (at === undefined || t.at < at)) at = t.at;
    return at;
  }

  /** Run `fn` once the clock reaches `now + delayNs`. */
  schedule(delayNs: number, fn: () => void): TimerHandle {
    if (!(delayNs >= 0)) throw new RangeError(`timer delay must be >= 0, got ${delayNs}`);
    const timer: Timer = { id: this.nextId++, at: this.nowNs + delayNs, fn };
    this.push(timer);
    return { id: timer.id, at: timer.at };
  }

  /** Cancel a timer that has not fired yet. */
  cancel(handle: TimerHandle): void {
    if (this.heap.some((x) => x.id === handle.id)) this.cancelled.add(handle.id);
  }

  /**
   * Charge `ns` of modelled work (a VM exit, an ioctl, a batch of commands): time moves on
   * without firing timers, because the charge happens in the middle of a device's handler.
   * Timers that fall due meanwhile fire at the next {@link advance} or {@link runUntilIdle},
   * never earlier than they were due and never moving time backwards. Pure arithmetic: the
   * model never sleeps.
   */
  charge(ns: number): void {
    this.nowNs += ns;
  }

  /** Advance time by `ns`, firing due timers in order (each sees `now` = its own time, or later when work was charged past it). */
  advance(ns: number): void {
    if (!(ns >= 0)) throw new RangeError(`cannot advance by ${ns}`);
    const end = this.nowNs + ns;
    for (;;) {
      const top = this.heap[0];
      if (!top || top.at > end) break;
      this.pop();
      if (top.at > this.nowNs) this.nowNs = top.at;
      if (this.cancelled.delete(top.id)) continue;
      top.fn();
    }
    if (end > this.nowNs) this.nowNs = end;
  }

  /** Fire every pending timer (and those they schedule), up to `limit` firings. */
  runUntilIdle(limit = 1_000_000): number {
    let n = 0;
    while (this.heap.length > 0 && n < limit) {
      const top = this.pop()!;
      if (this.cancelled.delete(top.id)) continue;
      this.nowNs = Math.max(this.nowNs, top.at);
      top.fn();
      n++;
    }
    return n;
  }

  /**
   * Poll `cond` every `intervalNs` until it holds or `timeoutNs` has elapsed, the way a
   * driver's readl_poll_timeout loop does. Returns whether the condition was met.
   */
  poll(cond: () => boolean, intervalNs: number, timeoutNs: number): boolean {
    const deadline = this.nowNs + timeoutNs;
    for (;;) {
      if (cond()) return true;
      if (this.nowNs >= deadline) return false;
      this.advance(Math.min(intervalNs, deadline - this.nowNs));
    }
  }

  /**
   * Timers still scheduled, in firing order (time, then scheduling order), for a snapshot to
   * say what deferred work is pending. The callbacks are runtime: a snapshot names them by what
   * they belong to.
   */
  pendingTimers(): { readonly at: number; readonly fn: () => void }[] {
    return this.heap.filter((t) => !this.cancelled.has(t.id)).sort((a, b) => (before(a, b) ? -1 : 1)).map((t) => ({ at: t.at, fn: t.fn }));
  }

  /** Drop every scheduled timer (a restore re-schedules the saved ones). */
  cancelAll(): void {
    this.heap.length = 0;
    this.cancelled.clear();
  }

  /**
   * Set the time of a clock that has nothing scheduled (a restored VM takes its saved time; its
   * pending work is scheduled afterwards at the saved deadlines).
   * @throws Error when timers are still scheduled
   */
  restoreTime(ns: number): void {
    if (this.heap.length > 0) throw new Error('restoreTime: timers are still scheduled');
    if (!(ns >= 0) || !Number.isFinite(ns)) throw new RangeError(`restoreTime: ${ns} is not a time`);
    this.nowNs = ns;
  }

  /** Run `fn` at absolute time `at` (now, if `at` has passed): what a restore re-schedules. */
  scheduleAt(at: number, fn: () => void): TimerHandle {
    return this.schedule(Math.max(0, at - this.nowNs), fn);
  }

  private push(timer: Timer): void {
    const h = this.heap;
    h.push(timer);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  private pop(): Timer | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && before(h[l]!, h[m]!)) m = l;
        if (r < h.length && before(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

function before(a: Timer, b: Timer): boolean {
  return a.at < b.at || (a.at === b.at && a.id < b.id);
}
