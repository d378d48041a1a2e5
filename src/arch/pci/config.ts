/**
 * PCI and PCI Express configuration-space facts every layer speaks: header offsets, command and
 * status bits, header types, BAR encodings, capability IDs, ECAM addressing and the IDs of the
 * QEMU devices cmdqv models (docs/reference/pci.md §1–§3).
 */

/** Bytes of a conventional function's config space; a PCIe function has 4 KiB. */
export const PCI_CONFIG_SIZE = 0x100;
export const PCIE_CONFIG_SIZE = 0x1000;

/** Type 0 and type 1 header offsets. */
export const PciCfg = {
  VENDOR_ID: 0x00,
  DEVICE_ID: 0x02,
  COMMAND: 0x04,
  STATUS: 0x06,
  REVISION: 0x08,
  CLASS_PROG: 0x09,
  CLASS_DEVICE: 0x0a,
  CACHE_LINE_SIZE: 0x0c,
  LATENCY_TIMER: 0x0d,
  HEADER_TYPE: 0x0e,
  BAR0: 0x10,
  SUBSYSTEM_VENDOR_ID: 0x2c,
  SUBSYSTEM_ID: 0x2e,
  ROM_ADDRESS: 0x30,
  CAPABILITY_LIST: 0x34,
  INTERRUPT_LINE: 0x3c,
  INTERRUPT_PIN: 0x3d,
  // Type 1 (bridge) header.
  PRIMARY_BUS: 0x18,
  SECONDARY_BUS: 0x19,
  SUBORDINATE_BUS: 0x1a,
  SEC_LATENCY_TIMER: 0x1b,
  IO_BASE: 0x1c,
  IO_LIMIT: 0x1d,
  SEC_STATUS: 0x1e,
  MEMORY_BASE: 0x20,
  MEMORY_LIMIT: 0x22,
  PREF_MEMORY_BASE: 0x24,
  PREF_MEMORY_LIMIT: 0x26,
  PREF_BASE_UPPER32: 0x28,
  PREF_LIMIT_UPPER32: 0x2c,
  IO_BASE_UPPER16: 0x30,
  IO_LIMIT_UPPER16: 0x32,
  BRIDGE_ROM_ADDRESS: 0x38,
  BRIDGE_CONTROL: 0x3e,
} as const;

/** Command register bits. */
export const PCI_COMMAND_IO = 0x1;
export const PCI_COMMAND_MEMORY = 0x2;
export const PCI_COMMAND_MASTER = 0x4;
export const PCI_COMMAND_SERR = 0x100;
export const PCI_COMMAND_INTX_DISABLE = 0x400;

/** Status register bits. */
export const PCI_STATUS_CAP_LIST = 0x10;
export const PCI_STATUS_66MHZ = 0x20;
export const PCI_STATUS_FAST_BACK = 0x80;
/** The error bits of the status register (write 1 to clear). */
export const PCI_STATUS_W1C = 0xf900;

/** Header type (bits 6:0) and the multi-function bit. */
export const PCI_HEADER_TYPE_NORMAL = 0;
export const PCI_HEADER_TYPE_BRIDGE = 1;
export const PCI_HEADER_TYPE_MULTI_FUNCTION = 0x80;

/** BAR encodings. */
export const PCI_BASE_ADDRESS_SPACE_IO = 0x1;
export const PCI_BASE_ADDRESS_MEM_TYPE_64 = 0x4;
export const PCI_BASE_ADDRESS_MEM_PREFETCH = 0x8;
export const PCI_BASE_ADDRESS_MEM_MASK = 0xfffffff0;

/** Bridge window encodings: memory windows have 1 MiB granularity, 64-bit prefetch windows say so in bits 3:0. */
export const PCI_MEMORY_RANGE_MASK = 0xfff0;
export const PCI_PREF_RANGE_TYPE_64 = 0x1;
export const PCI_IO_RANGE_MASK = 0xf0;
/** Window granularity of a bridge's memory windows. */
export const PCI_BRIDGE_MEM_GRANULE = 0x10_0000;

/** Capability IDs (standard list) and extended capability IDs. */
export const PCI_CAP_ID_EXP = 0x10;
export const PCI_CAP_ID_MSIX = 0x11;
export const PCI_CAP_ID_SSVID = 0x0d;
export const PCI_EXT_CAP_ID_ERR = 0x01;
export const PCI_EXT_CAP_ID_ACS = 0x0d;

/** Class codes (base class << 16 | subclass << 8 | prog-if). */
export const PCI_CLASS_BRIDGE_HOST = 0x06_00_00;
export const PCI_CLASS_BRIDGE_PCI = 0x06_04_00;
/** QEMU's PCI_CLASS_OTHERS (0xff) in the class-code word: base class 0x00, subclass 0xff. */
export const PCI_CLASS_OTHERS = 0x00_ff_00;
/** 3D controller: what the passthrough stand-in reports. */
export const PCI_CLASS_DISPLAY_3D = 0x03_02_00;

/** Vendor IDs. */
export const PCI_VENDOR_ID_REDHAT = 0x1b36;
export const PCI_VENDOR_ID_REDHAT_QUMRANET = 0x1af4;
export const PCI_VENDOR_ID_NVIDIA = 0x10de;
/** Subsystem IDs QEMU gives every non-bridge function (pci_set_default_subsystem_id). */
export const PCI_SUBVENDOR_ID_REDHAT_QUMRANET = 0x1af4;
export const PCI_SUBDEVICE_ID_QEMU = 0x1100;

/** Red Hat device IDs of QEMU's devices (docs/reference/pci.md §3). */
export const PCI_DEVICE_ID_REDHAT_TEST = 0x0005;
export const PCI_DEVICE_ID_REDHAT_PCIE_HOST = 0x0008;
export const PCI_DEVICE_ID_REDHAT_PXB_PCIE = 0x000b;
export const PCI_DEVICE_ID_REDHAT_PCIE_RP = 0x000c;

/** ECAM: one 4 KiB config space per function, 1 MiB per bus. */
export const ECAM_BUS_SHIFT = 20;
export const ECAM_DEVFN_SHIFT = 12;
/** ECAM offset of (bus, devfn, register). */
export function ecamOffset(bus: number, devfn: number, reg = 0): number {
  return bus * 2 ** ECAM_BUS_SHIFT + (devfn << ECAM_DEVFN_SHIFT) + reg;
}

/** Requester ID of a function: bus << 8 | devfn. */
export function pciRid(bus: number, devfn: number): number {
  return (bus << 8) | devfn;
}

/** `BB:DD.F` of a requester ID. */
export function formatBdf(bus: number, devfn: number): string {
  const h = (n: number, w: number) => n.toString(16).padStart(w, '0');
  return `${h(bus, 2)}:${h(devfn >> 3, 2)}.${devfn & 7}`;
}
