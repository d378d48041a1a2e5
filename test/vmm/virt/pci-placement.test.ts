// cmdqv places PCI devices as QEMU 11.1 does: for each accepted line of
// test/qemu/placement-lines.ts (QEMU's placement, re-checked on QEMU by test/qemu/placement.test.ts)
// the guest's PCI scan after firmware finds the same functions at the same BDFs, and the
// placement warns as QEMU does; refused lines get QEMU's texts (docs/reference/pci.md §4).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Machine } from '../../../src/platform/machine.js';
import { scanPci } from '../../../src/guest/pci.js';
import { placePciDevices } from '../../../src/vmm/virt/pci-topology.js';
import { PLACEMENT_LINES } from '../../qemu/placement-lines.js';

const hex = (n: number, w: number) => n.toString(16).padStart(w, '0');

for (const { line, functions, warnings } of PLACEMENT_LINES) {
  test(`placement: ${line}`, () => {
    const m = Machine.create(['-M', 'virt', ...line.split(' ')]);
    try {
      const found = scanPci(m.guestPlatform().bus, m.acpi).map((d) => `${d.bdf.toLowerCase()} ${hex(d.vendor, 4)}:${hex(d.device, 4)}`);
      assert.deepEqual(found, functions);
      assert.deepEqual(m.placementWarnings, warnings ?? []);
    } finally {
      m.close();
    }
  });
}

test('refused placements carry QEMU\'s texts', () => {
  const refuse = (line: string, re: RegExp) => assert.throws(() => Machine.create(['-M', 'virt', ...line.split(' ')]), re, line);
  refuse('-device pxb-pcie,id=pcie.1,bus_nr=1 -device iommu-testdev,bus=pcie.1', /-device iommu-testdev,bus=pcie\.1: PCI: Only PCI\/PCIe bridges can be plugged into pxb-pcie$/);
  refuse('-device pxb-pcie,id=pcie.1,bus_nr=1 -device iommu-testdev', /-device iommu-testdev: PCI: Only PCI\/PCIe bridges can be plugged into pxb-pcie$/);
  refuse('-device pxb-pcie,id=pcie.1,bus_nr=5 -device pxb-pcie,id=pcie.2,bus_nr=5,bus=pcie.0', /-device pxb-pcie,id=pcie\.2,bus_nr=5,bus=pcie\.0: Bus 5 is already in use$/);
  refuse('-device pcie-root-port,id=rp1,chassis=1 -device pxb-pcie,id=pcie.1,bus_nr=0,bus=pcie.0', /: Bus 0 is already in use$/);
  refuse('-device pcie-root-port,id=rp1,chassis=1 -device pxb-pcie,id=pcie.1,bus_nr=5,bus=rp1', /: PXB devices can be attached only to root bus$/);
  refuse('-device iommu-testdev,addr=3 -device iommu-testdev,addr=3', /: PCI: slot 3 function 0 not available for iommu-testdev, in use by iommu-testdev,id=\(null\)$/);
  refuse('-device iommu-testdev,addr=0x1a,id=a -device iommu-testdev,addr=0x1a.2', /: PCI: single function device can't be populated in function 1a\.2$/);
  refuse('-device iommu-testdev,addr=3.1 -device iommu-testdev,addr=3', /: PCI: 3\.0 indicates single function, but 3\.1 is already populated\.$/);
});

test('firmware numbering: nested root ports depth-first, root bus ranges end at the last number', () => {
  const p = placePciDevices([
    { driver: 'pcie-root-port', id: 'a', bus: 'pcie.0', devfn: undefined, opens: { kind: 'port' } },
    { driver: 'pcie-root-port', id: 'b', bus: 'a', devfn: undefined, opens: { kind: 'port' } },
    { driver: 'pcie-root-port', id: 'c', bus: 'b', devfn: undefined, opens: { kind: 'port' } },
    { driver: 'pcie-root-port', id: 'd', bus: 'pcie.0', devfn: undefined, opens: { kind: 'port' } },
    { driver: 'pxb-pcie', id: 'pcie.1', bus: undefined, devfn: undefined, opens: { kind: 'root', busNr: 3 } },
    { driver: 'pcie-root-port', id: 'e', bus: undefined, devfn: undefined, opens: { kind: 'port' } },
  ]);
  // pcie.0: a=1 (b=2 (c=3 would clash with pxb 3: 4)), d=5; pxb 3: e=6 (firmware skips root bus numbers).
  assert.deepEqual(p.buses.map((b) => [b.id, b.busNr, b.subordinate]), [
    ['pcie.0', 0, 5], ['a', 1, 4], ['b', 2, 4], ['c', 4, 4], ['d', 5, 5], ['pcie.1', 3, 6], ['e', 6, 6],
  ]);
  assert.deepEqual(p.devices.map((d) => d.bus), ['pcie.0', 'a', 'b', 'pcie.0', 'pcie.0', 'pcie.1']);
});
