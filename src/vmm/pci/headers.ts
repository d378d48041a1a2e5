/**
 * The config headers of the functions cmdqv models, as register tables: the type 0 and type 1
 * headers with QEMU's writable bits and reset values (read back from QEMU 11.1.3 over ECAM,
 * docs/reference/pci.md §2), and the capability lists of the pcie-root-port.
 */
import {
  PCI_COMMAND_INTX_DISABLE,
  PCI_COMMAND_IO,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_COMMAND_SERR,
  PCI_HEADER_TYPE_BRIDGE,
  PCI_IO_RANGE_MASK,
  PCI_MEMORY_RANGE_MASK,
  PCI_PREF_RANGE_TYPE_64,
  PCI_STATUS_W1C,
  PciCfg,
} from '../../arch/pci/config.js';
import type { ConfigRegister } from './config-space.js';

/** Command bits QEMU lets software write. */
export const COMMAND_WMASK = PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE;
/** Bridge-control bits QEMU's PCI bridge lets software write (parity, SERR, ISA, VGA, VGA16, bus reset). */
export const BRIDGE_CONTROL_WMASK = 0x5f;

/** Identity of a function. */
export interface PciIds {
  readonly vendor: number;
  readonly device: number;
  readonly revision: number;
  /** 24-bit class code (base, sub, prog-if). */
  readonly classCode: number;
  readonly status?: number;
  /** Subsystem vendor/device (type 0 only). */
  readonly subsystem?: { readonly vendor: number; readonly device: number };
  readonly capPointer?: number;
  readonly interruptPin?: number;
}

function common(ids: PciIds, headerType: number): ConfigRegister[] {
  return [
    { name: 'VENDOR_ID', offset: PciCfg.VENDOR_ID, size: 2, reset: ids.vendor },
    { name: 'DEVICE_ID', offset: PciCfg.DEVICE_ID, size: 2, reset: ids.device },
    { name: 'COMMAND', offset: PciCfg.COMMAND, size: 2, wmask: COMMAND_WMASK },
    { name: 'STATUS', offset: PciCfg.STATUS, size: 2, reset: ids.status ?? 0, w1c: PCI_STATUS_W1C },
    { name: 'REVISION', offset: PciCfg.REVISION, size: 1, reset: ids.revision },
    { name: 'CLASS_PROG', offset: PciCfg.CLASS_PROG, size: 1, reset: ids.classCode & 0xff },
    { name: 'CLASS_DEVICE', offset: PciCfg.CLASS_DEVICE, size: 2, reset: ids.classCode >>> 8 },
    { name: 'CACHE_LINE_SIZE', offset: PciCfg.CACHE_LINE_SIZE, size: 1, wmask: 0xff },
    { name: 'LATENCY_TIMER', offset: PciCfg.LATENCY_TIMER, size: 1 },
    { name: 'HEADER_TYPE', offset: PciCfg.HEADER_TYPE, size: 1, reset: headerType },
    { name: 'CAPABILITY_LIST', offset: PciCfg.CAPABILITY_LIST, size: 1, reset: ids.capPointer ?? 0 },
    { name: 'INTERRUPT_LINE', offset: PciCfg.INTERRUPT_LINE, size: 1, wmask: 0xff },
    { name: 'INTERRUPT_PIN', offset: PciCfg.INTERRUPT_PIN, size: 1, reset: ids.interruptPin ?? 0 },
  ];
}

/** A type 0 header with its BAR registers (their writable bits follow each BAR's size, set by the function). */
export function type0Header(ids: PciIds): ConfigRegister[] {
  const regs = common(ids, 0);
  for (let i = 0; i < 6; i++) regs.push({ name: `BAR${i}`, offset: PciCfg.BAR0 + 4 * i, size: 4 });
  if (ids.subsystem) {
    regs.push({ name: 'SUBSYSTEM_VENDOR_ID', offset: PciCfg.SUBSYSTEM_VENDOR_ID, size: 2, reset: ids.subsystem.vendor });
    regs.push({ name: 'SUBSYSTEM_ID', offset: PciCfg.SUBSYSTEM_ID, size: 2, reset: ids.subsystem.device });
  }
  return regs;
}

/**
 * A type 1 (PCI-to-PCI bridge) header as QEMU's bridge resets it: bus numbers 0, every window
 * closed (base above limit), a 16-bit I/O window and a 64-bit prefetchable window.
 */
export function type1Header(ids: PciIds): ConfigRegister[] {
  return [
    ...common(ids, PCI_HEADER_TYPE_BRIDGE),
    { name: 'BAR0', offset: PciCfg.BAR0, size: 4 },
    { name: 'BAR1', offset: PciCfg.BAR0 + 4, size: 4 },
    { name: 'PRIMARY_BUS', offset: PciCfg.PRIMARY_BUS, size: 1, wmask: 0xff },
    { name: 'SECONDARY_BUS', offset: PciCfg.SECONDARY_BUS, size: 1, wmask: 0xff },
    { name: 'SUBORDINATE_BUS', offset: PciCfg.SUBORDINATE_BUS, size: 1, wmask: 0xff },
    { name: 'SEC_LATENCY_TIMER', offset: PciCfg.SEC_LATENCY_TIMER, size: 1 },
    { name: 'IO_BASE', offset: PciCfg.IO_BASE, size: 1, reset: PCI_IO_RANGE_MASK, wmask: PCI_IO_RANGE_MASK },
    { name: 'IO_LIMIT', offset: PciCfg.IO_LIMIT, size: 1, wmask: PCI_IO_RANGE_MASK },
    { name: 'SEC_STATUS', offset: PciCfg.SEC_STATUS, size: 2, w1c: PCI_STATUS_W1C },
    { name: 'MEMORY_BASE', offset: PciCfg.MEMORY_BASE, size: 2, reset: PCI_MEMORY_RANGE_MASK, wmask: PCI_MEMORY_RANGE_MASK },
    { name: 'MEMORY_LIMIT', offset: PciCfg.MEMORY_LIMIT, size: 2, wmask: PCI_MEMORY_RANGE_MASK },
    {
      name: 'PREF_MEMORY_BASE',
      offset: PciCfg.PREF_MEMORY_BASE,
      size: 2,
      reset: PCI_MEMORY_RANGE_MASK | PCI_PREF_RANGE_TYPE_64,
      wmask: PCI_MEMORY_RANGE_MASK,
    },
    { name: 'PREF_MEMORY_LIMIT', offset: PciCfg.PREF_MEMORY_LIMIT, size: 2, reset: PCI_PREF_RANGE_TYPE_64, wmask: PCI_MEMORY_RANGE_MASK },
    { name: 'PREF_BASE_UPPER32', offset: PciCfg.PREF_BASE_UPPER32, size: 4, wmask: 0xffff_ffff },
    { name: 'PREF_LIMIT_UPPER32', offset: PciCfg.PREF_LIMIT_UPPER32, size: 4, wmask: 0xffff_ffff },
    { name: 'IO_BASE_UPPER16', offset: PciCfg.IO_BASE_UPPER16, size: 2 },
    { name: 'IO_LIMIT_UPPER16', offset: PciCfg.IO_LIMIT_UPPER16, size: 2 },
    { name: 'BRIDGE_ROM_ADDRESS', offset: PciCfg.BRIDGE_ROM_ADDRESS, size: 4 },
    { name: 'BRIDGE_CONTROL', offset: PciCfg.BRIDGE_CONTROL, size: 2, wmask: BRIDGE_CONTROL_WMASK },
  ];
}

/**
 * A device in a root port's slot (cold-plugged): data link active in Link Status, slot power
 * on in Slot Control, presence detected in Slot Status — what QEMU 11.1.3 shows for an
 * occupied slot (an empty one has 0x0204, 0x07c0 and 0).
 */
export const OCCUPIED_SLOT = { lnksta: 0x2204, sltctl: 0x03c0, sltsta: 0x0040 } as const;

/** What a pcie-root-port's capabilities carry from its properties. */
export interface RootPortCaps {
  /** `port`: Link Capabilities port number. */
  readonly port: number;
  /** `slot`: Slot Capabilities physical slot number. */
  readonly slot: number;
}

/**
 * The pcie-root-port's capability list as QEMU 11.1.3 lays it out (values read back over
 * ECAM; docs/reference/pci.md §2.4): SSVID at 0x40, MSI-X at 0x48 (table and PBA in BAR0),
 * PCI Express (root port, slot implemented) at 0x54, AER at 0x100 and ACS at 0x148. The
 * control registers software uses are writable; status and capability words are read-only.
 */
export function rootPortCapabilities(c: RootPortCaps): ConfigRegister[] {
  return [
    { name: 'SSVID_HDR', offset: 0x40, size: 2, reset: 0x000d },
    { name: 'SSVID_IDS', offset: 0x44, size: 4, reset: 0x0000_1b36 },
    { name: 'MSIX_HDR', offset: 0x48, size: 2, reset: 0x4011 },
    { name: 'MSIX_CTRL', offset: 0x4a, size: 2, wmask: 0xc000 },
    { name: 'MSIX_TABLE', offset: 0x4c, size: 4, reset: 0 },
    { name: 'MSIX_PBA', offset: 0x50, size: 4, reset: 0x800 },
    { name: 'EXP_HDR', offset: 0x54, size: 2, reset: 0x4810 },
    { name: 'EXP_FLAGS', offset: 0x56, size: 2, reset: 0x0142 },
    { name: 'EXP_DEVCAP', offset: 0x58, size: 4, reset: 0x0000_8020 },
    { name: 'EXP_DEVCTL', offset: 0x5c, size: 2, wmask: 0x7cff },
    { name: 'EXP_DEVSTA', offset: 0x5e, size: 2, w1c: 0x000f },
    { name: 'EXP_LNKCAP', offset: 0x60, size: 4, reset: ((c.port & 0xff) << 24) | 0x0030_0604 },
    { name: 'EXP_LNKCTL', offset: 0x64, size: 2, wmask: 0x0020 },
    { name: 'EXP_LNKSTA', offset: 0x66, size: 2, reset: 0x0204 },
    { name: 'EXP_SLTCAP', offset: 0x68, size: 4, reset: (((c.slot & 0x1fff) << 19) | 0x2_007b) >>> 0 },
    { name: 'EXP_SLTCTL', offset: 0x6c, size: 2, reset: 0x07c0, wmask: 0x17ff },
    { name: 'EXP_SLTSTA', offset: 0x6e, size: 2, w1c: 0x011f },
    { name: 'EXP_RTCTL', offset: 0x70, size: 2, wmask: 0x001f },
    { name: 'EXP_RTCAP', offset: 0x72, size: 2 },
    { name: 'EXP_RTSTA', offset: 0x74, size: 4, w1c: 0x0001_0000 },
    { name: 'EXP_DEVCAP2', offset: 0x78, size: 4, reset: 0x0030_0020 },
    { name: 'EXP_DEVCTL2', offset: 0x7c, size: 2, wmask: 0x0420 },
    { name: 'EXP_LNKCAP2', offset: 0x80, size: 4, reset: 0x0000_001e },
    { name: 'EXP_LNKCTL2', offset: 0x84, size: 2, reset: 0x0004 },
    { name: 'AER_HDR', offset: 0x100, size: 4, reset: 0x1482_0001 },
    { name: 'AER_UNCOR_MASK', offset: 0x108, size: 4, reset: 0x0240_0000, wmask: 0x03ff_f030 },
    { name: 'AER_UNCOR_SEVER', offset: 0x10c, size: 4, reset: 0x0046_2030, wmask: 0x03ff_f030 },
    { name: 'AER_COR_MASK', offset: 0x114, size: 4, reset: 0x0000_e000, wmask: 0x0000_f1c1 },
    { name: 'AER_CAP', offset: 0x118, size: 4, reset: 0x0000_02a0, wmask: 0x0000_0140 },
    { name: 'ACS_HDR', offset: 0x148, size: 4, reset: 0x0001_000d },
    { name: 'ACS_CAP', offset: 0x14c, size: 2, reset: 0x005f },
    { name: 'ACS_CTRL', offset: 0x14e, size: 2, wmask: 0x005f },
  ];
}
