/**
 * The config space of a host PCI device as vfio-pci serves it to user space through the config
 * region of the device file: the header the device reports, COMMAND's decode and bus-master
 * bits reaching the device, BARs virtualised by the kernel (a write keeps only the address bits
 * the size allows, so size probing works), the rest read-only. One 256-byte image with a write
 * mask per byte; `reset()` restores the image the device came out of reset with
 * (docs/reference/iommufd-uapi.md §16.3, §16.4).
 */
import {
  PCI_BASE_ADDRESS_MEM_PREFETCH,
  PCI_BASE_ADDRESS_MEM_TYPE_64,
  PCI_COMMAND_INTX_DISABLE,
  PCI_COMMAND_IO,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_COMMAND_SERR,
  PCI_CONFIG_SIZE,
  PciCfg,
} from '../../arch/pci/config.js';
import { GRACE_DEVICE_BARS, GRACE_DEVICE_IDS, type DeviceConfig, type HostBarConfig } from '../config.js';

/** COMMAND bits user space may change through vfio-pci (the rest read as the device has them). */
const COMMAND_WRITABLE = PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE;

/**
 * COMMAND at reset in this model: memory decode and bus mastering on. A simplification: a real
 * function-level reset clears both; the model keeps them on so host-side DMA tests that run
 * without a guest still reach memory. A VMM's guest sets them itself anyway.
 */
const COMMAND_AT_RESET = PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;

/** The host device's config space (kernel side). */
export class HostPciConfig {
  /** Size of the config region (conventional space only: no capabilities are modelled). */
  readonly size = PCI_CONFIG_SIZE;
  private readonly bytes = new Uint8Array(PCI_CONFIG_SIZE);
  private readonly wmask = new Uint8Array(PCI_CONFIG_SIZE);
  private readonly resetImage: Uint8Array;
  /** The memory BARs (their sizes are what VFIO_DEVICE_GET_REGION_INFO reports). */
  readonly bars: readonly HostBarConfig[];

  constructor(cfg: DeviceConfig) {
    this.bars = cfg.bars ?? GRACE_DEVICE_BARS;
    this.set(PciCfg.VENDOR_ID, 2, cfg.vendor ?? GRACE_DEVICE_IDS.vendor);
    this.set(PciCfg.DEVICE_ID, 2, cfg.device ?? GRACE_DEVICE_IDS.device);
    this.set(PciCfg.COMMAND, 2, COMMAND_AT_RESET);
    this.setMask(PciCfg.COMMAND, 2, COMMAND_WRITABLE);
    this.set(PciCfg.REVISION, 1, GRACE_DEVICE_IDS.revision);
    const cls = cfg.classCode ?? GRACE_DEVICE_IDS.classCode;
    this.set(PciCfg.CLASS_PROG, 1, cls & 0xff);
    this.set(PciCfg.CLASS_DEVICE, 2, cls >>> 8);
    this.set(PciCfg.SUBSYSTEM_VENDOR_ID, 2, cfg.vendor ?? GRACE_DEVICE_IDS.vendor);
    this.setMask(PciCfg.INTERRUPT_LINE, 1, 0xff);
    this.setMask(PciCfg.CACHE_LINE_SIZE, 1, 0xff);
    for (const b of this.bars) {
      const off = PciCfg.BAR0 + 4 * b.index;
      this.set(off, 4, (b.is64 ? PCI_BASE_ADDRESS_MEM_TYPE_64 : 0) | (b.prefetch ? PCI_BASE_ADDRESS_MEM_PREFETCH : 0));
      this.setMask(off, 4, (~(b.size - 1) & 0xffff_fff0) >>> 0);
      if (b.is64) this.setMask(off + 4, 4, b.size > 2 ** 32 ? ~(b.size / 2 ** 32 - 1) >>> 0 : 0xffff_ffff);
    }
    this.resetImage = this.bytes.slice();
  }

  private set(offset: number, size: number, value: number): void {
    for (let i = 0; i < size; i++) this.bytes[offset + i] = (value >>> (8 * i)) & 0xff;
  }

  private setMask(offset: number, size: number, mask: number): void {
    for (let i = 0; i < size; i++) this.wmask[offset + i] = (mask >>> (8 * i)) & 0xff;
  }

  /** Little-endian read of 1, 2 or 4 bytes inside the space. */
  read(offset: number, size: 1 | 2 | 4): number {
    let v = 0;
    for (let i = 0; i < size; i++) v |= this.bytes[offset + i]! << (8 * i);
    return v >>> 0;
  }

  /** A store from user space: only the writable bits change. */
  write(offset: number, size: 1 | 2 | 4, value: number): void {
    for (let i = 0; i < size; i++) {
      const m = this.wmask[offset + i]!;
      this.bytes[offset + i] = (this.bytes[offset + i]! & ~m) | ((value >>> (8 * i)) & m);
    }
  }

  /** COMMAND.MASTER: the device may issue memory requests. */
  get busMaster(): boolean {
    return (this.bytes[PciCfg.COMMAND]! & PCI_COMMAND_MASTER) !== 0;
  }

  /** Device reset (VFIO_DEVICE_RESET, bind): the reset image back. */
  reset(): void {
    this.bytes.set(this.resetImage);
  }
}
