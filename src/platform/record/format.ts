/**
 * The recording file format of `cmdqv run --record` / `cmdqv replay` (docs/design.md, "Record
 * and replay").
 *
 * ```
 * header   "CMDQVREC" (8 bytes) | u16 version | u16 record size (32) | u32 JSON length | JSON (UTF-8)
 *          | zero padding to a multiple of 8
 * records  a stream of 32-byte little-endian records, in chunks: each chunk is a BLOCK record
 *          (record count, CRC-32 of the records, payload length, whether the payload is
 *          raw-deflate compressed) followed by its payload; the last record is END
 * ```
 * Records are highly repetitive (the same registers, rising times), so chunks are compressed
 * by default (deflate level 1: about 10x smaller for a few percent of the run's time).
 *
 * One record (byte offsets):
 * ```
 * 0 u8 kind | 1 u8 flags | 2 u16 aux2 | 4 u32 aux | 8 u64 addr | 16 u64 value | 24 f64 time (modelled ns)
 * ```
 * The header's JSON is the {@link RunDescription}: everything needed to rebuild the machine.
 */

import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { crc32, tableCrc32 } from '../../kit/crc32.js';

/** First 8 bytes of every recording. */
export const MAGIC = 'CMDQVREC';
/** Format version this code writes and reads. */
export const FORMAT_VERSION = 1;
/** Bytes of one record. */
export const RECORD_BYTES = 32;
/** Bytes of the fixed part of the header (magic, version, record size, JSON length). */
export const HEADER_FIXED_BYTES = 16;
/** The longest run description accepted (a corrupt length field must not allocate gigabytes). */
const MAX_DESCRIPTION_BYTES = 1 << 20;
/**
 * The most records one chunk may hold (the recorder writes 64 Ki): a chunk's records are held in
 * memory whole, so a count read from the file must not size an allocation without this cap.
 */
export const MAX_CHUNK_RECORDS = 1 << 20;
/**
 * The most bytes a DMA or RAM record may be about: replay allocates that much to re-issue it.
 * The workload's own transfers are a few pages at most.
 */
export const MAX_DATA_BYTES = 1 << 24;

/** Record field offsets. */
export const F_KIND = 0;
export const F_FLAGS = 1;
export const F_AUX2 = 2;
export const F_AUX = 4;
export const F_ADDR = 8;
export const F_VALUE = 16;
export const F_TIME = 24;

/** Record kinds. */
export const K_READ32 = 1;
export const K_WRITE32 = 2;
export const K_READ64 = 3;
export const K_WRITE64 = 4;
/** The guest let modelled time pass (a poll interval) or the VMM's main loop ran: value = ns (f64). */
export const K_ADVANCE = 5;
/** An interrupt line changed level: aux = GSIV, flags bit 0 = the new level. */
export const K_IRQ_LEVEL = 6;
/** The guest installed (flags 1) or removed (0) its handler of line aux. */
export const K_IRQ_HANDLER = 7;
/** The guest's handler of line aux starts / returns: what it does is recorded in between. */
export const K_IRQ_ENTER = 8;
export const K_IRQ_EXIT = 9;
/** Device DMA the workload makes: aux = host device index, aux2 = length | event << 8, addr = IOVA. */
export const K_DMA_READ = 10;
export const K_DMA_WRITE = 11;
/** The guest reads / writes its RAM outside the bus (the workload's DMA check): aux = length. */
export const K_RAM_READ = 12;
export const K_RAM_WRITE = 13;
/**
 * Framing: aux = records in the chunk that follows, addr = its payload's bytes, value = the
 * records' CRC-32, flags {@link FLAG_DEFLATE}.
 */
export const K_BLOCK = 14;
/** A final counter: aux = counter id ({@link counterName}), value = f64. */
export const K_COUNTER = 15;
/** Last record: aux = records before it (framing excluded), flags {@link FLAG_FAILED}. */
export const K_END = 16;
/** The guest read the ACPI tables (IORT, DSDT, MCFG): aux = their bytes, value = their CRC-32. */
export const K_ACPI = 17;

/** Record flags. */
export const FLAG_LEVEL = 1;
/** DMA outcome bits. */
export const FLAG_DMA_OK = 1;
export const FLAG_DMA_MASTER_ABORT = 2;
export const FLAG_DMA_IOTLB_HIT = 4;
/** The data did not fit in the value field: value holds its CRC-32. */
export const FLAG_HASHED = 8;
/** The access never returned (the run stopped with an exception inside it): its value is unknown. */
export const FLAG_OPEN = 0x80;
/** END: the recorded run stopped with an exception. */
export const FLAG_FAILED = 1;
/** BLOCK: the payload is the records compressed with raw deflate. */
export const FLAG_DEFLATE = 1;

/** Bytes of data a DMA or RAM write record carries inline. */
export const INLINE_DATA_BYTES = 8;

const KIND_NAMES: Readonly<Record<number, string>> = {
  [K_READ32]: 'read32',
  [K_WRITE32]: 'write32',
  [K_READ64]: 'read64',
  [K_WRITE64]: 'write64',
  [K_ADVANCE]: 'advance',
  [K_IRQ_LEVEL]: 'irq-level',
  [K_IRQ_HANDLER]: 'irq-handler',
  [K_IRQ_ENTER]: 'irq-enter',
  [K_IRQ_EXIT]: 'irq-exit',
  [K_DMA_READ]: 'dma-read',
  [K_DMA_WRITE]: 'dma-write',
  [K_RAM_READ]: 'ram-read',
  [K_RAM_WRITE]: 'ram-write',
  [K_BLOCK]: 'block',
  [K_COUNTER]: 'counter',
  [K_END]: 'end',
  [K_ACPI]: 'acpi-tables',
};

/** Flag bits each kind may carry (the recorder writes no others), by kind. */
const ALLOWED_FLAGS = new Uint8Array(256);
/** Kinds whose aux2 is always 0, and kinds whose address is always 0. */
const NO_AUX2 = new Uint8Array(256);
const NO_ADDR = new Uint8Array(256);
for (const k of [K_READ32, K_READ64, K_WRITE32, K_WRITE64]) {
  ALLOWED_FLAGS[k] = FLAG_OPEN;
  NO_AUX2[k] = 1;
}
for (const [k, flags] of [[K_ADVANCE, 0], [K_IRQ_LEVEL, FLAG_LEVEL], [K_IRQ_HANDLER, 1], [K_IRQ_ENTER, 0], [K_IRQ_EXIT, 0], [K_COUNTER, 0], [K_END, FLAG_FAILED], [K_ACPI, 0]] as const) {
  ALLOWED_FLAGS[k] = flags;
  NO_AUX2[k] = 1;
  NO_ADDR[k] = 1;
}
/** Kinds whose value is always 0. */
const NO_VALUE = new Uint8Array(256);
for (const k of [K_IRQ_LEVEL, K_IRQ_HANDLER, K_IRQ_ENTER, K_IRQ_EXIT, K_END]) NO_VALUE[k] = 1;
ALLOWED_FLAGS[K_DMA_READ] = FLAG_DMA_OK | FLAG_DMA_MASTER_ABORT | FLAG_DMA_IOTLB_HIT | FLAG_HASHED | FLAG_OPEN;
ALLOWED_FLAGS[K_DMA_WRITE] = FLAG_DMA_OK | FLAG_DMA_MASTER_ABORT | FLAG_DMA_IOTLB_HIT | FLAG_OPEN;
ALLOWED_FLAGS[K_RAM_READ] = FLAG_HASHED | FLAG_OPEN;
ALLOWED_FLAGS[K_RAM_WRITE] = 0;

/**
 * What is wrong with the fields of the record at byte `p` of `b` (a kind this version knows),
 * or undefined: flag bits the kind never has, fields it never sets, data lengths past what the
 * record can hold (inline) or replay allocates (hashed). A corrupt field is refused rather than
 * ignored, so that no edit of a recording passes unseen.
 */
export function recordFieldProblem(b: Uint8Array, dv: DataView, p: number): string | undefined {
  const kind = b[p + F_KIND]!;
  const flags = b[p + F_FLAGS]!;
  if (flags & ~ALLOWED_FLAGS[kind]!) return `flags 0x${flags.toString(16)} (a ${KIND_NAMES[kind]} record has only 0x${ALLOWED_FLAGS[kind]!.toString(16)})`;
  const aux2 = dv.getUint16(p + F_AUX2, true);
  if (NO_AUX2[kind] && aux2 !== 0) return `aux2 ${aux2} (always 0 in a ${KIND_NAMES[kind]} record)`;
  if (NO_ADDR[kind] && (dv.getUint32(p + F_ADDR, true) !== 0 || dv.getUint32(p + F_ADDR + 4, true) !== 0)) return `an address in a ${KIND_NAMES[kind]} record`;
  if (NO_VALUE[kind] && (dv.getUint32(p + F_VALUE, true) !== 0 || dv.getUint32(p + F_VALUE + 4, true) !== 0)) return `a value in a ${KIND_NAMES[kind]} record`;
  if ((kind === K_READ32 || kind === K_WRITE32) && dv.getUint32(p + F_VALUE + 4, true) !== 0) return `a value over 32 bits in a ${KIND_NAMES[kind]} record`;
  if ((kind === K_READ32 || kind === K_WRITE32 || kind === K_READ64 || kind === K_WRITE64) && dv.getUint32(p + F_AUX, true) !== 0) return `aux ${dv.getUint32(p + F_AUX, true)} (always 0 in a ${KIND_NAMES[kind]} record)`;
  if (kind === K_DMA_READ || kind === K_DMA_WRITE || kind === K_RAM_READ || kind === K_RAM_WRITE) {
    if (flags & FLAG_HASHED) {
      const n = dv.getUint32(p + F_VALUE + 4, true);
      if (n <= INLINE_DATA_BYTES || n > MAX_DATA_BYTES) return `hashed data of ${n} bytes (more than ${INLINE_DATA_BYTES}, at most ${MAX_DATA_BYTES})`;
    } else if ((aux2 & 0xff) > INLINE_DATA_BYTES) {
      return `${aux2 & 0xff} bytes of inline data (at most ${INLINE_DATA_BYTES})`;
    }
    if (kind === K_RAM_READ || kind === K_RAM_WRITE) {
      const n = dv.getUint32(p + F_AUX, true);
      if (n > MAX_DATA_BYTES) return `a RAM access of ${n} bytes (at most ${MAX_DATA_BYTES})`;
    }
  }
  return undefined;
}

/** Name of a record kind (`read32`, `irq-level`...), or undefined for a kind this version does not know. */
export function kindName(kind: number): string | undefined {
  return KIND_NAMES[kind];
}

/**
 * Final counters, by id: what a run leaves behind that the guest could count. Interrupt counts
 * are `IRQ_COUNTER_BASE + GSIV`.
 */
export const COUNTERS = [
  'modelled time (ns)',
  'VM exits',
  'direct accesses',
  'RAM accesses',
  'invalid accesses',
  'unassigned accesses',
  'host ioctls',
  'host faults forwarded',
  'guest errors logged',
  'unimplemented accesses logged',
  'faults injected',
  'ACPI tables CRC-32',
] as const;
export const IRQ_COUNTER_BASE = 0x1_0000;

/** Name of counter `id`. */
export function counterName(id: number): string {
  return id >= IRQ_COUNTER_BASE ? `interrupts on GSIV ${id - IRQ_COUNTER_BASE}` : (COUNTERS[id] ?? `counter ${id}`);
}

/** Everything the recording needs to rebuild the run's machine, as the header's JSON. */
export interface RunDescription {
  /** Always `cmdqv-record`. */
  readonly format: 'cmdqv-record';
  /** The code that recorded: package version and, when known, the git commit. */
  readonly cmdqv: { readonly version: string; readonly commit?: string };
  /** The machine's QEMU-style command line. */
  readonly argv: readonly string[];
  /** The host it ran on (`HostConfig`, as JSON). */
  readonly host: unknown;
  /** `--inject` specifications, as given. */
  readonly inject: readonly string[];
  /** The cost model (`CostModel`), every parameter. */
  readonly costModel: Readonly<Record<string, number>>;
  /** The workload's options (informational: replay does not run the guest driver). */
  readonly workload: Readonly<Record<string, unknown>>;
  /**
   * Seeds of every pseudo-random generator the run used. `cmdqv run` uses none (the workload is
   * a fixed sequence); the field is there for runs that do.
   */
  readonly seeds: readonly number[];
  /** Node.js version (informational). */
  readonly node: string;
}

/** A recording file that cannot be read: the message names the problem. */
export class RecordingFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RecordingFormatError';
  }
}

/** Encode the header for `desc`. */
export function encodeHeader(desc: RunDescription): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(desc));
  const total = Math.ceil((HEADER_FIXED_BYTES + json.length) / 8) * 8;
  const out = new Uint8Array(total);
  out.set(new TextEncoder().encode(MAGIC), 0);
  const dv = new DataView(out.buffer);
  dv.setUint16(8, FORMAT_VERSION, true);
  dv.setUint16(10, RECORD_BYTES, true);
  dv.setUint32(12, json.length, true);
  out.set(json, HEADER_FIXED_BYTES);
  return out;
}

/**
 * Check the fixed header part (the first {@link HEADER_FIXED_BYTES} bytes) and return the JSON
 * length and the offset of the first record.
 * @throws RecordingFormatError naming what is wrong
 */
export function checkHeaderFixed(b: Uint8Array, fileBytes: number): { jsonBytes: number; dataOffset: number } {
  if (fileBytes < HEADER_FIXED_BYTES) throw new RecordingFormatError(`truncated: ${fileBytes} bytes is shorter than the ${HEADER_FIXED_BYTES}-byte header`);
  const magic = new TextDecoder('latin1').decode(b.subarray(0, 8));
  if (magic !== MAGIC) throw new RecordingFormatError(`not a cmdqv recording (magic ${JSON.stringify(magic)}, expected "${MAGIC}")`);
  const dv = new DataView(b.buffer, b.byteOffset, HEADER_FIXED_BYTES);
  const version = dv.getUint16(8, true);
  if (version !== FORMAT_VERSION) throw new RecordingFormatError(`format version ${version}; this cmdqv reads version ${FORMAT_VERSION}`);
  const size = dv.getUint16(10, true);
  if (size !== RECORD_BYTES) throw new RecordingFormatError(`record size ${size}; version ${FORMAT_VERSION} records are ${RECORD_BYTES} bytes`);
  const jsonBytes = dv.getUint32(12, true);
  if (jsonBytes > MAX_DESCRIPTION_BYTES) throw new RecordingFormatError(`run description of ${jsonBytes} bytes (corrupt length; at most ${MAX_DESCRIPTION_BYTES})`);
  const dataOffset = Math.ceil((HEADER_FIXED_BYTES + jsonBytes) / 8) * 8;
  if (fileBytes < dataOffset) throw new RecordingFormatError(`truncated: the header needs ${dataOffset} bytes, the file has ${fileBytes}`);
  return { jsonBytes, dataOffset };
}

/** The fields of a {@link RunDescription}: a description with others is not one this version wrote. */
const DESCRIPTION_FIELDS: ReadonlySet<string> = new Set(['format', 'cmdqv', 'argv', 'host', 'inject', 'costModel', 'workload', 'seeds', 'node']);

/**
 * Parse and check the run description.
 * @throws RecordingFormatError when it is not JSON or lacks a field replay needs
 */
export function decodeDescription(json: Uint8Array): RunDescription {
  let d: unknown;
  try {
    d = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(json));
  } catch (e) {
    throw new RecordingFormatError(`corrupt run description: ${(e as Error).message}`);
  }
  const o = d as Partial<RunDescription> | null;
  const bad = (what: string) => new RecordingFormatError(`corrupt run description: ${what}`);
  if (typeof o !== 'object' || o === null || o.format !== 'cmdqv-record') throw bad('not a cmdqv-record description');
  if (!Array.isArray(o.argv) || !o.argv.every((a) => typeof a === 'string')) throw bad('argv is not a list of strings');
  if (!Array.isArray(o.inject) || !o.inject.every((a) => typeof a === 'string')) throw bad('inject is not a list of strings');
  if (typeof o.costModel !== 'object' || o.costModel === null) throw bad('costModel missing');
  if (typeof o.host !== 'object' || o.host === null) throw bad('host missing');
  if (typeof o.cmdqv !== 'object' || o.cmdqv === null || typeof o.cmdqv.version !== 'string') throw bad('cmdqv version missing');
  if (o.cmdqv.commit !== undefined && typeof o.cmdqv.commit !== 'string') throw bad('cmdqv commit is not a string');
  if (Array.isArray(o.costModel)) throw bad('costModel is not an object');
  if (Array.isArray(o.host)) throw bad('host is not an object');
  if (typeof o.workload !== 'object' || o.workload === null || Array.isArray(o.workload)) throw bad('workload is not an object');
  if (!Array.isArray(o.seeds) || !o.seeds.every((x) => Number.isSafeInteger(x))) throw bad('seeds is not a list of integers');
  if (typeof o.node !== 'string') throw bad('node is not a string');
  const unknown = Object.keys(o).filter((k) => !DESCRIPTION_FIELDS.has(k));
  if (unknown.length) throw bad(`unknown field${unknown.length > 1 ? 's' : ''} ${unknown.slice(0, 4).map((k) => JSON.stringify(k.slice(0, 40))).join(', ')}`);
  return o as RunDescription;
}

/**
 * A chunk as written: its BLOCK record and payload for `records` (whole records), compressed
 * when `deflate` is set.
 */
export function encodeChunk(records: Uint8Array, deflate: boolean): { block: Uint8Array; payload: Uint8Array } {
  const payload = deflate ? deflateRawSync(records, { level: 1 }) : records;
  const block = new Uint8Array(RECORD_BYTES);
  const dv = new DataView(block.buffer);
  block[F_KIND] = K_BLOCK;
  block[F_FLAGS] = deflate ? FLAG_DEFLATE : 0;
  dv.setUint32(F_AUX, records.length / RECORD_BYTES, true);
  dv.setUint32(F_ADDR, payload.length, true);
  dv.setUint32(F_VALUE, crc32(records), true);
  return { block, payload };
}

/** What a BLOCK record announces. */
export interface ChunkInfo {
  readonly records: number;
  readonly payloadBytes: number;
  readonly deflate: boolean;
  readonly crc: number;
}

/**
 * Read a BLOCK record (`at` names its file offset in messages).
 * @throws RecordingFormatError when it is not one
 */
export function decodeBlock(b: Uint8Array, at: number): ChunkInfo {
  const dv = new DataView(b.buffer, b.byteOffset, RECORD_BYTES);
  if (b[F_KIND] !== K_BLOCK) throw new RecordingFormatError(`corrupt: expected a chunk header at byte ${at}, found record kind ${b[F_KIND]}`);
  const records = dv.getUint32(F_AUX, true);
  if (records === 0) throw new RecordingFormatError(`corrupt: empty chunk at byte ${at}`);
  if (records > MAX_CHUNK_RECORDS) throw new RecordingFormatError(`corrupt: the chunk at byte ${at} claims ${records} records (at most ${MAX_CHUNK_RECORDS})`);
  const payloadBytes = dv.getUint32(F_ADDR, true);
  const deflate = (b[F_FLAGS]! & FLAG_DEFLATE) !== 0;
  // Raw records are exactly their bytes; deflate never grows them by more than its block overhead.
  const most = deflate ? maxDeflatedBytes(records * RECORD_BYTES) : records * RECORD_BYTES;
  if (payloadBytes > most || (!deflate && payloadBytes !== most)) {
    throw new RecordingFormatError(`corrupt: the chunk at byte ${at} has a ${payloadBytes}-byte payload for ${records} records (${deflate ? 'at most' : 'exactly'} ${most})`);
  }
  return { records, payloadBytes, deflate, crc: dv.getUint32(F_VALUE, true) };
}

/**
 * A chunk's records from its payload, checked against the BLOCK record.
 * @param first index of its first record, for messages
 * @throws RecordingFormatError when the payload does not decompress or fails the CRC-32 check
 */
export function decodeChunk(info: ChunkInfo, payload: Uint8Array, at: number, first: number): Uint8Array {
  const span = `the chunk at byte ${at} (records ${first}..${first + info.records - 1})`;
  let records = payload;
  if (info.deflate) {
    // The inflated size is capped at what the chunk announces: a deflate bomb stops there.
    const want = info.records * RECORD_BYTES;
    try {
      records = inflateRawSync(payload, { maxOutputLength: want });
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'ERR_BUFFER_TOO_LARGE') throw new RecordingFormatError(`corrupt: ${span} inflates to more than its ${want} bytes`);
      throw new RecordingFormatError(`corrupt: ${span} does not decompress (${(e as Error).message})`);
    }
  }
  if (records.length !== info.records * RECORD_BYTES) throw new RecordingFormatError(`corrupt: ${span} holds ${records.length} bytes, not ${info.records} records`);
  if (crc32(records) !== info.crc) throw new RecordingFormatError(`corrupt: ${span} fails its CRC-32 check`);
  return records;
}

/** The largest raw-deflate stream of `n` bytes: stored blocks of at most 65535 bytes, 5 bytes of header each, plus slack. */
function maxDeflatedBytes(n: number): number {
  return n + 5 * Math.ceil(n / 65535 + 1) + 64;
}

/** The recording's CRC-32 is the kit's (zlib's where Node has it), shared with snapshot images. */
export { crc32, tableCrc32 };
