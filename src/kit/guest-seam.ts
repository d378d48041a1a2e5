/**
 * The guest <-> VMM seam: what a guest CPU can do to its machine — loads and stores to
 * guest-physical addresses (the machine decides whether they trap), interrupt lines, time.
 * The machine implements it; the guest driver model uses it. Nothing else crosses.
 */

import type { VirtualClock } from './clock.js';
import type { IrqLine } from './irq.js';

/** CPU loads/stores. */
export interface GuestBus {
  read32(gpa: number): number;
  write32(gpa: number, value: number): void;
  read64(gpa: number): bigint;
  write64(gpa: number, value: bigint): void;
}

/** Everything the guest kernel model needs from the platform. */
export interface GuestPlatform {
  readonly bus: GuestBus;
  readonly clock: VirtualClock;
  /** Interrupt line by GSIV (the guest's view of the GIC). */
  irq(gsiv: number): IrqLine | undefined;
  /** Guest RAM range available to the guest kernel. */
  readonly ramBase: number;
  readonly ramSize: number;
}
