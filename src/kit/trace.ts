/**
 * Trace events, after QEMU's `trace-events`: each event is declared once (name, typed
 * arguments, printf-style format) and enabled at run time by glob patterns such as
 * `tegra241_cmdqv_*`. A disabled event costs one array load at the call site: arguments are
 * plain numbers/strings and nothing is formatted unless a sink consumes the record.
 */

/** Argument types of trace events. */
export type TraceArgType = 'u32' | 'u64' | 'i32' | 'str' | 'bool';

/** One declared argument. */
export interface TraceArg {
  readonly name: string;
  readonly type: TraceArgType;
}

type ArgValue<T extends TraceArg> = T['type'] extends 'u64'
  ? bigint | number
  : T['type'] extends 'str'
    ? string
    : T['type'] extends 'bool'
      ? boolean
      : number;

/** The tuple of values an event with arguments `A` takes. */
export type TraceArgValues<A extends readonly TraceArg[]> = { -readonly [K in keyof A]: ArgValue<A[K]> };

/** A declared trace event. */
export interface TraceEvent<A extends readonly TraceArg[] = readonly TraceArg[]> {
  /**
   * Dense identity of the event object, the index into a tracer's enable table. Never shown
   * or saved: names are what patterns, sinks and catalogs use.
   */
  readonly id: number;
  readonly name: string;
  readonly args: A;
  /** printf-style format: `%u %d %x %s`, with optional `0`, width and `#` (e.g. `0x%08x`). */
  readonly format: string;
}

/**
 * Next event identity. Identities only make enable tables dense: nothing observable depends on
 * them or on the order modules declare events (the catalog a tracer is given decides what it
 * can enable, and names decide everything else).
 */
let nextEventId = 0;

/**
 * Declare a trace event (one folder's `trace-events.ts` declares all of its own). Names are
 * unique in a {@link traceCatalog}, like QEMU's trace-events files.
 * @example
 * const T = defineTrace('tegra241_cmdqv_write_mmio', [{ name: 'offset', type: 'u32' }], 'offset: 0x%x');
 */
export function defineTrace<const A extends readonly TraceArg[]>(name: string, args: A, format: string): TraceEvent<A> {
  if (!/^[a-z0-9_]+$/.test(name)) throw new Error(`trace event name ${JSON.stringify(name)} must be [a-z0-9_]+`);
  const conversions = format.match(/%[#0-9]*[udxXs]/g) ?? [];
  if (conversions.length !== args.length) {
    throw new Error(`trace event ${name}: format has ${conversions.length} conversions for ${args.length} args`);
  }
  return { id: nextEventId++, name, args, format };
}

/**
 * A catalog of trace events: the groups given (each folder's `TRACE_EVENTS`), sorted by name,
 * with every name unique.
 * @throws Error naming an event declared twice
 */
export function traceCatalog(...groups: readonly (readonly TraceEvent[])[]): readonly TraceEvent[] {
  const byName = new Map<string, TraceEvent>();
  for (const group of groups) {
    for (const ev of group) {
      const seen = byName.get(ev.name);
      if (seen && seen !== ev) throw new Error(`trace event ${ev.name} declared twice`);
      byName.set(ev.name, ev);
    }
  }
  return [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Format a record's arguments with the event's printf-style format. */
export function formatTrace(ev: TraceEvent, values: readonly unknown[]): string {
  let i = 0;
  return ev.format.replace(/%([#0-9]*)([udxXs])/g, (_m, flags: string, conv: string) => {
    const v = values[i++];
    const alt = flags.includes('#');
    const spec = flags.replace('#', '');
    const pad = spec.startsWith('0') ? '0' : ' ';
    const width = spec.length > 0 ? Number.parseInt(spec, 10) : 0;
    let s: string;
    if (conv === 'x' || conv === 'X') {
      const n = typeof v === 'bigint' ? v : BigInt(Math.trunc(Number(v)));
      s = (n < 0n ? BigInt.asUintN(64, n) : n).toString(16);
      if (conv === 'X') s = s.toUpperCase();
    } else if (conv === 's') {
      s = String(v);
    } else {
      s = typeof v === 'boolean' ? (v ? '1' : '0') : String(v);
    }
    s = s.padStart(width, pad);
    return alt && (conv === 'x' || conv === 'X') ? `0x${s}` : s;
  });
}

/** Turn a QEMU-style glob (`*`, `?`) into a RegExp. */
function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

/** A consumer of trace records. */
export interface TraceSink {
  /** One record; `pid` is the process it concerns (as ftrace records the task), 0 when none. */
  record(ev: TraceEvent, time: number, values: readonly unknown[], pid: number): void;
}

/**
 * Per-machine trace state: which events are on and where records go.
 * Enable with patterns; a leading `-` disables (`-trace 'tegra241_cmdqv_*,-*_read_*'`).
 */
export class Tracer {
  private on: Uint8Array;
  private readonly patterns: { re: RegExp; enable: boolean }[] = [];
  private readonly sinks: TraceSink[] = [];
  /** Time source for records (model nanoseconds). */
  now: () => number = () => 0;
  /** The process a record concerns (a host tracer: the current process); 0 when none. */
  pid: () => number = () => 0;
  /** Number of records emitted while enabled. */
  emitted = 0;

  /** @param catalog the events this tracer can enable (see {@link traceCatalog}); others stay off */
  constructor(readonly catalog: readonly TraceEvent[] = []) {
    let size = 0;
    for (const ev of catalog) size = Math.max(size, ev.id + 1);
    this.on = new Uint8Array(size);
  }

  /** Apply comma-separated glob patterns in order; returns the names that matched none. */
  enable(patterns: string): string[] {
    const unmatched: string[] = [];
    for (const raw of patterns.split(',').map((p) => p.trim()).filter(Boolean)) {
      const enable = !raw.startsWith('-');
      const re = globToRegExp(enable ? raw : raw.slice(1));
      this.patterns.push({ re, enable });
      if (!this.catalog.some((e) => re.test(e.name))) unmatched.push(raw);
    }
    this.refresh();
    return unmatched;
  }

  /** Disable every event. */
  disableAll(): void {
    this.patterns.length = 0;
    this.refresh();
  }

  /** Attach a sink. */
  addSink(sink: TraceSink): void {
    this.sinks.push(sink);
  }

  /** Detach a sink. */
  removeSink(sink: TraceSink): void {
    const i = this.sinks.indexOf(sink);
    if (i >= 0) this.sinks.splice(i, 1);
  }

  /** Deliver a record emitted by another tracer to this one's sinks, if `ev` is enabled here. */
  deliver(ev: TraceEvent, time: number, values: readonly unknown[], pid: number): void {
    if (this.on[ev.id] !== 1) return;
    this.emitted++;
    for (const s of this.sinks) s.record(ev, time, values, pid);
  }

  /** Whether `ev` is enabled (for call sites that must compute arguments first). */
  enabled(ev: TraceEvent): boolean {
    return this.on[ev.id] === 1;
  }

  /** Emit a record if the event is enabled. */
  emit<A extends readonly TraceArg[]>(ev: TraceEvent<A>, ...values: TraceArgValues<A>): void {
    if (this.on[ev.id] !== 1) return;
    this.emitted++;
    const t = this.now();
    const pid = this.pid();
    for (const s of this.sinks) s.record(ev, t, values, pid);
  }

  /** Names of enabled events. */
  enabledNames(): string[] {
    return this.catalog.filter((e) => this.on[e.id] === 1).map((e) => e.name);
  }

  private refresh(): void {
    const on = this.on;
    for (const ev of this.catalog) {
      let state = 0;
      for (const p of this.patterns) if (p.re.test(ev.name)) state = p.enable ? 1 : 0;
      on[ev.id] = state;
    }
    this.on = on;
  }
}

/** Text sink: one line per record, `name fmt` like QEMU's log backend. */
export class TextTraceSink implements TraceSink {
  readonly lines: string[] = [];
  constructor(
    private readonly write?: (line: string) => void,
    private readonly keep = !write,
  ) {}
  record(ev: TraceEvent, time: number, values: readonly unknown[]): void {
    const line = `${time}ns ${ev.name} ${formatTrace(ev, values)}`;
    if (this.keep) this.lines.push(line);
    this.write?.(line);
  }
}

/** One Chrome/Perfetto trace-event record (instant event). */
export interface ChromeTraceRecord {
  name: string;
  cat: string;
  ph: 'i';
  s: 't';
  ts: number;
  pid: number;
  tid: number;
  args: Record<string, number | string | boolean>;
}

/**
 * Chrome trace-event JSON sink (loadable by Perfetto and chrome://tracing). The category is
 * the event name up to its first underscore (`tegra241`, `smmuv3`, `iommufd`, ...).
 */
export class ChromeTraceSink implements TraceSink {
  readonly events: ChromeTraceRecord[] = [];
  constructor(
    private readonly pid = 1,
    private readonly tid = 1,
  ) {}
  record(ev: TraceEvent, time: number, values: readonly unknown[], pid = 0): void {
    const args: Record<string, number | string | boolean> = {};
    ev.args.forEach((a, i) => {
      const v = values[i];
      args[a.name] = typeof v === 'bigint' ? `0x${v.toString(16)}` : (v as number | string | boolean);
    });
    const us = ev.name.indexOf('_');
    this.events.push({
      name: ev.name,
      cat: us > 0 ? ev.name.slice(0, us) : ev.name,
      ph: 'i',
      s: 't',
      ts: time / 1000,
      pid: pid || this.pid,
      tid: this.tid,
      args,
    });
  }
  /** The JSON document (`{"traceEvents": [...]}`). */
  toJSON(): { traceEvents: ChromeTraceRecord[]; displayTimeUnit: 'ns' } {
    return { traceEvents: this.events, displayTimeUnit: 'ns' };
  }
}

/**
 * Told when a system call enters and leaves the kernel (the host's syscall entry): where the
 * platform charges modelled time and records the call's slice (platform/timeline.ts).
 */
export interface SyscallObserver {
  /** Entering ioctl(2) with `request`. */
  enter(request: number): void;
  /** Returning with `ret` (>= 0, or -errno). */
  leave(ret: number): void;
}

/** The `request` {@link SyscallObserver.enter} is given for a read(2) (ioctl requests are never negative). */
export const SYSCALL_READ = -1;

/**
 * Told around a device model's walk of a guest command queue it traps (the VMM's SMMUv3
 * CMDQ on a CMDQ_PROD write, QEMU's smmuv3_cmdq_consume): one call each way per walk.
 */
export interface CommandWalkObserver {
  /** The walk starts with `pending` commands between CONS and PROD. */
  walkBegin(pending: number): void;
  /** It ended with `pending` commands left (0, or those behind a command that failed). */
  walkEnd(pending: number): void;
}

/**
 * Hops of a fault record on its way to the guest, as an {@link EventPathObserver} is told them.
 * The host SMMU wrote a record into its event queue (the host's interrupt handler takes it).
 */
export const EVENT_HOP_HOST_EVTQ = 0;
/** The host kernel queues a record on a vEVENTQ for the VMM. */
export const EVENT_HOP_VEVENTQ = 1;
/** The VMM's main loop reads one record off a vEVENTQ (and delivers it). */
export const EVENT_HOP_VMM_READ = 2;
/** The VMM wrote a record into the guest's event queue and raised its interrupt. */
export const EVENT_HOP_GUEST_EVTQ = 3;

/**
 * Told as a fault record travels host SMMU event queue → host kernel → vEVENTQ → VMM → guest
 * event queue (modelled time, trace). Cold path: a few calls per record.
 */
export interface EventPathObserver {
  /**
   * Work on a record at `hop` begins. `queue` names the queue of that hop (the vEVENTQ's object
   * id at the vEVENTQ and VMM hops, the SMMU's index otherwise); `kind` is the event ID at the
   * SMMU queues and the vEVENTQ type at the others; `sid` is the StreamID, -1 when unknown;
   * `pending` is the queue's occupancy now (-1 when unknown).
   */
  enterHop(hop: number, queue: number, kind: number, sid: number, pending: number): void;
  /** The work at `hop` ended, leaving `pending` records in its queue (-1 when unknown). */
  leaveHop(hop: number, pending: number): void;
  /** The consumer of queue `queue` at `hop` took records: `pending` are left. */
  level(hop: number, queue: number, pending: number): void;
}

/**
 * Told when a hardware command queue consumed a batch: one call per batch (not per command),
 * with the counts the platform turns into modelled time (`commands` × cost + `syncs` × wait).
 */
export interface QueueObserver {
  /** Queue `queue` of the unit consumed `commands` commands, `syncs` of them CMD_SYNCs. */
  consumed(queue: number, commands: number, syncs: number): void;
}

/** Argument values of a Chrome trace event. */
export type ChromeArgs = Record<string, number | string | boolean>;

/**
 * Streaming Chrome/Perfetto trace-event JSON writer (loadable by ui.perfetto.dev and
 * chrome://tracing). Processes and threads are named with metadata events; slices are
 * B/E pairs (written as they happen, so the file's timestamps never go back), flows are
 * `s`/`t`/`f` with ids, counters `C`. Times are model nanoseconds, written as microseconds.
 *
 * Nothing is kept in memory but a small buffer: text goes to `write` in chunks. After `limit`
 * events only the ends of slices already begun are written (so every B has its E) and the rest
 * are counted in {@link dropped}.
 */
export class ChromeTraceWriter implements TraceSink {
  /** Events written (metadata included). */
  written = 0;
  /** Events left out once the limit was reached (callers that skip the writer count theirs here too). */
  dropped = 0;
  /** Where tracer records go: (process, thread) by event; default process 1 thread 1. */
  placeRecord: (ev: TraceEvent) => number = () => 1 * TRACK_PIDS + 1;
  private buf = '';
  private first = true;
  private closed = false;
  /** Open B slices per track (pid × TRACK_PIDS + tid). */
  private readonly open = new Map<number, number>();
  /** B slices left out per track (always inside the written ones: dropping never stops). */
  private readonly droppedOpen = new Map<number, number>();

  constructor(
    private readonly write: (chunk: string) => void,
    private readonly limit = Number.POSITIVE_INFINITY,
  ) {
    this.write('{"displayTimeUnit":"ns","traceEvents":[\n');
  }

  /** Name a process (and order it in the UI by `sortIndex`). Metadata: never dropped. */
  processName(pid: number, name: string, sortIndex = pid): void {
    this.put(`{"ph":"M","name":"process_name","pid":${pid},"tid":0,"args":{"name":${JSON.stringify(name)}}}`);
    this.put(`{"ph":"M","name":"process_sort_index","pid":${pid},"tid":0,"args":{"sort_index":${sortIndex}}}`);
  }

  /** Name a thread (a track) of a process. Metadata: never dropped. */
  threadName(pid: number, tid: number, name: string): void {
    this.put(`{"ph":"M","name":"thread_name","pid":${pid},"tid":${tid},"args":{"name":${JSON.stringify(name)}}}`);
  }

  /** Whether events are still being recorded (the limit has not been reached). */
  get recording(): boolean {
    return this.written < this.limit;
  }

  /** Whether `n` more events fit under the limit (a flow's events go in together or not at all). */
  hasRoom(n: number): boolean {
    return this.written + n <= this.limit;
  }

  /** Begin a slice on (pid, tid) at `ns`. */
  begin(pid: number, tid: number, name: string, cat: string, ns: number, args?: ChromeArgs): void {
    const key = pid * TRACK_PIDS + tid;
    if (!this.admit()) {
      this.droppedOpen.set(key, (this.droppedOpen.get(key) ?? 0) + 1);
      return;
    }
    this.open.set(key, (this.open.get(key) ?? 0) + 1);
    this.put(`{"ph":"B","name":${JSON.stringify(name)},"cat":"${cat}","ts":${us(ns)},"pid":${pid},"tid":${tid}${argsJson(args)}}`);
  }

  /** End the innermost slice begun on (pid, tid) (written even past the limit). */
  end(pid: number, tid: number, ns: number, args?: ChromeArgs): void {
    const key = pid * TRACK_PIDS + tid;
    const skipped = this.droppedOpen.get(key) ?? 0;
    if (skipped > 0) {
      this.droppedOpen.set(key, skipped - 1); // its begin was left out
      return;
    }
    const depth = this.open.get(key) ?? 0;
    if (depth === 0 || this.closed) return;
    this.open.set(key, depth - 1);
    this.put(`{"ph":"E","ts":${us(ns)},"pid":${pid},"tid":${tid}${argsJson(args)}}`);
  }

  /**
   * A flow event: `s` starts flow `id` in the slice enclosing `ns` on (pid, tid), `t` is a step,
   * `f` ends it in the slice that begins at `ns` (binding point "enclosing").
   */
  flow(ph: 's' | 't' | 'f', pid: number, tid: number, id: number, name: string, ns: number): void {
    if (!this.admit()) return;
    const bp = ph === 's' ? '' : ',"bp":"e"';
    this.put(`{"ph":"${ph}","name":${JSON.stringify(name)},"cat":"flow","id":${id},"ts":${us(ns)},"pid":${pid},"tid":${tid}${bp}}`);
  }

  /** A counter sample: `name` of process `pid` has `value` from `ns` on. */
  counter(pid: number, name: string, ns: number, value: number): void {
    if (!this.admit()) return;
    this.put(`{"ph":"C","name":${JSON.stringify(name)},"ts":${us(ns)},"pid":${pid},"tid":0,"args":{"value":${value}}}`);
  }

  /** A tracer record (a declared trace event): an instant on the track {@link placeRecord} gives. */
  record(ev: TraceEvent, time: number, values: readonly unknown[]): void {
    if (!this.admit()) return;
    const args: ChromeArgs = {};
    for (let i = 0; i < ev.args.length; i++) {
      const v = values[i];
      args[ev.args[i]!.name] = typeof v === 'bigint' ? `0x${v.toString(16)}` : (v as number | string | boolean);
    }
    const track = this.placeRecord(ev);
    const us_ = ev.name.indexOf('_');
    const cat = us_ > 0 ? ev.name.slice(0, us_) : ev.name;
    this.put(
      `{"ph":"i","s":"t","name":"${ev.name}","cat":"${cat}","ts":${us(time)},"pid":${Math.floor(track / TRACK_PIDS)},"tid":${track % TRACK_PIDS}${argsJson(args)}}`,
    );
  }

  /** End the document and flush (slices still open are ended at `ns`). */
  close(ns: number): void {
    if (this.closed) return;
    for (const [key, depth] of this.open) {
      for (let i = 0; i < depth; i++) this.put(`{"ph":"E","ts":${us(ns)},"pid":${Math.floor(key / TRACK_PIDS)},"tid":${key % TRACK_PIDS}}`);
    }
    this.open.clear();
    this.closed = true;
    this.buf += '\n]}\n';
    this.flush();
  }

  private admit(): boolean {
    if (this.closed) return false;
    if (this.written < this.limit) return true;
    this.dropped++;
    return false;
  }

  private put(json: string): void {
    this.buf += this.first ? json : `,\n${json}`;
    this.first = false;
    this.written++;
    if (this.buf.length >= FLUSH_CHARS) this.flush();
  }

  private flush(): void {
    if (this.buf.length === 0) return;
    this.write(this.buf);
    this.buf = '';
  }
}

/** Thread ids per process in a track key (pid × TRACK_PIDS + tid). */
export const TRACK_PIDS = 1 << 16;
/** Buffered characters before a write. */
const FLUSH_CHARS = 1 << 16;

function us(ns: number): string {
  // Microseconds with nanosecond resolution, without float noise (1234 ns → 1.234).
  return (ns / 1000).toFixed(3);
}

function argsJson(args: ChromeArgs | undefined): string {
  return args === undefined ? '' : `,"args":${JSON.stringify(args)}`;
}

/** Told after each DMA translation a unit made (modelled time, trace): one call, no allocation. */
export interface TranslationObserver {
  /** StreamID `sid` at `iova` translated (`ok`) or faulted, having walked `walks` tables (0: an IOTLB hit). */
  translated(sid: number, iova: number, ok: boolean, walks: number): void;
}
