// `cmdqv fuzz` (campaign, shards, replay) and `cmdqv run --inject` through the CLI entry point.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { main, runCli } from '../../src/cli/main.js';

async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runCli(argv, (s) => (out += `${s}\n`), (s) => (err += `${s}\n`));
  return { code, out, err };
}

test('cmdqv fuzz runs a sharded campaign of guest operations and uAPI calls and reports no finding', async () => {
  const r = await cli(['fuzz', '--ops', '4000', '--ops-per-case', '1000', '--uapi-calls', '2000', '--isolation-ops', '8000', '--shard', '1/2', '--workers', '0']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /fuzz: 4 case\(s\), 2000 guest operations, 2000 uAPI calls, 4000 hostile-neighbour operations \(shard 1\/2\), 0 worker\(s\), [\d.]+ s, 0 finding\(s\)/);
});

test('cmdqv fuzz --replay re-runs a reproduction file; bad arguments name the problem', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cmdqv-fuzz-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'repro.json');
  writeFileSync(file, JSON.stringify({ version: 1, argv: [], seed: 0, kind: 'reset', message: 'recorded', ops: [{ op: 'loop' }, { op: 'reset' }] }));
  const r = await cli(['fuzz', '--replay', file]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /not reproduced: 2 operation\(s\) ran with every invariant holding/);
  assert.equal((await cli(['fuzz', '--shard', '3/2'])).code, 2);
  assert.match((await cli(['fuzz', '--replay', join(dir, 'missing.json')])).err, /--replay .*missing\.json/);
  assert.equal(main(['fuzz', '--help'], () => {}, () => {}), 0);
});

test('cmdqv run --inject: the HW queue allocation fails, the VMM reports it, the guest probe fails cleanly', async () => {
  const r = await cli(['run', '--ops', '16', '--inject', 'ioctl=IOMMU_HW_QUEUE_ALLOC:ENOMEM']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /ioctl=IOMMU_HW_QUEUE_ALLOC:ENOMEM:1: fired \(IOMMU_HW_QUEUE_ALLOC call 1 returned -ENOMEM\)/);
  assert.match(r.out, /IOMMU_HW_QUEUE_ALLOC failed: Cannot allocate memory/);
  assert.match(r.out, /failed to reset impl; probe failed/);
  const notFired = await cli(['run', '--ops', '16', '--inject', 'ioctl=IOMMU_HWPT_INVALIDATE:EINVAL:1000']);
  assert.match(notFired.out, /did not fire/);
  const bad = await cli(['run', '--inject', 'ioctl=IOMMU_NOPE:ENOMEM']);
  assert.equal(bad.code, 1);
  assert.match(bad.err, /unknown ioctl 'IOMMU_NOPE'/);
});
