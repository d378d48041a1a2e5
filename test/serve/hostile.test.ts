// `cmdqv serve`'s HTTP API is user input: oversized and malformed bodies, wrong types, giant
// workloads, unknown routes and methods, path traversal, many requests at once, register reads
// of any offset and width, and a request left half-sent must each get a clear 4xx answer (or be
// dropped at shutdown), never an exception, a hang or an allocation sized from the request.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseServeOptions } from '../../src/cli/serve-command.js';
import type { RegisterBlock, RegisterReadout } from '../../src/serve/api.js';
import { startServer, type WebServer } from '../../src/serve/server.js';
import { httpCall, type Reply } from './http-call.js';
import { MAX_BATCH, MAX_OPS, Session } from '../../src/serve/session.js';

const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'cli', 'bin.js');

let web: WebServer;
before(async () => {
  web = await startServer(new Session(parseServeOptions(['--ops', '16', '--batch', '8']).run), 0);
});
after(async () => {
  await web.close();
});

const call = (method: string, path: string, body?: string | Buffer, headers?: Record<string, string>): Promise<Reply> => httpCall(web.url, method, path, body, headers);

/** Send `raw` bytes as they are (a path the URL class would normalise away), and read the status line. */
function raw(text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(web.port, '127.0.0.1', () => s.write(text));
    let got = '';
    s.setEncoding('latin1');
    s.on('data', (c: string) => (got += c));
    s.on('end', () => resolve(got));
    s.on('error', reject);
  });
}

const errorOf = (r: Reply) => (JSON.parse(r.text) as { error: string }).error;

test('an oversized body is refused with 413 before it is all read', async () => {
  const r = await call('POST', '/api/run', Buffer.alloc(8 << 20, 0x20));
  assert.equal(r.status, 413);
  assert.match(errorOf(r), /request body over 65536 bytes/);
});

test('malformed JSON, wrong types and giant workloads are 400 with the same limits as cmdqv run', async () => {
  const cases: [string, RegExp][] = [
    ['{', /request body is not JSON/],
    ['[1,2]', /must be a JSON object/],
    ['"x"', /must be a JSON object/],
    ['null', /must be a JSON object/],
    ['{"ops":"many"}', /ops must be an integer in 1\.\.1000000, got "many"/],
    ['{"ops":1.5}', /ops must be an integer/],
    ['{"ops":-1}', /ops must be an integer/],
    ['{"ops":1e300}', /ops must be an integer in 1\.\.1000000/],
    [`{"ops":${MAX_OPS + 1}}`, /ops must be an integer in 1\.\.1000000/],
    [`{"batch":${MAX_BATCH + 1}}`, /batch must be an integer in 1\.\.4096/],
    ['{"batch":[8]}', /batch must be an integer/],
    ['{"ops":{"valueOf":5}}', /ops must be an integer/],
    ['{"ops":8,"frobnicate":1}', /unknown field 'frobnicate'/],
    ['{"__proto__":{"ops":5}}', /unknown field '__proto__'/],
  ];
  for (const [body, re] of cases) {
    const r = await call('POST', '/api/run', body);
    assert.equal(r.status, 400, `${body}: ${r.text}`);
    assert.match(errorOf(r), re, body);
  }
  for (const q of ['ops=abc', 'ops=99999999', 'batch=0', 'ops=0x10', 'ops=', 'ops=1&ops=2']) {
    const r = await call('GET', `/api/compare?${q}`);
    assert.equal(r.status, 400, `${q}: ${r.text}`);
  }
  assert.equal((await call('GET', '/api/trace?path=../../etc/passwd')).status, 400);
  // A body that is not JSON at all (a form post) is refused by type.
  assert.equal((await call('POST', '/api/run', 'ops=5', { 'content-type': 'application/x-www-form-urlencoded' })).status, 415);
});

test('snapshot ids: anything but a snapshot the session holds is 400 or 404; bodies are capped', async () => {
  assert.equal((await call('POST', '/api/restore', Buffer.alloc(8 << 20, 0x20))).status, 413);
  const cases: [string, number, RegExp][] = [
    ['{"id":{"valueOf":1}}', 400, /id must be a snapshot id \(an integer from 1\), got \{"valueOf":1\}/],
    ['{"id":[1]}', 400, /id must be a snapshot id/],
    ['{"id":null}', 400, /id must be a snapshot id/],
    ['{"id":true}', 400, /id must be a snapshot id/],
    ['{"id":-1}', 400, /id must be a snapshot id/],
    ['{"id":1e300}', 400, /id must be a snapshot id/],
    ['{"id":"0x1"}', 400, /id must be a snapshot id/],
    [`{"id":"${'9'.repeat(5000)}"}`, 400, /^id must be a snapshot id \(an integer from 1\), got "9{30}/],
    ['{"__proto__":{"id":1}}', 400, /unknown field '__proto__' \(this request takes id\)/],
    ['{"id":123456789}', 404, /^no snapshot 123456789 /],
  ];
  for (const [body, status, re] of cases) {
    const r = await call('POST', '/api/restore', body);
    assert.equal(r.status, status, `${body.slice(0, 60)}: ${r.text}`);
    assert.match(errorOf(r), re, body.slice(0, 60));
    assert.ok(errorOf(r).length < 300, 'the message quotes at most a little of the input');
  }
  for (const q of ['id=abc', 'id=', 'id=1&id=2', 'id=../../etc/passwd', 'id=-1', `id=${'1'.repeat(400)}`]) {
    const r = await call('GET', `/api/snapshot-image?${q}`);
    assert.equal(r.status, 400, `${q}: ${r.text}`);
  }
});

test('unknown routes are 404; a known route with another method is 405 naming the ones it takes', async () => {
  assert.equal((await call('GET', '/api/nope')).status, 404);
  assert.equal((await call('GET', '/nope.html')).status, 404);
  for (const [method, path, allow] of [
    ['GET', '/api/run', 'POST'],
    ['DELETE', '/api/state', 'GET'],
    ['PUT', '/api/reset', 'POST'],
    ['POST', '/api/registers', 'GET'],
    ['POST', '/', 'GET'],
    ['PATCH', '/style.css', 'GET'],
    ['GET', '/api/restore', 'POST'],
    ['POST', '/api/snapshot-image', 'GET'],
    ['PUT', '/api/snapshots', 'GET'],
  ] as const) {
    const r = await call(method, path, method === 'POST' ? '{}' : undefined, method === 'POST' ? { 'content-type': 'application/json' } : {});
    assert.equal(r.status, 405, `${method} ${path}: ${r.text}`);
    assert.equal(r.headers.allow, allow);
    assert.match(errorOf(r), new RegExp(`${method} is not allowed on ${path.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`));
  }
});

test('path traversal in the static routes finds nothing outside the page', async () => {
  for (const p of ['/../package.json', '/%2e%2e/package.json', '/%2E%2E%2Fpackage.json', '/..%2fpackage.json', '/web/../package.json', '//package.json', '/.%2e/.%2e/etc/passwd', '/app.js/../../package.json', '/index.html%00.json', '/%5c..%5cpackage.json']) {
    const reply = await raw(`GET ${p} HTTP/1.1\r\nHost: 127.0.0.1:${web.port}\r\nConnection: close\r\n\r\n`);
    const status = Number(/^HTTP\/1\.1 (\d+)/.exec(reply)?.[1]);
    assert.ok(status === 404 || status === 400, `${p}: ${reply.split('\r\n')[0]}`);
    assert.doesNotMatch(reply, /"devDependencies"|root:x:0/, p);
  }
});

test('register reads of any offset and width: a register is decoded, anything else is answered as unmapped or refused', async () => {
  const blocks = JSON.parse((await call('GET', '/api/registers')).text) as RegisterBlock[];
  const b = blocks.find((x) => x.id.endsWith('.vintf0.vcmdq0.page0')) ?? blocks[0]!;
  const reg = b.registers[0]!;
  const hit = await call('GET', `/api/register?block=${b.id}&offset=0x${reg.offset.toString(16)}&width=${reg.width}`);
  assert.equal(hit.status, 200, hit.text);
  assert.equal((JSON.parse(hit.text) as RegisterReadout).name, reg.name);
  for (const [offset, width, status, re] of [
    ['0x7ffc', '32', 404, /has no 32-bit register at offset 0x7ffc/],
    ['0xffffffffffffffff', '32', 400, /offset must be/],
    ['-4', '32', 400, /offset must be/],
    ['abc', '32', 400, /offset must be/],
    ['1e9', '32', 400, /offset must be/],
    ['0x2', '32', 400, /not aligned/],
    ['0x0', '16', 400, /width must be 32 or 64/],
    ['0x0', 'x', 400, /width must be 32 or 64/],
    [`0x${reg.offset.toString(16)}`, reg.width === 32 ? '64' : '32', 404, /has no (32|64)-bit register/],
  ] as const) {
    const r = await call('GET', `/api/register?block=${encodeURIComponent(b.id)}&offset=${encodeURIComponent(offset)}&width=${width}`);
    assert.equal(r.status, status, `${offset}/${width}: ${r.text}`);
    assert.match(errorOf(r), re);
  }
  assert.equal((await call('GET', '/api/register?block=nope&name=x')).status, 404);
  assert.equal((await call('GET', `/api/register?block=${b.id}`)).status, 400);
  assert.equal((await call('GET', `/api/register?block=${b.id}&name=${'x'.repeat(10_000)}`)).status, 404);
});

test('many requests at once, and requests while a run is in progress: each answered, the run whole', async () => {
  const run = call('POST', '/api/run', '{"ops":64}');
  const others = Array.from({ length: 60 }, (_, i) => (i % 3 === 0 ? call('GET', '/api/state') : i % 3 === 1 ? call('GET', '/api/registers') : call('POST', '/api/run', '{"ops":"x"}')));
  const [r, ...rest] = await Promise.all([run, ...others]);
  assert.equal(r!.status, 200, r!.text);
  assert.equal((JSON.parse(r!.text) as { ops: number }).ops, 64);
  for (const [i, x] of rest.entries()) assert.equal(x.status, i % 3 === 2 ? 400 : 200, x.text);
  // Event streams are capped: the ones past the cap are refused, not held open.
  const statuses = await Promise.all(
    Array.from({ length: 40 }, () => new Promise<number>((resolve, reject) => {
      const req = request(new URL('/api/events', web.url), (res) => {
        resolve(res.statusCode ?? 0);
        res.destroy();
      });
      req.on('error', reject);
      req.end();
    })),
  );
  assert.ok(statuses.every((s) => s === 200 || s === 503), statuses.join());
});

test('a half-sent request is dropped in seconds, not minutes; connections are capped', () => {
  assert.ok(web.server.headersTimeout > 0 && web.server.headersTimeout <= 10_000, `headersTimeout ${web.server.headersTimeout}`);
  assert.ok(web.server.requestTimeout > 0 && web.server.requestTimeout <= 30_000, `requestTimeout ${web.server.requestTimeout}`);
  assert.ok(web.server.maxConnections > 0 && web.server.maxConnections <= 1024, `maxConnections ${web.server.maxConnections}`);
});

test('a request left half-sent does not keep the server from stopping on SIGINT', async () => {
  const child = spawn(process.execPath, [BIN, 'serve', '--ops', '8', '--batch', '8'], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (c: string) => {
        out += c;
        const m = /http:\/\/127\.0\.0\.1:\d+\//.exec(out);
        if (m) resolve(m[0]);
      });
      child.on('exit', (code) => reject(new Error(`serve exited with ${code}`)));
    });
    const port = Number(new URL(url).port);
    // Slowloris: headers never finished, and a body promised but never sent.
    const sockets = [connect(port, '127.0.0.1'), connect(port, '127.0.0.1')];
    await Promise.all(sockets.map((s) => new Promise((r) => s.once('connect', r))));
    sockets[0]!.write(`GET /api/state HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nX-Slow: `);
    sockets[1]!.write(`POST /api/run HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"ops":`);
    for (const s of sockets) s.on('error', () => {});
    await new Promise((r) => setTimeout(r, 200));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGINT');
    const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('hung'), 10_000))]);
    assert.equal(code, 0);
    for (const s of sockets) s.destroy();
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});
