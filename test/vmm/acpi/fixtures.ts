// Shared fixtures of the ACPI tests: the topologies of QEMU's bios-tables-test blobs
// (shared/acpi-golden/README.md) and of the accelerated CMDQV machine (docs/reference/qemu-accel-smmuv3.md §2.2),
// and the lookup of the golden directory.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  LEGACY_SMMU_BASE,
  LEGACY_SMMU_GSIV_BASE,
  PLATFORM_BUS_BASE,
  PLATFORM_BUS_GSIV_BASE,
  type AcpiTopology,
} from '../../../src/vmm/acpi/index.js';

/**
 * The `shared/acpi-golden` directory beside the repository, found by walking up from the
 * working directory and from this file (compiled into some dist/ tree); undefined if absent.
 */
export function findGoldenDir(): string | undefined {
  const starts = [process.cwd(), dirname(fileURLToPath(import.meta.url))];
  for (const start of starts) {
    let dir = resolve(start);
    for (;;) {
      const cand = join(dir, 'shared', 'acpi-golden');
      if (existsSync(join(cand, 'IORT'))) return cand;
      const up = dirname(dir);
      if (up === dir) break;
      dir = up;
    }
  }
  return undefined;
}

export const GOLDEN_DIR = findGoldenDir();
export const NO_GOLDEN = GOLDEN_DIR === undefined ? 'shared/acpi-golden not found beside the repository' : false;

/** A golden file's bytes (call only when {@link GOLDEN_DIR} is set). */
export function golden(name: string): Uint8Array {
  if (GOLDEN_DIR === undefined) throw new Error('no golden directory');
  return new Uint8Array(readFileSync(join(GOLDEN_DIR, name)));
}

/** The topology behind each golden IORT. Identifiers 1, 2 reproduce the pre-`identifier` blobs. */
export const GOLDEN_TOPOLOGIES: Record<string, AcpiTopology> = {
  // aarch64 virt default: ITS, pcie.0 only, no SMMU.
  IORT: { its: true, rootComplexes: [{ busNr: 0 }], smmus: [] },
  // its=off with the legacy SMMU; pcie.0 has nothing behind it (bus 0 only).
  'IORT.its_off': {
    its: false,
    rootComplexes: [{ busNr: 0 }],
    smmus: [{ identifier: 0, base: LEGACY_SMMU_BASE, irqBaseGsiv: LEGACY_SMMU_GSIV_BASE, legacy: true }],
  },
  // iommu=smmuv3; pcie.0 with a root port (buses 0..1), pxb 0x10, pxb 0x20 with bypass_iommu=on.
  'IORT.smmuv3-legacy': {
    its: true,
    rootComplexes: [{ busNr: 0, subordinateBus: 1 }, { busNr: 0x10 }, { busNr: 0x20, bypassIommu: true }],
    smmus: [{ identifier: 1, base: LEGACY_SMMU_BASE, irqBaseGsiv: LEGACY_SMMU_GSIV_BASE, legacy: true }],
  },
  // Two -device arm-smmuv3 on pcie.0 and pcie.1 (platform bus slots 0 and 0x20000, IRQs 112.., 116..);
  // pcie.2 has no SMMU.
  'IORT.smmuv3-dev': {
    its: true,
    rootComplexes: [{ busNr: 0, subordinateBus: 1, smmu: 0 }, { busNr: 0x10, smmu: 1 }, { busNr: 0x20 }],
    smmus: [
      { identifier: 1, base: PLATFORM_BUS_BASE, irqBaseGsiv: PLATFORM_BUS_GSIV_BASE },
      { identifier: 2, base: PLATFORM_BUS_BASE + 0x2_0000, irqBaseGsiv: PLATFORM_BUS_GSIV_BASE + 4 },
    ],
  },
};

/** One accelerated SMMUv3 with CMDQV on pcie.0 (docs/reference/qemu-accel-smmuv3.md §2.2 worked example). */
export const ONE_CMDQV: AcpiTopology = {
  its: true,
  rootComplexes: [{ busNr: 0, subordinateBus: 1, smmu: 0 }],
  smmus: [
    {
      identifier: 1,
      base: PLATFORM_BUS_BASE,
      irqBaseGsiv: 144,
      cmdqv: { base: PLATFORM_BUS_BASE + 0x8_0000, size: 0x5_0000, gsiv: 148 },
    },
  ],
};

/**
 * Two accelerated SMMUs with CMDQV, created in the order pcie.1's then pcie.0's, so that the
 * IORT (sorted by RID) and the DSDT (creation order) list them differently. Addresses and
 * IRQs follow the platform-bus allocation for that creation order.
 */
export const TWO_CMDQV: AcpiTopology = {
  its: true,
  rootComplexes: [{ busNr: 0, subordinateBus: 1, smmu: 1 }, { busNr: 0x10, smmu: 0 }, { busNr: 0x20 }],
  smmus: [
    { identifier: 2, base: PLATFORM_BUS_BASE, irqBaseGsiv: 144, ats: true, cmdqv: { base: PLATFORM_BUS_BASE + 0x8_0000, gsiv: 152 } },
    { identifier: 1, base: PLATFORM_BUS_BASE + 0x2_0000, irqBaseGsiv: 148, cmdqv: { base: PLATFORM_BUS_BASE + 0x10_0000, gsiv: 153 } },
  ],
};

/** Hex string of bytes (for readable assertion messages). */
export function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

/** Bytes from a hex string with optional whitespace. */
export function fromHex(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
}

/** Index of `needle` in `hay`, or -1. */
export function indexOfBytes(hay: Uint8Array, needle: Uint8Array): number {
  return Buffer.from(hay.buffer, hay.byteOffset, hay.byteLength).indexOf(Buffer.from(needle));
}
