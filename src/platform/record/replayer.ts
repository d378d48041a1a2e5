/**
 * `cmdqv replay FILE`: rebuild the recorded machine and reproduce the run without the guest
 * driver model. The recorded accesses are re-issued in order through the guest's bus; the
 * recorded poll intervals and main-loop runs advance the clock; where the guest's interrupt
 * handler ran, the replay's handler re-issues what it did. Every value the machine returns — a
 * load, a DMA's outcome, a RAM read, the ACPI tables, an interrupt line's level change, the modelled time at
 * each record, the final counters — is compared with the recording; the first difference stops
 * the replay and is reported with the records before it.
 */

import type { HostConfig } from '../../host/config.js';
import type { GuestBus } from '../../kit/guest-seam.js';
import { parseCostModel, type CostModel } from '../cost-model.js';
import { FaultSpecError, parseFaultSpecs } from '../fault-injection.js';
import { Machine, OptionError, VIRT_RAM_BASE } from '../machine.js';
import { codeVersion } from './code-version.js';
import * as F from './format.js';
import { acpiTables, dmaAux2, dmaFlags, finalCounters } from './observations.js';
import { RecordingReader } from './reader.js';
import { addressName } from './register-names.js';

/** Options of {@link replayRecording}. */
export interface ReplayOptions {
  /** Build the machine from this command line instead of the recorded one (does the run hold there?). */
  readonly argv?: readonly string[];
  /** Use this cost model instead of the recorded one. */
  readonly costModel?: CostModel;
  /** Records shown before a divergence (default 8). */
  readonly context?: number;
}

/** The first difference between the replay and the recording. */
export interface Divergence {
  /** Index of the record (0 = the first after the header; chunk framing not counted). */
  readonly index: number;
  /** Modelled time the recording has at that record (ns). */
  readonly timeNs: number;
  /** The record's kind (`read32`, `irq-level`, `counter`...). */
  readonly kind: string;
  /** The guest-physical address or IOVA, and its name when the register tables know it. */
  readonly address: number | undefined;
  readonly where: string | undefined;
  readonly expected: string;
  readonly got: string;
  /** The records before it, oldest first, one line each. */
  readonly before: readonly string[];
}

/** How a replay went. */
export interface ReplayResult {
  readonly file: string;
  readonly description: F.RunDescription;
  /** Records replayed (up to and including a divergence). */
  readonly records: number;
  readonly counts: { accesses: number; advances: number; irqLevels: number; handlers: number; dmas: number; counters: number };
  /** Modelled time at the end of the replay (ns). */
  readonly modelNs: number;
  /**
   * The recorded run stopped with an exception, and the replay reproduced it: the machine threw
   * this in the access the recording stopped in, or the guest threw after the last record.
   */
  readonly failure: string | undefined;
  readonly divergence: Divergence | undefined;
}

/** Thrown inside the replay (possibly from a device's interrupt) to stop it at a divergence. */
class DivergenceStop extends Error {
  constructor(readonly divergence: Divergence) {
    super('divergence');
  }
}

/**
 * The longest clock advance a record may ask for: the guest's longest poll timeout (1 s,
 * src/guest/platform.ts). Timers fire during an advance (a readable fd re-dispatches every
 * main-loop iteration), so a file's advance must not set how long replay runs.
 */
const MAX_ADVANCE_NS = 1e9;

const hex = (n: number | bigint, digits = 8) => `0x${n.toString(16).padStart(digits, '0')}`;

/**
 * Replay `file`.
 * @throws RecordingFormatError when the file is not a valid recording (truncated, corrupt, other version)
 * @throws OptionError / FaultSpecError when the recorded machine cannot be built by this code
 */
export function replayRecording(file: string, opts: ReplayOptions = {}): ReplayResult {
  const reader = new RecordingReader(file);
  try {
    const d = reader.description;
    let costModel: CostModel;
    try {
      costModel = opts.costModel ?? parseCostModel(d.costModel, 'the recorded cost model');
    } catch (e) {
      // A parameter this code does not know (a recording from another version) or a bad value.
      throw new F.RecordingFormatError((e as Error).message);
    }
    const m = buildMachine(d, opts.argv, costModel);
    try {
      return new Replay(m, reader, opts.context ?? 8).run();
    } finally {
      m.close();
    }
  } finally {
    reader.close();
  }
}

/** Host devices and SMMUs a recorded host may declare (the default host has 2 and 1). */
const MAX_HOST_DEVICES = 256;
const MAX_HOST_SMMUS = 16;

/**
 * The recorded machine (or the one `argv` describes) on the recorded host. The recording's
 * host is checked for shape before anything is built from it; whatever else the host or the
 * machine refuses is the file's problem (an {@link OptionError} / {@link FaultSpecError} from
 * the recorded options passes as it is, for the CLI to name).
 */
function buildMachine(d: F.RunDescription, argv: readonly string[] | undefined, costModel: CostModel): Machine {
  const host = d.host as Partial<Record<keyof HostConfig, unknown>>;
  const bad = (what: string) => new F.RecordingFormatError(`the recorded host cannot be built: ${what}`);
  if (!Array.isArray(host.smmus) || host.smmus.length > MAX_HOST_SMMUS || !host.smmus.every((s) => typeof s === 'object' && s !== null && Array.isArray((s as { idr?: unknown }).idr))) {
    throw bad(`smmus must be a list of at most ${MAX_HOST_SMMUS} SMMUs, each with its idr registers`);
  }
  if (!Array.isArray(host.devices) || host.devices.length > MAX_HOST_DEVICES || !host.devices.every((x) => typeof x === 'object' && x !== null)) {
    throw bad(`devices must be a list of at most ${MAX_HOST_DEVICES} devices`);
  }
  for (const k of ['ramBytes', 'pageSize', 'hugepageSize'] as const) if (typeof host[k] !== 'number') throw bad(`${k} is not a number`);
  if (typeof host.hugepages !== 'boolean') throw bad('hugepages is not true or false');
  if ((host.hugepageSize as number) > (host.ramBytes as number)) throw bad(`hugepageSize ${host.hugepageSize} exceeds ramBytes ${host.ramBytes}`);
  const inject = d.inject.flatMap((s) => parseFaultSpecs(s));
  try {
    return Machine.create(argv ?? d.argv, {
      host: d.host as HostConfig,
      inject,
      costModel,
      // The recording holds the firmware's accesses too.
      firmware: false,
    });
  } catch (e) {
    if (e instanceof OptionError || e instanceof FaultSpecError || e instanceof F.RecordingFormatError) throw e;
    throw bad((e as Error).message);
  }
}

/** One replay of a recording on a machine. */
class Replay {
  private readonly bus: GuestBus;
  private readonly counts = { accesses: 0, advances: 0, irqLevels: 0, handlers: 0, dmas: 0, counters: 0 };
  /** The last records started (raw bytes), for the divergence report. */
  private readonly ring: Uint8Array;
  private readonly ringIndex: Float64Array;
  private ringNext = 0;
  /** Index of the innermost record being replayed (where an exception from the machine belongs). */
  private current = -1;
  private currentOpen = false;
  private ended = false;
  private counters: Map<number, number> | undefined;
  /** aux of the last record stepped (which line an IRQ_EXIT is for). */
  private lastAux = 0;
  /** The recording's END says the run stopped with an exception after its last record. */
  private recordedFailure = false;
  /** Where the replay's machine has guest RAM (RAM records outside it diverge). */
  private readonly ram: { readonly ramBase: number; readonly ramSize: number };

  constructor(
    private readonly m: Machine,
    private readonly r: RecordingReader,
    private readonly context: number,
  ) {
    this.bus = m.guestPlatform().bus;
    this.ram = { ramBase: VIRT_RAM_BASE, ramSize: m.ramBytes };
    // The context plus the record that diverges (it is remembered before it is checked).
    this.ring = new Uint8Array((context + 1) * F.RECORD_BYTES);
    this.ringIndex = new Float64Array(context + 1).fill(-1);
    for (const [gsiv, line] of m.irqs) line.onLevel = (up) => this.level(gsiv, up);
  }

  run(): ReplayResult {
    let divergence: Divergence | undefined;
    let failure: string | undefined;
    try {
      while (!this.ended) {
        const kind = this.step();
        if (kind === F.K_IRQ_EXIT) this.diverge(this.r.index - 1, 'an interrupt handler returning', 'no handler running');
      }
      this.r.checkAtEnd();
    } catch (e) {
      if (e instanceof DivergenceStop) divergence = e.divergence;
      else if (e instanceof F.RecordingFormatError) throw e;
      else if (this.currentOpen) failure = (e as Error).message; // the recorded access never returned either
      else divergence = this.exceptionDivergence(e as Error);
    }
    if (this.recordedFailure) failure = 'the recorded run stopped with an exception in the guest or the workload after its last record';
    return {
      file: this.r.file,
      description: this.r.description,
      records: this.r.index,
      counts: this.counts,
      modelNs: this.m.clock.now,
      failure,
      divergence,
    };
  }

  /** Replay the next record; returns its kind. */
  private step(): number {
    const r = this.r;
    const p = r.next();
    const index = r.index - 1;
    // Nested records (an interrupt handler inside this access) may load the next chunk: keep this one.
    const buf = r.buf;
    const dv = r.dv;
    const kind = buf[p + F.F_KIND]!;
    const flags = buf[p + F.F_FLAGS]!;
    const aux = dv.getUint32(p + F.F_AUX, true);
    const addr = dv.getUint32(p + F.F_ADDR, true) + dv.getUint32(p + F.F_ADDR + 4, true) * 0x1_0000_0000;
    this.lastAux = aux;
    this.remember(p, index);
    if (kind !== F.K_COUNTER && kind !== F.K_END) this.checkTime(buf, p, index);
    // An exception from the machine belongs to the innermost record still running.
    const prev = this.current;
    const prevOpen = this.currentOpen;
    this.current = index;
    this.currentOpen = (flags & F.FLAG_OPEN) !== 0;
    const c = this.counts;
    switch (kind) {
      case F.K_READ32: {
        const want = dv.getUint32(p + F.F_VALUE, true);
        const got = this.bus.read32(addr) >>> 0;
        if (!(flags & F.FLAG_OPEN) && got !== want) this.diverge(index, hex(want), hex(got), buf, p);
        c.accesses++;
        break;
      }
      case F.K_WRITE32:
        this.bus.write32(addr, dv.getUint32(p + F.F_VALUE, true));
        c.accesses++;
        break;
      case F.K_READ64: {
        const want = dv.getBigUint64(p + F.F_VALUE, true);
        const got = BigInt.asUintN(64, this.bus.read64(addr));
        if (!(flags & F.FLAG_OPEN) && got !== want) this.diverge(index, hex(want, 16), hex(got, 16), buf, p);
        c.accesses++;
        break;
      }
      case F.K_WRITE64:
        this.bus.write64(addr, dv.getBigUint64(p + F.F_VALUE, true));
        c.accesses++;
        break;
      case F.K_ADVANCE: {
        const ns = dv.getFloat64(p + F.F_VALUE, true);
        if (!(ns >= 0 && ns <= MAX_ADVANCE_NS)) throw new F.RecordingFormatError(`corrupt: record ${index} advances the clock by ${ns} ns (at most ${MAX_ADVANCE_NS})`);
        this.m.clock.advance(ns);
        c.advances++;
        break;
      }
      case F.K_IRQ_HANDLER: {
        const line = this.m.irqs.get(aux);
        if (!line) this.diverge(index, `interrupt line GSIV ${aux}`, 'no such line on this machine', buf, p);
        line!.onRaise = flags & 1 ? () => this.handler(aux) : undefined;
        break;
      }
      case F.K_IRQ_LEVEL:
        this.diverge(index, `GSIV ${aux} going ${flags & F.FLAG_LEVEL ? 'high' : 'low'}`, 'the line kept its level', buf, p);
        break;
      case F.K_IRQ_ENTER:
        this.diverge(index, `the guest's handler of GSIV ${aux} running`, 'the line did not fire', buf, p);
        break;
      case F.K_IRQ_EXIT:
        break;
      case F.K_DMA_READ:
      case F.K_DMA_WRITE:
        this.dma(buf, p, index, kind, aux, addr, flags);
        c.dmas++;
        break;
      case F.K_RAM_READ: {
        this.checkRamRange(index, aux, addr, buf, p);
        const got = this.m.readRam(addr, aux);
        const [want, have] = [recordData(buf, p), dataText(got)];
        if (!(flags & F.FLAG_OPEN) && want !== have) this.diverge(index, want, have, buf, p);
        c.accesses++;
        break;
      }
      case F.K_RAM_WRITE:
        this.checkRamRange(index, dataLength(buf, p), addr, buf, p);
        this.m.writeRam(addr, buf.slice(p + F.F_VALUE, p + F.F_VALUE + dataLength(buf, p)));
        c.accesses++;
        break;
      case F.K_ACPI: {
        const want = dv.getUint32(p + F.F_VALUE, true);
        const got = acpiTables(this.m.acpi);
        if (got.crc !== want || got.bytes !== aux) this.diverge(index, `${aux} bytes, CRC-32 ${hex(want)}`, `${got.bytes} bytes, CRC-32 ${hex(got.crc)}`, buf, p);
        break;
      }
      case F.K_COUNTER: {
        this.counters ??= new Map(finalCounters(this.m));
        const want = dv.getFloat64(p + F.F_VALUE, true);
        const got = this.counters.get(aux);
        if (got !== want) this.diverge(index, `${F.counterName(aux)} = ${want}`, got === undefined ? 'no such counter' : `${got}`, buf, p);
        c.counters++;
        break;
      }
      case F.K_END:
        if (aux !== index) throw new F.RecordingFormatError(`corrupt: END says ${aux} records, ${index} came before it`);
        // The guest or the workload threw (an access the machine threw in would have stopped us).
        this.recordedFailure = (flags & F.FLAG_FAILED) !== 0;
        this.ended = true;
        break;
    }
    // The recorded access never returned (the run stopped in it); here it did.
    if (this.currentOpen) this.diverge(index, 'the access throwing (the recorded run stopped in it)', 'it completed', buf, p);
    this.current = prev;
    this.currentOpen = prevOpen;
    return kind;
  }

  /** A line changed level on the replay's machine: the recording must have the same change next. */
  private level(gsiv: number, up: boolean): void {
    const r = this.r;
    const p = r.next();
    const index = r.index - 1;
    this.remember(p, index);
    const got = `GSIV ${gsiv} going ${up ? 'high' : 'low'}`;
    const kind = r.buf[p + F.F_KIND]!;
    const aux = r.dv.getUint32(p + F.F_AUX, true);
    const flags = r.buf[p + F.F_FLAGS]!;
    if (kind !== F.K_IRQ_LEVEL || aux !== gsiv || ((flags & F.FLAG_LEVEL) !== 0) !== up) this.diverge(index, describeRecord(this.m, r.buf, p), got, r.buf, p);
    this.checkTime(r.buf, p, index);
    this.counts.irqLevels++;
  }

  /** The guest's handler of `gsiv` ran here in the recording: re-issue what it did, up to its return. */
  private handler(gsiv: number): void {
    const r = this.r;
    const p = r.next();
    const index = r.index - 1;
    this.remember(p, index);
    if (r.buf[p + F.F_KIND] !== F.K_IRQ_ENTER || r.dv.getUint32(p + F.F_AUX, true) !== gsiv) {
      this.diverge(index, describeRecord(this.m, r.buf, p), `the guest's handler of GSIV ${gsiv} running`, r.buf, p);
    }
    this.checkTime(r.buf, p, index);
    this.counts.handlers++;
    for (;;) {
      const kind = this.step();
      if (kind === F.K_IRQ_EXIT) break;
      if (kind === F.K_END) throw new F.RecordingFormatError(`corrupt: the END record (record ${r.index - 1}) comes inside the handler of GSIV ${gsiv}`);
    }
    if (this.lastAux !== gsiv) this.diverge(r.index - 1, `the handler of GSIV ${this.lastAux} returning`, `the handler of GSIV ${gsiv} returning`);
  }

  private dma(buf: Uint8Array, p: number, index: number, kind: number, aux: number, iova: number, flags: number): void {
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const dev = this.m.host.devices[aux & 0xfff];
    if (!dev) this.diverge(index, `host device ${aux & 0xfff}`, 'no such device on this host', buf, p);
    const len = dataLength(buf, p);
    if (len > F.MAX_DATA_BYTES) throw new F.RecordingFormatError(`corrupt: record ${index} is a DMA of ${len} bytes (at most ${F.MAX_DATA_BYTES})`);
    const ssid = aux >>> 12;
    const res = kind === F.K_DMA_READ ? dev!.dmaRead(iova, len, ssid) : dev!.dmaWrite(iova, buf.slice(p + F.F_VALUE, p + F.F_VALUE + len), ssid);
    if (flags & F.FLAG_OPEN) return;
    const wantFlags = flags & (F.FLAG_DMA_OK | F.FLAG_DMA_MASTER_ABORT | F.FLAG_DMA_IOTLB_HIT);
    const wantAux2 = dv.getUint16(p + F.F_AUX2, true);
    const outcome = (fl: number, a2: number) => `${fl & F.FLAG_DMA_OK ? 'ok' : fl & F.FLAG_DMA_MASTER_ABORT ? 'master abort' : `fault (event 0x${(a2 >> 8).toString(16)})`}${fl & F.FLAG_DMA_IOTLB_HIT ? ', IOTLB hit' : ''}`;
    const gotFlags = dmaFlags(res);
    const gotAux2 = dmaAux2(len, res);
    if (gotFlags !== wantFlags || gotAux2 !== wantAux2) this.diverge(index, outcome(wantFlags, wantAux2), outcome(gotFlags, gotAux2), buf, p);
    if (kind === F.K_DMA_READ && res.data) {
      const want = recordData(buf, p);
      const got = dataText(res.data);
      if (want !== got) this.diverge(index, want, got, buf, p);
    }
  }

  /**
   * A RAM record's length is capped (replay allocates it); a range outside guest RAM that the
   * recording says completed is a divergence (the replay's machine refuses it).
   */
  private checkRamRange(index: number, length: number, gpa: number, buf: Uint8Array, p: number): void {
    if (length > F.MAX_DATA_BYTES) throw new F.RecordingFormatError(`corrupt: record ${index} is a RAM access of ${length} bytes (at most ${F.MAX_DATA_BYTES})`);
    const { ramBase, ramSize } = this.ram;
    if (gpa >= ramBase && gpa + length <= ramBase + ramSize) return;
    if (buf[p + F.F_FLAGS]! & F.FLAG_OPEN) return; // the recorded access threw too: the machine's own error reproduces it
    this.diverge(index, 'the RAM access completing', `[${hex(gpa, 1)}, ${hex(gpa + length, 1)}) is outside guest RAM [${hex(ramBase, 1)}, ${hex(ramBase + ramSize, 1)})`, buf, p);
  }

  /** The modelled time at each record is part of what the guest sees (its polls time out by it). */
  private checkTime(buf: Uint8Array, p: number, index: number): void {
    const want = new DataView(buf.buffer, buf.byteOffset, buf.byteLength).getFloat64(p + F.F_TIME, true);
    const got = this.m.clock.now;
    if (got !== want) this.diverge(index, `modelled time ${want} ns`, `${got} ns`, buf, p);
  }

  private remember(p: number, index: number): void {
    const slot = this.ringNext;
    this.ring.set(this.r.buf.subarray(p, p + F.RECORD_BYTES), slot * F.RECORD_BYTES);
    this.ringIndex[slot] = index;
    this.ringNext = (slot + 1) % this.ringIndex.length;
  }

  /** Stop: the record at `index` (bytes at `p` of chunk `buf`, when it is one) differs. */
  private diverge(index: number, expected: string, got: string, buf?: Uint8Array, p = 0): never {
    const before: string[] = [];
    const n = this.ringIndex.length;
    for (let k = 0; k < n; k++) {
      const slot = (this.ringNext + k) % n;
      const i = this.ringIndex[slot]!;
      if (i < 0 || i >= index) continue;
      before.push(`#${i} ${describeRecord(this.m, this.ring, slot * F.RECORD_BYTES)}`);
    }
    let kind = 'record';
    let timeNs = this.m.clock.now;
    let address: number | undefined;
    let where: string | undefined;
    if (buf) {
      const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
      const k = buf[p + F.F_KIND]!;
      kind = F.kindName(k) ?? kind;
      timeNs = dv.getFloat64(p + F.F_TIME, true);
      if (hasAddress(k)) {
        address = dv.getUint32(p + F.F_ADDR, true) + dv.getUint32(p + F.F_ADDR + 4, true) * 0x1_0000_0000;
        where = k === F.K_DMA_READ || k === F.K_DMA_WRITE ? 'IOVA' : addressName(this.m, address);
      }
    }
    throw new DivergenceStop({ index, timeNs, kind, address, where, expected, got, before: before.slice(-this.context) });
  }

  private exceptionDivergence(e: Error): Divergence {
    try {
      this.diverge(this.current, 'the access completing', `the machine threw ${e.name}: ${e.message}`);
    } catch (stop) {
      if (stop instanceof DivergenceStop) return stop.divergence;
      throw stop;
    }
  }
}

function hasAddress(kind: number): boolean {
  return kind === F.K_READ32 || kind === F.K_WRITE32 || kind === F.K_READ64 || kind === F.K_WRITE64 || kind === F.K_DMA_READ || kind === F.K_DMA_WRITE || kind === F.K_RAM_READ || kind === F.K_RAM_WRITE;
}

/** Bytes of data a DMA or RAM record is about (inline: aux2; hashed: the value's high word). */
function dataLength(buf: Uint8Array, p: number): number {
  const dv = new DataView(buf.buffer, buf.byteOffset);
  return buf[p + F.F_FLAGS]! & F.FLAG_HASHED ? dv.getUint32(p + F.F_VALUE + 4, true) : dv.getUint16(p + F.F_AUX2, true) & 0xff;
}

/** The data a record holds, as {@link dataText} shows replayed data. */
function recordData(buf: Uint8Array, p: number): string {
  if (buf[p + F.F_FLAGS]! & F.FLAG_HASHED) return `CRC-32 ${hex(new DataView(buf.buffer, buf.byteOffset).getUint32(p + F.F_VALUE, true))}`;
  return dataText(buf.subarray(p + F.F_VALUE, p + F.F_VALUE + dataLength(buf, p)));
}

function dataText(b: Uint8Array): string {
  if (b.length > F.INLINE_DATA_BYTES) return `CRC-32 ${hex(F.crc32(b))}`;
  return `[${[...b].map((x) => x.toString(16).padStart(2, '0')).join(' ')}]`;
}

/** One line for the record at byte `p` of `buf`: time, kind, address and its name, value. */
export function describeRecord(m: Machine, buf: Uint8Array, p: number): string {
  const dv = new DataView(buf.buffer, buf.byteOffset);
  const kind = buf[p + F.F_KIND]!;
  const flags = buf[p + F.F_FLAGS]!;
  const aux = dv.getUint32(p + F.F_AUX, true);
  const addr = dv.getUint32(p + F.F_ADDR, true) + dv.getUint32(p + F.F_ADDR + 4, true) * 0x1_0000_0000;
  const time = `@${dv.getFloat64(p + F.F_TIME, true)} ns`;
  const at = `0x${addr.toString(16)} (${addressName(m, addr)})`;
  const data = () => recordData(buf, p);
  const name = F.kindName(kind) ?? `kind ${kind}`;
  switch (kind) {
    case F.K_READ32:
    case F.K_WRITE32:
      return `${time} ${name} ${at} ${kind === F.K_READ32 ? '->' : '='} ${hex(dv.getUint32(p + F.F_VALUE, true))}`;
    case F.K_READ64:
    case F.K_WRITE64:
      return `${time} ${name} ${at} ${kind === F.K_READ64 ? '->' : '='} ${hex(dv.getBigUint64(p + F.F_VALUE, true), 16)}`;
    case F.K_ADVANCE:
      return `${time} ${name} ${dv.getFloat64(p + F.F_VALUE, true)} ns`;
    case F.K_IRQ_LEVEL:
      return `${time} ${name} GSIV ${aux} (${m.irqs.get(aux)?.name ?? '?'}) ${flags & F.FLAG_LEVEL ? 'high' : 'low'}`;
    case F.K_IRQ_HANDLER:
      return `${time} ${name} GSIV ${aux} ${flags & 1 ? 'installed' : 'removed'}`;
    case F.K_IRQ_ENTER:
    case F.K_IRQ_EXIT:
      return `${time} ${name} GSIV ${aux}`;
    case F.K_DMA_READ:
    case F.K_DMA_WRITE:
      return `${time} ${name} device ${aux & 0xfff} IOVA 0x${addr.toString(16)} ${data()} ${flags & F.FLAG_DMA_OK ? 'ok' : 'fault'}`;
    case F.K_RAM_READ:
    case F.K_RAM_WRITE:
      return `${time} ${name} ${at} ${data()}`;
    case F.K_COUNTER:
      return `${name} ${F.counterName(aux)} = ${dv.getFloat64(p + F.F_VALUE, true)}`;
    case F.K_ACPI:
      return `${time} ${name} ${aux} bytes, CRC-32 ${hex(dv.getUint32(p + F.F_VALUE, true))}`;
    default:
      return name;
  }
}

/** The recording and the running code, when they differ (a divergence may come from that). */
export function versionNote(d: F.RunDescription): string | undefined {
  const now = codeVersion();
  const same = d.cmdqv.version === now.version && d.cmdqv.commit === now.commit;
  if (same) return undefined;
  const v = (x: { version: string; commit?: string }) => `cmdqv ${x.version}${x.commit ? ` (${x.commit.slice(0, 12)})` : ''}`;
  return `recorded with ${v(d.cmdqv)}, replayed with ${v(now)}`;
}
