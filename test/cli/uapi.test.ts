import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { main } from '../../src/cli/main.js';

const bin = fileURLToPath(new URL('../../src/cli/bin.js', import.meta.url));

function run(argv: string[]) {
  let out = '';
  let err = '';
  const code = main(argv, (s) => (out += s), (s) => (err += s));
  return { code, out, err };
}

test('cmdqv uapi --json has the documented shape and kernel names', () => {
  const { code, out } = run(['uapi', '--json']);
  assert.equal(code, 0);
  const doc = JSON.parse(out);
  assert.deepEqual(Object.keys(doc), ['structs', 'ioctls', 'enums']);
  assert.deepEqual(doc.structs.iommu_hw_queue_alloc.fields.viommu_id, { offset: 8, size: 4 });
  assert.equal(doc.structs.iommu_hw_queue_alloc.size, 40);
  assert.equal(doc.ioctls.IOMMU_HW_QUEUE_ALLOC, 15252);
  assert.equal(doc.enums.iommu_viommu_type.IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV, 2);
  assert.equal(run(['uapi', '--json']).out, out, 'output is stable');
});

test('cmdqv uapi prints a table; the binary runs', () => {
  const text = execFileSync(process.execPath, [bin, 'uapi'], { encoding: 'utf8' });
  assert.match(text, /struct iommu_hw_queue_alloc {2}\(40 bytes\)/);
  assert.match(text, /0x3b94 {2}15252 {2}IOMMU_HW_QUEUE_ALLOC/);
});

test('unknown commands and options are user errors that name the problem', () => {
  const r = run(['bogus']);
  assert.equal(r.code, 2);
  assert.match(r.err, /unknown command 'bogus'/);
  const o = run(['uapi', '--jsn']);
  assert.equal(o.code, 2);
  assert.match(o.err, /--jsn/);
  const p = spawnSync(process.execPath, [bin, 'nope'], { encoding: 'utf8' });
  assert.equal(p.status, 2);
});
