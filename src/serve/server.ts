/**
 * `cmdqv serve`'s HTTP server: plain node:http on 127.0.0.1 only. It serves the page (web/index.html,
 * web/style.css and the bundle dist/web/app.js) and the JSON API of ./api.ts over the
 * {@link Session}; state changes go to every open page as server-sent events.
 */

import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { TIMELINE_PATHS, WORKLOAD_HEADER, type TimelinePath } from './api.js';
import { RequestError, Session } from './session.js';

/** The only address the server listens on: the model is a local tool, not a network service. */
export const LOOPBACK = '127.0.0.1';
/** Largest request body taken (a run request is a few bytes). */
const MAX_BODY = 64 * 1024;

/** Time allowed to send a request's headers, and the whole request (ms). */
export const HEADERS_TIMEOUT_MS = 10_000;
export const REQUEST_TIMEOUT_MS = 30_000;
/** Most connections open at once. */
export const MAX_CONNECTIONS = 128;
/** Most event streams open at once (each holds a socket): pages past it get 503. */
const MAX_STREAMS = 16;

/** Every route and the methods it takes (a known path with another method is 405). */
const ROUTES: Readonly<Record<string, string>> = {
  '/api/state': 'GET',
  '/api/run': 'POST',
  '/api/inject': 'POST',
  '/api/reset': 'POST',
  '/api/snapshot': 'POST',
  '/api/snapshots': 'GET',
  '/api/restore': 'POST',
  '/api/snapshot-image': 'GET',
  '/api/compare': 'GET',
  '/api/trace': 'GET',
  '/api/registers': 'GET',
  '/api/register': 'GET',
  '/api/events': 'GET',
};

/** Fields each POST route's body may have (any other is refused, not ignored). */
const BODY_FIELDS: Readonly<Record<string, readonly string[]>> = { '/api/run': ['ops', 'batch'], '/api/restore': ['id'] };

/** The repository (or package) root: this file runs from dist/src/serve. */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** The page's files: path → [file under the root, content type]. */
const STATIC: Readonly<Record<string, readonly [string, string]>> = {
  '/': ['web/index.html', 'text/html; charset=utf-8'],
  '/index.html': ['web/index.html', 'text/html; charset=utf-8'],
  '/style.css': ['web/style.css', 'text/css; charset=utf-8'],
  '/app.js': ['dist/web/app.js', 'text/javascript; charset=utf-8'],
};

/** A running server. */
export interface WebServer {
  /** `http://127.0.0.1:PORT/`. */
  readonly url: string;
  readonly port: number;
  readonly server: Server;
  /** Stop listening, end the event streams and the machine. */
  close(): Promise<void>;
}

/**
 * Listen on 127.0.0.1:`port` (0: a free port).
 * @throws the listen error (e.g. EADDRINUSE) as a rejected promise
 */
export async function startServer(session: Session, port: number): Promise<WebServer> {
  const streams = new Set<ServerResponse>();
  const send = (event: string, data: unknown) => {
    const text = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    for (const s of streams) s.write(text);
  };
  session.onChange = (state) => send('state', state);
  let hosts: readonly string[] = [];
  const server = createServer((req, res) => {
    // Only pages of this server may drive it: a Host other than its own address is a page of
    // another site reaching it through DNS rebinding; a cross-site form cannot send a JSON
    // body type without a CORS preflight, which this server never grants.
    if (!hosts.includes(req.headers.host ?? '')) return reply(res, 403, { error: `Host '${req.headers.host ?? ''}' is not this server (${hosts.join(' or ')})` });
    if (req.method === 'POST' && !/^application\/json\b/.test(req.headers['content-type'] ?? '')) {
      return reply(res, 415, { error: 'POST requests take a JSON body (content-type: application/json)' });
    }
    handle(session, req, res, streams).catch((e: unknown) => reply(res, ...failure(e)));
  });
  // A request left half-sent (slowloris) is dropped after these, not held for Node's 5 minutes;
  // connections beyond the cap are refused (each open one holds a socket).
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  server.maxConnections = MAX_CONNECTIONS;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, LOOPBACK, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  hosts = [`${LOOPBACK}:${bound}`, `localhost:${bound}`];
  return {
    url: `http://${LOOPBACK}:${bound}/`,
    port: bound,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of streams) s.end();
        streams.clear();
        server.close(() => resolve());
        server.closeAllConnections();
        session.close();
      }),
  };
}

/** Status and JSON body for an error: the page's mistakes are 4xx with their message, the rest 500. */
function failure(e: unknown): [number, unknown] {
  if (e instanceof RequestError) return [e.status, { error: e.message }];
  return [500, { error: `internal error: ${e instanceof Error ? e.message : String(e)}` }];
}

function reply(res: ServerResponse, status: number, body: unknown, type = 'application/json; charset=utf-8', headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  // A body refused part-read leaves the rest on the socket: the connection ends with the reply.
  if (status === 413) headers = { ...headers, connection: 'close' };
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', ...headers });
  res.end(text);
}

async function readJson(req: IncomingMessage, fields: readonly string[] = []): Promise<Record<string, unknown>> {
  let size = 0;
  const parts: Buffer[] = [];
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new RequestError(`request body over ${MAX_BODY} bytes`, 413);
    parts.push(chunk as Buffer);
  }
  const text = Buffer.concat(parts).toString('utf8').trim();
  if (text === '') return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new RequestError('request body is not JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new RequestError('request body must be a JSON object');
  const unknown = Object.keys(v).find((k) => !fields.includes(k));
  if (unknown !== undefined) throw new RequestError(`unknown field '${unknown.slice(0, 40)}'${fields.length ? ` (this request takes ${fields.join(', ')})` : ' (this request takes none)'}`);
  return v as Record<string, unknown>;
}

async function handle(session: Session, req: IncomingMessage, res: ServerResponse, streams: Set<ServerResponse>): Promise<void> {
  // Origin-form targets only, parsed as a path ('//x' is a path here, not another host).
  const target = req.url ?? '/';
  if (!target.startsWith('/')) throw new RequestError(`request target must be a path, got '${target.slice(0, 80)}'`);
  const url = new URL(`http://localhost${target}`);
  const q = url.searchParams;
  const method = req.method ?? 'GET';
  const route = `${method} ${url.pathname}`;
  const workload = (o: Record<string, unknown>) => Session.request(o.ops ?? session.options.ops, o.batch ?? session.options.batch);
  const one = (name: string) => {
    const all = q.getAll(name);
    if (all.length > 1) throw new RequestError(`${name} is given ${all.length} times`);
    return all[0];
  };
  const fromQuery = () => workload({ ops: one('ops'), batch: one('batch') });
  const allowed = STATIC[url.pathname] ? 'GET' : ROUTES[url.pathname];
  if (allowed !== undefined && allowed !== method) {
    return reply(res, 405, { error: `${method} is not allowed on ${url.pathname} (${allowed} is)` }, undefined, { allow: allowed });
  }
  const file = method === 'GET' ? STATIC[url.pathname] : undefined;
  if (file) {
    let body: string;
    try {
      body = readFileSync(ROOT + file[0], 'utf8');
    } catch {
      throw new RequestError(`${file[0]} is missing: run \`npm run build\` first`, 500);
    }
    reply(res, 200, body, file[1]);
    return;
  }
  switch (route) {
    case 'GET /api/state':
      return reply(res, 200, session.state());
    case 'POST /api/run':
      return reply(res, 200, session.run(workload(await readJson(req, BODY_FIELDS['/api/run']))));
    case 'POST /api/inject':
      await readJson(req);
      return reply(res, 200, session.inject());
    case 'POST /api/reset':
      await readJson(req);
      return reply(res, 200, session.reset());
    case 'POST /api/snapshot':
      await readJson(req);
      return reply(res, 200, session.saveSnapshot());
    case 'GET /api/snapshots':
      return reply(res, 200, session.snapshotList());
    case 'POST /api/restore': {
      const body = await readJson(req, BODY_FIELDS['/api/restore']);
      if (body.id === undefined) throw new RequestError('a restore takes the snapshot id: { "id": N } (GET /api/snapshots lists them)');
      return reply(res, 200, session.restoreSnapshot(body.id));
    }
    case 'GET /api/snapshot-image': {
      const { info, image } = session.snapshotImage(one('id') ?? '');
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'cache-control': 'no-store', 'content-disposition': `attachment; filename="cmdqv-snapshot-${info.id}.img"` });
      res.end(image);
      return;
    }
    case 'GET /api/compare':
      return reply(res, 200, session.compare(fromQuery()));
    case 'GET /api/trace': {
      const path = one('path') ?? '';
      if (!(TIMELINE_PATHS as readonly string[]).includes(path)) throw new RequestError(`path must be ${TIMELINE_PATHS.join(' or ')}, got '${path}'`);
      const t = session.trace(path as TimelinePath, fromQuery());
      // The trace is exactly what `cmdqv run --trace-out` writes; where the workload starts
      // and ends in it (µs, after the boot) travels beside it.
      res.setHeader(WORKLOAD_HEADER, t.workloadNs.map((ns) => ns / 1000).join(','));
      return reply(res, 200, t.json);
    }
    case 'GET /api/registers':
      return reply(res, 200, session.registerBlocks());
    case 'GET /api/register':
      if (one('offset') !== undefined) return reply(res, 200, session.readRegisterAt(one('block') ?? '', one('offset')!, one('width') ?? '32'));
      if (one('name') === undefined) throw new RequestError('a register read takes block and name, or block, offset and width');
      return reply(res, 200, session.readRegister(one('block') ?? '', one('name')!));
    case 'GET /api/events':
      if (streams.size >= MAX_STREAMS) throw new RequestError(`${MAX_STREAMS} event streams are open already`, 503);
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
      res.write(`event: state\ndata: ${JSON.stringify(session.state())}\n\n`);
      streams.add(res);
      req.on('close', () => streams.delete(res));
      return;
    default:
      throw new RequestError(url.pathname.startsWith('/api/') ? `no such API: ${route}` : `not found: ${url.pathname}`, 404);
  }
}
