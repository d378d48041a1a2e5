// Every subcommand answers --help with its own usage; the built binary is executable; `cmdqv
// acpi` names the CMDQV device as the DSDT does (decimal CVnn).
import assert from 'node:assert/strict';
import { accessSync, constants } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { main } from '../../src/cli/main.js';

function run(argv: string[]): { code: number; out: string; err: string } {
  let out = '';
  let err = '';
  const code = main(argv, (s) => (out += s), (s) => (err += s));
  return { code, out, err };
}

test('every subcommand answers --help and -h with its own usage, exit 0', () => {
  for (const [command, first] of [['run', 'usage: cmdqv run'], ['acpi', 'usage: cmdqv acpi'], ['uapi', 'usage: cmdqv uapi'], ['help', 'usage: cmdqv <command>']] as const) {
    for (const flag of ['--help', '-h']) {
      const r = run([command, flag]);
      assert.equal(r.code, 0, `${command} ${flag}`);
      assert.ok(r.out.startsWith(first), `${command} ${flag}: ${r.out.slice(0, 60)}`);
      assert.equal(r.err, '');
    }
  }
  // A --help after `--` belongs to QEMU's options, not to the subcommand.
  assert.notEqual(run(['acpi', '--', '--help']).code, 0);
});

test('cmdqv acpi names the CMDQV device CVnn in decimal, as the DSDT does', () => {
  const r = run(['acpi', '--', '-object', 'iommufd,id=i0', '-device', 'arm-smmuv3,primary-bus=pcie.0,accel=on,cmdqv=on,identifier=10', '-device', 'vfio-pci,host=0009:01:00.0,iommufd=i0']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /DSDT CV10 \(NVDA200C, _UID 10\)/);
});

test('the built bin.js is executable (npx cmdqv works in a clone)', () => {
  const bin = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'cli', 'bin.js');
  accessSync(bin, constants.X_OK);
});
