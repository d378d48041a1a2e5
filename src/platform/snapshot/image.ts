/**
 * The snapshot image container: a versioned, self-describing file of named sections, each with
 * its checksum (CRC-32, crc32.ts), behind a header that has its own.
 *
 * ```
 * offset  size  field
 * 0       8     magic "CMDQVIMG"
 * 8       4     format version (IMAGE_VERSION)
 * 12      4     header length H (bytes from offset 0 to the end of the header CRC)
 * 16      4     section count N
 * 20      ...   N entries: name length (1), name (UTF-8), offset (8), length (8), CRC-32 (4)
 * H-4     4     CRC-32 of bytes [0, H-4)
 * H       ...   section payloads, at the offsets the table gives (8-byte aligned, or more where a
 *               section asks: the RAM section starts on a 4 KiB boundary); zero padding between
 * ```
 *
 * Version 2 (this one) replaced version 1's XXH32 checksums with CRC-32 and laid the RAM
 * section out for adoption (ram-section.ts). {@link readImage} checks everything before it returns
 * (length, magic, version, header checksum, each section inside the file, not overlapping
 * another, and its checksum, the padding between sections zero), so a caller never acts on part
 * of a bad image.
 */

import { ByteReader, ByteWriter } from './codec.js';
import { crc32 } from '../../kit/crc32.js';
import { SnapshotError } from './errors.js';

/** The file's first 8 bytes. */
export const IMAGE_MAGIC = 'CMDQVIMG';
/** The format this build writes and reads. */
export const IMAGE_VERSION = 2;

const MAGIC_BYTES = new TextEncoder().encode(IMAGE_MAGIC);
/** Magic, version, header length, section count. */
const FIXED_HEADER = 20;

/**
 * One named payload of an image: its bytes, or its size and a function that writes them into
 * the image (so that megabytes of RAM are copied once, straight into place) and returns their
 * CRC-32 (summed as it writes, while the bytes are in the cache). `align` (a power of two,
 * default 8) is the image offset the payload starts at a multiple of.
 */
export type ImageSection =
  | { readonly name: string; readonly data: Uint8Array; readonly align?: number }
  | { readonly name: string; readonly size: number; readonly write: (out: Uint8Array) => number; readonly align?: number };

function sizeOf(s: ImageSection): number {
  return 'data' in s ? s.data.length : s.size;
}

/** Payloads start at least 8-byte aligned, so readers can take whole words. */
function alignUp(n: number, align = 8): number {
  return Math.ceil(n / align) * align;
}

/** Assemble an image from sections (names unique, at most 255 bytes of UTF-8 each). */
export function writeImage(sections: readonly ImageSection[]): Uint8Array {
  const names = sections.map((s) => new TextEncoder().encode(s.name));
  const headerLen = FIXED_HEADER + names.reduce((n, b) => n + 1 + b.length + 8 + 8 + 4, 0) + 4;
  const offsets: number[] = [];
  let end = headerLen;
  for (const s of sections) {
    const align = Math.max(8, s.align ?? 8);
    if ((align & (align - 1)) !== 0) throw new RangeError(`section '${s.name}': alignment ${align} is not a power of two`);
    // The last payload ends the image: no padding after it, so a cut-off tail is always seen.
    end = alignUp(end, align);
    offsets.push(end);
    end += sizeOf(s);
  }
  const out = new Uint8Array(end);
  // Payloads first: the table carries their checksums.
  const sums = sections.map((s, i) => {
    const at = out.subarray(offsets[i]!, offsets[i]! + sizeOf(s));
    if (!('data' in s)) return s.write(at);
    at.set(s.data);
    return crc32(at);
  });
  const w = new ByteWriter();
  w.bytes(MAGIC_BYTES);
  w.u32(IMAGE_VERSION);
  w.u32(headerLen);
  w.u32(sections.length);
  sections.forEach((s, i) => {
    const name = names[i]!;
    if (name.length === 0 || name.length > 255) throw new RangeError(`section name '${s.name}' must be 1..255 bytes`);
    w.u8(name.length);
    w.bytes(name);
    w.u64(offsets[i]!);
    w.u64(sizeOf(s));
    w.u32(sums[i]!);
  });
  const header = w.finish();
  out.set(header, 0);
  new DataView(out.buffer).setUint32(header.length, crc32(header), true);
  return out;
}

/**
 * Check an image and return its sections by name (views into `image`).
 * @throws SnapshotError naming what is wrong: truncated, not an image, another version, a
 * corrupt header or section
 */
export function readImage(image: Uint8Array): Map<string, Uint8Array> {
  if (!(image instanceof Uint8Array)) throw new SnapshotError('snapshot image: not a byte array');
  // The magic first (as far as there are bytes): a short file that is not an image says so.
  for (let i = 0; i < Math.min(MAGIC_BYTES.length, image.length); i++) {
    if (image[i] !== MAGIC_BYTES[i]) throw new SnapshotError(`not a cmdqv snapshot image (the file does not start with "${IMAGE_MAGIC}")`);
  }
  if (image.length < FIXED_HEADER + 4) throw new SnapshotError(`snapshot image is truncated: ${image.length} bytes, a header alone is at least ${FIXED_HEADER + 4}`);
  const r = new ByteReader(image, 'snapshot image header');
  r.at = MAGIC_BYTES.length;
  const version = r.u32();
  if (version !== IMAGE_VERSION) throw new SnapshotError(`snapshot image version ${version} is not supported (this cmdqv reads version ${IMAGE_VERSION})`);
  const headerLen = r.u32();
  const count = r.u32();
  if (headerLen > image.length) throw new SnapshotError(`snapshot image is truncated: ${image.length} bytes, its header alone is ${headerLen}`);
  if (headerLen < FIXED_HEADER + 4) throw new SnapshotError(`snapshot image header is corrupt (length ${headerLen})`);
  const stored = new DataView(image.buffer, image.byteOffset + headerLen - 4, 4).getUint32(0, true);
  if (crc32(image.subarray(0, headerLen - 4)) !== stored) throw new SnapshotError('snapshot image header is corrupt (checksum mismatch)');
  const sections = new Map<string, Uint8Array>();
  const table = new ByteReader(image.subarray(0, headerLen - 4), 'snapshot image section table');
  table.at = FIXED_HEADER;
  for (let i = 0; i < count; i++) {
    const name = table.string(table.u8());
    const offset = table.u64();
    const length = table.u64();
    const sum = table.u32();
    if (offset < headerLen || offset + length > image.length) {
      throw new SnapshotError(`snapshot image is truncated: section '${name}' needs bytes [${offset}, ${offset + length}), the image has ${image.length}`);
    }
    const data = image.subarray(offset, offset + length);
    if (crc32(data) !== sum) throw new SnapshotError(`snapshot image section '${name}' is corrupt (checksum mismatch)`);
    if (sections.has(name)) throw new SnapshotError(`snapshot image has section '${name}' twice`);
    sections.set(name, data);
  }
  checkLayout(image, headerLen, sections);
  return sections;
}

/**
 * The bytes no checksum covers: sections must not overlap, the padding before each must be
 * zero and nothing may follow the last, so that every byte of an image is either checked or
 * known to be zero.
 */
function checkLayout(image: Uint8Array, headerLen: number, sections: Map<string, Uint8Array>): void {
  const spans = [...sections].map(([name, d]) => ({ name, start: d.byteOffset - image.byteOffset, end: d.byteOffset - image.byteOffset + d.length }));
  spans.sort((a, b) => a.start - b.start);
  let at = headerLen;
  for (const s of spans) {
    if (s.start < at) throw new SnapshotError(`snapshot image section '${s.name}' overlaps the bytes before it (corrupt)`);
    for (let i = at; i < s.start; i++) if (image[i] !== 0) throw new SnapshotError(`snapshot image has a non-zero byte at ${i}, in the padding before section '${s.name}' (corrupt)`);
    at = s.end;
  }
  if (image.length > at) throw new SnapshotError(`snapshot image has ${image.length - at} bytes after its last section (corrupt)`);
}
