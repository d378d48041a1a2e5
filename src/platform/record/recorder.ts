/**
 * `cmdqv run --record FILE`: records every guest-visible input of a run, and what the machine
 * answered, as it happens, into a recording file (format.ts) that `cmdqv replay` reproduces.
 *
 * What is recorded, at the seams the guest and the workload use:
 * - every load and store the guest makes through its {@link GuestBus} (MMIO that traps, the
 *   mapped VINTF page0, and guest RAM: rings, page tables, STEs) with the value a load returned;
 * - the modelled time the guest lets pass (each poll interval) and each run of the VMM's main
 *   loop: the clock's `advance` calls, which fire the machine's timers;
 * - each read of the ACPI tables (their size and CRC-32);
 * - interrupts: every level change of every line, and the guest's handlers (installed, entered,
 *   returned), so what a handler did is nested where it ran;
 * - the device DMA the workload triggers (IOVA, bytes, outcome) and its RAM reads outside the bus;
 * - at the end, the machine's counters (exits, ioctls, interrupts, errors logged, time...).
 *
 * What it deliberately leaves out, and why:
 * - The guest's own computation (which commands it builds, which buffers it picks): replay needs
 *   only what crossed the seam, so a recording replays without the guest driver model, and a
 *   change in the guest driver cannot hide a change in the machine.
 * - The ACPI tables' bytes: they are an output of the machine's options; each time the guest
 *   reads them only their size and CRC-32 are kept (and compared on replay).
 * - Host internals (host physical addresses, IOTLB contents, queue ids): not guest-visible; a
 *   change there shows as a different value the guest reads, or it does not matter to the guest.
 * - Wall-clock time and the trace sinks' output: neither is an input; recording the same run
 *   twice gives the same file.
 * - Other VMs on a shared host: replay builds a fresh host from the recorded description, so
 *   what they did to the host is not reproduced (it is not this guest's input).
 *
 * Cost: without `--record` nothing is installed (the machine's {@link Machine.guestView} is
 * unset). With it, each access is one extra call writing 32 bytes into a preallocated buffer
 * (no allocation); full buffers are appended to the file, so a run of any length holds at most
 * one buffer (2 MiB) in memory.
 */

import { closeSync, openSync, writeSync } from 'node:fs';
import type { GuestBus, GuestPlatform } from '../../kit/guest-seam.js';
import type { IrqLine } from '../../kit/irq.js';
import type { DmaResult } from '../../host/kernel/host-device.js';
import type { Machine } from '../machine.js';
import { acpiTables, dmaAux2, dmaFlags, finalCounters } from './observations.js';
import * as F from './format.js';

/** Records per chunk written to the file (2 MiB). */
const CHUNK_RECORDS = 1 << 16;

/** What a finished recording holds. */
export interface RecordingSummary {
  readonly file: string;
  /** Records, END included (chunk framing excluded). */
  readonly records: number;
  readonly bytes: number;
}

/** Records a run into a file; see the module comment. */
export class Recorder {
  private fd: number;
  private buf: Uint8Array;
  private dv: DataView;
  /** Next free slot in the buffer. */
  private pos = 0;
  /** Records before the buffer's first one. */
  private flushed = 0;
  /** Reads (and DMAs) in progress: their values are filled in when they return. */
  private open = 0;
  private bytes = 0;
  private clock: { readonly now: number } = { now: 0 };
  private readonly undo: (() => void)[] = [];
  private finished = false;

  /**
   * Create the file and write the header.
   * @param deflate compress each chunk (default); off, the records are stored as they are
   * @throws the file system's error when the file cannot be created
   */
  constructor(
    readonly file: string,
    desc: F.RunDescription,
    private readonly deflate = true,
  ) {
    this.buf = new Uint8Array(CHUNK_RECORDS * F.RECORD_BYTES);
    this.dv = new DataView(this.buf.buffer);
    this.fd = openSync(file, 'w');
    this.put(F.encodeHeader(desc));
  }

  /**
   * Interpose on `m`'s guest-visible seams (pass as `Machine.create`'s `attach`, so the
   * firmware's accesses are recorded too).
   * @throws Error when a line already has a handler (it would not be the guest's)
   */
  attach(m: Machine): void {
    this.clock = m.clock;
    m.guestView = (p) => this.wrapPlatform(p);
    this.undo.push(() => (m.guestView = undefined));
    const clock = m.clock;
    const advance = clock.advance;
    clock.advance = (ns: number) => {
      const p = this.event(F.K_ADVANCE, 0, 0, 0);
      this.dv.setFloat64(p + F.F_VALUE, ns, true);
      advance.call(clock, ns);
    };
    this.undo.push(() => Reflect.deleteProperty(clock, 'advance'));
    for (const [gsiv, line] of m.irqs) this.watchLine(gsiv, line);
    m.host.devices.forEach((dev, index) => {
      const { dmaRead, dmaWrite } = dev;
      dev.dmaRead = (iova, len, ssid = 0) => {
        const s = this.begin(F.K_DMA_READ, index | (ssid << 12), iova);
        // A long read's length must survive a fault (no data comes back to record it with).
        if (len > F.INLINE_DATA_BYTES) this.putData(s, EMPTY, len);
        let r: DmaResult;
        try {
          r = dmaRead.call(dev, iova, len, ssid);
        } finally {
          this.open--;
        }
        return this.dmaDone(s, len, r);
      };
      dev.dmaWrite = (iova, data, ssid = 0) => {
        checkInline(data, 'DMA write');
        const s = this.begin(F.K_DMA_WRITE, index | (ssid << 12), iova);
        this.putData(s, data);
        let r: DmaResult;
        try {
          r = dmaWrite.call(dev, iova, data, ssid);
        } finally {
          this.open--;
        }
        return this.dmaDone(s, data.length, r);
      };
      // The result-less forms go through the recorded ones above.
      dev.dmaWriteOk = (iova, data, ssid = 0) => dev.dmaWrite(iova, data, ssid).ok;
      dev.dmaReadOk = (iova, len, ssid = 0) => dev.dmaRead(iova, len, ssid).ok;
      this.undo.push(() => {
        Reflect.deleteProperty(dev, 'dmaRead');
        Reflect.deleteProperty(dev, 'dmaWrite');
        Reflect.deleteProperty(dev, 'dmaWriteOk');
        Reflect.deleteProperty(dev, 'dmaReadOk');
      });
    });
    this.watchAcpi(m);
    const { readRam, writeRam } = m;
    m.readRam = (gpa, length, into) => {
      const s = this.begin(F.K_RAM_READ, length, gpa);
      let out: Uint8Array;
      try {
        out = readRam.call(m, gpa, length, into);
      } finally {
        this.open--;
      }
      this.putData(s, out);
      this.close(s);
      return out;
    };
    m.writeRam = (gpa, data) => {
      checkInline(data, 'RAM write');
      this.putData(this.event(F.K_RAM_WRITE, data.length, gpa, 0), data);
      writeRam.call(m, gpa, data);
    };
    this.undo.push(() => {
      Reflect.deleteProperty(m, 'readRam');
      Reflect.deleteProperty(m, 'writeRam');
    });
  }

  /**
   * End the recording: the machine's final counters, the END record, the last chunk; the
   * machine's seams are restored.
   * @param failed the run stopped with an exception (replay then expects to stop there too)
   */
  finish(m: Machine, failed = false): RecordingSummary {
    if (this.finished) throw new Error('recording already finished');
    this.finished = true;
    for (let i = this.undo.length - 1; i >= 0; i--) this.undo[i]!();
    this.open = 0;
    for (const [id, value] of finalCounters(m)) {
      const p = this.event(F.K_COUNTER, id, 0, 0);
      this.dv.setFloat64(p + F.F_VALUE, value, true);
    }
    const records = this.flushed + this.pos;
    this.event(F.K_END, records, 0, failed ? F.FLAG_FAILED : 0);
    this.flush();
    this.closeFile();
    return { file: this.file, records: records + 1, bytes: this.bytes };
  }

  /** Close the file without finishing (the run could not start). */
  abandon(): void {
    if (this.finished) return;
    this.finished = true;
    for (let i = this.undo.length - 1; i >= 0; i--) this.undo[i]!();
    this.closeFile();
  }

  /**
   * Views of the guest's bus handed out while recording stay wrapped; what they record after
   * the end is dropped (the file is closed).
   */
  private closeFile(): void {
    closeSync(this.fd);
    this.fd = -1;
  }

  // ----------------------------------------------------------------------------------------
  // The guest's view

  private wrapPlatform(p: GuestPlatform): GuestPlatform {
    return { ...p, bus: this.wrapBus(p.bus) };
  }

  private wrapBus(b: GuestBus): GuestBus {
    // Closures made once per platform view, not per access.
    return {
      read32: (a) => {
        const s = this.begin(F.K_READ32, 0, a);
        let v: number;
        try {
          v = b.read32(a);
        } finally {
          this.open--;
        }
        this.dv.setUint32(s + F.F_VALUE, v >>> 0, true);
        this.close(s);
        return v;
      },
      write32: (a, v) => {
        const s = this.event(F.K_WRITE32, 0, a, 0);
        this.dv.setUint32(s + F.F_VALUE, v >>> 0, true);
        b.write32(a, v);
      },
      read64: (a) => {
        const s = this.begin(F.K_READ64, 0, a);
        let v: bigint;
        try {
          v = b.read64(a);
        } finally {
          this.open--;
        }
        this.dv.setBigUint64(s + F.F_VALUE, BigInt.asUintN(64, v), true);
        this.close(s);
        return v;
      },
      write64: (a, v) => {
        const s = this.event(F.K_WRITE64, 0, a, 0);
        this.dv.setBigUint64(s + F.F_VALUE, BigInt.asUintN(64, v), true);
        b.write64(a, v);
      },
    };
  }

  /** Each read of the ACPI tables (the getter of the machine's class, wrapped on this instance). */
  private watchAcpi(m: Machine): void {
    let proto: object | null = Object.getPrototypeOf(m);
    while (proto && !Object.hasOwn(proto, 'acpi')) proto = Object.getPrototypeOf(proto);
    const get = proto && Object.getOwnPropertyDescriptor(proto, 'acpi')?.get;
    if (!get) return;
    Object.defineProperty(m, 'acpi', {
      configurable: true,
      get: () => {
        const tables = get.call(m) as Machine['acpi'];
        const t = acpiTables(tables);
        const p = this.event(F.K_ACPI, t.bytes, 0, 0);
        this.dv.setUint32(p + F.F_VALUE, t.crc, true);
        return tables;
      },
    });
    this.undo.push(() => Reflect.deleteProperty(m, 'acpi'));
  }

  /** Level changes of `line`, and the guest's handler of it (installed, entered, returned). */
  private watchLine(gsiv: number, line: IrqLine): void {
    if (line.onRaise) throw new Error(`cannot record: interrupt line ${line.name} (GSIV ${gsiv}) already has a handler`);
    const level = line.onLevel;
    line.onLevel = (up) => {
      this.event(F.K_IRQ_LEVEL, gsiv, 0, up ? F.FLAG_LEVEL : 0);
      level?.(up);
    };
    let handler: (() => void) | undefined;
    let wrapped: (() => void) | undefined;
    Object.defineProperty(line, 'onRaise', {
      configurable: true,
      enumerable: true,
      get: () => wrapped,
      set: (fn: (() => void) | undefined) => {
        this.event(F.K_IRQ_HANDLER, gsiv, 0, fn ? 1 : 0);
        handler = fn;
        wrapped = fn && (() => {
          this.event(F.K_IRQ_ENTER, gsiv, 0, 0);
          try {
            fn();
          } finally {
            this.event(F.K_IRQ_EXIT, gsiv, 0, 0);
          }
        });
      },
    });
    this.undo.push(() => {
      line.onLevel = level;
      // The guest's own handler again, as a plain property.
      Object.defineProperty(line, 'onRaise', { configurable: true, enumerable: true, writable: true, value: handler });
    });
  }

  /** A DMA returned: its outcome (and a read's data) into its record, which is no longer open. */
  private dmaDone(s: number, len: number, r: DmaResult): DmaResult {
    if (r.data) this.putData(s, r.data);
    this.buf[s + F.F_FLAGS] = dmaFlags(r) | (this.buf[s + F.F_FLAGS]! & F.FLAG_HASHED);
    this.dv.setUint16(s + F.F_AUX2, dmaAux2(len, r), true);
    return r;
  }

  // ----------------------------------------------------------------------------------------
  // The buffer

  /** Append a complete record; returns its byte offset in the buffer. */
  private event(kind: number, aux: number, addr: number, flags: number): number {
    if (this.pos * F.RECORD_BYTES === this.buf.length) this.spill();
    const p = this.pos++ * F.RECORD_BYTES;
    const dv = this.dv;
    this.buf[p + F.F_KIND] = kind;
    this.buf[p + F.F_FLAGS] = flags;
    dv.setUint16(p + F.F_AUX2, 0, true);
    dv.setUint32(p + F.F_AUX, aux, true);
    dv.setUint32(p + F.F_ADDR, addr >>> 0, true);
    dv.setUint32(p + F.F_ADDR + 4, Math.floor(addr / 0x1_0000_0000), true);
    dv.setBigUint64(p + F.F_VALUE, 0n, true);
    dv.setFloat64(p + F.F_TIME, this.clock.now, true);
    return p;
  }

  /** Append a record whose value is filled in when the access returns ({@link close}). */
  private begin(kind: number, aux: number, addr: number): number {
    const p = this.event(kind, aux, addr, F.FLAG_OPEN);
    this.open++;
    return p;
  }

  private close(p: number): void {
    this.buf[p + F.F_FLAGS] = this.buf[p + F.F_FLAGS]! & ~F.FLAG_OPEN;
  }

  /**
   * Data into the value field: up to 8 bytes as they are (their length in aux2), longer data as
   * its CRC-32 and its length (value's low and high words).
   */
  private putData(p: number, data: Uint8Array, length = data.length): void {
    if (length > F.INLINE_DATA_BYTES) {
      this.buf[p + F.F_FLAGS] = this.buf[p + F.F_FLAGS]! | F.FLAG_HASHED;
      this.dv.setUint32(p + F.F_VALUE, F.crc32(data), true);
      this.dv.setUint32(p + F.F_VALUE + 4, length, true);
      return;
    }
    this.dv.setUint16(p + F.F_AUX2, data.length, true);
    this.buf.set(data, p + F.F_VALUE);
  }

  /**
   * The buffer is full. Outside any access every record is complete: write them out. Inside a
   * read (an interrupt handler running in it), the read's value is still to come: grow instead.
   */
  private spill(): void {
    if (this.open === 0) {
      this.flush();
      return;
    }
    const bigger = new Uint8Array(this.buf.length * 2);
    bigger.set(this.buf);
    this.buf = bigger;
    this.dv = new DataView(bigger.buffer);
  }

  /** Write the buffered records as one chunk (BLOCK record, then the payload). */
  private flush(): void {
    const n = this.pos;
    if (n === 0) return;
    if (this.fd < 0) {
      this.pos = 0;
      return;
    }
    const chunk = F.encodeChunk(this.buf.subarray(0, n * F.RECORD_BYTES), this.deflate);
    this.put(chunk.block);
    this.put(chunk.payload);
    this.flushed += n;
    this.pos = 0;
  }

  private put(b: Uint8Array): void {
    let done = 0;
    while (done < b.length) done += writeSync(this.fd, b, done, b.length - done);
    this.bytes += b.length;
  }
}

const EMPTY = new Uint8Array(0);

/** Write data must be recorded in full to be replayed: at most 8 bytes fit a record. */
function checkInline(data: Uint8Array, what: string): Uint8Array {
  if (data.length > F.INLINE_DATA_BYTES) throw new Error(`cannot record a ${what} of ${data.length} bytes (a record holds ${F.INLINE_DATA_BYTES})`);
  return data;
}
