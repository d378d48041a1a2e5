/**
 * QMP, the QEMU Machine Protocol, server side: JSON objects in, JSON objects out, one a line
 * (docs/reference/qtest-qmp.md §2). A session greets, waits for `qmp_capabilities`, then runs
 * commands; replies carry the request's `id`; events (`STOP`, `RESUME`, `RESET`, `SHUTDOWN`)
 * are sent before the reply of the command that caused them, as QEMU does.
 *
 * The commands are QEMU's (`query-status`, `stop`, `cont`, `system_reset`, `quit`,
 * `query-version`, `query-commands`) plus cmdqv's introspection, named with QEMU's `x-` prefix
 * for unstable commands (`x-query-cmdqv`). Errors use QEMU's classes and texts.
 */

/** QEMU's run states as `query-status` reports them (the subset a machine without a CPU reaches). */
export type RunState = 'prelaunch' | 'running' | 'paused' | 'shutdown';

/** A JSON value. */
export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** What the QMP session controls. */
export interface QmpMachine {
  /** Version reported in the greeting and `query-version`. */
  readonly version: { readonly major: number; readonly minor: number; readonly micro: number; readonly package: string };
  /** System reset (every device back to its reset state). */
  reset(): void;
  /** The process is asked to end (after the reply is sent). */
  quit(): void;
  /**
   * Machine-specific commands (`x-query-cmdqv`): the result, or undefined for an unknown name.
   * @throws QmpError for a known command that fails
   */
  extraCommand(name: string, args: { [k: string]: Json }): Json | undefined;
  /** Names of the machine-specific commands (for `query-commands`). */
  readonly extraCommands: readonly string[];
}

/** A command failure with a QMP error class. */
export class QmpError extends Error {
  constructor(
    readonly errorClass: 'GenericError' | 'CommandNotFound' | 'DeviceNotFound',
    message: string,
  ) {
    super(message);
  }
}

const BUILTIN = ['qmp_capabilities', 'query-status', 'stop', 'cont', 'system_reset', 'quit', 'query-version', 'query-commands'] as const;

/** Largest request this server buffers (a bounded reply to a runaway client). */
const MAX_REQUEST = 16 * 2 ** 20;

/** One QMP connection. */
export class QmpSession {
  private negotiated = false;
  private buf = '';
  private depth = 0;
  private inString = false;
  private escaped = false;
  private start = 0;

  /**
   * @param machine what the session controls
   * @param state the run state, shared by every monitor of the machine
   * @param send writes one JSON text (a line, ending "\n")
   * @param now wall-clock time in microseconds, for event timestamps (QEMU stamps host time)
   */
  constructor(
    private readonly machine: QmpMachine,
    private readonly state: { run: RunState },
    private readonly send: (text: string) => void,
    private readonly now: () => number,
  ) {}

  /** The greeting QEMU sends first on a new connection. */
  greet(): void {
    const v = this.machine.version;
    this.emit({ QMP: { version: { qemu: { micro: v.micro, minor: v.minor, major: v.major }, package: v.package }, capabilities: ['oob'] } });
  }

  /**
   * Feed received text. JSON values are split out by brace depth (strings and escapes
   * honoured), so a request may span lines or share one.
   */
  receive(chunk: string): void {
    for (let i = 0; i < chunk.length; i++) {
      const ch = chunk[i]!;
      if (this.depth === 0 && !this.inString) {
        if (ch === '{' || ch === '[') {
          this.start = this.buf.length;
          this.depth = 1;
        } else if (!/\s/.test(ch)) {
          this.emit({ error: { class: 'GenericError', desc: `JSON parse error, invalid character '${ch}'` } });
          continue;
        }
        this.buf += ch;
        continue;
      }
      this.buf += ch;
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (ch === '\\') this.escaped = true;
        else if (ch === '"') this.inString = false;
      } else if (ch === '"') this.inString = true;
      else if (ch === '{' || ch === '[') this.depth++;
      else if (ch === '}' || ch === ']') {
        this.depth--;
        if (this.depth === 0) {
          const text = this.buf.slice(this.start);
          this.buf = '';
          this.handleText(text);
        }
      }
      if (this.buf.length > MAX_REQUEST) {
        this.buf = '';
        this.depth = 0;
        this.inString = false;
        this.emit({ error: { class: 'GenericError', desc: 'JSON parse error, request too large' } });
      }
    }
    if (this.depth === 0 && !this.inString) this.buf = '';
  }

  private handleText(text: string): void {
    let req: Json;
    try {
      req = JSON.parse(text) as Json;
    } catch (e) {
      this.emit({ error: { class: 'GenericError', desc: `JSON parse error, ${(e as Error).message}` } });
      return;
    }
    this.handle(req);
  }

  /** Run one parsed request. */
  handle(req: Json): void {
    if (req === null || typeof req !== 'object' || Array.isArray(req)) {
      this.emit({ error: { class: 'GenericError', desc: 'QMP input must be a JSON object' } });
      return;
    }
    const id = req.id;
    // QEMU writes an error's id first and a return's id last.
    const withId = (o: { [k: string]: Json }) => (id === undefined ? o : 'error' in o ? { id, ...o } : { ...o, id });
    for (const k of Object.keys(req)) {
      if (k !== 'execute' && k !== 'arguments' && k !== 'id' && k !== 'exec-oob') {
        this.emit(withId({ error: { class: 'GenericError', desc: `QMP input member '${k}' is unexpected` } }));
        return;
      }
    }
    const name = req.execute;
    if (typeof name !== 'string') {
      this.emit(withId({ error: { class: 'GenericError', desc: "QMP input member 'execute' must be a string" } }));
      return;
    }
    const args = req.arguments ?? {};
    if (args === null || typeof args !== 'object' || Array.isArray(args)) {
      this.emit(withId({ error: { class: 'GenericError', desc: "QMP input member 'arguments' must be an object" } }));
      return;
    }
    try {
      const result = this.run(name, args);
      this.emit(withId({ return: result }));
    } catch (e) {
      if (!(e instanceof QmpError)) throw e;
      this.emit(withId({ error: { class: e.errorClass, desc: e.message } }));
    }
    if (name === 'quit' && this.state.run === 'shutdown') this.machine.quit();
  }

  private run(name: string, args: { [k: string]: Json }): Json {
    if (!this.negotiated) {
      if (name !== 'qmp_capabilities') throw new QmpError('CommandNotFound', "Expecting capabilities negotiation with 'qmp_capabilities'");
      noArgs(args, ['enable']);
      this.negotiated = true;
      return {};
    }
    const s = this.state;
    switch (name) {
      case 'qmp_capabilities':
        throw new QmpError('CommandNotFound', 'Capabilities negotiation is already complete, command ignored');
      case 'query-status':
        noArgs(args);
        return { status: s.run, running: s.run === 'running' };
      case 'stop':
        noArgs(args);
        if (s.run === 'running') {
          s.run = 'paused';
          this.event('STOP');
        }
        return {};
      case 'cont':
        noArgs(args);
        if (s.run === 'prelaunch' || s.run === 'paused') {
          s.run = 'running';
          this.event('RESUME');
        }
        return {};
      case 'system_reset':
        noArgs(args);
        this.machine.reset();
        this.event('RESET', { guest: false, reason: 'host-qmp-system-reset' });
        return {};
      case 'quit':
        noArgs(args);
        s.run = 'shutdown';
        this.event('SHUTDOWN', { guest: false, reason: 'host-qmp-quit' });
        return {};
      case 'query-version': {
        noArgs(args);
        const v = this.machine.version;
        return { qemu: { micro: v.micro, minor: v.minor, major: v.major }, package: v.package };
      }
      case 'query-commands':
        noArgs(args);
        return [...BUILTIN, ...this.machine.extraCommands].map((n) => ({ name: n }));
      default: {
        const r = this.machine.extraCommand(name, args);
        if (r === undefined) throw new QmpError('CommandNotFound', `The command ${name} has not been found`);
        return r;
      }
    }
  }

  /** Send an asynchronous event. */
  event(name: string, data?: { [k: string]: Json }): void {
    const t = this.now();
    const ev: { [k: string]: Json } = { timestamp: { seconds: Math.floor(t / 1e6), microseconds: t % 1e6 }, event: name };
    if (data) ev.data = data;
    this.emit(ev);
  }

  private emit(o: { [k: string]: Json }): void {
    this.send(`${qmpText(o)}\n`);
  }
}

/** JSON as QEMU writes it on a QMP stream: one line, `", "` and `": "` between members. */
export function qmpText(v: Json): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(qmpText).join(', ')}]`;
  return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${qmpText(x)}`).join(', ')}}`;
}

/** QEMU refuses arguments a command does not declare. */
function noArgs(args: { [k: string]: Json }, allowed: readonly string[] = []): void {
  for (const k of Object.keys(args)) if (!allowed.includes(k)) throw new QmpError('GenericError', `Parameter '${k}' is unexpected`);
}
