/**
 * The snapshot image container: a versioned, self-describing file of named sections, each with
 * its checksum (xxHash32, xxh32.ts), behind a header that has its own.
 *
 * ```
 * offset  size  field
 * 0       8     magic "CMDQVIMG"
 * 8       4     format version (IMAGE_VERSION)
 * 12      4     header length H (bytes from offset 0 to the end of the header CRC)
 * 16      4     section count N
 * 20      ...   N entries: name length (1), name (UTF-8), offset (8), length (8), XXH32 (4)
 * H-4     4     XXH32 of bytes [0, H-4)
 * H       ...   section payloads, at the offsets the table gives (8-byte aligned, zero padding)
 * ```
 *
 * {@link readImage} checks everything before it returns (length, magic, version, header
 * checksum, each section inside the file and its checksum), so a caller never acts on part of a
 * bad image.
 */

import { ByteReader, ByteWriter } from './codec.js';
import { xxh32 } from './xxh32.js';
import { SnapshotError } from './errors.js';

/** The file's first 8 bytes. */
export const IMAGE_MAGIC = 'CMDQVIMG';
/** The format this build writes and reads. */
export const IMAGE_VERSION = 1;

const MAGIC_BYTES = new TextEncoder().encode(IMAGE_MAGIC);
/** Magic, version, header length, section count. */
const FIXED_HEADER = 20;

/**
 * One named payload of an image: its bytes, or its size and a function that writes them into
 * the image (so that megabytes of RAM are copied once, straight into place).
 */
export type ImageSection =
  | { readonly name: string; readonly data: Uint8Array }
  | { readonly name: string; readonly size: number; readonly write: (out: Uint8Array) => void };

function sizeOf(s: ImageSection): number {
  return 'data' in s ? s.data.length : s.size;
}

/** Payloads start 8-byte aligned, so checksums and readers can take whole words. */
function align8(n: number): number {
  return Math.ceil(n / 8) * 8;
}

/** Assemble an image from sections (names unique, at most 255 bytes of UTF-8 each). */
export function writeImage(sections: readonly ImageSection[]): Uint8Array {
  const names = sections.map((s) => new TextEncoder().encode(s.name));
  const headerLen = FIXED_HEADER + names.reduce((n, b) => n + 1 + b.length + 8 + 8 + 4, 0) + 4;
  const offsets: number[] = [];
  let end = align8(headerLen);
  sections.forEach((s, i) => {
    offsets.push(end);
    // The last payload ends the image: no padding after it, so a cut-off tail is always seen.
    end = i === sections.length - 1 ? end + sizeOf(s) : align8(end + sizeOf(s));
  });
  const out = new Uint8Array(end);
  // Payloads first: the table carries their checksums.
  const sums = sections.map((s, i) => {
    const at = out.subarray(offsets[i]!, offsets[i]! + sizeOf(s));
    if ('data' in s) at.set(s.data);
    else s.write(at);
    return xxh32(at);
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
  new DataView(out.buffer).setUint32(header.length, xxh32(header), true);
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
  if (xxh32(image.subarray(0, headerLen - 4)) !== stored) throw new SnapshotError('snapshot image header is corrupt (checksum mismatch)');
  const sections = new Map<string, Uint8Array>();
  let last = headerLen;
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
    if (xxh32(data) !== sum) throw new SnapshotError(`snapshot image section '${name}' is corrupt (checksum mismatch)`);
    if (sections.has(name)) throw new SnapshotError(`snapshot image has section '${name}' twice`);
    sections.set(name, data);
    last = Math.max(last, offset + length);
  }
  if (image.length > last) throw new SnapshotError(`snapshot image has ${image.length - last} bytes after its last section (corrupt)`);
  return sections;
}
