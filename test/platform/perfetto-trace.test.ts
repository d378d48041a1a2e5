// The Perfetto timeline of a run (issue 15, parts 1-2): a small workload on the default machine
// (VCMDQ path) and with cmdqv=off (trapped path), written by the streaming ChromeTraceWriter and
// loaded back as JSON: one process per layer, slices with non-zero durations, flows from the
// guest's access to the queue that consumed it, a monotone timeline, and modelled time that
// shows the point (trapped invalidations take longer than VCMDQ ones).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ChromeTraceWriter } from '../../src/kit/trace.js';
import { DEFAULT_ARGS, Machine } from '../../src/platform/machine.js';
import { DEFAULT_COST_MODEL, ZERO_COST_MODEL, type CostModel } from '../../src/platform/cost-model.js';
import { lineFor } from '../../src/platform/compare.js';
import { TRACE_PID } from '../../src/platform/timeline.js';
import { runWorkload, type WorkloadReport } from '../../src/platform/workload.js';

interface Ev {
  ph: string;
  name?: string;
  ts?: number;
  pid: number;
  tid: number;
  id?: number;
  args?: Record<string, unknown>;
}

const WORKLOAD = { ops: 32, batch: 4, pages: 1, injectError: false, skipInvalidation: false, verifyEvery: 8 };

function traced(
  argv: readonly string[],
  opts: { limit?: number; costModel?: CostModel; workload?: Partial<typeof WORKLOAD> } = {},
): { events: Ev[]; rep: WorkloadReport; writer: ChromeTraceWriter; chunks: number; endNs: number } {
  let text = '';
  let chunks = 0;
  const writer = new ChromeTraceWriter((c) => {
    text += c;
    chunks++;
  }, opts.limit);
  const m = Machine.create(argv, { trace: writer, costModel: opts.costModel });
  const rep = runWorkload(m, { ...WORKLOAD, ...opts.workload });
  const endNs = m.clock.now;
  writer.close(endNs);
  m.close();
  const doc = JSON.parse(text) as { traceEvents: Ev[]; displayTimeUnit: string };
  return { events: doc.traceEvents, rep, writer, chunks, endNs };
}

const cmdqvOff = DEFAULT_ARGS.map((a) => a.replace('cmdqv=on', 'cmdqv=off'));
const emulated = lineFor(DEFAULT_ARGS, 'emulated');

/** B/E pairs per track as [name, begin, end] (throws on an unbalanced track). */
function slices(events: readonly Ev[]): { name: string; pid: number; tid: number; b: number; e: number }[] {
  const stacks = new Map<string, Ev[]>();
  const out: { name: string; pid: number; tid: number; b: number; e: number }[] = [];
  for (const e of events) {
    const key = `${e.pid}/${e.tid}`;
    if (e.ph === 'B') stacks.set(key, [...(stacks.get(key) ?? []), e]);
    if (e.ph === 'E') {
      const st = stacks.get(key);
      const b = st?.pop();
      assert.ok(b, `E without B on ${key} at ${e.ts}`);
      out.push({ name: b.name!, pid: e.pid, tid: e.tid, b: b.ts!, e: e.ts! });
    }
  }
  for (const [k, st] of stacks) assert.equal(st.length, 0, `unterminated slices on ${k}`);
  return out;
}

describe('Perfetto trace of a run', () => {
  const on = traced(DEFAULT_ARGS);
  const off = traced(cmdqvOff);

  test('one named process per layer (>= 5), threads named per queue', () => {
    for (const { events } of [on, off]) {
      const procs = new Map(events.filter((e) => e.ph === 'M' && e.name === 'process_name').map((e) => [e.pid, e.args!.name as string]));
      assert.ok(procs.size >= 5, `processes: ${[...procs.values()].join(', ')}`);
      assert.deepEqual([...procs.keys()].sort(), Object.values(TRACE_PID).sort());
      const threads = events.filter((e) => e.ph === 'M' && e.name === 'thread_name').map((e) => e.args!.name as string);
      assert.ok(threads.some((t) => /CMDQ$/.test(t)));
      assert.ok(threads.some((t) => /event queue$/.test(t)));
    }
    const vcmdqThreads = on.events.filter((e) => e.ph === 'M' && e.name === 'thread_name' && e.pid === TRACE_PID.cmdqv);
    assert.ok(vcmdqThreads.length >= 2, 'a thread per VCMDQ');
  });

  test('slices are balanced with non-zero durations; exits are at least the modelled exit cost', () => {
    for (const { events } of [on, off]) {
      const s = slices(events);
      const exits = s.filter((x) => x.name === 'kvm_exit');
      assert.ok(exits.length > 0);
      const exitUs = (DEFAULT_COST_MODEL.vmExitNs + DEFAULT_COST_MODEL.mmioEmulationNs) / 1000;
      for (const x of exits) assert.ok(x.e - x.b >= exitUs - 1e-9, `kvm_exit of ${x.e - x.b} us`);
      const consumed = s.filter((x) => x.name.startsWith('consume '));
      assert.ok(consumed.length > 0);
      for (const x of consumed) assert.ok(x.e > x.b, `${x.name} has zero duration`);
      assert.ok(s.some((x) => x.pid === TRACE_PID.hostKernel && x.e > x.b), 'ioctl slices');
      const dma = s.filter((x) => x.name.startsWith('smmuv3_translate'));
      assert.ok(dma.length > 0 && dma.every((x) => x.pid === TRACE_PID.hostSmmu && x.e > x.b), 'DMA translation slices');
    }
  });

  test('the timeline is monotone in file order and counters sample occupancy and exits', () => {
    for (const { events } of [on, off]) {
      let last = -1;
      for (const e of events) {
        if (e.ph === 'M') continue;
        assert.ok(e.ts! >= last, `${e.ph} ${e.name ?? ''} at ${e.ts} after ${last}`);
        last = e.ts!;
      }
      assert.ok(last > 0, 'time advanced');
      const counters = new Set(events.filter((e) => e.ph === 'C').map((e) => e.name));
      assert.ok(counters.has('VM exits'));
      assert.ok([...counters].some((n) => n!.endsWith('occupancy')));
    }
  });

  test('flows: doorbells to the VCMDQ that consumed them; trapped writes through the ioctl to the host CMDQ', () => {
    const ends = (events: readonly Ev[], name: string) => {
      const starts = new Map(events.filter((e) => e.ph === 's' && e.name === name).map((e) => [e.id, e]));
      return events.filter((e) => e.ph === 'f' && e.name === name).map((f) => ({ s: starts.get(f.id), f }));
    };
    const doorbells = ends(on.events, 'doorbell');
    assert.ok(doorbells.length > 0, 'doorbell flows');
    for (const { s, f } of doorbells) {
      assert.equal(s?.pid, TRACE_PID.guest);
      assert.equal(f.pid, TRACE_PID.cmdqv);
    }
    const trapped = ends(off.events, 'trapped invalidation');
    assert.ok(trapped.length > 0, 'trapped flows');
    for (const { s, f } of trapped) {
      assert.equal(s?.pid, TRACE_PID.guest);
      assert.equal(f.pid, TRACE_PID.hostSmmu);
      const steps = off.events.filter((e) => e.ph === 't' && e.id === f.id);
      assert.equal(steps[steps.length - 1]?.pid, TRACE_PID.hostKernel, 'the flow passes through the ioctl');
    }
    assert.ok(off.events.some((e) => e.ph === 'B' && e.name === 'IOMMU_HWPT_INVALIDATE'));
    assert.equal(ends(off.events, 'doorbell').length, 0, 'no VCMDQ with cmdqv=off');
  });

  test('modelled time shows the point: a trapped invalidation batch takes longer than a VCMDQ one', () => {
    assert.ok(on.rep.vcmdq.batches > 0 && off.rep.smmuCmdq.batches > 0);
    const vcmdq = on.rep.vcmdq.modelNs / on.rep.vcmdq.batches;
    const trapped = off.rep.smmuCmdq.modelNs / off.rep.smmuCmdq.batches;
    assert.ok(vcmdq > 0);
    // NVIDIA's 70-90% reduction is the check on the defaults (src/platform/cost-model.ts); with
    // batches of 4 the defaults give 88% (the guest driver's per-command register accesses make
    // the trapped path's exits grow with the batch: 90% at 8, 91% at 16).
    const reduction = 1 - vcmdq / trapped;
    assert.ok(reduction >= 0.7 && reduction <= 0.9, `VCMDQ ${vcmdq} ns vs trapped ${trapped} ns per batch: ${(reduction * 100).toFixed(0)}% less`);
  });
});

/** Flows by id: their events in file order. */
function flows(events: readonly Ev[], name: string): Ev[][] {
  const byId = new Map<number, Ev[]>();
  for (const e of events) {
    if ((e.ph === 's' || e.ph === 't' || e.ph === 'f') && e.name === name) byId.set(e.id!, [...(byId.get(e.id!) ?? []), e]);
  }
  return [...byId.values()];
}

/** The slice each flow event binds to: the innermost one open on its track at that point of the file. */
function bindings(events: readonly Ev[]): Map<Ev, string> {
  const stacks = new Map<string, string[]>();
  const out = new Map<Ev, string>();
  for (const e of events) {
    const key = `${e.pid}/${e.tid}`;
    const st = stacks.get(key) ?? [];
    stacks.set(key, st);
    if (e.ph === 'B') st.push(e.name!);
    else if (e.ph === 'E') st.pop();
    else if (e.ph === 's' || e.ph === 't' || e.ph === 'f') {
      assert.ok(st.length > 0, `${e.ph} of flow ${e.name} ${e.id} on ${key} at ${e.ts} is in no slice`);
      out.set(e, st[st.length - 1]!);
    }
  }
  return out;
}

describe('Perfetto trace: the trapped walk, the event queues, counters', () => {
  const on = traced(DEFAULT_ARGS, { workload: { injectError: true } });
  const off = traced(cmdqvOff);

  test('every flow starts, ends, and each of its events lies in a slice of its track; the file stays in time order', () => {
    for (const { events } of [on, off]) {
      let last = 0;
      for (const e of events) {
        if (e.ph === 'M') continue;
        assert.ok(e.ts! >= last, `${e.ph} ${e.name ?? ''} at ${e.ts} after ${last}`);
        last = e.ts!;
      }
      bindings(events);
      const byId = new Map<number, string[]>();
      for (const e of events) if (e.ph === 's' || e.ph === 't' || e.ph === 'f') byId.set(e.id!, [...(byId.get(e.id!) ?? []), e.ph]);
      for (const [id, phs] of byId) {
        assert.equal(phs[0], 's', `flow ${id}: ${phs.join('')}`);
        assert.equal(phs[phs.length - 1], 'f', `flow ${id}: ${phs.join('')}`);
        assert.equal(phs.filter((p) => p === 's' || p === 'f').length, 2, `flow ${id}: ${phs.join('')}`);
      }
    }
  });

  test('the VMM walks the trapped CMDQ in a smmuv3_cmdq_consume slice that the trapped flow passes through', () => {
    const s = slices(off.events).filter((x) => x.name === 'smmuv3_cmdq_consume');
    assert.ok(s.length > 0, 'walk slices');
    for (const x of s) {
      assert.equal(x.pid, TRACE_PID.vmm);
      assert.ok(x.e > x.b, 'the walk carries the emulation cost');
    }
    const bound = bindings(off.events);
    const through = flows(off.events, 'trapped invalidation').filter((f) => f.some((e) => e.pid === TRACE_PID.vmm));
    assert.ok(through.length > 0, 'trapped flows through the walk');
    for (const f of through) {
      assert.deepEqual(
        f.map((e) => [e.ph, e.pid]),
        [['s', TRACE_PID.guest], ['t', TRACE_PID.vmm], ['t', TRACE_PID.hostKernel], ['f', TRACE_PID.hostSmmu]],
      );
      assert.deepEqual(f.slice(0, 2).map((e) => bound.get(e)), ['kvm_exit', 'smmuv3_cmdq_consume']);
      assert.match(bound.get(f[3]!)!, /^consume \d+ commands?$/);
    }
    // Invalidations go through IOMMU_HWPT_INVALIDATE (CFGI_STE through an attach).
    assert.ok(through.some((f) => bound.get(f[2]!) === 'IOMMU_HWPT_INVALIDATE'));
    const counters = off.events.filter((e) => e.ph === 'C' && e.pid === TRACE_PID.vmm && /CMDQ \(guest, trapped\) occupancy$/.test(e.name!));
    assert.ok(counters.some((c) => (c.args!.value as number) > 0), 'the guest ring held commands when the walk began');
  });

  test('doorbell flows bind the guest page0 write to the VCMDQ batch it caused', () => {
    const bound = bindings(on.events);
    const doorbells = flows(on.events, 'doorbell');
    assert.ok(doorbells.length > 0);
    for (const [s, f] of doorbells) {
      assert.equal(bound.get(s!), 'vcmdq page0 write (no exit)');
      assert.equal(f!.pid, TRACE_PID.cmdqv);
      assert.match(bound.get(f!)!, /^consume \d+ commands?$/);
    }
  });

  test('a faulting run: host SMMU event queue → vEVENTQ → VMM → guest event queue, slices with durations and one flow per record', () => {
    for (const run of [on, off]) {
      assert.ok(run.rep.verification.hostFaults > 0, 'the after-unmap checks fault');
      const s = slices(run.events);
      const hop = (name: string, pid: number) => {
        const xs = s.filter((x) => x.name === name);
        assert.ok(xs.length > 0, `${name} slices`);
        for (const x of xs) {
          assert.equal(x.pid, pid, name);
          assert.ok(x.e > x.b, `${name} has zero duration`);
        }
        return xs;
      };
      const host = hop('smmuv3_host_event', TRACE_PID.hostSmmu);
      hop('iommufd_viommu_report_event', TRACE_PID.hostKernel);
      hop('smmuv3_accel_event_read', TRACE_PID.vmm);
      const guest = hop('smmuv3_propagate_event', TRACE_PID.guest);
      assert.equal(host.length, run.rep.verification.hostFaults);
      assert.equal(guest.length, run.rep.verification.hostFaults);
      const bound = bindings(run.events);
      const records = flows(run.events, 'fault event').filter((f) => f[0]!.pid === TRACE_PID.hostSmmu);
      assert.equal(records.length, run.rep.verification.hostFaults);
      for (const f of records) {
        assert.deepEqual(f.map((e) => bound.get(e)), ['smmuv3_host_event', 'iommufd_viommu_report_event', 'smmuv3_accel_event_read', 'smmuv3_propagate_event']);
        assert.ok(f[3]!.ts! > f[0]!.ts!, 'the VMM reads the record later, on its main loop');
      }
      const threads = run.events.filter((e) => e.ph === 'M' && e.name === 'thread_name').map((e) => `${e.pid}:${e.args!.name as string}`);
      assert.ok(threads.includes(`${TRACE_PID.guest}:smmuv3.0 event queue`), threads.join(', '));
      assert.ok(threads.some((t) => /^3:vEVENTQ \d+ \(SMMUv3\)$/.test(t)), threads.join(', '));
      const counters = new Set(run.events.filter((e) => e.ph === 'C').map((e) => `${e.pid}:${e.name}`));
      for (const c of [`${TRACE_PID.hostSmmu}:smmu0 event queue occupancy`, `${TRACE_PID.guest}:smmuv3.0 event queue occupancy`, `${TRACE_PID.hostKernel}:syscalls`]) {
        assert.ok(counters.has(c), `${c} in ${[...counters].join(', ')}`);
      }
      assert.ok([...counters].some((c) => /^3:vEVENTQ \d+ occupancy$/.test(c)));
      // The VMM reads each record with read(2): a syscall slice inside its handler.
      assert.ok(s.some((x) => x.name === 'read' && x.pid === TRACE_PID.hostKernel && x.e > x.b));
      assert.ok(run.events.some((e) => e.ph === 'B' && e.name === 'read' && e.args === undefined), 'a read has no ioctl request');
    }
  });

  test('a CMDQV queue error reaches the VMM through the Tegra241 vEVENTQ (flow from the host kernel to the VMM)', () => {
    assert.ok(on.rep.errors.cmdqvErrorsHandled > 0);
    const bound = bindings(on.events);
    const errs = flows(on.events, 'fault event').filter((f) => f[0]!.pid === TRACE_PID.hostKernel);
    assert.ok(errs.length > 0);
    for (const f of errs) assert.deepEqual(f.map((e) => bound.get(e)), ['iommufd_viommu_report_event', 'tegra241_cmdqv_event_read']);
  });

  test('the emulated SMMUv3: its CMDQ walk in the VMM and its guest event queue get slices too', () => {
    const emu = traced(emulated);
    const s = slices(emu.events);
    const walks = s.filter((x) => x.name === 'smmuv3_cmdq_consume');
    assert.ok(walks.length > 0 && walks.every((x) => x.pid === TRACE_PID.vmm && x.e > x.b));
    const records = s.filter((x) => x.name === 'smmuv3_propagate_event');
    assert.ok(records.length > 0 && records.every((x) => x.pid === TRACE_PID.guest && x.e > x.b), 'the after-unmap checks fault into the guest event queue');
    assert.equal(s.filter((x) => x.name === 'smmuv3_host_event').length, 0, 'no host SMMU on this path');
  });

  test('writing a trace does not change modelled time', () => {
    for (const argv of [DEFAULT_ARGS, cmdqvOff, emulated]) {
      const m = Machine.create(argv);
      runWorkload(m, WORKLOAD);
      const untraced = m.clock.now;
      m.close();
      assert.equal(traced(argv).endNs, untraced);
    }
  });
});

describe('modelled time and the trace writer', () => {
  test('a zero cost model charges nothing to invalidations', () => {
    const m = Machine.create(cmdqvOff, { costModel: ZERO_COST_MODEL });
    const rep = runWorkload(m, WORKLOAD);
    assert.equal(rep.smmuCmdq.modelNs, 0);
    m.close();
  });

  test('a user cost model scales the trapped path', () => {
    const slow = { ...DEFAULT_COST_MODEL, ioctlNs: DEFAULT_COST_MODEL.ioctlNs + 100_000 };
    const a = runWorkload(Machine.create(cmdqvOff), WORKLOAD).smmuCmdq;
    const b = runWorkload(Machine.create(cmdqvOff, { costModel: slow }), WORKLOAD).smmuCmdq;
    assert.equal(b.modelNs - a.modelNs, 100_000 * b.ioctls);
  });

  test('--trace-limit: recording stops at the limit, every slice still ends, output is streamed', () => {
    const full = traced(DEFAULT_ARGS);
    const capped = traced(DEFAULT_ARGS, { limit: 500 });
    assert.ok(capped.writer.dropped > 0);
    assert.ok(capped.events.length < full.events.length);
    slices(capped.events); // balanced
    assert.ok(full.chunks > 2, `written in ${full.chunks} chunks`);
  });

  test('without a trace nothing is written, and time still advances', () => {
    const m = Machine.create(DEFAULT_ARGS);
    const rep = runWorkload(m, WORKLOAD);
    assert.ok(rep.vcmdq.modelNs > 0);
    m.close();
  });
});
