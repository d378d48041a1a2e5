import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Field, hex, joinU64, numberToWords, splitU64, wordsToNumber } from '../../src/kit/bits.js';

test('32-bit field extract/deposit at bit 31 and full width', () => {
  const top = new Field('TOP', 31, 1);
  assert.equal(top.get(0x8000_0000), 1);
  assert.equal(top.get(0x7fff_ffff), 0);
  assert.equal(top.set(0, 1), 0x8000_0000);
  assert.equal(top.set(0xffff_ffff, 0), 0x7fff_ffff);
  const all = new Field('ALL', 0, 32);
  assert.equal(all.get(0xdead_beef), 0xdead_beef);
  assert.equal(all.set(0x1234, 0xffff_ffff), 0xffff_ffff);
  const mid = new Field('MID', 4, 8);
  assert.equal(mid.set(0xffff_ffff, 0), 0xffff_f00f);
  assert.equal(mid.set(0, 0x1ff), 0xff0, 'value wider than the field is truncated');
});

test('64-bit fields from halves: straddling, high word, 52-bit address', () => {
  const straddle = new Field('S', 28, 8); // bits [35:28]
  assert.equal(straddle.getWords(0xf000_0000, 0x0000_000a), 0xaf);
  const w = new Uint32Array(2);
  straddle.setWords(w, 0, 0x5c);
  assert.deepEqual([...w], [0xc000_0000, 0x5]);
  const hi = new Field('VMID', 32, 16);
  assert.equal(hi.getWords(0xffff_ffff, 0x1234_abcd), 0xabcd);
  // CMDQ_BASE.ADDR is [51:5]: a 47-bit field; numbers stay exact below 2^53.
  const addr = new Field('ADDR', 5, 47);
  const pa = 0xf_ffff_ffff_ffe0;
  const [lo, h] = numberToWords(pa);
  assert.equal(addr.getWords(lo, h) * 32, pa);
  const w2 = new Uint32Array([0x1f, 0xfff0_0000]);
  addr.setWords(w2, 0, 0x1234_5678_9ab);
  assert.equal(w2[0]! & 0x1f, 0x1f, 'bits below the field are kept');
  assert.equal((w2[1]! & 0xfff0_0000) >>> 0, 0xfff0_0000, 'bits above the field are kept');
  assert.equal(addr.getWords(w2[0]!, w2[1]!), 0x1234_5678_9ab);
});

test('bigint field helpers reach bit 63', () => {
  const b63 = new Field('B63', 63, 1);
  assert.equal(b63.getBig(1n << 63n), 1n);
  assert.equal(b63.setBig(0n, 1n), 1n << 63n);
  const all = new Field('ALL64', 0, 64);
  assert.equal(all.setBig(0n, 0xffff_ffff_ffff_ffffn), 0xffff_ffff_ffff_ffffn);
  assert.equal(new Field('X', 59, 5).getBig(0xf800_0000_0000_0000n), 0x1fn);
  assert.throws(() => new Field('BAD', 60, 5), RangeError);
});

test('split/join and hex helpers', () => {
  assert.deepEqual(splitU64(0x1234_5678_9abc_def0n), [0x9abc_def0, 0x1234_5678]);
  assert.equal(joinU64(0x9abc_def0, 0x1234_5678), 0x1234_5678_9abc_def0n);
  assert.equal(wordsToNumber(...numberToWords(2 ** 52 + 5)), 2 ** 52 + 5);
  assert.equal(hex(0x83), '0x00000083');
  assert.equal(hex(1n << 40n, 16), '0x0000010000000000');
});

test('Field.addressWords reads an address field in place (bits below it zero)', () => {
  const page = new Field('ADDR', 12, 41);
  assert.equal(page.addressWords(0x1234_5fff, 0x0000_00ab), 0xab_1234_5000);
  const low = new Field('ADDR', 5, 43);
  assert.equal(low.addressWords(0xffff_ffe3, 0), 0xffff_ffe0);
});
