// The translation-table builder: raw descriptors checked against values worked out by hand from
// the architectural bit positions, start levels, translate(), and the map/unmap/setPerm rules.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PageTableBuilder, type PageTableBuilderConfig } from '../../src/kit/page-table-builder.js';
import { SparseMemory } from '../../src/kit/sparse-memory.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;
/** Tables start above 4 GiB so that table descriptors use their high word. */
const TABLES = 0x1_0000_0000;

type Granule = PageTableBuilderConfig['granule'];

function make(stage: 1 | 2, granule: Granule, inputBits: number, withFree = false) {
  const mem = new SparseMemory(2 ** 48);
  let next = TABLES;
  const freeList: number[] = [];
  const freed: number[] = [];
  const b = new PageTableBuilder(mem, {
    stage,
    granule,
    inputBits,
    allocTable: () => {
      const t = freeList.pop();
      if (t !== undefined) return t;
      next += granule;
      return next - granule;
    },
    freeTable: withFree
      ? (t: number) => {
          freed.push(t);
          freeList.push(t);
        }
      : undefined,
  });
  return { mem, b, freed };
}

describe('descriptor encodings (expected values computed by hand)', () => {
  test('stage 1, 4 KiB: table descriptors and a read-only nG page with AttrIndx 1', () => {
    const { mem, b } = make(1, 4096, 48);
    assert.equal(b.root, TABLES);
    // va 0x80_4020_3000: L0 index 1, L1 index 1, L2 index 1, L3 index 3.
    b.map(0x80_4020_3000, 0x1234_5678_9000, 0x1000, 1, { nG: true, attrIndx: 1 });
    // Tables in allocation order: L1 = TABLES + 0x1000, L2 = + 0x2000, L3 = + 0x3000.
    assert.equal(mem.read64(TABLES + 1 * 8), 0x0000_0001_0000_1003n, 'root[1] → L1 table');
    assert.equal(mem.read64(TABLES + 0x1000 + 1 * 8), 0x0000_0001_0000_2003n, 'L1[1] → L2 table');
    assert.equal(mem.read64(TABLES + 0x2000 + 1 * 8), 0x0000_0001_0000_3003n, 'L2[1] → L3 table');
    // Page: OA | nG 0x800 | AF 0x400 | SH 0x300 | AP[2] 0x80 | AP[1] 0x40 | AttrIndx 1 << 2 | 0b11.
    assert.equal(mem.read64(TABLES + 0x3000 + 3 * 8), 0x0000_1234_5678_9fc7n);
    assert.equal(mem.read64(TABLES + 0x3000 + 2 * 8), 0n, 'neighbours untouched');
    assert.equal(mem.read64(TABLES + 0x3000 + 4 * 8), 0n);
    assert.equal(b.tableCount, 4);
  });

  test('stage 1, 4 KiB: writable page and read-only 1 GiB block', () => {
    const { mem, b } = make(1, 4096, 48);
    b.map(0x1000, 0xabcd_e000, 0x1000, 3);
    // L1 = +0x1000, L2 = +0x2000, L3 = +0x3000; page at L3[1]: AF | SH | AP[1] | 0b11.
    assert.equal(mem.read64(TABLES + 0x3000 + 8), 0x0000_0000_abcd_e743n);
    b.map(0xc000_0000, 0x1_4000_0000, GiB, 1);
    // L1[3]: AF | SH | AP[2] | AP[1] | 0b01.
    assert.equal(mem.read64(TABLES + 0x1000 + 3 * 8), 0x0000_0001_4000_07c1n);
  });

  test('stage 2, 4 KiB: a read-write 2 MiB block', () => {
    const { mem, b } = make(2, 4096, 48);
    b.map(0x4020_0000, 0x8_0060_0000, 2 * MiB, 3);
    // root[0] → L1 (+0x1000), L1[1] → L2 (+0x2000), L2[1]: AF | SH | S2AP 11 | MemAttr 1111 | 0b01.
    assert.equal(mem.read64(TABLES), 0x0000_0001_0000_1003n);
    assert.equal(mem.read64(TABLES + 0x1000 + 8), 0x0000_0001_0000_2003n);
    assert.equal(mem.read64(TABLES + 0x2000 + 8), 0x0000_0008_0060_07fdn);
  });

  test('stage 2, 64 KiB: a read-only page and its table descriptors', () => {
    const { mem, b } = make(2, 65536, 48);
    assert.equal(b.startLevel, 1);
    b.map(0x1_0000, 0x3_0001_0000, 0x1_0000, 1);
    // Start level 1: root[0] → L2 (+0x10000), L2[0] → L3 (+0x20000), L3[1]: AF | SH | S2AP 01 | MemAttr | 0b11.
    assert.equal(mem.read64(TABLES), 0x0000_0001_0001_0003n);
    assert.equal(mem.read64(TABLES + 0x1_0000), 0x0000_0001_0002_0003n);
    assert.equal(mem.read64(TABLES + 0x2_0000 + 8), 0x0000_0003_0001_077fn);
  });

  test('setPerm rewrites only the permission bits', () => {
    const { mem, b } = make(2, 4096, 48);
    b.map(0x1000, 0x5000, 0x1000, 3);
    const d = TABLES + 0x3000 + 8;
    assert.equal(mem.read64(d), 0x0000_0000_0000_57ffn);
    assert.equal(b.setPerm(0x1000, 0x1000, 2), 0x1000);
    assert.equal(mem.read64(d), 0x0000_0000_0000_57bfn, 'S2AP = 10');
    assert.equal(b.setPerm(0x1000, 0x1000, 0), 0x1000);
    assert.equal(mem.read64(d), 0x0000_0000_0000_573fn, 'S2AP = 00');
    const s1 = make(1, 4096, 48);
    s1.b.map(0x1000, 0x5000, 0x1000, 3, { nG: true, attrIndx: 7 });
    assert.equal(s1.mem.read64(d), 0x0000_0000_0000_5f5fn);
    s1.b.setPerm(0x1000, 0x1000, 1);
    assert.equal(s1.mem.read64(d), 0x0000_0000_0000_5fdfn, 'AP[2] set, nG and AttrIndx kept');
  });
});

describe('geometry', () => {
  const starts: [Granule, number, number][] = [
    [4096, 48, 0], [4096, 39, 1], [4096, 30, 2], [4096, 21, 3],
    [16384, 48, 0], [16384, 47, 1], [16384, 36, 2], [16384, 25, 3],
    [65536, 48, 1], [65536, 42, 2], [65536, 29, 3],
  ];
  for (const [g, bits, start] of starts) {
    test(`${g / 1024} KiB granule, ${bits}-bit input starts at level ${start}`, () => {
      const { b } = make(1, g, bits);
      assert.equal(b.startLevel, start);
      const top = 2 ** bits - g;
      b.map(top, 0x1_0000_0000, g, 3);
      assert.deepEqual(b.translate(top + 12), { pa: 0x1_0000_000c, perm: 3, size: g });
      assert.equal(b.tableCount, 4 - start);
      assert.equal(b.translate(2 ** bits), undefined);
    });
  }

  test('bad configurations are rejected', () => {
    const mem = new SparseMemory(2 ** 32);
    const alloc = () => 0x1000;
    assert.throws(() => new PageTableBuilder(mem, { stage: 1, granule: 4096, inputBits: 49, allocTable: alloc }), RangeError);
    assert.throws(() => new PageTableBuilder(mem, { stage: 1, granule: 4096, inputBits: 12, allocTable: alloc }), RangeError);
    assert.throws(() => new PageTableBuilder(mem, { stage: 1, granule: 8192 as Granule, inputBits: 40, allocTable: alloc }), RangeError);
    assert.throws(() => new PageTableBuilder(mem, { stage: 3 as 1, granule: 4096, inputBits: 40, allocTable: alloc }), RangeError);
    assert.throws(() => new PageTableBuilder(mem, { stage: 1, granule: 65536, inputBits: 40, allocTable: alloc }), RangeError, 'table not 64 KiB-aligned');
  });
});

describe('map', () => {
  test('blocks are used when aligned, pages otherwise or when disabled', () => {
    const { b } = make(1, 4096, 48);
    b.map(0x20_0000, 0x40_0000, 4 * MiB, 3);
    assert.equal(b.translate(0x20_0000)?.size, 2 * MiB);
    assert.equal(b.translate(0x5f_ffff)?.pa, 0x7f_ffff);
    // VA aligned but PA not: pages.
    b.map(0x80_0000, 0x1_0000_1000, 2 * MiB, 3);
    assert.equal(b.translate(0x80_0000)?.size, 4096);
    assert.equal(b.translate(0x9f_f000)?.pa, 0x1_0020_0000);
    // Blocks disabled.
    b.map(0x4000_0000, 0x8000_0000, GiB, 1, { useBlocks: false });
    assert.deepEqual(b.translate(0x7fff_fff0), { pa: 0xbfff_fff0, perm: 1, size: 4096 });
    // A range that starts and ends mid-block: pages, then a block, then pages.
    b.map(0x1_001f_f000, 0x2_001f_f000, 2 * MiB + 0x2000, 3);
    assert.equal(b.translate(0x1_001f_f000)?.size, 4096);
    assert.equal(b.translate(0x1_0020_0000)?.size, 2 * MiB);
    assert.equal(b.translate(0x1_0040_0000)?.size, 4096);
    assert.equal(b.translate(0x1_0040_0fff)?.pa, 0x2_0040_0fff);
    assert.equal(b.translate(0x1_0040_1000), undefined);
  });

  test('misaligned, empty, out-of-range and inexpressible requests throw', () => {
    const { b } = make(1, 16384, 40);
    assert.throws(() => b.map(0x1000, 0, 0x4000, 3), RangeError, 'va');
    assert.throws(() => b.map(0x4000, 0x1000, 0x4000, 3), RangeError, 'pa');
    assert.throws(() => b.map(0x4000, 0x4000, 0x5000, 3), RangeError, 'size');
    assert.throws(() => b.map(0x4000, 0x4000, 0, 3), RangeError, 'empty');
    assert.throws(() => b.map(2 ** 40 - 0x4000, 0, 0x8000, 3), RangeError, 'beyond the input size');
    assert.throws(() => b.map(0, 2 ** 48 - 0x4000, 0x8000, 3), RangeError, 'beyond 48-bit OA');
    assert.throws(() => b.map(0, 0, 0x4000, 4), RangeError, 'perm');
    assert.throws(() => b.map(0, 0, 0x4000, 2), RangeError, 'stage 1 write-only');
    assert.throws(() => b.map(0, 0, 0x4000, 3, { attrIndx: 8 }), RangeError, 'AttrIndx');
    assert.equal(b.tableCount, 1, 'nothing allocated');
  });

  test('overlaps throw and write nothing', () => {
    const { b } = make(2, 4096, 48);
    b.map(0x20_1000, 0x9000, 0x2000, 3);
    b.map(0x4000_0000, 0x8000_0000, GiB, 3);
    const tables = b.tableCount;
    assert.throws(() => b.map(0x20_1000, 0x9000, 0x2000, 3), RangeError, 'same range');
    assert.throws(() => b.map(0x20_2000, 0x9000, 0x2000, 3), RangeError, 'partial');
    assert.throws(() => b.map(0x20_0000, 0x40_0000, 2 * MiB, 3), RangeError, 'enclosing');
    assert.throws(() => b.map(0x5000_0000, 0x1000, 0x1000, 3), RangeError, 'inside a block');
    // Starts in fresh space and runs into the block: no table may be allocated on the way
    // (the unaligned PA forces pages, so a non-atomic map would allocate level-3 tables).
    assert.throws(() => b.map(0x3000_0000, 0x1000, 0x1000_1000, 3), RangeError);
    assert.throws(() => b.map(0x3fff_f000, 0, 0x2000, 3), RangeError, 'runs into the block');
    assert.equal(b.tableCount, tables);
    assert.equal(b.translate(0x3fff_f000), undefined);
    assert.equal(b.translate(0x20_0000), undefined);
    assert.equal(b.translate(0x20_3000), undefined);
    // Adjacent ranges are fine.
    b.map(0x20_0000, 0x8000, 0x1000, 1);
    b.map(0x20_3000, 0xb000, 0x1000, 1);
    assert.equal(b.translate(0x20_3abc)?.pa, 0xbabc);
  });
});

describe('unmap and setPerm', () => {
  test('unmap clears leaves and returns the bytes that were mapped', () => {
    const { b } = make(1, 4096, 48);
    b.map(0x1000, 0x1000, 0x3000, 3);
    b.map(0x20_0000, 0x20_0000, 2 * MiB, 3);
    assert.equal(b.unmap(0x0, 0x40_0000), 0x3000 + 2 * MiB);
    assert.equal(b.translate(0x1000), undefined);
    assert.equal(b.translate(0x20_0000), undefined);
    assert.equal(b.unmap(0x0, 0x40_0000), 0, 'nothing left');
    assert.throws(() => b.unmap(0x800, 0x1000), RangeError);
  });

  test('a range covering part of a block is refused and changes nothing', () => {
    const { b } = make(2, 65536, 48);
    b.map(0x2000_0000, 0x4000_0000, 512 * MiB, 3);
    b.map(0x1_0000, 0x1_0000, 0x1_0000, 3);
    assert.throws(() => b.unmap(0, 0x2001_0000), RangeError);
    assert.throws(() => b.setPerm(0x2000_0000, 0x1_0000, 1), RangeError);
    assert.equal(b.translate(0x1_0000)?.pa, 0x1_0000, 'the page before the block survives the refused unmap');
    assert.deepEqual(b.translate(0x2000_0000), { pa: 0x4000_0000, perm: 3, size: 512 * MiB });
    assert.equal(b.unmap(0x2000_0000, 512 * MiB), 512 * MiB);
  });

  test('with freeTable, emptied tables are unlinked and freed, never the root', () => {
    const { mem, b, freed } = make(1, 4096, 48, true);
    b.map(0x7f00_0000_0000, 0x1000, 0x1000, 3);
    b.map(0x7f00_0000_2000, 0x2000, 0x1000, 3);
    assert.equal(b.tableCount, 4);
    b.unmap(0x7f00_0000_0000, 0x1000);
    assert.deepEqual(freed, [], 'the L3 table still holds a page');
    b.unmap(0x7f00_0000_2000, 0x1000);
    assert.deepEqual(freed, [TABLES + 0x3000, TABLES + 0x2000, TABLES + 0x1000]);
    assert.equal(b.tableCount, 1);
    assert.equal(mem.read64(TABLES + (0x7f00_0000_0000 / 2 ** 39) * 8), 0n, 'root entry cleared');
    // Freed tables are reused (the allocator pops them), and the new mapping works.
    b.map(0x1000, 0x9000, 0x1000, 3);
    assert.equal(b.translate(0x1000)?.pa, 0x9000);
    assert.equal(b.tableCount, 4);
  });

  test('a leaf table freed and handed to another builder is not used again for its old range', () => {
    // Two builders on one allocator (io-pgtable domains share the kernel's pages).
    const mem = new SparseMemory(2 ** 48);
    let next = TABLES;
    const freeList: number[] = [];
    const cfg = {
      stage: 2 as const,
      granule: 4096 as const,
      inputBits: 48,
      allocTable: () => freeList.pop() ?? (next += 4096) - 4096,
      freeTable: (t: number) => void freeList.push(t),
    };
    const a = new PageTableBuilder(mem, cfg);
    const b = new PageTableBuilder(mem, cfg);
    a.map(0x7f00_0000_0000, 0x1000, 0x1000, 3);
    a.map(0x7f00_0000_2000, 0x2000, 0x1000, 3); // found through the existing tables
    a.unmap(0x7f00_0000_0000, 0x1000);
    a.unmap(0x7f00_0000_2000, 0x1000);
    assert.equal(freeList.length, 3);
    // b takes the freed tables: a's old leaf table now maps b's [0, 2 MiB).
    b.map(0x1000, 0x9000, 0x1000, 3);
    assert.equal(freeList.length, 0);
    a.map(0x7f00_0000_3000, 0x5000, 0x1000, 3);
    assert.equal(a.translate(0x7f00_0000_3000)?.pa, 0x5000);
    assert.equal(b.translate(0x1000)?.pa, 0x9000);
    assert.equal(b.translate(0x3000), undefined, "nothing written into b's table for a's range");
  });

  test('consecutive calls in one leaf table walk down once; the walk reads the same tables the cache stands for', () => {
    const mem = new SparseMemory(2 ** 48);
    let reads = 0;
    const counting = { read32: (a: number) => (reads++, mem.read32(a)), write32: (a: number, v: number) => mem.write32(a, v) };
    let next = TABLES;
    const b = new PageTableBuilder(counting, { stage: 1, granule: 4096, inputBits: 48, allocTable: () => (next += 4096) - 4096 });
    b.map(0x40_0000, 0x1000, 0x1000, 3); // builds the tables
    reads = 0;
    b.map(0x40_1000, 0x2000, 0x1000, 3); // walks down to the leaf table: 3 levels × 2 words, then the leaf entry
    assert.equal(reads, 7);
    reads = 0;
    b.map(0x40_2000, 0x2000, 0x1000, 3);
    b.unmap(0x40_0000, 0x1000);
    b.map(0x40_0000, 0x3000, 0x1000, 3);
    // Per call: the leaf entry's overlap check (map) or its clearing walk (unmap): one read each.
    assert.equal(reads, 3);
    assert.equal(b.translate(0x40_0000)?.pa, 0x3000);
    assert.equal(b.translate(0x40_1000)?.pa, 0x2000);
    assert.equal(b.translate(0x40_2000)?.pa, 0x2000);
    // Another 2 MiB range walks down again (its leaf table is new: a walk from the root).
    reads = 0;
    b.map(0x20_0000, 0x4000, 0x1000, 3);
    assert.ok(reads >= 6, `${reads} reads`);
    assert.equal(b.translate(0x20_0000)?.pa, 0x4000);
  });

  test('without freeTable, empty tables stay and are reused for later mappings', () => {
    const { b } = make(2, 4096, 48);
    b.map(0x20_0000, 0x1000, 0x1000, 3);
    b.unmap(0x20_0000, 0x1000);
    assert.equal(b.tableCount, 4);
    b.map(0x20_0000, 0x40_0000, 2 * MiB, 3); // the L2 entry is still a table: pages beneath it
    assert.deepEqual(b.translate(0x3f_f008), { pa: 0x5f_f008, perm: 3, size: 4096 });
    assert.equal(b.tableCount, 4);
  });

  test('setPerm changes every leaf in range and skips holes', () => {
    const { b } = make(1, 4096, 39);
    b.map(0x1000, 0x1000, 0x2000, 3);
    b.map(0x4000_0000, 0x4000_0000, GiB, 3);
    assert.equal(b.setPerm(0, 0x8000_0000, 1), 0x2000 + GiB);
    assert.equal(b.translate(0x2000)?.perm, 1);
    assert.equal(b.translate(0x4000_1000)?.perm, 1);
    assert.throws(() => b.setPerm(0x1000, 0x1000, 2), RangeError, 'stage 1 write-only');
    assert.equal(b.setPerm(0x1000, 0x1000, 3), 0x1000);
    assert.equal(b.translate(0x1000)?.perm, 3);
    assert.equal(b.translate(0x2000)?.perm, 1);
  });
});
