/**
 * The `ram` section of an image (format version 2): guest RAM blocks behind a table, their
 * bytes back to back and page-aligned in the image, so that a restore that owns the image can
 * make them the VM's RAM without copying (typed-array views need their element alignment).
 *
 * ```
 * offset  size  field
 * 0       4     block count N
 * 4       4     zero
 * 8       16·N  per block: offset from the start of guest RAM (8), length (4), zero (4)
 * ...           zero padding up to D = 8 + 16·N rounded up to RAM_DATA_ALIGN
 * D       ...   the blocks' bytes, in table order, back to back (the section ends with the last)
 * ```
 *
 * The section itself starts at an image offset that is a multiple of RAM_DATA_ALIGN, so block
 * data whose lengths are multiples of 4 KiB (every block a save writes) stays page-aligned.
 */

import { ByteReader } from './codec.js';
import { crc32 } from '../../kit/crc32.js';
import { SnapshotError } from './errors.js';
import type { ImageSection } from './image.js';
import { SECTION } from './state.js';

/** Alignment of the block data (in the section and, by the section's own alignment, in the image). */
export const RAM_DATA_ALIGN = 4096;
const ENTRY_BYTES = 16;
const TABLE_START = 8;

/** One block of guest RAM: its offset from the start of guest RAM and its bytes. */
export interface RamBlock {
  readonly offset: number;
  readonly bytes: Uint8Array;
}

function dataStart(count: number): number {
  return Math.ceil((TABLE_START + count * ENTRY_BYTES) / RAM_DATA_ALIGN) * RAM_DATA_ALIGN;
}

/** The section holding `blocks` (views are read when the image is written: keep them valid until then). */
export function ramSection(blocks: readonly RamBlock[]): ImageSection {
  const start = dataStart(blocks.length);
  const size = blocks.reduce((n, b) => n + b.bytes.length, start);
  return {
    name: SECTION.ram,
    size,
    align: RAM_DATA_ALIGN,
    write: (out) => {
      const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
      view.setUint32(0, blocks.length, true);
      let entry = TABLE_START;
      for (const b of blocks) {
        view.setUint32(entry, b.offset % 2 ** 32, true);
        view.setUint32(entry + 4, Math.floor(b.offset / 2 ** 32), true);
        view.setUint32(entry + 8, b.bytes.length, true);
        entry += ENTRY_BYTES;
      }
      // The section's CRC as it is written: each block is summed just before its copy, so the
      // copy reads bytes the sum has just brought into the cache.
      let sum = crc32(out.subarray(0, start));
      let at = start;
      for (const b of blocks) {
        sum = crc32(b.bytes, sum);
        out.set(b.bytes, at);
        at += b.bytes.length;
      }
      return sum;
    },
  };
}

/**
 * Visit the section's blocks in table order: `fn(offset, bytes)` with a view of the block's
 * bytes in the image.
 * @throws SnapshotError when the table and the data do not fit the section exactly
 */
export function forEachRamBlock(data: Uint8Array, fn: (offset: number, bytes: Uint8Array) => void): void {
  const what = `snapshot section '${SECTION.ram}'`;
  const r = new ByteReader(data, what);
  const n = r.u32();
  if (r.u32() !== 0) throw new SnapshotError(`${what}: the word after its block count is not zero`);
  const start = dataStart(n);
  if (start > data.length) throw new SnapshotError(`${what} is truncated: a table of ${n} blocks and its padding need ${start} bytes, the section has ${data.length}`);
  if (data.subarray(TABLE_START + n * ENTRY_BYTES, start).some((b) => b !== 0)) throw new SnapshotError(`${what}: the padding after its table is not zero`);
  let at = start;
  for (let i = 0; i < n; i++) {
    const offset = r.u64();
    const len = r.u32();
    if (r.u32() !== 0) throw new SnapshotError(`${what}: block ${i}'s reserved word is not zero`);
    if (at + len > data.length) throw new SnapshotError(`${what} is truncated: block ${i} needs bytes [${at}, ${at + len}), the section has ${data.length}`);
    fn(offset, data.subarray(at, at + len));
    at += len;
  }
  if (at !== data.length) throw new SnapshotError(`${what}: ${data.length - at} bytes follow its blocks`);
}
