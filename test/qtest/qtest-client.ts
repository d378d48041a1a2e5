// A small qtest/QMP client for tests, speaking to a qemu-system-aarch64 (QEMU or cmdqv's
// drop-in) the way libqtest does: the test listens on two unix sockets, starts the binary with
// -qtest unix:SOCK and -chardev socket,path=QMP + -mon chardev=...,mode=control, and accepts.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QtestOps, reply } from './qtest-ops.js';

/** Lines from a socket, awaited one at a time. */
class LineReader {
  private buf = '';
  private readonly lines: string[] = [];
  private waiters: ((l: string | undefined) => void)[] = [];
  private ended = false;

  constructor(socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.buf += d;
      for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n')) {
        this.push(this.buf.slice(0, nl));
        this.buf = this.buf.slice(nl + 1);
      }
    });
    socket.on('close', () => {
      this.ended = true;
      for (const w of this.waiters.splice(0)) w(undefined);
    });
  }

  private push(line: string): void {
    const w = this.waiters.shift();
    if (w) w(line);
    else this.lines.push(line);
  }

  next(): Promise<string | undefined> {
    const l = this.lines.shift();
    if (l !== undefined || this.ended) return Promise.resolve(l);
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}

/** A running machine driven over qtest and QMP. */
export class QtestClient extends QtestOps {
  /** `IRQ raise N` / `IRQ lower N` lines seen so far, in order. */
  readonly irqs: string[] = [];
  /** QMP events seen so far. */
  readonly events: { event: string; data?: unknown }[] = [];
  stderr = '';

  private constructor(
    readonly proc: ChildProcess,
    private readonly qtest: Socket,
    private readonly qtestLines: LineReader,
    private readonly qmp: Socket,
    private readonly qmpLines: LineReader,
    private readonly dir: string,
  ) {
    super();
  }

  /** Start `binary` (argv before its own args, e.g. [node, script]) with `args` and connect. */
  static async start(binary: readonly string[], args: readonly string[], qmpOption: 'mon' | 'qmp' = 'mon'): Promise<QtestClient> {
    const dir = mkdtempSync(join(tmpdir(), 'cmdqv-qtest-'));
    const qsock = join(dir, 'qtest.sock');
    const msock = join(dir, 'qmp.sock');
    const accept = (path: string) => {
      const server = createServer();
      const conn = new Promise<Socket>((resolve) => server.once('connection', (s) => {
        server.close();
        resolve(s);
      }));
      // Wrapped: resolving with the promise itself would wait for the connection.
      return new Promise<{ conn: Promise<Socket> }>((resolve) => server.listen(path, () => resolve({ conn })));
    };
    const { conn: qconn } = await accept(qsock);
    const { conn: mconn } = await accept(msock);
    // QMP as libqtest asks for it (-chardev + -mon) or in the short form (-qmp unix:PATH).
    const qmpArgs = qmpOption === 'mon' ? ['-chardev', `socket,path=${msock},id=char0`, '-mon', 'chardev=char0,mode=control'] : ['-qmp', `unix:${msock}`];
    const proc = spawn(binary[0]!, [...binary.slice(1), '-qtest', `unix:${qsock}`, '-qtest-log', '/dev/null', ...qmpArgs, '-display', 'none', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<never>((_, reject) => proc.once('exit', (code) => reject(new Error(`exited with ${code} before connecting: ${stderr}`))));
    const [q, m] = await Promise.race([Promise.all([qconn, mconn]), exited]);
    const c = new QtestClient(proc, q, new LineReader(q), m, new LineReader(m), dir);
    proc.stderr!.on('data', (d: Buffer) => (c.stderr += d.toString()));
    const greeting = await c.qmpLines.next();
    if (!greeting?.includes('"QMP"')) throw new Error(`no QMP greeting: ${greeting}`);
    await c.qmpCall('qmp_capabilities');
    return c;
  }

  /** Send one qtest request; returns its reply line (IRQ lines are collected in {@link irqs}). */
  override async cmd(line: string): Promise<string> {
    this.qtest.write(`${line}\n`);
    for (;;) {
      const l = await this.qtestLines.next();
      if (l === undefined) throw new Error(`qtest connection closed during '${line}'`);
      if (l.startsWith('IRQ ')) this.irqs.push(l);
      else return l;
    }
  }

  /** Lines the server sent without a request (IRQs after a reply), read until `until` matches. */
  async readIrq(): Promise<string> {
    const l = await this.qtestLines.next();
    if (l === undefined) throw new Error('qtest connection closed');
    this.irqs.push(l);
    return l;
  }

  /** Run a QMP command; returns the whole reply object. */
  async qmpCall(execute: string, args?: Record<string, unknown>): Promise<{ return?: unknown; error?: { class: string; desc: string } }> {
    this.qmp.write(`${JSON.stringify({ execute, ...(args ? { arguments: args } : {}) })}\n`);
    for (;;) {
      const l = await this.qmpLines.next();
      if (l === undefined) throw new Error(`QMP closed during ${execute}`);
      const o = JSON.parse(l) as { event?: string; data?: unknown; return?: unknown; error?: { class: string; desc: string } };
      if (o.event) this.events.push({ event: o.event, data: o.data });
      else return o;
    }
  }

  /** Wait for the process to end; its exit status. */
  async exit(): Promise<number | null> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return this.proc.exitCode;
    return new Promise((resolve) => this.proc.once('exit', (code) => resolve(code)));
  }

  /**
   * End the run as libqtest's qtest_quit does: SIGTERM (QEMU keeps running when its qtest
   * connection closes), then close and clean up.
   */
  async quit(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGTERM');
    await this.close();
  }

  /** Close both connections, stop the process if needed, remove the sockets' directory. */
  async close(): Promise<void> {
    this.qtest.destroy();
    this.qmp.destroy();
    const t = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
    await this.exit();
    clearTimeout(t);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export { reply };
