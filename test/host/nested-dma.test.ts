// End to end on the host: a guest's stage-1 tables in guest RAM, nested on the kernel's stage 2,
// device DMA through the SMMU, a missing invalidation leaving a stale translation, and the
// invalidation through a VCMDQ (mmap'd VINTF page0, no kernel involvement) and through the
// trapped path (IOMMU_HWPT_INVALIDATE).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildCommand, Op } from '../../src/arch/smmuv3/commands.js';
import { HostKernel } from '../../src/host/kernel/host-kernel.js';
import { PageTableBuilder } from '../../src/kit/page-table-builder.js';
import * as U from '../../src/uapi/iommufd.js';
import { makeVm, type VmSetup } from './uapi-client.js';

const CD_IPA = 0x8_0000;
const RING_IPA = 0x30_0000;
const IOVA = 0x1000_0000;
const DATA_IPA = 0x2000_0000;
const VSID = 0x10;
const ASID = 5;

/** A guest on a VM: its S1 tables, CD, STE, vIOMMU, vDEVICE, vEVENTQs and one HW queue. */
function guest(vm: VmSetup) {
  const { c } = vm;
  const mem = c.proc.mem;
  let nextTable = 0x40_0000;
  const gram = {
    read32: (ipa: number) => mem.read32(vm.ramVa + ipa),
    write32: (ipa: number, v: number) => mem.write32(vm.ramVa + ipa, v),
  };
  const s1 = new PageTableBuilder(gram, {
    stage: 1,
    granule: 4096,
    inputBits: 48,
    allocTable: () => {
      const t = nextTable;
      nextTable += 4096;
      return t;
    },
  });
  // CD: T0SZ=16, TG0=4K, EPD1, V, IPS=48-bit, AA64, ASID.
  gram.write32(CD_IPA, (16 | (1 << 30) | (1 << 31)) >>> 0);
  gram.write32(CD_IPA + 4, (5 | (1 << 9) | (ASID << 16)) >>> 0);
  gram.write32(CD_IPA + 8, s1.root);
  gram.write32(CD_IPA + 12, 0);
  const data = c.alloc(16);
  const vi = c.ok(U.IOMMU_VIOMMU_ALLOC, { type: 2, dev_id: vm.devId, hwpt_id: vm.s2Id, data_len: 16, data_uptr: BigInt(data) });
  const viommu = vi.out_viommu_id as number;
  const off = Number(U.iommu_viommu_tegra241_cmdqv.decode(mem.copyFromUser(data, 16)).out_vintf_mmap_offset);
  const smmuEvq = c.ok(U.IOMMU_VEVENTQ_ALLOC, { viommu_id: viommu, type: 1, veventq_depth: 8 });
  const cmdqvEvq = c.ok(U.IOMMU_VEVENTQ_ALLOC, { viommu_id: viommu, type: 2, veventq_depth: 8 });
  c.ok(U.IOMMU_VDEVICE_ALLOC, { viommu_id: viommu, dev_id: vm.devId, virt_id: BigInt(VSID) });
  const steBytes = U.iommu_hwpt_arm_smmuv3.encode({ ste: [BigInt(CD_IPA) | 0b1011n, 0n] });
  const nested = c.ok(U.IOMMU_HWPT_ALLOC, {
    dev_id: vm.devId, pt_id: viommu, data_type: 2, data_len: 16, data_uptr: BigInt(c.put(steBytes)),
  }).out_hwpt_id as number;
  assert.equal(c.attach(vm.vfio, nested), 0);
  c.ok(U.IOMMU_HW_QUEUE_ALLOC, { viommu_id: viommu, type: 1, index: 0, nesting_parent_iova: BigInt(RING_IPA), length: 4096n });
  const page0 = c.mmap(0x10000, off);
  assert.ok(page0 > 0);
  let prod = 0;
  const vcmdq = {
    enable: () => mem.write32(page0 + 0x8, 1),
    submit: (...cmds: Uint32Array[]) => {
      for (const w of cmds) {
        for (let i = 0; i < 4; i++) gram.write32(RING_IPA + (prod & 0xff) * 16 + i * 4, w[i]!);
        prod = (prod + 1) & 0x1ff;
      }
      mem.write32(page0 + 0x4, prod); // doorbell: straight to the host silicon
    },
    cons: () => mem.read32(page0 + 0x0),
    gerror: () => mem.read32(page0 + 0x10),
    ack: () => mem.write32(page0 + 0x14, mem.read32(page0 + 0x10)),
    slot: (i: number) => RING_IPA + (i & 0xff) * 16,
  };
  const readEvents = (fd: number) => {
    const buf = c.alloc(256);
    const n = c.proc.read(fd, buf, 256);
    return c.proc.mem.copyFromUser(buf, Math.max(n, 0));
  };
  return {
    s1, gram, viommu, nested, vcmdq, page0,
    smmuEvents: () => readEvents(smmuEvq.out_veventq_fd as number),
    cmdqvEvents: () => readEvents(cmdqvEvq.out_veventq_fd as number),
  };
}

function dmaPage(vm: VmSetup) {
  return vm.kernel.devices[0]!;
}

describe('nested translation and invalidation', () => {
  test('DMA hits the right host page; a skipped invalidation leaves it stale; a VCMDQ TLBI fixes it', () => {
    const kernel = new HostKernel();
    const vm = makeVm(kernel, 0);
    const g = guest(vm);
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

  test('the trapped path (IOMMU_HWPT_INVALIDATE on the vIOMMU) has the same effect', () => {
    const kernel = new HostKernel();
    const vm = makeVm(kernel, 0);
    const g = guest(vm);
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
    const g = guest(vm);
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
});
