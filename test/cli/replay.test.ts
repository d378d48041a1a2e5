// `cmdqv run --record FILE` and `cmdqv replay FILE`: the summary line, the divergence report
// and its exit status, and the errors for bad files and bad usage.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { main } from '../../src/cli/main.js';
import * as F from '../../src/platform/record/format.js';
import { at, readRecording, writeRecording } from '../platform/recording-files.js';

const dir = mkdtempSync(join(tmpdir(), 'cmdqv-replay-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function run(argv: string[]) {
  let out = '';
  let err = '';
  const code = main(argv, (s) => (out += s), (s) => (err += s));
  return { code, out, err };
}

const file = join(dir, 'run.rec');
const recorded = run(['run', '--ops', '32', '--batch', '8', '--record', file]);

test('run --record prints the usual report and says where the recording is', () => {
  assert.equal(recorded.code, 0);
  assert.match(recorded.out, /DMA checks: 36 passed, 0 failed/);
  assert.match(recorded.err, new RegExp(`--record: \\d+ records \\(\\d+\\.\\d MiB\\) in ${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`));
});

test('replay reproduces the run: one summary line, exit status 0', () => {
  const r = run(['replay', file]);
  assert.equal(r.code, 0, r.err + r.out);
  assert.equal(r.out.split('\n').length, 1);
  assert.match(r.out, /^cmdqv replay: .*run\.rec: reproduced bit for bit: \d+ records \(\d+ accesses, \d+ clock advances, \d+ interrupt level changes, \d+ handler runs, 36 DMAs, \d+ counters\), \d+\.\d{3} ms modelled$/);
});

test('runs with --cmdqv off, --inject and --cost-model are recorded with what they change, and replay', () => {
  const cost = join(dir, 'cost.json');
  writeFileSync(cost, JSON.stringify({ ioctlNs: 5000 }));
  for (const [name, opts] of [['off', ['--cmdqv', 'off']], ['inject', ['--inject', 'ioctl=IOMMU_HW_QUEUE_ALLOC:ENOMEM']], ['cost', ['--cost-model', cost]]] as const) {
    const f = join(dir, `${name}.rec`);
    const rec = run(['run', '--ops', '16', '--batch', '4', ...opts, '--record', f]);
    assert.equal(rec.code, 0, rec.err);
    const r = run(['replay', f]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /reproduced bit for bit/);
    const header = new TextDecoder().decode(readRecording(f).header);
    if (name === 'off') assert.match(header, /cmdqv=off/);
    if (name === 'inject') assert.match(header, /"inject":\["ioctl=IOMMU_HW_QUEUE_ALLOC:ENOMEM"\]/);
    if (name === 'cost') assert.match(header, /"ioctlNs":5000/);
  }
});

test('replay on another machine reports the first divergence, exit status 1', () => {
  const r = run(['replay', file, '--context', '3', '--', '-object', 'iommufd,id=iommufd0', '-device', 'arm-smmuv3,primary-bus=pcie.0,id=smmuv3.0,accel=on,cmdqv=off,identifier=1',
    '-device', 'vfio-pci,host=0009:01:00.0,iommufd=iommufd0']);
  assert.equal(r.code, 1);
  const lines = r.out.split('\n');
  assert.match(lines[0]!, /^cmdqv replay: .*: divergence at record \d+ \(modelled time \d+(\.\d+)? ns\)$/);
  assert.match(lines[1]!, /^ {2}[a-z0-9-]+/);
  // Building that machine takes fewer ioctls: the modelled time differs from the first record on.
  assert.match(lines[2]!, /^ {2}recorded: modelled time \d+ ns$/);
  assert.match(lines[3]!, /^ {2}replayed: \d+ ns$/);
});

test('a tampered value names the register, the recorded and the replayed value', () => {
  const { header, records } = readRecording(file);
  const dv = new DataView(records.buffer, records.byteOffset, records.length);
  // Find the guest's first read of the CMDQV's PARAM (0x0c080004 on the default machine).
  let index = 0;
  while (!(records[at(index) + F.F_KIND] === F.K_READ32 && dv.getUint32(at(index) + F.F_ADDR, true) === 0x0c08_0004)) index++;
  dv.setUint32(at(index) + F.F_VALUE, 0x4012, true);
  const tampered = join(dir, 'tampered.rec');
  writeRecording(tampered, header, records);
  const r = run(['replay', tampered]);
  assert.equal(r.code, 1);
  assert.match(r.out, new RegExp(`divergence at record ${index} `));
  assert.match(r.out, /\n {2}read32 0xc080004 \(smmuv3\.0 cmdqv PARAM\)\n {2}recorded: 0x00004012\n {2}replayed: 0x00004011\n {2}the 8 records before it:\n/);
});

test('a file that is not a recording is refused with status 1, naming the problem', () => {
  const bad = join(dir, 'bad.rec');
  writeFileSync(bad, 'hello, this is not a recording');
  const r = run(['replay', bad]);
  assert.equal(r.code, 1);
  assert.match(r.err, /^cmdqv: replay .*bad\.rec: not a cmdqv recording \(magic "hello, t", expected "CMDQVREC"\)/);
  const cut = join(dir, 'cut.rec');
  writeFileSync(cut, readFileSync(file).subarray(0, 5000));
  assert.match(run(['replay', cut]).err, /^cmdqv: replay .*cut\.rec: truncated: /);
  assert.match(run(['replay', join(dir, 'missing.rec')]).err, /^cmdqv: replay .*missing\.rec: cannot open: ENOENT/);
  // A recorded command line this code refuses (as a newer or older cmdqv might).
  const { header, records } = readRecording(file);
  const text = new TextDecoder().decode(header).replace('accel=on', 'accel=no');
  const other = join(dir, 'other.rec');
  writeRecording(other, new TextEncoder().encode(text), records);
  const o = run(['replay', other]);
  assert.equal(o.code, 1);
  assert.match(o.err, /^cmdqv: replay .*other\.rec: the recorded machine cannot be built: -device arm-smmuv3,.*accel=no/);
  writeRecording(other, new TextEncoder().encode(new TextDecoder().decode(header).replace('"ioctlNs"', '"ioctlXs"')), records);
  assert.match(run(['replay', other]).err, /^cmdqv: replay .*other\.rec: the recorded cost model: unknown parameter 'ioctlXs'/);
});

test('usage: one file, --context bounds, --record not with --compare, help lists replay', () => {
  assert.equal(run(['replay']).code, 2);
  assert.equal(run(['replay', 'a', 'b']).code, 2);
  assert.equal(run(['replay', file, '--context', 'x']).code, 2);
  assert.match(run(['run', '--compare', '--record', join(dir, 'x.rec')]).err, /--record records one run; --compare makes three/);
  assert.match(run(['help']).out, /replay FILE \[--context N\]/);
  assert.match(run(['replay', '--help']).out, /^usage: cmdqv replay FILE/);
});
