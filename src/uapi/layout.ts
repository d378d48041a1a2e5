/**
 * C struct layouts as data: each uAPI struct is declared once (field name, offset, type,
 * array length) and this module encodes/decodes it to bytes, little-endian. Declarations are
 * checked when made: natural alignment, explicit padding (no holes), and the declared size.
 */

/** Scalar C types of the uAPI (`__aligned_u64` and `__aligned_le64` are both `u64`). */
export type ScalarType = 'u8' | 'u16' | 'u32' | 's32' | 'u64';

const SIZE: Record<ScalarType, number> = { u8: 1, u16: 2, u32: 4, s32: 4, u64: 8 };

/** One field declaration. */
export interface FieldDecl {
  readonly name: string;
  readonly offset: number;
  readonly type: ScalarType;
  /** Array length (`__u32 idr[6]` → 6). */
  readonly count?: number;
  /** Member of an anonymous union with the previous field (same offset and size). */
  readonly union?: boolean;
}

type Scalar<T extends ScalarType> = T extends 'u64' ? bigint : number;
type ValueOf<F extends FieldDecl> = F extends { readonly count: number } ? Scalar<F['type']>[] : Scalar<F['type']>;

/** The JS value of a struct: `u64` fields are bigint, the rest numbers; arrays are arrays. */
export type StructValue<Fs extends readonly FieldDecl[]> = { -readonly [F in Fs[number] as F['name']]: ValueOf<F> };

/** A resolved field: declaration plus byte size. */
export interface LayoutField extends FieldDecl {
  /** Total bytes (element size × count). */
  readonly size: number;
}

/** What generic code needs of any layout whatever its value type: its name, sizes and fields. */
export interface StructInfo {
  readonly name: string;
  readonly size: number;
  /** Smallest `size` the kernel accepts for this struct as an ioctl argument. */
  readonly minSize: number;
  readonly fields: readonly LayoutField[];
}

/** A struct layout that decodes to (and encodes from) values of type `S`. */
export interface Struct<S extends object> extends StructInfo {
  decode(bytes: Uint8Array, offset?: number): S;
  encode(value: Partial<S>, out?: Uint8Array, offset?: number): Uint8Array;
  /** The codec decoding and encoding this layout (see {@link CodecKind}). */
  readonly codec: CodecKind;
  /** The same layout with its codec forced to `kind`. */
  withCodec(kind: CodecKind): Struct<S>;
}

/**
 * Any struct layout with its field types erased: what generic code (ioctl dispatch, the
 * `cmdqv uapi` dump, copy rules) works with.
 */
export type AnyStruct = Struct<Record<string, unknown>>;

/** The decoded value type of a layout (`StructOf<typeof iommu_ioas_map>`). */
export type StructOf<L> = L extends Struct<infer S> ? S : never;

/**
 * How a layout turns bytes into values: `compiled` generates straight-line code per struct
 * (fast; needs `new Function`), `interpreted` walks the field table (works where code
 * generation is forbidden, e.g. a page under a strict Content-Security-Policy). Both give the
 * same values, bytes and errors.
 */
export type CodecKind = 'compiled' | 'interpreted';

/** Field names become property keys of decoded values: plain identifiers, never prototype keys. */
const SAFE_NAME = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
const FORBIDDEN_NAMES: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

/** A struct layout. */
export class StructLayout<Fs extends readonly FieldDecl[] = readonly FieldDecl[]> implements Struct<StructValue<Fs>> {
  readonly fields: readonly LayoutField[];
  /** Smallest `size` the kernel accepts: the end of the field named as `last` (default: size). */
  readonly minSize: number;
  private readonly byName = new Map<string, LayoutField>();

  constructor(
    readonly name: string,
    readonly size: number,
    private readonly decls: Fs,
    private readonly last?: Fs[number]['name'],
    /** Force a codec; by default the compiled one where code generation is available. */
    private readonly codecKind?: CodecKind,
  ) {
    const fields: LayoutField[] = [];
    let cursor = 0;
    let maxAlign = 1;
    for (const d of decls) {
      const el = SIZE[d.type];
      const count = d.count ?? 1;
      const f: LayoutField = { ...d, size: el * count };
      maxAlign = Math.max(maxAlign, el);
      if (!SAFE_NAME.test(d.name) || FORBIDDEN_NAMES.has(d.name)) throw new Error(`${name}: field name ${JSON.stringify(d.name)} is not a safe identifier`);
      if (d.offset % el !== 0) throw new Error(`${name}.${d.name}: offset ${d.offset} not aligned to ${el}`);
      if (d.union) {
        const prev = fields[fields.length - 1];
        if (!prev || prev.offset !== d.offset || prev.size !== f.size) {
          throw new Error(`${name}.${d.name}: union member must match the previous field`);
        }
      } else {
        if (d.offset !== cursor) {
          throw new Error(`${name}.${d.name}: at ${d.offset}, expected ${cursor} (implicit padding or overlap)`);
        }
        cursor += f.size;
      }
      if (this.byName.has(d.name)) throw new Error(`${name}: duplicate field ${d.name}`);
      this.byName.set(d.name, f);
      fields.push(f);
    }
    if (cursor !== size) throw new Error(`${name}: fields end at ${cursor}, declared size ${size}`);
    if (size % maxAlign !== 0) throw new Error(`${name}: size ${size} not a multiple of alignment ${maxAlign}`);
    this.fields = fields;
    if (last !== undefined) {
      const lf = this.byName.get(last);
      if (!lf) throw new Error(`${name}: last field ${String(last)} not declared`);
      this.minSize = lf.offset + lf.size;
    } else {
      this.minSize = size;
    }
  }

  /** A field by name (throws for unknown names: a programming error). */
  field(name: Fs[number]['name']): LayoutField {
    const f = this.byName.get(name);
    if (!f) throw new Error(`${this.name}: no field ${name}`);
    return f;
  }

  /** Decode from `bytes` starting at `offset` (bytes beyond the buffer read as zero). */
  decode(bytes: Uint8Array, offset = 0): StructValue<Fs> {
    let src = bytes;
    let base = offset;
    if (offset + this.size > bytes.length) {
      src = new Uint8Array(this.size);
      src.set(bytes.subarray(offset, Math.min(bytes.length, offset + this.size)));
      base = 0;
    }
    const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
    return this.codecImpl.decode(dv, base) as StructValue<Fs>;
  }

  /**
   * Encode `value` into a new buffer of `size` bytes (or into `out` at `offset`). Missing fields
   * are zero; a `size` field defaults to the struct size.
   */
  encode(value: Partial<StructValue<Fs>>, out?: Uint8Array, offset = 0): Uint8Array {
    const buf = out ?? new Uint8Array(this.size);
    if (offset + this.size > buf.length) throw new RangeError(`${this.name}: buffer too small`);
    if (out) buf.fill(0, offset, offset + this.size);
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.codecImpl.encode(dv, offset, value as Record<string, unknown>, this.writeField);
    return buf;
  }

  /**
   * The general field writer: every check and error of the encoding rules. The compiled encoder
   * calls it for what its inline fast path does not take (arrays, u64 given as numbers, values
   * out of range or of the wrong kind).
   */
  private readonly writeField = (dv: DataView, base: number, i: number, x: unknown): void => {
    const f = this.fields[i]!;
    const el = SIZE[f.type];
    if (Array.isArray(x)) {
      const arr = x as readonly (number | bigint)[];
      if (f.count === undefined || arr.length > f.count) throw new RangeError(`${this.name}.${f.name}: bad array length`);
      arr.forEach((e, k) => writeScalar(dv, base + f.offset + k * el, f.type, e, this.name, f.name));
    } else {
      writeScalar(dv, base + f.offset, f.type, x as number | bigint, this.name, f.name);
    }
  };

  /** The same layout with its codec forced to `kind` (tests, and builds that forbid `new Function`). */
  withCodec(kind: CodecKind): StructLayout<Fs> {
    return new StructLayout(this.name, this.size, this.decls, this.last, kind);
  }

  /** The codec in use (built on first use). */
  get codec(): CodecKind {
    return this.codecImpl.kind;
  }

  /** Decoder and encoder built from the field table on first use. */
  private built: Codec | undefined;
  private get codecImpl(): Codec {
    return (this.built ??= buildCodec(this.fields, this.size, this.codecKind));
  }
}

/** A layout's decoder and encoder (see {@link compileCodec} and {@link interpretCodec}). */
interface Codec {
  readonly kind: CodecKind;
  decode(dv: DataView, base: number): Record<string, number | bigint | (number | bigint)[]>;
  encode(dv: DataView, base: number, v: Record<string, unknown>, general: (dv: DataView, base: number, i: number, x: unknown) => void): void;
}

const GETTER: Record<ScalarType, string> = { u8: 'getUint8', u16: 'getUint16', u32: 'getUint32', s32: 'getInt32', u64: 'getBigUint64' };
const SETTER: Record<ScalarType, string> = { u8: 'setUint8', u16: 'setUint16', u32: 'setUint32', s32: 'setInt32', u64: 'setBigUint64' };
const RANGE: Record<Exclude<ScalarType, 'u64'>, [number, number]> = {
  u8: [0, 0xff],
  u16: [0, 0xffff],
  u32: [0, 0xffff_ffff],
  s32: [-0x8000_0000, 0x7fff_ffff],
};

/**
 * Generate a layout's decoder and encoder as straight-line code, one statement per field, from
 * the declarations (the way register dispatch is generated from a register table). A generic
 * loop over fields costs a megamorphic property access per field and allocates per value; this
 * makes an ioctl's struct round trip several times cheaper. Field names only appear as quoted
 * property keys (JSON.stringify; names are checked identifiers, never `__proto__`), offsets and
 * sizes as numbers: no declaration text becomes code.
 * The encoder writes in-range numbers (and bigints for u64) inline and hands anything else to
 * the general writer, which applies every check and throws the same errors.
 */
function compileCodec(fields: readonly LayoutField[], size: number): Codec {
  const read = (t: ScalarType, at: number) => (t === 'u8' ? `dv.getUint8(b + ${at})` : `dv.${GETTER[t]}(b + ${at}, true)`);
  const props = fields.map((f) => {
    const el = SIZE[f.type];
    const value = f.count === undefined ? read(f.type, f.offset) : `[${Array.from({ length: f.count }, (_, k) => read(f.type, f.offset + k * el)).join(', ')}]`;
    return `${JSON.stringify(f.name)}: ${value}`;
  });
  const enc = ['let x;'];
  fields.forEach((f, i) => {
    enc.push(`x = v[${JSON.stringify(f.name)}];`);
    if (f.name === 'size' && f.offset === 0) enc.push(`if (x === undefined) x = ${size};`);
    const at = `b + ${f.offset}`;
    let fast: string;
    if (f.count !== undefined) fast = 'false';
    else if (f.type === 'u64') fast = `typeof x === 'bigint' && x >= 0n && x <= 0xffffffffffffffffn`;
    else {
      const [lo, hi] = RANGE[f.type];
      fast = `typeof x === 'number' && x >= ${lo} && x <= ${hi} && Math.floor(x) === x`;
    }
    const set = f.type === 'u8' ? `dv.setUint8(${at}, x)` : `dv.${SETTER[f.type]}(${at}, x, true)`;
    enc.push(`if (x !== undefined) { if (${fast}) ${set}; else general(dv, b, ${i}, x); }`);
  });
  const decode = new Function('dv', 'b', `return { ${props.join(', ')} };`) as Codec['decode'];
  const encode = new Function('dv', 'b', 'v', 'general', enc.join('\n')) as Codec['encode'];
  return { kind: 'compiled', decode, encode };
}

/**
 * The plain codec: the same decoding and encoding as {@link compileCodec}'s, by a loop over the
 * field table. Every encoded value goes through the general writer (same checks and errors).
 */
function interpretCodec(fields: readonly LayoutField[], size: number): Codec {
  return {
    kind: 'interpreted',
    decode(dv, b) {
      const out: Record<string, number | bigint | (number | bigint)[]> = {};
      for (const f of fields) {
        if (f.count === undefined) {
          out[f.name] = readScalar(dv, b + f.offset, f.type);
        } else {
          const el = SIZE[f.type];
          const values: (number | bigint)[] = [];
          for (let k = 0; k < f.count; k++) values.push(readScalar(dv, b + f.offset + k * el, f.type));
          out[f.name] = values;
        }
      }
      return out;
    },
    encode(dv, b, v, general) {
      for (let i = 0; i < fields.length; i++) {
        const f = fields[i]!;
        let x = v[f.name];
        if (x === undefined && f.name === 'size' && f.offset === 0) x = size;
        if (x !== undefined) general(dv, b, i, x);
      }
    },
  };
}

function readScalar(dv: DataView, at: number, type: ScalarType): number | bigint {
  switch (type) {
    case 'u8':
      return dv.getUint8(at);
    case 'u16':
      return dv.getUint16(at, true);
    case 'u32':
      return dv.getUint32(at, true);
    case 's32':
      return dv.getInt32(at, true);
    case 'u64':
      return dv.getBigUint64(at, true);
  }
}

/**
 * Whether this environment allows code generation, probed once on first need (a strict
 * Content-Security-Policy makes `new Function` throw EvalError).
 */
let codegenAllowed: boolean | undefined;
function canGenerateCode(): boolean {
  if (codegenAllowed === undefined) {
    try {
      codegenAllowed = (new Function('return 1') as () => number)() === 1;
    } catch {
      codegenAllowed = false;
    }
  }
  return codegenAllowed;
}

/** The codec of a layout: `kind` when forced, else compiled where code generation works. */
function buildCodec(fields: readonly LayoutField[], size: number, kind: CodecKind | undefined): Codec {
  const compiled = kind === 'compiled' || (kind === undefined && canGenerateCode());
  return compiled ? compileCodec(fields, size) : interpretCodec(fields, size);
}

function writeScalar(dv: DataView, at: number, type: ScalarType, x: number | bigint, s: string, f: string): void {
  if (type === 'u64') {
    const b = BigInt(x);
    if (b < 0n || b > 0xffff_ffff_ffff_ffffn) throw badValue(s, f, x, type);
    dv.setBigUint64(at, b, true);
    return;
  }
  const n = Number(x);
  if (!Number.isInteger(n)) throw badValue(s, f, x, type);
  switch (type) {
    case 'u8':
      if (n < 0 || n > 0xff) throw badValue(s, f, x, type);
      dv.setUint8(at, n);
      return;
    case 'u16':
      if (n < 0 || n > 0xffff) throw badValue(s, f, x, type);
      dv.setUint16(at, n, true);
      return;
    case 'u32':
      if (n < 0 || n > 0xffff_ffff) throw badValue(s, f, x, type);
      dv.setUint32(at, n, true);
      return;
    case 's32':
      if (n < -0x8000_0000 || n > 0x7fff_ffff) throw badValue(s, f, x, type);
      dv.setInt32(at, n, true);
      return;
  }
}

/** The error for a value that does not fit its field (built only when thrown). */
function badValue(s: string, f: string, x: number | bigint, type: ScalarType): RangeError {
  return new RangeError(`${s}.${f}: value ${x} does not fit ${type}`);
}

/** Declare a struct layout (see {@link StructLayout}). */
export function defineStruct<const Fs extends readonly FieldDecl[]>(
  name: string,
  size: number,
  fields: Fs,
  last?: Fs[number]['name'],
): StructLayout<Fs> {
  return new StructLayout(name, size, fields, last);
}
