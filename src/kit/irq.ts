/**
 * Interrupt lines from device models to the interrupt controller. Each line counts its
 * assertions so tests and reports can see how many interrupts a device raised.
 */

/** One wire (a GIC SPI, for the virt machine). */
export class IrqLine {
  private lvl = false;
  /** Rising edges seen (pulses count once). */
  count = 0;
  /** Called on every rising edge. */
  onRaise: (() => void) | undefined;

  constructor(readonly name: string) {}

  /** Current level. */
  get level(): boolean {
    return this.lvl;
  }

  /** Drive the line high (a rising edge is counted once). */
  raise(): void {
    if (!this.lvl) {
      this.lvl = true;
      this.count++;
      this.onRaise?.();
    }
  }

  /** Drive the line low. */
  lower(): void {
    this.lvl = false;
  }

  /** An edge: raise then lower. */
  pulse(): void {
    this.raise();
    this.lower();
  }
}
