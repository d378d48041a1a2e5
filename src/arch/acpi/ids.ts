/** ACPI hardware IDs the stack uses. */

/** `_HID` of the Tegra241 CMDQV companion device. */
export const CMDQV_HID = 'NVDA200C';
/** `_HID` of a PCIe root bridge. */
export const PCIE_ROOT_HID = 'PNP0A08';
/** `_CID` of a PCIe root bridge (the conventional PCI host bridge it is compatible with). */
export const PCI_ROOT_CID = 'PNP0A03';
