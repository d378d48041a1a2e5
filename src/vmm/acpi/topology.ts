/**
 * The machine description the ACPI builders take: PCIe host bridges, SMMUv3s (legacy
 * machine-wide or user-created on the platform bus, optionally accelerated with a Tegra241
 * CMDQV) and the MSI controller — plus the resolution of that description into the RID
 * ranges QEMU's IORT builder works with (docs/reference/acpi.md §2.5–2.6).
 */
import type { AcpiOem } from '../../arch/acpi/table.js';
import { CMDQV_IO_LEN } from '../tegra241-cmdqv/registers.js';
import { PLATFORM_BUS_BASE, PLATFORM_BUS_FIRST_SPI, SPI_TO_GSIV } from '../virt/platform-bus.js';

/** `virt` platform bus base (VIRT_PLATFORM_BUS); user-created SMMUs and their CMDQVs live here. */
export { PLATFORM_BUS_BASE };
/** GSIV of platform-bus IRQ 0: SPI 112 + 32. */
export const PLATFORM_BUS_GSIV_BASE = PLATFORM_BUS_FIRST_SPI + SPI_TO_GSIV;
/** Base of the legacy machine-wide SMMUv3 (`-machine virt,iommu=smmuv3`). */
export const LEGACY_SMMU_BASE = 0x0905_0000;
/** GSIV of the legacy SMMUv3's IRQ 0: SPI 74 + 32. */
export const LEGACY_SMMU_GSIV_BASE = 106;
/** Size of the Tegra241 CMDQV register window (`TEGRA241_CMDQV_IO_LEN`). */
export const TEGRA241_CMDQV_IO_LEN = CMDQV_IO_LEN;
/** IOVA of the MSI doorbell window the host SMMUv3 driver reserves; described by RMR nodes. */
export const MSI_IOVA_BASE = 0x0800_0000;
/** Length of the MSI doorbell window. */
export const MSI_IOVA_LENGTH = 0x10_0000;

/** A PCIe host bridge: `pcie.0` (bus 0) or a `pxb-pcie` (its `bus_nr`). */
export interface AcpiHostBridge {
  /** Root bus number: 0 for pcie.0, `bus_nr` for a pxb-pcie. */
  busNr: number;
  /**
   * Highest bus number behind the bridge (its subordinate bus); default `busNr`. pcie.0
   * with one pcie-root-port below it has 1. This is the range the IORT routes (QEMU's
   * `pci_bus_range`).
   */
  subordinateBus?: number;
  /**
   * Index into {@link AcpiTopology.smmus} of the SMMU this bridge's RIDs go to (its
   * `primary-bus`). Absent: no SMMU, RIDs go straight to the ITS. With a legacy SMMU every
   * bridge that is not {@link bypassIommu} is routed to it, as QEMU's machine-wide SMMU does.
   */
  smmu?: number;
  /** `bypass_iommu=on`: never routed to the legacy SMMU. */
  bypassIommu?: boolean;
}

/** The Tegra241 CMDQV companion of an accelerated SMMUv3. */
export interface AcpiCmdqv {
  /** Guest-physical base of the register window (platform-bus base + MMIO region 1 offset). */
  base: number;
  /** Window size; default {@link TEGRA241_CMDQV_IO_LEN} (0x50000). */
  size?: number;
  /** GSIV of the error interrupt (platform-bus IRQ of sysbus IRQ 4 + 144). */
  gsiv: number;
}

/** An SMMUv3. */
export interface AcpiSmmu {
  /**
   * IORT node Identifier and, with a CMDQV, the DSDT `_UID` / `CVnn` name (QEMU's uint8
   * `identifier` property). The QEMU golden blobs predate the property and hold 1, 2, …
   */
  identifier: number;
  /** Guest-physical base of the 128 KiB register frame. */
  base: number;
  /** GSIV of IRQ 0; event = +0, PRI = +1, CMD_SYNC = +2, GERROR = +3. */
  irqBaseGsiv: number;
  /** The machine-wide `iommu=smmuv3` SMMU (never accelerated, never with a CMDQV). */
  legacy?: boolean;
  /** `accel=on`: gets an RMR node for the MSI window. Default: true when {@link cmdqv} is set. */
  accel?: boolean;
  /** The vSMMU advertises ATS (IDR0.ATS after `ats=auto` is resolved): sets the root complex's ATS attribute. */
  ats?: boolean;
  /** Present when the CMDQV is active (accel=on and the host has one). */
  cmdqv?: AcpiCmdqv;
}

/** What the IORT and DSDT builders describe. */
export interface AcpiTopology {
  /** A GICv3 ITS is the MSI controller (QEMU `its=on`, the default). */
  its: boolean;
  /** PCIe host bridges; all share PCI segment 0 and one IORT root-complex node. */
  rootComplexes: readonly AcpiHostBridge[];
  /** SMMUv3s in creation order (the order QEMU keeps them in its list). */
  smmus: readonly AcpiSmmu[];
  /** Header OEM fields; default {@link QEMU_OEM}. */
  oem?: AcpiOem;
}

/** A range of PCI requester IDs (`bus << 8 | devfn`): `count` IDs from `start`. */
export interface RidRange {
  start: number;
  count: number;
}

/** An SMMU with the RID ranges routed to it, in IORT order. */
export interface PlannedSmmu {
  /** Index in {@link AcpiTopology.smmus}. */
  index: number;
  smmu: AcpiSmmu;
  /** Whether the SMMU gets an RMR node. */
  accel: boolean;
  /** RID ranges routed to this SMMU, ascending. */
  ranges: RidRange[];
}

/** The topology resolved into QEMU's IORT inputs. */
export interface IortPlan {
  its: boolean;
  /** SMMUs sorted by their first RID range (QEMU sorts its list by input base). */
  smmus: PlannedSmmu[];
  /** RID ranges sent straight to the ITS (the gaps between SMMU ranges); empty without ITS. */
  itsRanges: RidRange[];
  /** Any SMMU has ATS enabled. */
  ats: boolean;
}

const RID_SPACE = 0x1_0000;

function isAccel(s: AcpiSmmu): boolean {
  return s.accel ?? s.cmdqv !== undefined;
}

function checkInt(what: string, v: number, min: number, max: number): void {
  if (!Number.isInteger(v) || v < min || v > max) throw new RangeError(`${what} = ${v} is not an integer in ${min}..${max}`);
}

/** The bus range of a host bridge, validated. */
export function bridgeBusRange(b: AcpiHostBridge): { min: number; max: number } {
  checkInt('host bridge busNr', b.busNr, 0, 255);
  const max = b.subordinateBus ?? b.busNr;
  checkInt(`host bridge ${b.busNr} subordinateBus`, max, b.busNr, 255);
  return { min: b.busNr, max };
}

/**
 * Validates a topology and resolves it into per-SMMU RID ranges and ITS gaps, as QEMU's
 * IORT builder does. Rejects what QEMU cannot produce: a legacy SMMU next to user-created
 * ones, a user-created SMMU without exactly one primary bus, a CMDQV on a non-accelerated or
 * legacy SMMU, overlapping bus ranges.
 */
export function planIort(topo: AcpiTopology): IortPlan {
  const { smmus, rootComplexes } = topo;
  const legacy = smmus.filter((s) => s.legacy === true);
  if (legacy.length > 1) throw new RangeError('at most one legacy (machine-wide) SMMUv3');
  if (legacy.length === 1 && smmus.length > 1) throw new RangeError('a legacy SMMUv3 excludes user-created ones (as in QEMU)');
  smmus.forEach((s, i) => {
    checkInt(`smmus[${i}].identifier`, s.identifier, 0, 255);
    checkInt(`smmus[${i}].base`, s.base, 0, Number.MAX_SAFE_INTEGER);
    checkInt(`smmus[${i}].irqBaseGsiv`, s.irqBaseGsiv, 1, 0xffff_ffff - 3);
    if (s.cmdqv !== undefined && !isAccel(s)) throw new RangeError(`smmus[${i}]: a CMDQV needs accel=on`);
    if (s.legacy === true && isAccel(s)) throw new RangeError(`smmus[${i}]: the legacy SMMUv3 cannot be accelerated`);
  });

  const ranges: RidRange[][] = smmus.map(() => []);
  const seen: { min: number; max: number }[] = [];
  for (const b of rootComplexes) {
    const r = bridgeBusRange(b);
    for (const o of seen) {
      if (r.min <= o.max && o.min <= r.max) throw new RangeError(`host bridge buses ${r.min}..${r.max} overlap ${o.min}..${o.max}`);
    }
    seen.push(r);
    let target = b.smmu;
    if (target !== undefined) checkInt(`host bridge ${b.busNr} smmu`, target, 0, smmus.length - 1);
    if (legacy.length === 1) {
      target = b.bypassIommu === true ? undefined : 0;
    } else if (target !== undefined && b.bypassIommu === true) {
      throw new RangeError(`host bridge ${b.busNr}: bypassIommu contradicts its SMMU (primary-bus) link`);
    }
    if (target !== undefined) ranges[target]!.push({ start: r.min << 8, count: (r.max - r.min + 1) << 8 });
  }
  smmus.forEach((s, i) => {
    if (s.legacy !== true && ranges[i]!.length !== 1) {
      throw new RangeError(`smmus[${i}]: a user-created SMMUv3 has exactly one primary bus, got ${ranges[i]!.length}`);
    }
    ranges[i]!.sort((a, b) => a.start - b.start);
  });

  const planned: PlannedSmmu[] = smmus.map((smmu, index) => ({ index, smmu, accel: isAccel(smmu), ranges: ranges[index]! }));
  // Array.prototype.sort is stable; an SMMU without ranges (legacy, all bridges bypassed) goes last.
  planned.sort((a, b) => (a.ranges[0]?.start ?? RID_SPACE) - (b.ranges[0]?.start ?? RID_SPACE));

  const itsRanges: RidRange[] = [];
  if (topo.its) {
    let next = 0;
    for (const p of planned) {
      for (const r of p.ranges) {
        if (next < r.start) itsRanges.push({ start: next, count: r.start - next });
        next = r.start + r.count;
      }
    }
    if (next < RID_SPACE) itsRanges.push({ start: next, count: RID_SPACE - next });
  }
  return { its: topo.its, smmus: planned, itsRanges, ats: smmus.some((s) => s.ats === true) };
}
