/**
 * The functions of QEMU's devices that carry no behaviour beyond config space: the host
 * bridge's own function (gpex-root), a pxb-pcie's function on its parent bus, the
 * pcie-root-port bridge, and the vfio-pci endpoint whose header comes from its host device. IDs and layouts as QEMU
 * 11.1.3 shows them over ECAM (docs/reference/pci.md §2–§3).
 */
import {
  PCI_BASE_ADDRESS_MEM_PREFETCH,
  PCI_BASE_ADDRESS_MEM_TYPE_64,
  PCI_CLASS_BRIDGE_HOST,
  PCI_CLASS_BRIDGE_PCI,
  PCI_COMMAND_INTX_DISABLE,
  PCI_COMMAND_IO,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_CONFIG_SIZE,
  PCI_HEADER_TYPE_MULTI_FUNCTION,
  PCI_DEVICE_ID_REDHAT_PCIE_HOST,
  PCI_DEVICE_ID_REDHAT_PCIE_RP,
  PCI_DEVICE_ID_REDHAT_PXB_PCIE,
  PCI_STATUS_66MHZ,
  PCI_STATUS_CAP_LIST,
  PCI_STATUS_FAST_BACK,
  PCI_SUBDEVICE_ID_QEMU,
  PCI_SUBVENDOR_ID_REDHAT_QUMRANET,
  PCI_VENDOR_ID_REDHAT,
  PciCfg,
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
 * The host device behind a vfio-pci function, as the VMM reaches it through its VFIO device file
 * (pread/pwrite at the config region's offset, region info for BAR sizes).
 */
export interface VfioDeviceConfig {
  /** Size of the config region (VFIO_DEVICE_GET_REGION_INFO of the config index). */
  readonly configSize: number;
  /** Whether VFIO_DEVICE_GET_INFO reports VFIO_DEVICE_FLAGS_RESET. */
  readonly resetWorks: boolean;
  /** Size of BAR region `index` (0: no BAR). */
  barSize(index: number): number;
  /** `size` bytes of config space at `offset` from the device (pread), or undefined when the read failed. */
  read(offset: number, size: 1 | 2 | 4): number | undefined;
  /** Store to the device's config space (pwrite); the kernel filters what the device may not take. */
  write(offset: number, size: 1 | 2 | 4, value: number): void;
  /** VFIO_DEVICE_RESET. */
  reset(): void;
}

/** BAR registers and the expansion ROM: QEMU always emulates them (hw/vfio/pci.c, docs/reference/iommufd-uapi.md §16.5). */
const VFIO_EMULATED_RANGES = [
  { offset: PciCfg.BAR0, length: 24 },
  { offset: PciCfg.ROM_ADDRESS, length: 4 },
] as const;

/** COMMAND bits QEMU's vfio-pci clears on the device before a reset (stop decoding and DMA). */
const VFIO_PRE_RESET_COMMAND_CLEAR = PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE;

/**
 * A vfio-pci function (QEMU's vfio-pci): after {@link realize} its header is the host device's,
 * read through VFIO; config reads take QEMU's emulated bits (BARs, ROM, the multifunction bit)
 * from the VMM's copy and the rest from the device, and every config write goes to the device
 * as well as the VMM's copy — so the guest's COMMAND (bus-master enable) reaches the host
 * device (docs/reference/iommufd-uapi.md §16.5).
 */
export class VfioPciFunction extends PciFunction {
  /** Per byte: the bits the VMM emulates (QEMU's emulated_config_bits). */
  private readonly emulated = new Uint8Array(PCI_CONFIG_SIZE);
  private readonly barList: PciBar[];
  private device: VfioDeviceConfig | undefined;

  constructor(id: string) {
    const bars: PciBar[] = [];
    super('vfio-pci', id, type0Header({ vendor: 0xffff, device: 0xffff, revision: 0, classCode: 0, subsystem: { vendor: 0, device: 0 } }), bars, false);
    this.barList = bars;
  }

  /**
   * Plug time (QEMU's vfio_realize): copy the device's config space, clear its BAR and ROM
   * addresses, keep the multifunction bit the VMM chose, and size each BAR from its region.
   */
  realize(dev: VfioDeviceConfig): void {
    this.device = dev;
    const multifunction = this.config.read(PciCfg.HEADER_TYPE, 1) & PCI_HEADER_TYPE_MULTI_FUNCTION;
    const n = Math.min(dev.configSize, this.config.size);
    for (let off = 0; off < n; off += 4) this.config.set(off, 4, dev.read(off, 4) ?? 0xffff_ffff);
    for (const r of VFIO_EMULATED_RANGES) {
      this.emulated.fill(0xff, r.offset, r.offset + r.length);
      for (let o = r.offset; o < r.offset + r.length; o += 4) this.config.set(o, 4, 0);
    }
    this.emulated[PciCfg.HEADER_TYPE] = PCI_HEADER_TYPE_MULTI_FUNCTION;
    this.config.set(PciCfg.HEADER_TYPE, 1, (this.config.read(PciCfg.HEADER_TYPE, 1) & ~PCI_HEADER_TYPE_MULTI_FUNCTION) | multifunction);
    for (let index = 0; index < 6; index++) {
      const size = dev.barSize(index);
      if (!size) continue;
      // The BAR's type comes from the device's own register (QEMU's vfio_bar_prepare).
      const raw = dev.read(PciCfg.BAR0 + 4 * index, 4) ?? 0;
      const bar: PciBar = {
        index,
        size,
        is64: (raw & PCI_BASE_ADDRESS_MEM_TYPE_64) !== 0,
        prefetch: (raw & PCI_BASE_ADDRESS_MEM_PREFETCH) !== 0,
        region: MemoryRegion.mmio(`${this.id} bar${index}`, size, RAZ_WI),
      };
      this.barList.push(bar);
      this.declareBar(bar);
      if (bar.is64) index++;
    }
    this.config.captureReset();
  }

  /** QEMU's vfio_pci_read_config: emulated bits from the VMM's copy, the rest from the device. */
  override configRead(offset: number, size: 1 | 2 | 4): number {
    const emuVal = this.config.read(offset, size);
    let emuBits = 0;
    for (let i = 0; i < size; i++) emuBits |= this.emulated[offset + i]! << (8 * i);
    const all = size === 4 ? 0xffff_ffff : (1 << (8 * size)) - 1;
    if (!this.device || emuBits >>> 0 === all) return emuVal;
    // A failed read is all-ones, as QEMU returns it.
    const phys = this.device.read(offset, size) ?? all;
    return ((emuVal & emuBits) | (phys & ~emuBits & all)) >>> 0;
  }

  /** QEMU's vfio_pci_write_config: the device gets every write, the VMM's copy its writable bits. */
  override configWrite(offset: number, size: 1 | 2 | 4, value: number): void {
    this.device?.write(offset, size, value);
    super.configWrite(offset, size, value);
  }

  /** A restore: the guest's COMMAND (bus mastering, decoding) reaches the device behind it again. */
  protected override restoreDevice(): void {
    this.device?.write(PciCfg.COMMAND, 2, this.config.read(PciCfg.COMMAND, 2));
  }

  /** QEMU's vfio_pci_reset: stop the device's decoding and DMA, then VFIO_DEVICE_RESET when the device supports it. */
  protected override resetDevice(): void {
    const dev = this.device;
    if (!dev) return;
    const cmd = dev.read(PciCfg.COMMAND, 2);
    if (cmd !== undefined) dev.write(PciCfg.COMMAND, 2, cmd & ~VFIO_PRE_RESET_COMMAND_CLEAR);
    if (dev.resetWorks) dev.reset();
  }
}

/**
 * The vfio-pci function of `-device vfio-pci,id=ID`: its header and BARs come from the host
 * device when the machine plugs it ({@link VfioPciFunction.realize}).
 */
export function vfioPciFunction(id: string): VfioPciFunction {
  return new VfioPciFunction(id);
}
