/**
 * Reads a recording (format.ts) as a stream: the header, then one chunk of records at a time,
 * each checked against its CRC-32 before any of its records is used. Only one chunk is held in
 * memory. Every problem with the file is a {@link RecordingFormatError} naming it.
 */

import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import * as F from './format.js';

/** A recording opened for reading. */
export class RecordingReader {
  readonly description: F.RunDescription;
  /** The current chunk; records are read from it with {@link dv} at the offsets {@link next} returns. */
  buf: Uint8Array = new Uint8Array(0);
  dv: DataView = new DataView(new ArrayBuffer(0));
  /** Index of the record {@link next} returns next (framing excluded). */
  index = 0;
  private fd: number;
  private readonly size: number;
  private offset: number;
  /** Byte offset in {@link buf} of the next record, and the end of the chunk's records. */
  private pos = 0;
  private end = 0;
  private closed = false;

  /**
   * Open `file` and read its header.
   * @throws RecordingFormatError for a file that is not a readable recording of this version
   */
  constructor(readonly file: string) {
    try {
      this.fd = openSync(file, 'r');
    } catch (e) {
      throw new F.RecordingFormatError(`cannot open: ${(e as Error).message}`);
    }
    try {
      this.size = fstatSync(this.fd).size;
      const fixed = this.read(0, Math.min(F.HEADER_FIXED_BYTES, this.size));
      const { jsonBytes, dataOffset } = F.checkHeaderFixed(fixed, this.size);
      this.description = F.decodeDescription(this.read(F.HEADER_FIXED_BYTES, jsonBytes));
      this.offset = dataOffset;
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /**
   * Byte offset in {@link buf} of the next record, loading (and checking) the next chunk when
   * the current one is used up.
   * @throws RecordingFormatError for a truncated or corrupt chunk, or an unknown record kind
   */
  next(): number {
    if (this.pos === this.end) this.loadChunk();
    const p = this.pos;
    this.pos += F.RECORD_BYTES;
    const kind = this.buf[p + F.F_KIND]!;
    if (F.kindName(kind) === undefined || kind === F.K_BLOCK) throw new F.RecordingFormatError(`corrupt: record ${this.index} has unknown kind ${kind}`);
    const problem = F.recordFieldProblem(this.buf, this.dv, p);
    if (problem !== undefined) throw new F.RecordingFormatError(`corrupt: record ${this.index} (${F.kindName(kind)}) has ${problem}`);
    this.index++;
    return p;
  }

  /** After END: nothing may follow it. */
  checkAtEnd(): void {
    if (this.pos !== this.end || this.offset !== this.size) {
      throw new F.RecordingFormatError(`corrupt: ${this.size - this.offset + (this.end - this.pos)} bytes follow the END record`);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }

  private loadChunk(): void {
    if (this.offset >= this.size) {
      throw new F.RecordingFormatError(`truncated: the file ends ${this.index ? `after record ${this.index - 1}` : 'before its first record'} without an END record`);
    }
    if (this.size - this.offset < F.RECORD_BYTES) throw new F.RecordingFormatError(`truncated: ${this.size - this.offset} stray bytes at byte ${this.offset}`);
    const info = F.decodeBlock(this.read(this.offset, F.RECORD_BYTES), this.offset);
    const at = this.offset + F.RECORD_BYTES;
    if (at + info.payloadBytes > this.size) {
      throw new F.RecordingFormatError(`truncated: the chunk at byte ${this.offset} has ${info.payloadBytes} bytes, the file ends ${this.size - at} bytes into it`);
    }
    this.buf = F.decodeChunk(info, this.read(at, info.payloadBytes), this.offset, this.index);
    this.dv = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
    this.offset = at + info.payloadBytes;
    this.pos = 0;
    this.end = this.buf.length;
  }

  private read(at: number, n: number): Uint8Array {
    const b = new Uint8Array(n);
    this.readInto(b, at, n);
    return b;
  }

  private readInto(b: Uint8Array, at: number, n: number): void {
    let done = 0;
    while (done < n) {
      const got = readSync(this.fd, b, done, n - done, at + done);
      if (got === 0) throw new F.RecordingFormatError(`truncated at byte ${at + done}`);
      done += got;
    }
  }
}
