/**
 * CRC-32 (IEEE 802.3, as zlib and PNG: polynomial 0xEDB88320 reflected, initial and final
 * value 0xFFFFFFFF): the checksum of snapshot images and of recordings. Node's zlib computes
 * it natively (`zlib.crc32`, Node ≥ 20.15) at several GB/s, which matters for the tens of
 * megabytes of guest RAM an image carries; older Node 20 releases get the table-driven
 * computation below (the same values, slower). A CRC-32 detects every burst error up to 32
 * bits and the corruption a file meets (flipped bits, truncation, swapped blocks).
 */

import * as zlib from 'node:zlib';

/** `zlib.crc32` where this Node has it (typed as optional: node 20 before 20.15 lacks it). */
const native = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;

/** The byte table of the reflected polynomial, built on first use of the fallback. */
let table: Uint32Array | undefined;

function crcTable(): Uint32Array {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
}

/** CRC-32 computed a byte at a time (the fallback where Node has no zlib.crc32; exported for its test). */
export function tableCrc32(data: Uint8Array, value = 0): number {
  const t = (table ??= crcTable());
  let c = ~value;
  for (let i = 0; i < data.length; i++) c = t[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** CRC-32 of `data`, continuing from `value` (the CRC of the bytes before it; 0 to start). */
export function crc32(data: Uint8Array, value = 0): number {
  return native ? native(data, value) >>> 0 : tableCrc32(data, value);
}
