/**
 * `cmdqv serve [--port N] [run options] [-- QEMU options]`: the web view. Boots the machine from
 * `cmdqv run`'s options, serves the page on 127.0.0.1 and runs until SIGINT (or SIGTERM).
 */

import { startServer, type WebServer } from '../serve/server.js';
import { Session } from '../serve/session.js';
import { parseRunOptions, type RunOptions } from './run-command.js';
import { UsageError } from './usage-error.js';

/** Events each of the timeline's traces records unless `--trace-limit` says otherwise (the browser draws them all). */
export const WEB_TRACE_LIMIT = 200_000;

export const SERVE_USAGE = `usage: cmdqv serve [--port N] [run options] [-- QEMU options]

Serves a web view of the machine on http://127.0.0.1:PORT/ (only on the loopback address): the
stack with counters on each seam, the VINTF/VCMDQ table, the three paths side by side, a register
inspector, a timeline of the Perfetto trace (trapped vs VCMDQ), and buttons to run the workload,
inject an illegal command and reset. --port 0 (the default) picks a free port; the URL is printed.
Ctrl-C stops it.

The run options (--ops, --batch, --pages, --cmdqv, --verify-every, --skip-invalidation, --trace,
--trace-limit, --cost-model, --inject) and the QEMU options are cmdqv run's; --ops and --batch
are the page's defaults, --trace-limit bounds each timeline trace (default ${WEB_TRACE_LIMIT} events).`;

/** run options that write or print a report, which the web view does not do. */
const NOT_FOR_SERVE = ['--json', '--compare', '--trace-out', '--no-error', '--record', '--save-at', '--save', '--restore'];

/** What {@link serveCommand} parsed. */
export interface ServeOptions {
  readonly port: number;
  readonly run: RunOptions;
}

/**
 * Parse `serve`'s options: `--port N` (or `--port=N`), then `cmdqv run`'s.
 * @throws UsageError naming the bad option
 */
export function parseServeOptions(argv: readonly string[]): ServeOptions {
  const split = argv.indexOf('--');
  const own = split >= 0 ? argv.slice(0, split) : [...argv];
  const rest: string[] = [];
  let port = 0;
  for (let i = 0; i < own.length; i++) {
    const a = own[i]!;
    let v: string | undefined;
    if (a === '--port') {
      v = own[++i];
      if (v === undefined) throw new UsageError("option '--port <value>' argument missing");
    } else if (a.startsWith('--port=')) v = a.slice('--port='.length);
    else {
      const name = a.split('=')[0]!;
      if (NOT_FOR_SERVE.includes(name)) throw new UsageError(`${name} is a cmdqv run option the web view does not take`);
      rest.push(a);
      continue;
    }
    const n = Number(v);
    if (!/^\d+$/.test(v) || n > 65535) throw new UsageError(`--port must be an integer in 0..65535, got '${v}'`);
    port = n;
  }
  const run = parseRunOptions([...rest, ...(split >= 0 ? argv.slice(split) : [])]);
  const limited = rest.some((a) => a === '--trace-limit' || a.startsWith('--trace-limit='));
  return { port, run: limited ? run : { ...run, traceLimit: WEB_TRACE_LIMIT } };
}

/**
 * Start the server and wait for SIGINT/SIGTERM; resolves with the exit status.
 * @throws UsageError / CliError / OptionError for bad options, before anything listens
 */
export async function serveCommand(argv: readonly string[], out: (s: string) => void, err: (s: string) => void): Promise<number> {
  const o = parseServeOptions(argv);
  const session = new Session(o.run);
  for (const e of session.state().events) err(e);
  let web: WebServer;
  try {
    web = await startServer(session, o.port);
  } catch (e) {
    session.close();
    const code = (e as NodeJS.ErrnoException).code;
    err(`cmdqv: serve: cannot listen on ${o.port === 0 ? 'a free port' : `port ${o.port}`} of 127.0.0.1: ${code ?? (e as Error).message}`);
    return 1;
  }
  out(`cmdqv serve: ${web.url}  (Ctrl-C stops it)`);
  return new Promise<number>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      err(`cmdqv serve: ${signal}: stopping`);
      void web.close().then(() => resolve(0));
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    web.server.once('close', () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve(0);
    });
  });
}
