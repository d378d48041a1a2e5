/**
 * The virt machine's generic PCIe host bridge (QEMU's gpex) as cmdqv models it: the ECAM window
 * that reaches every function's config space by bus number, the root buses (pcie.0 and the
 * pxb-pcie expanders), and BAR decoding — a BAR is visible to the CPU when its function decodes
 * memory, every bridge above it forwards the range, and it lies in one of the host bridge's
 * MMIO windows (docs/reference/pci.md §1, §4).
 */
import { ECAM_BUS_SHIFT, ECAM_DEVFN_SHIFT } from '../../arch/pci/config.js';
import type { ModelLog } from '../../kit/log.js';
import { MemoryRegion, type AccessRules } from '../../kit/memory-region.js';
import type { Tracer } from '../../kit/trace.js';
import { BAR_UNMAPPED, PciBridge, PciBus, type PciBar, type PciFunction, type PciFunctionState } from './device.js';
import * as T from './trace-events.js';

/** ECAM takes 1-, 2- and 4-byte accesses aligned to their size (QEMU splits an 8-byte one; cmdqv does not). */
const ECAM_RULES: AccessRules = { sizes: [1, 2, 4], unaligned: false };

/** The register offset inside a function's 4 KiB of ECAM. */
const ECAM_REG_MASK = 0xfff;

/** A CPU-visible MMIO window of the host bridge (PCI address = CPU address on virt). */
export interface PciWindow {
  readonly base: number;
  readonly size: number;
}

/** Where the host bridge sits in the guest-physical map. */
export interface PciHostLayout {
  readonly ecamBase: number;
  /** ECAM bytes: 16 MiB (16 buses, low ECAM) or 256 MiB (256 buses, high ECAM). */
  readonly ecamSize: number;
  readonly mmio: PciWindow;
  readonly pio: PciWindow;
  /** The 64-bit window (absent with highmem-mmio off or when it does not fit). */
  readonly highMmio: PciWindow | undefined;
}

/** The host bridge and its PCI hierarchy. */
export class PciHost {
  /** Root buses: pcie.0 first, then each pxb-pcie's in creation order. */
  readonly roots: PciBus[] = [];
  readonly ecam: MemoryRegion;
  /** Where each BAR is mapped now. */
  private readonly mapped = new Map<PciBar, number>();

  constructor(
    readonly layout: PciHostLayout,
    private readonly system: MemoryRegion,
    private readonly log: ModelLog,
    private readonly tracer: Tracer,
  ) {
    this.roots.push(new PciBus('pcie.0', 0, undefined));
    this.ecam = MemoryRegion.mmio(
      'pcie-ecam',
      layout.ecamSize,
      {
        read: (off, size) => this.configRead(off, size),
        write: (off, size, v) => this.configWrite(off, size, v),
        read64: () => 0n,
        write64: () => {},
      },
      ECAM_RULES,
    );
  }

  /** Add a pxb-pcie's root bus numbered `busNr`. */
  addRootBus(id: string, busNr: number): PciBus {
    const b = new PciBus(id, busNr, undefined);
    this.roots.push(b);
    return b;
  }

  /** Every bus, root buses first and each bridge's secondary bus after its parent, in devfn order. */
  allBuses(): PciBus[] {
    const out: PciBus[] = [];
    const walk = (b: PciBus) => {
      out.push(b);
      for (const br of b.bridges()) walk(br.secondary);
    };
    for (const r of this.roots) walk(r);
    return out;
  }

  /**
   * The bus config cycles for number `nr` reach now (QEMU's pci_find_bus_nr): a root bus with
   * that number, else the bus behind the bridge whose secondary..subordinate range holds it.
   */
  findBus(nr: number): PciBus | undefined {
    for (const r of this.roots) if (r.number === nr) return r;
    for (const r of this.roots) {
      const b = this.findBelow(r, nr);
      if (b) return b;
    }
    return undefined;
  }

  private findBelow(bus: PciBus, nr: number): PciBus | undefined {
    for (const br of bus.bridges()) {
      const sec = br.secondaryBus;
      // A bridge with secondary 0 has not been numbered: nothing behind it answers.
      if (sec === 0 || nr < sec || nr > br.subordinateBus) continue;
      return sec === nr ? br.secondary : this.findBelow(br.secondary, nr);
    }
    return undefined;
  }

  /** The function an ECAM offset addresses now (its register offset is `off & 0xfff`). */
  private decode(off: number): PciFunction | undefined {
    const bus = this.findBus(Math.floor(off / 2 ** ECAM_BUS_SHIFT));
    return bus?.powered ? bus.functions[(off >>> ECAM_DEVFN_SHIFT) & 0xff] : undefined;
  }

  private configRead(off: number, size: 1 | 2 | 4): number {
    const fn = this.decode(off);
    const reg = off & ECAM_REG_MASK;
    // No function, or the extended space of a conventional one: all-ones (a master abort).
    if (!fn || reg + size > fn.config.size) return size === 4 ? 0xffff_ffff : (1 << (8 * size)) - 1;
    const v = fn.configRead(reg, size);
    this.tracer.emit(T.T_PCI_CFG_READ, fn.busNumber, fn.devfn, reg, v, size);
    return v;
  }

  private configWrite(off: number, size: 1 | 2 | 4, v: number): void {
    const fn = this.decode(off);
    const reg = off & ECAM_REG_MASK;
    if (!fn || reg + size > fn.config.size) return;
    this.tracer.emit(T.T_PCI_CFG_WRITE, fn.busNumber, fn.devfn, reg, v, size);
    fn.configWrite(reg, size, v);
    // COMMAND, BARs and a bridge's bus numbers and windows move decoding (QEMU's pci_update_mappings).
    if (reg < 0x40) this.updateMappings();
  }

  /** Re-place every BAR whose decode address changed. Config writes are rare, so this walks everything. */
  updateMappings(): void {
    for (const bus of this.allBuses()) {
      for (const fn of bus.functions) {
        if (!fn) continue;
        for (const bar of fn.bars) {
          const want = this.visibleAt(fn, bar);
          const now = this.mapped.get(bar) ?? BAR_UNMAPPED;
          if (want === now) continue;
          if (now !== BAR_UNMAPPED) this.system.removeSubregion(bar.region);
          if (want !== BAR_UNMAPPED) this.system.addSubregion(want, bar.region, 1);
          this.mapped.set(bar, want);
          this.tracer.emit(T.T_PCI_BAR_MAP, fn.busNumber, fn.devfn, bar.index, want);
        }
      }
    }
  }

  /** Where the CPU sees `bar` now, or BAR_UNMAPPED. */
  private visibleAt(fn: PciFunction, bar: PciBar): number {
    const addr = fn.barAddress(bar);
    if (addr === BAR_UNMAPPED) return BAR_UNMAPPED;
    for (let b = fn.bus; b?.parentBridge; b = b.parentBridge.bus) {
      if (!b.parentBridge.forwards(addr, bar.size)) return BAR_UNMAPPED;
    }
    const inside = (w: PciWindow | undefined) => w !== undefined && addr >= w.base && addr + bar.size <= w.base + w.size;
    if (!inside(this.layout.mmio) && !inside(this.layout.highMmio)) {
      this.log.guestError('gpex', `BAR${bar.index} of ${fn.type} at 0x${addr.toString(16)} lies outside the host bridge's MMIO windows (not decoded)`);
      return BAR_UNMAPPED;
    }
    return addr;
  }

  /** Where `bar` is mapped now (BAR_UNMAPPED when not). */
  barMappedAt(bar: PciBar): number {
    return this.mapped.get(bar) ?? BAR_UNMAPPED;
  }

  /** Every function's state, in {@link allBuses} and devfn order (a snapshot). */
  save(): PciFunctionState[] {
    return this.functions().map((fn) => fn.save());
  }

  /**
   * Load states saved by {@link save} on the same topology, then place the BARs where the
   * loaded registers decode them.
   * @throws Error when the number of functions differs
   */
  restore(saved: readonly PciFunctionState[]): void {
    const fns = this.functions();
    if (fns.length !== saved.length) throw new Error(`PCI: the image has ${saved.length} functions, the machine ${fns.length}`);
    fns.forEach((fn, i) => fn.restore(saved[i]!));
    this.updateMappings();
  }

  /** Function `i` in {@link save} order (a restore checks a saved state against it). */
  functionAt(i: number): PciFunction {
    const fn = this.functions()[i];
    if (!fn) throw new RangeError(`PCI: no function ${i}`);
    return fn;
  }

  /** Every function in {@link allBuses} and devfn order. */
  private functions(): PciFunction[] {
    const out: PciFunction[] = [];
    for (const bus of this.allBuses()) for (const fn of bus.functions) if (fn) out.push(fn);
    return out;
  }

  /** System reset: every function's config returns to its reset values, every BAR unmapped. */
  reset(): void {
    for (const bus of this.allBuses()) for (const fn of bus.functions) fn?.reset();
    this.updateMappings();
  }
}

export { PciBridge };
