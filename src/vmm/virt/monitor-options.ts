/**
 * The command-line options that connect the machine to its controllers: `-qtest`,
 * `-qtest-log`, `-qmp`, `-chardev` and `-mon` (docs/reference/qtest-qmp.md §3). Parsing only:
 * the program's edge (the CLI) opens the sockets.
 *
 * Forms, as QEMU accepts them:
 * - a character-device string: `stdio`, `null`, `unix:PATH[,server[=on|off]][,wait=on|off][,nowait]`,
 *   `tcp:HOST:PORT[,server...]`, or `chardev:ID` (a `-chardev`);
 * - `-chardev socket,id=ID,path=PATH|host=H,port=P[,server=on][,wait=off]`, `-chardev stdio,id=ID`,
 *   `-chardev null,id=ID`;
 * - `-mon chardev=ID[,mode=control|readline][,pretty=on|off]`: mode control is QMP.
 * Without `server`, a socket connects to a listener (libqtest listens, QEMU connects).
 */

import { OptionError, parseKeyval } from './options.js';

/** Where a character device's bytes go. */
export type CharBackend =
  | { readonly kind: 'stdio' }
  | { readonly kind: 'null' }
  | { readonly kind: 'unix'; readonly path: string; readonly server: boolean; readonly wait: boolean }
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number; readonly server: boolean; readonly wait: boolean };

/** The controllers the line asks for. */
export interface MonitorOptions {
  /** `-qtest`: the qtest protocol server (needs `-accel qtest`). */
  readonly qtest: { readonly backend: CharBackend; readonly spec: string } | undefined;
  /** `-qtest-log FILE`: qtest's request/reply log (`/dev/null` or `none` for none; absent: stderr). */
  readonly qtestLog: string | undefined;
  /** QMP monitors (`-qmp`, `-mon mode=control`). */
  readonly qmp: readonly CharBackend[];
  /** Human monitors (`-mon mode=readline`): not modelled, listed. */
  readonly hmp: readonly string[];
}

const CHARDEV_DRIVERS = ['socket', 'stdio', 'null', 'file', 'pipe', 'pty', 'serial', 'udp', 'ringbuf', 'memory', 'mux', 'vc', 'spicevmc', 'spiceport', 'qemu-vdagent', 'dbus', 'parallel', 'msmouse', 'wctablet', 'braille', 'testdev'];

/** Parse the controller options out of a QEMU argument list (other options are ignored here). */
export function parseMonitorOptions(argv: readonly string[]): MonitorOptions {
  const chardevs = new Map<string, CharBackend>();
  // -chardev first: -mon and chardev: may name one given later on the line.
  for (let i = 0; i < argv.length - 1; i++) {
    if (dash(argv[i]!) !== '-chardev') continue;
    const arg = argv[++i]!;
    const kv = parseKeyval(arg, 'backend');
    const backend = kv.get('backend') ?? '';
    const id = kv.get('id');
    if (!CHARDEV_DRIVERS.includes(backend)) throw new OptionError(`-chardev ${arg}: '${backend}' is not a valid char driver name`);
    if (id === undefined) throw new OptionError(`-chardev ${arg}: Parameter 'id' is missing`);
    if (chardevs.has(id)) throw new OptionError(`-chardev ${arg}: Duplicate ID '${id}' for chardev`);
    chardevs.set(id, chardevBackend(backend, kv, `-chardev ${arg}`));
  }
  let qtest: MonitorOptions['qtest'];
  let qtestLog: string | undefined;
  const qmp: CharBackend[] = [];
  const hmp: string[] = [];
  for (let i = 0; i < argv.length - 1; i++) {
    const opt = dash(argv[i]!);
    if (opt === '-qtest') {
      const spec = argv[++i]!;
      qtest = { backend: charString(spec, chardevs, `Failed to initialize device for qtest: "${spec}"`), spec };
    } else if (opt === '-qtest-log') qtestLog = argv[++i]!;
    else if (opt === '-qmp' || opt === '-qmp-pretty') {
      const spec = argv[++i]!;
      qmp.push(charString(spec, chardevs, `-qmp ${spec}: parse error: ${spec}`, `-qmp ${spec}: `));
    } else if (opt === '-mon') {
      const arg = argv[++i]!;
      const kv = parseKeyval(arg, 'chardev');
      const mode = kv.get('mode') ?? 'readline';
      if (mode !== 'control' && mode !== 'readline') throw new OptionError(`-mon ${arg}: Parameter 'mode' does not accept value '${mode}'`);
      const id = kv.get('chardev');
      const c = id === undefined ? undefined : chardevs.get(id);
      if (!c) throw new OptionError(`-mon ${arg}: chardev "${id ?? ''}" not found`);
      if (mode === 'control') qmp.push(c);
      else hmp.push(`-mon ${arg}`);
    }
  }
  return { qtest, qtestLog, qmp, hmp };
}

function dash(s: string): string {
  return s.startsWith('--') ? s.slice(1) : s;
}

/** A `-qtest`/`-qmp` character-device string. */
function charString(spec: string, chardevs: ReadonlyMap<string, CharBackend>, failure: string, prefix = ''): CharBackend {
  if (spec.startsWith('chardev:')) {
    const c = chardevs.get(spec.slice('chardev:'.length));
    if (!c) throw new OptionError(failure);
    return c;
  }
  if (spec === 'stdio') return { kind: 'stdio' };
  if (spec === 'null' || spec === 'none') return { kind: 'null' };
  const [head, ...rest] = spec.split(',');
  const flags = rest.length ? parseKeyval(rest.join(','), undefined) : new Map<string, string>();
  if (head!.startsWith('unix:')) {
    const path = head!.slice('unix:'.length);
    if (path === '') throw new OptionError(failure);
    return { kind: 'unix', path, ...serverFlags(flags, `${prefix}${spec}`) };
  }
  if (head!.startsWith('tcp:')) {
    const m = /^tcp:([^:]*):(\d+)$/.exec(head!);
    if (!m || Number(m[2]) > 65535) throw new OptionError(failure);
    return { kind: 'tcp', host: m[1] || '0.0.0.0', port: Number(m[2]), ...serverFlags(flags, `${prefix}${spec}`) };
  }
  throw new OptionError(`${prefix}'${spec}' is not a valid char driver`);
}

function chardevBackend(backend: string, kv: ReadonlyMap<string, string>, ctx: string): CharBackend {
  switch (backend) {
    case 'stdio':
      return { kind: 'stdio' };
    case 'null':
      return { kind: 'null' };
    case 'socket': {
      const path = kv.get('path');
      if (path !== undefined) return { kind: 'unix', path, ...serverFlags(kv, ctx) };
      const port = kv.get('port');
      if (port !== undefined && /^\d+$/.test(port) && Number(port) <= 65535) return { kind: 'tcp', host: kv.get('host') ?? '0.0.0.0', port: Number(port), ...serverFlags(kv, ctx) };
      throw new OptionError(`${ctx}: Unable to parse FD number `);
    }
    default:
      throw new OptionError(`${ctx}: chardev backend '${backend}' is not modelled (cmdqv connects qtest and QMP over socket, stdio or null)`);
  }
}

function onOff(v: string | undefined, ctx: string, name: string): boolean | undefined {
  if (v === undefined) return undefined;
  if (v === 'on' || v === 'true' || v === 'yes') return true;
  if (v === 'off' || v === 'false' || v === 'no') return false;
  throw new OptionError(`${ctx}: Parameter '${name}' expects 'on' or 'off'`);
}

function serverFlags(kv: ReadonlyMap<string, string>, ctx: string): { server: boolean; wait: boolean } {
  const server = onOff(kv.get('server'), ctx, 'server') ?? false;
  let wait = onOff(kv.get('wait'), ctx, 'wait') ?? true;
  if (kv.has('nowait')) wait = false;
  return { server, wait };
}
