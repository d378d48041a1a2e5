// The event path: the SMMUv3 vEVENTQ is allocated when the guest enables its event queue, host
// faults are read from it and written into the guest event queue, with the interrupt, the
// overflow flag, lost-event reporting and write aborts.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildCommand, Op } from '../../../src/arch/smmuv3/commands.js';
import * as R from '../../../src/arch/smmuv3/registers.js';
import { PageTableBuilder } from '../../../src/kit/page-table-builder.js';
import { SMMU_IRQ_EVTQ, SMMU_IRQ_GERROR } from '../../../src/vmm/smmuv3/accel-smmuv3.js';
import { CD_IPA, DATA_IPA, EVENTQ, Guest, GSID, makeRig, type Rig, s1Ste, TABLES, writeCd } from './rig.js';

const IOVA = 0x1000_0000;

/** Device 0 on a translate STE whose stage 1 maps nothing but one page at IOVA. */
function faulting(eventqLog2: number, opts: { eventqBeforeAttach?: boolean } = {}): { rig: Rig; g: Guest } {
  const rig = makeRig();
  const g = new Guest(rig);
  if (opts.eventqBeforeAttach) g.init({ smmuen: true, eventq: eventqLog2, irqs: 0b101 });
  rig.smmu.attachDevice(rig.devs[0]!);
  if (!opts.eventqBeforeAttach) g.init({ smmuen: true, eventq: eventqLog2, irqs: 0b101 });
  let next = TABLES;
  const s1 = new PageTableBuilder(rig.mem, { stage: 1, granule: 4096, inputBits: 48, allocTable: () => (next += 4096) - 4096 });
  s1.map(IOVA, DATA_IPA, 4096, 3);
  writeCd(rig.mem, CD_IPA, 1, s1.root);
  g.writeSte(GSID[0], s1Ste(CD_IPA));
  g.submit(buildCommand(Op.CFGI_STE, { sid: GSID[0] }), g.sync());
  return { rig, g };
}

function fault(rig: Rig, page: number): void {
  const r = rig.kernel.devices[0]!.dmaRead(IOVA + page * 0x1000, 4);
  assert.equal(r.ok, false);
}

describe('event path', () => {
  test('the vEVENTQ is allocated when the guest enables EVENTQ, with its queue depth', () => {
    const rig = makeRig();
    const g = new Guest(rig);
    rig.smmu.attachDevice(rig.devs[0]!);
    assert.equal(rig.smmu.veventq, undefined);
    g.init({ eventq: 4 });
    const alloc = rig.backend.calls.filter((c) => c.name === 'IOMMU_VEVENTQ_ALLOC');
    assert.equal(alloc.length, 1);
    assert.deepEqual([alloc[0]!.args.viommu_id, alloc[0]!.args.type, alloc[0]!.args.veventq_depth], [rig.smmu.viommuId, 1, 16]);
    const q = (rig.smmu as { readonly veventq: { id: number; type: number } | undefined }).veventq;
    assert.equal(q?.type, 1);
    // Re-writing CR0 does not allocate another.
    g.w32(R.CR0.spec.offset, 0b1101);
    assert.equal(rig.backend.calls.filter((c) => c.name === 'IOMMU_VEVENTQ_ALLOC').length, 1);
  });

  test('with EVENTQ already enabled, the vEVENTQ is allocated with the vIOMMU', () => {
    const rig = makeRig();
    const g = new Guest(rig);
    g.init({ eventq: 3 });
    const from = rig.backend.calls.length;
    rig.smmu.attachDevice(rig.devs[0]!);
    assert.deepEqual(rig.backend.calls.slice(from).map((c) => c.name), [
      'IOMMU_GET_HW_INFO',
      'IOMMU_VIOMMU_ALLOC',
      'IOMMU_HWPT_ALLOC',
      'IOMMU_HWPT_ALLOC',
      'IOMMU_VEVENTQ_ALLOC',
      'VFIO_DEVICE_ATTACH_IOMMUFD_PT',
    ]);
    assert.equal(rig.backend.calls.at(-2)!.args.veventq_depth, 8);
  });

  test('a host translation fault lands in the guest event queue with the guest SID, and raises EVENTQ', () => {
    const { rig, g } = faulting(4);
    fault(rig, 2);
    assert.equal(rig.smmu.pollEvents(), 1);
    assert.equal(rig.smmu.pollEvents(), 0, 'drained');
    const w = Array.from({ length: 8 }, (_, i) => rig.mem.read32(EVENTQ + 4 * i));
    assert.equal(w[0]! & 0xff, 0x10, 'F_TRANSLATION');
    assert.equal(w[1], GSID[0], 'StreamID = guest SID');
    assert.equal(w[4], IOVA + 0x2000, 'input address');
    assert.equal(g.r32(R.EVENTQ_PROD.spec.offset), 1);
    assert.equal(rig.smmu.irqs[SMMU_IRQ_EVTQ].count, 1);
    assert.deepEqual(rig.traces.named('smmuv3_propagate_event').at(-1), ['F_TRANSLATION', GSID[0]]);
    assert.equal(rig.smmu.stats.events, 1);
  });

  test('no EVENTQ interrupt when EVENTQ_IRQEN is clear', () => {
    const { rig, g } = faulting(4);
    g.w32(R.IRQ_CTRL.spec.offset, 0b001);
    fault(rig, 2);
    rig.smmu.pollEvents();
    assert.equal(g.r32(R.EVENTQ_PROD.spec.offset), 1);
    assert.equal(rig.smmu.irqs[SMMU_IRQ_EVTQ].count, 0);
  });

  test('a full guest queue loses the event and sets EVENTQ_PROD.OVFLG once', () => {
    const { rig, g } = faulting(1); // 2 entries
    for (const p of [2, 3, 4, 5]) {
      fault(rig, p);
      rig.smmu.pollEvents();
    }
    assert.equal(g.r32(R.EVENTQ_PROD.spec.offset) >>> 0, 0x8000_0002, 'wrapped once, full, overflow flagged');
    assert.equal(rig.smmu.stats.events, 2);
    assert.equal(rig.smmu.stats.eventsLost, 2);
    assert.equal(rig.mem.read32(EVENTQ + 4 * 4), IOVA + 0x2000);
    assert.equal(rig.mem.read32(EVENTQ + 32 + 4 * 4), IOVA + 0x3000);
    // The guest consumes both and acknowledges the overflow; the next event is recorded.
    g.w32(R.EVENTQ_CONS.spec.offset, 0x8000_0002);
    fault(rig, 6);
    rig.smmu.pollEvents();
    assert.equal(g.r32(R.EVENTQ_PROD.spec.offset) >>> 0, 0x8000_0003);
    assert.equal(rig.mem.read32(EVENTQ + 4 * 4), IOVA + 0x6000);
  });

  test('host-side overflow of the vEVENTQ is reported once and tracking restarts', () => {
    const { rig } = faulting(1); // host depth 2
    for (const p of [2, 3, 4, 5]) fault(rig, p);
    assert.equal(rig.smmu.pollEvents(), 2);
    assert.ok(rig.smmu.hostErrors.some((m) => /^vEVENTQ\(type 1 id \d+\): overflowed$/.test(m)), rig.smmu.hostErrors.join('|'));
  });

  test('an event queue outside guest RAM raises GERROR.EVENTQ_ABT_ERR', () => {
    const { rig, g } = faulting(4);
    g.w64(R.EVENTQ_BASE.spec.offset, BigInt(2 ** 31) | 4n);
    fault(rig, 2);
    rig.smmu.pollEvents();
    assert.equal(g.gerror(), 1 << 2);
    assert.equal(rig.smmu.irqs[SMMU_IRQ_GERROR].count, 1);
    assert.equal(g.r32(R.EVENTQ_PROD.spec.offset), 0);
  });

  test('events arriving while EVENTQ is disabled are dropped', () => {
    const { rig, g } = faulting(4);
    g.w32(R.CR0.spec.offset, 0b1001);
    fault(rig, 2);
    assert.equal(rig.smmu.pollEvents(), 1);
    assert.equal(g.r32(R.EVENTQ_PROD.spec.offset), 0);
    assert.equal(rig.smmu.stats.eventsLost, 1);
    assert.equal(rig.mem.read32(EVENTQ), 0);
  });

  test('the SMMU watches its vEVENTQ on the main loop, and stops with the last device', () => {
    const { rig, g } = faulting(4);
    const fd = rig.smmu.veventq!.fd;
    const handler = rig.mainLoop.fdHandlers.get(fd);
    assert.ok(handler, 'handler registered with the vEVENTQ');
    fault(rig, 2);
    handler();
    assert.equal(g.r32(R.EVENTQ_PROD.spec.offset), 1, 'the handler drained the vEVENTQ');
    rig.smmu.unplug(rig.devs[0]!);
    assert.equal(rig.smmu.veventq, undefined);
    assert.equal(rig.mainLoop.fdHandlers.has(fd), false, 'handler removed with the vEVENTQ');
  });

  test('pollEvents without a vEVENTQ does nothing', () => {
    const rig = makeRig();
    assert.equal(rig.smmu.pollEvents(), 0);
    const { rig: r2 } = faulting(4, { eventqBeforeAttach: true });
    fault(r2, 9);
    assert.equal(r2.smmu.pollEvents(), 1);
  });
});
