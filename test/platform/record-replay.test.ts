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
import { DEFAULT_ARGS, DEFAULT_HOST, Machine, VIRT_RAM_BASE } from '../../src/platform/machine.js';
import * as F from '../../src/platform/record/format.js';
import { recordRun, startRecording } from '../../src/platform/record/record-run.js';
import { replayRecording } from '../../src/platform/record/replayer.js';
import { DEFAULT_WORKLOAD, runWorkload, type WorkloadOptions } from '../../src/platform/workload.js';
import { at, readRecording, writeRecording } from './recording-files.js';

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

/** Every record's bytes, in order (framing left out). */
function records(file: string): Uint8Array[] {
  const r = readRecording(file).records;
  return Array.from({ length: r.length / F.RECORD_BYTES }, (_, i) => r.subarray(at(i), at(i + 1)));
}

/** Index of the first record that differs between two recordings. */
function firstDifference(a: string, b: string): number {
  const ra = records(a);
  const rb = records(b);
  for (let i = 0; i < Math.min(ra.length, rb.length); i++) if (Buffer.compare(ra[i]!, rb[i]!) !== 0) return i;
  return Math.min(ra.length, rb.length);
}

/** Write `base`'s recording with record `index`'s value changed by `edit` (a deliberate edit: chunks re-sealed). */
function tamper(name: string, pick: (rec: Uint8Array, dv: DataView, i: number) => boolean, edit: (dv: DataView, p: number) => void) {
  const { header, records: recs } = readRecording(base.file);
  const dv = new DataView(recs.buffer, recs.byteOffset, recs.length);
  let index = -1;
  for (let i = 0; i < recs.length / F.RECORD_BYTES; i++) {
    if (pick(recs.subarray(at(i), at(i + 1)), dv, at(i))) {
      index = i;
      break;
    }
  }
  assert.ok(index >= 0, 'no record to tamper with');
  const original = recs.slice(at(index), at(index + 1));
  edit(dv, at(index));
  const file = join(dir, name);
  writeRecording(file, header, recs);
  return { file, index, original: new DataView(original.buffer) };
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

test('an emulated SMMUv3 with an iommu-testdev (its DMA driven through BAR0) and a buggy guest replay bit for bit', () => {
  const emu = record('emulated.rec', { argv: ['-M', 'virt,iommu=smmuv3', '-m', '2G', '-device', 'iommu-testdev'] });
  assert.ok(emu.report.dmaChecks.passed > 0);
  assert.equal(replayRecording(emu.file).divergence, undefined);
  const buggy = record('buggy.rec', { workload: { ...SMALL, skipInvalidation: true, injectError: false } });
  assert.ok(buggy.report.dmaChecks.staleHits > 0);
  assert.equal(replayRecording(buggy.file).divergence, undefined);
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
  let seen = 0;
  // The 200th 32-bit load of the run (MMIO or RAM).
  const t = tamper('tampered.rec', (rec) => rec[F.F_KIND] === F.K_READ32 && ++seen === 200, (dv, p) => dv.setUint32(p + F.F_VALUE, dv.getUint32(p + F.F_VALUE, true) ^ 0x100, true));
  const o = t.original;
  const original = o.getUint32(F.F_VALUE, true);
  const d = replayRecording(t.file, { context: 5 }).divergence;
  assert.ok(d);
  assert.equal(d.index, t.index);
  assert.equal(d.kind, 'read32');
  assert.equal(d.timeNs, o.getFloat64(F.F_TIME, true));
  assert.equal(d.address, o.getUint32(F.F_ADDR, true) + o.getUint32(F.F_ADDR + 4, true) * 2 ** 32);
  assert.equal(d.expected, `0x${((original ^ 0x100) >>> 0).toString(16).padStart(8, '0')}`);
  assert.equal(d.got, `0x${original.toString(16).padStart(8, '0')}`);
  assert.ok(d.where && d.where.length > 0);
  assert.equal(d.before.length, 5);
  assert.match(d.before.at(-1)!, new RegExp(`^#${t.index - 1} @`));
});

test('a register name comes from the register tables; a tampered interrupt or DMA outcome is caught too', () => {
  const m = Machine.create([], { firmware: false });
  const param = m.smmus[0]!.cmdqvBase! + 4;
  m.close();
  // The guest's probe reads the CMDQV's PARAM first.
  const t = tamper('param.rec', (rec, dv, p) => rec[F.F_KIND] === F.K_READ32 && dv.getUint32(p + F.F_ADDR, true) === param, (dv, p) => dv.setUint32(p + F.F_VALUE, 0, true));
  const d = replayRecording(t.file).divergence;
  assert.equal(d?.index, t.index);
  assert.equal(d?.where, 'smmuv3.0 cmdqv PARAM');
  assert.equal(d?.expected, '0x00000000');
  assert.equal(d?.got, '0x00004011');
  // An interrupt line recorded going high that, replayed, goes high on another line.
  const irq = tamper('irq.rec', (rec) => rec[F.F_KIND] === F.K_IRQ_LEVEL, (dv, p) => dv.setUint32(p + F.F_AUX, dv.getUint32(p + F.F_AUX, true) + 1, true));
  const di = replayRecording(irq.file).divergence;
  assert.equal(di?.index, irq.index);
  assert.equal(di?.kind, 'irq-level');
  // The ACPI tables as the guest read them (checked where it read them, not only at the end).
  assert.equal(records(base.file).filter((rec) => rec[F.F_KIND] === F.K_ACPI).length, 2);
  const acpi = tamper('acpi.rec', (rec) => rec[F.F_KIND] === F.K_ACPI, (dv, p) => dv.setUint32(p + F.F_VALUE, dv.getUint32(p + F.F_VALUE, true) ^ 1, true));
  const da = replayRecording(acpi.file).divergence;
  assert.equal(da?.index, acpi.index);
  assert.equal(da?.kind, 'acpi-tables');
  assert.match(da?.got ?? '', /^\d+ bytes, CRC-32 0x[0-9a-f]{8}$/);
  // A DMA recorded as faulting that succeeds on replay.
  const dma = tamper('dma.rec', (rec) => rec[F.F_KIND] === F.K_DMA_WRITE && (rec[F.F_FLAGS]! & F.FLAG_DMA_OK) !== 0, (dv, p) => dv.setUint8(p + F.F_FLAGS, dv.getUint8(p + F.F_FLAGS) & ~F.FLAG_DMA_OK));
  const dd = replayRecording(dma.file).divergence;
  assert.equal(dd?.index, dma.index);
  assert.equal(dd?.kind, 'dma-write');
  assert.match(dd?.expected ?? '', /^fault \(event 0x0\)/);
  assert.match(dd?.got ?? '', /^ok/);
});

test('a long run is written in chunks, each checked on reading', () => {
  const long = record('long.rec', { workload: { ...SMALL, ops: 2048, batch: 64 } });
  const r = readRecording(long.file);
  assert.ok(r.chunkOffsets.length >= 2, 'more than one 64 Ki-record chunk');
  assert.equal(r.records.length / F.RECORD_BYTES, long.summary.records);
  // Compressed: the records are repetitive (same registers, rising times).
  assert.ok(long.summary.bytes * 4 < r.records.length, `${long.summary.bytes} bytes for ${r.records.length} bytes of records`);
  assert.equal(replayRecording(long.file).divergence, undefined);
  // Stored without compression, the same records replay the same way.
  const raw = join(dir, 'long-raw.rec');
  writeRecording(raw, r.header, r.records, false);
  assert.equal(replayRecording(raw).divergence, undefined);
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

test('after the recording ends, the guest keeps its handlers and a view it kept still works', () => {
  const file = join(dir, 'after.rec');
  const rec = startRecording(file, { argv: DEFAULT_ARGS, host: DEFAULT_HOST, inject: [], costModel: DEFAULT_COST_MODEL, workload: {} });
  const m = Machine.create([], { attach: (vm) => rec.attach(vm) });
  const view = m.guestPlatform();
  const line = [...m.irqs.values()][0]!;
  let ran = 0;
  line.onRaise = () => ran++;
  const { bytes } = rec.finish(m);
  line.pulse();
  assert.equal(ran, 1);
  const param = m.smmus[0]!.cmdqvBase! + 4;
  for (let i = 0; i < 70_000; i++) assert.equal(view.bus.read32(param), 0x4011);
  m.close();
  assert.equal(readFileSync(file).length, bytes);
  assert.equal(replayRecording(file).divergence, undefined);
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

test('long RAM and DMA reads are kept as length and CRC-32, and compared so', () => {
  const file = join(dir, 'long-reads.rec');
  const rec = startRecording(file, { argv: DEFAULT_ARGS, host: DEFAULT_HOST, inject: [], costModel: DEFAULT_COST_MODEL, workload: {} });
  const m = Machine.create([], { attach: (vm) => rec.attach(vm) });
  recordRun(rec, m, () => {
    runWorkload(m, SMALL);
    m.readRam(VIRT_RAM_BASE + 0x1000_0000, 300);
    assert.equal(m.host.devices[0]!.dmaRead(0x7_0000_0000, 4096).ok, false);
  });
  m.close();
  assert.equal(replayRecording(file).divergence, undefined);
  const { header, records: recs } = readRecording(file);
  const dv = new DataView(recs.buffer);
  let i = recs.length / F.RECORD_BYTES - 1;
  while (recs[at(i) + F.F_KIND] !== F.K_RAM_READ) i--;
  assert.equal(dv.getUint32(at(i) + F.F_VALUE + 4, true), 300);
  dv.setUint32(at(i) + F.F_VALUE, dv.getUint32(at(i) + F.F_VALUE, true) ^ 1, true);
  writeRecording(file, header, recs);
  const d = replayRecording(file).divergence;
  assert.equal(d?.index, i);
  assert.match(d?.expected ?? '', /^CRC-32 0x[0-9a-f]{8}$/);
});

test('CRC-32 is the IEEE one, with or without zlib', () => {
  const check = new TextEncoder().encode('123456789');
  assert.equal(F.crc32(check), 0xcbf43926);
  assert.equal(F.tableCrc32(check), 0xcbf43926);
});

test('files that are not valid recordings are refused, naming the problem', () => {
  const good = new Uint8Array(readFileSync(base.file));
  const refused = (bytes: Uint8Array, re: RegExp) => {
    const file = join(dir, 'bad.rec');
    writeFileSync(file, bytes);
    assert.throws(() => replayRecording(file), (e: Error) => e instanceof F.RecordingFormatError && re.test(e.message), re.source);
  };
  const edit = (from: Uint8Array, fn: (b: Uint8Array, dv: DataView) => void) => {
    const b = from.slice();
    fn(b, new DataView(b.buffer));
    return b;
  };
  const dataOffset = F.checkHeaderFixed(good, good.length).dataOffset;
  refused(good.subarray(0, 10), /^truncated: 10 bytes is shorter than the 16-byte header/);
  refused(good.subarray(0, dataOffset - 3), /^truncated: the header needs/);
  refused(edit(good, (b) => b.set(new TextEncoder().encode('NOTAREC!'), 0)), /^not a cmdqv recording/);
  refused(edit(good, (_, dv) => dv.setUint16(8, 2, true)), /^format version 2; this cmdqv reads version 1/);
  refused(edit(good, (_, dv) => dv.setUint16(10, 24, true)), /^record size 24/);
  refused(edit(good, (b) => (b[F.HEADER_FIXED_BYTES] = 0x7b + 1)), /^corrupt run description/);
  refused(edit(good, (b) => (b[dataOffset] = F.K_READ32)), /^corrupt: expected a chunk header at byte \d+, found record kind 1/);
  // A flipped bit in a record: caught before any record of its chunk is used.
  const { header, records: recs } = readRecording(base.file);
  const rawFile = join(dir, 'raw.rec');
  writeRecording(rawFile, header, recs, false);
  const raw = new Uint8Array(readFileSync(rawFile));
  refused(edit(raw, (b) => (b[dataOffset + F.RECORD_BYTES * 41 + F.F_VALUE] ^= 1)), /^corrupt: the chunk at byte \d+ \(records 0\.\.\d+\) fails its CRC-32 check/);
  refused(edit(good, (b) => (b[dataOffset + F.RECORD_BYTES + 100] ^= 0xff)), /^corrupt: the chunk at byte \d+ \(records 0\.\.\d+\) (does not decompress|fails its CRC-32 check|holds \d+ bytes|inflates to more than its \d+ bytes)/);
  // Cut in the middle of a chunk, and cut off after a whole chunk (no END).
  refused(good.subarray(0, good.length - 100), /^truncated: the chunk at byte \d+ has \d+ bytes, the file ends \d+ bytes into it/);
  const long = readRecording(join(dir, 'long.rec'));
  refused(new Uint8Array(readFileSync(join(dir, 'long.rec'))).subarray(0, long.chunkOffsets[1]), /^truncated: the file ends after record \d+ without an END record/);
  const padded = new Uint8Array(good.length + F.RECORD_BYTES);
  padded.set(good);
  refused(padded, /^corrupt: 32 bytes follow the END record/);
  refused(padded.subarray(0, good.length + 7), /^corrupt: 7 bytes follow the END record/);
  assert.throws(() => replayRecording(join(dir, 'nonexistent.rec')), /cannot open/);
});
