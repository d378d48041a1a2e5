/**
 * `cmdqv uapi [--json]`: print every uAPI struct layout, ioctl number and enum value.
 */

import { describeUapi } from '../uapi/describe.js';

/** `cmdqv uapi --help`. */
export const UAPI_USAGE = `usage: cmdqv uapi [--json]

Print every iommufd uAPI struct layout (offsets and sizes), ioctl number and enum value the
model implements (Linux 7.0 headers).

  --json      machine-readable output
  -h, --help  show this text`;

/** Render the description as an aligned text table. */
export function formatUapiTable(): string {
  const d = describeUapi();
  const out: string[] = [];
  out.push('# iommufd uAPI layouts (little-endian, natural alignment)');
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
  return json ? JSON.stringify(describeUapi(), null, 2) : formatUapiTable();
}
