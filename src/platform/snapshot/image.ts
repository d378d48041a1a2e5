/**
 * The snapshot image container: a versioned, self-describing file of named sections, each with
 * its CRC-32, behind a header that has its own.
 *
 * ```
 * offset  size  field
 * 0       8     magic "CMDQVIMG"
 * 8       4     format version (IMAGE_VERSION)
 * 12      4     header length H (bytes from offset 0 to the end of the header CRC)
 * 16      4     section count N
 * 20      ...   N entries: name length (1), name (UTF-8), offset (8), length (8), CRC-32 (4)
 * H-4     4     CRC-32 of bytes [0, H-4)
 * H       ...   section payloads, at the offsets the table gives
 * ```
 *
 * {@link readImage} checks everything before it returns (length, magic, version, header CRC,
 * each section inside the file and its CRC), so a caller never acts on part of a bad image.
 */

import { ByteReader, ByteWriter } from './codec.js';
import { crc32 } from './crc32.js';
import { SnapshotError } from './errors.js';

/** The file's first 8 bytes. */
export const IMAGE_MAGIC = 'CMDQVIMG';
/** The format this build writes and reads. */
export const IMAGE_VERSION = 1;

const MAGIC_BYTES = new TextEncoder().encode(IMAGE_MAGIC);
/** Magic, version, header length, section count. */
const FIXED_HEADER = 20;

/** One named payload of an image. */
export interface ImageSection {
  readonly name: string;
  readonly data: Uint8Array;
}

/** Assemble an image from sections (names unique, at most 255 bytes of UTF-8 each). */
export function writeImage(sections: readonly ImageSection[]): Uint8Array {
  const names = sections.map((s) => new TextEncoder().encode(s.name));
  const headerLen = FIXED_HEADER + names.reduce((n, b) => n + 1 + b.length + 8 + 8 + 4, 0) + 4;
  let offset = headerLen;
  const total = headerLen + sections.reduce((n, s) => n + s.data.length, 0);
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
    w.u64(offset);
    w.u64(s.data.length);
    w.u32(crc32(s.data));
    offset += s.data.length;
  });
  const header = w.finish();
  const out = new Uint8Array(total);
  out.set(header, 0);
  new DataView(out.buffer).setUint32(header.length, crc32(header), true);
  let at = headerLen;
  for (const s of sections) {
    out.set(s.data, at);
    at += s.data.length;
  }
  return out;
}

/**
 * Check an image and return its sections by name (views into `image`).
 * @throws SnapshotError naming what is wrong: truncated, not an image, another version, a
 * corrupt header or section
 */
export function readImage(image: Uint8Array): Map<string, Uint8Array> {
  if (!(image instanceof Uint8Array)) throw new SnapshotError('snapshot image: not a byte array');
  if (image.length < FIXED_HEADER + 4) throw new SnapshotError(`snapshot image is truncated: ${image.length} bytes, a header alone is at least ${FIXED_HEADER + 4}`);
  for (let i = 0; i < MAGIC_BYTES.length; i++) {
    if (image[i] !== MAGIC_BYTES[i]) throw new SnapshotError(`not a cmdqv snapshot image (the file does not start with "${IMAGE_MAGIC}")`);
  }
  const r = new ByteReader(image, 'snapshot image header');
  r.at = MAGIC_BYTES.length;
  const version = r.u32();
  if (version !== IMAGE_VERSION) throw new SnapshotError(`snapshot image version ${version} is not supported (this cmdqv reads version ${IMAGE_VERSION})`);
  const headerLen = r.u32();
  const count = r.u32();
  if (headerLen > image.length) throw new SnapshotError(`snapshot image is truncated: ${image.length} bytes, its header alone is ${headerLen}`);
  if (headerLen < FIXED_HEADER + 4) throw new SnapshotError(`snapshot image header is corrupt (length ${headerLen})`);
  const stored = new DataView(image.buffer, image.byteOffset + headerLen - 4, 4).getUint32(0, true);
  if (crc32(image.subarray(0, headerLen - 4)) !== stored) throw new SnapshotError('snapshot image header is corrupt (CRC-32 mismatch)');
  const sections = new Map<string, Uint8Array>();
  const table = new ByteReader(image.subarray(0, headerLen - 4), 'snapshot image section table');
  table.at = FIXED_HEADER;
  for (let i = 0; i < count; i++) {
    const name = table.string(table.u8());
    const offset = table.u64();
    const length = table.u64();
    const crc = table.u32();
    if (offset < headerLen || offset + length > image.length) {
      throw new SnapshotError(`snapshot image is truncated: section '${name}' needs bytes [${offset}, ${offset + length}), the image has ${image.length}`);
    }
    const data = image.subarray(offset, offset + length);
    if (crc32(data) !== crc) throw new SnapshotError(`snapshot image section '${name}' is corrupt (CRC-32 mismatch)`);
    if (sections.has(name)) throw new SnapshotError(`snapshot image has section '${name}' twice`);
    sections.set(name, data);
  }
  return sections;
}
