/**
 * Where each PCI device of the command line sits: its bus, slot and function, and the bus
 * numbers firmware gives the buses behind root ports. Pure placement from the parsed options;
 * config space (ECAM) is not modelled here.
 *
 * Rules (QEMU's and firmware's, docs/design.md "Command lines"):
 * - pcie.0 is bus 0; its devfn 0 holds the host bridge's own function (gpex-root), so automatic
 *   placement there starts at slot 1. A pxb-pcie is itself a device on its parent bus and opens
 *   a root bus numbered `bus_nr`, whose placement starts at slot 0.
 * - Without `addr=`, a device takes the first free slot (function 0) of its bus, in creation
 *   order; with `addr=slot[.fn]` it takes that one, or fails as QEMU does when it is taken.
 * - A pcie-root-port's secondary bus holds one device, at slot 0.
 * - Bus numbers behind root ports are assigned as firmware enumerates: per root bus,
 *   depth-first in devfn order, each root port gets the next free number after its root bus
 *   (pcie.0: 1, 2, …; a pxb with bus_nr N: N+1, …). The root bus's range then ends at the last
 *   number given out (the IORT's RID range for it).
 */

import { OptionError } from './options.js';

/** A PCI device of the command line, in creation order. */
export interface PciDeviceSpec {
  /** The `-device` argument as written (QEMU's errors name it). */
  readonly arg?: string;
  readonly driver: string;
  readonly id: string | undefined;
  /** Parent bus id (`bus=`), pcie.0 by default. */
  readonly bus: string;
  /** `addr=` as devfn, or undefined for automatic placement. */
  readonly devfn: number | undefined;
  /** The bus it opens: a pxb-pcie's root bus (with `busNr`) or a root port's secondary bus. */
  readonly opens?: { readonly kind: 'root'; readonly busNr: number } | { readonly kind: 'port' };
}

/** A bus of the machine once placed. */
export interface PlacedBus {
  readonly id: string;
  /** Bus number (a root bus's own, or the secondary bus number a root port got). */
  busNr: number;
  /** Id of the root bus this bus lies under (itself for a root bus). */
  readonly root: string;
  /** Highest bus number under this root bus (root buses only; = busNr without root ports). */
  subordinate: number;
}

/** The result: buses and each device's bus and devfn (index = creation order). */
export interface PciPlacement {
  readonly buses: PlacedBus[];
  readonly devices: { readonly bus: string; readonly devfn: number }[];
}

/** `addr=` text to devfn: `slot[.fn]`, each decimal or 0x-hex. */
export function parsePciAddr(v: string, driver: string): number {
  const m = /^(0x[0-9a-f]+|\d+)(?:\.(0x[0-9a-f]+|\d+))?$/i.exec(v);
  const slot = m ? Number(m[1]) : Number.NaN;
  const fn = m?.[2] !== undefined ? Number(m[2]) : 0;
  if (!m || slot > 31 || fn > 7) throw new OptionError(`Property '${driver}.addr' doesn't take value '${v}'`);
  return (slot << 3) | fn;
}

/**
 * Place every PCI device and number the buses.
 * @throws OptionError for an unknown bus, a taken slot, or a second device behind a root port
 */
export function placePciDevices(specs: readonly PciDeviceSpec[]): PciPlacement {
  const buses: PlacedBus[] = [{ id: 'pcie.0', busNr: 0, root: 'pcie.0', subordinate: 0 }];
  const used = new Map<string, Map<number, string>>([['pcie.0', new Map([[0, 'gpex-root']])]]);
  const ports = new Map<string, boolean>();
  const devices: { bus: string; devfn: number }[] = [];
  const portsOf = new Map<string, { devfn: number; bus: PlacedBus }[]>();
  for (const d of specs) {
    const parent = buses.find((b) => b.id === d.bus);
    const what = `${d.driver}${d.id ? `,id=${d.id}` : ''}`;
    // QEMU's placement errors name the -device option.
    const ctx = d.arg === undefined ? '' : `-device ${d.arg}: `;
    if (!parent) throw new OptionError(`${ctx}Bus '${d.bus}' not found`);
    if (d.opens?.kind === 'port' && parent.root !== parent.id) {
      throw new OptionError(`${what}: a root port plugs into a root bus (pcie.0 or a pxb-pcie), not '${parent.id}'`);
    }
    const taken = used.get(parent.id)!;
    let devfn = d.devfn;
    if (ports.get(parent.id) === true) {
      if (devfn !== undefined && devfn >> 3 !== 0) {
        throw new OptionError(`${ctx}PCI: slot ${devfn >> 3} is not valid for ${d.driver}, parent device only allows plugging into slot 0.`);
      }
      devfn ??= 0;
    }
    if (devfn === undefined) {
      for (let cand = 0; cand < 256; cand += 8) {
        if (!taken.has(cand)) {
          devfn = cand;
          break;
        }
      }
      if (devfn === undefined) throw new OptionError(`${ctx}PCI: no slot/function available for ${d.driver}, all in use or reserved`);
    } else if (taken.has(devfn)) {
      throw new OptionError(`${ctx}PCI: slot ${devfn >> 3} function ${devfn & 7} not available for ${d.driver}, in use by ${taken.get(devfn)}`);
    }
    taken.set(devfn, what);
    devices.push({ bus: parent.id, devfn });
    if (d.opens && d.id !== undefined) {
      const bus: PlacedBus = d.opens.kind === 'root'
        ? { id: d.id, busNr: d.opens.busNr, root: d.id, subordinate: d.opens.busNr }
        : { id: d.id, busNr: -1, root: parent.root, subordinate: -1 };
      buses.push(bus);
      used.set(d.id, new Map());
      ports.set(d.id, d.opens.kind === 'port');
      if (d.opens.kind === 'port') {
        const list = portsOf.get(parent.id) ?? [];
        list.push({ devfn, bus });
        portsOf.set(parent.id, list);
      }
    }
  }
  // Firmware numbering: each root bus's ports in devfn order get the following bus numbers.
  for (const root of buses.filter((b) => b.root === b.id)) {
    let next = root.busNr;
    for (const p of (portsOf.get(root.id) ?? []).sort((a, b) => a.devfn - b.devfn)) {
      p.bus.busNr = ++next;
      if (next > 255) throw new OptionError(`${p.bus.id}: no bus number left behind ${root.id}`);
    }
    root.subordinate = next;
  }
  return { buses, devices };
}
