import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_HOST, HostKernel, Machine, VIRT_RAM_BASE } from '../../src/platform/machine.js';
import { GuestDirtyLog } from '../../src/platform/migration/guest-dirty-log.js';
import { GuestKernel } from '../../src/guest/kernel.js';

const PAGE = 4096;
/** A host without hugepages: guest RAM is scattered 4 KiB frames, the hard case for the reverse map. */
const SMALL_PAGES = { ...DEFAULT_HOST, hugepages: false };

for (const [name, host] of [['1 GiB hugepages', DEFAULT_HOST], ['4 KiB pages', SMALL_PAGES]] as const) {
  test(`guest dirty log (${name}): guest stores name their guest pages, another VM's stores on the same host do not`, () => {
    const h = new HostKernel(host);
    const m = Machine.create(['-m', '1G', ...argsTail('0009:01:00.0')], { host: h });
    const other = Machine.create(['-m', '1G', ...argsTail('0009:01:00.1')], { host: h });
    try {
      const log = new GuestDirtyLog(m);
      assert.equal(log.pages, 2 ** 30 / PAGE);
      log.start();
      m.writeRam(VIRT_RAM_BASE + 5 * PAGE + 12, new Uint8Array([1, 2, 3]));
      m.writeRam(VIRT_RAM_BASE + 0x1234_5000 - 2, new Uint8Array(4)); // straddles two pages
      other.writeRam(VIRT_RAM_BASE + 7 * PAGE, new Uint8Array([9]));
      m.write(VIRT_RAM_BASE + 2 ** 30 - 4, 4, 0xdeadbeef); // a CPU store through the address space, last page
      assert.deepEqual(log.collect(), [5, 0x12344, 0x12345, 2 ** 30 / PAGE - 1]);
      assert.deepEqual(log.collect(), []);
      // Touched pages: the guest pages whose host pages lie in touched 64 KiB chunks.
      const touched = log.touchedPages();
      const last = 2 ** 30 / PAGE - 1;
      if (host.hugepages) {
        // Hugepage frames are aligned: whole guest chunks, and nothing of the other VM's.
        const chunk = (first: number) => Array.from({ length: 16 }, (_, i) => first + i);
        assert.deepEqual(touched, [...chunk(0), ...chunk(0x12340), ...chunk(last - 15)]);
      } else {
        for (const p of [5, 0x12344, 0x12345, last]) assert.ok(touched.includes(p), `page ${p} touched`);
        assert.ok(touched.length < 4 * 16 * 2, 'only the chunks written');
      }
      log.stop();
      log.stop();
      m.writeRam(VIRT_RAM_BASE, new Uint8Array([1]));
      assert.throws(() => log.collect(), /no dirty log running/);
    } finally {
      other.close();
      m.close();
    }
  });
}

test('guest dirty log: a device DMA write through the host SMMU names the guest page it landed in', () => {
  const m = Machine.create([]);
  try {
    const kernel = new GuestKernel(m.guestPlatform(), m.acpi);
    const dev = m.devices[0]!;
    const d = kernel.attachDevice(dev.host.guestSid);
    const pa = kernel.mem.alloc(2 * PAGE, PAGE);
    const iova = 0x1_0000_0000;
    d.map(iova, pa, 2 * PAGE);
    const log = new GuestDirtyLog(m);
    log.start();
    const w = m.host.devices[dev.hostIndex]!.dmaWrite(iova + PAGE + 100, new Uint8Array([0xaa, 0xbb]));
    assert.equal(w.ok, true);
    assert.deepEqual(log.collect(), [(pa - VIRT_RAM_BASE) / PAGE + 1]);
    // A DMA read marks nothing.
    m.host.devices[dev.hostIndex]!.dmaRead(iova, 8);
    assert.deepEqual(log.collect(), []);
    log.stop();
  } finally {
    m.close();
  }
});

test('guest dirty log: one log per host memory (a second start is refused, as two readers would steal bits)', () => {
  const h = new HostKernel(DEFAULT_HOST);
  const a = Machine.create(['-m', '1G', ...argsTail('0009:01:00.0')], { host: h });
  const b = Machine.create(['-m', '1G', ...argsTail('0009:01:00.1')], { host: h });
  try {
    const la = new GuestDirtyLog(a);
    la.start();
    assert.throws(() => new GuestDirtyLog(b).start(), /already running/);
    la.stop();
  } finally {
    a.close();
    b.close();
  }
});

function argsTail(bdf: string): string[] {
  return [
    '-object', 'iommufd,id=iommufd0',
    '-device', 'arm-smmuv3,primary-bus=pcie.0,id=smmuv3.0,accel=on,cmdqv=on,identifier=1',
    '-device', `vfio-pci,host=${bdf},iommufd=iommufd0,id=hostdev0`,
  ];
}
