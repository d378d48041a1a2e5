import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_HOST, HostKernel, Machine, VIRT_RAM_BASE } from '../../src/platform/machine.js';
import { WorkloadRun, type WorkloadOptions } from '../../src/platform/workload.js';
import { DEFAULT_COST_MODEL } from '../../src/platform/cost-model.js';
import { busyGuest, hostObjects, IDLE_GUEST, migrate, type MigrationGuest, type MigrationReport } from '../../src/platform/migration/index.js';
import * as C from '../../src/arch/tegra241-cmdqv/registers.js';
import * as U from '../../src/uapi/iommufd.js';
import { Tracer } from '../../src/kit/trace.js';
import { IommufdBackend } from '../../src/vmm/backends/iommufd.js';
import { mmapAnonymous } from '../../src/uapi/syscalls.js';
import { busyHost, lineFor, observe, pathLine, poke } from './snapshot-rig.js';

const P = DEFAULT_COST_MODEL.migrationPageNs;
/** Small batches: a working set of a few dozen pages the rounds can catch up with; enough ops to outlast the rounds. */
const WORK: WorkloadOptions = { ops: 600, batch: 4, pages: 1, injectError: true, skipInvalidation: false, verifyEvery: 4 };
const START = 32;
/** DMA checks of a whole run: one per op, one per verified unmap. */
const CHECKS = WORK.ops + WORK.ops / 4;

/** A VM on its own host with 1 MiB of the guest's own data in RAM, that has run `START` ops of `WORK`. */
function source(): { m: Machine; run: WorkloadRun } {
  const m = Machine.create(lineFor(true));
  const run = startRun(m);
  run.runTo(START);
  return { m, run };
}

/** The guest's data (a round 1 of a few hundred pages) and its workload, started. */
function startRun(m: Machine): WorkloadRun {
  const data = new Uint8Array(2 ** 20);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 1) & 0xff;
  m.writeRam(VIRT_RAM_BASE + 0x100_0000, data);
  return WorkloadRun.start(m, WORK);
}

/** The report's own arithmetic: pages per round chain, totals add up, downtime is its parts. */
function checkReport(r: MigrationReport): void {
  for (let i = 1; i < r.rounds.length; i++) assert.equal(r.rounds[i]!.pages, r.rounds[i - 1]!.dirtied, `round ${i + 1} sends what round ${i} dirtied`);
  for (const round of r.rounds) assert.equal(round.ns, DEFAULT_COST_MODEL.migrationRoundNs + round.pages * P);
  assert.equal(r.totalPages, r.rounds.reduce((n, x) => n + x.pages, 0) + r.finalPages);
  const d = r.downtime!;
  assert.equal(d.ramNs, r.finalPages * P);
  assert.equal(d.deviceStateNs, Math.ceil(r.deviceStateBytes / 4096) * P);
  assert.equal(d.recreateNs, r.recreateIoctls * DEFAULT_COST_MODEL.ioctlNs);
  assert.equal(d.totalNs, d.quiesceNs + d.ramNs + d.deviceStateNs + d.recreateNs + d.switchoverNs);
  assert.equal(r.totalNs, r.rounds.reduce((n, x) => n + x.ns, 0) + d.totalNs);
}

test('idle guest: one round sends the touched pages, nothing is dirtied, the stop-and-copy sends only device state', () => {
  const { m, run } = source();
  const r = migrate(m, { dest: new HostKernel(), guest: IDLE_GUEST, downtimeLimitNs: 0 });
  assert.equal(r.ok, true);
  if (!r.ok) return;
  const rep = r.report;
  assert.equal(rep.rounds.length, 1);
  assert.ok(rep.rounds[0]!.pages >= 256, 'the guest data and the workload pages');
  assert.equal(rep.rounds[0]!.dirtied, 0);
  assert.equal(rep.converged, true);
  assert.equal(rep.finalPages, 0);
  assert.ok(rep.deviceStateBytes > 0);
  assert.ok(rep.recreateIoctls > 5, `${rep.recreateIoctls} ioctls re-create the VM`);
  checkReport(rep);
  assert.equal(m.isClosed, true, 'the source is closed');
  assert.equal(run.done, START, 'an idle guest did nothing');
  const rest = WorkloadRun.resume(r.machine).finish();
  assert.deepEqual(rest.dmaChecks, { passed: CHECKS, failed: 0, staleHits: 0 });
  r.machine.close();
});

test('busy guest: the rounds chase its dirty pages until they fit the downtime limit', () => {
  const { m, run } = source();
  const limit = 40_000;
  const r = migrate(m, { dest: new HostKernel(), guest: busyGuest(run), downtimeLimitNs: limit });
  assert.equal(r.ok, true);
  if (!r.ok) return;
  const rep = r.report;
  assert.ok(rep.rounds.length >= 2, JSON.stringify(rep.rounds));
  assert.ok(rep.rounds.slice(0, -1).every((x) => x.dirtied * P > limit), 'every round but the last left too much');
  assert.ok(rep.rounds.at(-1)!.dirtied * P <= limit);
  assert.equal(rep.converged, true);
  assert.ok(run.done > START, 'the guest kept running during the rounds');
  assert.ok(rep.finalPages >= rep.rounds.at(-1)!.dirtied);
  checkReport(rep);
  r.machine.close();
});

test('busy guest under a limit it cannot meet: stop-and-copy after maxRounds, still correct', () => {
  const { m, run } = source();
  const r = migrate(m, { dest: new HostKernel(), guest: busyGuest(run), downtimeLimitNs: 0, maxRounds: 3 });
  assert.equal(r.ok, true);
  if (!r.ok) return;
  assert.equal(r.report.rounds.length, 3);
  assert.equal(r.report.converged, false);
  assert.ok(r.report.finalPages > 0);
  checkReport(r.report);
  assert.equal(WorkloadRun.resume(r.machine).finish().dmaChecks.failed, 0);
  r.machine.close();
});

/**
 * The same run twice: migrated mid-run onto a host that runs another VM, and uninterrupted with
 * the same ops; every guest-visible observation at the end must be equal. On each path: CMDQV,
 * trapped invalidations, QEMU's emulated SMMUv3 with an iommu-testdev.
 */
for (const [path, guest] of [['cmdqv', 'busy'], ['cmdqv', 'idle'], ['trapped', 'busy'], ['emulated', 'busy']] as const) {
  test(`${path}, ${guest} guest: every guest-visible observation after the migration equals an uninterrupted run's`, () => {
    const m = Machine.create(pathLine(path));
    const run = startRun(m);
    run.runTo(START);
    const { host, other } = busyHost(path);
    // The source's RAM when the guest pauses (after the last round nothing writes it).
    let atPause: Buffer = Buffer.alloc(0);
    const inner = guest === 'busy' ? busyGuest(run) : IDLE_GUEST;
    const watched: MigrationGuest = {
      runFor(mm, ns) {
        inner.runFor(mm, ns);
        atPause = ramImage(mm);
      },
    };
    const r = migrate(m, { dest: host, guest: watched, downtimeLimitNs: 40_000 });
    assert.equal(r.ok, true);
    if (!r.ok) return;
    // Page for page, the destination starts from the RAM the source paused with.
    assert.ok(ramImage(r.machine).equals(atPause), 'the destination RAM equals the source RAM at the pause');
    const opsAtSwitch = run.done;
    const moved = WorkloadRun.resume(r.machine);
    const migrated = observe(r.machine, moved, moved.finish());
    // The uninterrupted run: the same ops before the switch, the idle time an idle guest spent.
    const ref = Machine.create(pathLine(path));
    const refRun = startRun(ref);
    refRun.runTo(opsAtSwitch);
    assert.ok(opsAtSwitch < WORK.ops, 'the run outlasted the rounds');
    if (guest === 'idle') ref.clock.advance(r.report.rounds.reduce((n, x) => n + x.ns, 0));
    const expected = observe(ref, refRun, refRun.finish());
    assert.deepEqual(migrated, expected);
    // What moved: the other VM holds VINTF 1, VMID 1 and VCMDQs 2-3 there.
    const moves = r.report.recreated;
    if (path === 'cmdqv') {
      assert.deepEqual([moves[0]!.vintf, moves[0]!.vmid], [{ old: 1, new: 2 }, { old: 1, new: 2 }]);
      assert.deepEqual(moves[0]!.hwQueues.map((q) => q.vcmdq), [{ old: 2, new: 4 }, { old: 3, new: 5 }]);
      assert.deepEqual(hostObjects(r.machine)[0]!.vintf, 2);
    } else if (path === 'trapped') {
      assert.deepEqual([moves[0]!.vintf, moves[0]!.vmid, moves[0]!.hwQueues], [{ old: undefined, new: undefined }, { old: 1, new: 2 }, []]);
    } else {
      assert.deepEqual(moves, [], 'the emulated SMMUv3 is all VMM state: nothing on the host');
    }
    // The destination's other VM was not disturbed.
    const otherRun = WorkloadRun.start(other, { ops: 8, batch: 4, pages: 1, injectError: false, skipInvalidation: false });
    assert.equal(otherRun.finish().dmaChecks.failed, 0);
    r.machine.close();
    other.close();
    ref.close();
  });
}

/** Every guest RAM block that holds data, with its offset, as one buffer. */
function ramImage(m: Machine): Buffer {
  const parts: Buffer[] = [];
  m.forEachTouchedRam((offset, bytes) => {
    parts.push(Buffer.from(new Float64Array([offset]).buffer), Buffer.from(bytes));
  });
  return Buffer.concat(parts);
}

/** A busy guest that, at the end of the pre-copy rounds, does `last` (the state the stop finds). */
function busyThen(run: WorkloadRun, last: (m: Machine) => void): MigrationGuest {
  const busy = busyGuest(run);
  return {
    runFor(m, ns) {
      busy.runFor(m, ns);
      last(m);
    },
  };
}

/** The source after a failed migration: finishes its workload, DMA checks pass, equal to a run without the attempt. */
function checkSourceIntact(m: Machine, run: WorkloadRun, ref: () => Machine | undefined): void {
  assert.equal(m.isClosed, false);
  const rep = run.finish();
  assert.equal(rep.dmaChecks.failed, 0);
  assert.equal(rep.dmaChecks.passed, CHECKS);
  const r = ref();
  if (r) r.close();
}

test('a VCMDQ in error at the stop: the migration fails at the drain, the source keeps running and sees what it would have', () => {
  const { m, run } = source();
  let poked = -1;
  const guest = busyThen(run, (mm) => {
    if (poked < 0) {
      poke(mm, run, 'vcmdq-error');
      poked = run.done;
    }
  });
  const dest = new HostKernel();
  const r = migrate(m, { dest, guest, downtimeLimitNs: 1e9 });
  assert.equal(r.ok, false);
  if (r.ok) return;
  assert.equal(r.phase, 'quiesce');
  assert.match(r.reason, /^smmuv3\.0 VCMDQ0 is in error \(CONS 0x1\w+, CERROR 1\)/);
  assert.deepEqual(r.report.downtime, { quiesceNs: 2 * 4 * DEFAULT_COST_MODEL.directMmioNs, ramNs: 0, deviceStateNs: 0, recreateNs: 0, switchoverNs: 0, totalNs: 2 * 4 * DEFAULT_COST_MODEL.directMmioNs });
  assert.equal(dest.smmus.get('smmu0')!.cmdqv!.inUse.vintfs, 0, 'nothing was created on the destination');
  // The source goes on: the guest handles the error and finishes, as a run without the attempt.
  const mine = observe(m, run, run.finish());
  const ref = Machine.create(lineFor(true));
  const refRun = startRun(ref);
  refRun.runTo(poked);
  poke(ref, refRun, 'vcmdq-error');
  const expected = observe(ref, refRun, refRun.finish());
  assert.deepEqual(mine, expected);
  assert.equal((mine.report as { dmaChecks: { failed: number } }).dmaChecks.failed, 0);
  ref.close();
  m.close();
});

test('a queue that never drains (its VINTF disabled on the host): the bounded wait gives up, the source runs on once the host re-enables it', () => {
  const { m, run } = source();
  const vintf = hostObjects(m)[0]!.vintf!;
  const hw = m.host.smmus.get('smmu0')!.cmdqvHw!;
  const cfg = C.vintfBlockOffset(vintf) + C.VINTF_CONFIG.spec.offset;
  const guest = busyThen(run, () => {
    hw.write(cfg, 4, C.VINTF_CONFIG.f.ENABLE.set(hw.read(cfg, 4), 0));
    // The guest rings a doorbell the silicon will not serve (it does not wait for it).
    const q = run.kernel.iommus[0]!.cmdqv!.queues[0]!.queue;
    const bus = run.kernel.platform.bus;
    const at = q.slot(q.prod);
    const sync = new Uint32Array([0x46, 0, 0, 0]); // CMD_SYNC, CS = NONE
    for (let i = 0; i < 4; i++) bus.write32(at + 4 * i, sync[i]!);
    q.prod = (q.prod + 1) & ((2 << q.log2) - 1);
    bus.write32(run.kernel.iommus[0]!.cmdqv!.base + C.lvcmdqPage0Offset(0, 0) + C.VCMDQ_PROD.spec.offset, q.prod);
  });
  const r = migrate(m, { dest: new HostKernel(), guest, downtimeLimitNs: 1e9, drainTimeoutNs: 200_000 });
  assert.equal(r.ok, false);
  if (r.ok) return;
  assert.equal(r.phase, 'quiesce');
  assert.match(r.reason, /^smmuv3\.0 VCMDQ0 CONS 0x\w+ PROD 0x\w+: did not drain in 20\d\.\d µs/);
  assert.ok(r.report.downtime!.quiesceNs >= 200_000, 'the source was paused for the wait');
  assert.equal(r.report.totalNs, r.report.rounds[0]!.ns + r.report.downtime!.totalNs);
  // The host re-enables the VINTF: the queue consumes what waited, the guest finishes.
  hw.write(cfg, 4, C.VINTF_CONFIG.f.ENABLE.set(hw.read(cfg, 4), 1));
  checkSourceIntact(m, run, () => undefined);
  m.close();
});

/** Take every free VINTF of `host`'s CMDQV from a process of its own (what other VMs would hold). */
function fillVintfs(host: HostKernel): () => void {
  const proc = host.createProcess();
  const backend = new IommufdBackend('hog', proc, new Tracer());
  const ram = mmapAnonymous(proc, 2 ** 30, true);
  const { vfioFd, devId } = backend.bindDevice('/dev/vfio/devices/vfio1');
  const ioas = backend.allocIoas();
  backend.mapDma(ioas, 0, 2 ** 30, ram);
  const s2 = backend.allocHwpt(devId, ioas, U.iommufd_hwpt_alloc_flags.IOMMU_HWPT_ALLOC_NEST_PARENT, 0);
  backend.attachDevice(vfioFd, s2);
  const cmdqv = host.smmus.get('smmu0')!.cmdqv!;
  while (cmdqv.inUse.vintfs < cmdqv.numVintfs - 1) backend.allocViommu(devId, U.iommu_viommu_type.IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV, s2, new Uint8Array(16));
  return () => proc.exit();
}

for (const refusal of ['ENOSPC', 'EBUSY'] as const) {
  test(`a destination that refuses (${refusal}): the migration fails cleanly, the destination is as it was, the source runs on`, () => {
    const { m, run } = source();
    const dest = new HostKernel(DEFAULT_HOST);
    let release: () => void;
    if (refusal === 'ENOSPC') release = fillVintfs(dest);
    else {
      // Another VM already has the device on the destination.
      const other = Machine.create(lineFor(true, '0009:01:00.0'), { host: dest });
      release = () => other.close();
    }
    const held = { ...dest.smmus.get('smmu0')!.cmdqv!.inUse, vmids: dest.smmus.get('smmu0')!.driver.vmidsInUse, user: dest.phys.userBytesInUse };
    const r = migrate(m, { dest, guest: busyGuest(run), downtimeLimitNs: 40_000 });
    assert.equal(r.ok, false);
    if (r.ok) return;
    assert.equal(r.phase, 'restore');
    assert.match(r.reason, refusal === 'ENOSPC' ? /^the destination refused the VM: .*IOMMU_VIOMMU_ALLOC failed: No space left on device/ : /^the destination refused the VM: .*0009:01:00\.0.* in use/);
    assert.ok(!r.reason.includes('\n'));
    assert.ok(r.report.deviceStateBytes > 0, 'it got as far as the switch');
    assert.equal(r.report.downtime!.switchoverNs, 0);
    assert.equal(r.report.downtime!.recreateNs, r.report.recreateIoctls * DEFAULT_COST_MODEL.ioctlNs);
    assert.deepEqual({ ...dest.smmus.get('smmu0')!.cmdqv!.inUse, vmids: dest.smmus.get('smmu0')!.driver.vmidsInUse, user: dest.phys.userBytesInUse }, held);
    checkSourceIntact(m, run, () => undefined);
    release();
    m.close();
  });
}
