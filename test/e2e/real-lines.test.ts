// Issue 11, "Done when": five real-shaped command lines through `cmdqv run` and `cmdqv acpi`,
// each checked for its outcome (the bad-line tables are test/cli/bad-input.test.ts and, against
// QEMU 11.1 itself, test/qemu/bad-lines.test.ts).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { main } from '../../src/cli/main.js';
import { parseIort } from '../../src/guest/acpi-parse.js';
import { Machine } from '../../src/platform/machine.js';

function cli(argv: readonly string[]): { code: number; out: string; err: string } {
  let out = '';
  let err = '';
  const code = main(argv, (s) => (out += `${s}\n`), (s) => (err += `${s}\n`));
  return { code, out, err };
}

const LINES: Record<string, string[]> = {
  'Grace passthrough: hugepage backend, pxb-pcie, accel SMMU with CMDQV, root port': [
    '-machine', 'virt,accel=kvm,gic-version=3,memory-backend=mem0,kernel-irqchip=on', '-cpu', 'host', '-smp', '4', '-m', '4G',
    '-object', 'memory-backend-file,id=mem0,mem-path=/dev/hugepages,size=4G,prealloc=on,share=on', '-object', 'iommufd,id=iommufd0',
    '-nographic', '-kernel', '/boot/Image', '-append', 'console=ttyAMA0',
    '-device', 'pxb-pcie,id=pcie.1,bus_nr=1,bus=pcie.0', '-device', 'arm-smmuv3,primary-bus=pcie.1,id=smmuv3.1,accel=on,cmdqv=on,identifier=1',
    '-device', 'pcie-root-port,id=pcie.port1,bus=pcie.1,chassis=1', '-device', 'vfio-pci,host=0009:01:00.0,bus=pcie.port1,iommufd=iommufd0',
  ],
  'two accel SMMUs on two pxb-pcie buses, CMDQV on one': [
    '-M', 'virt,gic-version=3', '-m', '8G', '-object', 'iommufd,id=iommufd0',
    '-device', 'pxb-pcie,id=pcie.1,bus_nr=1', '-device', 'pcie-root-port,id=rp1,bus=pcie.1,chassis=1',
    '-device', 'pxb-pcie,id=pcie.2,bus_nr=8,bus=pcie.0', '-device', 'pcie-root-port,id=rp2,bus=pcie.2,chassis=2',
    '-device', 'arm-smmuv3,primary-bus=pcie.1,accel=on,cmdqv=on,identifier=1', '-device', 'arm-smmuv3,primary-bus=pcie.2,accel=on,identifier=2',
    '-device', 'vfio-pci,host=0009:01:00.0,iommufd=iommufd0,bus=rp1', '-device', 'vfio-pci,host=0009:01:00.1,iommufd=iommufd0,bus=rp2',
  ],
  'emulated SMMUv3 with iommu-testdev': ['-M', 'virt,gic-version=3', '-cpu', 'max', '-m', '2G', '-device', 'arm-smmuv3,primary-bus=pcie.0,id=smmuv3.0', '-device', 'iommu-testdev,id=td0'],
  'the legacy iommu=smmuv3 machine (QEMU\'s iommu-smmuv3-test line)': ['-machine', 'virt,acpi=off,gic-version=3,iommu=smmuv3', '-smp', '1', '-m', '512', '-cpu', 'max', '-net', 'none', '-device', 'iommu-testdev'],
  'QEMU\'s ACPI-test line (bios-tables-test, IORT.smmuv3-dev)': [
    '-machine', 'virt', '-accel', 'tcg', '-nodefaults', '-nographic', '-drive', 'if=pflash,format=raw,file=edk2-aarch64-code.fd,readonly=on',
    '-device', 'pcie-root-port,chassis=1,id=pci.1', '-device', 'virtio-scsi-pci,id=scsi0,bus=pci.1', '-cpu', 'cortex-a57', '-M', 'gic-version=3',
    '-device', 'arm-smmuv3,primary-bus=pcie.0,id=smmuv3.0', '-device', 'pxb-pcie,id=pcie.1,bus=pcie.0,bus_nr=0x10',
    '-device', 'arm-smmuv3,primary-bus=pcie.1,id=smmuv3.1', '-device', 'pxb-pcie,id=pcie.2,bus=pcie.0,bus_nr=0x20', '-accel', 'qtest',
  ],
};

/** What each line must give: devices the workload drove, SMMU nodes and ITS in the IORT. */
const EXPECT: Record<string, { devices: number; vcmdq: boolean; smmus: number; its: boolean }> = {
  'Grace passthrough: hugepage backend, pxb-pcie, accel SMMU with CMDQV, root port': { devices: 1, vcmdq: true, smmus: 1, its: true },
  'two accel SMMUs on two pxb-pcie buses, CMDQV on one': { devices: 2, vcmdq: true, smmus: 2, its: true },
  'emulated SMMUv3 with iommu-testdev': { devices: 1, vcmdq: false, smmus: 1, its: true },
  'the legacy iommu=smmuv3 machine (QEMU\'s iommu-smmuv3-test line)': { devices: 1, vcmdq: false, smmus: 1, its: true },
  'QEMU\'s ACPI-test line (bios-tables-test, IORT.smmuv3-dev)': { devices: 0, vcmdq: false, smmus: 2, its: true },
};

describe('five real-shaped lines through cmdqv run and cmdqv acpi', () => {
  for (const [name, line] of Object.entries(LINES)) {
    test(name, () => {
      const e = EXPECT[name]!;
      const run = cli(['run', '--json', '--ops', '16', '--batch', '4', '--verify-every', '1', '--no-error', '--', ...line]);
      assert.equal(run.code, 0, run.err);
      const rep = JSON.parse(run.out) as { devices: unknown[]; vcmdq: { commands: number }; smmuCmdq: { commands: number }; dmaChecks: { failed: number; passed: number } };
      assert.equal(rep.devices.length, e.devices);
      assert.equal(rep.dmaChecks.failed, 0);
      assert.equal(rep.dmaChecks.passed, e.devices * 32);
      assert.equal(rep.vcmdq.commands > 0, e.vcmdq, 'guest invalidations take the VCMDQ exactly when a CMDQV is there');
      assert.equal(rep.vcmdq.commands + rep.smmuCmdq.commands, e.devices * 16);
      const acpi = cli(['acpi', '--', ...line]);
      assert.equal(acpi.code, 0, acpi.err);
      const m = Machine.create(line);
      const iort = parseIort(m.acpi.iort);
      m.close();
      assert.equal(iort.smmus.length, e.smmus);
      assert.equal(iort.itsGroups.length > 0, e.its);
    });
  }
});
