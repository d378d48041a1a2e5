/**
 * QEMU's qtest protocol, server side: a line-based request/response protocol that reads and
 * writes guest memory and MMIO as the CPU would, drives the virtual clock and intercepts
 * interrupt lines, with no guest code running (docs/reference/qtest-qmp.md §1).
 *
 * Requests are words separated by single spaces, one request a line; every request gets one
 * reply line (`OK [VALUE]`, `FAIL reason`, `ERR reason`), and the server may send
 * `IRQ raise N` / `IRQ lower N` lines at any time after an `irq_intercept_*`.
 *
 * Where QEMU asserts (and so aborts the whole VMM) on a malformed request — a missing or
 * unparsable number, `read` of zero bytes, `outb` beyond 0xffff — this server answers
 * `FAIL` with the reason instead: a test client can never crash the VMM.
 */

import type { VirtualClock } from '../../kit/clock.js';
import type { IrqLine } from '../../kit/irq.js';

/** Largest `read`/`b64read`/`write`/`memset` size this server accepts (a bounded reply). */
export const QTEST_MAX_TRANSFER = 64 * 2 ** 20;

/** What a qtest session drives: the machine as its CPU and interrupt controller see it. */
export interface QtestMachine {
  /** A CPU load of 1, 2, 4 or 8 bytes (MMIO handlers run; unassigned addresses read 0). */
  load(addr: number, size: 1 | 2 | 4 | 8): bigint;
  /** A CPU store of 1, 2, 4 or 8 bytes. */
  store(addr: number, size: 1 | 2 | 4 | 8, value: bigint): void;
  /** `len` bytes from `addr` (guest RAM directly, other addresses access by access). */
  readBytes(addr: number, len: number): Uint8Array;
  /** Store bytes at `addr`. */
  writeBytes(addr: number, data: Uint8Array): void;
  /** The machine's virtual clock (qtest owns it: nothing else advances it). */
  readonly clock: VirtualClock;
  /**
   * The GPIO lines of the device at QOM path `path`: its unnamed inputs (`dir` = 'in') or its
   * outputs named `name` (`dir` = 'out'; `sysbus-irq` for a sysbus device's IRQs). Undefined
   * when no device has that path; an empty list when it has no such lines.
   */
  gpio(path: string, dir: 'in' | 'out', name: string | undefined): readonly IrqLine[] | undefined;
  /** The input line `num` of list `name` (`unnamed-gpio-in` = the unnamed inputs) of the device at `path`. */
  gpioIn(path: string, name: string | undefined, num: number): IrqLine | undefined;
  /**
   * One main-loop iteration at the current time (fd handlers such as vEVENTQ readers), run
   * after each request as QEMU's main loop runs between the chardev reads; what it raises is
   * reported after the request's reply.
   */
  idle(): void;
}

/** One qtest connection's state. */
export class QtestSession {
  private inbuf = '';
  /** The device whose lines are intercepted (one per session, as in QEMU). */
  private interceptPath: string | undefined;
  private readonly levels = new Map<number, boolean>();
  private readonly intercepted: IrqLine[] = [];
  /** Requests handled. */
  requests = 0;

  /**
   * @param machine what the session drives
   * @param send writes reply and IRQ lines (each ends with "\n")
   * @param log the `-qtest-log` stream: requests as `[R +t]`, replies as `[S +t]`
   */
  constructor(
    private readonly machine: QtestMachine,
    private readonly send: (text: string) => void,
    private readonly log?: (text: string) => void,
  ) {}

  /** Feed bytes received from the client; complete lines are processed in order. */
  receive(chunk: string): void {
    // Only the new text can hold the end of the pending line: a long request arriving in many
    // chunks (a multi-megabyte b64write) is scanned once, not once per chunk.
    let from = this.inbuf.length;
    this.inbuf += chunk;
    for (;;) {
      const nl = this.inbuf.indexOf('\n', from);
      from = 0;
      if (nl < 0) break;
      const line = this.inbuf.slice(0, nl);
      this.inbuf = this.inbuf.slice(nl + 1);
      this.request(line);
    }
    // A client that never ends its line cannot make the server hold unbounded text.
    if (this.inbuf.length > QTEST_MAX_TRANSFER * 2) {
      this.inbuf = '';
      this.reply('FAIL request line too long\n');
    }
  }

  /** The connection closed: stop reporting interrupts. */
  close(): void {
    for (const l of this.intercepted) l.onLevel = undefined;
    this.intercepted.length = 0;
  }

  private reply(text: string): void {
    this.log?.(`[S +${this.stamp()}] ${text}`);
    this.send(text);
  }

  private stamp(): string {
    return (this.machine.clock.now / 1e9).toFixed(6);
  }

  /** Handle one request line. */
  request(line: string): void {
    this.requests++;
    const words = line.replace(/\r$/, '').split(' ');
    this.log?.(`[R +${this.stamp()}] ${words.join(' ')}\n`);
    try {
      this.reply(this.dispatch(words));
    } catch (e) {
      if (!(e instanceof QtestFail)) throw e;
      this.reply(`FAIL ${e.message}\n`);
    }
    this.machine.idle();
  }

  private dispatch(w: readonly string[]): string {
    const m = this.machine;
    const cmd = w[0] ?? '';
    switch (cmd) {
      case 'readb':
      case 'readw':
      case 'readl':
      case 'readq': {
        const v = m.load(addr(w, 1), WIDTH[cmd[4]!]!);
        return `OK 0x${v.toString(16).padStart(16, '0')}\n`;
      }
      case 'writeb':
      case 'writew':
      case 'writel':
      case 'writeq': {
        const size = WIDTH[cmd[5]!]!;
        const a = addr(w, 1);
        m.store(a, size, BigInt.asUintN(size * 8, u64(w, 2, 'value')));
        return 'OK\n';
      }
      case 'read':
      case 'b64read': {
        const a = addr(w, 1);
        const len = size(w, 2);
        if (cmd === 'read' && len === 0) throw new QtestFail('read of 0 bytes');
        const data = m.readBytes(a, len);
        return cmd === 'read' ? `OK 0x${Buffer.from(data).toString('hex')}\n` : `OK ${Buffer.from(data).toString('base64')}\n`;
      }
      case 'write': {
        const a = addr(w, 1);
        const len = size(w, 2);
        const hex = arg(w, 3, 'data');
        if (hex.length < 3) return 'ERR invalid argument size\n';
        // "0x" then two hex digits a byte; a short string is zero-filled at the end (QEMU's rule).
        const data = new Uint8Array(len);
        for (let i = 0; i < len && 2 * i + 4 <= hex.length; i++) {
          const b = Number.parseInt(hex.slice(2 * i + 2, 2 * i + 4), 16);
          if (Number.isNaN(b)) throw new QtestFail(`bad hex data at byte ${i}`);
          data[i] = b;
        }
        m.writeBytes(a, data);
        return 'OK\n';
      }
      case 'b64write': {
        const a = addr(w, 1);
        const len = size(w, 2);
        const b64 = arg(w, 3, 'data');
        if (b64.length < 3) return 'ERR invalid argument size\n';
        if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) throw new QtestFail('bad base64 data');
        const decoded = Buffer.from(b64, 'base64');
        // QEMU writes SIZE bytes: decoded data, zero-filled past its end.
        const data = new Uint8Array(len);
        data.set(decoded.subarray(0, len));
        m.writeBytes(a, data);
        return 'OK\n';
      }
      case 'memset': {
        const a = addr(w, 1);
        const len = size(w, 2);
        const pattern = Number(BigInt.asUintN(8, u64(w, 3, 'value')));
        if (len) m.writeBytes(a, new Uint8Array(len).fill(pattern));
        return 'OK\n';
      }
      case 'outb':
      case 'outw':
      case 'outl':
      case 'inb':
      case 'inw':
      case 'inl': {
        const port = u64(w, 1, 'port');
        if (port > 0xffffn) throw new QtestFail(`port 0x${port.toString(16)} beyond 0xffff`);
        if (cmd.startsWith('out')) u64(w, 2, 'value');
        // An Arm virt machine has no I/O-port space for the CPU: reads float, writes go nowhere.
        return cmd.startsWith('out') ? 'OK\n' : `OK 0x${(cmd === 'inb' ? 0xff : cmd === 'inw' ? 0xffff : 0xffffffff).toString(16).padStart(4, '0')}\n`;
      }
      case 'endianness':
        return 'OK little\n';
      case 'clock_step': {
        const clock = m.clock;
        const old = clock.now;
        let ns: number;
        if (w[1] !== undefined) {
          ns = Number(i64(w, 1, 'ns'));
          if (ns < 0) throw new QtestFail('could not advance time');
        } else {
          const next = clock.nextDeadline();
          if (next === undefined) throw new QtestFail('cannot advance clock to the next deadline because there is no pending deadline');
          ns = Math.max(0, next - old);
        }
        clock.advance(ns);
        if (clock.now > old) return `OK ${clock.now}\n`;
        throw new QtestFail('could not advance time');
      }
      case 'clock_set': {
        const ns = Number(i64(w, 1, 'ns'));
        const clock = m.clock;
        if (ns > clock.now) clock.advance(ns - clock.now);
        return `${clock.now === ns ? 'OK' : 'FAIL'} ${clock.now}\n`;
      }
      case 'irq_intercept_in':
      case 'irq_intercept_out':
        return this.intercept(w, cmd === 'irq_intercept_out' ? 'out' : 'in');
      case 'set_irq_in': {
        const path = arg(w, 1, 'path');
        const name = arg(w, 2, 'name');
        const num = Number(i64(w, 3, 'num'));
        const level = Number(i64(w, 4, 'level'));
        if (m.gpio(path, 'in', undefined) === undefined) throw new QtestFail('Unknown device');
        const line = m.gpioIn(path, name === 'unnamed-gpio-in' ? undefined : name, num);
        if (!line) throw new QtestFail(`no input ${num} in '${name}'`);
        if (level) line.raise();
        else line.lower();
        return 'OK\n';
      }
      default:
        return `FAIL Unknown command '${cmd}'\n`;
    }
  }

  private intercept(w: readonly string[], dir: 'in' | 'out'): string {
    const path = arg(w, 1, 'path');
    const name = w[2];
    const lines = this.machine.gpio(path, dir, name);
    if (lines === undefined) throw new QtestFail('Unknown device');
    if (name !== undefined && dir === 'in') throw new QtestFail('Interception of named in-GPIOs not yet supported');
    if (this.interceptPath !== undefined) {
      if (this.interceptPath !== path) throw new QtestFail('IRQ intercept already enabled');
      return 'OK\n';
    }
    if (lines.length === 0) throw new QtestFail('No intercepts installed');
    this.interceptPath = path;
    lines.forEach((line, n) => {
      this.intercepted.push(line);
      this.levels.set(n, line.level);
      line.onLevel = (level) => {
        if (this.levels.get(n) === level) return;
        this.levels.set(n, level);
        this.reply(`IRQ ${level ? 'raise' : 'lower'} ${n}\n`);
      };
    });
    return 'OK\n';
  }
}

/** A request the server refuses: answered `FAIL <message>`. */
class QtestFail extends Error {}

const WIDTH: Readonly<Record<string, 1 | 2 | 4 | 8>> = { b: 1, w: 2, l: 4, q: 8 };

function arg(w: readonly string[], i: number, what: string): string {
  const v = w[i];
  if (v === undefined || v === '') throw new QtestFail(`missing ${what}`);
  return v;
}

/** An integer as C's strtoull with base 0 reads it: 0x hex, 0 octal, else decimal. */
function parseInteger(s: string): bigint | undefined {
  const neg = s.startsWith('-');
  const t = neg ? s.slice(1) : s;
  let v: bigint;
  if (/^0[xX][0-9a-fA-F]+$/.test(t)) v = BigInt(t);
  else if (/^0[0-7]*$/.test(t)) v = t.length > 1 ? BigInt(`0o${t.slice(1)}`) : 0n;
  else if (/^[1-9][0-9]*$/.test(t)) v = BigInt(t);
  else return undefined;
  return neg ? -v : v;
}

function u64(w: readonly string[], i: number, what: string): bigint {
  const s = arg(w, i, what);
  const v = parseInteger(s);
  if (v === undefined || v >= 2n ** 64n) throw new QtestFail(`bad ${what} '${s}'`);
  return BigInt.asUintN(64, v);
}

function i64(w: readonly string[], i: number, what: string): bigint {
  const s = arg(w, i, what);
  const v = parseInteger(s);
  if (v === undefined || v >= 2n ** 63n || v < -(2n ** 63n)) throw new QtestFail(`bad ${what} '${s}'`);
  return v;
}

/** A guest-physical address (the machine's space is far below 2^53). */
function addr(w: readonly string[], i: number): number {
  const v = u64(w, i, 'address');
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new QtestFail(`address 0x${v.toString(16)} beyond the guest-physical space`);
  return Number(v);
}

function size(w: readonly string[], i: number): number {
  const v = u64(w, i, 'size');
  if (v > BigInt(QTEST_MAX_TRANSFER)) throw new QtestFail(`size ${v} above this server's limit of ${QTEST_MAX_TRANSFER} bytes`);
  return Number(v);
}
