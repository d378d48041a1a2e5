// `cmdqv acpi --out DIR`: the tables land on disk and iasl disassembles them without errors.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { main } from '../../src/cli/main.js';

const hasIasl = spawnSync('sh', ['-c', 'command -v iasl'], { encoding: 'utf8' }).status === 0;

test('cmdqv acpi --out DIR writes IORT.dat and DSDT.dat for a two-SMMU topology', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cmdqv-acpi-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  let out = '';
  const code = main(
    ['acpi', '--out', dir, '--', '-object', 'iommufd,id=i0', '-device', 'pxb-pcie,id=pcie.1,bus_nr=0x10',
      '-device', 'arm-smmuv3,primary-bus=pcie.0,accel=on,cmdqv=on,identifier=1',
      '-device', 'arm-smmuv3,primary-bus=pcie.1,accel=on,cmdqv=off,identifier=2',
      '-device', 'pcie-root-port,id=rp1,bus=pcie.1,chassis=1',
      '-device', 'vfio-pci,host=0009:01:00.0,iommufd=i0,bus=pcie.0', '-device', 'vfio-pci,host=0009:01:00.1,iommufd=i0,bus=rp1'],
    (s) => (out += s),
    () => {},
  );
  assert.equal(code, 0);
  assert.match(out, /CV01 \(NVDA200C, _UID 1\)/);
  const iort = readFileSync(join(dir, 'IORT.dat'));
  const dsdt = readFileSync(join(dir, 'DSDT.dat'));
  assert.equal(iort.subarray(0, 4).toString(), 'IORT');
  assert.equal(dsdt.subarray(0, 4).toString(), 'DSDT');
  if (!hasIasl) {
    t.skip('iasl not installed (CI installs acpica-tools)');
    return;
  }
  for (const f of ['IORT.dat', 'DSDT.dat']) {
    const p = spawnSync('iasl', ['-d', f], { cwd: dir, encoding: 'utf8' });
    assert.equal(p.status, 0, `${f}: ${p.stdout}${p.stderr}`);
    assert.doesNotMatch(`${p.stdout}${p.stderr}`, /\bError\b/);
  }
  const dsl = readFileSync(join(dir, 'DSDT.dsl'), 'utf8');
  assert.match(dsl, /Device \(CV01\)/);
  assert.match(dsl, /"NVDA200C"/);
  assert.doesNotMatch(dsl, /CV02/, 'cmdqv=off: no CMDQV node');
});

test('QEMU\'s placement warnings go to stderr with QEMU\'s prefix; the command still succeeds', () => {
  let out = '';
  let err = '';
  const line = ['-M', 'virt', '-device', 'pcie-root-port,id=rp1,chassis=1', '-device', 'iommu-testdev,bus=rp1', '-device', 'pcie-root-port,id=rp2,bus=rp1,addr=2.0,chassis=2'];
  assert.equal(main(['acpi', '--', ...line], (s) => (out += s), (s) => (err += s)), 0);
  // Observed on QEMU 11.1.3 with the same line.
  assert.equal(err, 'qemu-system-aarch64: -device pcie-root-port,id=rp2,bus=rp1,addr=2.0,chassis=2: warning: PCI: slot 2 is not valid for pcie-root-port, parent device only allows plugging into slot 0.');
  assert.match(out, /^IORT \d+ bytes/);
});
