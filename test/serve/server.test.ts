// `cmdqv serve`: the server starts on a free port of 127.0.0.1 only, serves the page and the API
// over the machine, refuses bad options with a clear error, and stops cleanly on SIGINT.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { request, type IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import { networkInterfaces } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseServeOptions } from '../../src/cli/serve-command.js';
import type { InjectSummary, MachineState, RegisterBlock, RegisterReadout, RunSummary, CompareTable, SnapshotInfo, SnapshotSaved, VcmdqRow } from '../../src/serve/api.js';
import { WORKLOAD_HEADER } from '../../src/serve/api.js';
import { startServer, type WebServer } from '../../src/serve/server.js';
import { httpCall, type Reply } from './http-call.js';
import { MAX_SNAPSHOTS, Session } from '../../src/serve/session.js';

const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'cli', 'bin.js');

let web: WebServer;

before(async () => {
  web = await startServer(new Session(parseServeOptions(['--ops', '32', '--batch', '8']).run), 0);
});
after(async () => {
  await web.close();
});

const call = (method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<Reply> => httpCall(web.url, method, path, body, headers);

async function json<T>(method: string, path: string, body?: unknown): Promise<T> {
  const r = await call(method, path, body);
  assert.equal(r.status, 200, `${method} ${path}: ${r.text}`);
  return JSON.parse(r.text) as T;
}

test('it listens on 127.0.0.1 only, on the free port it was given 0 for', async () => {
  const addr = web.server.address();
  assert.ok(addr !== null && typeof addr === 'object');
  assert.equal(addr.address, '127.0.0.1');
  assert.ok(addr.port > 0);
  assert.equal(web.url, `http://127.0.0.1:${addr.port}/`);
  // Another address of this host (if it has one) must not answer on that port.
  const other = Object.values(networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal);
  if (!other) return;
  const refused = await new Promise<boolean>((resolve) => {
    const s = connect(addr.port, other.address);
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
  assert.ok(refused, `port ${addr.port} must not be reachable on ${other.address}`);
});

test('it serves the page, its stylesheet and its script', async () => {
  const page = await call('GET', '/');
  assert.equal(page.status, 200);
  assert.match(String(page.headers['content-type']), /text\/html/);
  assert.match(page.text, /<script type="module" src="\/app\.js"><\/script>/);
  assert.match(page.text, /id="timeline"/);
  const js = await call('GET', '/app.js');
  assert.equal(js.status, 200);
  assert.match(String(js.headers['content-type']), /javascript/);
  assert.match(js.text, /\/api\/state/);
  assert.equal((await call('GET', '/style.css')).status, 200);
  const missing = await call('GET', '/nothing-here');
  assert.equal(missing.status, 404);
  assert.match(JSON.parse(missing.text).error, /not found: \/nothing-here/);
});

test('state, run, inject and reset: the seam counters and the VCMDQ table follow the machine', async () => {
  const s0 = await json<MachineState>('GET', '/api/state');
  assert.deepEqual(s0.defaults, { ops: 32, batch: 8 });
  assert.equal(s0.vcmdqs.length, 2);
  assert.ok(s0.smmus[0]!.cmdqvBase !== undefined);
  const run = await json<RunSummary>('POST', '/api/run', { ops: 32, batch: 8 });
  assert.equal(run.vcmdq.commands, 32);
  assert.equal(run.vcmdq.exits, 0);
  assert.equal(run.dmaFailed, 0);
  const c = run.state.counters;
  assert.ok(c.vcmdqCommands >= 32 + 4, `VCMDQ commands (32 + 4 CMD_SYNCs at least): ${c.vcmdqCommands}`);
  assert.ok(c.directAccesses > s0.counters.directAccesses);
  assert.ok(c.vmExits > s0.counters.vmExits);
  const q0 = run.state.vcmdqs[0]!;
  assert.ok(q0.hwQueueId !== undefined && q0.enabled);
  assert.ok(q0.prod >= 36 && q0.prod === q0.cons && q0.occupancy === 0, JSON.stringify(q0));

  const inj = await json<InjectSummary>('POST', '/api/inject');
  assert.ok(inj.injected);
  assert.ok(inj.error.some((l) => /tegra241_cmdqv_hw_queue_error .* cerror=1 on CMD_CFGI_STE/.test(l)), inj.error.join('\n'));
  assert.ok(inj.recovery.some((l) => /1 queue error\(s\) handled/.test(l)), inj.recovery.join('\n'));
  assert.equal(inj.queue?.enabled, true);
  assert.deepEqual(inj.queue?.errors, []);
  assert.equal(inj.queue?.consErr, 1);
  assert.equal(inj.state.injections, 1);
  assert.ok(inj.state.events.some((l) => l.includes('tegra241_cmdqv_err_map')));

  const reset = await json<MachineState>('POST', '/api/reset');
  assert.equal(reset.counters.vmExits, 0);
  assert.equal(reset.counters.vcmdqCommands, 0);
  assert.equal(reset.runs, 0);
  assert.equal(reset.vcmdqs[0]!.enabled, false, 'a system reset disables the VCMDQs');
});

test('bad requests are 4xx with a message naming the problem', async () => {
  const cases: [string, string, unknown, number, RegExp][] = [
    ['POST', '/api/run', { ops: 0, batch: 8 }, 400, /ops must be an integer in 1\.\.1000000, got 0/],
    ['POST', '/api/run', { ops: 8, batch: 'x' }, 400, /batch must be an integer in 1\.\.4096, got "x"/],
    ['POST', '/api/run', '{not json', 400, /not JSON/],
    ['POST', '/api/run', { ops: 8, batch: 4096 }, 200, /./],
    ['POST', '/api/run', { ops: 8, batch: 4096, pages: 1 }, 400, /unknown field 'pages' \(this request takes ops, batch\)/],
    ['GET', '/api/trace?path=emulated', undefined, 400, /path must be trapped or cmdqv, got 'emulated'/],
    ['GET', '/api/register?block=nope&name=CR0', undefined, 404, /no register block 'nope'/],
    ['GET', '/api/register?block=smmuv3.0&name=NOPE', undefined, 404, /has no register 'NOPE'/],
    ['POST', '/api/restore', { id: 999 }, 404, /^no snapshot 999 \(GET \/api\/snapshots lists them; the session keeps the latest 4, 256 MiB of images at most\)/],
    ['POST', '/api/restore', { id: 0 }, 400, /^id must be a snapshot id \(an integer from 1\), got 0/],
    ['POST', '/api/restore', { id: '1x' }, 400, /^id must be a snapshot id \(an integer from 1\), got "1x"/],
    ['POST', '/api/restore', { id: 1.5 }, 400, /^id must be a snapshot id/],
    ['POST', '/api/restore', {}, 400, /^a restore takes the snapshot id: \{ "id": N \}/],
    ['POST', '/api/restore', { id: 1, at: 2 }, 400, /unknown field 'at' \(this request takes id\)/],
    ['POST', '/api/snapshot', { id: 1 }, 400, /unknown field 'id' \(this request takes none\)/],
    ['GET', '/api/snapshot-image?id=999', undefined, 404, /^no snapshot 999/],
    ['GET', '/api/snapshot-image', undefined, 400, /^id must be a snapshot id/],
    ['GET', '/api/snapshot', undefined, 405, /GET is not allowed on \/api\/snapshot \(POST is\)/],
    ['POST', '/api/snapshots', {}, 405, /POST is not allowed on \/api\/snapshots \(GET is\)/],
    ['DELETE', '/api/state', undefined, 405, /DELETE is not allowed on \/api\/state \(GET is\)/],
    ['DELETE', '/api/nope', undefined, 404, /no such API: DELETE \/api\/nope/],
  ];
  for (const [method, path, body, status, message] of cases) {
    const r = await call(method, path, body);
    assert.equal(r.status, status, `${method} ${path} ${JSON.stringify(body)}: ${r.text}`);
    if (status !== 200) assert.match(JSON.parse(r.text).error, message);
  }
});

test('only its own pages may drive it: a foreign Host is refused, a POST needs a JSON body type', async () => {
  const rebound = await call('GET', '/api/state', undefined, { host: 'attacker.example:80' });
  assert.equal(rebound.status, 403);
  assert.match(JSON.parse(rebound.text).error, /Host 'attacker\.example:80' is not this server/);
  assert.equal((await call('GET', '/api/state', undefined, { host: `localhost:${web.port}` })).status, 200);
  const form = await call('POST', '/api/reset', 'x=1', { 'content-type': 'application/x-www-form-urlencoded' });
  assert.equal(form.status, 415);
  assert.match(JSON.parse(form.text).error, /JSON body/);
});

test('the register inspector lists the tables and decodes a register by its fields', async () => {
  const blocks = await json<RegisterBlock[]>('GET', '/api/registers');
  const ids = blocks.map((b) => b.id);
  assert.deepEqual(ids, ['smmuv3.0', 'smmuv3.0.cmdqv', 'smmuv3.0.vintf0', 'smmuv3.0.vintf0.vcmdq0.page0', 'smmuv3.0.vintf0.vcmdq0.page1', 'smmuv3.0.vintf0.vcmdq1.page0', 'smmuv3.0.vintf0.vcmdq1.page1']);
  assert.ok(blocks[0]!.registers.some((r) => r.name === 'IDR0' && r.offset === 0));
  await json('POST', '/api/run', { ops: 16, batch: 8 });
  const before = (await json<MachineState>('GET', '/api/state')).counters;
  const param = await json<RegisterReadout>('GET', '/api/register?block=smmuv3.0.cmdqv&name=PARAM');
  assert.equal(param.address, '0xc080004');
  const field = (r: RegisterReadout, name: string) => r.fields.find((f) => f.name === name);
  // The default host: CMDQV version 1, 2^7 = 128 VCMDQs, 2^6 = 64 VINTFs in the host; the VMM's
  // CMDQV shows the guest its own view (QEMU: 1 VINTF, 2 VCMDQs).
  assert.equal(field(param, 'CMDQV_VER')?.value, '0x1');
  const cons = await json<RegisterReadout>('GET', '/api/register?block=smmuv3.0.vintf0.vcmdq0.page0&name=CONS_INDX');
  const rd = field(cons, 'RD')!;
  assert.deepEqual([rd.msb, rd.lsb], [19, 0]);
  const q0 = (await json<MachineState>('GET', '/api/state')).vcmdqs[0]!;
  assert.equal(Number(rd.value), q0.cons);
  assert.equal(cons.fields[0]!.name, 'ERR', 'fields are listed from the top bit down');
  // Reading registers is a debugger's read: no VM exit, no modelled time.
  const after = (await json<MachineState>('GET', '/api/state')).counters;
  assert.deepEqual(after, before);
});

test('the timeline traces are the run\'s Perfetto JSON, with the workload window beside them', async () => {
  const req = 'ops=16&batch=8';
  const windows: Record<string, number> = {};
  for (const path of ['trapped', 'cmdqv']) {
    const r = await call('GET', `/api/trace?path=${path}&${req}`);
    assert.equal(r.status, 200);
    const [t0, t1] = String(r.headers[WORKLOAD_HEADER]).split(',').map(Number) as [number, number];
    assert.ok(t1 > t0 && t0 > 0, `${path} window ${t0},${t1}`);
    windows[path] = t1 - t0;
    const doc = JSON.parse(r.text) as { traceEvents: { ph: string; name: string; pid: number; ts?: number; args?: { name?: string } }[] };
    const processes = doc.traceEvents.filter((e) => e.ph === 'M' && e.name === 'process_name').map((e) => e.args?.name);
    assert.ok(processes.length >= 5, processes.join(', '));
    const inWindow = doc.traceEvents.filter((e) => e.ph === 'B' && e.ts !== undefined && e.ts >= t0 && e.ts <= t1);
    const silicon = doc.traceEvents.find((e) => e.ph === 'M' && e.name === 'process_name' && e.args?.name?.startsWith('CMDQV silicon'))?.pid;
    const onSilicon = inWindow.filter((e) => e.pid === silicon).length;
    if (path === 'trapped') {
      assert.ok(inWindow.some((e) => e.name === 'IOMMU_HWPT_INVALIDATE'), 'trapped: invalidations are ioctls');
      assert.equal(onSilicon, 0, 'trapped: nothing on the CMDQV silicon');
    } else {
      assert.ok(!inWindow.some((e) => e.name === 'IOMMU_HWPT_INVALIDATE'), 'cmdqv: no invalidation ioctl in the workload');
      assert.ok(onSilicon > 0, 'cmdqv: batches on the CMDQV silicon');
    }
  }
  assert.ok(windows.trapped! > windows.cmdqv!, `the trapped workload takes longer in modelled time (${windows.trapped} vs ${windows.cmdqv} µs)`);
  const cmp = await json<CompareTable>('GET', `/api/compare?${req}`);
  assert.deepEqual(cmp.head, ['', 'emulated SMMUv3', 'accel, trapped', 'accel + CMDQV']);
  assert.deepEqual(cmp.rows.find((r) => r[0] === 'VM exits for invalidations')?.slice(3), ['0']);
});

test('server-sent events carry the state after each action', async () => {
  const events: string[] = [];
  const res = await new Promise<IncomingMessage>((resolve, reject) => request(new URL('/api/events', web.url), resolve).on('error', reject).end());
  assert.match(String(res.headers['content-type']), /text\/event-stream/);
  res.setEncoding('utf8');
  const got = new Promise<void>((resolve) => {
    res.on('data', (c: string) => {
      events.push(c);
      if (events.join('').split('event: state').length > 2) resolve();
    });
  });
  await json('POST', '/api/reset');
  await got;
  res.destroy();
  const states = events.join('').split('event: state\ndata: ').slice(1).map((t) => JSON.parse(t.trim()) as MachineState);
  assert.equal(states.length, 2, 'the state on connect, then after the reset');
  assert.equal(states[1]!.counters.vmExits, 0);
});

/** Run the CLI; resolves with its status and output once it exits (after `whileUp` when it printed a URL). */
function cli(args: string[], whileUp?: (url: string, stop: () => void) => Promise<void>): Promise<{ code: number | null; signal: string | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [BIN, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stderr.on('data', (c: Buffer) => (err += c.toString()));
    p.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      const url = /http:\/\/127\.0\.0\.1:\d+\//.exec(out)?.[0];
      if (url && whileUp) {
        const f = whileUp;
        whileUp = undefined;
        f(url, () => p.kill('SIGINT')).catch(reject);
      }
    });
    p.on('error', reject);
    p.on('exit', (code, signal) => resolve({ code, signal, out, err }));
  });
}

test('the CLI prints the URL, serves, and stops cleanly on SIGINT', async () => {
  let page = '';
  const r = await cli(['--port', '0', '--ops', '8'], async (url, stop) => {
    page = await (await fetch(`${url}api/state`)).text();
    stop();
  });
  assert.equal(r.code, 0, r.err);
  assert.equal(r.signal, null);
  assert.match(r.out, /^cmdqv serve: http:\/\/127\.0\.0\.1:\d+\/ {2}\(Ctrl-C stops it\)\n$/);
  assert.match(r.err, /SIGINT: stopping/);
  assert.equal((JSON.parse(page) as MachineState).defaults.ops, 8);
});

test('bad options are refused before anything listens, naming the problem', async () => {
  const cases: [string[], number, RegExp][] = [
    [['--port', '70000'], 2, /^cmdqv: --port must be an integer in 0\.\.65535, got '70000'/],
    [['--port', 'abc'], 2, /^cmdqv: --port must be an integer in 0\.\.65535, got 'abc'/],
    [['--port'], 2, /^cmdqv: option '--port <value>' argument missing/],
    [['--json'], 2, /^cmdqv: --json is a cmdqv run option the web view does not take/],
    [['--ops', '0'], 2, /^cmdqv: --ops must be an integer in 1\.\.1000000, got '0'/],
    [['--frobnicate'], 2, /^cmdqv: Unknown option '--frobnicate'/],
    [['--', '-device', 'nonsense'], 1, /^qemu-system-aarch64: -device nonsense: 'nonsense' is not a valid device model name/],
    [['--port', String(web.port)], 1, new RegExp(`^cmdqv: serve: cannot listen on port ${web.port} of 127\\.0\\.0\\.1: EADDRINUSE`)],
  ];
  for (const [args, code, message] of cases) {
    const r = await cli(args);
    assert.equal(r.code, code, `serve ${args.join(' ')}: ${r.err}`);
    assert.match(r.err, message);
    assert.equal(r.out, '');
  }
});

/** Every register of every inspector block, as a debugger reads it. */
async function allRegisters(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const b of await json<RegisterBlock[]>('GET', '/api/registers')) {
    for (const r of b.registers) out[`${b.id}.${r.name}`] = (await json<RegisterReadout>('GET', `/api/register?block=${b.id}&name=${r.name}`)).value;
  }
  return out;
}

/** The VCMDQ table as the guest sees it: the host's HW queue ids behind the queues differ on another host. */
function guestView(rows: readonly VcmdqRow[]): Omit<VcmdqRow, 'hwQueueId'>[] {
  return rows.map(({ hwQueueId, ...r }) => {
    assert.ok(hwQueueId !== undefined, 'each VCMDQ keeps a host HW queue');
    return r;
  });
}

test('save, run on, restore: the machine, its counters, VCMDQ table and registers are those of the moment of saving', async () => {
  await json<RunSummary>('POST', '/api/run', { ops: 16, batch: 8 });
  const saved = await json<SnapshotSaved>('POST', '/api/snapshot');
  assert.ok(saved.saved.bytes > 0 && saved.saved.guestBooted);
  const at = { counters: saved.state.counters, vcmdqs: guestView(saved.state.vcmdqs), runs: saved.state.runs, injections: saved.state.injections };
  const regs = await allRegisters();
  assert.ok(Object.keys(regs).some((k) => /VCMDQ0?_?CONS|CONS/.test(k)), Object.keys(regs).join(' '));

  const more = await json<RunSummary>('POST', '/api/run', { ops: 24, batch: 8 });
  const after = { counters: more.state.counters, vcmdqs: guestView(more.state.vcmdqs) };
  await json<InjectSummary>('POST', '/api/inject');
  assert.notDeepEqual(more.state.vcmdqs, at.vcmdqs, 'the run moved the queues on');
  assert.notDeepEqual(await allRegisters(), regs);

  const restored = await json<MachineState>('POST', '/api/restore', { id: saved.saved.id });
  assert.deepEqual({ counters: restored.counters, vcmdqs: guestView(restored.vcmdqs), runs: restored.runs, injections: restored.injections }, at);
  assert.deepEqual(await allRegisters(), regs, 'every register reads as when saved');
  assert.ok(restored.events.some((l) => l.includes(`snapshot ${saved.saved.id} restored on a fresh host`)));

  // The restored guest runs on (its drivers came back with the VM), exactly as the first time.
  const again = await json<RunSummary>('POST', '/api/run', { ops: 24, batch: 8 });
  assert.equal(again.dmaFailed, 0);
  assert.deepEqual({ counters: again.state.counters, vcmdqs: guestView(again.state.vcmdqs) }, after);

  // The image downloads as the bytes Machine.save() wrote.
  const img = await call('GET', `/api/snapshot-image?id=${saved.saved.id}`);
  assert.equal(img.status, 200);
  assert.equal(img.headers['content-type'], 'application/octet-stream');
  assert.ok(img.text.startsWith('CMDQVIMG'));
  const list = await json<SnapshotInfo[]>('GET', '/api/snapshots');
  assert.deepEqual(list.at(-1), saved.saved);
});

test('the session keeps the latest few snapshots, oldest dropped', async () => {
  const ids: number[] = [];
  for (let k = 0; k < MAX_SNAPSHOTS + 2; k++) ids.push((await json<SnapshotSaved>('POST', '/api/snapshot')).saved.id);
  const list = await json<SnapshotInfo[]>('GET', '/api/snapshots');
  assert.deepEqual(list.map((s) => s.id), ids.slice(-MAX_SNAPSHOTS));
  assert.equal((await call('POST', '/api/restore', { id: ids[0] })).status, 404);
  assert.equal((await call('POST', '/api/restore', { id: ids.at(-1) })).status, 200);
});
