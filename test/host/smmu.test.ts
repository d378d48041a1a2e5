// Host SMMUv3 behaviours seen from the kernel side: configuration cache, range invalidation,
// CERROR on the main command queue, event queue and vEVENTQ queueing rules, context isolation.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildCommand, Op } from '../../src/arch/smmuv3/commands.js';
import { HostKernel } from '../../src/host/kernel/host-kernel.js';
import { ACCESS_READ, HostSmmu, Translation } from '../../src/host/smmuv3/smmu.js';
import { assertPlainState } from '../../src/kit/persist.js';
import { VeventQueue } from '../../src/host/iommufd/veventq.js';
import { Errno } from '../../src/uapi/errno.js';
import * as U from '../../src/uapi/iommufd.js';
import { makeVm, UapiClient } from './uapi-client.js';

test('the STE is cached: a changed STE takes effect only after CFGI_STE', () => {
  const kernel = new HostKernel();
  const vm = makeVm(kernel, 0, 2 ** 22, false);
  assert.equal(vm.c.attach(vm.vfio, vm.s2Id), 0);
  const dev = kernel.devices[0]!;
  const inst = kernel.smmus.get('smmu0')!;
  assert.equal(dev.dmaRead(0x1000, 4).ok, true);
  // Rewrite the STE in memory to abort without telling the SMMU.
  const base = Number(inst.hw.bank.read64(0x80) & 0x000f_ffff_ffff_ffc0n);
  kernel.phys.mem.write32(base + dev.sid * 64, 1);
  inst.hw.iotlb.invalidateAll();
  assert.equal(dev.dmaRead(0x1000, 4).ok, true, 'cached configuration still used');
  inst.driver.submit([buildCommand(Op.CFGI_STE, { sid: dev.sid })]);
  assert.equal(dev.dmaRead(0x1000, 4).ok, false, 'abort after CFGI_STE');
});

test('the STE is cached per StreamID until CFGI_STE_RANGE covers it, also right after a DMA of the same stream', () => {
  const kernel = new HostKernel();
  const vm = makeVm(kernel, 0, 2 ** 22, false);
  assert.equal(vm.c.attach(vm.vfio, vm.s2Id), 0);
  const dev = kernel.devices[0]!;
  const inst = kernel.smmus.get('smmu0')!;
  assert.equal(dev.dmaRead(0x1000, 4).ok, true);
  const base = Number(inst.hw.bank.read64(0x80) & 0x000f_ffff_ffff_ffc0n);
  kernel.phys.mem.write32(base + dev.sid * 64, 1);
  for (let i = 0; i < 3; i++) {
    inst.hw.iotlb.invalidateAll();
    assert.equal(dev.dmaRead(0x1000, 4).ok, true, 'cached configuration still used');
  }
  // A range that does not hold the StreamID changes nothing; one that does drops it.
  inst.driver.submit([buildCommand(Op.CFGI_STE_RANGE, { sid: dev.sid ^ 0x100, range: 3 })]);
  assert.equal(dev.dmaRead(0x1000, 4).ok, true, 'other StreamIDs invalidated only');
  inst.driver.submit([buildCommand(Op.CFGI_STE_RANGE, { sid: dev.sid, range: 0 })]);
  assert.equal(dev.dmaRead(0x1000, 4).ok, false, 'abort after CFGI_STE_RANGE');
});

test('range TLBI (TG/NUM/SCALE) removes exactly the pages in range', () => {
  const kernel = new HostKernel();
  const vm = makeVm(kernel, 0, 2 ** 22, false);
  assert.equal(vm.c.attach(vm.vfio, vm.s2Id), 0);
  const dev = kernel.devices[0]!;
  const smmu = kernel.smmus.get('smmu0')!;
  for (let p = 0; p < 64; p++) assert.equal(dev.dmaRead(p * 4096, 4).ok, true);
  const vmid = smmu.hw.iotlb.entries()[0]!.vmid;
  assert.equal(smmu.hw.iotlb.entries().filter((e) => e.vmid === vmid).length, 64);
  // TLBI_S2_IPA with TG=4K, SCALE=1, NUM=3: (3+1) * 2^1 = 8 pages from page 16.
  smmu.driver.submit([buildCommand(Op.TLBI_S2_IPA, { vmid, addr: 16 * 4096, tg: 1, scale: 1, num: 3 })]);
  const left = new Set(smmu.hw.iotlb.entries().filter((e) => e.vmid === vmid).map((e) => e.iova / 4096));
  assert.equal(left.size, 56);
  for (let p = 16; p < 24; p++) assert.equal(left.has(p), false, `page ${p} invalidated`);
  assert.equal(left.has(15) && left.has(24), true, 'neighbours kept');
});

test('an illegal command on the main CMDQ raises CMDQ_ERR; the kernel skips it and goes on', () => {
  const kernel = new HostKernel();
  const smmu = kernel.smmus.get('smmu0')!;
  const before = smmu.hw.stats.cerrors;
  const bad = new Uint32Array(4);
  bad[0] = 0x7f;
  smmu.driver.submit([bad, buildCommand(Op.TLBI_NSNH_ALL)]);
  assert.equal(smmu.hw.stats.cerrors, before + 1);
  assert.equal(smmu.hw.cmdqErrorActive, false, 'acknowledged');
  assert.equal(smmu.hw.bank.read(0x9c, 4) & 0xfffff, smmu.hw.bank.read(0x98, 4), 'CONS caught up with PROD');
  assert.match(kernel.log.last()!.message, /CMDQ error 1/);
});

test('vEVENTQ: sequence numbers, depth limit with a lost-events header, whole-record reads', () => {
  const q = new VeventQueue(1, 2);
  const p = (b: number) => new Uint8Array(32).fill(b);
  q.report(p(1));
  q.report(p(2));
  q.report(p(3)); // dropped: header with seq 2
  q.report(p(4)); // dropped: header now seq 3
  assert.equal(q.dropped, 2);
  // read() into a plain buffer standing in for user memory.
  const read = (max: number) => {
    const buf = new Uint8Array(max);
    return buf.subarray(0, q.read(max, (bytes, at) => buf.set(bytes, at)));
  };
  assert.equal(read(39).length, 0, 'first record does not fit');
  const r = read(1000);
  assert.equal(r.length, 40 + 40 + 8);
  const h = (at: number) => U.iommufd_vevent_header.decode(r, at);
  assert.deepEqual([h(0).flags, h(0).sequence, r[8]], [0, 0, 1]);
  assert.deepEqual([h(40).flags, h(40).sequence, r[48]], [0, 1, 2]);
  assert.deepEqual([h(80).flags, h(80).sequence], [1, 3], 'LOST_EVENTS carries the newest dropped sequence');
  q.report(p(5));
  const r2 = read(1000);
  assert.equal(U.iommufd_vevent_header.decode(r2).sequence, 4, 'gap-free after the header');
  assert.equal(read(1000).length, 0, 'empty: read returns 0 without blocking');
});

test('one context cannot see or destroy another context\'s objects', () => {
  const kernel = new HostKernel();
  const vm = makeVm(kernel, 0, 2 ** 22, false);
  const other = new UapiClient(kernel.createProcess());
  assert.equal(other.call(U.IOMMU_DESTROY, { id: vm.s2Id }).ret, -Errno.ENOENT);
  assert.equal(other.call(U.IOMMU_IOAS_UNMAP, { ioas_id: vm.ioasId, iova: 0n, length: 0xffff_ffff_ffff_ffffn }).ret, -Errno.ENOENT);
  // A device bound elsewhere cannot be bound again.
  const vfio = other.proc.open('/dev/vfio/devices/vfio0');
  assert.ok(vfio > 0);
  assert.throws(() => other.bind(0), /bind failed/);
});

test('several SMMUs: a device behind one cannot join a vIOMMU or HWPT of the other', () => {
  const base = new HostKernel().config;
  const kernel = new HostKernel({
    ...base,
    smmus: [base.smmus[0]!, { ...base.smmus[0]!, name: 'smmu1' }],
    devices: [base.devices[0]!, { bdf: '0019:01:00.0', sid: 0x100, smmu: 'smmu1' }],
  });
  const vm = makeVm(kernel, 0, 2 ** 22, false);
  const { devId } = vm.c.bind(1);
  assert.equal(vm.c.call(U.IOMMU_HWPT_ALLOC, { flags: 1, dev_id: devId, pt_id: vm.ioasId }).ret, 0, 'own HWPT on smmu1');
  const vi = vm.c.ok(U.IOMMU_VIOMMU_ALLOC, { type: 1, dev_id: vm.devId, hwpt_id: vm.s2Id });
  assert.equal(vm.c.call(U.IOMMU_VDEVICE_ALLOC, { viommu_id: vi.out_viommu_id as number, dev_id: devId, virt_id: 1n }).ret, -Errno.EINVAL);
  assert.equal(vm.c.call(U.IOMMU_VIOMMU_ALLOC, { type: 1, dev_id: devId, hwpt_id: vm.s2Id }).ret, -Errno.EINVAL);
  assert.throws(() => new HostKernel({ ...base, devices: [{ bdf: 'x', sid: 1, smmu: 'nope' }] }), /no SMMU named nope/);
});

test('HostSmmu save / restore: the register file as plain state; a restored SMMU translates and queues as before', () => {
  const kernel = new HostKernel();
  const vm = makeVm(kernel, 0, 2 ** 22, false);
  assert.equal(vm.c.attach(vm.vfio, vm.s2Id), 0);
  const dev = kernel.devices[0]!;
  const smmu = kernel.smmus.get('smmu0')!;
  assert.equal(dev.dmaRead(0x3000, 4).ok, true);
  smmu.driver.submit([buildCommand(Op.TLBI_NSNH_ALL)]);
  const hw = smmu.hw;
  const saved = hw.save();
  assertPlainState(saved);
  const restored = new HostSmmu(hw.config, hw.phys, kernel.log, kernel.tracer);
  restored.restore(saved);
  assert.deepEqual(restored.save(), saved);
  assert.equal(restored.iotlb.size, 0, 'caches start empty');
  const before = hw.translate(dev.sid, 0, 0x3000, ACCESS_READ, new Translation());
  const after = restored.translate(dev.sid, 0, 0x3000, ACCESS_READ, new Translation());
  assert.deepEqual({ ok: after.ok, pa: after.pa }, { ok: before.ok, pa: before.pa });
  assert.equal(after.hit, false, 'refilled from the tables');
  for (const offset of [0x20, 0x90, 0x98, 0x9c, 0xa0, 0x100a8, 0x100ac]) assert.equal(restored.bank.read(offset, 4), hw.bank.read(offset, 4));
});
