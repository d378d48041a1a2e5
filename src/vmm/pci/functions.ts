/**
 * The functions of QEMU's devices that carry no behaviour beyond config space: the host
 * bridge's own function (gpex-root), a pxb-pcie's function on its parent bus, the
 * pcie-root-port bridge, and the vfio-pci endpoint's emulated header. IDs and layouts as QEMU
 * 11.1.3 shows them over ECAM (docs/reference/pci.md §2–§3).
 */
import {
  PCI_CLASS_BRIDGE_HOST,
  PCI_CLASS_BRIDGE_PCI,
  PCI_CLASS_DISPLAY_3D,
  PCI_DEVICE_ID_REDHAT_PCIE_HOST,
  PCI_DEVICE_ID_REDHAT_PCIE_RP,
  PCI_DEVICE_ID_REDHAT_PXB_PCIE,
  PCI_STATUS_66MHZ,
  PCI_STATUS_CAP_LIST,
  PCI_STATUS_FAST_BACK,
  PCI_SUBDEVICE_ID_QEMU,
  PCI_SUBVENDOR_ID_REDHAT_QUMRANET,
  PCI_VENDOR_ID_NVIDIA,
  PCI_VENDOR_ID_REDHAT,
} from '../../arch/pci/config.js';
import { MemoryRegion } from '../../kit/memory-region.js';
import { PciBridge, PciFunction, type PciBar } from './device.js';
import { rootPortCapabilities, type1Header, type0Header } from './headers.js';

const QEMU_SUBSYSTEM = { vendor: PCI_SUBVENDOR_ID_REDHAT_QUMRANET, device: PCI_SUBDEVICE_ID_QEMU } as const;

/** RAZ/WI ops: a BAR region whose contents cmdqv does not model (MSI-X table, a passthrough device's registers). */
const RAZ_WI = { read: () => 0, write: () => {}, read64: () => 0n, write64: () => {} };

/** 00:00.0 on pcie.0: the host bridge's own function (1b36:0008, class host bridge). */
export function gpexRoot(): PciFunction {
  return new PciFunction('gpex-root', undefined, type0Header({ vendor: PCI_VENDOR_ID_REDHAT, device: PCI_DEVICE_ID_REDHAT_PCIE_HOST, revision: 0, classCode: PCI_CLASS_BRIDGE_HOST, subsystem: QEMU_SUBSYSTEM }), [], false);
}

/** A pxb-pcie's function on its parent bus (1b36:000b, class host bridge, conventional: 66 MHz and fast back-to-back status). */
export function pxbPcieFunction(id: string): PciFunction {
  return new PciFunction(
    'pxb-pcie',
    id,
    type0Header({ vendor: PCI_VENDOR_ID_REDHAT, device: PCI_DEVICE_ID_REDHAT_PXB_PCIE, revision: 0, classCode: PCI_CLASS_BRIDGE_HOST, status: PCI_STATUS_66MHZ | PCI_STATUS_FAST_BACK, subsystem: QEMU_SUBSYSTEM }),
    [],
    false,
  );
}

/** MSI-X table + PBA BAR of a root port. */
const ROOT_PORT_MSIX_BAR_SIZE = 0x1000;

/** A pcie-root-port (1b36:000c): type 1 header, BAR0 with its MSI-X table, and QEMU's capability list. */
export function pcieRootPort(id: string, props: { port: number; slot: number }): PciBridge {
  const bar: PciBar = { index: 0, size: ROOT_PORT_MSIX_BAR_SIZE, is64: false, prefetch: false, region: MemoryRegion.mmio(`${id} msix`, ROOT_PORT_MSIX_BAR_SIZE, RAZ_WI) };
  return new PciBridge(
    'pcie-root-port',
    id,
    [
      ...type1Header({ vendor: PCI_VENDOR_ID_REDHAT, device: PCI_DEVICE_ID_REDHAT_PCIE_RP, revision: 0, classCode: PCI_CLASS_BRIDGE_PCI, status: PCI_STATUS_CAP_LIST, capPointer: 0x54, interruptPin: 1 }),
      ...rootPortCapabilities(props),
    ],
    [bar],
  );
}

/**
 * The header a vfio-pci device shows the guest. The host model exposes no config space of its
 * devices (no VFIO region read, no sysfs `vendor`), so the IDs are a stand-in for an NVIDIA 3D
 * controller with one 16 MiB 32-bit BAR and one 32 MiB 64-bit prefetchable BAR whose contents
 * are not modelled (docs/reference/pci.md §3).
 */
export function vfioPciFunction(id: string): PciFunction {
  const bars: PciBar[] = [
    { index: 0, size: 0x100_0000, is64: false, prefetch: false, region: MemoryRegion.mmio(`${id} bar0`, 0x100_0000, RAZ_WI) },
    { index: 2, size: 0x200_0000, is64: true, prefetch: true, region: MemoryRegion.mmio(`${id} bar2`, 0x200_0000, RAZ_WI) },
  ];
  return new PciFunction(
    'vfio-pci',
    id,
    type0Header({ vendor: PCI_VENDOR_ID_NVIDIA, device: VFIO_STANDIN_DEVICE_ID, revision: 0xa1, classCode: PCI_CLASS_DISPLAY_3D, subsystem: { vendor: PCI_VENDOR_ID_NVIDIA, device: 0 } }),
    bars,
    false,
  );
}

/** Device ID of the passthrough stand-in (an NVIDIA GH100). */
export const VFIO_STANDIN_DEVICE_ID = 0x2342;
