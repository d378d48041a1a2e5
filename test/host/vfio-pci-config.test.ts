// The VFIO device file of a host PCI device at the uAPI seam: VFIO_DEVICE_GET_INFO,
// VFIO_DEVICE_GET_REGION_INFO and VFIO_DEVICE_RESET bytes and errnos, pread/pwrite of the config
// region at 7 << 40 (docs/reference/iommufd-uapi.md §16), and COMMAND.MASTER gating the
// device's DMA.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULT_HOST } from '../../src/host/config.js';
import { HostKernel } from '../../src/host/kernel/host-kernel.js';
import { Errno } from '../../src/uapi/errno.js';
import * as V from '../../src/uapi/vfio.js';
import { makeVm, type VmSetup } from './uapi-client.js';

const CFG = V.vfioPciIndexToOffset(V.VFIO_PCI_CONFIG_REGION_INDEX);

test('VFIO ioctl numbers, struct layouts and the vfio-pci region offsets are the header\'s', () => {
  assert.deepEqual([V.VFIO_DEVICE_GET_INFO, V.VFIO_DEVICE_GET_REGION_INFO, V.VFIO_DEVICE_RESET], [0x3b6b, 0x3b6c, 0x3b6f]);
  assert.deepEqual([V.vfio_device_info.size, V.vfio_device_info.minSize, V.vfio_region_info.size, V.vfio_region_info.minSize], [24, 16, 32, 32]);
  assert.deepEqual(V.vfio_device_info.fields.map((f) => [f.name, f.offset, f.size]), [
    ['argsz', 0, 4], ['flags', 4, 4], ['num_regions', 8, 4], ['num_irqs', 12, 4], ['cap_offset', 16, 4], ['pad', 20, 4],
  ]);
  assert.deepEqual(V.vfio_region_info.fields.map((f) => [f.name, f.offset, f.size]), [
    ['argsz', 0, 4], ['flags', 4, 4], ['index', 8, 4], ['cap_offset', 12, 4], ['size', 16, 8], ['offset', 24, 8],
  ]);
  assert.equal(CFG, 0x700_0000_0000);
  assert.deepEqual(V.vfioPciOffsetToIndex(CFG + 4), { index: 7, within: 4 });
  assert.deepEqual([V.VFIO_DEVICE_FLAGS_RESET, V.VFIO_DEVICE_FLAGS_PCI], [1, 2]);
});

function vm(): VmSetup {
  return makeVm(new HostKernel(DEFAULT_HOST), 0, 2 ** 30, false);
}

/** Run a VFIO ioctl with `bytes` as the argument; returns the return value and the bytes after. */
function ioctl(s: VmSetup, request: number, bytes: Uint8Array): { ret: number; out: Uint8Array } {
  const va = s.c.put(bytes);
  const ret = s.c.proc.ioctl(s.vfio, request, va);
  return { ret, out: s.c.proc.mem.copyFromUser(va, bytes.length) };
}

test('VFIO_DEVICE_GET_INFO: a PCI device with reset, 9 regions and 5 IRQ indexes; 16 bytes copied back; short argsz EINVAL', () => {
  const s = vm();
  const arg = new Uint8Array(24).fill(0xaa);
  new DataView(arg.buffer).setUint32(0, 24, true);
  const { ret, out } = ioctl(s, V.VFIO_DEVICE_GET_INFO, arg);
  assert.equal(ret, 0);
  const d = new DataView(out.buffer);
  assert.deepEqual([d.getUint32(0, true), d.getUint32(4, true), d.getUint32(8, true), d.getUint32(12, true)], [24, 3, 9, 5]);
  assert.deepEqual([...out.subarray(16)], new Array(8).fill(0xaa), 'cap_offset and pad untouched without a capability chain');
  new DataView(arg.buffer).setUint32(0, 15, true);
  assert.equal(ioctl(s, V.VFIO_DEVICE_GET_INFO, arg).ret, -Errno.EINVAL);
  // An unbound file has no access to the device yet.
  const unbound = s.c.proc.open('/dev/vfio/devices/vfio1');
  new DataView(arg.buffer).setUint32(0, 24, true);
  assert.equal(s.c.proc.ioctl(unbound, V.VFIO_DEVICE_GET_INFO, s.c.put(arg)), -Errno.EINVAL);
});

test('VFIO_DEVICE_GET_REGION_INFO: config at 7 << 40 (256 bytes, RW), BAR sizes, absent BARs empty, bad indexes EINVAL', () => {
  const s = vm();
  const region = (index: number, argsz = 32) => {
    const r = ioctl(s, V.VFIO_DEVICE_GET_REGION_INFO, V.vfio_region_info.encode({ argsz, index }));
    return { ret: r.ret, v: V.vfio_region_info.decode(r.out) };
  };
  const cfg = region(7);
  assert.equal(cfg.ret, 0);
  assert.deepEqual([cfg.v.flags, cfg.v.size, cfg.v.offset], [3, 256n, 0x700_0000_0000n]);
  const bar0 = region(0);
  assert.deepEqual([bar0.v.flags, bar0.v.size, bar0.v.offset], [7, 0x100_0000n, 0n]);
  const bar2 = region(2);
  assert.deepEqual([bar2.v.size, bar2.v.offset], [0x200_0000n, 0x200_0000_0000n]);
  const bar1 = region(1);
  assert.deepEqual([bar1.ret, bar1.v.flags, bar1.v.size], [0, 0, 0n]);
  assert.equal(region(V.VFIO_PCI_ROM_REGION_INDEX).v.size, 0n);
  assert.equal(region(V.VFIO_PCI_VGA_REGION_INDEX).ret, -Errno.EINVAL, 'not a VGA device');
  assert.equal(region(9).ret, -Errno.EINVAL);
  assert.equal(region(7, 31).ret, -Errno.EINVAL);
});

test('pread/pwrite of the config region: bytes, chunking, EFAULT past the space, EINVAL for other regions and files', () => {
  const s = vm();
  const p = s.c.proc;
  const buf = s.c.alloc(256);
  assert.equal(p.pread(s.vfio, buf, 256, CFG), 256);
  const space = p.mem.copyFromUser(buf, 256);
  const d = new DataView(space.buffer);
  assert.equal(d.getUint32(0, true), 0x2342_10de, 'vendor/device');
  assert.equal(d.getUint32(8, true), 0x0302_00a1, 'class and revision');
  assert.equal(d.getUint16(4, true) & 0x6, 0x6, 'memory + bus master at reset');
  assert.deepEqual([d.getUint32(0x10, true), d.getUint32(0x18, true)], [0, 0xc], 'BAR0 32-bit, BAR2 64-bit prefetchable');
  // An unaligned 3-byte read: chunks of 1 and 2 bytes.
  assert.equal(p.pread(s.vfio, buf, 3, CFG + 1), 3);
  assert.deepEqual([...p.mem.copyFromUser(buf, 3)], [...space.subarray(1, 4)]);
  assert.equal(p.pread(s.vfio, buf, 4, CFG + 0x100), -Errno.EFAULT);
  assert.equal(p.pread(s.vfio, buf, 4, CFG + 0xfe), -Errno.EFAULT);
  assert.equal(p.pread(s.vfio, buf, 0, CFG), 0);
  assert.equal(p.pread(s.vfio, buf, 4, 0), -Errno.EINVAL, 'BAR0 contents are not modelled');
  assert.equal(p.pread(s.vfio, buf, 4, V.vfioPciIndexToOffset(9)), -Errno.EINVAL);
  assert.equal(p.pread(s.c.fd, buf, 4, CFG), -Errno.EINVAL, 'iommufd file');
  assert.equal(p.pread(99, buf, 4, CFG), -Errno.EBADF);
  // Writes: read-only IDs stay, BAR sizing reads the size back, COMMAND's bits reach the device.
  const w = (off: number, bytes: number[]) => p.pwrite(s.vfio, s.c.put(Uint8Array.from(bytes)), bytes.length, CFG + off);
  assert.equal(w(0, [0, 0, 0, 0]), 4);
  assert.equal(w(0x10, [0xff, 0xff, 0xff, 0xff]), 4);
  assert.equal(p.pread(s.vfio, buf, 4, CFG), 4);
  assert.equal(new DataView(p.mem.copyFromUser(buf, 4).buffer).getUint32(0, true), 0x2342_10de);
  assert.equal(p.pread(s.vfio, buf, 4, CFG + 0x10), 4);
  assert.equal(new DataView(p.mem.copyFromUser(buf, 4).buffer).getUint32(0, true), 0xff00_0000);
  assert.equal(w(0xff, [1, 2]), -Errno.EFAULT);
  const dev = s.kernel.devices[0]!;
  assert.equal(w(4, [0x02, 0x00]), 2);
  assert.equal(dev.config.busMaster, false);
});

test('COMMAND.MASTER gates the host device\'s DMA: a master abort (no event, no memory touched) until set again; reset restores it', () => {
  const s = vm();
  assert.equal(s.c.attach(s.vfio, s.s2Id), 0);
  const dev = s.kernel.devices[0]!;
  const cmd = (v: number) => s.c.proc.pwrite(s.vfio, s.c.put(Uint8Array.of(v, 0)), 2, CFG + 4);
  assert.equal(dev.dmaWrite(0x2000, Uint8Array.of(1, 2, 3, 4)).ok, true);
  assert.equal(cmd(0x02), 2);
  const aborted = dev.dmaWrite(0x2000, Uint8Array.of(9, 9, 9, 9));
  assert.deepEqual([aborted.ok, aborted.masterAbort, aborted.event, aborted.pa], [false, true, 0, -1]);
  assert.equal(dev.dmaRead(0x2000, 4).masterAbort, true);
  assert.equal(cmd(0x06), 2);
  const back = dev.dmaRead(0x2000, 4);
  assert.deepEqual([back.ok, back.masterAbort, [...back.data!]], [true, false, [1, 2, 3, 4]], 'the aborted write never landed');
  assert.equal(cmd(0x00), 2);
  assert.equal(s.c.proc.ioctl(s.vfio, V.VFIO_DEVICE_RESET, 0), 0);
  assert.equal(dev.config.busMaster, true, 'VFIO_DEVICE_RESET restores the reset image');
});

test('host devices take vendor, device, class and BARs from the host configuration', () => {
  const host = { ...DEFAULT_HOST, devices: [{ bdf: '0009:01:00.0', sid: 0x100, smmu: 'smmu0', vendor: 0x15b3, device: 0x1021, classCode: 0x02_00_00, bars: [{ index: 0, size: 0x200_0000, is64: true, prefetch: true }] }] };
  const s = makeVm(new HostKernel(host), 0, 2 ** 30, false);
  const buf = s.c.alloc(16);
  assert.equal(s.c.proc.pread(s.vfio, buf, 16, CFG), 16);
  const d = new DataView(s.c.proc.mem.copyFromUser(buf, 16).buffer);
  assert.deepEqual([d.getUint32(0, true), d.getUint32(8, true) >>> 8], [0x1021_15b3, 0x02_0000]);
});

test('dmaWriteOk / dmaReadOk move the same bytes as dmaWrite / dmaRead and say whether the DMA completed', () => {
  const s = vm();
  assert.equal(s.c.attach(s.vfio, s.s2Id), 0);
  const dev = s.kernel.devices[0]!;
  assert.equal(dev.dmaWriteOk(0x2000, Uint8Array.of(5, 6, 7, 8)), true);
  assert.deepEqual([...dev.dmaRead(0x2000, 4).data!], [5, 6, 7, 8], 'the write landed');
  assert.equal(dev.dmaReadOk(0x2000, 4), true);
  assert.equal(dev.dmaReadOk(0x2000, 64), true, 'a read longer than the reused buffer');
  const unmapped = 0x7fff_0000;
  const fault = dev.dmaRead(unmapped, 4);
  assert.equal(fault.ok, false);
  assert.notEqual(fault.event, 0, 'a translation fault, not an abort');
  assert.equal(dev.dmaReadOk(unmapped, 4), false);
  assert.equal(dev.dmaWriteOk(unmapped, Uint8Array.of(1)), false);
  assert.equal(s.c.proc.pwrite(s.vfio, s.c.put(Uint8Array.of(0x02, 0)), 2, CFG + 4), 2); // MASTER off
  assert.equal(dev.dmaWriteOk(0x2000, Uint8Array.of(9, 9, 9, 9)), false);
  assert.equal(dev.dmaReadOk(0x2000, 4), false);
  assert.equal(s.c.proc.pwrite(s.vfio, s.c.put(Uint8Array.of(0x06, 0)), 2, CFG + 4), 2);
  assert.deepEqual([...dev.dmaRead(0x2000, 4).data!], [5, 6, 7, 8], 'the aborted write never landed');
});
