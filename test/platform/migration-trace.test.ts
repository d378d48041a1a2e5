import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HostKernel, Machine } from '../../src/platform/machine.js';
import { WorkloadRun } from '../../src/platform/workload.js';
import { busyGuest, migrate } from '../../src/platform/migration/index.js';
import { lineFor } from './snapshot-rig.js';

const TRACE = ['-trace', 'migrat*', '-trace', 'cmdqv_migration_*'];

/** A traced source VM that has run part of its workload. */
function tracedSource(): { m: Machine; run: WorkloadRun } {
  const m = Machine.create([...lineFor(true), ...TRACE]);
  const run = WorkloadRun.start(m, { ops: 400, batch: 4, pages: 1, injectError: false, skipInvalidation: false, verifyEvery: 4 });
  run.runTo(40);
  return { m, run };
}

/** The trace lines without their timestamps. */
function events(m: Machine): string[] {
  return m.traceText.lines.map((l) => l.replace(/^\d+ns /, ''));
}

test('a migration is traced: QEMU-named state changes and bitmap syncs, one line per round, per queue and for the downtime, matching the report', () => {
  const { m, run } = tracedSource();
  const r = migrate(m, { dest: new HostKernel(), guest: busyGuest(run), downtimeLimitNs: 40_000 });
  assert.equal(r.ok, true);
  if (!r.ok) return;
  const rep = r.report;
  const lines = events(m);
  const states = lines.filter((l) => l.startsWith('migrate_set_state '));
  assert.deepEqual(states, ['migrate_set_state new state setup', 'migrate_set_state new state active', 'migrate_set_state new state completed']);
  const rounds = lines.filter((l) => l.startsWith('cmdqv_migration_round '));
  assert.deepEqual(
    rounds,
    rep.rounds.map((x) => `cmdqv_migration_round round ${x.round}: ${x.pages} pages sent in ${x.ns} ns, ${x.dirtied} dirtied`),
  );
  // One sync per round plus the last one at the stop, each a start then an end.
  const syncs = lines.filter((l) => l.startsWith('migration_bitmap_sync_'));
  assert.equal(syncs.length, 2 * (rep.rounds.length + 1));
  for (let i = 0; i < syncs.length; i += 2) {
    assert.equal(syncs[i], 'migration_bitmap_sync_start ');
    assert.match(syncs[i + 1]!, /^migration_bitmap_sync_end dirty_pages \d+$/);
  }
  rep.rounds.forEach((x, i) => assert.equal(syncs[2 * i + 1], `migration_bitmap_sync_end dirty_pages ${x.dirtied}`));
  const queues = lines.filter((l) => l.startsWith('cmdqv_migration_queue '));
  assert.ok(rep.queues.length > 0);
  assert.deepEqual(queues, rep.queues.map((q) => `cmdqv_migration_queue ${q.queue} cons 0x${q.cons.toString(16)} prod 0x${q.prod.toString(16)}: ${q.state}`));
  const d = rep.downtime!;
  assert.deepEqual(lines.filter((l) => l.startsWith('cmdqv_migration_downtime ')), [
    `cmdqv_migration_downtime downtime ${d.totalNs} ns: drain ${d.quiesceNs}, ram ${d.ramNs}, device state ${d.deviceStateNs}, re-creation ${d.recreateNs}, switchover ${d.switchoverNs}`,
  ]);
  assert.equal(lines.filter((l) => l.startsWith('migrate_error ')).length, 0);
  // The order a reader follows: setup, active, rounds, queues, downtime, completed.
  const order = ['new state setup', 'new state active', 'cmdqv_migration_round round 1', 'cmdqv_migration_queue', 'cmdqv_migration_downtime', 'new state completed'];
  const at = order.map((o) => lines.findIndex((l) => l.includes(o)));
  assert.deepEqual([...at].sort((a, b) => a - b), at, `in order: ${at.join(',')}`);
  r.machine.close();
});

test('a failed migration is traced as migrate_error with the reason, then the failed state; nothing is traced without -trace', () => {
  const { m, run } = tracedSource();
  // The destination already runs a VM with the device: it refuses.
  const dest = new HostKernel();
  const other = Machine.create(lineFor(true), { host: dest });
  const r = migrate(m, { dest, guest: busyGuest(run), downtimeLimitNs: 40_000 });
  assert.equal(r.ok, false);
  if (r.ok) return;
  const lines = events(m);
  const tail = lines.slice(-2);
  assert.deepEqual(tail, [`migrate_error error=${r.reason}`, 'migrate_set_state new state failed']);
  assert.equal(lines.filter((l) => l.startsWith('cmdqv_migration_downtime ')).length, 0);
  assert.equal(lines.filter((l) => l.includes('new state completed')).length, 0);
  assert.equal(other.traceText.lines.filter((l) => l.includes('migrat')).length, 0, 'the untraced VM traced nothing');
  other.close();
  m.close();
});
