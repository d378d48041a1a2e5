/**
 * A small AML encoder: each function returns the bytes of one AML construct, so a DSDT is
 * built by composing calls the way its ASL reads (docs/reference/acpi.md §4).
 *
 * The encodings follow the choices QEMU's AML builder makes wherever AML allows several
 * (smallest integer prefix, Zero/One opcodes, smallest PkgLength, resource-template end tag
 * with checksum 0), because the CMDQV device node has to match QEMU byte for byte.
 */
import { ByteWriter, concatBytes } from '../../arch/acpi/table.js';

export { AmlOp, ResTag } from '../../arch/acpi/aml-opcodes.js';
import { AmlOp, ResTag } from '../../arch/acpi/aml-opcodes.js';

/** Address-space resource types (byte 3 of a Word/DWord/QWord address descriptor). */
export const AddressSpaceType = { Memory: 0, Io: 1, BusNumber: 2 } as const;

/** Memory cacheability, bits 1..2 of a memory address descriptor's type-specific flags. */
export type AmlCacheability = 'non-cacheable' | 'cacheable' | 'write-combining' | 'prefetchable';

const CACHEABILITY: Record<AmlCacheability, number> = {
  'non-cacheable': 0,
  cacheable: 1,
  'write-combining': 2,
  prefetchable: 3,
};

const SEG_RE = /^[A-Z_][A-Z0-9_]{0,3}$/;

/**
 * A 4-byte NameSeg. Names shorter than 4 characters are padded with '_' (as QEMU and iasl
 * do: `_SB` becomes `_SB_`).
 */
export function nameSeg(seg: string): Uint8Array {
  if (!SEG_RE.test(seg)) throw new RangeError(`"${seg}" is not a valid AML NameSeg`);
  const padded = seg.padEnd(4, '_');
  return Uint8Array.from(padded, (c) => c.charCodeAt(0));
}

/**
 * A NameString: optional root (`\`) or parent (`^`…) prefixes, then dot-separated segments
 * encoded as one NameSeg, a DualNamePath or a MultiNamePath; `""` after a prefix is NullName.
 */
export function nameString(path: string): Uint8Array {
  const prefix: number[] = [];
  let rest = path;
  if (rest.startsWith('\\')) {
    prefix.push(AmlOp.RootChar);
    rest = rest.slice(1);
  } else {
    while (rest.startsWith('^')) {
      prefix.push(AmlOp.ParentPrefix);
      rest = rest.slice(1);
    }
  }
  const head = Uint8Array.from(prefix);
  if (rest === '') return concatBytes(head, Uint8Array.of(0x00));
  const segs = rest.split('.').map(nameSeg);
  if (segs.length === 1) return concatBytes(head, segs[0]!);
  if (segs.length === 2) return concatBytes(head, Uint8Array.of(AmlOp.DualNamePrefix), ...segs);
  if (segs.length > 255) throw new RangeError(`name path "${path}" has more than 255 segments`);
  return concatBytes(head, Uint8Array.of(AmlOp.MultiNamePrefix, segs.length), ...segs);
}

/**
 * The PkgLength encoding for an object whose content after the PkgLength is `contentLength`
 * bytes. The encoded value counts the PkgLength bytes themselves; the smallest form is chosen
 * (1 byte up to a total of 63, then 2, 3 or 4 bytes holding 4 + 8·k bits).
 */
export function pkgLength(contentLength: number): Uint8Array {
  if (!Number.isInteger(contentLength) || contentLength < 0) throw new RangeError(`bad PkgLength content ${contentLength}`);
  if (contentLength + 1 < 1 << 6) return Uint8Array.of(contentLength + 1);
  let n = 2;
  while (n <= 4 && contentLength + n >= 2 ** (4 + 8 * (n - 1))) n++;
  if (n > 4) throw new RangeError(`PkgLength content ${contentLength} exceeds 2^28`);
  const total = contentLength + n;
  const out = new Uint8Array(n);
  // Lead byte: bits 7..6 = number of following bytes, bits 3..0 = the low nibble.
  out[0] = ((n - 1) << 6) | (total & 0x0f);
  for (let i = 1; i < n; i++) out[i] = (total >>> (4 + 8 * (i - 1))) & 0xff;
  return out;
}

/** `opcode PkgLength content` — the shape of Scope, Device, Method, Buffer and Package. */
export function withPkgLength(opcode: Uint8Array, ...content: readonly Uint8Array[]): Uint8Array {
  const body = concatBytes(...content);
  return concatBytes(opcode, pkgLength(body.length), body);
}

/**
 * An integer data object with QEMU's encoding: 0 → ZeroOp, 1 → OneOp, otherwise the
 * smallest of BytePrefix, WordPrefix, DWordPrefix and QWordPrefix that holds the value.
 * (OnesOp is never used for integers, as in QEMU.)
 */
export function amlInteger(value: number | bigint): Uint8Array {
  const v = typeof value === 'bigint' ? value : BigInt(checkSafe(value));
  if (v < 0n || v > 0xffff_ffff_ffff_ffffn) throw new RangeError(`${value} is not a 64-bit unsigned integer`);
  if (v === 0n) return Uint8Array.of(AmlOp.Zero);
  if (v === 1n) return Uint8Array.of(AmlOp.One);
  const w = new ByteWriter();
  if (v <= 0xffn) w.u8(AmlOp.BytePrefix).u8(Number(v));
  else if (v <= 0xffffn) w.u8(AmlOp.WordPrefix).u16(Number(v));
  else if (v <= 0xffff_ffffn) w.u8(AmlOp.DWordPrefix).u32(Number(v));
  else w.u8(AmlOp.QWordPrefix).u64(v);
  return w.toBytes();
}

function checkSafe(v: number): number {
  if (!Number.isSafeInteger(v)) throw new RangeError(`${v} is not a safe integer`);
  return v;
}

/** A String data object: `0D` ASCII bytes `00`. */
export function amlString(text: string): Uint8Array {
  const out = new Uint8Array(text.length + 2);
  out[0] = AmlOp.StringPrefix;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x01 || c > 0x7f) throw new RangeError(`AML strings are ASCII without NUL: ${JSON.stringify(text)}`);
    out[i + 1] = c;
  }
  return out;
}

/** A Buffer whose size equals its initializer: `11 PkgLength Integer(size) bytes`. */
export function amlBuffer(data: Uint8Array): Uint8Array {
  return withPkgLength(Uint8Array.of(AmlOp.Buffer), amlInteger(data.length), data);
}

/** A Package of at most 255 already encoded data objects: `12 PkgLength NumElements elements`. */
export function amlPackage(...elements: readonly Uint8Array[]): Uint8Array {
  if (elements.length > 255) throw new RangeError('a Package holds at most 255 elements (use VarPackage)');
  return withPkgLength(Uint8Array.of(AmlOp.Package), Uint8Array.of(elements.length), ...elements);
}

/** `Name(name, value)`: `08 NameString DataObject`. */
export function amlName(name: string, value: Uint8Array): Uint8Array {
  return concatBytes(Uint8Array.of(AmlOp.Name), nameString(name), value);
}

/** `Scope(name) { terms }`. */
export function amlScope(name: string, ...terms: readonly Uint8Array[]): Uint8Array {
  return withPkgLength(Uint8Array.of(AmlOp.Scope), nameString(name), ...terms);
}

/** `Device(name) { terms }`: `5B 82 PkgLength NameString TermList`. */
export function amlDevice(name: string, ...terms: readonly Uint8Array[]): Uint8Array {
  return withPkgLength(Uint8Array.of(AmlOp.ExtOpPrefix, AmlOp.Device), nameString(name), ...terms);
}

/** `Method(name, argCount, Serialized|NotSerialized) { terms }` (sync level 0). */
export function amlMethod(name: string, argCount: number, serialized: boolean, ...terms: readonly Uint8Array[]): Uint8Array {
  if (!Number.isInteger(argCount) || argCount < 0 || argCount > 7) throw new RangeError(`method argument count ${argCount} not in 0..7`);
  const flags = argCount | (serialized ? 0x08 : 0);
  return withPkgLength(Uint8Array.of(AmlOp.Method), nameString(name), Uint8Array.of(flags), ...terms);
}

/** `Return(value)`. */
export function amlReturn(value: Uint8Array): Uint8Array {
  return concatBytes(Uint8Array.of(AmlOp.Return), value);
}

// ---------------------------------------------------------------------------------------------
// Resource descriptors

/** General flags shared by Word/DWord/QWord address-space descriptors. */
export interface AddressSpaceFlags {
  /** ResourceConsumer (bit 0 = 1); default false = ResourceProducer, which is what QEMU emits. */
  consumer?: boolean;
  /** SubDecode (bit 1); default PosDecode. */
  subtractiveDecode?: boolean;
  /** MinFixed (bit 2); default true. */
  minFixed?: boolean;
  /** MaxFixed (bit 3); default true. */
  maxFixed?: boolean;
}

function generalFlags(f: AddressSpaceFlags): number {
  return (
    (f.consumer === true ? 1 : 0) |
    (f.subtractiveDecode === true ? 2 : 0) |
    (f.minFixed === false ? 0 : 4) |
    (f.maxFixed === false ? 0 : 8)
  );
}

/** The five range fields of an address-space descriptor. */
export interface AddressRange {
  /** Address granularity (alignment mask); default 0. */
  granularity?: number | bigint;
  minimum: number | bigint;
  maximum: number | bigint;
  /** Translation offset; default 0. */
  translation?: number | bigint;
  length: number | bigint;
}

/** Options of a memory address-space descriptor. */
export interface MemoryRangeOptions extends AddressSpaceFlags, AddressRange {
  /** Default 'non-cacheable'. */
  cacheability?: AmlCacheability;
  /** ReadWrite (true, default) or ReadOnly. */
  readWrite?: boolean;
}

function memoryTypeFlags(o: MemoryRangeOptions): number {
  return (o.readWrite === false ? 0 : 1) | (CACHEABILITY[o.cacheability ?? 'non-cacheable'] << 1);
}

/** QWordMemory: `8A 2B 00`, type 0, general flags, type flags, 5 × u64. */
export function qwordMemory(o: MemoryRangeOptions): Uint8Array {
  const w = new ByteWriter();
  w.u8(ResTag.QWordAddress).u16(0x2b).u8(AddressSpaceType.Memory).u8(generalFlags(o)).u8(memoryTypeFlags(o));
  for (const v of [o.granularity ?? 0, o.minimum, o.maximum, o.translation ?? 0, o.length]) w.u64(v);
  return w.toBytes();
}

/** DWordMemory: `87 17 00`, type 0, general flags, type flags, 5 × u32. */
export function dwordMemory(o: MemoryRangeOptions): Uint8Array {
  const w = new ByteWriter();
  w.u8(ResTag.DWordAddress).u16(0x17).u8(AddressSpaceType.Memory).u8(generalFlags(o)).u8(memoryTypeFlags(o));
  for (const v of [o.granularity ?? 0, o.minimum, o.maximum, o.translation ?? 0, o.length]) w.u32(Number(v));
  return w.toBytes();
}

/** WordBusNumber: `88 0D 00`, type 2, general flags, type flags 0, 5 × u16. */
export function wordBusNumber(o: AddressSpaceFlags & AddressRange): Uint8Array {
  const w = new ByteWriter();
  w.u8(ResTag.WordAddress).u16(0x0d).u8(AddressSpaceType.BusNumber).u8(generalFlags(o)).u8(0);
  for (const v of [o.granularity ?? 0, o.minimum, o.maximum, o.translation ?? 0, o.length]) w.u16(Number(v));
  return w.toBytes();
}

/** Memory32Fixed: `86 09 00 <rw> <u32 base> <u32 length>`. */
export function memory32Fixed(base: number, length: number, readWrite = true): Uint8Array {
  return new ByteWriter().u8(ResTag.Memory32Fixed).u16(9).u8(readWrite ? 1 : 0).u32(base).u32(length).toBytes();
}

/** Options of an Extended Interrupt descriptor. */
export interface ExtendedInterruptOptions {
  /** ResourceConsumer (default true, as every device interrupt QEMU describes). */
  consumer?: boolean;
  /** Edge-triggered (true) or level (false, default). */
  edge?: boolean;
  /** ActiveLow (true) or ActiveHigh (false, default). */
  activeLow?: boolean;
  /** Shared (true) or Exclusive (false, default). */
  shared?: boolean;
  /** Wake capable; default false. */
  wake?: boolean;
  /** One or more GSIVs (at most 255). */
  gsivs: readonly number[];
}

/** Extended Interrupt: `89 <u16 2+4n> <flags> <n> <u32 × n>`. */
export function extendedInterrupt(o: ExtendedInterruptOptions): Uint8Array {
  if (o.gsivs.length < 1 || o.gsivs.length > 255) throw new RangeError('an Extended Interrupt holds 1..255 interrupts');
  const flags =
    (o.consumer === false ? 0 : 1) |
    (o.edge === true ? 2 : 0) |
    (o.activeLow === true ? 4 : 0) |
    (o.shared === true ? 8 : 0) |
    (o.wake === true ? 16 : 0);
  const w = new ByteWriter().u8(ResTag.ExtendedInterrupt).u16(2 + 4 * o.gsivs.length).u8(flags).u8(o.gsivs.length);
  for (const g of o.gsivs) w.u32(g);
  return w.toBytes();
}

/**
 * The End Tag. Its checksum byte is 0, which the ACPI spec defines as "treat as succeeded"
 * (QEMU always writes 0).
 */
export function endTag(): Uint8Array {
  return Uint8Array.of(ResTag.EndTag, 0x00);
}

/** `ResourceTemplate() { descriptors }`: a Buffer of the descriptors plus the End Tag. */
export function resourceTemplate(...descriptors: readonly Uint8Array[]): Uint8Array {
  return amlBuffer(concatBytes(...descriptors, endTag()));
}
