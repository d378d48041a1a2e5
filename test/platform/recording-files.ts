// Test helpers: a recording's records read out whole and written back (to edit one on purpose).
import { readFileSync, writeFileSync } from 'node:fs';
import * as F from '../../src/platform/record/format.js';

/** A recording split into its header bytes, its chunks' file offsets and every record (framing left out). */
export interface RecordingBytes {
  readonly header: Uint8Array;
  readonly chunkOffsets: number[];
  readonly records: Uint8Array;
}

export function readRecording(file: string): RecordingBytes {
  const bytes = new Uint8Array(readFileSync(file));
  let at = F.checkHeaderFixed(bytes, bytes.length).dataOffset;
  const header = bytes.slice(0, at);
  const chunkOffsets: number[] = [];
  const parts: Uint8Array[] = [];
  let index = 0;
  while (at < bytes.length) {
    const info = F.decodeBlock(bytes.subarray(at, at + F.RECORD_BYTES), at);
    chunkOffsets.push(at);
    parts.push(F.decodeChunk(info, bytes.subarray(at + F.RECORD_BYTES, at + F.RECORD_BYTES + info.payloadBytes), at, index));
    index += info.records;
    at += F.RECORD_BYTES + info.payloadBytes;
  }
  return { header, chunkOffsets, records: new Uint8Array(Buffer.concat(parts)) };
}

/** Write `records` after `header` in chunks of 64 Ki records, as the recorder does. */
export function writeRecording(file: string, header: Uint8Array, records: Uint8Array, deflate = true): void {
  const out: Uint8Array[] = [header];
  const step = 65536 * F.RECORD_BYTES;
  for (let at = 0; at < records.length; at += step) {
    const c = F.encodeChunk(records.subarray(at, Math.min(records.length, at + step)), deflate);
    out.push(c.block, c.payload);
  }
  writeFileSync(file, Buffer.concat(out));
}

/** Byte offset of record `i` in {@link RecordingBytes.records}. */
export const at = (i: number) => i * F.RECORD_BYTES;
