import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { ITD_DMA_ERR_BAD_LEN, ITD_DMA_ERR_NOT_ARMED, ITD_DMA_ERR_TX_FAIL, ITD_DMA_RESULT_BUSY, ITD_DMA_RESULT_IDLE } from '../../../src/arch/iommu-testdev/registers.js';
import { ecamOffset, PciCfg } from '../../../src/arch/pci/config.js';
import { ModelLog } from '../../../src/kit/log.js';
import { Tracer } from '../../../src/kit/trace.js';
import { parseMcfg } from '../../../src/guest/acpi-parse.js';
import { GuestIommuTestdev, isIommuTestdev } from '../../../src/guest/iommu-testdev.js';
import { scanPci } from '../../../src/guest/pci.js';
import { Machine, OptionError } from '../../../src/platform/machine.js';
import { buildMcfg } from '../../../src/vmm/acpi/mcfg.js';
import { DmaTranslation, type PciIommu } from '../../../src/vmm/pci/iommu.js';
import { IommuTestdev, type DmaMemory } from '../../../src/vmm/pci/iommu-testdev.js';
import { TRACE_EVENTS } from '../../../src/vmm/pci/trace-events.js';

const ECAM = 0x40_1000_0000;
const QEMU = JSON.parse(readFileSync(new URL('../../../../test/vmm/pci/qemu-11.1-config.json', import.meta.url), 'utf8')) as {
  args: string[];
  functions: Record<string, { configSize: number; dwords: Record<string, string> }>;
  afterAllOnes: Record<string, string[]>;
};
/** The fixture's functions at their devfn on bus 0. */
const AT: Record<string, number> = { 'gpex-root': 0, 'pcie-root-port chassis=3,slot=2,port=5': 8, 'iommu-testdev': 16, 'pxb-pcie bus_nr=0x10': 24 };

function cfg(m: Machine, bus: number, devfn: number, reg: number): number {
  return Number(m.read(ECAM + ecamOffset(bus, devfn, reg), 4).value) >>> 0;
}

test('config space over ECAM equals QEMU 11.1.3 byte for byte (gpex-root, pcie-root-port, iommu-testdev, pxb-pcie)', () => {
  const m = Machine.create(QEMU.args, { firmware: false });
  for (const [name, f] of Object.entries(QEMU.functions)) {
    for (let reg = 0; reg < 0x1000; reg += 4) {
      const want = reg < f.configSize ? Number.parseInt(f.dwords[reg.toString(16).padStart(3, '0')] ?? '0', 16) : 0xffff_ffff;
      assert.equal(cfg(m, 0, AT[name]!, reg), want, `${name} @0x${reg.toString(16)}`);
    }
  }
  m.close();
});

test('write masks, RO and W1C bits: all-ones written to the header reads back as QEMU 11.1.3 shows', () => {
  const m = Machine.create(QEMU.args, { firmware: false });
  for (const [name, dwords] of Object.entries(QEMU.afterAllOnes)) {
    for (let i = 0; i < 16; i++) m.write(ECAM + ecamOffset(0, AT[name]!, 4 * i), 4, 0xffff_ffff);
    for (let i = 0; i < 16; i++) assert.equal(cfg(m, 0, AT[name]!, 4 * i), Number.parseInt(dwords[i]!, 16), `${name} @0x${(4 * i).toString(16)}`);
  }
  // System reset restores the reset image.
  m.reset();
  assert.equal(cfg(m, 0, 8, PciCfg.PRIMARY_BUS), 0);
  assert.equal(cfg(m, 0, 8, PciCfg.COMMAND), 0x0010_0000);
  m.close();
});

test('a byte write to a bridge bus number and a 16-bit COMMAND write take effect alone', () => {
  const m = Machine.create(['-device', 'pcie-root-port,id=rp1,chassis=1'], { firmware: false });
  m.write(ECAM + ecamOffset(0, 8, PciCfg.SECONDARY_BUS), 1, 7);
  m.write(ECAM + ecamOffset(0, 8, PciCfg.COMMAND), 2, 0xffff);
  assert.equal(cfg(m, 0, 8, PciCfg.PRIMARY_BUS), 0x0000_0700);
  assert.equal(cfg(m, 0, 8, PciCfg.COMMAND) & 0xffff, 0x0507);
  m.close();
});

const TOPOLOGIES: string[][] = [
  ['-device', 'pcie-root-port,id=rp1,chassis=1', '-device', 'pcie-root-port,id=rp2,chassis=2', '-device', 'iommu-testdev,bus=rp2'],
  ['-device', 'pxb-pcie,id=pcie.1,bus_nr=0x10', '-device', 'pcie-root-port,id=rp1,bus=pcie.1,chassis=1', '-device', 'pcie-root-port,id=rp2,bus=pcie.1,chassis=2,addr=4', '-device', 'iommu-testdev,bus=rp2'],
  [
    '-device', 'pxb-pcie,id=pcie.1,bus_nr=8', '-device', 'pxb-pcie,id=pcie.2,bus_nr=0x20,bus=pcie.0', '-device', 'pcie-root-port,id=a,bus=pcie.0,chassis=1',
    '-device', 'pcie-root-port,id=b,bus=pcie.1,chassis=2', '-device', 'pcie-root-port,id=c,bus=pcie.2,chassis=3', '-device', 'pcie-root-port,id=d,bus=pcie.2,chassis=4',
    '-device', 'iommu-testdev,bus=d',
  ],
];

test('firmware enumeration gives every root port the bus number pci-topology.ts computed, and the guest scan finds every function', () => {
  for (const argv of TOPOLOGIES) {
    const m = Machine.create(argv);
    for (const b of m.buses) {
      if (b.root === b.id) continue;
      const br = m.firmware!.bridges.find((x) => x.secondary === b.busNr);
      assert.ok(br, `${b.id}: firmware gave no bridge bus ${b.busNr}`);
      assert.equal(br.subordinate, b.busNr);
    }
    assert.equal(m.firmware!.unassigned, 0);
    const found = scanPci(m.guestPlatform().bus, m.acpi);
    const expected = m.pciFunctions.filter((f) => f !== undefined).map((f) => `${f.type}@${f.busNumber}:${f.devfn}`).concat('gpex-root@0:0');
    assert.deepEqual(found.map((d) => `${d.vendor.toString(16)}:${d.device.toString(16)}@${d.bdf}`).length, expected.length, argv.join(' '));
    const testdev = found.find(isIommuTestdev)!;
    const fn = m.testdevs[0]!;
    assert.equal(testdev.bus, fn.busNumber);
    assert.equal(testdev.devfn, fn.devfn);
    assert.ok(testdev.bars[0]!.addr >= 0x1000_0000, 'BAR0 assigned in the 32-bit window');
    m.close();
  }
});

test('the IORT and DSDT built after enumeration route the root ports firmware numbered (pxb 0x10 + 2 ports: 0x10..0x12)', () => {
  const m = Machine.create(TOPOLOGIES[1]!);
  const topo = m.acpiTopology();
  assert.deepEqual(topo.rootComplexes.map((r) => [r.busNr, r.subordinateBus ?? r.busNr]), [[0, 0], [0x10, 0x12]]);
  m.close();
  // Without firmware the bridges are unnumbered: the tables would describe the root buses only.
  const raw = Machine.create(TOPOLOGIES[1]!, { firmware: false });
  assert.deepEqual(raw.acpiTopology().rootComplexes.map((r) => r.subordinateBus ?? r.busNr), [0, 0x10]);
  raw.close();
});

test('MCFG: one allocation for the high ECAM (buses 0-255), or the low ECAM (0-15) with highmem-ecam=off', () => {
  const m = Machine.create(['-m', '1G']);
  assert.deepEqual(parseMcfg(m.acpi.mcfg), [{ base: ECAM, segment: 0, startBus: 0, endBus: 255 }]);
  assert.equal(m.acpi.mcfg.length, 60);
  m.close();
  const low = Machine.create(['-M', 'virt,highmem-ecam=off', '-m', '1G']);
  assert.deepEqual(parseMcfg(low.acpi.mcfg), [{ base: 0x3f00_0000, segment: 0, startBus: 0, endBus: 15 }]);
  assert.equal(cfg(low, 0, 0, 0) === 0, true, 'nothing at the high ECAM');
  assert.equal(Number(low.read(0x3f00_0000, 4).value), 0x0008_1b36);
  low.close();
  assert.equal(buildMcfg({ base: ECAM, endBus: 255 })[8], 1, 'revision 1');
});

test('iommu-testdev through the guest driver: identity DMA without an IOMMU, BAR decode gated by COMMAND.MEMORY', () => {
  const m = Machine.create(['-m', '1G', '-device', 'iommu-testdev,id=t0']);
  const [d] = scanPci(m.guestPlatform().bus, m.acpi).filter(isIommuTestdev);
  const drv = GuestIommuTestdev.probe(m.guestPlatform().bus, d!);
  assert.equal(drv.dma(0x4000_2000, 0x4000_2000, 6), 0);
  assert.deepEqual([...m.readRam(0x4000_2000, 8)], [0x78, 0x56, 0x34, 0x12, 0x78, 0x56, 0, 0]);
  // Memory decoding off: the BAR is gone (reads 0, as unassigned space).
  m.write(ECAM + ecamOffset(d!.bus, d!.devfn, PciCfg.COMMAND), 2, 0x4);
  assert.equal(Number(m.read(drv.bar0 + 0x10, 4).value), 0);
  m.close();
});

test('emulated endpoints are refused behind an accel=on SMMU with QEMU\'s text', () => {
  assert.throws(
    () => Machine.create(['-object', 'iommufd,id=iommufd0', '-device', 'arm-smmuv3,primary-bus=pcie.0,accel=on,identifier=1', '-device', 'vfio-pci,host=0009:01:00.0,iommufd=iommufd0', '-device', 'iommu-testdev']),
    (e: Error) => e instanceof OptionError && /iommu-testdev: Emulated endpoint devices are not allowed when using arm-smmuv3,accel=on/.test(e.message),
  );
});

/** A direct rig: the device on its own with a fake IOMMU and a RAM array. */
function rig(iommu: PciIommu | undefined) {
  const ram = new Uint8Array(0x10000);
  const memory: DmaMemory = {
    write: (pa, b) => pa + b.length <= ram.length && (ram.set(b, pa), true),
    read: (pa, out) => pa + out.length <= ram.length && (out.set(ram.subarray(pa, pa + out.length)), true),
  };
  const dev = new IommuTestdev('t', { iommu: () => iommu, memory, log: new ModelLog(), tracer: new Tracer(TRACE_EVENTS) });
  const w = (off: number, v: number) => dev.bank.write(off, 4, v);
  const r = (off: number) => dev.bank.read(off, 4) >>> 0;
  return { dev, ram, w, r };
}

test('iommu-testdev registers: reset values, arm/disarm, not armed, bad length, write-only doorbell', () => {
  const { dev, w, r } = rig(undefined);
  assert.equal(r(0x10), ITD_DMA_RESULT_IDLE);
  assert.equal(r(0x18), 2, 'ATTRS resets to space = Non-secure');
  assert.equal(r(0x00), 0);
  assert.equal(r(0x10), ITD_DMA_ERR_NOT_ARMED);
  w(0x14, 1);
  assert.equal(r(0x10), ITD_DMA_RESULT_BUSY);
  w(0x14, 0);
  assert.equal(r(0x10), ITD_DMA_RESULT_IDLE);
  w(0x14, 1);
  r(0x00);
  assert.equal(r(0x10), ITD_DMA_ERR_BAD_LEN, 'length 0');
  assert.equal(dev.isArmed, false, 'a trigger consumes the arm');
  w(0x04, 0x1234);
  w(0x10, 0xabcd);
  assert.equal(r(0x10), 0xabcd, 'RESULT is writable');
  dev.reset();
  assert.equal(r(0x04), 0);
  assert.equal(r(0x10), ITD_DMA_RESULT_IDLE);
});

test('iommu-testdev DMA goes through the IOMMU with the live requester ID; a fault is TX_FAIL; COMMAND.MASTER is not consulted (as QEMU 11.1)', () => {
  const seen: number[] = [];
  const iommu: PciIommu = {
    translate(sid: number, iova: number, _write: boolean, out: DmaTranslation) {
      seen.push(sid);
      out.ok = iova < 0x8000;
      out.pa = iova + 0x100;
      out.span = 0x1000 - (iova & 0xfff);
      out.fault = out.ok ? 0 : 0x10;
      return out;
    },
  };
  const { dev, ram, w, r } = rig(iommu);
  const run = (gva: number, gpa: number, len: number) => {
    w(0x04, gva);
    w(0x1c, gpa);
    w(0x0c, len);
    w(0x14, 1);
    r(0x00);
    return r(0x10);
  };
  dev.devfn = 0x18;
  assert.equal(run(0x0ffe, 0x10fe, 4), 0, 'two pages, translated');
  assert.deepEqual([...ram.subarray(0x10fe, 0x1102)], [0x78, 0x56, 0x34, 0x12]);
  assert.equal(seen[0], 0x18);
  assert.equal(run(0x9000, 0x9100, 4), ITD_DMA_ERR_TX_FAIL);
  assert.equal(dev.stats.faults, 1);
});

test('a bus lists its bridges in devfn order whatever the plug order, and ECAM reaches the bus behind each', () => {
  // Plugged at slot 6, then slot 3: the firmware numbers depth-first in devfn order, so slot 3 gets bus 1.
  const m = Machine.create(['-device', 'pcie-root-port,id=a,chassis=1,addr=6', '-device', 'pcie-root-port,id=b,chassis=2,addr=3', '-device', 'iommu-testdev,bus=a']);
  const root = m.pci.roots[0]!;
  assert.deepEqual(root.bridges().map((b) => [b.id, b.devfn]), [['b', 3 << 3], ['a', 6 << 3]]);
  assert.deepEqual(root.bridges().map((b) => b.secondaryBus), [1, 2]);
  // The testdev behind port a (bus 2) answers there, and nowhere on bus 1.
  assert.equal(cfg(m, 2, 0, PciCfg.VENDOR_ID) & 0xffff, 0x1b36);
  assert.equal(cfg(m, 1, 0, PciCfg.VENDOR_ID), 0xffff_ffff);
  m.close();
});
