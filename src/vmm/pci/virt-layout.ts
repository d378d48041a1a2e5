/**
 * Where QEMU's virt machine puts the PCIe host bridge (hw/arm/virt.c memmap; docs/reference/pci.md §1):
 * the low ECAM (16 buses), the 32-bit MMIO and PIO windows below 1 GiB, and the high region
 * after RAM — never below 256 GiB — holding the second redistributor frame, the high ECAM
 * (256 buses) and the 512 GiB 64-bit MMIO window, each aligned to its size.
 */
import type { PciHostLayout } from './host.js';

export const VIRT_PCIE_MMIO = { base: 0x1000_0000, size: 0x2eff_0000 } as const;
export const VIRT_PCIE_PIO = { base: 0x3eff_0000, size: 0x1_0000 } as const;
export const VIRT_PCIE_ECAM = { base: 0x3f00_0000, size: 0x100_0000 } as const;
/** Sizes of the high regions in their order. */
const HIGH_GIC_REDIST2_SIZE = 64 * 2 ** 20;
const HIGH_PCIE_ECAM_SIZE = 256 * 2 ** 20;
const HIGH_PCIE_MMIO_SIZE = 512 * 2 ** 30;
/** The high region never starts below RAM base + 255 GiB (LEGACY_RAMLIMIT). */
const LEGACY_RAMLIMIT_END = 2 ** 30 + 255 * 2 ** 30;

const roundUp = (v: number, a: number) => Math.ceil(v / a) * a;

/**
 * The host bridge layout for `ramBytes` of RAM at 1 GiB in a `paBits` guest-physical space.
 * (Memory hot-plug slots and maxmem, which would push the high region up, are not modelled.)
 */
export function virtPciLayout(ramBytes: number, highmemEcam: boolean, paBits: number): PciHostLayout {
  let base = Math.max(roundUp(2 ** 30 + ramBytes, 2 ** 30), LEGACY_RAMLIMIT_END);
  const place = (size: number): number | undefined => {
    const at = roundUp(base, size);
    if (at + size > 2 ** paBits) return undefined;
    base = at + size;
    return at;
  };
  place(HIGH_GIC_REDIST2_SIZE);
  const ecamHigh = place(HIGH_PCIE_ECAM_SIZE);
  const mmioHigh = place(HIGH_PCIE_MMIO_SIZE);
  const useHigh = highmemEcam && ecamHigh !== undefined;
  return {
    ecamBase: useHigh ? ecamHigh : VIRT_PCIE_ECAM.base,
    ecamSize: useHigh ? HIGH_PCIE_ECAM_SIZE : VIRT_PCIE_ECAM.size,
    mmio: VIRT_PCIE_MMIO,
    pio: VIRT_PCIE_PIO,
    highMmio: mmioHigh === undefined ? undefined : { base: mmioHigh, size: HIGH_PCIE_MMIO_SIZE },
  };
}
