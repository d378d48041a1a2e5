/**
 * Interrupt lines from device models to the interrupt controller. Each line counts its
 * assertions so tests and reports can see how many interrupts a device raised.
 */

/**
 * One wire (a GIC SPI, for the virt machine), with the controller's pending latch: an edge
 * that arrives while the handler of the previous one still runs stays pending and is delivered
 * once that handler returns, as a GIC does for an edge-triggered SPI that is active and
 * pending (issue 14 #8). Handlers are never re-entered.
 */
export class IrqLine {
  private lvl = false;
  /** An edge is latched and not yet delivered. */
  private pending = false;
  /** The handler is running (the interrupt is active). */
  private active = false;
  /** Rising edges seen (pulses count once). */
  count = 0;
  /** Called once per rising edge, after the handler of the previous edge returned. */
  onRaise: (() => void) | undefined;
  /**
   * Called on every level change (a pulse is a change up, then down), before the handler:
   * what an observer of the wire sees, e.g. qtest's `irq_intercept_*` (`IRQ raise N`).
   */
  onLevel: ((level: boolean) => void) | undefined;

  constructor(readonly name: string) {}

  /** Current level. */
  get level(): boolean {
    return this.lvl;
  }

  /** Drive the line high (a rising edge is counted once). */
  raise(): void {
    if (this.lvl) return;
    this.lvl = true;
    this.onLevel?.(true);
    this.edge();
  }

  /** Drive the line low. */
  lower(): void {
    if (!this.lvl) return;
    this.lvl = false;
    this.onLevel?.(false);
  }

  /**
   * An edge: raise then lower. A pulse inside the handler of an earlier one is a new edge
   * even though that earlier pulse has not returned yet.
   */
  pulse(): void {
    this.lvl = true;
    this.onLevel?.(true);
    this.edge();
    this.lvl = false;
    this.onLevel?.(false);
  }

  /** Latch an edge; deliver it now unless a handler runs (it is delivered when that returns). */
  private edge(): void {
    this.count++;
    this.pending = true;
    if (this.active) return;
    this.active = true;
    try {
      while (this.pending) {
        this.pending = false;
        this.onRaise?.();
      }
    } finally {
      this.active = false;
    }
  }

  /** The line's state between guest accesses: its level and the edges it has counted. */
  save(): IrqLineState {
    return { level: this.lvl, count: this.count };
  }

  /** Load a saved level and count, without delivering an edge (the handler saw it before the save). */
  restore(s: IrqLineState): void {
    this.lvl = s.level;
    this.count = s.count;
    this.pending = false;
  }
}

/** What {@link IrqLine.save} returns. */
export interface IrqLineState {
  readonly level: boolean;
  readonly count: number;
}
