// End to end on the host: a guest's stage-1 tables in guest RAM, nested on the kernel's stage 2,
// device DMA through the SMMU, a missing invalidation leaving a stale translation, and the
// invalidation through a VCMDQ (mmap'd VINTF page0, no kernel involvement) and through the
// trapped path (IOMMU_HWPT_INVALIDATE).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildCommand, Op } from '../../src/arch/smmuv3/commands.js';
import { HostKernel } from '../../src/host/kernel/host-kernel.js';
import * as U from '../../src/uapi/iommufd.js';
import { makeVm, type VmSetup } from './uapi-client.js';
import { ASID, DATA_IPA, IOVA, nestedGuest, VSID } from './nested-guest.js';

function dmaPage(vm: VmSetup) {
  return vm.kernel.devices[0]!;
}

describe('nested translation and invalidation', () => {
  test('DMA hits the right host page; a skipped invalidation leaves it stale; a VCMDQ TLBI fixes it', () => {
    const kernel = new HostKernel();
    const vm = makeVm(kernel, 0);
    const g = nestedGuest(vm);
    g.s1.map(IOVA, DATA_IPA, 4096, 3);
    const dev = dmaPage(vm);
    const w = dev.dmaWrite(IOVA + 0x10, new Uint8Array([1, 2, 3, 4]));
    assert.equal(w.ok, true);
    const expectPa = vm.c.proc.mem.translate(vm.ramVa + DATA_IPA) + 0x10;
    assert.equal(w.pa, expectPa, 'IOVA -> IPA -> host PA');
    assert.deepEqual([...vm.c.proc.mem.copyFromUser(vm.ramVa + DATA_IPA + 0x10, 4)], [1, 2, 3, 4], 'the guest sees the data');

    // The guest unmaps but "forgets" the invalidation: the IOTLB still translates.
    g.s1.unmap(IOVA, 4096);
    const stale = dev.dmaRead(IOVA + 0x10, 4);
    assert.equal(stale.ok, true);
    assert.equal(stale.iotlbHit, true);
    assert.equal(stale.pa, expectPa, 'stale translation still reaches the old page');

    // Invalidate through the VCMDQ; the VMID the guest wrote is replaced by the hardware.
    const hwStats = kernel.smmus.get('smmu0')!.cmdqvHw!.stats;
    const ioctlsBefore = kernel.stats.ioctls;
    g.vcmdq.enable();
    g.vcmdq.submit(buildCommand(Op.TLBI_NH_VA, { vmid: 0x7777, asid: ASID, addr: IOVA, leaf: true }), buildCommand(Op.SYNC));
    assert.equal(g.vcmdq.cons(), 2, 'consumed');
    assert.equal(kernel.stats.ioctls, ioctlsBefore, 'no ioctl on the VCMDQ path');
    assert.equal(hwStats.vmidReplaced, 1);
    const after = dev.dmaRead(IOVA + 0x10, 4);
    assert.equal(after.ok, false);
    assert.equal(after.event, 0x10, 'F_TRANSLATION');
    // The fault reaches the VM as an ARM_SMMUV3 vEVENT with the virtual SID.
    const ev = g.smmuEvents();
    assert.equal(ev.length, 8 + 32);
    const hdr = U.iommufd_vevent_header.decode(ev);
    assert.equal(hdr.flags, 0);
    const rec = U.iommu_vevent_arm_smmuv3.decode(ev, 8);
    assert.equal(Number(rec.evt[0]! & 0xffn), 0x10);
    assert.equal(Number(rec.evt[0]! >> 32n), VSID, 'StreamID replaced by the vSID');
    assert.equal(rec.evt[2], BigInt(IOVA + 0x10));
  });

  test('the host SMMU takes the stage 2 of the output from a cached stage-2 entry until a stage-2 invalidation removes it', () => {
    const kernel = new HostKernel();
    const vm = makeVm(kernel, 0);
    const g = nestedGuest(vm);
    g.s1.map(IOVA, DATA_IPA, 4096, 3);
    const dev = dmaPage(vm);
    const hw = kernel.smmus.get('smmu0')!.hw;
    const first = dev.dmaRead(IOVA, 4);
    assert.equal(first.ok, true);
    const nested = hw.iotlb.entries().find((e) => e.stage1)!;
    // A stage-2 entry of the VMID for the data page that differs from the tables (read-only,
    // another host page): the next walk's output goes through it, not through a stage-2 walk.
    const other = first.pa + 0x10_0000;
    hw.iotlb.insert({ vmid: nested.vmid, asid: 0, global: false, stage1: false, iova: DATA_IPA, size: 4096, ipa: DATA_IPA, pa: other, perm: 1 });
    hw.iotlb.invalidateVa(nested.vmid, ASID, IOVA, 4096);
    const cached = dev.dmaRead(IOVA, 4);
    assert.equal(cached.ok, true);
    assert.equal(cached.pa, other, 'output IPA translated by the cached stage-2 entry');
    hw.iotlb.invalidateVa(nested.vmid, ASID, IOVA, 4096);
    // Its permissions hold: a write is a stage-2 permission fault at that IPA.
    const w = dev.dmaWrite(IOVA + 8, new Uint8Array(4));
    assert.equal(w.ok, false);
    assert.equal(w.event, 0x13, 'F_PERMISSION');
    const fault = (hw as unknown as { engine: { fault: { s2: number; ipa: number; rnw: number } } }).engine.fault;
    assert.deepEqual([fault.s2, fault.ipa, fault.rnw], [1, DATA_IPA + 8, 0], 'stage 2, at the IPA, a write');
    // TLBI_S2_IPA over the data page removes it: the walk gives the real page again.
    hw.iotlb.invalidateIpa(nested.vmid, DATA_IPA, 4096);
    const walked = dev.dmaRead(IOVA, 4);
    assert.equal(walked.ok, true);
    assert.equal(walked.pa, first.pa);
  });

  test('the trapped path (IOMMU_HWPT_INVALIDATE on the vIOMMU) has the same effect', () => {
    const kernel = new HostKernel();
    const vm = makeVm(kernel, 0);
    const g = nestedGuest(vm);
    g.s1.map(IOVA, DATA_IPA, 4096, 3);
    const dev = dmaPage(vm);
    assert.equal(dev.dmaRead(IOVA, 4).ok, true);
    g.s1.unmap(IOVA, 4096);
    assert.equal(dev.dmaRead(IOVA, 4).ok, true, 'stale');
    const cmd = buildCommand(Op.TLBI_NH_VA, { asid: ASID, addr: IOVA, leaf: true });
    const arr = vm.c.put(new Uint8Array(cmd.buffer));
    const r = vm.c.call(U.IOMMU_HWPT_INVALIDATE, { hwpt_id: g.viommu, data_uptr: BigInt(arr), data_type: 1, entry_len: 16, entry_num: 1 });
    assert.equal(r.ret, 0);
    assert.equal(r.out.entry_num, 1);
    assert.equal(dev.dmaRead(IOVA, 4).ok, false);
    // Commands outside the vSMMU list are EIO with entry_num = index of the bad one.
    const bad = new Uint8Array(32);
    bad.set(new Uint8Array(buildCommand(Op.TLBI_NH_ASID, { asid: ASID }).buffer), 0);
    bad.set(new Uint8Array(buildCommand(Op.CFGI_STE, { sid: VSID }).buffer), 16);
    const r2 = vm.c.call(U.IOMMU_HWPT_INVALIDATE, { hwpt_id: g.viommu, data_uptr: BigInt(vm.c.put(bad)), data_type: 1, entry_len: 16, entry_num: 2 });
    assert.deepEqual([r2.ret, r2.out.entry_num], [-5, 1]);
    const r3 = vm.c.call(U.IOMMU_HWPT_INVALIDATE, { hwpt_id: g.viommu, data_uptr: BigInt(arr), data_type: 0, entry_len: 16, entry_num: 1 });
    assert.equal(r3.ret, -22);
    const r4 = vm.c.call(U.IOMMU_HWPT_INVALIDATE, { hwpt_id: vm.s2Id, data_uptr: BigInt(arr), data_type: 1, entry_len: 16, entry_num: 1 });
    assert.equal(r4.ret, -22, 'a paging HWPT cannot be invalidated this way');
  });

  test('an illegal command stops the VCMDQ at that command, reports a CMDQV vEVENT, and resumes after GERRORN', () => {
    const kernel = new HostKernel();
    const vm = makeVm(kernel, 0);
    const g = nestedGuest(vm);
    g.vcmdq.enable();
    g.vcmdq.submit(
      buildCommand(Op.TLBI_NH_ASID, { asid: ASID }),
      buildCommand(Op.CFGI_STE_RANGE, { range: 31 }), // CFGI_ALL: not a guest command
      buildCommand(Op.SYNC),
    );
    const cons = g.vcmdq.cons();
    assert.equal(cons & 0xfffff, 1, 'CONS points at the failing command');
    assert.equal((cons >>> 24) & 0x7f, 1, 'CERROR_ILL');
    assert.equal(g.vcmdq.gerror() & 1, 1);
    const ev = g.cmdqvEvents();
    assert.equal(ev.length, 8 + 16);
    const map = U.iommu_vevent_tegra241_cmdqv.decode(ev, 8);
    assert.deepEqual(map.lvcmdq_err_map, [1n, 0n], 'logical queue 0 of this VINTF');
    const hw = kernel.smmus.get('smmu0')!.cmdqvHw!;
    assert.equal(hw.read(0x14, 4), 1 << 1, 'VINTF1 in VI_ERR_MAP');
    // The guest driver's skip routine: rewrite the bad slot as CMD_SYNC, then acknowledge.
    const sync = buildCommand(Op.SYNC);
    for (let i = 0; i < 4; i++) g.gram.write32(g.vcmdq.slot(1) + i * 4, sync[i]!);
    g.vcmdq.ack();
    assert.equal(g.vcmdq.cons() & 0xfffff, 3, 'resumed and caught up');
    assert.equal(hw.read(0x14, 4), 0, 'error maps cleared');
  });
  test('stage-1 table fetches cache their stage-2 translation as stage-2 IOTLB entries, which only stage-2 invalidations remove', () => {
    const kernel = new HostKernel();
    const vm = makeVm(kernel, 0);
    const g = nestedGuest(vm);
    g.s1.map(IOVA, DATA_IPA, 4096, 3);
    const dev = dmaPage(vm);
    const smmu = kernel.smmus.get('smmu0')!;
    assert.equal(dev.dmaWrite(IOVA, new Uint8Array([9])).ok, true);
    const tableEntry = () => smmu.hw.iotlb.entries().find((e) => !e.stage1 && e.ipa <= g.s1.root && g.s1.root < e.ipa + e.size);
    const cached = tableEntry();
    assert.ok(cached, 'the root table\'s IPA is cached as a stage-2 entry');
    const vmid = cached.vmid;
    const walks = smmu.hw.stats.walks;
    // A stage-1 invalidation drops the translation but not the table's stage-2 entry; the next DMA walks stage 1 again.
    smmu.driver.submit([buildCommand(Op.TLBI_NH_ALL, { vmid })]);
    assert.ok(tableEntry(), 'kept by TLBI_NH_ALL');
    assert.equal(dev.dmaRead(IOVA, 1).ok, true);
    assert.equal(smmu.hw.stats.walks, walks + 1, 'the IOTLB miss walked');
    // A stage-2 invalidation of the table's IPA removes it; the next walk caches it again.
    smmu.driver.submit([buildCommand(Op.TLBI_S2_IPA, { vmid, addr: g.s1.root }), buildCommand(Op.TLBI_NH_ALL, { vmid })]);
    assert.equal(tableEntry(), undefined, 'removed by TLBI_S2_IPA');
    assert.equal(dev.dmaRead(IOVA, 1).ok, true);
    assert.ok(tableEntry(), 'cached again by the next walk');
    smmu.driver.submit([buildCommand(Op.TLBI_S12_VMALL, { vmid })]);
    assert.equal(tableEntry(), undefined, 'removed by TLBI_S12_VMALL');
  });
});

test('a VM that exits leaves no stage-2 or nested entry in the host IOTLB; a later VM on the host reaches only its own pages', () => {
  const kernel = new HostKernel();
  const hw = kernel.smmus.get('smmu0')!.hw;
  const a = makeVm(kernel, 0);
  const ga = nestedGuest(a);
  ga.s1.map(IOVA, DATA_IPA, 4096, 3);
  const devA = dmaPage(a);
  assert.equal(devA.dmaWrite(IOVA, new Uint8Array([0xaa, 0xaa, 0xaa, 0xaa])).ok, true);
  const vmidA = hw.iotlb.entries().find((e) => e.stage1)!.vmid;
  assert.ok(hw.iotlb.entries().some((e) => !e.stage1 && e.vmid === vmidA), 'stage-2 entries cached from the walk');
  const paA = a.c.proc.mem.translate(a.ramVa + DATA_IPA);
  a.c.proc.exit();
  assert.equal(hw.iotlb.entries().filter((e) => e.vmid === vmidA).length, 0, 'the exited VM\'s VMID holds nothing');

  const b = makeVm(kernel, 0);
  const gb = nestedGuest(b);
  gb.s1.map(IOVA, DATA_IPA, 4096, 3);
  const devB = dmaPage(b);
  const paB = b.c.proc.mem.translate(b.ramVa + DATA_IPA);
  // Same IOVA, ASID and IPA as A's: the walk (and every cached entry) must give B's page.
  for (let i = 0; i < 3; i++) {
    const w = devB.dmaWrite(IOVA + 4 * i, new Uint8Array([0xbb, 0xbb, 0xbb, 0xbb]));
    assert.equal(w.ok, true);
    assert.equal(w.pa, paB + 4 * i, `DMA ${i} reaches B's page`);
  }
  assert.deepEqual([...b.c.proc.mem.copyFromUser(b.ramVa + DATA_IPA, 4)], [0xbb, 0xbb, 0xbb, 0xbb]);
  const vmidB = hw.iotlb.entries().find((e) => e.stage1)!.vmid;
  for (const e of hw.iotlb.entries()) assert.equal(e.vmid, vmidB, 'only B\'s entries are cached');
  assert.ok(paA !== paB || kernel.phys.mem.read32(paA) === 0xbbbbbbbb);
});
