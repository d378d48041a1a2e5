// issue 11 §6 against the released QEMU: QEMU 11.1 itself, on the golden command lines
// (shared/acpi-golden/README.md, with QEMU's -cpu cortex-a57 and -M gic-version=3), reproduces
// the golden IORTs, and cmdqv's IORT for each line equals QEMU 11.1's byte for byte
// (docs/reference/qemu-machine.md §4). Skips without QEMU 11.1 or the golden files.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { golden, hex, NO_GOLDEN } from '../vmm/acpi/fixtures.js';
import { cmdqvAcpi } from './cmdqv-side.js';
import { inParallel, NO_QEMU, QEMU, qemuAcpiTables, QTEST_ARGS, rootBuses } from './qtest-client.js';

/** The golden tests' lines, runnable as they are (no firmware images, no CD: neither reaches the IORT). */
const LINES: Record<string, string> = {
  IORT: '-M virt -cpu cortex-a57 -M gic-version=3',
  'IORT.its_off': '-M virt -cpu cortex-a57 -M gic-version=3,iommu=smmuv3,its=off',
  'IORT.smmuv3-legacy': '-M virt -device pcie-root-port,chassis=1,id=pci.1 -device virtio-scsi-pci,id=scsi0,bus=pci.1 -cpu cortex-a57 ' +
    '-M iommu=smmuv3,gic-version=3 -device pxb-pcie,id=pcie.1,bus=pcie.0,bus_nr=0x10 -device pxb-pcie,id=pcie.2,bus=pcie.0,bus_nr=0x20,bypass_iommu=on',
  'IORT.smmuv3-dev': '-M virt -device pcie-root-port,chassis=1,id=pci.1 -device virtio-scsi-pci,id=scsi0,bus=pci.1 -cpu cortex-a57 -M gic-version=3 ' +
    '-device arm-smmuv3,primary-bus=pcie.0,id=smmuv3.0 -device pxb-pcie,id=pcie.1,bus=pcie.0,bus_nr=0x10 ' +
    '-device arm-smmuv3,primary-bus=pcie.1,id=smmuv3.1 -device pxb-pcie,id=pcie.2,bus=pcie.0,bus_nr=0x20',
};

/** The legacy golden blob predates QEMU 11.1's Identifier 0 for the machine-wide SMMU (issue 11 §6). */
function released(file: string, want: Uint8Array): Uint8Array {
  if (file !== 'IORT.smmuv3-legacy') return want;
  const fixed = Uint8Array.from(want);
  assert.equal(fixed[0x4c], 1, 'the blob holds the old running counter');
  fixed[0x4c] = 0;
  fixed[9] = (fixed[9]! + 1) & 0xff;
  return fixed;
}

describe('golden IORTs: QEMU 11.1 and cmdqv', { skip: NO_QEMU || NO_GOLDEN }, () => {
  const qemuIort = new Map<string, Uint8Array>();
  before(async () => {
    const files = Object.keys(LINES);
    const tables = await inParallel(files.map((f) => () => {
      const args = LINES[f]!.split(' ');
      return qemuAcpiTables(QEMU!, args, rootBuses(args));
    }), 4);
    files.forEach((f, i) => qemuIort.set(f, tables[i]!.get('IORT')!));
  });

  for (const file of Object.keys(LINES)) {
    test(`QEMU 11.1 reproduces ${file}${file === 'IORT.smmuv3-legacy' ? ' (Identifier 0)' : ''} byte for byte`, () => {
      assert.equal(hex(qemuIort.get(file)!), hex(released(file, golden(file))));
    });
    test(`cmdqv acpi -- <${file}'s line> writes QEMU 11.1's IORT`, () => {
      const r = cmdqvAcpi([...LINES[file]!.split(' '), ...QTEST_ARGS]);
      assert.equal(r.status, 0, r.err);
      assert.equal(hex(r.iort!), hex(qemuIort.get(file)!));
    });
  }
});
