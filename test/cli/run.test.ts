// `cmdqv run`: the main job's report, JSON output, trace files and option errors.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { main } from '../../src/cli/main.js';

function run(argv: string[]) {
  let out = '';
  let err = '';
  const code = main(argv, (s) => (out += s), (s) => (err += s));
  return { code, out, err };
}

test('the default run reports both paths, errors handled and passing DMA checks', () => {
  const r = run(['run', '--ops', '32', '--batch', '8']);
  assert.equal(r.code, 0);
  assert.match(r.out, /smmuv3\.0: MMIO 0xc000000 GSIV 144-147, identifier 1, primary-bus pcie\.0, CMDQV at 0xc080000 GSIV 148/);
  assert.match(r.out, /VCMDQ \(direct to host silicon\)\s+32\s+4\s+0\s+0/);
  assert.match(r.out, /CMDQV: 1 queue error\(s\) skipped, 1 interrupt\(s\)/);
  // 32 DMAs landed + every 8th unmapped buffer checked; the checks' own cost is reported apart.
  assert.match(r.out, /DMA checks: 36 passed, 0 failed/);
  assert.match(r.out, /of which the after-unmap checks \(4 DMA\(s\) that fault on purpose\): \d+ VM exits, 4 host faults forwarded/);
  assert.match(r.out, /real-time factor \d+\.\d{3}/);
});

test('--verify-every 1 checks every unmapped buffer; --skip-invalidation is caught at the default sampling', () => {
  const all = run(['run', '--ops', '32', '--batch', '8', '--verify-every', '1', '--no-error']);
  assert.match(all.out, /DMA checks: 64 passed, 0 failed/);
  const buggy = run(['run', '--ops', '32', '--batch', '8', '--skip-invalidation', '--no-error']);
  assert.match(buggy.out, /DMA checks: 32 passed, 4 failed \(4 DMA\(s\) reached an unmapped buffer/);
  assert.equal(run(['run', '--verify-every', '0']).code, 2);
});

test('--cmdqv off routes every invalidation through the trapped queue; --json is machine-readable', () => {
  const r = run(['run', '--ops', '16', '--batch', '4', '--cmdqv', 'off', '--json', '--no-error']);
  assert.equal(r.code, 0);
  const rep = JSON.parse(r.out);
  assert.equal(rep.vcmdq.commands, 0);
  assert.equal(rep.smmuCmdq.commands, 16);
  assert.equal(rep.smmuCmdq.ioctls, 4);
});

test('--trace prints matching events and --trace-out writes Chrome/Perfetto JSON', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cmdqv-trace-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'trace.json');
  const r = run(['run', '--ops', '4', '--batch', '4', '--trace', 'tegra241_cmdqv_*', '--trace-out', file]);
  assert.equal(r.code, 0);
  assert.match(r.out, /tegra241_cmdqv_init_regs register init, param=0x00004011/);
  assert.match(r.out, /tegra241_cmdqv_err_map hw irq received\. error \(hex\) maps: 0000:0000:0000:0001/);
  const doc = JSON.parse(readFileSync(file, 'utf8'));
  assert.ok(doc.traceEvents.length > 10);
  // The tracer's records are the instants; the rest is the timeline (slices, flows, counters).
  const instants = doc.traceEvents.filter((e: { ph: string }) => e.ph === 'i');
  assert.ok(instants.length > 0);
  assert.ok(instants.every((e: { name: string }) => e.name.startsWith('tegra241_cmdqv_')));
  assert.ok(doc.traceEvents.some((e: { ph: string; name: string }) => e.ph === 'B' && e.name === 'kvm_exit'));
});

test('bad options: usage errors exit 2, QEMU option errors exit 1', () => {
  assert.equal(run(['run', '--ops', 'many']).code, 2);
  assert.equal(run(['run', '--cmdqv', 'sometimes']).code, 2);
  const q = run(['run', '--', '-m', '4G', '-device', 'nope']);
  assert.equal(q.code, 1);
  assert.match(q.err, /'nope' is not a valid device model name/);
});
