/**
 * The binary encoding of plain state (kit/persist.ts `PlainValue`) inside an image: one tag byte
 * per value, then its data, little-endian. Self-describing (a reader needs no schema) and exact
 * for every value plain state may hold: numbers (f64), bigints, strings, booleans, null,
 * undefined, typed arrays (their bytes), arrays and records (keys in insertion order).
 */

import type { PlainValue } from '../../kit/persist.js';
import { SnapshotError } from './errors.js';

const enum Tag {
  Undefined = 0,
  Null = 1,
  False = 2,
  True = 3,
  Number = 4,
  BigInt = 5,
  String = 6,
  Typed = 7,
  Array = 8,
  Record = 9,
}

/** Typed-array kinds, by their code in the encoding. */
const TYPED = [Uint8Array, Uint16Array, Uint32Array, Int32Array, Float64Array, BigUint64Array] as const;
type Typed = InstanceType<(typeof TYPED)[number]>;

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8', { fatal: true });

/** A growing byte buffer with little-endian writers. */
export class ByteWriter {
  private buf = new Uint8Array(4096);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u8(v: number): void {
    this.room(1);
    this.buf[this.length++] = v;
  }

  u32(v: number): void {
    this.room(4);
    this.view.setUint32(this.length, v, true);
    this.length += 4;
  }

  /** A non-negative integer below 2^53 as two words. */
  u64(v: number): void {
    this.u32(v % 2 ** 32);
    this.u32(Math.floor(v / 2 ** 32));
  }

  f64(v: number): void {
    this.room(8);
    this.view.setFloat64(this.length, v, true);
    this.length += 8;
  }

  bytes(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }

  /** The bytes written (a copy the writer no longer touches). */
  finish(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

/** Little-endian reads with bounds checks: running past the end is a {@link SnapshotError} naming `what`. */
export class ByteReader {
  private readonly view: DataView;
  at = 0;

  constructor(
    readonly data: Uint8Array,
    private readonly what: string,
  ) {
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }

  private need(n: number): void {
    if (this.at + n > this.data.length) throw new SnapshotError(`${this.what} is truncated (needs ${this.at + n} bytes, has ${this.data.length})`);
  }

  get left(): number {
    return this.data.length - this.at;
  }

  u8(): number {
    this.need(1);
    return this.data[this.at++]!;
  }

  u32(): number {
    this.need(4);
    const v = this.view.getUint32(this.at, true);
    this.at += 4;
    return v;
  }

  u64(): number {
    const lo = this.u32();
    const hi = this.u32();
    const v = hi * 2 ** 32 + lo;
    if (!Number.isSafeInteger(v)) throw new SnapshotError(`${this.what}: value ${hi}:${lo} is too large`);
    return v;
  }

  f64(): number {
    this.need(8);
    const v = this.view.getFloat64(this.at, true);
    this.at += 8;
    return v;
  }

  /** `n` bytes as a view into the data. */
  bytes(n: number): Uint8Array {
    this.need(n);
    const b = this.data.subarray(this.at, this.at + n);
    this.at += n;
    return b;
  }

  string(n: number): string {
    try {
      return fromUtf8.decode(this.bytes(n));
    } catch {
      throw new SnapshotError(`${this.what}: a string is not valid UTF-8`);
    }
  }
}

/** Encode plain state. */
export function encodePlain(value: PlainValue): Uint8Array {
  const w = new ByteWriter();
  write(w, value);
  return w.finish();
}

function write(w: ByteWriter, v: PlainValue): void {
  if (v === undefined) return w.u8(Tag.Undefined);
  if (v === null) return w.u8(Tag.Null);
  switch (typeof v) {
    case 'boolean':
      return w.u8(v ? Tag.True : Tag.False);
    case 'number':
      w.u8(Tag.Number);
      return w.f64(v);
    case 'bigint':
      return writeString(w, Tag.BigInt, v.toString());
    case 'string':
      return writeString(w, Tag.String, v);
    default:
      break;
  }
  const kind = TYPED.findIndex((T) => v instanceof T);
  if (kind >= 0) {
    const t = v as Typed;
    w.u8(Tag.Typed);
    w.u8(kind);
    w.u32(t.byteLength);
    w.bytes(new Uint8Array(t.buffer, t.byteOffset, t.byteLength));
    return;
  }
  if (Array.isArray(v)) {
    w.u8(Tag.Array);
    w.u32(v.length);
    for (const x of v as readonly PlainValue[]) write(w, x);
    return;
  }
  const entries = Object.entries(v as Record<string, PlainValue>);
  w.u8(Tag.Record);
  w.u32(entries.length);
  for (const [k, x] of entries) {
    const b = utf8.encode(k);
    w.u32(b.length);
    w.bytes(b);
    write(w, x);
  }
}

function writeString(w: ByteWriter, tag: Tag, s: string): void {
  const b = utf8.encode(s);
  w.u8(tag);
  w.u32(b.length);
  w.bytes(b);
}

/**
 * Decode plain state written by {@link encodePlain}; `what` names the data in errors.
 * @throws SnapshotError on truncation, an unknown tag or trailing bytes
 */
export function decodePlain(data: Uint8Array, what: string): PlainValue {
  const r = new ByteReader(data, what);
  const v = read(r, what, 0);
  if (r.left !== 0) throw new SnapshotError(`${what}: ${r.left} bytes follow the encoded state`);
  return v;
}

/** Nesting deeper than this is corruption, not state. */
const MAX_DEPTH = 64;

function read(r: ByteReader, what: string, depth: number): PlainValue {
  if (depth > MAX_DEPTH) throw new SnapshotError(`${what}: nesting deeper than ${MAX_DEPTH}`);
  const tag = r.u8();
  switch (tag) {
    case Tag.Undefined:
      return undefined;
    case Tag.Null:
      return null;
    case Tag.False:
      return false;
    case Tag.True:
      return true;
    case Tag.Number:
      return r.f64();
    case Tag.BigInt: {
      const s = r.string(r.u32());
      if (!/^-?\d+$/.test(s)) throw new SnapshotError(`${what}: bad bigint '${s.slice(0, 40)}'`);
      return BigInt(s);
    }
    case Tag.String:
      return r.string(r.u32());
    case Tag.Typed: {
      const kind = r.u8();
      const T = TYPED[kind];
      if (!T) throw new SnapshotError(`${what}: unknown typed-array kind ${kind}`);
      const n = r.u32();
      if (n % T.BYTES_PER_ELEMENT !== 0) throw new SnapshotError(`${what}: ${n} bytes is not a whole ${T.name}`);
      // A copy in its own buffer (a Node Buffer's slice() would be a view of a shared pool).
      const copy = new Uint8Array(r.bytes(n));
      return new T(copy.buffer, 0, n / T.BYTES_PER_ELEMENT);
    }
    case Tag.Array: {
      const n = r.u32();
      if (n > r.left) throw new SnapshotError(`${what} is truncated (an array of ${n} values in ${r.left} bytes)`);
      const out: PlainValue[] = [];
      for (let i = 0; i < n; i++) out.push(read(r, what, depth + 1));
      return out;
    }
    case Tag.Record: {
      const n = r.u32();
      if (n > r.left) throw new SnapshotError(`${what} is truncated (a record of ${n} fields in ${r.left} bytes)`);
      const out: Record<string, PlainValue> = {};
      for (let i = 0; i < n; i++) {
        const k = r.string(r.u32());
        // defineProperty: a key named __proto__ is data, not the prototype.
        Object.defineProperty(out, k, { value: read(r, what, depth + 1), enumerable: true, writable: true, configurable: true });
      }
      return out;
    }
    default:
      throw new SnapshotError(`${what}: unknown value tag ${tag} at byte ${r.at - 1}`);
  }
}
