/**
 * The DSDT cmdqv gives a guest: the PCIe root bridges (enough to find the buses) and, for
 * every SMMUv3 with an active Tegra241 CMDQV, the `NVDA200C` companion device exactly as
 * QEMU emits it (docs/reference/acpi.md §3). QEMU's full `virt` board DSDT (CPUs, UART, fw_cfg,
 * virtio-mmio, GED, _OSC/_DSM/_PRT methods…) is deliberately not reproduced.
 */
import {
  amlDevice,
  amlInteger,
  amlName,
  amlScope,
  amlString,
  extendedInterrupt,
  qwordMemory,
  resourceTemplate,
  wordBusNumber,
} from './aml.js';
import { ByteWriter, beginTable, finishTable, QEMU_OEM } from '../../arch/acpi/table.js';
import { CMDQV_HID, PCIE_ROOT_HID, PCI_ROOT_CID } from '../../arch/acpi/ids.js';
export { CMDQV_HID, PCIE_ROOT_HID, PCI_ROOT_CID };
import { bridgeBusRange, planIort, TEGRA241_CMDQV_IO_LEN, type AcpiTopology } from './topology.js';

/** DSDT revision QEMU writes (2: integers are 64-bit). */
export const DSDT_REVISION = 2;

/** What one CMDQV device node describes. */
export interface CmdqvNodeParams {
  /** The SMMU's `identifier`: the node is `CVnn` with `_UID` nn (0..99). */
  identifier: number;
  /** Register window base. */
  base: number;
  /** Window size; default 0x50000. */
  size?: number;
  /** Error interrupt GSIV. */
  gsiv: number;
}

/** The ACPI name QEMU gives the CMDQV of SMMU `identifier` ("CV%02u"). */
export function cmdqvDeviceName(identifier: number): string {
  // QEMU would format 100+ as a 5-character segment and trip its NameSeg assertion.
  if (!Number.isInteger(identifier) || identifier < 0 || identifier > 99) {
    throw new RangeError(`CMDQV identifier ${identifier} does not fit the CVnn device name (0..99)`);
  }
  return `CV${identifier.toString().padStart(2, '0')}`;
}

/**
 * The CMDQV device node, byte for byte as QEMU's `acpi_dsdt_add_tegra241_cmdqv` emits it:
 * `Device(CVnn) { _HID "NVDA200C", _UID nn, _CCA 1, _CRS { QWordMemory, Interrupt } }`.
 */
export function buildCmdqvNode(p: CmdqvNodeParams): Uint8Array {
  const size = p.size ?? TEGRA241_CMDQV_IO_LEN;
  if (!Number.isSafeInteger(size) || size <= 0) throw new RangeError(`CMDQV window size ${size}`);
  return amlDevice(
    cmdqvDeviceName(p.identifier),
    amlName('_HID', amlString(CMDQV_HID)),
    amlName('_UID', amlInteger(p.identifier)),
    amlName('_CCA', amlInteger(1)),
    amlName(
      '_CRS',
      resourceTemplate(
        // QEMU leaves the general flags' consumer bit clear (iasl shows ResourceProducer).
        qwordMemory({ minimum: p.base, maximum: p.base + size - 1, length: size, cacheability: 'cacheable', readWrite: true }),
        extendedInterrupt({ edge: true, gsivs: [p.gsiv] }),
      ),
    ),
  );
}

/** What one PCIe root-bridge device node describes. */
export interface RootBridgeParams {
  /** First bus number (`_BBN`, also `_UID` as in QEMU). */
  busNr: number;
  /** Last bus number the bridge decodes. */
  busMax: number;
  /** PCI segment (`_SEG`); default 0. */
  segment?: number;
}

/** QEMU's device name of a root bridge: `PCI0` for pcie.0, `PCxx` (hex bus_nr) for a pxb-pcie. */
export function rootBridgeDeviceName(busNr: number): string {
  return busNr === 0 ? 'PCI0' : `PC${busNr.toString(16).toUpperCase().padStart(2, '0')}`;
}

/**
 * A PCIe root bridge with the objects a guest needs to enumerate it: `_HID` PNP0A08, `_CID`
 * PNP0A03, `_SEG`, `_BBN`, `_UID`, `_CCA` and a `_CRS` with its bus-number window. (MMIO/IO
 * windows, `_PRT`, `_OSC` and `_DSM` of QEMU's GPEX node are left out.)
 */
export function buildRootBridgeNode(p: RootBridgeParams): Uint8Array {
  return amlDevice(
    rootBridgeDeviceName(p.busNr),
    amlName('_HID', amlString(PCIE_ROOT_HID)),
    amlName('_CID', amlString(PCI_ROOT_CID)),
    amlName('_SEG', amlInteger(p.segment ?? 0)),
    amlName('_BBN', amlInteger(p.busNr)),
    amlName('_UID', amlInteger(p.busNr)),
    amlName('_CCA', amlInteger(1)),
    amlName('_CRS', resourceTemplate(wordBusNumber({ minimum: p.busNr, maximum: p.busMax, length: p.busMax - p.busNr + 1 }))),
  );
}

/**
 * Builds the DSDT: `Scope(\_SB) { root bridges by bus number, CMDQV nodes }`. The CMDQV
 * nodes come last and in the topology's SMMU (creation) order, as in QEMU, which does not
 * sort this list the way it sorts IORT nodes. pcie.0 decodes every bus below the lowest
 * pxb-pcie (as QEMU's PCI0 `_CRS` does); a pxb-pcie decodes its own bus range.
 */
export function buildDsdt(topo: AcpiTopology): Uint8Array {
  planIort(topo); // the same validation as the IORT, so both tables describe one machine
  const bridges = [...topo.rootComplexes].sort((a, b) => a.busNr - b.busNr);
  const terms: Uint8Array[] = [];
  for (const [i, b] of bridges.entries()) {
    const r = bridgeBusRange(b);
    const next = bridges[i + 1];
    const busMax = b.busNr === 0 ? (next !== undefined ? next.busNr - 1 : 0xff) : r.max;
    terms.push(buildRootBridgeNode({ busNr: b.busNr, busMax }));
  }
  const names = new Set<number>();
  for (const s of topo.smmus) {
    if (s.cmdqv === undefined || s.legacy === true) continue;
    // QEMU does not check this, but two CVnn devices with one name are invalid AML (the
    // guest's namespace load fails) and one _UID cannot name two SMMUs' companions.
    if (names.has(s.identifier)) throw new RangeError(`two CMDQVs with identifier ${s.identifier}: the DSDT needs distinct CVnn names`);
    names.add(s.identifier);
    terms.push(buildCmdqvNode({ identifier: s.identifier, base: s.cmdqv.base, size: s.cmdqv.size, gsiv: s.cmdqv.gsiv }));
  }
  const w = new ByteWriter();
  beginTable(w, 'DSDT', DSDT_REVISION, topo.oem ?? QEMU_OEM);
  w.bytes(amlScope('\\_SB', ...terms));
  return finishTable(w);
}
