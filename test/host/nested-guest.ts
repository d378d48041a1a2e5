// A guest on a host VM for tests: its stage-1 tables and CD in guest RAM, a Tegra241 vIOMMU, a
// vDEVICE, both vEVENTQs, a nested HWPT the device is attached to, one HW queue and the mapped
// VINTF page0 (a VCMDQ the test drives by hand).
import assert from 'node:assert/strict';
import { PageTableBuilder } from '../../src/kit/page-table-builder.js';
import * as U from '../../src/uapi/iommufd.js';
import type { VmSetup } from './uapi-client.js';

export const CD_IPA = 0x8_0000;
export const RING_IPA = 0x30_0000;
export const IOVA = 0x1000_0000;
export const DATA_IPA = 0x2000_0000;
export const VSID = 0x10;
export const ASID = 5;

/** A guest on a VM: its S1 tables, CD, STE, vIOMMU, vDEVICE, vEVENTQs and one HW queue. */
export function nestedGuest(vm: VmSetup, opts: { cmdqvDepth?: number } = {}) {
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
  const cmdqvEvq = c.ok(U.IOMMU_VEVENTQ_ALLOC, { viommu_id: viommu, type: 2, veventq_depth: opts.cmdqvDepth ?? 8 });
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
    smmuFd: smmuEvq.out_veventq_fd as number,
    cmdqvFd: cmdqvEvq.out_veventq_fd as number,
    smmuEvents: () => readEvents(smmuEvq.out_veventq_fd as number),
    cmdqvEvents: () => readEvents(cmdqvEvq.out_veventq_fd as number),
  };
}
