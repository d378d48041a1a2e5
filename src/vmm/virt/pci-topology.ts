/**
 * Where each PCI device of the command line sits: its bus, slot and function, and the bus
 * numbers firmware gives the buses behind root ports. Pure placement from the parsed options;
 * config space (ECAM) is not modelled here.
 *
 * Rules (QEMU 11.1's, checked against it: docs/reference/pci.md §4):
 * - pcie.0 is bus 0; its devfn 0 holds the host bridge's own function (gpex-root). A pxb-pcie
 *   is a device on a root bus and opens a root bus numbered `bus_nr`; only bridges (root
 *   ports) plug into that bus. A root port's secondary bus takes any device, root ports too.
 * - Without `bus=`, a device goes to the most recently created pxb-pcie bus, else pcie.0 (QEMU
 *   searches the bus tree newest host first and never finds a PCI bus full).
 * - Without `addr=`, a device takes function 0 of the first slot whose function 0 is free; with
 *   `addr=slot[.fn]` it takes that one, or fails as QEMU does when it is taken. Functions other
 *   than 0 need function 0 (if present) to be `multifunction=on`, and a single-function
 *   function 0 needs its other functions empty.
 * - A PCIe function (root port, vfio-pci) behind a root port at a slot other than 0 is
 *   accepted with QEMU's warning; conventional functions (iommu-testdev) are not warned about.
 * - Bus numbers behind root ports are assigned as firmware enumerates: root buses in ascending
 *   number, each depth-first in devfn order, each bridge the next free number; its subordinate
 *   is the last number given out below it. The root bus's range then ends at the last number
 *   given out (the IORT's RID range for it). A pxb-pcie whose number an earlier root bus has
 *   (bus_nr 0) is hidden behind it: nothing below it is numbered.
 */

import { OptionError } from './options.js';

/** A PCI device of the command line, in creation order. */
export interface PciDeviceSpec {
  /** The `-device` argument as written (QEMU's errors name it). */
  readonly arg?: string;
  readonly driver: string;
  readonly id: string | undefined;
  /** Parent bus id (`bus=`); undefined: QEMU's choice (see the file comment). */
  readonly bus: string | undefined;
  /** `addr=` as devfn, or undefined for automatic placement. */
  readonly devfn: number | undefined;
  /** `multifunction=on`. */
  readonly multifunction?: boolean;
  /** A PCI Express function on a PCIe bus (root ports, vfio-pci), not a conventional one. */
  readonly express?: boolean;
  /** The bus it opens: a pxb-pcie's root bus (with `busNr`) or a root port's secondary bus. */
  readonly opens?: { readonly kind: 'root'; readonly busNr: number } | { readonly kind: 'port' };
}

/** A bus of the machine once placed. */
export interface PlacedBus {
  readonly id: string;
  /** Bus number (a root bus's own, or the secondary bus number a root port got; 0 if none). */
  busNr: number;
  /** Id of the root bus this bus lies under (itself for a root bus). */
  readonly root: string;
  /** Highest bus number under this bus (= busNr without bridges below). */
  subordinate: number;
}

/** A device once placed. */
export interface PlacedDevice {
  readonly bus: string;
  readonly devfn: number;
}

/** The result: buses, each device's bus and devfn (index = creation order), QEMU's warnings. */
export interface PciPlacement {
  readonly buses: PlacedBus[];
  readonly devices: PlacedDevice[];
  /** Warnings QEMU prints for the line (without the `qemu-system-aarch64: ` prefix). */
  readonly warnings: string[];
}

/** `addr=` text to devfn: `slot[.fn]`, each decimal or 0x-hex. */
export function parsePciAddr(v: string, driver: string): number {
  const m = /^(0x[0-9a-f]+|\d+)(?:\.(0x[0-9a-f]+|\d+))?$/i.exec(v);
  const slot = m ? Number(m[1]) : Number.NaN;
  const fn = m?.[2] !== undefined ? Number(m[2]) : 0;
  if (!m || slot > 31 || fn > 7) throw new OptionError(`Property '${driver}.addr' doesn't take value '${v}'`);
  return (slot << 3) | fn;
}

/** What occupies a devfn: QEMU names it `type,id=ID` (`(null)` without an id). */
interface Occupant {
  readonly name: string;
  readonly multifunction: boolean;
}

/** A bus while placing: its functions, and what it is. */
interface BusState {
  readonly placed: PlacedBus;
  readonly kind: 'pcie.0' | 'pxb' | 'port';
  readonly functions: Map<number, Occupant>;
  /** Child buses in creation order (a root port's secondary bus, a pxb-pcie's root bus). */
  readonly children: { devfn: number; bus: BusState }[];
}

const hex = (n: number) => n.toString(16);

/**
 * Place every PCI device and number the buses.
 * @throws OptionError with QEMU's text for an unknown bus, a taken slot, an endpoint on a
 * pxb-pcie bus, a bad multifunction slot or a pxb-pcie bus number in use
 */
export function placePciDevices(specs: readonly PciDeviceSpec[]): PciPlacement {
  const pcie0: BusState = { placed: { id: 'pcie.0', busNr: 0, root: 'pcie.0', subordinate: 0 }, kind: 'pcie.0', functions: new Map([[0, { name: 'gpex-root,id=(null)', multifunction: false }]]), children: [] };
  const buses = new Map<string, BusState>([['pcie.0', pcie0]]);
  const pxbs: BusState[] = [];
  const devices: PlacedDevice[] = [];
  const warnings: string[] = [];
  for (const d of specs) {
    // QEMU's placement errors name the -device option.
    const ctx = d.arg === undefined ? '' : `-device ${d.arg}: `;
    const fail = (msg: string) => new OptionError(`${ctx}${msg}`);
    const parent = d.bus === undefined ? (pxbs[pxbs.length - 1] ?? pcie0) : buses.get(d.bus);
    if (!parent) throw fail(`Bus '${d.bus}' not found`);
    if (parent.kind === 'pxb' && d.opens?.kind !== 'port') throw fail('PCI: Only PCI/PCIe bridges can be plugged into pxb-pcie');
    const devfn = pickDevfn(parent, d, fail);
    const slot = devfn >> 3;
    const fn = devfn & 7;
    const fn0 = parent.functions.get(slot << 3);
    if (fn !== 0 && fn0 && !fn0.multifunction) throw fail(`PCI: single function device can't be populated in function ${hex(slot)}.${hex(fn)}`);
    if (fn === 0 && !d.multifunction) {
      for (let f = 1; f < 8; f++) {
        if (parent.functions.has((slot << 3) | f)) throw fail(`PCI: ${hex(slot)}.0 indicates single function, but ${hex(slot)}.${hex(f)} is already populated.`);
      }
    }
    if (d.express && parent.kind === 'port' && slot !== 0) {
      warnings.push(`${ctx}warning: PCI: slot ${slot} is not valid for ${d.driver}, parent device only allows plugging into slot 0.`);
    }
    if (d.opens?.kind === 'root') {
      if (parent.kind === 'port') throw fail('PXB devices can be attached only to root bus');
      // The parent root bus's child buses (root ports' secondary buses read 0 until firmware numbers them).
      if (parent.children.some((c) => c.bus.placed.busNr === (d.opens as { busNr: number }).busNr)) {
        throw fail(`Bus ${d.opens.busNr} is already in use`);
      }
    }
    parent.functions.set(devfn, { name: `${d.driver},id=${d.id ?? '(null)'}`, multifunction: d.multifunction ?? false });
    devices.push({ bus: parent.placed.id, devfn });
    if (d.opens && d.id !== undefined) {
      const root = d.opens.kind === 'root';
      const busNr = root ? (d.opens as { busNr: number }).busNr : 0;
      const child: BusState = {
        placed: { id: d.id, busNr, root: root ? d.id : parent.placed.root, subordinate: busNr },
        kind: root ? 'pxb' : 'port',
        functions: new Map(),
        children: [],
      };
      buses.set(d.id, child);
      parent.children.push({ devfn, bus: child });
      if (root) pxbs.push(child);
    }
  }
  numberBuses(pcie0, pxbs);
  return { buses: [...buses.values()].map((b) => b.placed), devices, warnings };
}

/** The devfn a device takes: its `addr=`, or function 0 of the first slot whose function 0 is free. */
function pickDevfn(bus: BusState, d: PciDeviceSpec, fail: (msg: string) => OptionError): number {
  if (d.devfn !== undefined) {
    const used = bus.functions.get(d.devfn);
    if (used) throw fail(`PCI: slot ${d.devfn >> 3} function ${d.devfn & 7} not available for ${d.driver}, in use by ${used.name}`);
    return d.devfn;
  }
  for (let cand = 0; cand < 256; cand += 8) if (!bus.functions.has(cand)) return cand;
  throw fail(`PCI: no slot/function available for ${d.driver}, all in use or reserved`);
}

/** Firmware's numbering: root buses ascending, depth-first in devfn order, skipping root bus numbers. */
function numberBuses(pcie0: BusState, pxbs: readonly BusState[]): void {
  const roots = [pcie0, ...[...pxbs].sort((a, b) => a.placed.busNr - b.placed.busNr)];
  const used = new Set<number>();
  const visible = roots.filter((r) => !used.has(r.placed.busNr) && used.add(r.placed.busNr));
  let next = 0;
  const visit = (bus: BusState): void => {
    for (const c of [...bus.children].sort((a, b) => a.devfn - b.devfn)) {
      if (c.bus.kind !== 'port') continue;
      do next++;
      while (used.has(next) && next < 255);
      if (next > 255 || used.has(next)) throw new OptionError(`${c.bus.placed.id}: no bus number left behind ${bus.placed.root}`);
      used.add(next);
      c.bus.placed.busNr = next;
      visit(c.bus);
      c.bus.placed.subordinate = next;
    }
  };
  for (const r of visible) {
    next = r.placed.busNr;
    visit(r);
    r.placed.subordinate = next;
  }
}
