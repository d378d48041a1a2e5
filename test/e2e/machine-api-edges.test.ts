// The library's Machine at its API edges (issue 14 #14): guest RAM bounds, access sizes and
// store values are checked where the caller hands them in, with errors naming what was wrong.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Machine, VIRT_RAM_BASE } from '../../src/platform/machine.js';

const CMDQV = 0x0c08_0000;

describe('Machine API edges', () => {
  const m = Machine.create(['-m', '128M']);
  const end = VIRT_RAM_BASE + m.ramBytes;

  test('readRam/writeRam refuse ranges outside guest RAM (the VMM\'s own memory behind it stays untouched)', () => {
    const range = /outside guest RAM \[0x40000000, 0x48000000\)/;
    assert.throws(() => m.readRam(end, 4), (e: unknown) => e instanceof RangeError && range.test(e.message) && /0x48000000/.test(e.message));
    assert.throws(() => m.readRam(end + 4096, 16), RangeError);
    assert.throws(() => m.writeRam(end + 4096, new Uint8Array(16).fill(0xee)), range);
    assert.throws(() => m.readRam(end - 2, 4), range, 'a range crossing the end');
    assert.throws(() => m.readRam(VIRT_RAM_BASE - 4, 4), range);
    assert.throws(() => m.readRam(VIRT_RAM_BASE, -1), RangeError);
    assert.throws(() => m.readRam(VIRT_RAM_BASE + 0.5, 4), RangeError);
    // In bounds: fine, and the guest sees the same bytes.
    m.writeRam(end - 4, new Uint8Array([1, 2, 3, 4]));
    assert.deepEqual([...m.readRam(end - 4, 4)], [1, 2, 3, 4]);
    assert.equal(m.read(end - 4, 4).value, 0x0403_0201n);
    assert.equal(m.readRam(end, 0).length, 0, 'an empty range at the end is in bounds');
    // Into a caller's buffer: the same bytes, that buffer back; a buffer of another length is refused.
    const into = new Uint8Array(4);
    assert.equal(m.readRam(end - 4, 4, into), into);
    assert.deepEqual([...into], [1, 2, 3, 4]);
    assert.throws(() => m.readRam(end - 4, 4, new Uint8Array(8)), /buffer of 8 bytes for 4/);
  });

  test('read/write refuse an access size other than 1, 2, 4 or 8', () => {
    for (const size of [0, 3, 5, 16]) {
      assert.throws(() => m.read(VIRT_RAM_BASE, size as 4), (e: unknown) => e instanceof RangeError && new RegExp(`access size ${size}`).test(e.message));
      assert.throws(() => m.write(VIRT_RAM_BASE, size as 4, 0), RangeError);
    }
  });

  test('a store value must be an integer: 1.5, NaN and Infinity are refused naming the value; negatives are two\'s complement', () => {
    for (const v of [1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.throws(() => m.write(CMDQV + 0x1000, 4, v), (e: unknown) => e instanceof RangeError && e.message.includes(`value ${v}`));
    }
    assert.throws(() => m.write(VIRT_RAM_BASE, 8, 2 ** 53 + 0.5), RangeError);
    m.write(VIRT_RAM_BASE, 4, -1);
    assert.equal(m.read(VIRT_RAM_BASE, 4).value, 0xffff_ffffn);
    m.write(VIRT_RAM_BASE, 8, -2n);
    assert.equal(m.read(VIRT_RAM_BASE, 8).value, 0xffff_ffff_ffff_fffen);
  });

  test('a non-integer guest address is refused', () => {
    assert.throws(() => m.read(VIRT_RAM_BASE + 0.5, 4), /address/);
    assert.throws(() => m.write(Number.NaN, 4, 0), /address/);
  });
});
