import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CHUNK_SIZE, DIRTY_PAGE_SIZE, SparseMemory } from '../../src/kit/sparse-memory.js';

/** A chunk's worth of bytes that no two chunks share. */
function pattern(seed: number, len = CHUNK_SIZE): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (i * 7 + seed * 13 + 1) & 0xff;
  return b;
}

test('whole-chunk stores: new chunks hold exactly the data (no stale bytes), old chunks are overwritten, reads see both', () => {
  const m = new SparseMemory(16 * CHUNK_SIZE);
  // Garbage from freed buffers must never show: fill and drop many chunks' worth first.
  for (let k = 0; k < 8; k++) new SparseMemory(CHUNK_SIZE * 4).writeBytes(0, new Uint8Array(CHUNK_SIZE * 4).fill(0xee));
  m.write32(2 * CHUNK_SIZE + 8, 0xdeadbeef); // chunk 2 exists, and is the cached one
  const one = pattern(1);
  m.writeBytes(2 * CHUNK_SIZE, one); // existing chunk, through the cache
  m.writeBytes(5 * CHUNK_SIZE, pattern(5)); // new chunk, single-chunk path
  const two = new Uint8Array(2 * CHUNK_SIZE + 100);
  two.set(pattern(9), 50);
  m.writeBytes(8 * CHUNK_SIZE - 50, two); // partial chunk 7, whole chunks 8 and 9, partial chunk 10
  assert.deepEqual(m.readBytes(2 * CHUNK_SIZE, CHUNK_SIZE), one);
  assert.equal(m.read32(2 * CHUNK_SIZE + 8), new DataView(one.buffer).getUint32(8, true), 'word path sees the new bytes');
  assert.deepEqual(m.readBytes(5 * CHUNK_SIZE, CHUNK_SIZE), pattern(5));
  assert.equal(m.read32(5 * CHUNK_SIZE + 4), new DataView(pattern(5).buffer).getUint32(4, true));
  assert.deepEqual(m.readBytes(8 * CHUNK_SIZE - 50, two.length), two);
  assert.equal(m.firstNonZero(10 * CHUNK_SIZE + 50, CHUNK_SIZE - 50), -1, 'the rest of a partly written new chunk reads zero');
  assert.equal(m.residentBytes, 6 * CHUNK_SIZE);
  m.write32(5 * CHUNK_SIZE, 0x11223344); // the new chunk is the one later stores reach
  assert.equal(m.readBytes(5 * CHUNK_SIZE, 4).join(), '68,51,34,17');
});

test('whole-chunk stores set the dirty log for every page they cover', () => {
  const m = new SparseMemory(8 * CHUNK_SIZE);
  m.startDirtyLog();
  m.writeBytes(3 * CHUNK_SIZE, pattern(3));
  const pages = CHUNK_SIZE / DIRTY_PAGE_SIZE;
  assert.deepEqual(m.collectDirtyPages(), Array.from({ length: pages }, (_, i) => 3 * pages + i));
  m.writeBytes(3 * CHUNK_SIZE, pattern(4)); // existing chunk
  assert.equal(m.collectDirtyPages().length, pages);
});
