// The VMM's Tegra241 CMDQV against hostile or careless guests (issue 14 §5): HW-queue
// re-creation in the kernel's order, clean reset, a guest that acknowledges errors without
// fixing them, and bounded error reports.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildCommand, Op } from '../../src/arch/smmuv3/commands.js';
import { boot, RAM_BASE, rig, type Rig } from './cmdqv-rig.js';

const INIT_ERR = 4;
const BASE0 = BigInt(RAM_BASE + 0x10_0000) | 8n;
const BASE1 = BigInt(RAM_BASE + 0x20_0000) | 8n;

/** Host HW queues the VMM holds: ids the kernel allocated and has not destroyed. */
function trackHostQueues(r: Rig): Set<number> {
  const live = new Set<number>();
  const backend = r.backend;
  const alloc = backend.allocHwQueue.bind(backend);
  const freeId = backend.freeId.bind(backend);
  backend.allocHwQueue = (...args) => {
    const id = alloc(...args);
    live.add(id);
    return id;
  };
  backend.freeId = (id, report) => {
    let failed = false;
    freeId(id, (m) => {
      failed = true;
      report(m);
    });
    if (!failed) live.delete(id);
  };
  return live;
}

/** Both VCMDQs of VINTF0 allocated, VINTF0 enabled, BASE0 and BASE1 written: two HW queues. */
function twoQueues(): { r: Rig; live: Set<number> } {
  const r = boot(rig());
  const live = trackHostQueues(r);
  r.w(0x200, 1);
  r.w(0x204, 1);
  r.w(0x1000, 1);
  r.w64(0x20000, BASE0);
  r.w64(0x20080, BASE1);
  assert.ok(r.cmdqv.hwQueue.every((id) => id !== undefined));
  return { r, live };
}

describe('HW queues after a BASE rewrite (issue 14 #2)', () => {
  // issue 14 #2: rewriting BASE0 while queue 1 lives made the VMM destroy queue 0 first (EBUSY),
  // forget it, and fail every later allocation of index 0 (EEXIST), even after reset.
  test('rewriting BASE0 while queue 1 is live re-creates both in the kernel order, queue 1 as it was', () => {
    const { r, live } = twoQueues();
    r.w(0x30080 + 0x8, 1); // VCMDQ1 CONFIG.EN through page0 (direct)
    assert.equal(r.r(0x30080 + 0xc) & 1, 1);
    const errors = r.cmdqv.errorReports.total;
    const from = r.backend.calls.length;
    r.w64(0x20000, BASE0);
    const calls = r.backend.calls.slice(from).map((c) => [c.name, c.name === 'IOMMU_HW_QUEUE_ALLOC' ? c.args.index : c.args.id, c.ret]);
    const [, id1] = [r.cmdqv.hwQueue[0], r.cmdqv.hwQueue[1]];
    assert.equal(calls.filter((c) => c[2] !== 0).length, 0, `every call succeeds: ${JSON.stringify(calls)}`);
    assert.deepEqual(calls.map((c) => c[0]), ['IOMMU_DESTROY', 'IOMMU_DESTROY', 'IOMMU_HW_QUEUE_ALLOC', 'IOMMU_HW_QUEUE_ALLOC']);
    assert.deepEqual(calls.slice(2).map((c) => c[1]), [0, 1], 'allocated ascending');
    assert.notEqual(id1, undefined);
    assert.equal(r.cmdqv.errorReports.total, errors, 'nothing reported');
    assert.equal(r.r(0x30010) & INIT_ERR, 0);
    assert.equal(r.r(0x30090) & INIT_ERR, 0);
    assert.equal(r.r(0x30080 + 0xc) & 1, 1, 'VCMDQ1 still enabled: a BASE0 write does not touch queue 1');
    assert.equal(live.size, 2);
  });

  test('after the rewrite, VINTF off/on and reset() leave no INIT_ERR and no host queue behind', () => {
    const { r, live } = twoQueues();
    r.w64(0x20000, BASE0);
    r.w(0x1000, 0);
    assert.equal(live.size, 0, 'VINTF disable frees both');
    r.w(0x1000, 1);
    assert.equal(live.size, 2);
    assert.equal(r.r(0x30010) & INIT_ERR, 0);
    r.cmdqv.reset();
    assert.equal(live.size, 0, 'reset frees both');
    assert.equal(r.r(0x10010) & INIT_ERR, 0);
    assert.equal(r.r(0x10090) & INIT_ERR, 0);
    // The reset machine works again: the same programming gives two HW queues.
    r.w(0x200, 1);
    r.w(0x204, 1);
    r.w(0x1000, 1);
    r.w64(0x20000, BASE0);
    r.w64(0x20080, BASE1);
    assert.equal(live.size, 2);
    assert.equal(r.r(0x30010) & INIT_ERR, 0);
    assert.equal(r.r(0x30090) & INIT_ERR, 0);
  });

  test('a destroy the kernel refuses is kept and retried, never forgotten', () => {
    const { r, live } = twoQueues();
    const backend = r.backend;
    const freeId = backend.freeId.bind(backend);
    let refuse = 1;
    backend.freeId = (id, report) => (refuse-- > 0 ? report(`Failed to free id: ${id} Device or resource busy`) : freeId(id, report));
    const id1 = r.cmdqv.hwQueue[1]!;
    r.w(0x204, 0); // ALLOC 1 -> 0: free(1), refused
    assert.equal(r.cmdqv.hwQueue[1], undefined, 'VCMDQ1 left HW mode');
    assert.equal(r.cmdqv.undestroyed[1], id1, 'the host queue is remembered');
    backend.freeId = freeId;
    r.cmdqv.reset();
    assert.equal(r.cmdqv.undestroyed[1], undefined);
    assert.equal(live.size, 0);
  });
});

describe('error storms (issue 14 #3)', () => {
  // issue 14 #3: a guest that acknowledges (GERRORN = GERROR) without rewriting the bad command
  // made the vEVENTQ handler read the event its own interrupt caused, forever.
  test('a guest acknowledging without fixing the command cannot hold the main loop', () => {
    const r = boot(rig());
    r.w(0x200, 1);
    r.w(0x1000, 1);
    r.w64(0x20000, BASE0);
    r.w(0x30008, 1);
    let rounds = 0;
    r.cmdqv.irq.onRaise = () => {
      // Bounded so that a regression fails instead of hanging the test run.
      if (++rounds < 10_000) r.w(0x30014, r.r(0x30010));
    };
    buildCommand(Op.CFGI_STE, { sid: 8 }).forEach((x, i) => r.proc.mem.write32(r.ramVa + 0x10_0000 + i * 4, x));
    r.w(0x30004, 1);
    r.clock.advance(0); // one runMainLoop()
    assert.equal(rounds, 1, 'one event per main-loop pass; the next one is the next pass');
    assert.ok(r.clock.pending <= 2, `timers stay bounded (${r.clock.pending})`);
    // The storm goes on at the guest's pace: each later pass delivers one more round.
    r.clock.advance(10_000);
    assert.ok(rounds > 1 && rounds < 100, `${rounds}`);
    assert.ok(r.clock.pending <= 2);
  });
});

describe('bounded error reports (issue 14 #9)', () => {
  // issue 14 #9: every refused BASE write appended to an unbounded list.
  test('200 000 refused BASE writes keep a bounded error list with an exact count', () => {
    const r = boot(rig());
    r.w(0x1000, 1);
    r.w(0x204, 1); // queue 1 without queue 0: every allocation fails (EIO)
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0; // the refusals' ErrnoErrors need no stacks here (speed only)
    try {
      for (let i = 0; i < 200_000; i++) r.w(0x20080, (RAM_BASE + 0x20_0000) | 8);
    } finally {
      Error.stackTraceLimit = limit;
    }
    assert.equal(r.cmdqv.errorReports.total, 200_000, 'every refusal counted');
    assert.ok(r.cmdqv.errors.length <= r.cmdqv.errorReports.capacity, 'the list is bounded');
    assert.match(r.cmdqv.errors.at(-1)!, /^IOMMU_HW_QUEUE_ALLOC failed/);
    assert.equal(r.log.count('guest_error', 'tegra241-cmdqv'), 400_000, 'the bounded log counts them too');
    assert.ok(r.log.entries().length <= r.log.capacity);
  });
});
