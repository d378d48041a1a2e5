/**
 * A guest driver for QEMU's iommu-testdev (found by the PCI scan as 1b36:0005): program a DMA
 * in BAR0, arm it, trigger it by reading DMA_TRIGGERING, and poll DMA_RESULT until it is no
 * longer busy — the sequence QEMU's qtest library uses (docs/reference/pci.md §5).
 */
import {
  DMA_ATTRS,
  DMA_DBELL,
  DMA_GPA_HI,
  DMA_GPA_LO,
  DMA_GVA_HI,
  DMA_GVA_LO,
  DMA_LEN,
  DMA_RESULT,
  DMA_TRIGGERING,
  ITD_ATTRS_SPACE_NONSECURE,
  ITD_DMA_DBELL_ARM,
  ITD_DMA_RESULT_BUSY,
} from '../arch/iommu-testdev/registers.js';
import { PCI_DEVICE_ID_REDHAT_TEST, PCI_VENDOR_ID_REDHAT } from '../arch/pci/config.js';
import type { GuestPciDevice } from './pci.js';
import type { GuestBus } from './platform.js';

/** Whether a scanned function is an iommu-testdev. */
export function isIommuTestdev(d: GuestPciDevice): boolean {
  return d.vendor === PCI_VENDOR_ID_REDHAT && d.device === PCI_DEVICE_ID_REDHAT_TEST;
}

/** One testdev, driven through its BAR0. */
export class GuestIommuTestdev {
  constructor(
    private readonly bus: GuestBus,
    readonly bar0: number,
  ) {}

  /** The driver for a scanned device (its BAR0 must be assigned). */
  static probe(bus: GuestBus, d: GuestPciDevice): GuestIommuTestdev {
    const bar = d.bars.find((b) => b.index === 0);
    if (!bar || bar.addr === 0) throw new Error(`iommu-testdev ${d.bdf}: BAR0 is not assigned`);
    return new GuestIommuTestdev(bus, bar.addr);
  }

  private w(def: { spec: { offset: number } }, v: number): void {
    this.bus.write32(this.bar0 + def.spec.offset, v >>> 0);
  }

  private r(def: { spec: { offset: number } }): number {
    return this.bus.read32(this.bar0 + def.spec.offset) >>> 0;
  }

  /**
   * Write the pattern at input address `iova` (through the device's IOMMU), check it at
   * guest-physical `gpa`; returns DMA_RESULT (0 = passed, 0xdead000x = the error).
   */
  dma(iova: number, gpa: number, len: number, attrs = ITD_ATTRS_SPACE_NONSECURE << 1): number {
    this.w(DMA_GVA_LO, iova % 2 ** 32);
    this.w(DMA_GVA_HI, Math.floor(iova / 2 ** 32));
    this.w(DMA_GPA_LO, gpa % 2 ** 32);
    this.w(DMA_GPA_HI, Math.floor(gpa / 2 ** 32));
    this.w(DMA_LEN, len);
    this.w(DMA_ATTRS, attrs);
    this.w(DMA_DBELL, ITD_DMA_DBELL_ARM);
    this.r(DMA_TRIGGERING);
    let result = this.r(DMA_RESULT);
    for (let i = 0; i < 1000 && result === ITD_DMA_RESULT_BUSY; i++) result = this.r(DMA_RESULT);
    return result;
  }
}
