// The vfio-pci function through ECAM: its config space is the host device's (read through
// VFIO at plug time, reads merged with the device's live bits), and the guest's COMMAND writes
// reach the device, so bus-master enable gates the passthrough device's DMA
// (docs/reference/iommufd-uapi.md §16.5).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ecamOffset, PCI_COMMAND_MASTER, PciCfg } from '../../../src/arch/pci/config.js';
import { TextTraceSink } from '../../../src/kit/trace.js';
import { DEFAULT_HOST, Machine } from '../../../src/platform/machine.js';
import * as V from '../../../src/uapi/vfio.js';

const ECAM = 0x40_1000_0000;

function setup(firmware: boolean, host = DEFAULT_HOST) {
  const m = Machine.create(undefined, { firmware, host });
  const d = m.devices[0]!;
  const rid = d.host.guestSid;
  const at = (reg: number) => ECAM + ecamOffset(rid >> 8, rid & 0xff, reg);
  const hostDev = m.host.devices[d.hostIndex]!;
  /** The host device's config dword at `reg`, through a pread of its own (what vfio-pci serves). */
  const hostCfg = (reg: number) => {
    const va = m.proc.mem.mmapAnon(4096);
    const n = m.proc.pread(d.host.vfioFd, va, 4, V.vfioPciIndexToOffset(V.VFIO_PCI_CONFIG_REGION_INDEX) + reg);
    assert.equal(n, 4);
    const v = new DataView(m.proc.mem.copyFromUser(va, 4).buffer).getUint32(0, true);
    m.proc.mem.munmap(va, 4096);
    return v;
  };
  return { m, at, hostDev, hostCfg, cfg: (reg: number) => Number(m.read(at(reg), 4).value) >>> 0 };
}

for (const firmware of [false, true]) {
  test(`vfio-pci config bytes through ECAM equal the host device's config (${firmware ? 'after firmware assigned BARs' : 'at reset'})`, () => {
    const { m, cfg, hostCfg } = setup(firmware);
    for (let reg = 0; reg < 0x100; reg += 4) assert.equal(cfg(reg), hostCfg(reg), `@0x${reg.toString(16)}`);
    assert.equal(cfg(0), 0x2342_10de);
    assert.equal(cfg(8), 0x0302_00a1);
    // Past the conventional space: all-ones, as for any conventional function.
    assert.equal(cfg(0x100), 0xffff_ffff);
    if (firmware) assert.notEqual(cfg(PciCfg.BAR0) & 0xffff_fff0, 0, 'firmware placed BAR0');
    m.close();
  });
}

test('clearing COMMAND.MASTER through ECAM makes the host device\'s DMA a master abort; setting it again makes DMA work', () => {
  const { m, at, hostDev } = setup(true);
  const iova = 0x4000_0000 + 0x10_0000;
  assert.equal(hostDev.dmaWrite(iova, Uint8Array.of(1, 2, 3, 4)).ok, true, 'firmware enabled bus mastering');
  const cmd = Number(m.read(at(PciCfg.COMMAND), 2).value);
  assert.ok(cmd & PCI_COMMAND_MASTER);
  m.write(at(PciCfg.COMMAND), 2, cmd & ~PCI_COMMAND_MASTER);
  assert.equal(hostDev.config.busMaster, false, 'the write reached the host device');
  const r = hostDev.dmaWrite(iova, Uint8Array.of(9, 9, 9, 9));
  assert.deepEqual([r.ok, r.masterAbort, r.event], [false, true, 0]);
  assert.deepEqual([...m.readRam(iova, 4)], [1, 2, 3, 4], 'nothing landed');
  m.write(at(PciCfg.COMMAND), 2, cmd);
  assert.equal(hostDev.dmaWrite(iova, Uint8Array.of(5, 6, 7, 8)).ok, true);
  assert.deepEqual([...m.readRam(iova, 4)], [5, 6, 7, 8]);
  m.close();
});

test('the header and BAR sizes come from the host device: a different device shows its IDs, class and BAR size to the guest', () => {
  const host = { ...DEFAULT_HOST, devices: [{ ...DEFAULT_HOST.devices[0]!, vendor: 0x15b3, device: 0x1021, classCode: 0x02_00_00, bars: [{ index: 0, size: 0x400_0000, is64: true, prefetch: true }] }] };
  const { m, at, cfg } = setup(false, host);
  assert.equal(cfg(0), 0x1021_15b3);
  assert.equal(cfg(8) >>> 8, 0x02_0000);
  assert.equal(cfg(PciCfg.BAR0), 0xc, 'BAR0 64-bit prefetchable from the device\'s register');
  m.write(at(PciCfg.BAR0), 4, 0xffff_ffff);
  m.write(at(PciCfg.BAR0 + 4), 4, 0xffff_ffff);
  assert.equal(cfg(PciCfg.BAR0), 0xfc00_000c, 'size probing gives the region size (64 MiB)');
  assert.equal(cfg(PciCfg.BAR0 + 4), 0xffff_ffff);
  assert.equal(cfg(PciCfg.BAR0 + 8), 0, 'no BAR2');
  m.close();
});

test('plug-time VFIO calls and config accesses are traced with QEMU\'s event names', () => {
  const m = Machine.create(undefined, { firmware: false });
  const sink = new TextTraceSink();
  m.tracer.enable('vfio_*');
  m.tracer.addSink(sink);
  const rid = m.devices[0]!.host.guestSid;
  m.write(ECAM + ecamOffset(rid >> 8, rid & 0xff, PciCfg.COMMAND), 2, 0x6);
  m.read(ECAM + ecamOffset(rid >> 8, rid & 0xff, 0), 4);
  assert.ok(sink.lines.some((l) => l.includes('vfio_pci_write_config') && l.includes('@0x4, 0x6, len=0x2')), sink.lines.join('\n'));
  assert.ok(sink.lines.some((l) => l.includes('vfio_pci_read_config') && l.includes('0x234210de')), sink.lines.join('\n'));
  const backend = [...m.backends.values()][0]!;
  assert.equal(backend.callCounts.get('VFIO_DEVICE_GET_INFO'), 1);
  assert.equal(backend.callCounts.get('VFIO_DEVICE_GET_REGION_INFO'), 7, 'six BARs and the config region');
  m.close();
});
