/**
 * Guest RAM as a snapshot and a migration see it: the VM's RAM is the VMM's anonymous mapping,
 * backed by host pages (or hugepages) in the host's sparse physical memory, so only the parts
 * ever written exist. These functions walk what exists, in guest order, without copying.
 */

import { CHUNK_SIZE } from '../../kit/sparse-memory.js';
import { VIRT_RAM_BASE } from '../../vmm/virt/machine.js';
import type { Machine } from '../machine.js';

/**
 * Guest RAM handed to {@link Machine.restore} (a migration's page store, or any sparse copy):
 * `size` must be the VM's RAM size, and `forEachChunk` gives the written parts at offsets from
 * the start of guest RAM (guest-physical address − VIRT_RAM_BASE). A `SparseMemory` of the RAM
 * size is one.
 */
export interface RamSource {
  readonly size: number;
  forEachChunk(fn: (offset: number, bytes: Uint8Array) => void): void;
}

/** Whether every byte of `b` is zero (word at a time; `b` is 4-byte aligned and sized). */
function allZero(b: Uint8Array): boolean {
  const w = new Uint32Array(b.buffer, b.byteOffset, b.length >>> 2);
  for (let i = 0; i < w.length; i++) if (w[i] !== 0) return false;
  return true;
}

/**
 * Visit the guest RAM that holds data, in guest order: `fn(offset, bytes)` with the offset from
 * the start of guest RAM and a view of the bytes (valid during the call: copy what you keep).
 * Blocks are 64 KiB (or one backing page when pages are smaller); blocks the host never
 * allocated and blocks of zeros are skipped. What a snapshot saves and a migration's first
 * round sends.
 */
export function forEachTouchedRam(m: Machine, fn: (offset: number, bytes: Uint8Array) => void): void {
  const map = m.proc.mem.find(m.ramVa);
  if (!map || map.kind !== 'anon') throw new Error('guest RAM is not mapped');
  const phys = m.host.phys.mem;
  const unit = Math.min(map.pageSize, CHUNK_SIZE);
  const frames = map.frames;
  for (let f = 0; f < frames.length; f++) {
    const base = f * map.pageSize;
    for (let off = 0; off < map.pageSize; off += unit) {
      const offset = base + off;
      if (offset >= m.ramBytes) return;
      const pa = frames[f]! + off;
      if (!phys.chunkAllocated(pa)) continue;
      const len = Math.min(unit, m.ramBytes - offset);
      // A view of the chunk (little-endian hosts), else a copy.
      const words = phys.chunkWords(pa);
      const bytes = words ? new Uint8Array(words.buffer, words.byteOffset + (pa % CHUNK_SIZE), len) : phys.readBytes(pa, len);
      if (!allZero(bytes)) fn(offset, bytes);
    }
  }
}

/** Copy `bytes` into guest RAM at `offset` from its start (a restore's or a migration's page load). */
export function loadRam(m: Machine, offset: number, bytes: Uint8Array): void {
  m.writeRam(VIRT_RAM_BASE + offset, bytes);
}

/**
 * Make `bytes` the guest RAM at `offset` without copying them (`SparseMemory.adoptChunk`: the
 * host memory then owns them), where they are exactly one 64 KiB host chunk: the offset
 * chunk-aligned, RAM backed by pages of at least a chunk (hugepages; base pages scatter a
 * chunk's worth of guest RAM over several host chunks) and the host chunk never allocated.
 * False where not (nothing done: the caller copies with {@link loadRam}).
 */
export function adoptRam(m: Machine, offset: number, bytes: Uint8Array): boolean {
  if (bytes.length !== CHUNK_SIZE || offset % CHUNK_SIZE !== 0 || offset + CHUNK_SIZE > m.ramBytes) return false;
  const map = m.proc.mem.find(m.ramVa);
  if (!map || map.kind !== 'anon' || map.pageSize < CHUNK_SIZE) return false;
  const pa = map.frames[Math.floor(offset / map.pageSize)]! + (offset % map.pageSize);
  return m.host.phys.mem.adoptChunk(pa, bytes);
}
