/**
 * The firmware's PCI step (as EDK2's PCI bus driver on QEMU's virt does it) before the OS runs:
 * find the root buses (bus 0 and, before any bridge is numbered, every other bus number with a
 * function on it: the pxb-pcie expanders), number bridges depth-first in devfn order — each
 * gets the next free number and its subordinate is the last number used below it — size every
 * BAR, give bridges windows that cover what is behind them and assign BARs from the host
 * bridge's windows (32-bit BARs from the 32-bit window, 64-bit ones from the 64-bit window),
 * then enable memory decoding and bus mastering (docs/reference/pci.md §7).
 */
import {
  PCI_BRIDGE_MEM_GRANULE,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_HEADER_TYPE_BRIDGE,
  PCI_HEADER_TYPE_MULTI_FUNCTION,
  PciCfg,
} from '../arch/pci/config.js';
import { EcamAccess } from './pci-config.js';
import type { GuestBus } from './platform.js';

/** What the firmware is told about the host bridge (its device tree). */
export interface PciFirmwareConfig {
  readonly ecamBase: number;
  readonly ecamBuses: number;
  readonly mmio32: { readonly base: number; readonly size: number };
  readonly mmio64: { readonly base: number; readonly size: number } | undefined;
}

/** A BAR the firmware sized. */
interface SizedBar {
  readonly reg: number;
  readonly size: number;
  readonly is64: boolean;
  readonly wide: boolean;
}

/** A function found, with its BARs and (for a bridge) what lies behind it. */
interface FwFunction {
  readonly bus: number;
  readonly devfn: number;
  readonly bars: SizedBar[];
  readonly secondary?: FwBus;
}

interface FwBus {
  readonly number: number;
  readonly functions: FwFunction[];
}

/** What the firmware did: the buses by number and the bridges' ranges. */
export interface PciFirmwareResult {
  /** Root bus numbers found. */
  readonly roots: number[];
  /** Bridges as `bus:devfn → [secondary, subordinate]`. */
  readonly bridges: { bus: number; devfn: number; secondary: number; subordinate: number }[];
  /** BARs placed: function, BAR register offset, address, size. */
  readonly bars: { bus: number; devfn: number; reg: number; addr: number; size: number }[];
  /** BARs that did not fit their window. */
  readonly unassigned: number;
}

/** Run the firmware's PCI enumeration and resource assignment. */
export function runPciFirmware(bus: GuestBus, cfg: PciFirmwareConfig): PciFirmwareResult {
  const ecam = new EcamAccess(bus, cfg.ecamBase, cfg.ecamBuses);
  const result: PciFirmwareResult = { roots: [0], bridges: [], bars: [], unassigned: 0 };
  for (let nr = 1; nr < cfg.ecamBuses; nr++) {
    for (let dev = 0; dev < 32; dev++) {
      if (ecam.vendor(nr, dev << 3) !== 0xffff) {
        result.roots.push(nr);
        break;
      }
    }
  }
  const trees: FwBus[] = [];
  const used = new Set(result.roots);
  for (const root of result.roots) {
    const next = { n: root };
    trees.push(scanBus(ecam, root, next, used, result));
  }
  const win32 = { next: cfg.mmio32.base, end: cfg.mmio32.base + cfg.mmio32.size };
  const win64 = cfg.mmio64 ? { next: cfg.mmio64.base, end: cfg.mmio64.base + cfg.mmio64.size } : win32;
  for (const t of trees) assignBus(ecam, t, win32, win64, result);
  return result;
}

function scanBus(ecam: EcamAccess, nr: number, next: { n: number }, used: Set<number>, result: PciFirmwareResult): FwBus {
  const bus: FwBus = { number: nr, functions: [] };
  for (let dev = 0; dev < 32; dev++) {
    let fns = 1;
    for (let fn = 0; fn < fns; fn++) {
      const devfn = (dev << 3) | fn;
      if (ecam.vendor(nr, devfn) === 0xffff) continue;
      const ht = ecam.read(nr, devfn, PciCfg.HEADER_TYPE, 1);
      if (fn === 0 && ht & PCI_HEADER_TYPE_MULTI_FUNCTION) fns = 8;
      const bridge = (ht & 0x7f) === PCI_HEADER_TYPE_BRIDGE;
      const bars = sizeBars(ecam, nr, devfn, bridge ? 2 : 6);
      if (!bridge) {
        bus.functions.push({ bus: nr, devfn, bars });
        continue;
      }
      // Depth-first: this bridge takes the next number not used by a root bus; all below are its.
      do next.n++;
      while (used.has(next.n) && next.n < 255);
      const sec = next.n;
      used.add(sec);
      ecam.write32(nr, devfn, PciCfg.PRIMARY_BUS, nr | (sec << 8) | (0xff << 16));
      const secondary = scanBus(ecam, sec, next, used, result);
      ecam.write32(nr, devfn, PciCfg.PRIMARY_BUS, nr | (sec << 8) | (next.n << 16));
      result.bridges.push({ bus: nr, devfn, secondary: sec, subordinate: next.n });
      bus.functions.push({ bus: nr, devfn, bars, secondary });
    }
  }
  return bus;
}

/** The function's memory BARs; a 64-bit prefetchable one goes to the 64-bit window, everything else below 4 GiB. */
function sizeBars(ecam: EcamAccess, bus: number, devfn: number, count: number): SizedBar[] {
  return ecam.probeBars(bus, devfn, count).map((b) => ({ reg: b.reg, size: b.size, is64: b.is64, wide: b.is64 && b.prefetch }));
}

interface Cursor {
  next: number;
  end: number;
}

const alignUp = (v: number, a: number) => Math.ceil(v / a) * a;

/** Bytes a bus needs in each window (bridges' windows rounded to 1 MiB), and its largest alignment. */
function need(bus: FwBus): { n32: number; n64: number } {
  let n32 = 0;
  let n64 = 0;
  for (const f of bus.functions) {
    for (const b of f.bars) {
      if (b.wide) n64 = alignUp(n64, b.size) + b.size;
      else n32 = alignUp(n32, b.size) + b.size;
    }
    if (f.secondary) {
      const s = need(f.secondary);
      n32 = alignUp(n32, PCI_BRIDGE_MEM_GRANULE) + alignUp(s.n32, PCI_BRIDGE_MEM_GRANULE);
      n64 = alignUp(n64, PCI_BRIDGE_MEM_GRANULE) + alignUp(s.n64, PCI_BRIDGE_MEM_GRANULE);
    }
  }
  return { n32, n64 };
}

function take(c: Cursor, size: number, align: number): number | undefined {
  const at = alignUp(c.next, align);
  if (at + size > c.end) return undefined;
  c.next = at + size;
  return at;
}

/** Place the bus's BARs and bridge windows (largest first), then enable decoding and mastering. */
function assignBus(ecam: EcamAccess, bus: FwBus, w32: Cursor, w64: Cursor, result: PciFirmwareResult): void {
  const bars = bus.functions.flatMap((f) => f.bars.map((b) => ({ f, b }))).sort((x, y) => y.b.size - x.b.size);
  for (const { f, b } of bars) {
    const at = take(b.wide ? w64 : w32, b.size, b.size);
    if (at === undefined) {
      (result as { unassigned: number }).unassigned++;
      continue;
    }
    ecam.write32(f.bus, f.devfn, b.reg, at % 2 ** 32);
    if (b.is64) ecam.write32(f.bus, f.devfn, b.reg + 4, Math.floor(at / 2 ** 32));
    result.bars.push({ bus: f.bus, devfn: f.devfn, reg: b.reg, addr: at, size: b.size });
  }
  for (const f of bus.functions) {
    if (f.secondary) {
      const n = need(f.secondary);
      const m32 = n.n32 > 0 ? take(w32, alignUp(n.n32, PCI_BRIDGE_MEM_GRANULE), PCI_BRIDGE_MEM_GRANULE) : undefined;
      const m64 = n.n64 > 0 ? take(w64, alignUp(n.n64, PCI_BRIDGE_MEM_GRANULE), PCI_BRIDGE_MEM_GRANULE) : undefined;
      // Closed windows stay base > limit; an open one is [base, base + size) in 1 MiB units.
      if (m32 !== undefined) {
        const lim = m32 + alignUp(n.n32, PCI_BRIDGE_MEM_GRANULE) - 1;
        ecam.write32(f.bus, f.devfn, PciCfg.MEMORY_BASE, ((m32 >>> 16) & 0xfff0) | (((lim >>> 16) & 0xfff0) << 16));
        assignBus(ecam, f.secondary, { next: m32, end: lim + 1 }, m64 === undefined ? { next: 0, end: 0 } : { next: m64, end: m64 + alignUp(n.n64, PCI_BRIDGE_MEM_GRANULE) }, result);
      } else if (m64 !== undefined) {
        assignBus(ecam, f.secondary, { next: 0, end: 0 }, { next: m64, end: m64 + alignUp(n.n64, PCI_BRIDGE_MEM_GRANULE) }, result);
      } else {
        assignBus(ecam, f.secondary, { next: 0, end: 0 }, { next: 0, end: 0 }, result);
      }
      if (m64 !== undefined) {
        const lim = m64 + alignUp(n.n64, PCI_BRIDGE_MEM_GRANULE) - 1;
        ecam.write32(f.bus, f.devfn, PciCfg.PREF_MEMORY_BASE, (Math.floor(m64 / 0x1_0000) & 0xfff0) | ((Math.floor(lim / 0x1_0000) & 0xfff0) << 16));
        ecam.write32(f.bus, f.devfn, PciCfg.PREF_BASE_UPPER32, Math.floor(m64 / 2 ** 32));
        ecam.write32(f.bus, f.devfn, PciCfg.PREF_LIMIT_UPPER32, Math.floor(lim / 2 ** 32));
      }
    }
    ecam.setCommand(f.bus, f.devfn, ecam.command(f.bus, f.devfn) | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
  }
}
