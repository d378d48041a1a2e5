/**
 * `cmdqv qemu ARGS...` and the `cmdqv-qemu-system-aarch64` binary: a drop-in for
 * `qemu-system-aarch64` that a qtest harness (libqtest, `$QTEST_QEMU_BINARY`, a Python script)
 * starts instead of QEMU. It builds the machine from the QEMU line, then serves the qtest
 * protocol and QMP on the character devices the line names (docs/reference/qtest-qmp.md §3).
 *
 * - `-qtest` connects (or listens, with `server`) and serves qtest; when a client-side qtest
 *   connection (or stdio) closes, the process ends with status 0.
 * - `-qmp` / `-mon chardev=X,mode=control` serve QMP; `quit` ends the process with status 0.
 * - A line with neither runs cmdqv's guest workload and prints its report (there is no guest
 *   CPU to run), as `cmdqv run -- ARGS` does.
 * - A bad line prints QEMU's error text with the `qemu-system-aarch64:` prefix, status 1.
 */

import { closeSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { qmpSession, qtestSession, QEMU_VERSION, type CharBackend, type RunState } from '../platform/controllers.js';
import { Machine, OptionError, strerrorOfName } from '../platform/machine.js';
import { runCommand } from './run-command.js';

/** The prefix QEMU puts before its error messages. */
export const QEMU_PREFIX = 'qemu-system-aarch64';

export const QEMU_USAGE = `usage: cmdqv qemu [QEMU options]     (installed also as cmdqv-qemu-system-aarch64)

  A drop-in for qemu-system-aarch64 -machine virt: test harnesses start it instead of QEMU.
  -qtest unix:PATH[,server][,wait=off] | stdio | chardev:ID   serve QEMU's qtest protocol
  -qtest-log FILE|/dev/null|none                            qtest request/reply log (default stderr)
  -qmp unix:PATH[,server][,wait=off] | stdio                serve QMP (also -chardev socket,... -mon chardev=ID,mode=control)
  -S                                                         start paused (QMP query-status: prelaunch)
  Without -qtest or -qmp it runs the guest workload and prints its report, like cmdqv run.`;

/** The streams a connected controller reads and writes. */
interface Link {
  readonly input: Readable;
  readonly output: Writable;
  readonly socket: Socket | undefined;
}

/** Run the drop-in; resolves with the exit status. */
export async function qemuCommand(argv: readonly string[], out: (s: string) => void, err: (s: string) => void, stdio: { input: Readable; output: Writable } = { input: process.stdin, output: process.stdout }): Promise<number> {
  if (argv.includes('--version') || argv.includes('-version')) {
    out(`QEMU emulator version ${QEMU_VERSION.major}.${QEMU_VERSION.minor}.${QEMU_VERSION.micro} (cmdqv virtual platform)`);
    return 0;
  }
  if (argv.includes('--help') || argv.includes('-help') || argv.includes('-h')) {
    out(QEMU_USAGE);
    return 0;
  }
  let m: Machine;
  try {
    m = Machine.create(argv.length ? argv : ['-machine', 'virt']);
  } catch (e) {
    if (e instanceof OptionError) {
      err(`${QEMU_PREFIX}: ${e.message}`);
      return 1;
    }
    throw e;
  }
  for (const w of m.placementWarnings) err(`${QEMU_PREFIX}: ${w}`);
  const mon = m.options.monitors;
  if (!mon.qtest && mon.qmp.length === 0) {
    m.close();
    try {
      out(runCommand(['--', ...argv], () => undefined));
      return 0;
    } catch (e) {
      err(`${QEMU_PREFIX}: ${(e as Error).message}`);
      return 1;
    }
  }
  const state: { run: RunState } = { run: argv.includes('-S') ? 'prelaunch' : 'running' };
  const servers: Server[] = [];
  const sockets: Socket[] = [];
  let finish: (status: number) => void = () => undefined;
  const done = new Promise<number>((resolve) => (finish = resolve));
  let log: number | undefined;
  let logFn: ((t: string) => void) | undefined;
  if (mon.qtest) {
    const l = mon.qtestLog;
    if (l === undefined) logFn = (t) => process.stderr.write(t);
    else if (l !== '/dev/null' && l !== 'none') {
      // Written as it happens (a test reads it while the session runs).
      try {
        log = openSync(l, 'w+');
        logFn = (t) => writeSync(log!, t);
      } catch (e) {
        // QEMU runs on without a log when it cannot open the file; cmdqv says so.
        err(`${QEMU_PREFIX}: warning: -qtest-log ${l}: ${errnoText(e as NodeJS.ErrnoException)}; no qtest log`);
      }
    }
  }
  try {
    if (mon.qtest) {
      const spec = mon.qtest.spec;
      await open(mon.qtest.backend, stdio, servers, sockets, (link, viaServer) => {
        const session = qtestSession(m, (t) => link.output.write(t), logFn);
        logFn?.('[I 0.000000] OPENED\n');
        link.input.setEncoding('utf8');
        link.input.on('data', (d: string) => session.receive(d));
        link.input.on('end', () => {
          session.close();
          logFn?.(`[I +${(m.clock.now / 1e9).toFixed(6)}] CLOSED\n`);
          // A listening qtest server waits for the next client; a connection it made ends the run.
          if (!viaServer) finish(0);
        });
      }).catch((e: Error) => {
        throw new OptionError(`${e.message}\n${QEMU_PREFIX}: Failed to initialize device for qtest: "${spec}"`);
      });
    }
    for (const c of mon.qmp) {
      await open(c, stdio, servers, sockets, (link) => {
        const session = qmpSession(m, state, (t) => link.output.write(t), () => finish(0));
        session.greet();
        link.input.setEncoding('utf8');
        link.input.on('data', (d: string) => session.receive(d));
      });
    }
  } catch (e) {
    cleanup(m, servers, sockets, log);
    err(`${QEMU_PREFIX}: ${(e as Error).message}`);
    return 1;
  }
  const status = await done;
  cleanup(m, servers, sockets, log);
  return status;
}

function cleanup(m: Machine, servers: readonly Server[], sockets: readonly Socket[], log: number | undefined): void {
  for (const s of sockets) s.destroy();
  for (const s of servers) s.close();
  if (log !== undefined) closeSync(log);
  try {
    m.close();
  } catch {
    // already closed
  }
}

/**
 * Open one character device and call `attach` for each connection: once for a client socket or
 * stdio, per accepted client for a listening socket (after the first, when `wait` is on).
 */
async function open(c: CharBackend, stdio: { input: Readable; output: Writable }, servers: Server[], sockets: Socket[], attach: (link: Link, viaServer: boolean) => void): Promise<void> {
  switch (c.kind) {
    case 'null':
      return;
    case 'stdio':
      attach({ input: stdio.input, output: stdio.output, socket: undefined }, false);
      return;
    case 'unix':
    case 'tcp': {
      const where = c.kind === 'unix' ? c.path : `${c.host}:${c.port}`;
      if (!c.server) {
        const socket = await new Promise<Socket>((resolve, reject) => {
          const s = c.kind === 'unix' ? createConnection(c.path) : createConnection(c.port, c.host);
          s.once('connect', () => resolve(s));
          s.once('error', (e: NodeJS.ErrnoException) => reject(new Error(`Failed to connect to '${where}': ${errnoText(e)}`)));
        });
        sockets.push(socket);
        attach({ input: socket, output: socket, socket }, false);
        return;
      }
      if (c.kind === 'unix') {
        try {
          unlinkSync(c.path);
        } catch {
          // no stale socket
        }
      }
      let first: () => void = () => undefined;
      const connected = new Promise<void>((resolve) => (first = resolve));
      const server = createServer((socket) => {
        sockets.push(socket);
        attach({ input: socket, output: socket, socket }, true);
        first();
      });
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', (e: NodeJS.ErrnoException) => reject(new Error(`Failed to bind socket to ${where}: ${errnoText(e)}`)));
        if (c.kind === 'unix') server.listen(c.path, resolve);
        else server.listen(c.port, c.host, resolve);
      });
      if (c.wait) await connected;
      return;
    }
  }
}

/** strerror() text of a Node system error, as QEMU prints it. */
function errnoText(e: NodeJS.ErrnoException): string {
  return (e.code !== undefined ? strerrorOfName(e.code) : undefined) ?? e.message;
}
