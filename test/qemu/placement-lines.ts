// Command lines QEMU 11.1 accepts, with where it puts each PCI function once firmware numbered
// the bridges (`BB:DD.F vendor:device`, firmware's scan order), as observed with QEMU 11.1.3
// under qtest (docs/reference/pci.md §4). test/qemu/placement.test.ts re-checks them on QEMU;
// test/vmm/virt/pci-placement.test.ts checks cmdqv's guest scan against them.

const GPEX = '1b36:0008';
const PXB = '1b36:000b';
const RP = '1b36:000c';
const TESTDEV = '1b36:0005';

/** A line (after `-M virt`), QEMU's functions, and QEMU's warnings (stderr lines). */
export interface PlacementLine {
  readonly line: string;
  readonly functions: readonly string[];
  readonly warnings?: readonly string[];
}

export const PLACEMENT_LINES: readonly PlacementLine[] = [
  {
    // No bus= and no pxb-pcie: pcie.0 (not the root port's bus), the next free slot.
    line: '-device pcie-root-port,id=rp1,chassis=1 -device iommu-testdev',
    functions: [`00:00.0 ${GPEX}`, `00:01.0 ${RP}`, `00:02.0 ${TESTDEV}`],
  },
  {
    // No bus= after a pxb-pcie: the root port goes onto the pxb-pcie's bus.
    line: '-device pxb-pcie,id=pcie.1,bus_nr=4 -device pcie-root-port,id=rp1,chassis=1 -device iommu-testdev,bus=rp1',
    functions: [`00:00.0 ${GPEX}`, `00:01.0 ${PXB}`, `04:00.0 ${RP}`, `05:00.0 ${TESTDEV}`],
  },
  {
    // The most recently created pxb-pcie wins.
    line: '-device pxb-pcie,id=pcie.1,bus_nr=4 -device pxb-pcie,id=pcie.2,bus_nr=8,bus=pcie.0 -device pcie-root-port,id=rp1,chassis=1 ' +
      '-device pcie-root-port,id=rp2,chassis=2,bus=pcie.1 -device iommu-testdev,bus=rp1 -device iommu-testdev,bus=rp2',
    functions: [`00:00.0 ${GPEX}`, `00:01.0 ${PXB}`, `00:02.0 ${PXB}`, `04:00.0 ${RP}`, `05:00.0 ${TESTDEV}`, `08:00.0 ${RP}`, `09:00.0 ${TESTDEV}`],
  },
  {
    // Several conventional endpoints behind one root port, at any slot.
    line: '-device pcie-root-port,id=rp1,chassis=1 -device iommu-testdev,bus=rp1 -device iommu-testdev,bus=rp1 -device iommu-testdev,bus=rp1,addr=5',
    functions: [`00:00.0 ${GPEX}`, `00:01.0 ${RP}`, `01:00.0 ${TESTDEV}`, `01:01.0 ${TESTDEV}`, `01:05.0 ${TESTDEV}`],
  },
  {
    // A root port behind a root port: depth-first numbering.
    line: '-device pcie-root-port,id=rp1,chassis=1 -device pcie-root-port,id=rp2,chassis=2,bus=rp1 -device iommu-testdev,bus=rp2 ' +
      '-device pcie-root-port,id=rp3,chassis=3 -device iommu-testdev,bus=rp3',
    functions: [`00:00.0 ${GPEX}`, `00:01.0 ${RP}`, `01:00.0 ${RP}`, `02:00.0 ${TESTDEV}`, `00:02.0 ${RP}`, `03:00.0 ${TESTDEV}`],
  },
  {
    // A PCIe function behind a root port at slot 3: accepted with a warning; with 00.0 taken
    // the slot is powered and every function on the bus answers.
    line: '-device pxb-pcie,id=pcie.1,bus_nr=0x10 -device pcie-root-port,id=rp1,chassis=1 -device iommu-testdev,bus=rp1 ' +
      '-device pcie-root-port,id=rp2,chassis=2,bus=rp1,addr=3 -device iommu-testdev,bus=rp2',
    functions: [`00:00.0 ${GPEX}`, `00:01.0 ${PXB}`, `10:00.0 ${RP}`, `11:00.0 ${TESTDEV}`, `11:03.0 ${RP}`, `12:00.0 ${TESTDEV}`],
    warnings: ['-device pcie-root-port,id=rp2,chassis=2,bus=rp1,addr=3: warning: PCI: slot 3 is not valid for pcie-root-port, parent device only allows plugging into slot 0.'],
  },
  {
    // Nothing at 00.0 behind a root port: its slot is empty, so powered off; the functions on
    // the bus read all-ones and firmware finds nothing there.
    line: '-device pcie-root-port,id=rp1,chassis=1 -device iommu-testdev,bus=rp1,addr=2 -device iommu-testdev,bus=rp1,addr=3',
    functions: [`00:00.0 ${GPEX}`, `00:01.0 ${RP}`],
  },
  {
    // multifunction=on on function 0 lets function 2 in; firmware then scans all eight.
    line: '-device iommu-testdev,addr=3,multifunction=on -device iommu-testdev,addr=3.2 -device pcie-root-port,id=rp1,chassis=1,addr=4',
    functions: [`00:00.0 ${GPEX}`, `00:03.0 ${TESTDEV}`, `00:03.2 ${TESTDEV}`, `00:04.0 ${RP}`],
  },
  {
    // bus_nr=0: the pxb-pcie's bus hides behind pcie.0 (config cycles for bus 0 reach pcie.0).
    line: '-device pxb-pcie,id=pcie.1,bus_nr=0 -device pcie-root-port,id=rp,chassis=1,bus=pcie.1 -device iommu-testdev,bus=rp',
    functions: [`00:00.0 ${GPEX}`, `00:01.0 ${PXB}`],
  },
  {
    // Any RAM size: QEMU starts with 1 MiB.
    line: '-m 1M -device iommu-testdev',
    functions: [`00:00.0 ${GPEX}`, `00:01.0 ${TESTDEV}`],
  },
];
