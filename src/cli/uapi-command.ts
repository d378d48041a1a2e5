/**
 * `cmdqv uapi [--json]`: print every uAPI struct layout, ioctl number and enum value.
 */

import { describeUapi, type UapiDescription } from '../uapi/describe.js';
import * as V from '../uapi/vfio.js';

/** `cmdqv uapi --help`. */
export const UAPI_USAGE = `usage: cmdqv uapi [--json]

Print every iommufd and VFIO device uAPI struct layout (offsets and sizes), ioctl number and
enum value the model implements (Linux 7.0 headers).

  --json      machine-readable output
  -h, --help  show this text`;

/** The iommufd description plus the VFIO device-file structs, ioctls and constants the model serves. */
export function describeAllUapi(): UapiDescription {
  const d = describeUapi();
  for (const s of V.VFIO_STRUCTS) {
    d.structs[s.name] = { size: s.size, fields: Object.fromEntries(s.fields.map((f) => [f.name, { offset: f.offset, size: f.size }])) };
  }
  for (const i of V.VFIO_IOCTLS) d.ioctls[i.name] = i.number;
  d.enums.vfio_device_info_flags = { VFIO_DEVICE_FLAGS_RESET: V.VFIO_DEVICE_FLAGS_RESET, VFIO_DEVICE_FLAGS_PCI: V.VFIO_DEVICE_FLAGS_PCI };
  d.enums.vfio_region_info_flags = {
    VFIO_REGION_INFO_FLAG_READ: V.VFIO_REGION_INFO_FLAG_READ,
    VFIO_REGION_INFO_FLAG_WRITE: V.VFIO_REGION_INFO_FLAG_WRITE,
    VFIO_REGION_INFO_FLAG_MMAP: V.VFIO_REGION_INFO_FLAG_MMAP,
    VFIO_REGION_INFO_FLAG_CAPS: V.VFIO_REGION_INFO_FLAG_CAPS,
  };
  d.enums.vfio_pci_region_index = {
    VFIO_PCI_BAR0_REGION_INDEX: V.VFIO_PCI_BAR0_REGION_INDEX,
    VFIO_PCI_ROM_REGION_INDEX: V.VFIO_PCI_ROM_REGION_INDEX,
    VFIO_PCI_CONFIG_REGION_INDEX: V.VFIO_PCI_CONFIG_REGION_INDEX,
    VFIO_PCI_VGA_REGION_INDEX: V.VFIO_PCI_VGA_REGION_INDEX,
    VFIO_PCI_NUM_REGIONS: V.VFIO_PCI_NUM_REGIONS,
  };
  return d;
}

/** Render the description as an aligned text table. */
export function formatUapiTable(): string {
  const d = describeAllUapi();
  const out: string[] = [];
  out.push('# iommufd and VFIO uAPI layouts (little-endian, natural alignment)');
  for (const [name, s] of Object.entries(d.structs)) {
    out.push('', `struct ${name}  (${s.size} bytes)`);
    out.push('  offset  size  field');
    for (const [fname, f] of Object.entries(s.fields)) {
      out.push(`  ${String(f.offset).padStart(6)}  ${String(f.size).padStart(4)}  ${fname}`);
    }
  }
  out.push('', '# ioctls', '  number        name');
  for (const [name, num] of Object.entries(d.ioctls)) {
    out.push(`  0x${num.toString(16).padStart(4, '0')} ${String(num).padStart(6)}  ${name}`);
  }
  out.push('', '# enums');
  for (const [ename, values] of Object.entries(d.enums)) {
    out.push(`enum ${ename}`);
    for (const [k, v] of Object.entries(values)) out.push(`  ${String(v).padStart(4)}  ${k}`);
  }
  return out.join('\n');
}

/** Run the subcommand; returns the text to print. */
export function runUapiCommand(json: boolean): string {
  return json ? JSON.stringify(describeAllUapi(), null, 2) : formatUapiTable();
}
