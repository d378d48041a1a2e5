/**
 * ACPI system description table framing: the 36-byte header every table starts with, the
 * whole-table checksum, and a little-endian byte writer the table builders share
 * (docs/reference/acpi.md §1).
 *
 * QEMU writes the checksum as 0 and lets the firmware fill it in through a linker/loader
 * command; cmdqv has no firmware step, so {@link finishTable} computes it directly, which is
 * also what the golden blobs hold (they were read back from guest RAM after edk2 ran).
 */

/** Size of the common ACPI table header. */
export const ACPI_HEADER_SIZE = 36;
/** Offset of the checksum byte in the header. */
export const ACPI_CHECKSUM_OFFSET = 9;

/** OEM and creator fields of a table header. */
export interface AcpiOem {
  /** OEM ID, at most 6 ASCII characters (shorter values are NUL-padded, as QEMU does). */
  id: string;
  /** OEM table ID, at most 8 ASCII characters (NUL-padded). */
  tableId: string;
  /** OEM revision (u32). */
  revision: number;
  /** Creator ("ASL compiler") ID, at most 4 ASCII characters (NUL-padded). */
  creatorId: string;
  /** Creator revision (u32). */
  creatorRevision: number;
}

/**
 * QEMU's defaults for the `virt` machine: `ACPI_BUILD_APPNAME6`/`APPNAME8`, whose full-width
 * values carry their own trailing spaces, revision 1, creator = the first 4 bytes of APPNAME8.
 */
export const QEMU_OEM: Readonly<AcpiOem> = Object.freeze({
  id: 'BOCHS ',
  tableId: 'BXPC    ',
  revision: 1,
  creatorId: 'BXPC',
  creatorRevision: 1,
});

/** A malformed ACPI table or AML stream (bad checksum, truncated node, unknown opcode…). */
export class AcpiError extends Error {
  override readonly name = 'AcpiError';
}

/** Little-endian append-only byte writer with in-place patching of already written fields. */
export class ByteWriter {
  private buf = new Uint8Array(256);
  private len = 0;

  /** Number of bytes written so far (the offset of the next byte). */
  get length(): number {
    return this.len;
  }

  private reserve(n: number): number {
    const at = this.len;
    if (at + n > this.buf.length) {
      const grown = new Uint8Array(Math.max(this.buf.length * 2, at + n));
      grown.set(this.buf.subarray(0, at));
      this.buf = grown;
    }
    this.len += n;
    return at;
  }

  /** Appends an unsigned 8-bit value. */
  u8(v: number): this {
    checkUint(v, 8);
    const at = this.reserve(1);
    this.buf[at] = v;
    return this;
  }

  /** Appends an unsigned 16-bit value. */
  u16(v: number): this {
    checkUint(v, 16);
    const at = this.reserve(2);
    this.buf[at] = v & 0xff;
    this.buf[at + 1] = v >>> 8;
    return this;
  }

  /** Appends an unsigned 32-bit value. */
  u32(v: number): this {
    this.patchU32(this.reserve(4), v);
    return this;
  }

  /** Appends an unsigned 64-bit value (a number must be a safe non-negative integer). */
  u64(v: number | bigint): this {
    const big = toU64(v);
    const at = this.reserve(8);
    new DataView(this.buf.buffer, this.buf.byteOffset).setBigUint64(at, big, true);
    return this;
  }

  /** Appends raw bytes. */
  bytes(b: Uint8Array): this {
    // reserve() may replace the buffer, so it must run before `this.buf` is read.
    const at = this.reserve(b.length);
    this.buf.set(b, at);
    return this;
  }

  /** Appends `width` bytes of ASCII text, NUL-padded; longer or non-ASCII text is rejected. */
  ascii(text: string, width: number): this {
    this.bytes(fixedAscii(text, width));
    return this;
  }

  /** Overwrites a u32 already written at `offset`. */
  patchU32(offset: number, v: number): void {
    checkUint(v, 32);
    if (offset < 0 || offset + 4 > this.len) throw new RangeError(`patch at ${offset} outside ${this.len} bytes`);
    new DataView(this.buf.buffer, this.buf.byteOffset).setUint32(offset, v, true);
  }

  /** A copy of the bytes written. */
  toBytes(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

/** Concatenates byte arrays. */
export function concatBytes(...parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function checkUint(v: number, bits: number): void {
  if (!Number.isInteger(v) || v < 0 || v >= 2 ** bits) throw new RangeError(`${v} does not fit in u${bits}`);
}

function toU64(v: number | bigint): bigint {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${v} is not a safe unsigned integer`);
    return BigInt(v);
  }
  if (v < 0n || v > 0xffff_ffff_ffff_ffffn) throw new RangeError(`${v} does not fit in u64`);
  return v;
}

/** `text` as exactly `width` ASCII bytes, NUL-padded (QEMU pads user OEM strings with '\0'). */
export function fixedAscii(text: string, width: number): Uint8Array {
  if (text.length > width) throw new RangeError(`"${text}" is longer than ${width} characters`);
  const out = new Uint8Array(width);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) throw new RangeError(`"${text}" is not printable ASCII`);
    out[i] = c;
  }
  return out;
}

/** Sum of all bytes modulo 256; a table with a correct checksum sums to 0. */
export function byteSum(bytes: Uint8Array): number {
  let s = 0;
  for (const b of bytes) s = (s + b) & 0xff;
  return s;
}

/** Starts a table: writes the header with Length and Checksum 0 (both fixed by {@link finishTable}). */
export function beginTable(w: ByteWriter, signature: string, revision: number, oem: AcpiOem = QEMU_OEM): void {
  if (w.length !== 0) throw new RangeError('a table must start at offset 0 of its writer');
  if (!/^[A-Z0-9_]{4}$/.test(signature)) throw new RangeError(`bad table signature "${signature}"`);
  w.ascii(signature, 4).u32(0).u8(revision).u8(0);
  w.ascii(oem.id, 6).ascii(oem.tableId, 8).u32(oem.revision).ascii(oem.creatorId, 4).u32(oem.creatorRevision);
}

/** Ends a table: patches Length and sets the checksum so that all bytes sum to 0 (mod 256). */
export function finishTable(w: ByteWriter): Uint8Array {
  w.patchU32(4, w.length);
  const t = w.toBytes();
  t[ACPI_CHECKSUM_OFFSET] = 0;
  t[ACPI_CHECKSUM_OFFSET] = (256 - byteSum(t)) & 0xff;
  return t;
}

/** A decoded table header. */
export interface AcpiTableHeader {
  signature: string;
  length: number;
  revision: number;
  checksum: number;
  oem: AcpiOem;
}

function asciiAt(b: Uint8Array, at: number, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += String.fromCharCode(b[at + i]!);
  return s.replace(/\0+$/, '');
}

/**
 * Decodes and validates a table header: the signature (when `expect` is given), that Length
 * fits the buffer and covers the header, and the checksum. Errors name the table and the
 * offending values.
 */
export function parseTableHeader(bytes: Uint8Array, expect?: string): AcpiTableHeader {
  if (bytes.length < ACPI_HEADER_SIZE) {
    throw new AcpiError(`ACPI table: ${bytes.length} bytes is shorter than the ${ACPI_HEADER_SIZE}-byte header`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const signature = asciiAt(bytes, 0, 4);
  if (expect !== undefined && signature !== expect) {
    throw new AcpiError(`ACPI table: signature "${signature}", expected "${expect}"`);
  }
  const length = dv.getUint32(4, true);
  if (length < ACPI_HEADER_SIZE || length > bytes.length) {
    throw new AcpiError(`${signature}: header Length ${length} does not fit the ${bytes.length} bytes given`);
  }
  const sum = byteSum(bytes.subarray(0, length));
  if (sum !== 0) {
    throw new AcpiError(
      `${signature}: bad checksum: the ${length} bytes sum to 0x${sum.toString(16).padStart(2, '0')} (mod 256), ` +
        `expected 0 (checksum byte is 0x${bytes[ACPI_CHECKSUM_OFFSET]!.toString(16).padStart(2, '0')})`,
    );
  }
  return {
    signature,
    length,
    revision: bytes[8]!,
    checksum: bytes[ACPI_CHECKSUM_OFFSET]!,
    oem: {
      id: asciiAt(bytes, 10, 6),
      tableId: asciiAt(bytes, 16, 8),
      revision: dv.getUint32(24, true),
      creatorId: asciiAt(bytes, 28, 4),
      creatorRevision: dv.getUint32(32, true),
    },
  };
}
