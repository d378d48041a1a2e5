/**
 * The virt machine's platform bus (docs/reference/qemu-accel-smmuv3.md §2.2): dynamic sysbus devices get MMIO
 * slots aligned to their size rounded up to a power of two (first free aligned range) and the
 * first free of 64 SPIs starting at SPI 112.
 */

import { OptionError } from './options.js';

/** VIRT_PLATFORM_BUS base and size. */
export const PLATFORM_BUS_BASE = 0x0c00_0000;
export const PLATFORM_BUS_SIZE = 0x0200_0000;
/** First platform-bus SPI and the number of SPIs. */
export const PLATFORM_BUS_FIRST_SPI = 112;
export const PLATFORM_BUS_NUM_IRQS = 64;
/** GIC INTID / ACPI GSIV = SPI + 32. */
export const SPI_TO_GSIV = 32;

/** Allocator of platform-bus MMIO slots and IRQs. */
export class PlatformBus {
  private readonly used: { start: number; end: number }[] = [];
  private readonly irqs = new Set<number>();

  /**
   * Map an MMIO region of `size` bytes; returns its guest-physical base.
   * @throws OptionError when the bus has no room left
   */
  allocMmio(size: number, what: string): number {
    const align = 2 ** Math.ceil(Math.log2(size));
    for (let off = 0; off + size <= PLATFORM_BUS_SIZE; off += align) {
      if (this.used.every((u) => off + size <= u.start || off >= u.end)) {
        this.used.push({ start: off, end: off + size });
        return PLATFORM_BUS_BASE + off;
      }
    }
    // A user error: the command line asked for more devices than the bus holds (QEMU exits).
    throw new OptionError(`${what}: Platform Bus: no room for an MMIO region of 0x${size.toString(16)} bytes`);
  }

  /**
   * Connect one IRQ; returns its GSIV.
   * @throws OptionError when every SPI of the bus is taken
   */
  allocIrq(what: string): number {
    for (let i = 0; i < PLATFORM_BUS_NUM_IRQS; i++) {
      if (!this.irqs.has(i)) {
        this.irqs.add(i);
        return PLATFORM_BUS_FIRST_SPI + i + SPI_TO_GSIV;
      }
    }
    throw new OptionError(`${what}: Platform Bus: no free IRQ (all ${PLATFORM_BUS_NUM_IRQS} SPIs in use)`);
  }
}
