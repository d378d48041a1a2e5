// `cmdqv migrate`: rounds, downtime and re-created objects; a refusing destination; option errors.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { main } from '../../src/cli/main.js';

function run(argv: string[]) {
  let out = '';
  let err = '';
  const code = main(argv, (s) => (out += s), (s) => (err += s));
  return { code, out, err };
}

test('a busy migration to a host with other VMs: rounds, stop-and-copy, downtime, objects old → new, the workload finishes', () => {
  const r = run(['migrate', '--ops', '2000', '--batch', '3', '--downtime-limit', '0.025', '--dest-vms', '2']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^migration to a destination host running 2 other VMs$/m);
  assert.match(r.out, /^pre-copy \(busy guest; downtime limit 25\.0 µs; link 1311 ns per 4 KiB page\)$/m);
  assert.match(r.out, /^ {2}round 1: \d+ pages in \d+\.\d µs; the guest dirtied \d+$/m);
  assert.match(r.out, /^ {2}round 2: /m);
  assert.match(r.out, /^ {2}converged: the dirty pages left fit the downtime limit$/m);
  assert.match(r.out, /^ {2}smmuv3\.0 VCMDQ0: drained, CONS = PROD = 0x\w+\n {2}smmuv3\.0 VCMDQ1: drained, CONS = PROD = 0x0\n {2}smmuv3\.0 CMDQ: drained, CONS = PROD = 0x\w+$/m);
  assert.match(r.out, /^ {2}re-created on the destination with \d+ ioctls \(\d+\.\d µs\):$/m);
  // Two VMs took VINTFs 1 and 2, VMIDs 1 and 2, and global VCMDQs 2-5 first.
  assert.match(r.out, /^ {4}smmuv3\.0: vIOMMU \d+ → \d+, VINTF 1 → 3, VMID 1 → 3$/m);
  assert.match(r.out, /^ {6}VCMDQ0: HW queue \d+ → \d+, global VCMDQ 2 → 6$/m);
  assert.match(r.out, /^ {6}VCMDQ1: HW queue \d+ → \d+, global VCMDQ 3 → 7$/m);
  assert.match(r.out, /^downtime \d+\.\d µs; migration \d+\.\d µs; \d+ pages sent$/m);
  assert.match(r.out, /^workload: 2000 operations \(100\d before the migration, [1-9]\d* during it, the rest on the destination\); DMA checks 2250 passed, 0 failed$/m);
});

test('--idle: nothing is dirtied during the one round; --json carries the report', () => {
  const r = run(['migrate', '--idle', '--ops', '64', '--json']);
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out);
  assert.equal(j.ok, true);
  assert.equal(j.migration.rounds.length, 1);
  assert.equal(j.migration.rounds[0].dirtied, 0);
  assert.equal(j.migration.finalPages, 0);
  assert.ok(j.migration.downtime.totalNs > 0);
  assert.equal(j.workload.dmaChecks.failed, 0);
});

test('--max-rounds stops a migration that does not converge', () => {
  const r = run(['migrate', '--ops', '2000', '--batch', '8', '--downtime-limit', '0', '--max-rounds', '2']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^ {2}round 2: /m);
  assert.doesNotMatch(r.out, /round 3:/);
  assert.match(r.out, /^ {2}not converged after 2 rounds: stop-and-copy anyway$/m);
});

test('a destination with no free VINTF refuses: exit 1, the reason, and the VM finishes on the source', () => {
  const r = run(['migrate', '--ops', '32', '--dest-vms', '63']);
  assert.equal(r.code, 1);
  assert.match(r.out, /^migration failed \(restore\): the destination refused the VM: .*IOMMU_VIOMMU_ALLOC failed: No space left on device/m);
  assert.match(r.out, /^the VM kept running on the source: 32 operations, DMA checks 36 passed, 0 failed$/m);
  assert.doesNotMatch(r.out, /^downtime/m);
  assert.match(r.out, /^ {2}the guest was paused \d+\.\d µs \(drain wait 1\.2 µs\) before it resumed on the source$/m);
});

test('--trace prints the source\'s migration events first (QEMU\'s names for states and syncs), then the report; a bad pattern is QEMU\'s error', () => {
  const r = run(['migrate', '--ops', '200', '--trace', 'migrat*', '--trace', 'cmdqv_migration_round']);
  assert.equal(r.code, 0, r.err);
  const [trace, report] = r.out.split('\n\n');
  const names = trace!.split('\n').map((l) => l.replace(/^\d+ns /, '').split(' ')[0]);
  assert.deepEqual(names.slice(0, 2), ['migrate_set_state', 'migrate_set_state']);
  assert.ok(names.includes('cmdqv_migration_round') && names.includes('migration_bitmap_sync_end'));
  assert.ok(!names.includes('cmdqv_migration_downtime'), 'only the enabled events');
  assert.equal(names.at(-1), 'migrate_set_state');
  assert.match(trace!, /migrate_set_state new state completed$/);
  assert.match(report!, /^migration to a destination host running 0 other VMs$/m);
  const bad = run(['migrate', '--ops', '8', '--trace', 'no_such_event_*']);
  assert.equal(bad.code, 1);
  assert.match(bad.err, /-trace no_such_event_\*: no trace event matches 'no_such_event_\*'/);
});

test('bad options are usage errors naming the option (exit 2); --help prints the usage', () => {
  for (const [args, msg] of [
    [['--busy', '--idle'], /--busy and --idle exclude each other/],
    [['--dest-vms', '64'], /--dest-vms must be an integer in 0\.\.63, got '64'/],
    [['--max-rounds', '0'], /--max-rounds must be an integer in 1\.\.10000, got '0'/],
    [['--downtime-limit=-1'], /--downtime-limit must be a non-negative number of milliseconds up to 3600000, got '-1'/],
    [['--drain-timeout', '0'], /--drain-timeout must be a positive number of milliseconds up to 3600000, got '0'/],
    [['--drain-timeout', 'x'], /--drain-timeout must be a positive number of milliseconds up to 3600000, got 'x'/],
    [['--ops', '8', '--at', '9'], /--at must be an integer in 0\.\.8, got '9'/],
    [['--frobnicate'], /Unknown option '--frobnicate'/],
  ] as const) {
    const r = run(['migrate', ...args]);
    assert.equal(r.code, 2, args.join(' '));
    assert.match(r.err, msg);
    assert.equal(r.out, '');
  }
  const h = run(['migrate', '--help']);
  assert.equal(h.code, 0);
  assert.ok(h.out.startsWith('usage: cmdqv migrate'));
  assert.match(run(['help']).out, /^ {2}migrate \[options\] \[-- QEMU options\]$/m);
});

test('QEMU option errors read as QEMU prints them (exit 1)', () => {
  const r = run(['migrate', '--', '-m', '4G', '-device', 'arm-smmuv3,x=1']);
  assert.equal(r.code, 1);
  assert.match(r.err, /^qemu-system-aarch64: -device arm-smmuv3,x=1: Property 'arm-smmuv3\.x' not found/);
});

test('every option with every kind of bad value: a usage error naming the option and the value (exit 2), nothing booted', () => {
  const counts: Record<string, string> = { ops: '1..1000000', batch: '1..4096', pages: '1..512', 'dest-vms': '0..63', 'max-rounds': '1..10000', at: '' };
  const bad = ['', ' ', 'x', '-1', '1.5', '0x10', '1e3', ' 8', '8 ', 'NaN', 'Infinity', '99999999999999999999', '+4'];
  for (const [name, range] of Object.entries(counts)) {
    for (const v of bad) {
      const r = run(['migrate', `--${name}=${v}`]);
      assert.equal(r.code, 2, `--${name}=${JSON.stringify(v)}: ${r.out}`);
      assert.match(r.err, new RegExp(`--${name} must be an integer in ${range.replace(/\./g, '\\.')}`), `--${name}=${JSON.stringify(v)}`);
      assert.ok(r.err.includes(`got '${v}'`), r.err);
    }
  }
  for (const name of ['downtime-limit', 'drain-timeout']) {
    for (const v of ['', 'x', '-1', '0x10', '1e3', 'Infinity', '1e400', '3600001', '99999999999999999999', ' 5']) {
      const r = run(['migrate', `--${name}=${v}`]);
      assert.equal(r.code, 2, `--${name}=${JSON.stringify(v)}: ${r.out}`);
      assert.match(r.err, new RegExp(`--${name} must be a (positive|non-negative) number of milliseconds up to 3600000, got '${v.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}'`));
    }
  }
  // A value-taking option without its value, a flag given a value, an unreadable cost model.
  assert.equal(run(['migrate', '--ops']).code, 2);
  assert.equal(run(['migrate', '--json=yes']).code, 2);
  const cm = run(['migrate', '--cost-model', '/nonexistent/cost.json']);
  assert.equal(cm.code, 1);
  assert.match(cm.err, /cost-model.*\/nonexistent\/cost\.json/);
});
