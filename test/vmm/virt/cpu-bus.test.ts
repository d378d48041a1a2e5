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
