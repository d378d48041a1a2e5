/**
 * The seam between a PCI bus and the IOMMU in front of it (QEMU's `pci_setup_iommu` /
 * IOMMUMemoryRegion translate): a device's DMA names its requester ID and an input address,
 * the IOMMU answers with an output (guest-physical) address or a fault it has already recorded
 * in its own event queue. A bus without an IOMMU (or `bypass_iommu=on`) has none: DMA goes
 * straight to guest-physical addresses.
 */

/** Outcome of one {@link PciIommu.translate}; reuse one instance per caller so DMA does not allocate. */
export class DmaTranslation {
  /** The access may proceed at {@link pa}. */
  ok = false;
  /** Output (guest-physical) address of the input address. */
  pa = 0;
  /** Bytes from {@link pa} to the end of the translated page or block (at least 1 when ok). */
  span = 0;
  /** When not ok: the SMMU event number recorded (F_TRANSLATION…), 0 for a silent abort (e.g. STE.Config abort or GBPA.ABORT). */
  fault = 0;
}

/** An IOMMU translating the DMA of the devices on the buses it serves. */
export interface PciIommu {
  /**
   * Translate one access of StreamID `sid` (the requester ID through the IORT ID mapping:
   * identity on the virt machine) at input address `iova`; `write` for a DMA write.
   * Faults are recorded by the IOMMU (event queue) before it returns.
   */
  translate(sid: number, iova: number, write: boolean, out: DmaTranslation): DmaTranslation;
}
