/**
 * The guest kernel's PCI scan, as Linux does it on an ACPI arm64 machine: the ECAM windows come
 * from the MCFG, the host bridges and their bus ranges from the DSDT (PNP0A08 `_BBN` and the
 * `_CRS` bus-number window); each root bus is walked through ECAM, descending through bridges
 * into their secondary buses, and every function is reported with its BDF, IDs, class and the
 * BARs firmware assigned (sized with decoding off, as pci_read_bases does).
 */
import { formatBdf, PCI_HEADER_TYPE_BRIDGE, PCI_HEADER_TYPE_MULTI_FUNCTION, PciCfg } from '../arch/pci/config.js';
import { parseDsdtPciRootBridges, parseMcfg } from './acpi-parse.js';
import { EcamAccess } from './pci-config.js';
import type { GuestBus } from './platform.js';

/** A memory BAR as the scan found it. */
export interface GuestPciBar {
  readonly index: number;
  readonly addr: number;
  readonly size: number;
  readonly is64: boolean;
}

/** A function the scan found. */
export interface GuestPciDevice {
  readonly bus: number;
  readonly devfn: number;
  /** `BB:DD.F`. */
  readonly bdf: string;
  readonly vendor: number;
  readonly device: number;
  readonly classCode: number;
  readonly bridge: boolean;
  readonly bars: GuestPciBar[];
}

/** Scan every root bridge of the DSDT through the MCFG's ECAM window. */
export function scanPci(bus: GuestBus, tables: { mcfg: Uint8Array; dsdt: Uint8Array }): GuestPciDevice[] {
  const alloc = parseMcfg(tables.mcfg).find((a) => a.segment === 0);
  if (!alloc) return [];
  const ecam = new EcamAccess(bus, alloc.base, alloc.endBus + 1);
  const out: GuestPciDevice[] = [];
  const roots = parseDsdtPciRootBridges(tables.dsdt).map((r) => r.busNr).sort((a, b) => a - b);
  for (const nr of roots) scanBus(ecam, nr, out, 0);
  return out;
}

function scanBus(ecam: EcamAccess, nr: number, out: GuestPciDevice[], depth: number): void {
  if (depth > 32) return;
  for (let dev = 0; dev < 32; dev++) {
    let fns = 1;
    for (let fn = 0; fn < fns; fn++) {
      const devfn = (dev << 3) | fn;
      const id = ecam.read32(nr, devfn, PciCfg.VENDOR_ID);
      if ((id & 0xffff) === 0xffff) continue;
      const ht = ecam.read(nr, devfn, PciCfg.HEADER_TYPE, 1);
      if (fn === 0 && ht & PCI_HEADER_TYPE_MULTI_FUNCTION) fns = 8;
      const bridge = (ht & 0x7f) === PCI_HEADER_TYPE_BRIDGE;
      out.push({
        bus: nr,
        devfn,
        bdf: formatBdf(nr, devfn),
        vendor: id & 0xffff,
        device: id >>> 16,
        classCode: ecam.read32(nr, devfn, PciCfg.REVISION) >>> 8,
        bridge,
        bars: readBars(ecam, nr, devfn, bridge ? 2 : 6),
      });
      if (bridge) {
        const sec = ecam.read(nr, devfn, PciCfg.SECONDARY_BUS, 1);
        if (sec > nr) scanBus(ecam, sec, out, depth + 1);
      }
    }
  }
}

function readBars(ecam: EcamAccess, nr: number, devfn: number, count: number): GuestPciBar[] {
  return ecam.probeBars(nr, devfn, count).map((b) => ({ index: b.index, addr: b.addr, size: b.size, is64: b.is64 }));
}
