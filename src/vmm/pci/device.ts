/**
 * PCI functions, buses and bridges as QEMU's PCI core has them: a function owns its config
 * space and BARs and sits at a devfn of a bus; a bus's number is fixed for a root bus (pcie.0,
 * a pxb-pcie's `bus_nr`) and, behind a bridge, whatever the bridge's SECONDARY_BUS register
 * holds now — so requester IDs follow firmware's numbering (QEMU's pci_bus_num at the time of
 * the access; docs/reference/pci.md §4).
 */
import type { PlainValue } from '../../kit/persist.js';
import {
  PCI_BASE_ADDRESS_MEM_PREFETCH,
  PCI_BASE_ADDRESS_MEM_TYPE_64,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_HEADER_TYPE_MULTI_FUNCTION,
  PCI_MEMORY_RANGE_MASK,
  PciCfg,
  pciRid,
} from '../../arch/pci/config.js';
import type { MemoryRegion } from '../../kit/memory-region.js';
import { PciConfigSpace, type ConfigRegister } from './config-space.js';
import { OCCUPIED_SLOT } from './headers.js';

/** A memory BAR: its index, size (a power of two ≥ 16) and what it decodes. */
export interface PciBar {
  readonly index: number;
  readonly size: number;
  readonly is64: boolean;
  readonly prefetch: boolean;
  readonly region: MemoryRegion;
}

/** QEMU's "not mapped" BAR address. */
export const BAR_UNMAPPED = -1;

/** What {@link PciFunction.save} returns. */
export interface PciFunctionState {
  readonly config: Uint8Array;
  readonly device: PlainValue;
}

/** A PCI function. */
export class PciFunction {
  readonly config: PciConfigSpace;
  /** The bus it is plugged into and its devfn there (set by {@link PciBus.plug}). */
  bus: PciBus | undefined;
  devfn = 0;

  constructor(
    /** QEMU's type name (gpex-root, pcie-root-port, iommu-testdev…). */
    readonly type: string,
    readonly id: string | undefined,
    registers: readonly ConfigRegister[],
    readonly bars: readonly PciBar[],
    express: boolean,
  ) {
    this.config = new PciConfigSpace(express, registers);
    for (const b of bars) this.declareBar(b);
    this.config.captureReset();
  }

  /** A BAR's type bits and writable address bits (QEMU's pci_register_bar); the caller captures reset. */
  protected declareBar(b: PciBar): void {
    if (b.size < 16 || (b.size & (b.size - 1)) !== 0) throw new RangeError(`${this.type}: BAR${b.index} size ${b.size} is not a power of two ≥ 16`);
    const flags = (b.is64 ? PCI_BASE_ADDRESS_MEM_TYPE_64 : 0) | (b.prefetch ? PCI_BASE_ADDRESS_MEM_PREFETCH : 0);
    const off = PciCfg.BAR0 + 4 * b.index;
    // Size probing: the address bits below the size read back as 0 (QEMU's wmask = ~(size - 1)).
    this.config.setWmask(off, 4, (~(b.size - 1) & 0xffff_fff0) >>> 0);
    this.config.set(off, 4, flags);
    if (b.is64) this.config.setWmask(off + 4, 4, b.size > 2 ** 32 ? ~(b.size / 2 ** 32 - 1) >>> 0 : 0xffff_ffff);
  }

  /**
   * `multifunction=on`: the header type says more functions share the slot, so firmware and
   * the OS scan functions 1-7 (QEMU's pci_init_multifunction). Before reset is first taken.
   */
  markMultifunction(): void {
    this.config.set(PciCfg.HEADER_TYPE, 1, this.config.read(PciCfg.HEADER_TYPE, 1) | PCI_HEADER_TYPE_MULTI_FUNCTION);
    this.config.captureReset();
  }

  /** Bus number now (the bus's live number). */
  get busNumber(): number {
    return this.bus?.number ?? 0;
  }

  /** Requester ID now: the current bus number and the devfn (QEMU's pci_requester_id at DMA time). */
  get requesterId(): number {
    return pciRid(this.busNumber, this.devfn);
  }

  /** COMMAND.MEMORY: BARs decode. */
  get memoryEnabled(): boolean {
    return (this.config.read(PciCfg.COMMAND, 2) & PCI_COMMAND_MEMORY) !== 0;
  }

  /** COMMAND.MASTER: the function may issue DMA. */
  get busMasterEnabled(): boolean {
    return (this.config.read(PciCfg.COMMAND, 2) & PCI_COMMAND_MASTER) !== 0;
  }

  /**
   * The address BAR `b` decodes at, or {@link BAR_UNMAPPED}: memory decoding off, or an address
   * whose range wraps or (for a 32-bit BAR) passes 4 GiB — QEMU's pci_bar_address rules.
   */
  barAddress(b: PciBar): number {
    if (!this.memoryEnabled) return BAR_UNMAPPED;
    const off = PciCfg.BAR0 + 4 * b.index;
    const lo = this.config.read(off, 4) & ~(b.size - 1) & 0xffff_fff0;
    const hi = b.is64 ? this.config.read(off + 4, 4) : 0;
    const addr = hi * 2 ** 32 + (lo >>> 0);
    const last = addr + b.size - 1;
    if (!b.is64 && last > 0xffff_ffff) return BAR_UNMAPPED;
    if (last >= 2 ** 64 - 1) return BAR_UNMAPPED;
    return addr;
  }

  /** Config read from ECAM (`offset` inside the function's space, aligned to `size`). */
  configRead(offset: number, size: 1 | 2 | 4): number {
    return this.config.read(offset, size);
  }

  /** Config write from ECAM. */
  configWrite(offset: number, size: 1 | 2 | 4, value: number): void {
    this.config.write(offset, size, value);
  }

  /** Device reset (QEMU's pci_device_reset): config registers to their reset values, then the device's own state. */
  reset(): void {
    this.config.reset();
    this.resetDevice();
  }

  /** The device's own state beyond config space (none by default). */
  protected resetDevice(): void {}

  /** Config space and the device's own state (a snapshot of the function). */
  save(): PciFunctionState {
    return { config: this.config.bytes.slice(), device: this.saveDevice() };
  }

  /** Load a state saved by {@link save} from a function of the same type. */
  restore(s: PciFunctionState): void {
    if (s.config.length !== this.config.bytes.length) throw new Error(`${this.type}: saved config space is ${s.config.length} bytes, not ${this.config.bytes.length}`);
    this.config.bytes.set(s.config);
    this.restoreDevice(s.device);
  }

  /** The device's own state beyond config space (none by default). */
  protected saveDevice(): PlainValue {
    return undefined;
  }

  /** Load what {@link saveDevice} returned. */
  protected restoreDevice(_saved: PlainValue): void {}
}

/** A PCI bus: 32 slots × 8 functions. */
export class PciBus {
  readonly functions: (PciFunction | undefined)[] = new Array<PciFunction | undefined>(256).fill(undefined);
  /** The bridges among {@link functions}, in devfn order (kept by {@link plug}: every ECAM access's bus lookup walks them). */
  private readonly bridgeList: PciBridge[] = [];

  constructor(
    readonly id: string,
    /** Fixed number of a root bus; undefined behind a bridge (the bridge's SECONDARY_BUS). */
    private readonly rootNumber: number | undefined,
    /** The bridge that opens this bus (undefined for a root bus). */
    readonly parentBridge: PciBridge | undefined,
  ) {}

  /** Whether this is a root bus (pcie.0 or a pxb-pcie's). */
  get isRoot(): boolean {
    return this.parentBridge === undefined;
  }

  /** The bus number now. */
  get number(): number {
    return this.rootNumber ?? this.parentBridge!.secondaryBus;
  }

  /** The root bus above this bus (itself for a root bus). */
  get root(): PciBus {
    return this.parentBridge?.bus?.root ?? this;
  }

  /** Put `fn` at `devfn`. */
  plug(fn: PciFunction, devfn: number): void {
    if (this.functions[devfn]) throw new Error(`${this.id}: devfn ${devfn} is taken`);
    this.functions[devfn] = fn;
    if (fn instanceof PciBridge) {
      let i = this.bridgeList.length;
      while (i > 0 && this.bridgeList[i - 1]!.devfn > devfn) i--;
      this.bridgeList.splice(i, 0, fn);
    }
    fn.bus = this;
    fn.devfn = devfn;
    // QEMU's slot is occupied (and powered) by what sits at devfn 0 (docs/reference/pci.md §4).
    if (devfn === 0) this.parentBridge?.slotOccupied();
  }

  /**
   * Whether the functions on this bus answer config cycles: a root bus always; behind a root
   * port only when something occupies devfn 0, else the slot's power controller is off and every
   * function on the bus reads all-ones (QEMU's pcie_cap_update_power).
   */
  get powered(): boolean {
    return this.parentBridge === undefined || this.functions[0] !== undefined;
  }

  /** Bridges on this bus, in devfn order. */
  bridges(): readonly PciBridge[] {
    return this.bridgeList;
  }
}

/** A PCI-to-PCI bridge function (pcie-root-port): a type 1 header and the bus it opens. */
export class PciBridge extends PciFunction {
  readonly secondary: PciBus;

  constructor(type: string, id: string, registers: readonly ConfigRegister[], bars: readonly PciBar[]) {
    super(type, id, registers, bars, true);
    this.secondary = new PciBus(id, undefined, this);
  }

  /** A device was cold-plugged behind the bridge: link up, slot powered, presence detected (part of the reset state). */
  slotOccupied(): void {
    this.config.set(0x66, 2, OCCUPIED_SLOT.lnksta);
    this.config.set(0x6c, 2, OCCUPIED_SLOT.sltctl);
    this.config.set(0x6e, 2, OCCUPIED_SLOT.sltsta);
    this.config.captureReset();
  }

  get secondaryBus(): number {
    return this.config.read(PciCfg.SECONDARY_BUS, 1);
  }

  get subordinateBus(): number {
    return this.config.read(PciCfg.SUBORDINATE_BUS, 1);
  }

  /** The non-prefetchable memory window [base, limit], or undefined when closed (base > limit). */
  memoryWindow(): { base: number; limit: number } | undefined {
    const base = (this.config.read(PciCfg.MEMORY_BASE, 2) & PCI_MEMORY_RANGE_MASK) * 0x1_0000;
    const limit = (this.config.read(PciCfg.MEMORY_LIMIT, 2) & PCI_MEMORY_RANGE_MASK) * 0x1_0000 + 0xf_ffff;
    return base <= limit ? { base, limit } : undefined;
  }

  /** The prefetchable window (64-bit: the upper-32 registers count), or undefined when closed. */
  prefetchWindow(): { base: number; limit: number } | undefined {
    const base = (this.config.read(PciCfg.PREF_MEMORY_BASE, 2) & PCI_MEMORY_RANGE_MASK) * 0x1_0000 + this.config.read(PciCfg.PREF_BASE_UPPER32, 4) * 2 ** 32;
    const limit = (this.config.read(PciCfg.PREF_MEMORY_LIMIT, 2) & PCI_MEMORY_RANGE_MASK) * 0x1_0000 + 0xf_ffff + this.config.read(PciCfg.PREF_LIMIT_UPPER32, 4) * 2 ** 32;
    return base <= limit ? { base, limit } : undefined;
  }

  /** Whether the bridge forwards a memory access of [addr, addr + size) to its secondary bus. */
  forwards(addr: number, size: number): boolean {
    if (!this.memoryEnabled) return false;
    const last = addr + size - 1;
    const m = this.memoryWindow();
    if (m && addr >= m.base && last <= m.limit) return true;
    const p = this.prefetchWindow();
    return p !== undefined && addr >= p.base && last <= p.limit;
  }
}
