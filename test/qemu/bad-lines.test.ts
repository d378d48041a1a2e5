// Bad command lines: QEMU 11.1 and cmdqv print the same error and exit with status 1 (issue 11
// §1). Each line runs on QEMU 11.1 under qtest and through `cmdqv acpi` (and `cmdqv run` for a
// few); stderr must be identical. Skips without QEMU 11.1.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { cmdqv } from './cmdqv-side.js';
import { inParallel, NO_QEMU, QEMU, qemuOutcome, QTEST_ARGS } from './qtest-client.js';

/** Each line is preceded by `-M virt`; QEMU 11.1 refuses every one of them. */
const BAD_LINES: readonly string[] = [
  // Unknown options, devices, properties.
  '-foo',
  '-device foo',
  '-device pxb-pcie,id=pcie.1,bus_nr=16,bogus=1',
  '-device arm-smmuv3,primary-bus=pcie.0,bogus=1',
  '-M virt,bogus=on',
  '-M pc',
  '-cpu foo',
  '-object foo,id=x',
  // Bad values.
  '-device pxb-pcie,id=pcie.1,bus_nr=300',
  '-device pxb-pcie,id=pcie.1,bus_nr=x',
  '-device pxb-pcie,id=pcie.1,bus_nr=16,bypass_iommu=maybe',
  '-device pcie-root-port,id=rp1,chassis=x',
  '-device pcie-root-port,id=rp1,chassis=1,slot=70000',
  '-device pcie-root-port,id=rp1,chassis=1,addr=0x20',
  '-device arm-smmuv3,primary-bus=pcie.0,identifier=256',
  '-device arm-smmuv3,primary-bus=pcie.0,ats=maybe',
  '-device arm-smmuv3,primary-bus=pcie.0,oas=40',
  '-device arm-smmuv3,primary-bus=pcie.0,oas=64',
  '-M virt,iommu=foo',
  '-M virt,gic-version=5',
  '-M virt,its=maybe',
  '-M virt,memory-backend=nope',
  '-uuid bad',
  '-object memory-backend-ram,id=m',
  '-object memory-backend-ram,size=1G',
  // -m and -smp forms.
  '-m foo',
  '-m 100000000T',
  '-m 99999999999999999999999',
  '-m 18446744073709551615',
  '-m size=1G,bogus=1',
  '-m 1G,maxmem=512M',
  '-m 1G,slots=x',
  '-smp cpus=2,foo=1',
  '-smp x',
  '-smp sockets=2,cores=2,threads=2,maxcpus=4',
  '-smp 2,maxcpus=1',
  '-smp sockets=0',
  // Placement: taken slot, unknown bus, chassis/slot clash, duplicate id.
  '-device pcie-root-port,id=rp1,chassis=1,addr=2 -device pcie-root-port,id=rp2,chassis=2,addr=2',
  '-device pcie-root-port,id=rp1,chassis=1,bus=nope',
  '-device pcie-root-port,id=rp1,chassis=1 -device pcie-root-port,id=rp2,chassis=1',
  '-device pcie-root-port,id=rp1,chassis=1 -device pcie-root-port,id=rp1,chassis=2',
  // Placement rules of QEMU's PCI core and pxb-pcie (docs/reference/pci.md §4).
  '-device pxb-pcie,id=pcie.1,bus_nr=1 -device iommu-testdev,bus=pcie.1',
  '-device pxb-pcie,id=pcie.1,bus_nr=1 -device iommu-testdev',
  '-device pxb-pcie,id=pcie.1,bus_nr=5 -device pxb-pcie,id=pcie.2,bus_nr=6',
  '-device pxb-pcie,id=pcie.1,bus_nr=5 -device pxb-pcie,id=pcie.2,bus_nr=5,bus=pcie.0',
  '-device pcie-root-port,id=rp1,chassis=1 -device pxb-pcie,id=pcie.1,bus_nr=0,bus=pcie.0',
  '-device pcie-root-port,id=rp1,chassis=1 -device pxb-pcie,id=pcie.1,bus_nr=5,bus=rp1',
  '-device iommu-testdev,addr=3 -device iommu-testdev,addr=3',
  '-device pxb-pcie,id=pcie.1,bus_nr=4,addr=0',
  '-device iommu-testdev,addr=0x1a,id=a -device iommu-testdev,addr=0x1a.2',
  '-device iommu-testdev,addr=3.1 -device iommu-testdev,addr=3',
  // The emulated SMMUv3's rules QEMU checks without KVM.
  '-device arm-smmuv3',
  '-device arm-smmuv3,primary-bus=nope',
  '-device arm-smmuv3,primary-bus=pcie.0,cmdqv=on',
  '-device arm-smmuv3,primary-bus=pcie.0,ats=on',
  '-device arm-smmuv3,primary-bus=pcie.0,oas=48',
  '-device arm-smmuv3,primary-bus=pcie.0,ril=off',
  '-device arm-smmuv3,primary-bus=pcie.0,ssidsize=8',
  '-M virt,iommu=smmuv3 -device arm-smmuv3,primary-bus=pcie.0',
  '-device arm-smmuv3,primary-bus=pcie.0 -device arm-smmuv3,primary-bus=pcie.0',
  '-device pxb-pcie,id=pcie.1,bus_nr=16,bypass_iommu=on -device arm-smmuv3,primary-bus=pcie.1',
  '-M virt,default-bus-bypass-iommu=on -device arm-smmuv3,primary-bus=pcie.0',
  '-device pcie-root-port,id=rp1,chassis=1 -device arm-smmuv3,primary-bus=rp1',
];

/** Lines also given to `cmdqv run` (its errors come from the same parser and machine). */
const RUN_TOO = new Set(['-foo', '-device foo', '-m 100000000T', '-device arm-smmuv3,primary-bus=pcie.0,cmdqv=on', '-M virt,gic-version=5']);

const args = (line: string) => ['-M', 'virt', ...line.split(' '), ...QTEST_ARGS];

describe('bad lines: cmdqv prints QEMU 11.1\'s error, exit status 1', { skip: NO_QEMU }, () => {
  const qemu = new Map<string, { status: number | null | 'started'; stderr: string }>();
  before(async () => {
    const outcomes = await inParallel(BAD_LINES.map((l) => () => qemuOutcome(QEMU!, args(l))), 8);
    BAD_LINES.forEach((l, i) => qemu.set(l, outcomes[i]!));
  });
  for (const line of BAD_LINES) {
    test(line, () => {
      const q = qemu.get(line)!;
      assert.equal(q.status, 1, `QEMU 11.1 should refuse the line: ${q.stderr}`);
      assert.match(q.stderr, /^qemu-system-aarch64: /);
      for (const cmd of RUN_TOO.has(line) ? ['acpi', 'run'] : ['acpi']) {
        const c = cmdqv([cmd, '--', ...args(line)]);
        assert.equal(c.status, 1, `cmdqv ${cmd}: ${c.err}`);
        assert.equal(c.err.trim(), q.stderr.trim(), `cmdqv ${cmd}`);
      }
    });
  }
});
