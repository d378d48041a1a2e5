/**
 * The CMDQV operations interface of the accelerated SMMUv3 (docs/reference/qemu-accel-smmuv3.md §9): the
 * SMMU knows a command-queue-virtualization extension only through these calls. Tegra241 is
 * the one implementation.
 */

import type { IommufdBackend } from '../backends/iommufd.js';

/** CMDQV types (QEMU's SMMUV3_CMDQV_*). */
export const SMMUV3_CMDQV_NONE = 0;
export const SMMUV3_CMDQV_TEGRA241 = 1;

/** A VFIO device behind the accelerated SMMU, as bound to iommufd. */
export interface AccelHostDevice {
  /** PCI address on the host. */
  readonly host: string;
  /** iommufd device id. */
  readonly devId: number;
  /** VFIO cdev fd. */
  readonly vfioFd: number;
  /** The guest's StreamID for it (its PCI requester ID on the guest bus). */
  readonly guestSid: number;
}

/** What the SMMU offers the CMDQV. */
export interface CmdqvHost {
  readonly backend: IommufdBackend;
  /** Current emulated IDR1.CMDQS. */
  getCmdqs(): number;
  /** Cap the emulated IDR1.CMDQS (docs/reference/qemu-accel-smmuv3.md §7.2). */
  setCmdqs(cmdqs: number): void;
  /** Smallest page size backing guest RAM (for the CMDQS cap). */
  minRamPageSize(): number;
}

/** The ops table. */
export interface CmdqvOps {
  /** Check host support for `dev`; throws an Error with the probe message on failure. */
  probe(dev: AccelHostDevice): void;
  /** Create the device state, MMIO region and IRQ (after a successful probe). */
  init(): void;
  /** Allocate the vIOMMU (replaces the plain ARM_SMMUV3 IOMMU_VIOMMU_ALLOC); returns its id. */
  allocViommu(dev: AccelHostDevice, s2HwptId: number): number;
  /** Release CMDQV extras and destroy the vIOMMU (error unwinding). */
  freeViommu(): void;
  /** Which CMDQV this is. */
  getType(): number;
  /** Device reset (after the SMMU's own reset). */
  reset(): void;
}
