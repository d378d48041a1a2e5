// The cmdqv side of the QEMU comparison: the same line through `cmdqv acpi --out DIR -- <line>`
// and `cmdqv run -- <line>` (in-process main(): the code the binary runs).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../../src/cli/main.js';

/** Exit status, stdout and stderr of one cmdqv invocation. */
export interface CliOutcome {
  readonly status: number;
  readonly out: string;
  readonly err: string;
}

/** Run the cmdqv CLI in-process. */
export function cmdqv(argv: readonly string[]): CliOutcome {
  let out = '';
  let err = '';
  const status = main(argv, (s) => (out += `${s}\n`), (s) => (err += `${s}\n`));
  return { status, out, err };
}

/** `cmdqv acpi --out DIR -- <line>`: its outcome and, when it succeeded, the tables it wrote. */
export function cmdqvAcpi(line: readonly string[]): CliOutcome & { iort?: Uint8Array; dsdt?: Uint8Array } {
  const dir = mkdtempSync(join(tmpdir(), 'cmdqv-qemu-'));
  try {
    const r = cmdqv(['acpi', '--out', dir, '--', ...line]);
    if (r.status !== 0) return r;
    return { ...r, iort: new Uint8Array(readFileSync(join(dir, 'IORT.dat'))), dsdt: new Uint8Array(readFileSync(join(dir, 'DSDT.dat'))) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
