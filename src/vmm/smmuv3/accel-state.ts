/**
 * The accelerated SMMUv3's data, apart from its runtime handles: the architectural state it
 * saves and restores ({@link AccelSmmuV3State}: registers, derived ID registers, the host
 * objects the VMM created and keeps for the guest's configuration) and its work counters
 * ({@link AccelSmmuStats}, diagnostics, not saved).
 *
 * Host object ids (vIOMMU, HWPTs, vDEVICEs, vEVENTQ) and the devices' VFIO fds are recorded as
 * the VMM knows them: restoring them on another host (re-creating the objects) is the
 * snapshot/restore work, not this file's.
 */

import type { Veventq } from '../backends/iommufd.js';
import type { AccelHostDevice } from './cmdqv-ops.js';
import type { Idr } from './idr.js';

/** One VFIO device behind the vSMMU and the host objects made for it (QEMU's SMMUv3AccelDevice). */
export interface AccelDeviceState {
  /** The device as bound to iommufd (given by the machine at attach). */
  readonly hostDevice: AccelHostDevice;
  /** vDEVICE (virt_id = guest SID), allocated on the first STE install. */
  vdevId: number | undefined;
  /** Current nested stage-1 HWPT, if a translate STE is installed. */
  s1Hwpt: number | undefined;
  /** Unplug blocker message (the device that established the vIOMMU with a CMDQV). */
  blocker: string | undefined;
  /** The HWPT the device is attached to now (a restore attaches the same kind again). */
  hwpt?: number;
  /** The nested STE data `s1Hwpt` was allocated with (a restore allocates it again). */
  s1Data?: Uint8Array;
}

/** The vIOMMU and its pre-allocated nested HWPTs (QEMU's SMMUv3AccelState). */
export interface ViommuState {
  readonly id: number;
  /** The nesting-parent HWPT it was built on. */
  readonly s2Hwpt: number;
  readonly abortHwpt: number;
  readonly bypassHwpt: number;
}

/** Everything the accelerated SMMUv3 saves: plain data only (see `kit/persist.ts`). */
export interface AccelSmmuV3State {
  /** The register file's words (the `RegisterFile` array itself, not a copy). */
  readonly registers: Uint32Array;
  /** ID registers as derived from the properties and the host (CMDQS at its default). */
  idr: Idr;
  /** `auto` properties resolved from the first host device. */
  autoFinalised: boolean;
  /** Nesting-parent (stage-2) HWPT of guest RAM, shared by every device (set by the machine). */
  s2Hwpt: number | undefined;
  viommu: ViommuState | undefined;
  /** SMMUv3 vEVENTQ (type ARM_SMMUV3), allocated once the guest enables its event queue. */
  veventq: Veventq | undefined;
  readonly devices: AccelDeviceState[];
}

/** Counters of the device's work. */
export interface AccelSmmuStats {
  /** Commands read from the trapped command queue. */
  commands: number;
  /** Commands delivered to the host with IOMMU_HWPT_INVALIDATE. */
  forwarded: number;
  /** IOMMU_HWPT_INVALIDATE calls. */
  invalidateCalls: number;
  /** Every ioctl this device made through the backend (including failed ones). */
  ioctls: number;
  /** STEs installed on the host. */
  steInstalls: number;
  /** Command-queue errors (CERROR_*). */
  cmdqErrors: number;
  /** Event records written to the guest event queue. */
  events: number;
  /** Events lost: guest queue full (overflow flagged) or disabled. */
  eventsLost: number;
}

/** Zeroed counters. */
export function emptyStats(): AccelSmmuStats {
  return { commands: 0, forwarded: 0, invalidateCalls: 0, ioctls: 0, steInstalls: 0, cmdqErrors: 0, events: 0, eventsLost: 0 };
}

