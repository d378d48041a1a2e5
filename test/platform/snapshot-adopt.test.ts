// Who owns an image's bytes after a restore. Copy mode (the default) leaves the image the
// caller's: two VMs restored from one image share no memory with each other or with it. Adopt
// mode hands the image's buffer over: its RAM blocks become the VM's RAM (no copy), and the
// buffer is refused by any later restore, so no second VM can alias the first one's memory.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CHUNK_SIZE, DIRTY_PAGE_SIZE, SparseMemory } from '../../src/kit/sparse-memory.js';
import { Machine, SnapshotError } from '../../src/platform/machine.js';
import { crc32 } from '../../src/kit/crc32.js';
import { readImage } from '../../src/platform/snapshot/image.js';
import { forEachRamBlock } from '../../src/platform/snapshot/ram-section.js';
import { VIRT_RAM_BASE } from '../../src/vmm/virt/machine.js';
import { WorkloadRun, type WorkloadOptions } from '../../src/platform/workload.js';
import { lineFor, pathLine } from './snapshot-rig.js';

const WORK: WorkloadOptions = { ops: 48, batch: 8, pages: 1, injectError: false, skipInvalidation: false };
/** A 64 KiB block of guest RAM the test writes before saving (chunk-aligned, the last of a 320 MiB guest's RAM). */
const BLOCK_OFFSET = 320 * 2 ** 20 - CHUNK_SIZE;

/** An image saved mid-run, with one known 64 KiB block of RAM. */
function image(line: string[]): Uint8Array {
  const m = Machine.create(line);
  const run = WorkloadRun.start(m, WORK);
  run.runTo(24);
  assert.equal(m.readRam(VIRT_RAM_BASE + BLOCK_OFFSET, CHUNK_SIZE).some((b) => b !== 0), false, 'the guest does not use the test\'s block');
  m.writeRam(VIRT_RAM_BASE + BLOCK_OFFSET, new Uint8Array(CHUNK_SIZE).fill(0x5a));
  const img = m.save();
  m.close();
  return img;
}

/** The image's bytes of the RAM block at `offset` (a view into the image). */
function imageBlock(img: Uint8Array, offset: number): Uint8Array {
  let found: Uint8Array | undefined;
  forEachRamBlock(readImage(img).get('ram')!, (o, bytes) => {
    if (o === offset) found = bytes;
  });
  assert.ok(found, `the image has a RAM block at 0x${offset.toString(16)}`);
  return found;
}

/** The restored VM's RAM (every block that holds data, as offset and CRC), then its run finished. */
function finish(m: Machine): unknown {
  const ram: string[] = [];
  m.forEachTouchedRam((offset, bytes) => ram.push(`${offset.toString(16)}:${crc32(bytes).toString(16)}`));
  const run = WorkloadRun.resume(m);
  const rep = run.finish();
  const out = { ...rep, wallNs: 0, ram };
  m.close();
  return out;
}

/** The image's VM as a migration hands it over: an image without RAM, and its RAM as 64 KiB chunks. */
function stateAndRam(img: Uint8Array): { state: Uint8Array; ram: SparseMemory } {
  const src = Machine.restore(img);
  WorkloadRun.resume(src);
  const ram = new SparseMemory(src.ramBytes);
  src.forEachTouchedRam((offset, bytes) => ram.writeBytes(offset, bytes));
  const state = src.save({ ram: false });
  src.close();
  return { state, ram };
}

test('copy mode: two VMs restored from one image share no memory with each other or with the image', () => {
  const img = image(lineFor(true));
  const before = img.slice();
  const a = Machine.restore(img);
  const b = Machine.restore(img);
  a.writeRam(VIRT_RAM_BASE + BLOCK_OFFSET, new Uint8Array(8).fill(0xa1));
  b.writeRam(VIRT_RAM_BASE + BLOCK_OFFSET + 8, new Uint8Array(8).fill(0xb2));
  assert.deepEqual([...a.readRam(VIRT_RAM_BASE + BLOCK_OFFSET, 16)], [...Array(8).fill(0xa1), ...Array(8).fill(0x5a)]);
  assert.deepEqual([...b.readRam(VIRT_RAM_BASE + BLOCK_OFFSET, 16)], [...Array(8).fill(0x5a), ...Array(8).fill(0xb2)]);
  assert.deepEqual(img, before, 'the image is unchanged');
  a.close();
  b.close();
  assert.deepEqual(img, before, 'closing the VMs leaves the image as it was');
  // And it can be restored again.
  Machine.restore(img).close();
});

test('adopt mode: the VM runs as in copy mode, its RAM is the image\'s buffer, and the buffer is refused afterwards', () => {
  const img = image(lineFor(true));
  const copied = finish(Machine.restore(img));
  const m = Machine.restore(img, { adopt: true });
  // The VM's RAM block is the image's block: a store shows in the buffer handed over.
  const block = imageBlock(img, BLOCK_OFFSET);
  m.writeRam(VIRT_RAM_BASE + BLOCK_OFFSET, new Uint8Array([1, 2, 3, 4]));
  assert.deepEqual([...block.subarray(0, 5)], [1, 2, 3, 4, 0x5a]);
  m.writeRam(VIRT_RAM_BASE + BLOCK_OFFSET, new Uint8Array(4).fill(0x5a));
  assert.deepEqual(finish(m), copied, 'the adopting restore continues exactly as the copying one');
  for (const adopt of [false, true]) {
    assert.throws(() => Machine.restore(img, { adopt }), (e: unknown) => e instanceof SnapshotError && /handed over to a VM restored from it/.test(e.message), `adopt: ${adopt}`);
  }
  // A copy of the bytes is a new image: it restores (the VM above was closed, zeroing its RAM in
  // the buffer it took, so take the copy of a fresh image).
  const again = image(lineFor(true));
  Machine.restore(again.slice(), { adopt: true }).close();
});

test('adopt mode copies where a host chunk is not one RAM block (4 KiB pages scatter guest RAM over host chunks)', () => {
  const img = image(pathLine('cmdqv', undefined, true));
  const copied = finish(Machine.restore(img));
  const m = Machine.restore(img, { adopt: true });
  const block = imageBlock(img, BLOCK_OFFSET);
  m.writeRam(VIRT_RAM_BASE + BLOCK_OFFSET, new Uint8Array([9]));
  assert.equal(block[0], 0x5a, 'the image bytes were copied, not taken');
  // Nothing was taken from the buffer: it is still the caller's.
  Machine.restore(img).close();
  m.writeRam(VIRT_RAM_BASE + BLOCK_OFFSET, new Uint8Array([0x5a]));
  assert.deepEqual(finish(m), copied);
  // RAM given apart from the image (a migration's received pages) comes in 64 KiB chunks: on
  // 4 KiB pages none of them is one host chunk either.
  const { state, ram } = stateAndRam(img);
  assert.deepEqual(finish(Machine.restore(state, { ram, adopt: true })), copied);
});

test('adopt mode takes RAM given apart from the image (a migration\'s received pages) where pages are hugepages', () => {
  const img = image(lineFor(true));
  const copied = finish(Machine.restore(img));
  const { state, ram } = stateAndRam(img);
  const m = Machine.restore(state, { ram, adopt: true });
  m.writeRam(VIRT_RAM_BASE + BLOCK_OFFSET, new Uint8Array([7]));
  assert.equal(ram.read(BLOCK_OFFSET, 1), 7, 'the given chunk is the VM\'s RAM');
  m.writeRam(VIRT_RAM_BASE + BLOCK_OFFSET, new Uint8Array([0x5a]));
  assert.deepEqual(finish(m), copied);
});

test('SparseMemory.adoptChunk takes only a whole, 4-byte-aligned chunk where none exists; the dirty log sees it', () => {
  const mem = new SparseMemory(4 * CHUNK_SIZE);
  const buf = new Uint8Array(3 * CHUNK_SIZE + 4);
  buf[4] = 0x11;
  assert.equal(mem.adoptChunk(CHUNK_SIZE, buf.subarray(1, 1 + CHUNK_SIZE)), false, 'unaligned bytes');
  assert.equal(mem.adoptChunk(CHUNK_SIZE, buf.subarray(0, CHUNK_SIZE - 4)), false, 'not a whole chunk');
  assert.equal(mem.adoptChunk(CHUNK_SIZE + 4096, buf.subarray(4, 4 + CHUNK_SIZE)), false, 'not a chunk address');
  assert.equal(mem.adoptChunk(4 * CHUNK_SIZE, buf.subarray(4, 4 + CHUNK_SIZE)), false, 'outside the memory');
  mem.write32(0, 7);
  assert.equal(mem.adoptChunk(0, buf.subarray(4, 4 + CHUNK_SIZE)), false, 'the chunk exists');
  assert.equal(mem.read32(0), 7);
  assert.equal(mem.residentBytes, CHUNK_SIZE, 'refusals allocate nothing');
  mem.startDirtyLog();
  assert.equal(mem.adoptChunk(2 * CHUNK_SIZE, buf.subarray(4, 4 + CHUNK_SIZE)), true);
  const pages = mem.collectDirtyPages();
  assert.deepEqual(pages, Array.from({ length: CHUNK_SIZE / DIRTY_PAGE_SIZE }, (_, i) => (2 * CHUNK_SIZE) / DIRTY_PAGE_SIZE + i));
  // Loads and stores of every width go to the adopted bytes (at their offset in the buffer).
  assert.equal(mem.read(2 * CHUNK_SIZE, 1), 0x11);
  assert.equal(mem.read32(2 * CHUNK_SIZE), 0x11);
  mem.write32(2 * CHUNK_SIZE + 8, 0xdeadbeef);
  assert.deepEqual([...buf.subarray(12, 16)], [0xef, 0xbe, 0xad, 0xde]);
  mem.write(2 * CHUNK_SIZE + 1, 2, 0x2233);
  assert.deepEqual([...buf.subarray(5, 7)], [0x33, 0x22]);
  assert.equal(mem.read(2 * CHUNK_SIZE + 1, 2), 0x2233);
  assert.equal(mem.readBytes(2 * CHUNK_SIZE, 3).join(','), '17,51,34');
  assert.equal(mem.chunkAllocated(2 * CHUNK_SIZE), true);
});
