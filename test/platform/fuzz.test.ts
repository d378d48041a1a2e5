// The fuzzing campaign: generation is reproducible per seed, shards partition a campaign, a
// broken invariant is found, shrunk and replayed.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Machine } from '../../src/platform/machine.js';
import { OpGenerator, replayOps, runCampaign, runIsolationCase, shardSeeds, targetsOf, type FuzzOp } from '../../src/platform/fuzz/index.js';

test('the same seed generates the same operations; another seed does not', () => {
  const t = targetsOf(Machine.create([]));
  assert.deepEqual(new OpGenerator(7, t).take(500), new OpGenerator(7, t).take(500));
  assert.notDeepEqual(new OpGenerator(7, t).take(500), new OpGenerator(8, t).take(500));
  const kinds = new Set(new OpGenerator(7, t).take(2000).map((o) => o.op));
  assert.deepEqual([...kinds].sort(), ['dma', 'loop', 'ram', 'read', 'reset', 'write'], 'every kind of operation is generated');
});

test('shards partition the seeds of a campaign', () => {
  const all = shardSeeds(10, 5);
  const parts = [1, 2, 3].map((index) => shardSeeds(10, 5, { index, count: 3 }));
  assert.deepEqual(parts.flat().sort((a, b) => a - b), all);
  assert.equal(new Set(parts.flat()).size, all.length);
});

test('a replayed operation list is checked against every invariant', () => {
  const t = targetsOf(Machine.create([]));
  const harmless: FuzzOp[] = [{ op: 'read', addr: t.smmuBase, size: 4 }, { op: 'loop' }, { op: 'reset' }];
  assert.equal(replayOps(harmless), undefined);
});

test('a small campaign runs in worker threads and in this thread alike', async () => {
  const threads = await runCampaign({ ops: 4000, opsPerCase: 1000, firstSeed: 1000, workers: 2, shrink: false });
  const inline = await runCampaign({ ops: 4000, opsPerCase: 1000, firstSeed: 1000, workers: 0, shrink: false });
  assert.equal(threads.cases, 4);
  assert.equal(threads.ops, 4000);
  assert.deepEqual(threads.findings.map((f) => [f.seed, f.kind]).sort(), inline.findings.map((f) => [f.seed, f.kind]).sort(), 'results do not depend on the thread a case runs in');
});

test('found by cmdqv fuzz: an error vEVENT pending at reset no longer sets VI_ERR_MAP on the reset machine', () => {
  // Seed 104's shrunk reproduction (CMDQV_EN is set at reset): ALLOC VCMDQ0 to VINTF0, enable VINTF0, BASE, CMDQ_EN,
  // PROD over a ring of zeros (illegal commands), then no main-loop turn before the reset.
  const m = Machine.create([]);
  const cv = m.smmus[0]!.cmdqvBase!;
  const ops: FuzzOp[] = [
    { op: 'write', addr: cv + 0x200, size: 4, value: '0x1' },
    { op: 'write', addr: cv + 0x1000, size: 4, value: '0x5' },
    { op: 'write', addr: cv + 0x40000, size: 8, value: '0x40084003' },
    { op: 'write', addr: cv + 0x30008, size: 4, value: '0x1' },
    { op: 'write', addr: cv + 0x30004, size: 4, value: '0x3' },
  ];
  assert.equal(replayOps(ops), undefined);
});

test('a case that does not finish in time is a timeout finding and its worker is replaced', async () => {
  const s = await runCampaign({ ops: 3000, opsPerCase: 1000, firstSeed: 1, workers: 1, shrink: false, caseTimeoutMs: 1 });
  assert.equal(s.cases, 3);
  assert.ok(s.findings.length >= 1 && s.findings.every((f) => f.kind === 'timeout'), 'every finding is a timeout');
});

test('an isolation case: a hostile neighbour leaves the victim VM exactly as an idle one does', () => {
  assert.equal(runIsolationCase(3, 2000), undefined);
});
