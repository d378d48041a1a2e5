/**
 * Config-space access through ECAM from a guest CPU, with 32-bit loads and stores only (what
 * the guest seam offers): narrower registers are read out of their dword, and a store to the
 * COMMAND word writes 0 to the STATUS half so its write-1-to-clear bits are left alone.
 */
import {
  ecamOffset,
  PCI_BASE_ADDRESS_MEM_PREFETCH,
  PCI_BASE_ADDRESS_MEM_TYPE_64,
  PCI_BASE_ADDRESS_SPACE_IO,
  PCI_COMMAND_MEMORY,
  PciCfg,
} from '../arch/pci/config.js';
import type { GuestBus } from './platform.js';

/** A memory BAR as sizing found it. */
export interface ProbedBar {
  /** BAR number (0..5); a 64-bit BAR takes this one and the next. */
  readonly index: number;
  /** Config offset of its (low) register. */
  readonly reg: number;
  /** Address it holds now. */
  readonly addr: number;
  readonly size: number;
  readonly is64: boolean;
  readonly prefetch: boolean;
}

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

  /**
   * Size the first `count` BAR registers of a function the way firmware and Linux do: write
   * all-ones, read the mask back, restore; memory decoding is off meanwhile. I/O and
   * unimplemented BARs are left out.
   */
  probeBars(bus: number, devfn: number, count: number): ProbedBar[] {
    const cmd = this.command(bus, devfn);
    this.setCommand(bus, devfn, cmd & ~PCI_COMMAND_MEMORY);
    const bars: ProbedBar[] = [];
    for (let i = 0; i < count; i++) {
      const reg = PciCfg.BAR0 + 4 * i;
      const lo = this.read32(bus, devfn, reg);
      this.write32(bus, devfn, reg, 0xffff_ffff);
      const mask = this.read32(bus, devfn, reg);
      this.write32(bus, devfn, reg, lo);
      if (mask === 0 || lo & PCI_BASE_ADDRESS_SPACE_IO) continue;
      const is64 = (lo & 0x6) === PCI_BASE_ADDRESS_MEM_TYPE_64;
      const prefetch = (lo & PCI_BASE_ADDRESS_MEM_PREFETCH) !== 0;
      let size = (~(mask & 0xffff_fff0) >>> 0) + 1;
      let addr = (lo & 0xffff_fff0) >>> 0;
      if (is64) {
        const hi = this.read32(bus, devfn, reg + 4);
        this.write32(bus, devfn, reg + 4, 0xffff_ffff);
        const hmask = this.read32(bus, devfn, reg + 4);
        this.write32(bus, devfn, reg + 4, hi);
        addr += hi * 2 ** 32;
        if (hmask !== 0xffff_ffff) size = (2 ** 32 - hmask) * 2 ** 32;
      }
      bars.push({ index: i, reg, addr, size, is64, prefetch });
      if (is64) i++;
    }
    this.setCommand(bus, devfn, cmd);
    return bars;
  }
}
