import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CHUNK_SIZE, DIRTY_PAGE_SIZE, SparseMemory } from '../../src/kit/sparse-memory.js';

const P = DIRTY_PAGE_SIZE;

test('dirty log: off by default, starts clean, collects each written page once, ascending, and clears', () => {
  const m = new SparseMemory(64 * P);
  m.write32(3 * P, 1); // before the log: not reported
  assert.equal(m.dirtyLogging, false);
  assert.throws(() => m.collectDirtyPages(), /no dirty log running/);
  m.startDirtyLog();
  assert.equal(m.dirtyLogging, true);
  assert.deepEqual(m.collectDirtyPages(), []);
  m.write32(9 * P + 8, 7);
  m.write32(9 * P + 12, 7);
  m.write(2 * P, 1, 0xff);
  m.write(40 * P + 100, 2, 0xffff);
  assert.deepEqual(m.collectDirtyPages(), [2, 9, 40]);
  assert.deepEqual(m.collectDirtyPages(), [], 'collect clears');
  m.write(5 * P, 4, 0); // storing zero is still a store
  assert.deepEqual(m.collectDirtyPages([99]), [99, 5], 'appends to out');
  assert.throws(() => m.startDirtyLog(), /already running/);
  m.stopDirtyLog();
  m.write32(6 * P, 1);
  m.startDirtyLog();
  assert.deepEqual(m.collectDirtyPages(), [], 'a stopped log forgets and misses stores');
});

test('dirty log: every store path marks; unaligned stores across a page mark both pages', () => {
  const m = new SparseMemory(4 * CHUNK_SIZE);
  m.startDirtyLog();
  m.write(P - 2, 4, 0x11223344); // straddles pages 0 and 1
  assert.deepEqual(m.collectDirtyPages(), [0, 1]);
  m.write(CHUNK_SIZE - 1, 2, 0xabcd); // straddles a chunk boundary (pages 15 and 16)
  assert.deepEqual(m.collectDirtyPages(), [15, 16]);
  m.write64(20 * P, 0x1_0000_0001n);
  assert.deepEqual(m.collectDirtyPages(), [20]);
  m.writeBytes(30 * P + 4000, new Uint8Array(5000)); // pages 30, 31, 32
  assert.deepEqual(m.collectDirtyPages(), [30, 31, 32]);
  m.writeBytes(33 * P, new Uint8Array(0));
  assert.deepEqual(m.collectDirtyPages(), []);
  m.fill(40 * P, 3 * P, 0xaa);
  assert.deepEqual(m.collectDirtyPages(), [40, 41, 42]);
  // A zero fill of a touched chunk is logged; of an untouched one it changes nothing and is not.
  m.fill(40 * P, P, 0);
  m.fill(3 * CHUNK_SIZE, CHUNK_SIZE, 0);
  assert.deepEqual(m.collectDirtyPages(), [40]);
  // Loads never mark.
  m.read(0, 4);
  m.read32(P);
  m.readBytes(0, 3 * P);
  assert.deepEqual(m.collectDirtyPages(), []);
});

test('dirty log: a store outside memory is refused and marks nothing', () => {
  const m = new SparseMemory(2 * P);
  m.startDirtyLog();
  assert.throws(() => m.writeBytes(2 * P - 1, new Uint8Array(2)), RangeError);
  assert.throws(() => m.write(2 * P, 1, 0), RangeError);
  assert.deepEqual(m.collectDirtyPages(), []);
});

test('dirty log: pages past 2^32 bytes and the last page of memory are numbered right', () => {
  const size = 2 ** 33;
  const m = new SparseMemory(size);
  m.startDirtyLog();
  m.write32(2 ** 32 + 5 * P, 1);
  m.write(size - 1, 1, 1);
  assert.deepEqual(m.collectDirtyPages(), [2 ** 20 + 5, size / P - 1]);
});

test('residentPages: the 4 KiB pages of touched chunks inside the range, nothing of untouched ones', () => {
  const m = new SparseMemory(8 * CHUNK_SIZE);
  assert.deepEqual(m.residentPages(0, 8 * CHUNK_SIZE), []);
  m.write(2 * CHUNK_SIZE + 5, 1, 1);
  const per = CHUNK_SIZE / P;
  assert.deepEqual(m.residentPages(0, 8 * CHUNK_SIZE), Array.from({ length: per }, (_, i) => 2 * per + i));
  // Clipped to the range.
  assert.deepEqual(m.residentPages(2 * CHUNK_SIZE + 3 * P, 2 * P), [2 * per + 3, 2 * per + 4]);
});

test('read32At/write32At: (chunk, offset) reaches the same word as the address past 2^32, marks its page, refuses out of range', () => {
  const size = 2 ** 33;
  const m = new SparseMemory(size);
  m.startDirtyLog();
  const addr = 2 ** 32 + 7 * P + 12;
  m.write32At(addr / CHUNK_SIZE | 0, addr % CHUNK_SIZE, 0xdead_beef);
  assert.equal(m.read32(addr), 0xdead_beef);
  assert.equal(m.read32At(Math.floor(addr / CHUNK_SIZE), addr % CHUNK_SIZE), 0xdead_beef);
  assert.equal(m.read32At(3, 8), 0, 'an untouched chunk reads 0');
  assert.deepEqual(m.collectDirtyPages(), [2 ** 20 + 7]);
  assert.throws(() => m.write32At(size / CHUNK_SIZE, 0, 1), RangeError);
  assert.throws(() => m.read32At(size / CHUNK_SIZE - 1, CHUNK_SIZE - 2), RangeError);
  assert.deepEqual(m.collectDirtyPages(), []);
});
