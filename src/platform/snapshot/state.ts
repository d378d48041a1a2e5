/**
 * What an image holds, section by section (each encoded with codec.ts, RAM apart):
 * - `meta`: the command line, the RAM size and backing, and the host features the guest saw
 *   (checked before anything is created on the destination);
 * - `vmm`: every VMM device (accelerated SMMUv3s with their CMDQVs, emulated SMMUv3s, PCI
 *   functions), the guest-visible host state (each HW queue's page0, in the CMDQV's state;
 *   pending vEVENTs), IRQ lines, the virtual clock and the main loop's pending dispatches;
 * - `guest`: the guest software (driver model and workload), when one is attached;
 * - `ram`: guest RAM blocks that hold data.
 */

import type { PlainValue } from '../../kit/persist.js';
import type { AccelSmmuV3State } from '../../vmm/smmuv3/accel-smmuv3.js';
import type { EmulatedSmmuV3State } from '../../vmm/smmuv3/emulated-smmuv3.js';
import type { CmdqvDeviceState } from '../../vmm/tegra241-cmdqv/cmdqv.js';
import type { PciFunctionState } from '../../vmm/pci/device.js';

/** Section names. */
export const SECTION = { meta: 'meta', vmm: 'vmm', guest: 'guest', ram: 'ram' } as const;

/** The host features a guest depends on, per passthrough device (compared on restore). */
export interface HostUnitMeta {
  readonly bdf: string;
  readonly smmuIdr: readonly number[];
  readonly cmdqv: string;
}

/** The `meta` section. */
export interface ImageMeta {
  /** The machine's QEMU-style command line. */
  readonly argv: readonly string[];
  readonly ramBytes: number;
  readonly ramPageSize: number;
  readonly hugepages: boolean;
  readonly hostUnits: readonly HostUnitMeta[];
  /** Whether the `ram` section is present. */
  readonly withRam: boolean;
}

/** Which vEVENTQ a pending main-loop dispatch is for (fds differ on the destination). */
export interface SavedDispatch {
  /** Index in `Machine.smmus`. */
  readonly smmu: number;
  readonly queue: 'smmuv3' | 'cmdqv';
  readonly at: number;
}

/** One accelerated SMMU and what the host holds for it that the guest can see. */
export interface SavedAccelSmmu {
  readonly id: string;
  readonly accel: AccelSmmuV3State;
  readonly cmdqv: CmdqvDeviceState | undefined;
  /** Events waiting in the SMMUv3 and CMDQV vEVENTQs (payloads). */
  readonly vevents: { readonly smmuv3: readonly Uint8Array[]; readonly cmdqv: readonly Uint8Array[] };
}

/** The `vmm` section. */
export interface VmmImage {
  readonly clockNs: number;
  readonly dispatches: readonly SavedDispatch[];
  readonly irqs: readonly { readonly gsiv: number; readonly level: boolean; readonly count: number }[];
  readonly pci: readonly PciFunctionState[];
  readonly smmus: readonly SavedAccelSmmu[];
  readonly emulated: readonly EmulatedSmmuV3State[];
}

/** Guest software a machine carries (the driver model and its workload): saved into the image. */
export interface GuestSoftware {
  /** Its state, plain (kit/persist.ts). */
  saveGuest(): PlainValue;
}
