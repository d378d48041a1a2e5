/**
 * Config-space access through ECAM from a guest CPU, with 32-bit loads and stores only (what
 * the guest seam offers): narrower registers are read out of their dword, and a store to the
 * COMMAND word writes 0 to the STATUS half so its write-1-to-clear bits are left alone.
 */
import { ecamOffset, PciCfg } from '../arch/pci/config.js';
import type { GuestBus } from './platform.js';

/** An ECAM window as the guest knows it. */
export class EcamAccess {
  constructor(
    private readonly bus: GuestBus,
    readonly base: number,
    /** Buses the window holds (16 or 256). */
    readonly buses: number,
  ) {}

  /** Dword at `reg` (4-byte aligned) of bus/devfn; all-ones when the bus is outside the window. */
  read32(bus: number, devfn: number, reg: number): number {
    if (bus >= this.buses) return 0xffff_ffff;
    return this.bus.read32(this.base + ecamOffset(bus, devfn, reg)) >>> 0;
  }

  write32(bus: number, devfn: number, reg: number, v: number): void {
    if (bus < this.buses) this.bus.write32(this.base + ecamOffset(bus, devfn, reg), v >>> 0);
  }

  /** A byte or word at `reg`, out of its dword. */
  read(bus: number, devfn: number, reg: number, size: 1 | 2): number {
    const d = this.read32(bus, devfn, reg & ~3);
    return (d >>> (8 * (reg & 3))) & (size === 1 ? 0xff : 0xffff);
  }

  /** Vendor ID, or 0xffff when no function answers. */
  vendor(bus: number, devfn: number): number {
    return this.read32(bus, devfn, PciCfg.VENDOR_ID) & 0xffff;
  }

  /** Set COMMAND (STATUS half written 0: no W1C bit is cleared by accident). */
  setCommand(bus: number, devfn: number, command: number): void {
    this.write32(bus, devfn, PciCfg.COMMAND, command & 0xffff);
  }

  command(bus: number, devfn: number): number {
    return this.read(bus, devfn, PciCfg.COMMAND, 2);
  }
}
