// The page TLB of a user-memory view (UserMemoryOps, the VMM's guest RAM): what it caches must
// never be seen once it is stale, a load of untouched memory allocates nothing, and stores still
// set the dirty log.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DEFAULT_HOST, type HostConfig } from '../../src/host/config.js';
import { HostKernel } from '../../src/host/kernel/host-kernel.js';
import { CHUNK_SIZE } from '../../src/kit/sparse-memory.js';
import { Errno, ErrnoError } from '../../src/uapi/errno.js';
import { mmapAnonymous } from '../../src/uapi/syscalls.js';

const GIB = 2 ** 30;
const HOSTS: readonly [string, HostConfig][] = [
  ['4 KiB pages', { ...DEFAULT_HOST, ramBytes: GIB, hugepages: false }],
  ['1 GiB hugepages', { ...DEFAULT_HOST, ramBytes: 4 * GIB }],
];

/** A process with a 64 MiB anonymous mapping and its view. */
function view(cfg: HostConfig) {
  const kernel = new HostKernel(cfg);
  const proc = kernel.createProcess();
  const len = 64 * 2 ** 20;
  const va = mmapAnonymous(proc, len, cfg.hugepages);
  assert.ok(va > 0);
  return { kernel, proc, va, len, ops: proc.memory.view(va) };
}

describe('user-memory view page TLB', () => {
  for (const [name, cfg] of HOSTS) {
    test(`${name}: loads see every store, whichever path made it (view, user copy, physical memory)`, () => {
      const { proc, va, ops, kernel } = view(cfg);
      for (let i = 0; i < 4096; i++) ops.write((i * 4100) & ~3, 4, i ^ 0x5a5a_0000);
      for (let i = 0; i < 4096; i++) assert.equal(ops.read((i * 4100) & ~3, 4), (i ^ 0x5a5a_0000) >>> 0);
      // A store behind the TLB's back (the process's own copy, device DMA into host RAM) is seen.
      proc.memory.store(va + 8, new Uint8Array([1, 2, 3, 4]));
      assert.equal(ops.read(8, 4), 0x0403_0201);
      const pa = proc.mem.translate(va + 12);
      kernel.phys.mem.write(pa, 4, 0xdead_beef);
      assert.equal(ops.read(12, 4), 0xdead_beef);
      // Sub-word and unaligned accesses agree with the word path.
      ops.write(16, 4, 0x1122_3344);
      assert.equal(ops.read(17, 2), 0x2233);
      assert.equal(ops.read(19, 1), 0x11);
      ops.write(18, 4, 0xaabb_ccdd);
      assert.equal(ops.read(16, 4), 0xccdd_3344);
    });

    test(`${name}: a load of untouched memory reads zero and allocates nothing, also once cached pages are near`, () => {
      const { ops, kernel } = view(cfg);
      const resident = kernel.phys.residentBytes;
      for (let off = 0; off < 16 * CHUNK_SIZE; off += 4096) assert.equal(ops.read(off, 4), 0);
      assert.equal(kernel.phys.residentBytes, resident);
      ops.write(0, 4, 7);
      const one = kernel.phys.residentBytes;
      assert.ok(one > resident);
      for (let off = 0; off < 16 * CHUNK_SIZE; off += 4096) assert.equal(ops.read(off, 4), off === 0 ? 7 : 0);
      assert.equal(kernel.phys.residentBytes, one);
    });

    test(`${name}: after munmap the view faults instead of reading the freed pages`, () => {
      const { proc, va, ops } = view(cfg);
      ops.write(64, 4, 0x1234);
      assert.equal(ops.read(64, 4), 0x1234);
      assert.equal(proc.munmap(va, proc.mem.find(va)!.length), 0);
      assert.throws(() => ops.read(64, 4), (e: unknown) => e instanceof ErrnoError && e.errno === Errno.EFAULT);
      assert.throws(() => ops.write(64, 4, 1), (e: unknown) => e instanceof ErrnoError && e.errno === Errno.EFAULT);
    });

    test(`${name}: stores through a cached page still set the dirty log`, () => {
      const { proc, va, ops, kernel } = view(cfg);
      ops.write(0x3000, 4, 1); // cached before the log starts
      assert.equal(ops.read(0x3000, 4), 1);
      kernel.phys.mem.startDirtyLog();
      ops.write(0x3004, 4, 2);
      const pages = kernel.phys.mem.collectDirtyPages();
      assert.deepEqual(pages, [Math.floor(proc.mem.translate(va + 0x3004) / 4096)]);
      kernel.phys.mem.stopDirtyLog();
    });

    test(`${name}: a chunk generation change drops what the TLB holds`, () => {
      const { ops, kernel } = view(cfg);
      ops.write(0x40, 4, 5);
      assert.equal(ops.read(0x40, 4), 5);
      const mem = kernel.phys.mem as unknown as { chunks: Map<number, { bytes: Uint8Array; view: DataView; words: Uint32Array }>; lastIndex: number; cacheIndex: Float64Array };
      // Replace every chunk with a fresh zeroed one, as a chunk adoption would, and say so.
      for (const [index] of mem.chunks) {
        const bytes = new Uint8Array(CHUNK_SIZE);
        mem.chunks.set(index, { bytes, view: new DataView(bytes.buffer), words: new Uint32Array(bytes.buffer) });
      }
      mem.lastIndex = -1;
      mem.cacheIndex.fill(-1);
      kernel.phys.mem.generation++;
      assert.equal(ops.read(0x40, 4), 0);
    });
  }
});
