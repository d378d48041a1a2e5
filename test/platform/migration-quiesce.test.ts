import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Machine } from '../../src/platform/machine.js';
import { runWorkload } from '../../src/platform/workload.js';
import { DEFAULT_COST_MODEL } from '../../src/platform/cost-model.js';
import { quiesceQueues, queueStates } from '../../src/platform/migration/quiesce.js';
import { hostObjects } from '../../src/platform/migration/host-objects.js';
import { buildCommand, Op } from '../../src/arch/smmuv3/commands.js';
import * as C from '../../src/arch/tegra241-cmdqv/registers.js';
import * as R from '../../src/arch/smmuv3/registers.js';
import { qIndexMask } from '../../src/arch/smmuv3/queue.js';

const OPTS = { timeoutNs: 50_000, pollIntervalNs: 1_000, costs: DEFAULT_COST_MODEL };

/** A machine whose guest ran a short workload: both VCMDQs in HW mode, the injected error handled. */
function booted(): Machine {
  const m = Machine.create([]);
  runWorkload(m, { ops: 8, batch: 4, pages: 1, injectError: true, skipInvalidation: false });
  return m;
}

/** Put `cmd` in VCMDQ `i`'s ring and ring the doorbell, as a guest does (guest RAM + page0), without waiting. */
function publish(m: Machine, i: number, cmd: Uint32Array): void {
  const s = m.smmus[0]!;
  const base = s.cmdqv!.read64(C.vcmdqPage1Offset(i) + C.VCMDQ_BASE.spec.offset);
  const ring = Number(C.VCMDQ_BASE.f.ADDR.getBig(base) << BigInt(C.VCMDQ_BASE.f.ADDR.lsb));
  const log2 = Number(C.VCMDQ_BASE.f.LOG2SIZE.getBig(base));
  const prodReg = s.cmdqvBase! + C.vcmdqPage0Offset(i) + C.VCMDQ_PROD.spec.offset;
  const prod = m.read(prodReg, 4).value;
  const p = Number(prod);
  const bytes = new Uint8Array(cmd.buffer, cmd.byteOffset, 16);
  m.writeRam(ring + (p & qIndexMask(log2)) * 16, bytes.slice());
  m.write(prodReg, 4, (p + 1) & ((1 << (log2 + 1)) - 1));
}

test('quiesce: a settled VM drains at the first poll; each HW VCMDQ poll is charged as uncached reads', () => {
  const m = booted();
  try {
    const states = queueStates(m);
    assert.deepEqual(states.map((q) => [q.queue, q.state]), [
      ['smmuv3.0 VCMDQ0', 'drained'],
      ['smmuv3.0 VCMDQ1', 'drained'],
      ['smmuv3.0 CMDQ', 'drained'],
    ]);
    const r = quiesceQueues(m, OPTS);
    assert.equal(r.ok, true);
    assert.equal(r.polls, 1);
    assert.equal(r.waitedNs, 2 * 4 * DEFAULT_COST_MODEL.directMmioNs);
    assert.equal(r.reason, undefined);
  } finally {
    m.close();
  }
});

test('quiesce: a VCMDQ in error fails at once, naming the queue and why it cannot move', () => {
  const m = booted();
  try {
    publish(m, 1, buildCommand(Op.CFGI_STE, { sid: 0 })); // not a guest VCMDQ command: CERROR_ILL
    const r = quiesceQueues(m, OPTS);
    assert.equal(r.ok, false);
    assert.equal(r.polls, 1);
    assert.match(r.reason!, /^smmuv3\.0 VCMDQ1 is in error \(CONS 0x1000000, CERROR 1\).*GERRORN/);
    assert.equal(r.queues.find((q) => q.queue === 'smmuv3.0 VCMDQ1')!.state, 'error');
  } finally {
    m.close();
  }
});

test('quiesce: a queue whose VINTF the host disabled never drains: the wait gives up at its bound', () => {
  const m = booted();
  try {
    const vintf = hostObjects(m)[0]!.vintf!;
    const hw = m.host.smmus.get('smmu0')!.cmdqvHw!;
    const cfg = C.vintfBlockOffset(vintf) + C.VINTF_CONFIG.spec.offset;
    hw.write(cfg, 4, C.VINTF_CONFIG.f.ENABLE.set(hw.read(cfg, 4), 0));
    publish(m, 0, buildCommand(Op.TLBI_NH_ASID, { asid: 1 }));
    const r = quiesceQueues(m, OPTS);
    assert.equal(r.ok, false);
    assert.ok(r.waitedNs >= OPTS.timeoutNs && r.waitedNs < OPTS.timeoutNs + 2 * OPTS.pollIntervalNs, `${r.waitedNs}`);
    assert.ok(r.polls > 10);
    assert.match(r.reason!, /^smmuv3\.0 VCMDQ0 CONS 0x\w+ PROD 0x\w+: did not drain in 5\d\.\d µs/);
    // Only read: the queue is still pending, its registers as they were.
    assert.equal(queueStates(m)[0]!.state, 'pending');
  } finally {
    m.close();
  }
});

test('quiesce: an SMMU CMDQ that is disabled runs nothing: idle, its state moves with the VMM', () => {
  const m = booted();
  try {
    const s = m.smmus[0]!;
    const cr0 = m.read(s.base + R.CR0.spec.offset, 4).value;
    m.write(s.base + R.CR0.spec.offset, 4, R.CR0.f.CMDQEN.set(Number(cr0), 0));
    const prod = Number(m.read(s.base + R.CMDQ_PROD.spec.offset, 4).value);
    m.write(s.base + R.CMDQ_PROD.spec.offset, 4, prod + 1);
    const q = queueStates(m).find((x) => x.queue === 'smmuv3.0 CMDQ')!;
    assert.equal(q.state, 'idle');
    assert.notEqual(q.cons, q.prod);
    assert.equal(quiesceQueues(m, OPTS).ok, true);
  } finally {
    m.close();
  }
});
