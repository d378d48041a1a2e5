// The kit's seams for modelled time: VirtualClock.charge (arithmetic, never fires timers, time
// never goes back), the AddressSpace's observer around exits and direct accesses only, and the
// streaming ChromeTraceWriter (limit, balanced slices, chunks).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AddressSpace, ACCESS_DIRECT, ACCESS_TRAPPED, type AccessObserver } from '../../src/kit/address-space.js';
import { VirtualClock } from '../../src/kit/clock.js';
import { ModelLog } from '../../src/kit/log.js';
import { MemoryRegion } from '../../src/kit/memory-region.js';
import { SparseMemory } from '../../src/kit/sparse-memory.js';
import { ChromeTraceWriter } from '../../src/kit/trace.js';

test('charge moves time without firing timers; a later advance fires them, never going back', () => {
  const c = new VirtualClock();
  const seen: number[] = [];
  c.schedule(100, () => seen.push(c.now));
  c.charge(250);
  assert.deepEqual(seen, []);
  assert.equal(c.now, 250);
  c.advance(10);
  assert.deepEqual(seen, [250]);
  assert.equal(c.now, 260);
  // A timer whose handler charges past the advance's end: time stays where the work left it.
  c.schedule(5, () => c.charge(1000));
  c.advance(10);
  assert.equal(c.now, 1265);
});

test('the address-space observer sees exits and direct accesses, not RAM', () => {
  const log = new ModelLog();
  const root = MemoryRegion.container('root', 2 ** 32);
  const ops = { read: () => 7, write: () => {}, read64: () => 7n, write64: () => {} };
  root.addSubregion(0x1000, MemoryRegion.mmio('dev', 0x1000, ops));
  root.addSubregion(0x2000, MemoryRegion.ramDevice('page0', 0x1000, ops));
  root.addSubregion(0x3000, MemoryRegion.ram('ram', 0x1000, new SparseMemory(0x1000)));
  const as = new AddressSpace('test', root, log);
  const calls: string[] = [];
  const obs: AccessObserver = {
    enter: (f, a, w) => calls.push(`enter ${f & ACCESS_TRAPPED ? 'exit' : f & ACCESS_DIRECT ? 'direct' : '?'} 0x${a.toString(16)} ${w}`),
    leave: () => calls.push('leave'),
  };
  as.observer = obs;
  as.write32(0x1004, 1);
  as.read32(0x2000);
  as.write32(0x3000, 1);
  as.read(0x1000, 4);
  assert.deepEqual(calls, ['enter exit 0x1004 true', 'leave', 'enter direct 0x2000 false', 'leave', 'enter exit 0x1000 false', 'leave']);
});

test('ChromeTraceWriter: streams chunks, stops at the limit but ends every begun slice', () => {
  let text = '';
  const w = new ChromeTraceWriter((c) => (text += c), 3);
  w.processName(1, 'p');
  w.begin(1, 1, 'a', 'c', 1000);
  w.begin(1, 1, 'b', 'c', 2000);
  w.counter(1, 'n', 2500, 1); // dropped: limit reached (metadata counts as written)
  w.end(1, 1, 3000); // ends 'b', whose begin was left out: nothing written
  w.end(1, 1, 3500); // ends 'a'
  w.close(4000);
  const doc = JSON.parse(text) as { traceEvents: { ph: string; ts?: number }[] };
  assert.equal(w.dropped, 2);
  assert.deepEqual(doc.traceEvents.map((e) => e.ph), ['M', 'M', 'B', 'E']);
  assert.equal(doc.traceEvents[3]!.ts, 3.5);
});
