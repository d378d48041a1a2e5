import assert from 'node:assert/strict';
import { test } from 'node:test';
import { VirtualClock } from '../../src/kit/clock.js';
import { ModelLog } from '../../src/kit/log.js';
import { ChromeTraceSink, defineTrace, formatTrace, TextTraceSink, traceCatalog, Tracer } from '../../src/kit/trace.js';

const T_WRITE = defineTrace(
  'kittest_dev_write_mmio',
  [
    { name: 'offset', type: 'u32' },
    { name: 'value', type: 'u64' },
    { name: 'size', type: 'u32' },
  ],
  'offset: 0x%x value: 0x%016x size: %u',
);
const T_READ = defineTrace('kittest_dev_read_mmio', [{ name: 'offset', type: 'u32' }], 'offset: 0x%x');
const T_OTHER = defineTrace('kittest_other_event', [{ name: 'name', type: 'str' }, { name: 'on', type: 'bool' }], '%s on=%u');
const CATALOG = traceCatalog([T_WRITE, T_READ], [T_OTHER]);

test('trace events are off by default and enabled by glob patterns', () => {
  const tr = new Tracer(CATALOG);
  const sink = new TextTraceSink();
  tr.addSink(sink);
  tr.emit(T_WRITE, 0x10, 5n, 4);
  assert.equal(sink.lines.length, 0);
  assert.deepEqual(tr.enable('kittest_dev_*'), []);
  assert.equal(tr.enabled(T_WRITE), true);
  assert.equal(tr.enabled(T_OTHER), false);
  tr.emit(T_WRITE, 0x10, 0x1234_5678_9abc_def0n, 8);
  tr.emit(T_OTHER, 'x', true);
  assert.deepEqual(sink.lines, ['0ns kittest_dev_write_mmio offset: 0x10 value: 0x123456789abcdef0 size: 8']);
  tr.enable('-*_read_*');
  assert.equal(tr.enabled(T_READ), false);
  assert.equal(tr.enabled(T_WRITE), true);
  assert.deepEqual(tr.enable('nosuch_*'), ['nosuch_*'], 'a pattern that matches nothing is reported');
  assert.throws(() => traceCatalog(CATALOG, [defineTrace('kittest_dev_write_mmio', [], '')]), /declared twice/);
  assert.throws(() => defineTrace('kittest_bad_args', [{ name: 'a', type: 'u32' }], 'no conversions'), /conversions/);
});

test('trace formatting and Chrome/Perfetto JSON sink', () => {
  assert.equal(formatTrace(T_OTHER, ['vcmdq', false]), 'vcmdq on=0');
  const clock = new VirtualClock();
  const tr = new Tracer(CATALOG);
  tr.now = () => clock.now;
  const chrome = new ChromeTraceSink(7, 3);
  tr.addSink(chrome);
  tr.enable('kittest_*');
  clock.advance(2500);
  tr.emit(T_WRITE, 0x40, 1n << 40n, 8);
  const doc = JSON.parse(JSON.stringify(chrome));
  assert.equal(doc.traceEvents.length, 1);
  assert.deepEqual(doc.traceEvents[0], {
    name: 'kittest_dev_write_mmio',
    cat: 'kittest',
    ph: 'i',
    s: 't',
    ts: 2.5,
    pid: 7,
    tid: 3,
    args: { offset: 0x40, value: '0x10000000000', size: 8 },
  });
});

test('model log counts guest errors and unimp per source and keeps a bounded ring', () => {
  const log = new ModelLog(2);
  log.guestError('smmuv3', 'a');
  log.guestError('cmdqv', 'b');
  log.unimp('cmdqv', 'c');
  assert.equal(log.count('guest_error'), 2);
  assert.equal(log.count('guest_error', 'cmdqv'), 1);
  assert.equal(log.count('unimp', 'cmdqv'), 1);
  assert.deepEqual(log.entries().map((e) => e.message), ['b', 'c']);
  const seen: string[] = [];
  log.sink = (e) => seen.push(`${e.kind}:${e.source}:${e.message}`);
  log.guestError('x', 'y');
  assert.deepEqual(seen, ['guest_error:x:y']);
});

test('virtual clock fires timers in time order and polls with a timeout', () => {
  const c = new VirtualClock();
  const fired: string[] = [];
  c.schedule(300, () => fired.push(`c@${c.now}`));
  c.schedule(100, () => fired.push(`a@${c.now}`));
  const h = c.schedule(200, () => fired.push('cancelled'));
  c.schedule(100, () => fired.push(`b@${c.now}`));
  c.cancel(h);
  c.advance(250);
  assert.deepEqual(fired, ['a@100', 'b@100']);
  assert.equal(c.now, 250);
  let ready = false;
  c.schedule(1_000, () => (ready = true));
  assert.equal(c.poll(() => ready, 1_000, 1_000_000_000), true);
  assert.equal(c.now, 1_250);
  assert.equal(c.poll(() => false, 1_000, 10_000), false, 'times out');
  assert.equal(c.now, 11_250);
  assert.deepEqual(fired, ['a@100', 'b@100', 'c@300']);
});

test('a tracer enables only what its catalog holds; catalogs are sorted by name, whatever the declaration order', () => {
  const late = defineTrace('kittest_aaa_declared_last', [], '');
  assert.deepEqual(traceCatalog([T_OTHER, late], [T_READ]).map((e) => e.name), ['kittest_aaa_declared_last', 'kittest_dev_read_mmio', 'kittest_other_event']);
  const tr = new Tracer(traceCatalog([T_READ]));
  assert.deepEqual(tr.enable('kittest_*'), []);
  assert.equal(tr.enabled(T_READ), true);
  assert.equal(tr.enabled(T_WRITE), false, 'not in this tracer\'s catalog');
  assert.equal(tr.enabled(late), false);
  assert.deepEqual(new Tracer().enable('kittest_*'), ['kittest_*'], 'an empty catalog matches nothing');
});
