// Issue 13 §4: `cmdqv run --save-at OPS --save FILE` then `cmdqv run --restore FILE` prints the
// report the uninterrupted run prints; bad combinations and bad files are clear errors.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { main } from '../../src/cli/main.js';
import { Machine } from '../../src/platform/machine.js';

function run(argv: string[]) {
  let out = '';
  let err = '';
  const code = main(argv, (s) => (out += s), (s) => (err += s));
  return { code, out, err };
}

/** The report without the wall-clock line (the model's own speed differs run to run). */
const report = (s: string) => s.split('\n').filter((l) => !l.startsWith('Speed:')).join('\n');

const dir = mkdtempSync(join(tmpdir(), 'cmdqv-snap-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

for (const path of ['on', 'off']) {
  test(`--save-at 100 --save F, then --restore F: the uninterrupted run's report (--cmdqv ${path})`, () => {
    const file = join(dir, `vm-${path}.img`);
    const plain = run(['run', '--cmdqv', path]);
    assert.equal(plain.code, 0, plain.err);
    const saved = run(['run', '--cmdqv', path, '--save-at', '100', '--save', file]);
    assert.equal(saved.code, 0, saved.err);
    assert.match(saved.err, /saved the VM after 112 of 256 operations to .*vm-.*\.img \(\d+ bytes\)/);
    assert.equal(report(saved.out), report(plain.out), 'saving does not change the run');
    const restored = run(['run', '--restore', file]);
    assert.equal(restored.code, 0, restored.err);
    assert.equal(report(restored.out), report(plain.out));
    assert.match(restored.out, /DMA checks: 288 passed, 0 failed/);
    const json = JSON.parse(run(['run', '--restore', file, '--json']).out);
    assert.equal(json.dmaChecks.passed, 288);
  });
}

test('--save / --restore option errors and bad files are one clear line', () => {
  const file = join(dir, 'x.img');
  assert.match(run(['run', '--save', file]).err, /--save needs --save-at OPS/);
  assert.match(run(['run', '--save-at', '3']).err, /--save-at needs --save FILE/);
  assert.equal(run(['run', '--save-at', '-1', '--save', file]).code, 2);
  const withOps = run(['run', '--restore', file, '--ops', '5']);
  assert.equal(withOps.code, 2);
  assert.match(withOps.err, /--restore takes the machine and the workload from the image; --ops cannot be given with it/);
  assert.match(run(['run', '--restore', file, '--', '-m', '2G']).err, /QEMU options cannot be given with it/);
  const missing = run(['run', '--restore', join(dir, 'nope.img')]);
  assert.equal(missing.code, 1);
  assert.match(missing.err, /--restore .*nope\.img: cannot read it: No such file or directory/);
  writeFileSync(file, 'not an image');
  assert.match(run(['run', '--restore', file]).err, /--restore .*x\.img: not a cmdqv snapshot image/);
  const good = join(dir, 'good.img');
  assert.equal(run(['run', '--ops', '16', '--batch', '4', '--save-at', '8', '--save', good]).code, 0);
  writeFileSync(file, readFileSync(good).subarray(0, 1000));
  assert.match(run(['run', '--restore', file]).err, /is truncated/);
  // An image of a machine nothing was running on.
  const idle = Machine.create();
  writeFileSync(file, idle.save());
  idle.close();
  assert.match(run(['run', '--restore', file]).err, /the image holds no workload run to finish/);
});
