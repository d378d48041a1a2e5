/**
 * xxHash32 (Yann Collet's XXH32, seed 0): the image's section checksum. Four independent
 * multiply-rotate lanes over little-endian words make it several times faster than a CRC in
 * JavaScript, which matters for the tens of megabytes of guest RAM an image carries, and it
 * detects the corruption an image meets (flipped bits, truncation, swapped blocks).
 */

const P1 = 0x9e3779b1;
const P2 = 0x85ebca77;
const P3 = 0xc2b2ae3d;
const P4 = 0x27d4eb2f;
const P5 = 0x165667b1;
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

function round(acc: number, lane: number): number {
  return Math.imul(rotl((acc + Math.imul(lane, P2)) | 0, 13), P1);
}

/** XXH32 of `data` with seed 0, as an unsigned 32-bit number. */
export function xxh32(data: Uint8Array): number {
  const n = data.length;
  const aligned = LITTLE_ENDIAN && data.byteOffset % 4 === 0;
  const words = aligned ? new Uint32Array(data.buffer, data.byteOffset, n >>> 2) : undefined;
  const view = aligned ? undefined : new DataView(data.buffer, data.byteOffset, n);
  const word = (i: number) => (words ? words[i >>> 2]! : view!.getUint32(i, true));
  let i = 0;
  let h: number;
  if (n >= 16) {
    let v1 = (P1 + P2) | 0;
    let v2 = P2;
    let v3 = 0;
    let v4 = -P1 | 0;
    const limit = n - 16;
    if (words) {
      // The hot loop: four lanes straight from the word view.
      let w = 0;
      const wl = limit >>> 2;
      for (; w <= wl; w += 4) {
        v1 = Math.imul(rotl((v1 + Math.imul(words[w]!, P2)) | 0, 13), P1);
        v2 = Math.imul(rotl((v2 + Math.imul(words[w + 1]!, P2)) | 0, 13), P1);
        v3 = Math.imul(rotl((v3 + Math.imul(words[w + 2]!, P2)) | 0, 13), P1);
        v4 = Math.imul(rotl((v4 + Math.imul(words[w + 3]!, P2)) | 0, 13), P1);
      }
      i = w << 2;
    } else {
      for (; i <= limit; i += 16) {
        v1 = round(v1, word(i));
        v2 = round(v2, word(i + 4));
        v3 = round(v3, word(i + 8));
        v4 = round(v4, word(i + 12));
      }
    }
    h = (rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)) | 0;
  } else {
    h = P5;
  }
  h = (h + n) | 0;
  for (; i + 4 <= n; i += 4) h = Math.imul(rotl((h + Math.imul(word(i), P3)) | 0, 17), P4);
  for (; i < n; i++) h = Math.imul(rotl((h + Math.imul(data[i]!, P5)) | 0, 11), P1);
  h ^= h >>> 15;
  h = Math.imul(h, P2);
  h ^= h >>> 13;
  h = Math.imul(h, P3);
  h ^= h >>> 16;
  return h >>> 0;
}
