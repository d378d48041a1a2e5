import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Iotlb, NO_ASID, PERM_R, PERM_W, type IotlbEntry } from '../../../src/host/smmuv3/iotlb.js';
import { mulberry32 } from '../../../src/kit/prng.js';

const K4 = 0x1000;
const M2 = 0x20_0000;
const G1 = 0x4000_0000;
const RW = PERM_R | PERM_W;

/** A stage-1 (nested) entry; `ipa` defaults to the iova, `pa` to a distinct address. */
function s1(vmid: number, asid: number, iova: number, size = K4, more: Partial<IotlbEntry> = {}): IotlbEntry {
  return { vmid, asid, global: false, stage1: true, iova, size, ipa: iova, pa: iova + 0x80_0000_0000, perm: RW, ...more };
}

function glob(vmid: number, iova: number, size = K4, more: Partial<IotlbEntry> = {}): IotlbEntry {
  return s1(vmid, 0, iova, size, { global: true, ...more });
}

function s2only(vmid: number, ipa: number, size = K4): IotlbEntry {
  return { vmid, asid: 0, global: false, stage1: false, iova: ipa, size, ipa, pa: ipa + 0x40_0000_0000, perm: RW };
}

function fill(t: Iotlb, es: IotlbEntry[]): void {
  for (const e of es) t.insert(e);
}

/** Entries as comparable strings, sorted. */
function contents(t: Iotlb): string[] {
  return t.entries().map(describe).sort();
}

function describe(e: IotlbEntry): string {
  const tag = !e.stage1 ? 's2' : e.global ? 'g' : `a${e.asid}`;
  return `v${e.vmid}/${tag}/${e.iova.toString(16)}+${e.size.toString(16)}`;
}

test('lookup hits anywhere inside a block and misses just outside it', () => {
  const t = new Iotlb();
  t.insert(s1(1, 5, 0x4020_0000, M2, { ipa: 0x1_0000_0000, pa: 0x2_0000_0000, perm: PERM_R }));
  const hit = t.lookup(1, 5, 0x4020_0000 + 0x1f_f000);
  assert.ok(hit);
  assert.equal(hit.iova, 0x4020_0000);
  assert.equal(hit.size, M2);
  assert.equal(hit.pa + (0x4020_0000 + 0x1f_f123 - hit.iova), 0x2_001f_f123);
  assert.equal(hit.perm, PERM_R);
  assert.ok(t.lookup(1, 5, 0x4020_0000 + 0x1f_ffff));
  assert.equal(t.lookup(1, 5, 0x4020_0000 + M2), undefined);
  assert.equal(t.lookup(1, 5, 0x4020_0000 - 1), undefined);
  assert.equal(t.lookup(1, 6, 0x4020_0000), undefined, 'other ASID');
  assert.equal(t.lookup(2, 5, 0x4020_0000), undefined, 'other VMID');
});

test('addresses near 2^52 and sizes up to 4 TiB are exact', () => {
  const t = new Iotlb();
  const top = 2 ** 52 - K4;
  t.insert(s1(1, 1, top, K4, { ipa: 2 ** 47, pa: 2 ** 48 - K4 }));
  t.insert(s1(1, 1, 2 ** 51, 2 ** 42, { ipa: 0, pa: 0 }));
  assert.equal(t.lookup(1, 1, top + 0xfff)?.pa, 2 ** 48 - K4);
  assert.equal(t.lookup(1, 1, top - 1), undefined);
  assert.equal(t.lookup(1, 1, 2 ** 51 + 2 ** 42 - 1)?.size, 2 ** 42);
  assert.equal(t.lookup(1, 1, 2 ** 51 + 2 ** 42), undefined);
  assert.equal(t.invalidateVa(1, 1, top, K4), 1);
  assert.equal(t.invalidateIpa(1, 2 ** 41, K4), 1, 'the 4 TiB entry maps IPA [0, 2^42)');
  assert.equal(t.size, 0);
});

test('global entries match every ASID of their VMID only; stage-2-only entries only NO_ASID', () => {
  const t = new Iotlb();
  fill(t, [glob(1, 0x10_0000), s2only(1, 0x20_0000)]);
  for (const asid of [0, 1, 0xffff]) assert.ok(t.lookup(1, asid, 0x10_0000), `ASID ${asid}`);
  assert.equal(t.lookup(2, 1, 0x10_0000), undefined, 'other VMID');
  assert.equal(t.lookup(1, NO_ASID, 0x10_0000), undefined, 'a stage-2-only stream never sees stage-1 entries');
  assert.ok(t.lookup(1, NO_ASID, 0x20_0000));
  assert.equal(t.lookup(1, 0, 0x20_0000), undefined, 'a stage-1 stream never sees stage-2-only entries');
});

test('lookup prefers the ASID entry over a global one, and the smaller of overlapping entries', () => {
  const t = new Iotlb();
  fill(t, [glob(1, 0, M2, { pa: 0x100_0000 }), s1(1, 3, 0, M2, { pa: 0x200_0000 }), s1(1, 3, 0x1000, K4, { pa: 0x300_0000 })]);
  assert.equal(t.lookup(1, 3, 0x1000)?.pa, 0x300_0000);
  assert.equal(t.lookup(1, 3, 0x2000)?.pa, 0x200_0000);
  assert.equal(t.lookup(1, 4, 0x2000)?.pa, 0x100_0000);
});

test('TLBI_NH_ASID keeps global, other-ASID and stage-2-only entries', () => {
  const t = new Iotlb();
  fill(t, [s1(1, 1, 0x1000), s1(1, 1, 0, M2), s1(1, 2, 0x1000), glob(1, 0x5000), s2only(1, 0x1000), s1(2, 1, 0x1000)]);
  assert.equal(t.invalidateAsid(1, 1), 2);
  assert.deepEqual(contents(t), ['v1/a2/1000+1000', 'v1/g/5000+1000', 'v1/s2/1000+1000', 'v2/a1/1000+1000']);
  assert.ok(t.lookup(1, 1, 0x5000), 'the global entry still serves ASID 1');
  assert.equal(t.lookup(1, 1, 0x1000), undefined);
  assert.equal(t.invalidateAsid(1, 1), 0);
  assert.equal(t.invalidateAsid(9, 1), 0);
});

test('TLBI_NH_VA removes that ASID’s and global entries overlapping the range, keeps the rest', () => {
  const t = new Iotlb();
  fill(t, [
    s1(1, 1, 0x10_0000),
    s1(1, 1, 0x10_1000),
    s1(1, 1, 0x10_2000), // outside [0x10_0000, 0x10_2000)
    s1(1, 2, 0x10_0000), // other ASID
    glob(1, 0x10_1000),
    glob(1, 0x10_3000), // outside
    s2only(1, 0x10_0000), // stage 2 only: not a stage-1 invalidation's business
    s1(2, 1, 0x10_0000), // other VMID
  ]);
  assert.equal(t.invalidateVa(1, 1, 0x10_0000, 0x2000, true), 3);
  assert.deepEqual(contents(t), [
    'v1/a1/102000+1000',
    'v1/a2/100000+1000',
    'v1/g/103000+1000',
    'v1/s2/100000+1000',
    'v2/a1/100000+1000',
  ]);
  assert.equal(t.invalidateVa(1, 1, 0x10_2fff, 1), 1, 'one byte inside the page is enough');
});

test('TLBI_NH_VAA removes the range from every ASID of the VMID', () => {
  const t = new Iotlb();
  fill(t, [s1(1, 1, 0x1000), s1(1, 2, 0x1000), s1(1, 3, 0x2000), glob(1, 0x1000), s2only(1, 0x1000), s1(2, 1, 0x1000)]);
  assert.equal(t.invalidateVa(1, undefined, 0x1000, 0x1000), 3);
  assert.deepEqual(contents(t), ['v1/a3/2000+1000', 'v1/s2/1000+1000', 'v2/a1/1000+1000']);
});

test('a range that overlaps part of a block removes the whole block', () => {
  const t = new Iotlb();
  fill(t, [s1(1, 1, 0, M2), s1(1, 1, M2), s1(1, 1, M2 + K4), s1(1, 1, 0, G1), s1(1, 1, G1, M2)]);
  // [0x1f_f000, 0x20_1000): last page of the 2 MiB block, first page after it; the 1 GiB block.
  assert.equal(t.invalidateVa(1, 1, M2 - K4, 2 * K4), 3);
  assert.deepEqual(contents(t), ['v1/a1/201000+1000', 'v1/a1/40000000+200000']);
  assert.equal(t.lookup(1, 1, 0x1000), undefined);
});

test('huge ranges remove exactly the overlapping entries (no per-page loop)', () => {
  const t = new Iotlb();
  const es: IotlbEntry[] = [];
  for (let i = 0; i < 3000; i++) es.push(s1(1, 1, i * 0x1_2345_6000, K4, { ipa: i * 0x10_0000 }));
  fill(t, es);
  // NUM = 31, SCALE = 31 of 64 KiB pages: 2^52 bytes.
  const removed = t.invalidateVa(1, 1, 0x100_0000_0000, 32 * 2 ** 31 * 0x1_0000);
  assert.equal(removed, es.filter((e) => e.iova >= 0x100_0000_0000).length);
  assert.ok(removed > 0 && removed < 3000);
  // A range a few buckets long: the bucket walk.
  const before = t.size;
  assert.equal(t.invalidateIpa(1, 0x10_0000 * 10 + K4, 0x10_0000 * 20), 20);
  assert.equal(t.size, before - 20);
  assert.equal(t.lookup(1, 1, 11 * 0x1_2345_6000), undefined);
  assert.ok(t.lookup(1, 1, 10 * 0x1_2345_6000));
  assert.ok(t.lookup(1, 1, 31 * 0x1_2345_6000));
  // Dense pages: a 100-page range is cheaper to probe page by page than to walk.
  const dense: IotlbEntry[] = [];
  for (let i = 0; i < 3000; i++) dense.push(s1(2, 1, 0x4000_0000 + i * K4, K4, { ipa: 0x8000_0000 + i * K4 }));
  fill(t, dense);
  assert.equal(t.invalidateVa(2, 1, 0x4000_0000 + 1000 * K4 + 1, 100 * K4), 101);
  assert.equal(t.invalidateIpa(2, 0x8000_0000 + 2000 * K4, 100 * K4), 100);
  assert.equal(t.lookup(2, 1, 0x4000_0000 + 1000 * K4), undefined);
  assert.equal(t.lookup(2, 1, 0x4000_0000 + 1100 * K4), undefined);
  assert.ok(t.lookup(2, 1, 0x4000_0000 + 999 * K4));
  assert.ok(t.lookup(2, 1, 0x4000_0000 + 1101 * K4));
  assert.ok(t.lookup(2, 1, 0x4000_0000 + 1999 * K4));
  assert.equal(t.lookup(2, 1, 0x4000_0000 + 2099 * K4), undefined);
  assert.ok(t.lookup(2, 1, 0x4000_0000 + 2100 * K4));
});

test('churn over many far-apart regions keeps every index right', () => {
  // Entries 4 GiB apart (IOVA and IPA), in new regions each round: each lands in its own index
  // bucket, so the rounds leave hundreds of emptied buckets behind to be swept.
  const t = new Iotlb();
  const far = (i: number, round: number): IotlbEntry =>
    s1(1, 1, (i + 300 * round) * 2 ** 32, K4, { ipa: (i + 300 * round + 5000) * 2 ** 32 });
  t.insert(s1(1, 1, 2 ** 50)); // keeps the context alive throughout
  for (let round = 0; round < 6; round++) {
    for (let i = 0; i < 300; i++) t.insert(far(i, round));
    assert.equal(t.size, 301);
    for (let i = 0; i < 300; i += 2) assert.equal(t.invalidateVa(1, 1, far(i, round).iova, K4), 1);
    for (let i = 1; i < 300; i += 2) assert.equal(t.invalidateIpa(1, far(i, round).ipa, K4), 1);
    assert.equal(t.size, 1);
  }
  for (let i = 0; i < 300; i++) t.insert(far(i, 9));
  assert.equal(t.invalidateVa(1, 1, 2700 * 2 ** 32, 150 * 2 ** 32), 150, 'a range over 150 regions');
  assert.equal(t.invalidateIpa(1, 7850 * 2 ** 32, 100 * 2 ** 32), 100);
  assert.equal(t.size, 51);
  assert.ok(t.lookup(1, 1, far(299, 9).iova));
  assert.equal(t.lookup(1, 1, far(149, 9).iova), undefined);
  assert.equal(t.lookup(1, 1, far(150, 9).iova), undefined);
  assert.equal(t.invalidateIpa(1, 2 ** 50, K4), 1, 'the keeper, whose buckets lived through every sweep');
  assert.equal(t.invalidateVa(1, 1, 0, 2 ** 52), 50);
  assert.equal(t.size, 0);
});

test('TLBI_S2_IPA removes nested and stage-2-only entries whose IPA overlaps', () => {
  const t = new Iotlb();
  fill(t, [
    s1(1, 1, 0x7000_0000, K4, { ipa: 0x10_0000 }), // IOVA far away, IPA in range
    s1(1, 2, 0x8000_0000, M2, { ipa: 0 }), // 2 MiB IPA block containing the range
    glob(1, 0x9000_0000, K4, { ipa: 0x10_1000 }),
    s2only(1, 0x10_0000),
    s1(1, 1, 0x10_0000, K4, { ipa: 0x50_0000 }), // IOVA in range, IPA not
    s1(2, 1, 0x7000_0000, K4, { ipa: 0x10_0000 }), // other VMID
  ]);
  assert.equal(t.invalidateIpa(1, 0x10_0000, 0x2000), 4);
  assert.deepEqual(contents(t), ['v1/a1/100000+1000', 'v2/a1/70000000+1000']);
});

test('invalidating VMID 1 never touches VMID 2', () => {
  const make = (): Iotlb => {
    const t = new Iotlb();
    for (const v of [1, 2]) fill(t, [s1(v, 1, 0x1000), glob(v, 0x2000), s2only(v, 0x1000), s1(v, 7, 0, M2)]);
    return t;
  };
  const ops: [string, (t: Iotlb) => number][] = [
    ['S12_VMALL', (t) => t.invalidateVmid(1)],
    ['NH_ALL', (t) => t.invalidateVmidStage1(1)],
    ['NH_ASID', (t) => t.invalidateAsid(1, 1)],
    ['NH_VA', (t) => t.invalidateVa(1, 1, 0, 2 ** 40)],
    ['NH_VAA', (t) => t.invalidateVa(1, undefined, 0, 2 ** 40)],
    ['S2_IPA', (t) => t.invalidateIpa(1, 0, 2 ** 40)],
  ];
  for (const [name, op] of ops) {
    const t = make();
    assert.ok(op(t) > 0, name);
    assert.deepEqual(
      contents(t).filter((s) => s.startsWith('v2/')),
      ['v2/a1/1000+1000', 'v2/a7/0+200000', 'v2/g/2000+1000', 'v2/s2/1000+1000'],
      name,
    );
  }
});

test('TLBI_NH_ALL keeps stage-2-only entries, TLBI_S12_VMALL and TLBI_NSNH_ALL remove them', () => {
  const t = new Iotlb();
  fill(t, [s1(1, 1, 0x1000), s1(1, 2, 0x1000), glob(1, 0x2000), s2only(1, 0x1000), s2only(1, 0, M2)]);
  assert.equal(t.invalidateVmidStage1(1), 3);
  assert.deepEqual(contents(t), ['v1/s2/0+200000', 'v1/s2/1000+1000']);
  assert.equal(t.invalidateVmid(1), 2);
  assert.equal(t.size, 0);
  fill(t, [s1(1, 1, 0x1000), s2only(3, 0x1000)]);
  assert.equal(t.invalidateAll(), 2);
  assert.equal(t.size, 0);
  assert.deepEqual(t.entries(), []);
  assert.equal(t.lookup(3, NO_ASID, 0x1000), undefined);
});

test('a full IOTLB evicts its oldest entry and counts it; replacement does not evict', () => {
  const t = new Iotlb(3);
  fill(t, [s1(1, 1, 0x1000), s1(1, 1, 0x2000), s1(1, 1, 0x3000)]);
  t.insert(s1(1, 1, 0x2000, K4, { pa: 0x1234_5000 })); // replaces: no eviction
  assert.equal(t.stats.evictions, 0);
  assert.equal(t.size, 3);
  assert.equal(t.lookup(1, 1, 0x2000)?.pa, 0x1234_5000);
  t.insert(s1(1, 1, 0x4000));
  assert.equal(t.stats.evictions, 1);
  assert.equal(t.size, 3);
  assert.equal(t.lookup(1, 1, 0x1000), undefined, 'the oldest went');
  assert.deepEqual(
    t.entries().map((e) => e.iova),
    [0x3000, 0x2000, 0x4000],
    'entries() is oldest first; a replacement counts as new',
  );
  // Invalidated entries leave no hole: the next eviction takes the oldest live one.
  t.invalidateVa(1, 1, 0x3000, K4);
  fill(t, [s1(1, 1, 0x5000), s1(1, 1, 0x6000)]);
  assert.deepEqual(
    t.entries().map((e) => e.iova),
    [0x4000, 0x5000, 0x6000],
  );
  assert.equal(t.stats.evictions, 2);
});

test('global entries are one context: inserting one replaces another whatever its asid field', () => {
  const t = new Iotlb();
  t.insert(glob(1, 0x1000, K4, { asid: 3, pa: 0x10_0000 }));
  t.insert(glob(1, 0x1000, K4, { asid: 4, pa: 0x20_0000 }));
  assert.equal(t.size, 1);
  assert.equal(t.lookup(1, 9, 0x1000)?.pa, 0x20_0000);
  // ... while the same IOVA in an ASID context or as a different size is a separate entry.
  t.insert(s1(1, 4, 0x1000));
  t.insert(glob(1, 0, M2));
  assert.equal(t.size, 3);
});

test('stats count hits, misses, inserts, evictions and invalidated entries', () => {
  const t = new Iotlb(2);
  fill(t, [s1(1, 1, 0x1000), s1(1, 1, 0x2000), s1(1, 1, 0x3000)]);
  t.lookup(1, 1, 0x2000);
  t.lookup(1, 1, 0x3fff);
  t.lookup(1, 1, 0x1000);
  t.lookup(5, 1, 0x1000);
  t.invalidateAsid(1, 1);
  t.insert(s2only(1, 0));
  t.invalidateAll();
  assert.deepEqual({ ...t.stats }, { hits: 2, misses: 2, inserts: 4, evictions: 1, invalidated: 3 });
});

test('inserts copy; entries() are frozen copies that outlive reuse of the id; bad entries are rejected', () => {
  const t = new Iotlb();
  const e = { ...s1(1, 1, 0x1000) };
  t.insert(e);
  e.pa = 0;
  const got = t.lookup(1, 1, 0x1000);
  assert.equal(got?.pa, 0x80_0000_1000);
  const snap = t.entries();
  assert.ok(Object.isFrozen(snap[0]));
  assert.deepEqual(snap, [s1(1, 1, 0x1000)]);
  // The freed id's record is reused by the next insertion; the snapshot keeps the old values.
  t.invalidateAsid(1, 1);
  t.insert(s1(1, 2, 0x5000));
  assert.deepEqual(t.lookup(1, 2, 0x5000), s1(1, 2, 0x5000));
  assert.equal(t.lookup(1, 1, 0x1000), undefined);
  assert.deepEqual(snap, [s1(1, 1, 0x1000)]);
  const bad: Partial<IotlbEntry>[] = [
    { size: 0x3000 },
    { size: 0x800 },
    { size: 2 ** 43, iova: 0, ipa: 0, pa: 0 },
    { iova: 0x1800 },
    { ipa: 0x1001 },
    { pa: -0x1000 },
    { vmid: 0x1_0000 },
    { asid: -1 },
    { perm: 4 },
    { perm: 1.5 },
    { vmid: 1.5 },
    { iova: Number.NaN },
    { pa: 2 ** 60 },
    { ipa: Number.POSITIVE_INFINITY },
  ];
  for (const b of bad) assert.throws(() => t.insert({ ...s1(1, 1, 0x1000), ...b }), RangeError, JSON.stringify(b));
  assert.throws(() => new Iotlb(0), RangeError);
  assert.equal(t.size, 1);
});

// ---------------------------------------------------------------------------------------------
// Property test against a naive model: an array scanned for everything.


class NaiveIotlb {
  list: IotlbEntry[] = [];
  stats = { hits: 0, misses: 0, inserts: 0, evictions: 0, invalidated: 0 };
  constructor(readonly capacity: number) {}

  private static tag(e: IotlbEntry): string {
    return !e.stage1 ? 's2' : e.global ? 'g' : `a${e.asid}`;
  }

  insert(e: IotlbEntry): void {
    this.stats.inserts++;
    const i = this.list.findIndex(
      (o) => o.vmid === e.vmid && NaiveIotlb.tag(o) === NaiveIotlb.tag(e) && o.iova === e.iova && o.size === e.size,
    );
    if (i >= 0) this.list.splice(i, 1);
    else if (this.list.length >= this.capacity) {
      this.list.shift();
      this.stats.evictions++;
    }
    this.list.push({ ...e });
  }

  lookup(vmid: number, asid: number, iova: number): IotlbEntry | undefined {
    const rank = (e: IotlbEntry): number => {
      if (e.vmid !== vmid || iova < e.iova || iova >= e.iova + e.size) return -1;
      if (asid > 0xffff) return e.stage1 ? -1 : 0;
      if (!e.stage1) return -1;
      if (e.global) return 1;
      return e.asid === asid ? 0 : -1;
    };
    let best: IotlbEntry | undefined;
    let bestRank = 2;
    for (const e of this.list) {
      const r = rank(e);
      if (r < 0) continue;
      if (r < bestRank || (r === bestRank && best !== undefined && e.size < best.size)) {
        best = e;
        bestRank = r;
      }
    }
    if (best) this.stats.hits++;
    else this.stats.misses++;
    return best;
  }

  remove(pred: (e: IotlbEntry) => boolean): number {
    const before = this.list.length;
    this.list = this.list.filter((e) => !pred(e));
    const n = before - this.list.length;
    this.stats.invalidated += n;
    return n;
  }
}

const overlaps = (a: number, size: number, b: number, len: number): boolean => a < b + len && b < a + size;

test('randomized operations agree with a naive array-scanning model', () => {
  for (const seed of [1, 2, 3, 0xc0ffee]) {
    const rnd = mulberry32(seed);
    const int = (n: number): number => Math.floor(rnd() * n);
    const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
    const capacity = 100 + int(100);
    const t = new Iotlb(capacity);
    const ref = new NaiveIotlb(capacity);
    // Few VMIDs/ASIDs and a small address window so entries collide, overlap and get replaced;
    // one window sits near 2^52 to exercise keys above 2^32.
    const bases = [0, 0x80_0000_0000, 2 ** 52 - 2 ** 31];
    const sizes = [K4, K4, K4, K4, K4, K4, 0x1_0000, 0x1_0000, M2, M2, 0x200_0000, G1];
    const addr = (size: number): number => pick(bases) + Math.floor(int(rnd() < 0.5 ? 2 ** 24 : 2 ** 30) / size) * size;
    const lengths = (): number => {
      const r = rnd();
      if (r < 0.3) return K4;
      if (r < 0.55) return 16 * K4;
      if (r < 0.7) return 1 + int(4 * K4);
      if (r < 0.85) return (1 + int(3000)) * K4; // long enough for the bucket walk
      if (r < 0.97) return (1 + int(31)) * 2 ** (12 + int(32)); // range TLBI: (NUM + 1) · 2^SCALE pages
      return 2 ** 52;
    };
    for (let step = 0; step < 4000; step++) {
      const vmid = 1 + int(3);
      const asid = int(4);
      const r = rnd();
      if (r < 0.55) {
        const size = pick(sizes);
        const kind = rnd();
        const iova = addr(size);
        const e: IotlbEntry = {
          vmid,
          asid,
          global: kind < 0.15,
          stage1: kind >= 0.05,
          iova,
          size,
          ipa: kind < 0.05 ? iova : addr(size),
          pa: Math.floor(int(2 ** 40) / size) * size,
          perm: 1 + int(3),
        };
        t.insert(e);
        ref.insert(e);
      } else if (r < 0.92) {
        // Mostly aimed inside a cached entry, sometimes with the wrong VMID or ASID.
        let v = vmid;
        let a = rnd() < 0.1 ? NO_ASID : asid;
        let iova = addr(K4) + int(3 * M2);
        if (rnd() < 0.7 && ref.list.length > 0) {
          const e = pick(ref.list);
          iova = e.iova + int(e.size);
          if (rnd() < 0.8) {
            v = e.vmid;
            a = !e.stage1 ? NO_ASID : e.global ? int(4) : e.asid;
          }
        }
        assert.deepEqual(t.lookup(v, a, iova), ref.lookup(v, a, iova), `seed ${seed} step ${step} lookup`);
      } else {
        const w = rnd();
        const op = w < 0.08 ? 0 : w < 0.53 ? 1 : w < 0.68 ? 2 : w < 0.98 ? 3 : w < 0.99 ? 4 : w < 0.997 ? 5 : 6;
        const len = lengths();
        // Mostly aimed at a cached entry's context, with a range starting just before it or
        // ending just inside it, so that the edges of every index walk get exercised.
        const tgt = ref.list.length > 0 && rnd() < 0.7 ? pick(ref.list) : undefined;
        const iv = tgt?.vmid ?? vmid;
        const ia = tgt !== undefined && tgt.stage1 && !tgt.global ? tgt.asid : asid;
        const near = (field: 'iova' | 'ipa'): number => {
          if (tgt === undefined) return addr(K4);
          const at = rnd() < 0.5 ? tgt[field] - int(4) * K4 : tgt[field] + tgt.size - len + int(2) * K4;
          return Math.max(0, at);
        };
        const va = near('iova');
        let got: number;
        let want: number;
        switch (op) {
          case 0:
            got = t.invalidateAsid(iv, ia);
            want = ref.remove((e) => e.vmid === iv && e.stage1 && !e.global && e.asid === ia);
            break;
          case 1:
            got = t.invalidateVa(iv, ia, va, len);
            want = ref.remove(
              (e) => e.vmid === iv && e.stage1 && (e.global || e.asid === ia) && overlaps(e.iova, e.size, va, len),
            );
            break;
          case 2:
            got = t.invalidateVa(iv, undefined, va, len);
            want = ref.remove((e) => e.vmid === iv && e.stage1 && overlaps(e.iova, e.size, va, len));
            break;
          case 3: {
            const ipa = near('ipa');
            got = t.invalidateIpa(iv, ipa, len);
            want = ref.remove((e) => e.vmid === iv && overlaps(e.ipa, e.size, ipa, len));
            break;
          }
          case 4:
            got = t.invalidateVmidStage1(iv);
            want = ref.remove((e) => e.vmid === iv && e.stage1);
            break;
          case 5:
            got = t.invalidateVmid(iv);
            want = ref.remove((e) => e.vmid === iv);
            break;
          default:
            got = t.invalidateAll();
            want = ref.remove(() => true);
        }
        assert.equal(got, want, `seed ${seed} step ${step} op ${op} len ${len}`);
      }
      assert.equal(t.size, ref.list.length, `seed ${seed} step ${step} size`);
      for (const v of [0, 1, 2, 3]) {
        assert.equal(t.hasVmid(v), ref.list.some((e) => e.vmid === v), `seed ${seed} step ${step} hasVmid(${v})`);
      }
      if (step % 97 === 0) assert.deepEqual(t.entries(), ref.list, `seed ${seed} step ${step} entries`);
    }
    assert.deepEqual(t.entries(), ref.list);
    assert.deepEqual({ ...t.stats }, ref.stats, `seed ${seed} stats`);
    assert.ok(ref.stats.evictions > 0 && ref.stats.invalidated > 0 && ref.stats.hits > 0, `seed ${seed} covers`);
  }
});

test('a VMID or ASID emptied and refilled (kept for reuse) holds only its new entries', () => {
  const t = new Iotlb();
  for (let round = 0; round < 3; round++) {
    // Emptied entry by entry: the VMID and its context are kept and reused.
    t.insert(s1(1, 5, 0x1000));
    t.insert(s1(1, 5, 0x2000, K4, { pa: 0x5000_0000 + round * K4 }));
    assert.equal(t.invalidateVa(1, 5, 0x1000, 0x2000), 2);
    assert.equal(t.hasVmid(1), false);
    assert.equal(t.lookup(1, 5, 0x1000), undefined);
    // Dropped whole (TLBI_NH_ASID): the context's indexes still name the old ids, so it is not reused.
    t.insert(s1(1, 5, 0x3000));
    t.insert(s1(1, 5, 0x4000));
    assert.equal(t.invalidateAsid(1, 5), 2);
    t.insert(s1(1, 5, 0x5000));
    assert.deepEqual(contents(t), ['v1/a5/5000+1000']);
    assert.equal(t.lookup(1, 5, 0x3000), undefined, 'no id of the dropped context comes back');
    assert.equal(t.lookup(1, 5, 0x5000)!.iova, 0x5000);
    assert.equal(t.invalidateVmid(1), 1);
    assert.equal(t.size, 0);
  }
  // Many VMIDs emptied in turn stay bounded (swept) and stay empty.
  for (let v = 0; v < 300; v++) {
    t.insert(s2only(v, 0x1000));
    assert.equal(t.invalidateIpa(v, 0x1000, K4), 1);
  }
  assert.equal(t.size, 0);
  for (let v = 0; v < 300; v++) assert.equal(t.hasVmid(v), false);
});

test('peek answers from its last entry only while nothing changed: a smaller entry inserted or the entry removed is seen at once', () => {
  const t = new Iotlb();
  t.insert(s2only(1, G1, G1));
  assert.equal(t.peek(1, NO_ASID, G1 + 0x1000)!.size, G1);
  assert.equal(t.peek(1, NO_ASID, G1 + 0x5000)!.size, G1, 'same entry for another address in its range');
  // A 4 KiB entry inside the block (stale overlap): the smaller one answers for its page.
  t.insert(s2only(1, G1 + 0x5000, K4));
  assert.equal(t.peek(1, NO_ASID, G1 + 0x5000)!.size, K4);
  assert.equal(t.peek(1, NO_ASID, G1 + 0x6000)!.size, G1);
  // With a smaller size in use, the block's answer is not kept: the 4 KiB page still wins.
  assert.equal(t.peek(1, NO_ASID, G1 + 0x5000)!.size, K4);
  assert.equal(t.invalidateIpa(1, G1 + 0x5000, K4), 2, 'the page and the block overlapping it');
  assert.equal(t.peek(1, NO_ASID, G1 + 0x6000), undefined);
  // An ASID's answer is not given for another ASID, nor a global entry's ahead of the ASID's own.
  t.insert(glob(2, 0x20_0000, M2));
  assert.equal(t.peek(2, 7, 0x20_1000)!.global, true);
  t.insert(s1(2, 7, 0x20_1000));
  assert.equal(t.peek(2, 7, 0x20_1000)!.global, false);
  assert.equal(t.peek(2, 8, 0x20_1000)!.global, true);
  assert.equal(t.peek(2, 7, 0x20_2000)!.global, true);
});

test('peek keeps its answer across changes to other contexts, and drops it when its own context changes or is released and reused', () => {
  const t = new Iotlb();
  const S2PA = G1 + 0x40_0000_0000;
  t.insert(s2only(1, G1, G1));
  assert.equal(t.peek(1, NO_ASID, G1 + 0x1000)!.pa, S2PA);
  // A map/unmap loop's stage-1 entries come and go in the ASID's context: the stage-2 answer stands.
  for (let i = 0; i < 3; i++) {
    t.insert(s1(1, 5, 0x1000));
    assert.equal(t.peek(1, NO_ASID, G1 + 0x2000)!.pa, S2PA);
    assert.equal(t.invalidateVa(1, 5, 0x1000, K4), 1);
    assert.equal(t.peek(1, NO_ASID, G1 + 0x3000)!.pa, S2PA);
  }
  // The stage-2 context emptied whole and refilled (its object reused): the new entry answers.
  assert.equal(t.invalidateVmid(1), 1);
  assert.equal(t.peek(1, NO_ASID, G1 + 0x1000), undefined);
  t.insert({ ...s2only(1, G1, G1), pa: 2 * G1 });
  assert.equal(t.peek(1, NO_ASID, G1 + 0x1000)!.pa, 2 * G1);
  // An ASID's context dropped by TLBI_NH_ASID and rebuilt: not the old entry.
  t.insert(s1(1, 9, M2, M2, { pa: M2 }));
  assert.equal(t.peek(1, 9, M2 + 0x1000)!.pa, M2);
  assert.equal(t.invalidateAsid(1, 9), 1);
  assert.equal(t.peek(1, 9, M2 + 0x1000), undefined);
  t.insert(s1(1, 9, M2, M2, { pa: 4 * M2 }));
  assert.equal(t.peek(1, 9, M2 + 0x1000)!.pa, 4 * M2);
  // Everything invalidated.
  t.invalidateAll();
  assert.equal(t.peek(1, 9, M2 + 0x1000), undefined);
  assert.equal(t.peek(1, NO_ASID, G1 + 0x1000), undefined);
});

test('a one-page TLBI_NH_VA removes exactly the page and the blocks over it, whether the ASID holds a few entries or many', () => {
  for (const n of [1, 64, 65, 500]) {
    const t = new Iotlb();
    for (let i = 0; i < n; i++) t.insert(s1(1, 3, 0x4000_0000 + i * K4));
    t.insert(s1(1, 3, 0x20_0000, M2));
    t.insert(glob(1, 0x1000));
    assert.equal(t.invalidateVa(1, 3, 0x4000_0000 + (n - 1) * K4, K4), 1, `${n}: the last page`);
    assert.equal(t.lookup(1, 3, 0x4000_0000 + (n - 1) * K4), undefined);
    if (n > 1) assert.notEqual(t.lookup(1, 3, 0x4000_0000 + (n - 2) * K4), undefined, `${n}: its neighbour stays`);
    assert.equal(t.invalidateVa(1, 3, 0x20_0000 + 0x5000, K4), 1, `${n}: the 2 MiB block under the page`);
    assert.equal(t.invalidateVa(1, 3, 0x1000, K4), 1, `${n}: the global entry`);
    assert.equal(t.invalidateVa(1, 3, 0x3000_0000, K4), 0, `${n}: nothing there`);
    assert.equal(t.size, n - 1);
  }
});

test('contexts emptied one by one stay attached only for a while, and every invalidation still sees them right', () => {
  const t = new Iotlb();
  // 200 ASIDs filled and emptied by VA: the contexts park, then are detached in turn.
  for (let a = 0; a < 200; a++) {
    t.insert(s1(1, a, 0x1000));
    t.insert(s1(1, a, 0x2000));
    assert.equal(t.invalidateVa(1, a, 0x1000, K4), 1);
    assert.equal(t.invalidateVa(1, a, 0x2000, K4), 1);
  }
  t.insert(s2only(1, 0x1000));
  // A parked context holds nothing: by-ASID and by-VMID invalidations remove nothing of it.
  assert.equal(t.invalidateAsid(1, 199), 0);
  assert.equal(t.invalidateVmidStage1(1), 0);
  assert.deepEqual(contents(t), ['v1/s2/1000+1000']);
  // A parked context refills with only its new entries.
  t.insert(s1(1, 5, 0x3000));
  assert.deepEqual(contents(t), ['v1/a5/3000+1000', 'v1/s2/1000+1000']);
  assert.equal(t.lookup(1, 5, 0x1000), undefined);
  assert.equal(t.invalidateVmid(1), 2);
  assert.equal(t.hasVmid(1), false);
  // A VMID left empty with parked contexts comes back clean.
  t.insert(s1(1, 9, 0x4000));
  assert.equal(t.invalidateVa(1, 9, 0x4000, K4), 1);
  t.insert(s1(1, 9, 0x5000));
  assert.deepEqual(contents(t), ['v1/a9/5000+1000']);
  assert.equal(t.size, 1);
});

test('peek and lookup agree with the naive model across many VMIDs and ASIDs emptied, parked, swept and refilled', () => {
  // The memos (last VMID, per-VMID last ASID, last bucket, peek's per-context answer) and the
  // parked contexts only show with churn over more VMIDs and ASIDs than they keep (64 each).
  for (const seed of [7, 8, 9, 10]) {
    const rnd = mulberry32(seed);
    const int = (n: number): number => Math.floor(rnd() * n);
    const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
    const capacity = 50 + int(200);
    const t = new Iotlb(capacity);
    const ref = new NaiveIotlb(capacity);
    const quiet = (v: number, a: number, iova: number): IotlbEntry | undefined => {
      const s = { ...ref.stats };
      const e = ref.lookup(v, a, iova);
      ref.stats = s;
      return e;
    };
    const sizes = [K4, K4, K4, 0x4000, M2];
    for (let step = 0; step < 6000; step++) {
      const vmid = rnd() < 0.5 ? 1 + int(3) : int(100);
      const asid = rnd() < 0.5 ? int(3) : int(100);
      const r = rnd();
      if (r < 0.4) {
        const size = pick(sizes);
        const kind = rnd();
        const iova = Math.floor(int(8 * M2) / size) * size;
        const e: IotlbEntry = {
          vmid, asid, global: kind < 0.1, stage1: kind >= 0.25, iova, size,
          ipa: kind < 0.25 ? iova : Math.floor(int(8 * M2) / size) * size,
          pa: Math.floor(int(2 ** 36) / size) * size, perm: 1 + int(3),
        };
        t.insert(e);
        ref.insert(e);
        if (rnd() < 0.5) {
          // A map/unmap loop: the page looked up, peeked (as a walk's stage 2 would), then invalidated.
          const a = !e.stage1 ? NO_ASID : e.global ? int(100) : e.asid;
          const at = e.iova + int(e.size);
          assert.deepEqual(t.peek(vmid, a, at), quiet(vmid, a, at), `seed ${seed} step ${step} peek after insert`);
          if (e.stage1 && !e.global) {
            assert.equal(t.invalidateVa(vmid, e.asid, at & ~0xfff, K4), ref.remove((o) => o.vmid === vmid && o.stage1 && (o.global || o.asid === e.asid) && overlaps(o.iova, o.size, at & ~0xfff, K4)));
          }
        }
      } else if (r < 0.85) {
        let v = vmid;
        let a = rnd() < 0.2 ? NO_ASID : asid;
        let iova = int(8 * M2);
        if (rnd() < 0.8 && ref.list.length > 0) {
          const e = pick(ref.list);
          iova = e.iova + int(e.size);
          if (rnd() < 0.8) {
            v = e.vmid;
            a = !e.stage1 ? NO_ASID : e.global ? int(100) : e.asid;
          }
        }
        if (rnd() < 0.5) assert.deepEqual(t.peek(v, a, iova), quiet(v, a, iova), `seed ${seed} step ${step} peek`);
        else assert.deepEqual(t.lookup(v, a, iova), ref.lookup(v, a, iova), `seed ${seed} step ${step} lookup`);
      } else {
        const tgt = ref.list.length > 0 && rnd() < 0.8 ? pick(ref.list) : undefined;
        const iv = tgt?.vmid ?? vmid;
        const ia = tgt !== undefined && tgt.stage1 && !tgt.global ? tgt.asid : asid;
        const va = tgt !== undefined ? tgt.iova : int(8 * M2) & ~0xfff;
        const len = rnd() < 0.7 ? K4 : M2;
        const op = int(7);
        let got: number;
        let want: number;
        if (op === 0) {
          got = t.invalidateAsid(iv, ia);
          want = ref.remove((e) => e.vmid === iv && e.stage1 && !e.global && e.asid === ia);
        } else if (op <= 2) {
          got = t.invalidateVa(iv, ia, va, len);
          want = ref.remove((e) => e.vmid === iv && e.stage1 && (e.global || e.asid === ia) && overlaps(e.iova, e.size, va, len));
        } else if (op === 3) {
          got = t.invalidateVa(iv, undefined, va, len);
          want = ref.remove((e) => e.vmid === iv && e.stage1 && overlaps(e.iova, e.size, va, len));
        } else if (op === 4) {
          const ipa = tgt !== undefined ? tgt.ipa : va;
          got = t.invalidateIpa(iv, ipa, len);
          want = ref.remove((e) => e.vmid === iv && overlaps(e.ipa, e.size, ipa, len));
        } else if (op === 5 && rnd() < 0.5) {
          got = t.invalidateVmidStage1(iv);
          want = ref.remove((e) => e.vmid === iv && e.stage1);
        } else if (op === 5) {
          got = t.invalidateVmid(iv);
          want = ref.remove((e) => e.vmid === iv);
        } else if (rnd() < 0.02) {
          got = t.invalidateAll();
          want = ref.remove(() => true);
        } else {
          continue;
        }
        assert.equal(got, want, `seed ${seed} step ${step} op ${op}`);
      }
      assert.equal(t.size, ref.list.length, `seed ${seed} step ${step} size`);
      if (step % 101 === 0) assert.deepEqual(t.entries(), ref.list, `seed ${seed} step ${step} entries`);
    }
    assert.deepEqual(t.entries(), ref.list);
  }
});
