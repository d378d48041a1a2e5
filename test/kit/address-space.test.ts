import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AddressSpace } from '../../src/kit/address-space.js';
import { ModelLog } from '../../src/kit/log.js';
import { MemoryRegion, MMIO_RULES, type RegionOps } from '../../src/kit/memory-region.js';
import { SparseMemory } from '../../src/kit/sparse-memory.js';

/** An MMIO device that records every call and answers reads with a tag. */
class RecordingDevice implements RegionOps {
  calls: string[] = [];
  constructor(readonly tag: number) {}
  read(offset: number, size: number): number {
    this.calls.push(`r${size}@${offset.toString(16)}`);
    return this.tag;
  }
  write(offset: number, size: number, value: number): void {
    this.calls.push(`w${size}@${offset.toString(16)}=${value.toString(16)}`);
  }
  read64(offset: number): bigint {
    this.calls.push(`r8@${offset.toString(16)}`);
    return BigInt(this.tag);
  }
  write64(offset: number, value: bigint): void {
    this.calls.push(`w8@${offset.toString(16)}=${value.toString(16)}`);
  }
}

function machine() {
  const log = new ModelLog();
  const root = MemoryRegion.container('system', 2 ** 40);
  const as = new AddressSpace('memory', root, log);
  return { log, root, as };
}

test('dispatch picks the right region and reports traps', () => {
  const { root, as } = machine();
  const dev = new RecordingDevice(0x11);
  const ram = new SparseMemory(0x10000);
  root.addSubregion(0x0900_0000, MemoryRegion.mmio('dev', 0x1000, dev));
  root.addSubregion(0x4000_0000, MemoryRegion.ram('ram', 0x10000, ram));
  const r = as.read(0x0900_0010, 4);
  assert.deepEqual([r.value, r.trapped, r.ok, r.region], [0x11n, true, true, 'dev']);
  const w = as.write(0x4000_0100, 8, 0x1122_3344_5566_7788n);
  assert.deepEqual([w.trapped, w.ok], [false, true]);
  assert.equal(ram.read64(0x100), 0x1122_3344_5566_7788n);
  assert.equal(as.read32(0x4000_0104), 0x1122_3344);
  assert.equal(as.stats.exits, 1);
  assert.equal(as.stats.ram, 2);
});

test('higher-priority sibling shadows a lower one; removing it uncovers the other', () => {
  const { root, as } = machine();
  const low = new RecordingDevice(1);
  const high = new RecordingDevice(2);
  const lowR = MemoryRegion.mmio('low', 0x4000, low);
  const highR = MemoryRegion.mmio('high', 0x1000, high);
  root.addSubregion(0x10000, lowR, 0);
  root.addSubregion(0x11000, highR, 1);
  assert.equal(as.read32(0x10ffc), 1);
  assert.equal(as.read32(0x11000), 2);
  assert.equal(as.read32(0x11ffc), 2);
  assert.equal(as.read32(0x12000), 1);
  assert.equal(as.resolve(0x12000)?.offset, 0x2000, 'offset is relative to the region, not the gap');
  root.removeSubregion(highR);
  assert.equal(as.read32(0x11000), 1);
  // Equal priority: the newer one wins, as in QEMU.
  root.addSubregion(0x11000, highR, 0);
  assert.equal(as.read32(0x11000), 2);
});

test('invalid size and alignment are rejected without calling the device', () => {
  const { root, as, log } = machine();
  const dev = new RecordingDevice(7);
  root.addSubregion(0x1000, MemoryRegion.mmio('dev', 0x1000, dev, MMIO_RULES));
  const byte = as.read(0x1000, 1);
  assert.deepEqual([byte.ok, byte.trapped, byte.value], [false, true, 0n]);
  const unaligned = as.write(0x1002, 4, 5);
  assert.equal(unaligned.ok, false);
  const unaligned8 = as.read(0x1004, 8);
  assert.equal(unaligned8.ok, false);
  assert.deepEqual(dev.calls, [], 'the device never saw the invalid accesses');
  assert.equal(log.count('guest_error', 'memory'), 3);
  assert.match(log.entries()[0]!.message, /size 1, region 'dev', reason: invalid size \(min:4 max:8\)/);
  assert.match(log.entries()[1]!.message, /reason: unaligned/);
  assert.equal(as.stats.invalid, 3);
  assert.equal(as.read(0x1008, 8).ok, true);
  assert.deepEqual(dev.calls, ['r8@8']);
});

test('unassigned addresses log a guest error and read as zero', () => {
  const { as, log } = machine();
  const r = as.read(0x5000_0000, 4);
  assert.deepEqual([r.ok, r.value], [false, 0n]);
  assert.equal(as.stats.unassigned, 1);
  assert.match(log.last()!.message, /Unassigned read at addr 0x0000000050000000/);
});

test('a RAM-device page shadows an MMIO page: direct accesses, no exits, backing model sees them', () => {
  const { root, as } = machine();
  const mmioDev = new RecordingDevice(0xaa);
  const cmdqv = MemoryRegion.mmio('tegra241-cmdqv', 0x50000, mmioDev);
  root.addSubregion(0x0904_0000, cmdqv);
  // A host page (e.g. VINTF page0) whose writes have side effects in the host model.
  const hostPage = new RecordingDevice(0xbb);
  const page0 = MemoryRegion.ramDevice('vintf-page0', 0x10000, hostPage, { skipIommuMap: true });
  cmdqv.addSubregion(0x30000, page0, 1);
  assert.equal(page0.skipIommuMap, true);

  const before = { ...as.stats };
  const w = as.write(0x0907_0000, 4, 0x10);
  assert.deepEqual([w.trapped, w.region], [false, 'vintf-page0']);
  assert.equal(as.read32(0x0907_0004), 0xbb);
  assert.equal(as.stats.exits - before.exits, 0, 'no VM exit on the mapped page');
  assert.equal(as.stats.direct - before.direct, 2);
  assert.deepEqual(hostPage.calls, ['w4@0=10', 'r4@4']);
  assert.deepEqual(mmioDev.calls, []);

  // Outside the page the MMIO region still traps.
  assert.equal(as.write(0x0906_0000, 4, 1).trapped, true);
  assert.equal(as.stats.exits - before.exits, 1);

  // Unmapping the page (VINTF disabled) makes the same address trap to the VMM again.
  page0.setEnabled(false);
  const again = as.write(0x0907_0000, 4, 0x20);
  assert.deepEqual([again.trapped, again.region], [true, 'tegra241-cmdqv']);
  assert.deepEqual(mmioDev.calls, ['w4@20000=1', 'w4@30000=20']);
  assert.equal(as.stats.exits - before.exits, 2);
});

test('containers leave holes through which lower-priority siblings show', () => {
  const { root, as } = machine();
  const bg = new RecordingDevice(1);
  root.addSubregion(0, MemoryRegion.mmio('background', 0x10000, bg), 0);
  const c = MemoryRegion.container('overlay', 0x10000);
  c.addSubregion(0x4000, MemoryRegion.mmio('inner', 0x1000, new RecordingDevice(2)));
  root.addSubregion(0, c, 5);
  assert.equal(as.read32(0x4000), 2);
  assert.equal(as.read32(0x3000), 1);
  assert.equal(as.flatView().map((r) => r.region.name).join(','), 'background,inner,background');
});

test('sparse RAM costs only what is touched', () => {
  const mem = new SparseMemory(16 * 2 ** 30);
  assert.equal(mem.residentBytes, 0);
  assert.equal(mem.read(0x3_0000_0000, 4), 0);
  mem.write(0x3_0000_0000, 4, 0xdead_beef);
  mem.write64(0x1_0000_fffc, 0x0102_0304_0506_0708n); // crosses a chunk boundary
  assert.equal(mem.read64(0x1_0000_fffc), 0x0102_0304_0506_0708n);
  assert.equal(mem.residentBytes, 3 * 65536);
  assert.equal(mem.read32(0x3_0000_0000), 0xdead_beef);
  const bytes = mem.readBytes(0x3_0000_0000 - 2, 6);
  assert.deepEqual([...bytes], [0, 0, 0xef, 0xbe, 0xad, 0xde]);
  mem.fill(0x1000_0000, 0x10_0000, 0);
  assert.equal(mem.residentBytes, 3 * 65536, 'zero fill of untouched memory allocates nothing');
  assert.throws(() => mem.read(16 * 2 ** 30 - 2, 4), RangeError);
});

test('topology versions are per tree: a change in one machine does not re-flatten another', () => {
  const a = MemoryRegion.container('a', 0x10000);
  const b = MemoryRegion.container('b', 0x10000);
  const inner = MemoryRegion.container('inner', 0x1000);
  a.addSubregion(0, inner);
  const va = a.topologyVersion;
  const vb = b.topologyVersion;
  inner.addSubregion(0, MemoryRegion.container('leaf', 0x100));
  assert.ok(a.topologyVersion > va, 'a change below propagates to the root');
  assert.equal(b.topologyVersion, vb, 'an unrelated tree is untouched');
  const p = MemoryRegion.container('p', 0x1000);
  const q = MemoryRegion.container('q', 0x1000);
  p.addSubregion(0, q);
  assert.throws(() => q.addSubregion(0, p), /loop/);
});
