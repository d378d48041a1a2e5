// Record and replay (platform/record): a recorded run replays bit for bit without the guest
// driver; a changed machine or a changed recording diverges at the first record that differs;
// files that are not valid recordings are refused with a message naming the problem.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { DEFAULT_COST_MODEL, ZERO_COST_MODEL, type CostModel } from '../../src/platform/cost-model.js';
import { parseFaultSpecs } from '../../src/platform/fault-injection.js';
import { DEFAULT_ARGS, DEFAULT_HOST, Machine } from '../../src/platform/machine.js';
import * as F from '../../src/platform/record/format.js';
import { recordRun, startRecording } from '../../src/platform/record/record-run.js';
import { replayRecording } from '../../src/platform/record/replayer.js';
import { DEFAULT_WORKLOAD, runWorkload, type WorkloadOptions } from '../../src/platform/workload.js';

const dir = mkdtempSync(join(tmpdir(), 'cmdqv-record-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const TRAPPED_ARGS = DEFAULT_ARGS.map((a) => a.replace('cmdqv=on', 'cmdqv=off'));
const SMALL: WorkloadOptions = { ...DEFAULT_WORKLOAD, ops: 48, batch: 8, verifyEvery: 8 };

interface RecordOpts {
  argv?: readonly string[];
  inject?: string[];
  costModel?: CostModel;
  workload?: WorkloadOptions;
}

/** Record the workload on a machine as `cmdqv run --record` does. */
function record(name: string, o: RecordOpts = {}) {
  const file = join(dir, name);
  const argv = o.argv ?? DEFAULT_ARGS;
  const costModel = o.costModel ?? DEFAULT_COST_MODEL;
  const inject = o.inject ?? [];
  const workload = o.workload ?? SMALL;
  const rec = startRecording(file, { argv, host: DEFAULT_HOST, inject, costModel, workload: { ...workload } });
  const m = Machine.create(argv, { inject: inject.flatMap((s) => parseFaultSpecs(s)), costModel, attach: (vm) => rec.attach(vm) });
  try {
    const { result, summary } = recordRun(rec, m, () => runWorkload(m, workload));
    return { file, report: result, summary, machine: m };
  } finally {
    m.close();
  }
}

/** The file's chunks: offset of each BLOCK record, and its records' offsets. */
function chunks(bytes: Uint8Array): { at: number; records: number[] }[] {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  let at = F.checkHeaderFixed(bytes, bytes.length).dataOffset;
  const out: { at: number; records: number[] }[] = [];
  while (at < bytes.length) {
    assert.equal(bytes[at + F.F_KIND], F.K_BLOCK);
    const n = dv.getUint32(at + F.F_AUX, true);
    out.push({ at, records: Array.from({ length: n }, (_, i) => at + F.RECORD_BYTES * (i + 1)) });
    at += F.RECORD_BYTES * (n + 1);
  }
  return out;
}

/** Every record's bytes, in order (framing left out). */
function records(file: string): Uint8Array[] {
  const bytes = new Uint8Array(readFileSync(file));
  return chunks(bytes).flatMap((c) => c.records.map((p) => bytes.subarray(p, p + F.RECORD_BYTES)));
}

/** Index of the first record that differs between two recordings. */
function firstDifference(a: string, b: string): number {
  const ra = records(a);
  const rb = records(b);
  for (let i = 0; i < Math.min(ra.length, rb.length); i++) if (Buffer.compare(ra[i]!, rb[i]!) !== 0) return i;
  return Math.min(ra.length, rb.length);
}

/** Recompute the CRC-32 of the chunk holding byte `p` (a deliberate edit, not corruption). */
function reseal(bytes: Uint8Array, p: number): void {
  const c = chunks(bytes).find((x) => x.records[0]! <= p && p < x.records.at(-1)! + F.RECORD_BYTES)!;
  const body = bytes.subarray(c.records[0]!, c.records.at(-1)! + F.RECORD_BYTES);
  new DataView(bytes.buffer, bytes.byteOffset).setUint32(c.at + F.F_VALUE, F.crc32(body), true);
}

const base = record('default.rec');

test('the default run replays bit for bit, without the guest driver', () => {
  const r = replayRecording(base.file);
  assert.equal(r.divergence, undefined);
  assert.equal(r.failure, undefined);
  assert.equal(r.records, base.summary.records);
  // Every kind of observation was there to compare: accesses, time, interrupts, handlers, DMA.
  assert.ok(r.counts.accesses > 1000, `${r.counts.accesses} accesses`);
  assert.ok(r.counts.advances > 0 && r.counts.irqLevels > 0 && r.counts.handlers > 0);
  assert.equal(r.counts.dmas, base.report.dmaChecks.passed + base.report.dmaChecks.failed);
  assert.ok(r.counts.counters >= F.COUNTERS.length);
  assert.equal(r.description.argv.join(' '), DEFAULT_ARGS.join(' '));
});

test('recording is deterministic: the same run records the same bytes', () => {
  const again = record('default-again.rec');
  assert.deepEqual(readFileSync(again.file), readFileSync(base.file));
});

test('a trapped run (cmdqv=off) and a run with an injected fault replay bit for bit', () => {
  const trapped = record('trapped.rec', { argv: TRAPPED_ARGS });
  assert.equal(trapped.report.vcmdq.commands, 0);
  assert.equal(replayRecording(trapped.file).divergence, undefined);
  const injected = record('inject.rec', { inject: ['ioctl=IOMMU_HW_QUEUE_ALLOC:ENOMEM'] });
  assert.equal(injected.machine.faults?.injected.length, 1);
  const r = replayRecording(injected.file);
  assert.equal(r.divergence, undefined);
  assert.deepEqual(r.description.inject, ['ioctl=IOMMU_HW_QUEUE_ALLOC:ENOMEM']);
});

test('replayed on a machine built with another option, the run diverges at the first record that differs', () => {
  // Without modelled costs, building the two machines takes the same time: the first difference is a value.
  const on = record('zero-on.rec', { costModel: ZERO_COST_MODEL });
  const off = record('zero-off.rec', { costModel: ZERO_COST_MODEL, argv: TRAPPED_ARGS });
  const k = firstDifference(on.file, off.file);
  assert.ok(k > 100, `the machines differ first at record ${k}`);
  const r = replayRecording(on.file, { argv: TRAPPED_ARGS });
  const d = r.divergence;
  assert.ok(d);
  assert.equal(d.index, k);
  assert.equal(r.records, k + 1);
  assert.doesNotMatch(d.expected, /modelled time/);
  assert.notEqual(d.expected, d.got);
  // With the recorded costs, the trapped machine's build already takes other time: record 0.
  assert.equal(replayRecording(base.file, { argv: TRAPPED_ARGS }).divergence?.index, firstDifference(base.file, record('trapped-2.rec', { argv: TRAPPED_ARGS }).file));
});

test('a different cost model diverges in modelled time at the first record whose time differs', () => {
  const slow: CostModel = { ...DEFAULT_COST_MODEL, ioctlNs: DEFAULT_COST_MODEL.ioctlNs + 1 };
  const other = record('slow.rec', { costModel: slow });
  const k = firstDifference(base.file, other.file);
  const d = replayRecording(base.file, { costModel: slow }).divergence;
  assert.ok(d);
  assert.equal(d.index, k);
  assert.match(d.expected, /^modelled time \d+(\.\d+)? ns$/);
});

test('a tampered read value is reported at its index, with its register and the records before it', () => {
  const bytes = new Uint8Array(readFileSync(base.file));
  const all = chunks(bytes).flatMap((c) => c.records);
  // The 200th 32-bit MMIO/RAM load of the run.
  let seen = 0;
  let index = -1;
  for (let i = 0; i < all.length; i++) {
    if (bytes[all[i]! + F.F_KIND] === F.K_READ32 && ++seen === 200) {
      index = i;
      break;
    }
  }
  assert.ok(index > 0);
  const p = all[index]!;
  const dv = new DataView(bytes.buffer);
  const original = dv.getUint32(p + F.F_VALUE, true);
  dv.setUint32(p + F.F_VALUE, original ^ 0x100, true);
  reseal(bytes, p);
  const file = join(dir, 'tampered.rec');
  writeFileSync(file, bytes);
  const r = replayRecording(file, { context: 5 });
  const d = r.divergence;
  assert.ok(d);
  assert.equal(d.index, index);
  assert.equal(d.kind, 'read32');
  assert.equal(d.timeNs, dv.getFloat64(p + F.F_TIME, true));
  assert.equal(d.address, dv.getUint32(p + F.F_ADDR, true) + dv.getUint32(p + F.F_ADDR + 4, true) * 2 ** 32);
  assert.equal(d.expected, `0x${((original ^ 0x100) >>> 0).toString(16).padStart(8, '0')}`);
  assert.equal(d.got, `0x${original.toString(16).padStart(8, '0')}`);
  assert.ok(d.where && d.where.length > 0);
  assert.equal(d.before.length, 5);
  assert.match(d.before.at(-1)!, new RegExp(`^#${index - 1} @`));
});

test('a register name comes from the register tables', () => {
  const bytes = new Uint8Array(readFileSync(base.file));
  const all = chunks(bytes).flatMap((c) => c.records);
  const dv = new DataView(bytes.buffer);
  // The first CMDQV register load: PARAM, read by the guest's probe (vmm registers: PARAM at 0x4).
  const m = Machine.create([], { firmware: false });
  const s = m.smmus[0]!;
  m.close();
  const param = s.cmdqvBase! + 4;
  const index = all.findIndex((p) => bytes[p + F.F_KIND] === F.K_READ32 && dv.getUint32(p + F.F_ADDR, true) === param);
  assert.ok(index >= 0);
  const p = all[index]!;
  dv.setUint32(p + F.F_VALUE, 0, true);
  reseal(bytes, p);
  const file = join(dir, 'param.rec');
  writeFileSync(file, bytes);
  const d = replayRecording(file).divergence;
  assert.equal(d?.index, index);
  assert.equal(d?.where, 'smmuv3.0 cmdqv PARAM');
});

test('a long run is written in chunks, each checked on reading', () => {
  const long = record('long.rec', { workload: { ...SMALL, ops: 2048, batch: 64 } });
  const bytes = new Uint8Array(readFileSync(long.file));
  assert.ok(chunks(bytes).length >= 2, 'more than one 64 Ki-record chunk');
  assert.equal(replayRecording(long.file).divergence, undefined);
});

test('recording leaves the machine as it found it, and a machine without a recorder has no wrapper', () => {
  const plain = Machine.create([]);
  assert.equal(plain.guestView, undefined);
  assert.ok(!Object.hasOwn(plain.clock, 'advance'));
  plain.close();
  const m = base.machine;
  assert.equal(m.guestView, undefined);
  assert.ok(!Object.hasOwn(m.clock, 'advance'));
  assert.ok(!Object.hasOwn(m, 'readRam'));
  for (const line of m.irqs.values()) assert.equal(Object.getOwnPropertyDescriptor(line, 'onRaise')?.get, undefined);
});

test('a run that stops with an exception still leaves a recording that replays up to it', () => {
  const file = join(dir, 'failed.rec');
  const rec = startRecording(file, { argv: DEFAULT_ARGS, host: DEFAULT_HOST, inject: [], costModel: DEFAULT_COST_MODEL, workload: {} });
  const m = Machine.create([], { attach: (vm) => rec.attach(vm) });
  assert.throws(() =>
    recordRun(rec, m, () => {
      runWorkload(m, SMALL);
      throw new Error('the workload gave up');
    }),
  /gave up/);
  m.close();
  const r = replayRecording(file);
  assert.equal(r.divergence, undefined);
  assert.match(r.failure ?? '', /stopped with an exception/);
});

test('files that are not valid recordings are refused, naming the problem', () => {
  const good = new Uint8Array(readFileSync(base.file));
  const refused = (bytes: Uint8Array, re: RegExp) => {
    const file = join(dir, 'bad.rec');
    writeFileSync(file, bytes);
    assert.throws(() => replayRecording(file), (e: Error) => e instanceof F.RecordingFormatError && re.test(e.message), re.source);
  };
  const edit = (fn: (b: Uint8Array, dv: DataView) => void) => {
    const b = good.slice();
    fn(b, new DataView(b.buffer));
    return b;
  };
  const dataOffset = F.checkHeaderFixed(good, good.length).dataOffset;
  refused(good.subarray(0, 10), /^truncated: 10 bytes is shorter than the 16-byte header/);
  refused(good.subarray(0, dataOffset - 3), /^truncated: the header needs/);
  refused(edit((b) => b.set(new TextEncoder().encode('NOTAREC!'), 0)), /^not a cmdqv recording/);
  refused(edit((_, dv) => dv.setUint16(8, 2, true)), /^format version 2; this cmdqv reads version 1/);
  refused(edit((_, dv) => dv.setUint16(10, 24, true)), /^record size 24/);
  refused(edit((b) => (b[F.HEADER_FIXED_BYTES] = 0x7b + 1)), /^corrupt run description/);
  // A flipped bit in a record: the chunk's CRC-32 catches it before any record of it is used.
  refused(edit((b) => (b[dataOffset + F.RECORD_BYTES * 40 + F.F_VALUE] ^= 1)), /^corrupt: the chunk at byte \d+ \(records 0\.\.\d+\) fails its CRC-32 check/);
  // Cut in the middle of a chunk, and cut off after a whole chunk (no END).
  refused(good.subarray(0, good.length - 100), /^truncated: the chunk at byte \d+ holds \d+ records, the file ends \d+ records into it/);
  const long = new Uint8Array(readFileSync(join(dir, 'long.rec')));
  const second = chunks(long)[1]!.at;
  refused(long.subarray(0, second), /^truncated: the file ends after record \d+ without an END record/);
  const padded = new Uint8Array(good.length + F.RECORD_BYTES);
  padded.set(good);
  refused(padded, /follow the END record|expected a chunk header/);
  assert.throws(() => replayRecording(join(dir, 'nonexistent.rec')), /cannot open/);
});
