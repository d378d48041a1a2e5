// A recording is user input (it comes attached to bug reports): a seeded hostile campaign on
// what comes after the CRC. Valid recordings (default run, --cmdqv off, --inject) are decoded,
// their records and header edited into hostile shapes, re-sealed with valid CRCs by the format
// module's own encoder, and replayed through the CLI. Every case must end in a one-line format
// error or a divergence report (exit status 1; status 0 only for an edit replay cannot see),
// with no other exception escaping, in bounded time and memory, and with every machine the
// replay built closed again.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { after, test } from 'node:test';
import { main } from '../../src/cli/main.js';
import { Machine, VIRT_RAM_BASE } from '../../src/platform/machine.js';
import * as F from '../../src/platform/record/format.js';
import { at, readRecording, writeRecording, type RecordingBytes } from './recording-files.js';

const dir = mkdtempSync(join(tmpdir(), 'cmdqv-record-hostile-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function cli(argv: string[]) {
  let out = '';
  let err = '';
  const code = main(argv, (s) => (out += s), (s) => (err += s));
  return { code, out, err };
}

// Every machine a replay builds is remembered, to check it is closed afterwards.
const built: Machine[] = [];
const create = Machine.create.bind(Machine);
Machine.create = (argv, opts) => {
  const m = create(argv, opts);
  built.push(m);
  return m;
};
after(() => {
  Machine.create = create;
});

const BASES: Record<string, string[]> = {
  default: [],
  trapped: ['--cmdqv', 'off'],
  inject: ['--inject', 'ioctl=IOMMU_HWPT_INVALIDATE:EINVAL'],
};
const bases = new Map<string, RecordingBytes>();
for (const [name, opts] of Object.entries(BASES)) {
  const file = join(dir, `${name}.rec`);
  const r = cli(['run', '--ops', '16', '--batch', '8', ...opts, '--record', file]);
  assert.equal(r.code, 0, r.err);
  bases.set(name, readRecording(file));
}

/** mulberry32: small, seeded, reproducible. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  return { next, int: (n: number) => Math.floor(next() * n), pick: <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]! };
}
type Rng = ReturnType<typeof prng>;

const HOSTILE_ADDRESSES = [0, 1, 0xfff, 0x0800_0000, 0x0900_0000, VIRT_RAM_BASE - 4, VIRT_RAM_BASE + 2 ** 40, 2 ** 32 - 4, 2 ** 48, 2 ** 53 - 8, 2 ** 64 - 8, 2 ** 63];
const HOSTILE_NUMBERS = [NaN, -1, -0, Infinity, -Infinity, 1e300, 2 ** 53, 5e-324];
const HOSTILE_U32 = [0, 1, 0xff, 0x100, 0xffff, 0x1_0000, 0x7fff_ffff, 0xffff_ffff];

function setAddr(dv: DataView, p: number, a: number) {
  const big = BigInt.asUintN(64, BigInt(Math.trunc(a)));
  dv.setBigUint64(p + F.F_ADDR, big, true);
}

function rec(kind: number, aux = 0, flags = 0, time = 0): Uint8Array {
  const b = new Uint8Array(F.RECORD_BYTES);
  const dv = new DataView(b.buffer);
  b[F.F_KIND] = kind;
  b[F.F_FLAGS] = flags;
  dv.setUint32(F.F_AUX, aux, true);
  dv.setFloat64(F.F_TIME, time, true);
  return b;
}

/** Record mutations: one edit of the record stream; returns its name. */
const RECORD_EDITS: ((r: Rng, recs: Uint8Array, n: number) => { name: string; recs: Uint8Array })[] = [
  (r, recs, n) => {
    const i = r.int(n);
    const k = r.pick([0, 18, 0x7f, 0xff, F.K_BLOCK, r.int(256)]);
    recs[at(i) + F.F_KIND] = k;
    return { name: `record ${i} kind ${k}`, recs };
  },
  (r, recs, n) => {
    const i = r.int(n);
    const a = r.pick(HOSTILE_ADDRESSES);
    setAddr(new DataView(recs.buffer, recs.byteOffset), at(i), a);
    return { name: `record ${i} address 0x${a.toString(16)}`, recs };
  },
  (r, recs, n) => {
    const i = r.int(n);
    const v = r.pick(HOSTILE_U32);
    new DataView(recs.buffer, recs.byteOffset).setUint32(at(i) + F.F_AUX, v, true);
    return { name: `record ${i} aux ${v}`, recs };
  },
  (r, recs, n) => {
    const i = r.int(n);
    const v = r.int(0x10000);
    new DataView(recs.buffer, recs.byteOffset).setUint16(at(i) + F.F_AUX2, v, true);
    return { name: `record ${i} aux2 ${v}`, recs };
  },
  (r, recs, n) => {
    const i = r.int(n);
    const v = r.int(256);
    recs[at(i) + F.F_FLAGS] = v;
    return { name: `record ${i} flags ${v}`, recs };
  },
  (r, recs, n) => {
    const i = r.int(n);
    const v = r.pick(HOSTILE_NUMBERS);
    new DataView(recs.buffer, recs.byteOffset).setFloat64(at(i) + F.F_TIME, v, true);
    return { name: `record ${i} time ${v}`, recs };
  },
  (r, recs, n) => {
    const i = r.int(n);
    const dv = new DataView(recs.buffer, recs.byteOffset);
    const v = r.pick(HOSTILE_NUMBERS);
    dv.setFloat64(at(i) + F.F_VALUE, v, true);
    return { name: `record ${i} value ${v}`, recs };
  },
  // A clock advance by a hostile amount (NaN, negative, astronomical).
  (r, recs, n) => {
    const dv = new DataView(recs.buffer, recs.byteOffset);
    const i = r.int(n);
    const v = r.pick(HOSTILE_NUMBERS);
    recs[at(i) + F.F_KIND] = F.K_ADVANCE;
    dv.setFloat64(at(i) + F.F_VALUE, v, true);
    return { name: `record ${i} advance by ${v}`, recs };
  },
  // A RAM or DMA record sized from the file: inline or hashed lengths up to 4 GiB.
  (r, recs, n) => {
    const dv = new DataView(recs.buffer, recs.byteOffset);
    const i = r.int(n);
    const k = r.pick([F.K_RAM_READ, F.K_RAM_WRITE, F.K_DMA_READ, F.K_DMA_WRITE]);
    const len = r.pick(HOSTILE_U32);
    recs[at(i) + F.F_KIND] = k;
    recs[at(i) + F.F_FLAGS] = r.pick([0, F.FLAG_HASHED, F.FLAG_HASHED | F.FLAG_DMA_OK, F.FLAG_OPEN]);
    dv.setUint32(at(i) + F.F_AUX, k === F.K_RAM_READ || k === F.K_RAM_WRITE ? len : r.pick([0, 1, 0xfff, len]), true);
    dv.setUint16(at(i) + F.F_AUX2, r.int(0x10000), true);
    dv.setUint32(at(i) + F.F_VALUE + 4, len, true);
    setAddr(dv, at(i), r.pick([...HOSTILE_ADDRESSES, VIRT_RAM_BASE]));
    return { name: `record ${i} ${F.kindName(k)} of ${len} bytes`, recs };
  },
  // Nesting markers out of balance, or nested deep.
  (r, recs, n) => {
    const i = r.int(n);
    const what = r.pick(['enter', 'exit', 'deep', 'handler']);
    const dv = new DataView(recs.buffer, recs.byteOffset);
    const time = dv.getFloat64(at(i) + F.F_TIME, true);
    const gsiv = r.pick([0, 32, 33, 35, 36, 0xffff_ffff]);
    let extra: Uint8Array;
    if (what === 'enter') extra = rec(F.K_IRQ_ENTER, gsiv, 0, time);
    else if (what === 'exit') extra = rec(F.K_IRQ_EXIT, gsiv, 0, time);
    else if (what === 'handler') extra = rec(F.K_IRQ_HANDLER, gsiv, r.int(2), time);
    else extra = Buffer.concat(Array.from({ length: 5000 }, () => rec(F.K_IRQ_ENTER, gsiv, 0, time)));
    return { name: `${what} (GSIV ${gsiv}) inserted before record ${i}`, recs: Buffer.concat([recs.subarray(0, at(i)), extra, recs.subarray(at(i))]) };
  },
  // Records dropped, duplicated, or the END moved.
  (r, recs, n) => {
    const i = r.int(n);
    const len = 1 + r.int(Math.min(64, n - i));
    const how = r.pick(['drop', 'duplicate', 'cut-end', 'end-early']);
    if (how === 'drop') return { name: `records ${i}..${i + len - 1} dropped`, recs: Buffer.concat([recs.subarray(0, at(i)), recs.subarray(at(i + len))]) };
    if (how === 'duplicate') return { name: `records ${i}..${i + len - 1} twice`, recs: Buffer.concat([recs.subarray(0, at(i + len)), recs.subarray(at(i))]) };
    if (how === 'cut-end') return { name: 'END cut off', recs: recs.subarray(0, at(n - 1)) };
    return { name: `END after record ${i}`, recs: Buffer.concat([recs.subarray(0, at(i)), rec(F.K_END, r.pick([i, n, 0xffff_ffff]))]) };
  },
];

/** A header whose run description is `desc` (padded as the encoder does). */
function headerOf(desc: unknown): Uint8Array {
  return F.encodeHeader(desc as F.RunDescription);
}

function descriptionOf(base: RecordingBytes): Record<string, unknown> {
  const dv = new DataView(base.header.buffer, base.header.byteOffset);
  const n = dv.getUint32(12, true);
  return JSON.parse(new TextDecoder().decode(base.header.subarray(F.HEADER_FIXED_BYTES, F.HEADER_FIXED_BYTES + n))) as Record<string, unknown>;
}

const HOSTILE_VALUES: unknown[] = [null, -1, 1e308, NaN, 'x', '', [], {}, true, 'x'.repeat(200_000), [1, 2], { __proto__: 1 }, 2 ** 53];

/** Header mutations: one hostile value in the run description; returns its name. */
const HEADER_EDITS: ((r: Rng, d: Record<string, unknown>) => string)[] = [
  (r, d) => {
    const k = r.pick(['format', 'cmdqv', 'argv', 'host', 'inject', 'costModel', 'workload', 'seeds', 'node', 'unknownField']);
    const v = r.pick(HOSTILE_VALUES);
    d[k] = v;
    return `${k} = ${JSON.stringify(v)?.slice(0, 40)}`;
  },
  (r, d) => {
    const v = r.pick(HOSTILE_VALUES);
    d.cmdqv = { version: r.pick(['0.0.0', v]), commit: v };
    return `cmdqv.commit = ${JSON.stringify(v)?.slice(0, 40)}`;
  },
  (r, d) => {
    const args = [
      ['-m', '1000000G'],
      ['-m', '-5'],
      ['-smp', '100000'],
      ['-machine', 'nope'],
      ['-device', 'x'.repeat(100_000)],
      ['-trace', 'events=/nonexistent/trace-events'],
      ['-trace', 'events=/dev/zero'],
      ['-object', 'iommufd,id=x', '-object', 'iommufd,id=x'],
      ['--frobnicate'],
      [''],
    ];
    const a = r.pick(args);
    d.argv = r.next() < 0.5 ? a : [...(d.argv as string[]), ...a];
    return `argv ${a.join(' ').slice(0, 40)}`;
  },
  (r, d) => {
    const k = r.pick(['vmExitNs', 'ioctlNs', 'nope', '__proto__', 'constructor', 'toString']);
    const v = r.pick([...HOSTILE_VALUES, -5, Infinity]);
    const cm = { ...(d.costModel as object) } as Record<string, unknown>;
    Object.defineProperty(cm, k, { value: v, enumerable: true, configurable: true, writable: true });
    d.costModel = cm;
    return `costModel.${k} = ${String(v).slice(0, 40)}`;
  },
  (r, d) => {
    const host = structuredClone(d.host) as Record<string, unknown>;
    const k = r.pick(['ramBytes', 'pageSize', 'hugepages', 'hugepageSize', 'smmus', 'devices']);
    const v = r.pick([...HOSTILE_VALUES, 2 ** 60, 2 ** 30 + 4096]);
    host[k] = v;
    const roll = r.next();
    if (roll < 0.3) {
      const dev = (d.host as { devices: unknown[] }).devices[0];
      host.devices = Array.from({ length: 100_000 }, () => dev);
    } else if (roll < 0.6) {
      const smmus = structuredClone((d.host as { smmus: Record<string, unknown>[] }).smmus);
      smmus[0]![r.pick(['idr', 'cmdqv', 'name', 'iidr'])] = r.pick(HOSTILE_VALUES);
      host.smmus = smmus;
    }
    d.host = host;
    return `host.${k} = ${JSON.stringify(v)?.slice(0, 40)}`;
  },
  (r, d) => {
    const v = r.pick(['ioctl=NOPE:ENOMEM', 'x', '', 'ioctl=IOMMU_HW_QUEUE_ALLOC:ENOMEM,'.repeat(10_000)]);
    d.inject = [v];
    return `inject ${v.slice(0, 40)}`;
  },
];

/** A chunk with hand-made framing: `records` claimed, `payload` as given. */
function chunk(records: number, payload: Uint8Array, crc: number, deflate: boolean): Uint8Array {
  const b = rec(F.K_BLOCK, records, deflate ? F.FLAG_DEFLATE : 0);
  const dv = new DataView(b.buffer);
  dv.setUint32(F.F_ADDR, payload.length, true);
  dv.setUint32(F.F_VALUE, crc, true);
  return Buffer.concat([b, payload]);
}

/** Framing that lies: counts, sizes, a deflate bomb. Returns the name and the file bytes. */
function framingCase(r: Rng, base: RecordingBytes): { name: string; bytes: Uint8Array } {
  const recs = base.records;
  const how = r.int(5);
  if (how === 0) {
    // The count says more (or fewer) records than the payload holds; the CRC is right.
    const claimed = r.pick([1, recs.length / F.RECORD_BYTES - 1, recs.length / F.RECORD_BYTES + 1, 0xffff_ffff]);
    const payload = deflateRawSync(recs);
    return { name: `chunk claims ${claimed} records`, bytes: Buffer.concat([base.header, chunk(claimed, payload, F.crc32(recs), true)]) };
  }
  if (how === 1) {
    // The payload size says more than the file holds.
    const c = chunk(recs.length / F.RECORD_BYTES, recs, F.crc32(recs), false);
    new DataView(c.buffer, c.byteOffset).setUint32(F.F_ADDR, r.pick([recs.length + 32, 0xffff_ffff]), true);
    return { name: 'chunk payload size past the end', bytes: Buffer.concat([base.header, c]) };
  }
  if (how === 2) {
    // A deflate bomb: a small payload that inflates to far more than its records.
    const claimed = r.pick([1, 2048, 0xffff_ffff]);
    return { name: `deflate bomb claiming ${claimed} records`, bytes: Buffer.concat([base.header, chunk(claimed, BOMB, 0, true)]) };
  }
  if (how === 3) {
    // Many tiny chunks: the stream is still valid (one record each).
    const n = Math.min(recs.length / F.RECORD_BYTES, 3000);
    const parts = [base.header];
    for (let i = 0; i < n; i++) {
      const c = F.encodeChunk(recs.subarray(at(i), at(i + 1)), r.next() < 0.5);
      parts.push(c.block, c.payload);
    }
    return { name: `${n} one-record chunks, then the file ends`, bytes: Buffer.concat(parts) };
  }
  // A compressed chunk that is not a multiple of the record size once inflated.
  const odd = recs.subarray(0, recs.length - 7);
  return { name: 'chunk of a partial record', bytes: Buffer.concat([base.header, chunk(Math.floor(odd.length / 32), deflateRawSync(odd), F.crc32(odd), true)]) };
}

/** 64 MiB of zeros, deflated to about 64 KiB. */
const BOMB = deflateRawSync(new Uint8Array(64 << 20), { level: 9 });

const CASES = 300;
const outcomes = { format: 0, divergence: 0, reproduced: 0, machineThrew: 0 };

test(`${CASES} hostile recordings: a format error or a divergence, exit status 1, machines closed, memory bounded`, { timeout: 60_000 }, () => {
  const rssBefore = process.memoryUsage().rss;
  const unexpected: string[] = [];
  for (let seed = 1; seed <= CASES; seed++) {
    const r = prng(seed);
    const baseName = r.pick(Object.keys(BASES));
    const base = bases.get(baseName)!;
    let name: string;
    let bytes: Uint8Array;
    const file = join(dir, `case-${seed}.rec`);
    const family = r.next();
    if (family < 0.6) {
      const edit = r.pick(RECORD_EDITS);
      const n = base.records.length / F.RECORD_BYTES;
      const e = edit(r, base.records.slice(), n);
      name = e.name;
      writeRecording(file, base.header, e.recs, r.next() < 0.8);
    } else if (family < 0.85) {
      const d = descriptionOf(base);
      name = r.pick(HEADER_EDITS)(r, d);
      writeRecording(file, headerOf(d), base.records);
    } else {
      ({ name, bytes } = framingCase(r, base));
      writeFileSync(file, bytes);
    }
    const before = built.length;
    let res: ReturnType<typeof cli>;
    try {
      res = cli(['replay', file]);
    } catch (e) {
      unexpected.push(`seed ${seed} (${baseName}: ${name}): exception escaped: ${(e as Error).stack?.split('\n').slice(0, 3).join(' | ')}`);
      continue;
    } finally {
      for (const m of built.slice(before)) if (!m.isClosed) unexpected.push(`seed ${seed} (${baseName}: ${name}): machine left open`);
      rmSync(file, { force: true });
    }
    const what = `seed ${seed} (${baseName}: ${name})`;
    if (res.code === 0) {
      outcomes.reproduced++;
      if (process.env.HOSTILE_DEBUG) console.log(`reproduced: ${what}`);
      if (!/reproduced bit for bit/.test(res.out)) unexpected.push(`${what}: status 0 without the summary`);
      continue;
    }
    if (res.code !== 1) {
      unexpected.push(`${what}: exit status ${res.code}: ${res.err}`);
      continue;
    }
    if (res.err) {
      // A format error: one line, naming the file.
      outcomes.format++;
      // One line, or QEMU's own text for a recorded command line it refuses.
      if (!/^(cmdqv: replay \S+: \S|qemu-system-aarch64: )/.test(res.err) || (res.err.trim().includes('\n') && !/cannot be built|qemu-system/.test(res.err))) unexpected.push(`${what}: unclear error: ${res.err.slice(0, 300)}`);
      if (res.err.length > 2000) unexpected.push(`${what}: error of ${res.err.length} characters`);
    } else {
      outcomes.divergence++;
      if (!/^cmdqv replay: \S+: divergence at record \d+/.test(res.out)) unexpected.push(`${what}: unclear report: ${res.out.slice(0, 300)}`);
      // The machine throwing a JavaScript error is a VMM bug, not a modelled outcome.
      const threw = /the machine threw (\w+)/.exec(res.out);
      if (threw) {
        outcomes.machineThrew++;
        if (/^(TypeError|RangeError|ReferenceError|SyntaxError)$/.test(threw[1]!)) unexpected.push(`${what}: ${res.out.split('\n').slice(0, 4).join(' | ')}`);
      }
    }
  }
  assert.deepEqual(unexpected, []);
  // Most edits must be seen: a hostile campaign that replays clean is not exercising anything.
  assert.ok(outcomes.format + outcomes.divergence > CASES * 0.8, JSON.stringify(outcomes));
  assert.ok(outcomes.format > 20 && outcomes.divergence > 20, JSON.stringify(outcomes));
  // No allocation sized from a file's values: the whole campaign stays within a few hundred MiB.
  const grown = process.memoryUsage().rss - rssBefore;
  assert.ok(grown < 512 * 2 ** 20, `RSS grew by ${(grown / 2 ** 20).toFixed(0)} MiB`);
});

/** Replay `bytes`; the one-line error it is refused with. */
function refusal(bytes: Uint8Array): string {
  const file = join(dir, 'one.rec');
  writeFileSync(file, bytes);
  const r = cli(['replay', file]);
  assert.equal(r.code, 1, r.out + r.err);
  return r.err;
}

function withRecords(base: RecordingBytes, edit: (recs: Uint8Array, dv: DataView) => unknown): Uint8Array {
  const recs = base.records.slice();
  const edited = edit(recs, new DataView(recs.buffer));
  const out = edited instanceof Uint8Array ? edited : recs;
  const file = join(dir, 'edited.rec');
  writeRecording(file, base.header, out);
  return new Uint8Array(readFileSync(file));
}

test('each finding, named: caps on chunk counts, inflated size and data lengths; clock advances; fields a kind never sets; the description', () => {
  const base = bases.get('default')!;
  const n = base.records.length / F.RECORD_BYTES;
  const kindAt = (k: number) => Array.from({ length: n }, (_, i) => i).find((i) => base.records[at(i) + F.F_KIND] === k)!;
  // A deflate bomb: 64 MiB of zeros announced as 2048 records stops at 64 KiB inflated.
  assert.match(refusal(Buffer.concat([base.header, chunk(2048, BOMB, 0, true)])), /inflates to more than its 65536 bytes/);
  assert.match(refusal(Buffer.concat([base.header, chunk(0xffff_ffff, BOMB, 0, true)])), /claims 4294967295 records \(at most 1048576\)/);
  assert.match(refusal(Buffer.concat([base.header, chunk(1, BOMB, 0, true)])), /a \d+-byte payload for 1 records \(at most \d+\)/);
  const adv = kindAt(F.K_ADVANCE);
  for (const v of [NaN, -1, Infinity, 1e9 + 1]) {
    assert.match(refusal(withRecords(base, (_, dv) => dv.setFloat64(at(adv) + F.F_VALUE, v, true))), new RegExp(`record ${adv} advances the clock by ${v} ns`));
  }
  const read = kindAt(F.K_READ32);
  assert.match(refusal(withRecords(base, (r) => (r[at(read) + F.F_FLAGS] = 2))), new RegExp(`record ${read} \\(read32\\) has flags 0x2`));
  assert.match(refusal(withRecords(base, (_, dv) => dv.setUint32(at(read) + F.F_AUX, 7, true))), /\(read32\) has aux 7/);
  // A read32's value beyond 32 bits would not be compared: refused.
  assert.match(refusal(withRecords(base, (_, dv) => dv.setUint32(at(read) + F.F_VALUE + 4, 1, true))), /\(read32\) has a value over 32 bits/);
  // A completed access marked as never returning would switch its check off: it diverges instead.
  const openFile = join(dir, 'open.rec');
  writeFileSync(openFile, withRecords(base, (r) => (r[at(read) + F.F_FLAGS] = F.FLAG_OPEN)));
  assert.match(cli(['replay', openFile]).out, new RegExp(`divergence at record ${read}[^]*recorded: the access throwing \\(the recorded run stopped in it\\)\\n  replayed: it completed`));
  const ram = kindAt(F.K_RAM_READ);
  assert.match(refusal(withRecords(base, (_, dv) => dv.setUint32(at(ram) + F.F_AUX, 0xffff_ffff, true))), /a RAM access of 4294967295 bytes \(at most 16777216\)/);
  const dma = kindAt(F.K_DMA_READ);
  assert.match(refusal(withRecords(base, (r, dv) => {
    r[at(dma) + F.F_FLAGS] |= F.FLAG_HASHED;
    dv.setUint32(at(dma) + F.F_VALUE + 4, 0xffff_ffff, true);
  })), /hashed data of 4294967295 bytes/);
  // A handler that never returns: the END comes inside it.
  const enter = kindAt(F.K_IRQ_ENTER);
  const exit = Array.from({ length: n }, (_, i) => i).find((i) => i > enter && base.records[at(i) + F.F_KIND] === F.K_IRQ_EXIT)!;
  assert.match(refusal(withRecords(base, (r) => {
    const end = rec(F.K_END, exit);
    return Buffer.concat([r.subarray(0, at(exit)), end]);
  })), new RegExp(`the END record \\(record ${exit}\\) comes inside the handler of GSIV \\d+`));
  // The description: types, unknown fields, a host that cannot be built.
  const desc = (edit: (d: Record<string, unknown>) => void) => {
    const d = descriptionOf(base);
    edit(d);
    const file = join(dir, 'desc.rec');
    writeRecording(file, headerOf(d), base.records);
    return new Uint8Array(readFileSync(file));
  };
  // A recorded command line that names a device as a file: refused, not read forever.
  assert.match(refusal(desc((d) => (d.argv = [...(d.argv as string[]), '-trace', 'events=/dev/zero']))), /-trace events=\/dev\/zero: '\/dev\/zero' is not a regular file/);
  assert.match(refusal(desc((d) => (d.cmdqv = { version: '1', commit: 5 }))), /corrupt run description: cmdqv commit is not a string/);
  assert.match(refusal(desc((d) => (d.extra = 1))), /corrupt run description: unknown field "extra"/);
  assert.match(refusal(desc((d) => ((d.host as Record<string, unknown>).smmus = null))), /the recorded host cannot be built: smmus must be a list/);
  assert.match(refusal(desc((d) => ((d.host as Record<string, unknown>).hugepageSize = 2 ** 53))), /the recorded host cannot be built: hugepageSize 9007199254740992 exceeds ramBytes/);
  assert.match(refusal(desc((d) => ((d.host as Record<string, unknown>).pageSize = 12345))), /the recorded host cannot be built: invalid host description: pageSize 12345/);
  assert.match(refusal(desc((d) => ((d.costModel as Record<string, unknown>).vmExitNs = null))), /'vmExitNs' must be a non-negative number/);
  // JSON cannot hold Infinity, but 1e999 parses as it; and an inherited name is not a parameter.
  const infinite = (name: string) => {
    const b = desc((d) => ((d.costModel as Record<string, unknown>)[name] = 12345));
    const s = Buffer.from(b).toString('latin1');
    assert.ok(s.includes(`"${name}":12345`));
    return refusal(Buffer.from(s.replace(`"${name}":12345`, `"${name}":1e999`), 'latin1'));
  };
  assert.match(infinite('vmExitNs'), /'vmExitNs' must be a non-negative number/);
  assert.match(infinite('toString'), /unknown parameter 'toString'/);
});
