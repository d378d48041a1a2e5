// The VMSAv8-64 walker: hand-written descriptors (independent of the builder), tables built by
// the kit's builder for every granule, every fault kind, nested (stage-2-translated) table
// fetches, and a seeded random cross-check against the builder and a reference model.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  ACCESS_R,
  ACCESS_W,
  FAULT_ACCESS,
  FAULT_ADDR_SIZE,
  FAULT_NONE,
  FAULT_PERMISSION,
  FAULT_S2_ON_TABLE,
  FAULT_TRANSLATION,
  FAULT_WALK_ABORT,
  defaultStartLevel,
  walk,
  WalkResult,
  type Granule,
  type TableReader,
  type WalkConfig,
} from '../../../src/host/smmuv3/page-table.js';
import { PageTableBuilder } from '../../../src/kit/page-table-builder.js';
import { SparseMemory } from '../../../src/kit/sparse-memory.js';
import { mulberry32 } from '../../../src/kit/prng.js';

const GiB = 2 ** 30;
const MiB = 2 ** 20;
/** Tables live above 4 GiB so that every table address uses the descriptor's high word. */
const TABLES = 0x1_0000_0000;

function physReader(mem: SparseMemory): TableReader {
  return { readTableWord: (a: number) => (a >= 0 && a + 4 <= mem.size ? mem.read32(a) : -1) };
}

/** Write a 64-bit descriptor as two words (hi is bits [63:32]). */
function desc(mem: SparseMemory, addr: number, hi: number, lo: number): void {
  mem.write32(addr, lo);
  mem.write32(addr + 4, hi);
}

function setup(stage: 1 | 2, granule: Granule, inputBits: number, oasBits = 48) {
  const mem = new SparseMemory(2 ** 48);
  let next = TABLES;
  const b = new PageTableBuilder(mem, {
    stage,
    granule,
    inputBits,
    allocTable: () => {
      const t = next;
      next += granule;
      return t;
    },
  });
  const cfg: WalkConfig = { stage, granule, inputBits, oasBits, ttb: b.root };
  return { mem, b, cfg, reader: physReader(mem), out: new WalkResult() };
}

describe('hand-written tables', () => {
  // 4 KiB granule, 39-bit input: levels 1..3. Low attribute bits: AF = 0x400, SH = 0x300.
  const mem = new SparseMemory(2 ** 40);
  const cfg: WalkConfig = { stage: 1, granule: 4096, inputBits: 39, oasBits: 48, ttb: 0x1_0000 };
  desc(mem, 0x1_0000 + 1 * 8, 0, 0x1_1003); // L1[1] → table 0x11000
  desc(mem, 0x1_1000 + 0 * 8, 0, 0x1_2003); // L2[0] → table 0x12000
  desc(mem, 0x1_2000 + 5 * 8, 0, 0x8000_0743); // L3[5] page 0x8000_0000, AP=01 (RW, EL0), AF
  desc(mem, 0x1_2000 + 6 * 8, 0, 0x8000_17c3); // L3[6] page 0x8000_1000, AP=11 (RO, EL0), AF
  desc(mem, 0x1_2000 + 7 * 8, 0, 0x8000_2343); // L3[7] page, AF = 0
  desc(mem, 0x1_2000 + 8 * 8, 0, 0x8000_3741); // L3[8] 0b01 at level 3: reserved
  desc(mem, 0x1_2000 + 9 * 8, 0, 0x8000_4703); // L3[9] page with AP[1] = 0 (no EL0 access)
  desc(mem, 0x1_0000 + 2 * 8, 0x1, 0x4000_07c1); // L1[2] 1 GiB block at 0x1_4000_0000, RO, AF
  desc(mem, 0x1_0000 + 3 * 8, 0x4000_0000, 0x1_3003); // L1[3] → table 0x13000 with APTable[1]
  desc(mem, 0x1_3000 + 0 * 8, 0, 0x4060_0741); // L2[0] of it: 2 MiB block 0x4060_0000, RW
  desc(mem, 0x1_0000 + 4 * 8, 0x0001_0000, 0x4000_0741); // L1[4] block with OA bit 48 set
  const reader = physReader(mem);
  const out = new WalkResult();

  test('page and block translate with the right level, size and permissions', () => {
    walk(cfg, reader, 0x4000_5123, ACCESS_W, out);
    assert.equal(out.fault, FAULT_NONE);
    assert.equal(out.level, 3);
    assert.equal(out.outputAddress, 0x8000_0123);
    assert.equal(out.blockBase, 0x8000_0000);
    assert.equal(out.blockSize, 4096);
    assert.equal(out.perm, ACCESS_R | ACCESS_W);
    assert.equal(out.descAddress, 0x1_2000 + 5 * 8);
    assert.equal(out.descLo, 0x8000_0743);

    walk(cfg, reader, 0x8012_3456, ACCESS_R, out);
    assert.equal(out.fault, FAULT_NONE);
    assert.equal(out.level, 1);
    assert.equal(out.outputAddress, 0x1_4012_3456);
    assert.equal(out.blockBase, 0x1_4000_0000);
    assert.equal(out.blockSize, GiB);
    assert.equal(out.perm, ACCESS_R);
  });

  test('AP[2] = 1: read allowed, write is a permission fault that still reports the translation', () => {
    assert.equal(walk(cfg, reader, 0x4000_6010, ACCESS_R, out).fault, FAULT_NONE);
    walk(cfg, reader, 0x4000_6010, ACCESS_W, out);
    assert.equal(out.fault, FAULT_PERMISSION);
    assert.equal(out.level, 3);
    assert.equal(out.outputAddress, 0x8000_1010);
    assert.equal(out.perm, ACCESS_R);
    assert.equal(walk(cfg, reader, 0x8000_0000, ACCESS_W, out).fault, FAULT_PERMISSION, '1 GiB RO block');
  });

  test('AF = 0 is an access flag fault at the leaf level', () => {
    walk(cfg, reader, 0x4000_7000, ACCESS_R, out);
    assert.equal(out.fault, FAULT_ACCESS);
    assert.equal(out.level, 3);
  });

  test('reserved level-3 encoding 0b01 is a translation fault', () => {
    walk(cfg, reader, 0x4000_8000, ACCESS_R, out);
    assert.equal(out.fault, FAULT_TRANSLATION);
    assert.equal(out.level, 3);
  });

  test('APTable[1] on a stage-1 table descriptor removes write below it', () => {
    walk(cfg, reader, 0xc000_1000, ACCESS_R, out);
    assert.equal(out.fault, FAULT_NONE);
    assert.equal(out.outputAddress, 0x4060_1000);
    assert.equal(out.perm, ACCESS_R);
    assert.equal(walk(cfg, reader, 0xc000_1000, ACCESS_W, out).fault, FAULT_PERMISSION);
  });

  test('unprivileged access to a leaf with AP[1] = 0 has no permission at all', () => {
    assert.equal(walk(cfg, reader, 0x4000_9000, ACCESS_R, out).fault, FAULT_NONE);
    const el0: WalkConfig = { ...cfg, unprivileged: true };
    walk(el0, reader, 0x4000_9000, ACCESS_R, out);
    assert.equal(out.fault, FAULT_PERMISSION);
    assert.equal(out.perm, 0);
    assert.equal(walk(el0, reader, 0x4000_5000, ACCESS_W, out).fault, FAULT_NONE, 'AP[1] = 1 grants EL0');
  });

  test('OA bits [51:48] set is an address size fault', () => {
    walk(cfg, reader, 0x1_0000_0000, ACCESS_R, out);
    assert.equal(out.fault, FAULT_ADDR_SIZE);
    assert.equal(out.level, 1);
  });

  test('invalid entries and out-of-range input are translation faults', () => {
    walk(cfg, reader, 0x4000_4000, ACCESS_R, out); // L3[4] is zero
    assert.equal(out.fault, FAULT_TRANSLATION);
    assert.equal(out.level, 3);
    walk(cfg, reader, 0, ACCESS_R, out); // L1[0] is zero
    assert.equal(out.fault, FAULT_TRANSLATION);
    assert.equal(out.level, 1);
    for (const ia of [2 ** 39, 2 ** 39 + 0x4000_5000, -4096, 0.5]) {
      walk(cfg, reader, ia, ACCESS_R, out);
      assert.equal(out.fault, FAULT_TRANSLATION, `input ${ia}`);
      assert.equal(out.level, 1, 'reported at the start level');
    }
  });

  test('a block where the granule allows none is a translation fault', () => {
    const m = new SparseMemory(2 ** 40);
    // 4 KiB, 48-bit: an L0 block (512 GiB) does not exist.
    desc(m, 0x1000, 0, 0x0000_0741);
    const c4: WalkConfig = { stage: 1, granule: 4096, inputBits: 48, oasBits: 48, ttb: 0x1000 };
    walk(c4, physReader(m), 0x1234, ACCESS_R, out);
    assert.equal(out.fault, FAULT_TRANSLATION);
    assert.equal(out.level, 0);
    // 64 KiB, 48-bit: start level 1, and a level-1 block (4 TiB) needs 52-bit addresses.
    desc(m, 0x1_0000, 0, 0x0000_0741);
    const c64: WalkConfig = { stage: 1, granule: 65536, inputBits: 48, oasBits: 48, ttb: 0x1_0000 };
    walk(c64, physReader(m), 0x1234, ACCESS_R, out);
    assert.equal(out.fault, FAULT_TRANSLATION);
    assert.equal(out.level, 1);
    // 16 KiB, 48-bit: an L1 block (64 GiB) does not exist either.
    desc(m, 0x4_0000, 0, 0x5_0003); // L0[0] → table 0x50000
    desc(m, 0x5_0000, 0, 0x0000_0741);
    const c16: WalkConfig = { stage: 1, granule: 16384, inputBits: 48, oasBits: 48, ttb: 0x4_0000 };
    walk(c16, physReader(m), 0x1234, ACCESS_R, out);
    assert.equal(out.fault, FAULT_TRANSLATION);
    assert.equal(out.level, 1);
  });

  test('stage 2 with a concatenated start level (SL0-derived) indexes across tables', () => {
    // 4 KiB, 40-bit IPA starting at level 1: 1024 L1 entries in two concatenated tables.
    const m = new SparseMemory(2 ** 40);
    const c: WalkConfig = { stage: 2, granule: 4096, inputBits: 40, oasBits: 48, ttb: 0x2_0000, startLevel: 1 };
    // Entry 600 at 0x20000 + 4800 (inside the second table): 1 GiB block at 0x40_0000_0000,
    // S2AP = 11, MemAttr = 1111, SH = 11, AF.
    desc(m, 0x2_0000 + 600 * 8, 0x40, 0x0000_07fd);
    walk(c, physReader(m), 600 * GiB + 0x1234, ACCESS_W, out);
    assert.equal(out.fault, FAULT_NONE);
    assert.equal(out.level, 1);
    assert.equal(out.outputAddress, 0x40_0000_1234);
    assert.equal(out.perm, ACCESS_R | ACCESS_W);
    assert.equal(out.nG, false);
  });
});

describe('builder-made tables for each granule and input size', () => {
  const cases: { granule: Granule; inputBits: number; start: number; va: number; pa: number; size: number; level: number }[] = [
    { granule: 4096, inputBits: 48, start: 0, va: 0x7fff_ffff_f000, pa: 0x1234_5000, size: 4096, level: 3 },
    { granule: 4096, inputBits: 48, start: 0, va: 0x40_0020_0000, pa: 0x8_0060_0000, size: 2 * MiB, level: 2 },
    { granule: 4096, inputBits: 48, start: 0, va: 0x8000_0000_0000 - GiB, pa: 0xc0_4000_0000, size: GiB, level: 1 },
    { granule: 4096, inputBits: 39, start: 1, va: 0x7f_ffff_f000, pa: 0x9000, size: 4096, level: 3 },
    { granule: 4096, inputBits: 39, start: 1, va: 0x40_0000_0000, pa: 0x1_0000_0000, size: GiB, level: 1 },
    { granule: 16384, inputBits: 48, start: 0, va: 0x8000_0000_4000, pa: 0x2_0000_c000, size: 16384, level: 3 },
    { granule: 16384, inputBits: 48, start: 0, va: 0xffff_fe00_0000, pa: 0x4_0200_0000, size: 32 * MiB, level: 2 },
    { granule: 16384, inputBits: 39, start: 1, va: 0x12_3456_4000, pa: 0xabc_0000, size: 16384, level: 3 },
    { granule: 65536, inputBits: 48, start: 1, va: 0xffff_ffff_0000, pa: 0x7_0001_0000, size: 65536, level: 3 },
    { granule: 65536, inputBits: 48, start: 1, va: 0x1234_6000_0000, pa: 0xa_2000_0000, size: 512 * MiB, level: 2 },
    { granule: 65536, inputBits: 39, start: 2, va: 0x7f_e000_0000, pa: 0x6000_0000, size: 512 * MiB, level: 2 },
    { granule: 65536, inputBits: 39, start: 2, va: 0x1_0001_0000, pa: 0x5_0000, size: 65536, level: 3 },
  ];
  for (const c of cases) {
    for (const stage of [1, 2] as const) {
      test(`stage ${stage}, ${c.granule / 1024} KiB granule, ${c.inputBits}-bit input: ${c.size}-byte leaf at level ${c.level}`, () => {
        const { b, cfg, reader, out } = setup(stage, c.granule, c.inputBits);
        assert.equal(b.startLevel, c.start);
        assert.equal(defaultStartLevel(c.granule, c.inputBits), c.start);
        b.map(c.va, c.pa, c.size, ACCESS_R | ACCESS_W);
        for (const off of [0, 8, c.size / 2 + 4, c.size - 4]) {
          walk(cfg, reader, c.va + off, ACCESS_W, out);
          assert.equal(out.fault, FAULT_NONE);
          assert.equal(out.level, c.level);
          assert.equal(out.blockSize, c.size);
          assert.equal(out.blockBase, c.pa);
          assert.equal(out.outputAddress, c.pa + off);
          assert.equal(out.perm, ACCESS_R | ACCESS_W);
        }
        assert.equal(walk(cfg, reader, c.va - c.granule, ACCESS_R, out).fault, FAULT_TRANSLATION, 'below');
        if (c.va + c.size < 2 ** c.inputBits) {
          assert.equal(walk(cfg, reader, c.va + c.size, ACCESS_R, out).fault, FAULT_TRANSLATION, 'above');
        }
        assert.equal(walk(cfg, reader, 2 ** c.inputBits, ACCESS_R, out).fault, FAULT_TRANSLATION, 'beyond input size');
        assert.equal(out.level, c.start);
      });
    }
  }

  test('nG reaches the walker for stage 1', () => {
    const { b, cfg, reader, out } = setup(1, 4096, 48);
    b.map(0x1000, 0x5000, 4096, 3, { nG: true });
    b.map(0x2000, 0x6000, 4096, 3);
    assert.equal(walk(cfg, reader, 0x1000, ACCESS_R, out).nG, true);
    assert.equal(walk(cfg, reader, 0x2000, ACCESS_R, out).nG, false);
  });
});

describe('faults on builder-made tables', () => {
  test('stage 1: write to a read-only page is a permission fault', () => {
    const { b, cfg, reader, out } = setup(1, 4096, 48);
    b.map(0x10_0000, 0x20_0000, 0x1000, ACCESS_R);
    assert.equal(walk(cfg, reader, 0x10_0040, ACCESS_R, out).fault, FAULT_NONE);
    walk(cfg, reader, 0x10_0040, ACCESS_W, out);
    assert.equal(out.fault, FAULT_PERMISSION);
    assert.equal(out.outputAddress, 0x20_0040);
    assert.equal(walk(cfg, reader, 0x10_0040, 0, out).fault, FAULT_NONE, 'access 0 is a probe');
  });

  test('stage 2: S2AP gates read and write independently', () => {
    const { b, cfg, reader, out } = setup(2, 4096, 48);
    b.map(0x0000, 0x10_0000, 0x1000, ACCESS_R);
    b.map(0x1000, 0x10_1000, 0x1000, ACCESS_W);
    b.map(0x2000, 0x10_2000, 0x1000, 0);
    b.map(0x20_0000, 0x40_0000, 2 * MiB, ACCESS_R); // a read-only 2 MiB block
    assert.equal(walk(cfg, reader, 0x0000, ACCESS_R, out).fault, FAULT_NONE);
    assert.equal(walk(cfg, reader, 0x0000, ACCESS_W, out).fault, FAULT_PERMISSION);
    assert.equal(walk(cfg, reader, 0x1000, ACCESS_R, out).fault, FAULT_PERMISSION);
    assert.equal(out.perm, ACCESS_W);
    assert.equal(walk(cfg, reader, 0x1000, ACCESS_W, out).fault, FAULT_NONE);
    assert.equal(walk(cfg, reader, 0x2000, ACCESS_R, out).fault, FAULT_PERMISSION);
    assert.equal(walk(cfg, reader, 0x2000, ACCESS_W, out).fault, FAULT_PERMISSION);
    walk(cfg, reader, 0x30_0000, ACCESS_W, out);
    assert.equal(out.fault, FAULT_PERMISSION);
    assert.equal(out.level, 2);
  });

  test('AF cleared by hand is an access flag fault', () => {
    const { mem, b, cfg, reader, out } = setup(2, 65536, 48);
    b.map(0x3_0000, 0x9_0000, 0x1_0000, 3);
    walk(cfg, reader, 0x3_0000, ACCESS_R, out);
    assert.equal(out.fault, FAULT_NONE);
    const d = out.descAddress;
    mem.write32(d, mem.read32(d) & ~(1 << 10));
    walk(cfg, reader, 0x3_0000, ACCESS_R, out);
    assert.equal(out.fault, FAULT_ACCESS);
    assert.equal(out.level, 3);
  });

  test('output address beyond oasBits is an address size fault', () => {
    const { b, cfg, reader, out } = setup(1, 4096, 48);
    b.map(0x1000, 2 ** 40, 0x1000, 3);
    b.map(0x2000, 2 ** 40 - 0x1000, 0x1000, 3); // the last page below 2^40
    assert.equal(walk(cfg, reader, 0x1000, ACCESS_R, out).fault, FAULT_NONE);
    const small: WalkConfig = { ...cfg, oasBits: 40, ttb: b.root };
    walk(small, reader, 0x1000, ACCESS_R, out);
    assert.equal(out.fault, FAULT_ADDR_SIZE);
    assert.equal(out.level, 3);
    assert.equal(walk(small, reader, 0x2fff, ACCESS_R, out).fault, FAULT_NONE);
    assert.equal(out.outputAddress, 2 ** 40 - 1);
  });

  test('a TTB or table address beyond oasBits is an address size fault', () => {
    const { b, cfg, reader, out } = setup(1, 4096, 48);
    b.map(0x1000, 0x1000, 0x1000, 3);
    walk({ ...cfg, oasBits: 32 }, reader, 0x1000, ACCESS_R, out); // tables are above 4 GiB
    assert.equal(out.fault, FAULT_ADDR_SIZE);
    assert.equal(out.level, 0);
    // TTB below 2^32 but the next table above it: faults at the table descriptor's level.
    const mem = new SparseMemory(2 ** 40);
    desc(mem, 0x1000, 0x1, 0x0000_2003);
    walk({ stage: 1, granule: 4096, inputBits: 48, oasBits: 32, ttb: 0x1000 }, physReader(mem), 0x1234, ACCESS_R, out);
    assert.equal(out.fault, FAULT_ADDR_SIZE);
    assert.equal(out.level, 0);
  });

  test('a failing fetch is a walk abort at that level, with the descriptor address', () => {
    const { mem, b, cfg, out } = setup(1, 4096, 48);
    b.map(0x5000, 0x5000, 0x1000, 3);
    // Only the root table is readable: the level-1 fetch aborts.
    const reader: TableReader = {
      readTableWord: (a: number) => (a >= b.root && a < b.root + 4096 ? mem.read32(a) : -1),
    };
    walk(cfg, reader, 0x5000, ACCESS_R, out);
    assert.equal(out.fault, FAULT_WALK_ABORT);
    assert.equal(out.level, 1);
    assert.equal(out.faultAddress, TABLES + 4096, 'L1 table is the second allocation, index 0');
    // A reader that fails on the high word only also aborts.
    const hiFails: TableReader = { readTableWord: (a: number) => (a % 8 === 4 ? -1 : mem.read32(a)) };
    assert.equal(walk(cfg, hiFails, 0x5000, ACCESS_R, out).fault, FAULT_WALK_ABORT);
    assert.equal(out.level, 0);
    // lastFault = 0 means a plain abort, not a stage-2 fault.
    const plain: TableReader = { lastFault: 0, readTableWord: () => -1 };
    assert.equal(walk(cfg, plain, 0x5000, ACCESS_R, out).fault, FAULT_WALK_ABORT);
  });

  test('a reader that fetches whole descriptors (readTableDesc) gives each walk the word reader gives, failing fetches included', () => {
    const { mem, b, cfg } = setup(1, 4096, 48);
    b.map(0x5000, 0x9000_0000, 0x3000, 3);
    b.map(0x4000_0000, 0x8000_0000, 2 * MiB, 1);
    const failAt = new Set<number>();
    const words: TableReader = { readTableWord: (a: number) => (failAt.has(a) ? -1 : mem.read32(a)) };
    let descCalls = 0;
    const pairs: TableReader & { descHi: number } = {
      descHi: 0,
      readTableWord: words.readTableWord,
      readTableDesc(a: number): number {
        descCalls++;
        const lo = words.readTableWord(a);
        const hi = lo < 0 ? -1 : words.readTableWord(a + 4);
        if (hi < 0) return -1;
        pairs.descHi = hi;
        return lo;
      },
    };
    const same = (iova: number, access: number, what: string): void => {
      const a = walk(cfg, words, iova, access, new WalkResult());
      const p = walk(cfg, pairs, iova, access, new WalkResult());
      assert.deepEqual({ ...p }, { ...a }, what);
    };
    for (const iova of [0x5000, 0x6abc, 0x8000, 0x4000_1234, 0x7fff_f000]) {
      same(iova, ACCESS_R, `0x${iova.toString(16)} read`);
      same(iova, ACCESS_W, `0x${iova.toString(16)} write`);
    }
    assert.ok(descCalls > 0, 'the walk used readTableDesc');
    // The descriptors of the 0x5000 walk, each word failing in turn: the same aborts.
    const trail: number[] = [];
    const t = new WalkResult();
    const tracing: TableReader = { readTableWord: (a: number) => (trail.push(a), mem.read32(a)) };
    walk(cfg, tracing, 0x5000, ACCESS_R, t);
    assert.equal(trail.length, 8, 'four levels, two words each');
    for (const a of trail) {
      failAt.clear();
      failAt.add(a);
      same(0x5000, ACCESS_R, `fetch of 0x${a.toString(16)} fails`);
      assert.equal(walk(cfg, pairs, 0x5000, ACCESS_R, t).fault, FAULT_WALK_ABORT);
    }
  });

  test('unmap then walk is a translation fault', () => {
    const { b, cfg, reader, out } = setup(1, 16384, 48);
    b.map(0x200_0000, 0x400_0000, 32 * MiB, 3);
    b.map(0x400_0000, 0x1000_0000, 0x4000, 3);
    assert.equal(walk(cfg, reader, 0x300_0000, ACCESS_R, out).fault, FAULT_NONE);
    assert.equal(b.unmap(0x200_0000, 32 * MiB), 32 * MiB);
    walk(cfg, reader, 0x300_0000, ACCESS_R, out);
    assert.equal(out.fault, FAULT_TRANSLATION);
    assert.equal(out.level, 2);
    assert.equal(walk(cfg, reader, 0x400_0000, ACCESS_R, out).fault, FAULT_NONE, 'neighbour intact');
    b.unmap(0x400_0000, 0x4000);
    assert.equal(walk(cfg, reader, 0x400_0000, ACCESS_R, out).fault, FAULT_TRANSLATION);
  });
});

describe('nested: stage-1 tables in IPA space, fetched through stage 2', () => {
  function nestedSetup() {
    const mem = new SparseMemory(2 ** 48);
    let nextS2 = TABLES;
    const s2 = new PageTableBuilder(mem, {
      stage: 2,
      granule: 4096,
      inputBits: 48,
      allocTable: () => {
        nextS2 += 4096;
        return nextS2 - 4096;
      },
    });
    // Guest RAM: IPA [0, 16 MiB) → PA 0x20_0000_0000, page by page.
    const RAM_PA = 0x20_0000_0000;
    s2.map(0, RAM_PA, 16 * MiB, 3, { useBlocks: false });
    const gram = {
      read32: (ipa: number) => mem.read32(s2.translate(ipa)!.pa),
      write32: (ipa: number, v: number) => mem.write32(s2.translate(ipa)!.pa, v),
    };
    let nextS1 = 0x10_0000;
    const s1 = new PageTableBuilder(gram, {
      stage: 1,
      granule: 4096,
      inputBits: 48,
      allocTable: () => {
        nextS1 += 4096;
        return nextS1 - 4096;
      },
    });
    const s2cfg: WalkConfig = { stage: 2, granule: 4096, inputBits: 48, oasBits: 48, ttb: s2.root };
    const s1cfg: WalkConfig = { stage: 1, granule: 4096, inputBits: 48, oasBits: 48, ttb: s1.root };
    const phys = physReader(mem);
    const s2out = new WalkResult();
    const nested: TableReader & { lastFault: number } = {
      lastFault: 0,
      readTableWord(ipa: number): number {
        const r = walk(s2cfg, phys, ipa, ACCESS_R, s2out);
        if (r.fault !== FAULT_NONE) {
          nested.lastFault = r.fault;
          return -1;
        }
        nested.lastFault = 0;
        return mem.read32(r.outputAddress);
      },
    };
    return { mem, s1, s2, s1cfg, s2cfg, nested, RAM_PA };
  }

  test('a nested walk succeeds and yields the IPA', () => {
    const { s1, s1cfg, s2cfg, nested, mem, RAM_PA } = nestedSetup();
    s1.map(0x7000_0000_0000, 0x80_0000, 0x2000, 3);
    const out = new WalkResult();
    walk(s1cfg, nested, 0x7000_0000_1234, ACCESS_W, out);
    assert.equal(out.fault, FAULT_NONE);
    assert.equal(out.outputAddress, 0x80_1234);
    const out2 = walk(s2cfg, physReader(mem), out.outputAddress, ACCESS_W, new WalkResult());
    assert.equal(out2.outputAddress, RAM_PA + 0x80_1234);
  });

  test('a stage-2 fault on a table fetch is FAULT_S2_ON_TABLE with the descriptor IPA', () => {
    const { s1, s2, s1cfg, nested } = nestedSetup();
    s1.map(0x7000_0000_0000, 0x80_0000, 0x2000, 3);
    // Tables in IPA order: root 0x100000, L1 0x101000, L2 0x102000, L3 0x103000.
    assert.equal(s2.unmap(0x10_2000, 0x1000), 0x1000);
    const out = new WalkResult();
    walk(s1cfg, nested, 0x7000_0000_1234, ACCESS_R, out);
    assert.equal(out.fault, FAULT_S2_ON_TABLE);
    assert.equal(out.s2Fault, FAULT_TRANSLATION);
    assert.equal(out.level, 2);
    assert.equal(out.faultAddress, 0x10_2000, 'L2 index 0 of the table at IPA 0x102000');
    // The stage-2 page of the L3 table made unreadable: a stage-2 permission fault.
    s2.map(0x10_2000, 0x20_0010_2000, 0x1000, 3);
    s2.setPerm(0x10_3000, 0x1000, ACCESS_W);
    walk(s1cfg, nested, 0x7000_0000_1234, ACCESS_R, out);
    assert.equal(out.fault, FAULT_S2_ON_TABLE);
    assert.equal(out.s2Fault, FAULT_PERMISSION);
    assert.equal(out.level, 3);
    assert.equal(out.faultAddress, 0x10_3000 + 1 * 8);
  });
});

describe('randomized: walker, builder.translate and a reference model agree', () => {
  const shapes: { stage: 1 | 2; granule: Granule; inputBits: number; blocks: number[]; seed: number }[] = [
    { stage: 1, granule: 4096, inputBits: 48, blocks: [2 * MiB, GiB], seed: 1 },
    { stage: 2, granule: 4096, inputBits: 39, blocks: [2 * MiB, GiB], seed: 2 },
    { stage: 1, granule: 16384, inputBits: 47, blocks: [32 * MiB], seed: 3 },
    { stage: 2, granule: 65536, inputBits: 42, blocks: [512 * MiB], seed: 4 },
  ];
  for (const sh of shapes) {
    test(`stage ${sh.stage}, ${sh.granule / 1024} KiB, ${sh.inputBits}-bit, seed ${sh.seed}`, () => {
      const rnd = mulberry32(sh.seed);
      const int = (n: number) => Math.floor(rnd() * n);
      const { b, cfg, reader, out } = setup(sh.stage, sh.granule, sh.inputBits);
      interface Ref { va: number; pa: number; size: number; perm: number }
      const ref = new Map<number, Ref>();
      const find = (va: number) => [...ref.values()].find((r) => va >= r.va && va < r.va + r.size);
      const overlaps = (va: number, size: number) => [...ref.values()].some((r) => va < r.va + r.size && r.va < va + size);
      // Keep VAs in a window so that random mappings collide now and then.
      const window = Math.min(2 ** sh.inputBits, 64 * Math.max(...sh.blocks));
      let rejected = 0;
      for (let i = 0; i < 120; i++) {
        const useBlock = int(3) === 0;
        const align = useBlock ? sh.blocks[int(sh.blocks.length)]! : sh.granule;
        const size = useBlock ? align * (1 + int(2)) : sh.granule * (1 + int(24));
        const va = int((window - size) / align) * align;
        const pa = int((2 ** 48 - size) / align) * align;
        const perm = sh.stage === 1 ? 1 | (int(2) * 2) : int(4);
        if (overlaps(va, size)) {
          assert.throws(() => b.map(va, pa, size, perm), RangeError, 'overlap must be rejected');
          rejected++;
          continue;
        }
        b.map(va, pa, size, perm, { nG: int(2) === 1 });
        ref.set(va, { va, pa, size, perm });
      }
      assert.ok(rejected > 0 && ref.size > 20, `exercise both paths (rejected ${rejected}, mapped ${ref.size})`);

      let blockLeaves = 0;
      const check = (va: number): void => {
        const r = find(va);
        const t = b.translate(va);
        walk(cfg, reader, va, 0, out);
        if (!r) {
          assert.equal(t, undefined, `translate 0x${va.toString(16)}`);
          assert.equal(out.fault, FAULT_TRANSLATION, `walk 0x${va.toString(16)}`);
          return;
        }
        const pa = r.pa + (va - r.va);
        assert.equal(out.fault, FAULT_NONE, `walk 0x${va.toString(16)}`);
        assert.equal(out.outputAddress, pa);
        assert.equal(out.perm, r.perm);
        assert.deepEqual(t, { pa, perm: r.perm, size: out.blockSize });
        if (out.blockSize > sh.granule) blockLeaves++;
        const leaf = va - (va % out.blockSize);
        assert.ok(leaf >= r.va && leaf + out.blockSize <= r.va + r.size, 'the leaf lies inside the mapping');
        for (const access of [ACCESS_R, ACCESS_W]) {
          const expect: number = (r.perm & access) === access ? FAULT_NONE : FAULT_PERMISSION;
          assert.equal(walk(cfg, reader, va, access, out).fault, expect);
        }
      };
      const probe = () => {
        for (const r of ref.values()) {
          check(r.va);
          check(r.va + r.size - 1);
          check(r.va + int(r.size));
          if (r.va >= sh.granule) check(r.va - 1);
          if (r.va + r.size < 2 ** sh.inputBits) check(r.va + r.size);
        }
        for (let i = 0; i < 200; i++) check(int(window));
      };
      probe();
      assert.ok(blockLeaves > 0, 'some translations came from block descriptors');
      // Unmap about half, then everything must still agree.
      for (const r of [...ref.values()]) {
        if (int(2) === 0) continue;
        assert.equal(b.unmap(r.va, r.size), r.size);
        ref.delete(r.va);
      }
      probe();
    });
  }
});
