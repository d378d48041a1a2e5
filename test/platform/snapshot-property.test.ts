// Issue 13 "Done when": save at random points of random workloads (CMDQV, trapped and emulated paths, with
// errors pending, queues mid-ring), restore into a fresh host and into a host that runs another
// VM (copy mode), and on a fresh host handing the image over (adopt mode), continue, and compare
// every guest-visible observation with the uninterrupted run.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HostKernel, Machine } from '../../src/platform/machine.js';
import { WorkloadRun } from '../../src/platform/workload.js';
import { busyHost, observe, pathLine, poke, randomCase, type Case, type Observation } from './snapshot-rig.js';

const SEEDS = Number(process.env.CMDQV_SNAPSHOT_SEEDS ?? 200);

/** Run `c` to its save point, save, and return the machine, its run and the image. */
function toSavePoint(c: Case): { m: Machine; run: WorkloadRun; image: Uint8Array } {
  const m = Machine.create(pathLine(c.path, undefined, c.smallPages));
  const run = WorkloadRun.start(m, c.work);
  run.runTo(c.saveAt);
  poke(m, run, c.poke);
  return { m, run, image: m.save() };
}

function finishRestored(image: Uint8Array, host?: HostKernel, adopt = false): Observation {
  const m = Machine.restore(image, { ...(host ? { host } : {}), adopt });
  const run = WorkloadRun.resume(m);
  const obs = observe(m, run, run.finish());
  m.close();
  return obs;
}

test(`save at a random point, restore on a fresh host and on a busy host: every observation equals the uninterrupted run (${SEEDS} seeds)`, () => {
  let pending = 0;
  let wrapped = 0;
  // One busy host per path, reused: each restored VM is closed, giving everything back.
  const busy = { cmdqv: busyHost('cmdqv'), trapped: busyHost('trapped'), emulated: busyHost('emulated') };
  for (let seed = 1; seed <= SEEDS; seed++) {
    const c = randomCase(seed);
    const what = `seed ${seed} (${JSON.stringify(c)})`;
    const { m, run, image } = toSavePoint(c);
    if (m.clock.pendingTimers().length) pending++;
    // A command ring (SMMU CMDQ or VCMDQ) whose producer has wrapped (its index passed the ring's size).
    const wrap = (prod: number, log2: number) => prod >= 2 ** log2;
    if (run.kernel.iommus.some((io) => wrap(io.smmu.save().queue.prod, io.smmu.cmdqLog2) || io.cmdqv?.queues.some(({ queue }) => wrap(queue.prod, queue.log2)))) wrapped++;
    // The source goes on as if nothing happened: it is the uninterrupted run.
    const reference = observe(m, run, run.finish());
    m.close();
    if (seed % 10 === 1) {
      // Now and then, check that claim against a run that never saved.
      const u = Machine.create(pathLine(c.path, undefined, c.smallPages));
      const ur = WorkloadRun.start(u, c.work);
      ur.runTo(c.saveAt);
      poke(u, ur, c.poke);
      assert.deepEqual(observe(u, ur, ur.finish()), reference, `${what}: saving changed the source`);
      u.close();
    }
    assert.deepEqual(finishRestored(image, busy[c.path].host), reference, `${what}: restored next to another VM`);
    // The image's last restore takes its buffer (adopt mode, as run --restore does).
    assert.deepEqual(finishRestored(image, undefined, true), reference, `${what}: restored on a fresh host, adopting the image`);
  }
  for (const b of Object.values(busy)) b.other.close();
  // The cases do leave work pending at the save (vEVENTs waiting for the main loop).
  assert.ok(pending > SEEDS / 10, `only ${pending} saves had main-loop work pending`);
  assert.ok(wrapped >= Math.floor(SEEDS / 80), `only ${wrapped} saves had a command ring wrapped`);
});
