/**
 * `cmdqv acpi [--out DIR] [-- QEMU options]`: build the machine and write its ACPI tables as
 * IORT.dat and DSDT.dat (raw tables, as `iasl -d` expects), or print a summary.
 */

import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cmdqvDeviceName, Machine } from '../platform/machine.js';
import { makeDir, writeOutput } from './output-file.js';
import { splitCommandLine } from './command-line.js';

/** `cmdqv acpi --help`. */
export const ACPI_USAGE = `usage: cmdqv acpi [--out DIR] [-- QEMU options]

Build the machine (the embedded default, or the QEMU options after --) and summarise its ACPI
tables: the IORT SMMUv3 nodes and the DSDT's CMDQV devices.

  --out DIR   also write DIR/IORT.dat and DIR/DSDT.dat (raw tables, for iasl -d)
  -h, --help  show this text`;

/** Run the subcommand; returns the text to print. */
export function acpiCommand(argv: readonly string[], warn: (s: string) => void = () => undefined): string {
  const { own, qemu } = splitCommandLine(argv);
  const { values } = parseArgs({ args: [...own], options: { out: { type: 'string' } }, strict: true });
  if (values.out) makeDir('--out', values.out);
  const m = Machine.create(qemu);
  for (const w of m.placementWarnings) warn(`qemu-system-aarch64: ${w}`);
  m.close();
  const lines = [`IORT ${m.acpi.iort.length} bytes, DSDT ${m.acpi.dsdt.length} bytes`];
  for (const e of m.emulatedSmmus) lines.push(`  SMMUv3 ${e.opts ? `${e.id} (emulated)` : '(machine-wide, iommu=smmuv3)'} at 0x${e.base.toString(16)}`);
  if (m.options.notModelled.length) lines.push(`not modelled: ${m.options.notModelled.join(', ')}`);
  for (const s of m.smmus) {
    lines.push(`  SMMUv3 identifier ${s.opts.identifier} at 0x${s.base.toString(16)}` + (s.cmdqv ? `; DSDT ${cmdqvDeviceName(s.opts.identifier)} (NVDA200C, _UID ${s.opts.identifier}) at 0x${s.cmdqvBase!.toString(16)}, GSIV ${s.cmdqvGsiv}` : ''));
  }
  if (values.out) {
    writeOutput('--out', join(values.out, 'IORT.dat'), m.acpi.iort);
    writeOutput('--out', join(values.out, 'DSDT.dat'), m.acpi.dsdt);
    lines.push(`wrote ${join(values.out, 'IORT.dat')} and ${join(values.out, 'DSDT.dat')}`);
  }
  return lines.join('\n');
}
