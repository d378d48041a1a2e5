// The guest CPU's bus (VirtMachine.guestPlatform().bus): RAM accesses go straight to the RAM
// backing but are counted as the address space counts them, a region placed over RAM takes its
// accesses back, and a closed machine refuses them.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MemoryRegion } from '../../../src/kit/memory-region.js';
import { Machine } from '../../../src/platform/machine.js';

const GIB = 2 ** 30;

describe('guest CPU bus (VirtMachine.guestPlatform().bus)', () => {
  test('RAM loads and stores are counted as the address space counts them, and read back', () => {
    const m = Machine.create(['-m', '1G']);
    const bus = m.guestPlatform().bus;
    const ram = m.as.flatView().find((r) => r.region.name === 'mach-virt.ram')!.region;
    const before = { ram: m.as.stats.ram, reads: ram.stats.reads, writes: ram.stats.writes, exits: m.as.stats.exits };
    bus.write32(0x4000_1000, 0xcafe_f00d);
    assert.equal(bus.read32(0x4000_1000), 0xcafe_f00d);
    assert.equal(bus.read32(0x4000_1002), 0xcafe); // unaligned: bytes 2..5
    assert.deepEqual(
      { ram: m.as.stats.ram - before.ram, reads: ram.stats.reads - before.reads, writes: ram.stats.writes - before.writes, exits: m.as.stats.exits - before.exits },
      { ram: 3, reads: 2, writes: 1, exits: 0 },
    );
    // The last word of RAM is RAM; the word after it is not.
    const end = 0x4000_0000 + GIB;
    bus.write32(end - 4, 9);
    assert.equal(bus.read32(end - 4), 9);
    const unassigned = m.as.stats.unassigned;
    assert.equal(bus.read32(end), 0);
    assert.equal(m.as.stats.unassigned, unassigned + 1);
    m.close();
  });

  test('a region placed over RAM takes its accesses back; removed, RAM shows again', () => {
    const m = Machine.create(['-m', '1G']);
    const bus = m.guestPlatform().bus;
    bus.write32(0x4001_0000, 0x1111);
    assert.equal(bus.read32(0x4001_0000), 0x1111);
    const seen: number[] = [];
    const over = MemoryRegion.mmio('test-over-ram', 0x1000, {
      read: (off) => 0xabc0 + off,
      write: (off, _s, v) => void seen.push(off, v),
      read64: () => 0n,
      write64: () => undefined,
    });
    m.as.root.addSubregion(0x4001_0000, over, 1);
    const exits = m.as.stats.exits;
    assert.equal(bus.read32(0x4001_0000), 0xabc0);
    bus.write32(0x4001_0004, 0x77);
    assert.deepEqual(seen, [4, 0x77]);
    assert.equal(m.as.stats.exits, exits + 2);
    // Elsewhere in RAM, still RAM.
    bus.write32(0x4002_0000, 0x2222);
    assert.equal(bus.read32(0x4002_0000), 0x2222);
    m.as.root.removeSubregion(over);
    assert.equal(bus.read32(0x4001_0000), 0x1111);
    assert.equal(bus.read32(0x4001_0004), 0);
    m.close();
  });

  test('a closed machine refuses RAM accesses too', () => {
    const m = Machine.create(['-m', '1G']);
    const bus = m.guestPlatform().bus;
    bus.write32(0x4000_0000, 1);
    m.close();
    assert.throws(() => bus.read32(0x4000_0000), /machine is closed/);
    assert.throws(() => bus.write32(0x4000_0000, 1), /machine is closed/);
  });
});

describe('guest CPU bus: RAM-device (a mapped page0) accesses', () => {
  test('counted and observed as direct accesses, unaligned ones refused, and gone with the region', () => {
    const m = Machine.create(['-m', '1G']);
    const bus = m.guestPlatform().bus;
    const regs = new Uint32Array(1024);
    const dev = MemoryRegion.ramDevice('test-page0', 0x1000, {
      read: (off) => regs[off >>> 2]!,
      write: (off, _s, v) => void (regs[off >>> 2] = v),
      read64: () => 0n,
      write64: () => undefined,
    }, { rules: { sizes: [4, 8], unaligned: false } });
    const at = 0x0c0f_0000;
    m.as.root.addSubregion(at, dev, 1);
    const seen: string[] = [];
    const prev = m.as.observer;
    m.as.observer = { enter: (f, a, w) => void seen.push(`enter ${f} 0x${a.toString(16)} ${w}`), leave: (f) => void seen.push(`leave ${f}`) };
    const before = { direct: m.as.stats.direct, exits: m.as.stats.exits, invalid: m.as.stats.invalid };
    for (let i = 0; i < 3; i++) bus.write32(at + 8, 0x100 + i); // the first finds the range, the rest use it
    assert.equal(bus.read32(at + 8), 0x102);
    assert.equal(bus.read32(at + 0xffc), 0);
    assert.equal(regs[2], 0x102);
    assert.deepEqual({ reads: dev.stats.reads, writes: dev.stats.writes }, { reads: 2, writes: 3 });
    assert.equal(m.as.stats.direct - before.direct, 5);
    assert.equal(m.as.stats.exits, before.exits);
    assert.deepEqual(seen.slice(0, 2), [`enter 8 0x${(at + 8).toString(16)} true`, 'leave 8']);
    assert.equal(seen.length, 10);
    // Unaligned: refused by the region's rules (a guest error), the device not called.
    assert.equal(bus.read32(at + 2), 0);
    assert.equal(m.as.stats.invalid, before.invalid + 1);
    assert.equal(dev.stats.reads, 2);
    m.as.observer = prev;
    // Unmapped (as VINTF0's disable unmaps page0): nothing there any more.
    m.as.root.removeSubregion(dev);
    const unassigned = m.as.stats.unassigned;
    assert.equal(bus.read32(at + 8), 0);
    bus.write32(at + 8, 7);
    assert.equal(m.as.stats.unassigned, unassigned + 2);
    assert.equal(regs[2], 0x102);
    m.close();
  });
});

describe('Machine.readRam into a caller buffer', () => {
  test('a few bytes at any alignment read what a copy reads, untouched memory as zero, the last bytes of RAM included', () => {
    const m = Machine.create(['-m', '1G']);
    const bytes = Uint8Array.from({ length: 64 }, (_, i) => (i * 37 + 11) & 0xff);
    const at = 0x4000_2000;
    m.writeRam(at, bytes);
    for (let start = 0; start < 24; start++) {
      for (const len of [1, 2, 3, 4, 5, 7, 8, 13, 16]) {
        const out = new Uint8Array(len);
        assert.deepEqual([...m.readRam(at + start, len, out)], [...bytes.subarray(start, start + len)], `+${start} ${len} bytes`);
        assert.deepEqual([...m.readRam(at + start, len)], [...bytes.subarray(start, start + len)]);
      }
    }
    assert.deepEqual([...m.readRam(0x4800_0000, 3, new Uint8Array(3))], [0, 0, 0]);
    const end = 0x4000_0000 + GIB;
    m.writeRam(end - 3, Uint8Array.of(9, 8, 7));
    assert.deepEqual([...m.readRam(end - 3, 3, new Uint8Array(3))], [9, 8, 7]);
    assert.throws(() => m.readRam(end - 2, 3, new Uint8Array(3)), RangeError);
    assert.throws(() => m.readRam(at, 4, new Uint8Array(3)), RangeError);
    m.close();
  });
});
