// Isolation property: whatever a VM writes to its own VINTF page0 or puts in its VCMDQ rings,
// another VM's VINTF, queues, SIDs, IOTLB entries, memory and vEVENTs are unchanged; and no
// command is silently lost: each PROD write ends with the queue caught up or halted on a CERROR.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildCommand, Op } from '../../src/arch/smmuv3/commands.js';
import { HostKernel } from '../../src/host/kernel/host-kernel.js';
import * as U from '../../src/uapi/iommufd.js';
import { makeVm } from './uapi-client.js';
import { mulberry32 } from '../../src/kit/prng.js';


const RING = 0x10_0000;

function vmWithQueue(kernel: HostKernel, dev: number, vsid: number) {
  const vm = makeVm(kernel, dev, 2 ** 30);
  const { c } = vm;
  const data = c.alloc(16);
  const viommu = c.ok(U.IOMMU_VIOMMU_ALLOC, { type: 2, dev_id: vm.devId, hwpt_id: vm.s2Id, data_len: 16, data_uptr: BigInt(data) }).out_viommu_id as number;
  const off = Number(U.iommu_viommu_tegra241_cmdqv.decode(c.proc.mem.copyFromUser(data, 16)).out_vintf_mmap_offset);
  const evq = [1, 2].map((type) => c.ok(U.IOMMU_VEVENTQ_ALLOC, { viommu_id: viommu, type, veventq_depth: 64 }).out_veventq_fd as number);
  c.ok(U.IOMMU_VDEVICE_ALLOC, { viommu_id: viommu, dev_id: vm.devId, virt_id: BigInt(vsid) });
  c.ok(U.IOMMU_HW_QUEUE_ALLOC, { viommu_id: viommu, type: 1, index: 0, nesting_parent_iova: BigInt(RING), length: 4096n });
  c.ok(U.IOMMU_HW_QUEUE_ALLOC, { viommu_id: viommu, type: 1, index: 1, nesting_parent_iova: BigInt(RING + 4096), length: 4096n });
  const page0 = c.mmap(0x10000, off);
  // Stage-2-only attach so the device has IOTLB entries tagged with this VM's VMID.
  assert.equal(c.attach(vm.vfio, vm.s2Id), 0);
  return { vm, viommu, page0, evq };
}

function snapshot(kernel: HostKernel, v: ReturnType<typeof vmWithQueue>, vintf: number) {
  const hw = kernel.smmus.get('smmu0')!.cmdqvHw!;
  const smmu = kernel.smmus.get('smmu0')!.hw;
  const vmid = (hw.read(0x1000 + 0x100 * vintf, 4) >>> 1) & 0xffff;
  const regs: number[] = [];
  for (let o = 0; o < 0x100; o += 4) regs.push(hw.read(0x1000 + 0x100 * vintf + o, 4));
  for (let o = 0; o < 0x100; o += 4) regs.push(v.vm.c.proc.mem.read32(v.page0 + o));
  const tlb = smmu.iotlb
    .entries()
    .filter((e) => e.vmid === vmid)
    .map((e) => `${e.iova}:${e.pa}:${e.perm}`)
    .sort()
    .join(',');
  const ram = v.vm.c.proc.mem.copyFromUser(v.vm.ramVa, 0x20_0000);
  let sum = 0;
  for (let i = 0; i < ram.length; i += 4) sum = (sum * 31 + ram[i]! + (ram[i + 1]! << 8)) >>> 0;
  const pending = v.evq.map((fd) => {
    const buf = v.vm.c.alloc(256);
    return v.vm.c.proc.read(fd, buf, 256);
  });
  return { vmid, regs: regs.join(','), tlb, sum, pending };
}

test('random page0 writes and ring contents of VM A never affect VM B; no command is lost', () => {
  const kernel = new HostKernel();
  const a = vmWithQueue(kernel, 0, 0x10);
  const b = vmWithQueue(kernel, 1, 0x10); // same vSID on purpose
  // Give B live IOTLB entries and some RAM content.
  const devB = kernel.devices[1]!;
  for (let i = 0; i < 32; i++) assert.equal(devB.dmaWrite(0x20_0000 + i * 4096, new Uint8Array([i, 1, 2, 3])).ok, true);
  const devA = kernel.devices[0]!;
  for (let i = 0; i < 8; i++) assert.equal(devA.dmaWrite(0x20_0000 + i * 4096, new Uint8Array([9])).ok, true);
  const before = snapshot(kernel, b, 2);
  assert.notEqual(before.tlb, '', 'B has IOTLB entries');

  const rnd = mulberry32(0xc0ffee);
  const legal = [Op.TLBI_NH_ASID, Op.TLBI_NH_VA, Op.ATC_INV, Op.SYNC];
  const other = [Op.TLBI_NH_ALL, Op.TLBI_NH_VAA, Op.TLBI_S12_VMALL, Op.TLBI_S2_IPA, Op.TLBI_NSNH_ALL, Op.CFGI_STE, Op.CFGI_STE_RANGE, Op.CFGI_CD, 0x7f, 0xff];
  const mem = a.vm.c.proc.mem;
  const prodOf = [0, 0];
  let halted = 0;
  let executed = 0;
  for (let step = 0; step < 400; step++) {
    const kind = rnd();
    const q = rnd() < 0.5 ? 0 : 1;
    if (kind < 0.5) {
      // Fill some ring slots with random commands, then ring the doorbell.
      const n = 1 + Math.floor(rnd() * 6);
      for (let k = 0; k < n; k++) {
        const pool = rnd() < 0.9 ? legal : other;
        const op = pool[Math.floor(rnd() * pool.length)]!;
        const sidCmd = op === Op.ATC_INV || op === Op.CFGI_STE || op === Op.CFGI_CD;
        const w = buildCommand(op, sidCmd
          ? { sid: rnd() < 0.9 ? 0x10 : Math.floor(rnd() * 0x20000), addr: Math.floor(rnd() * 2 ** 30) * 4096, size: Math.floor(rnd() * 53) }
          : { vmid: rnd() < 0.5 ? before.vmid : Math.floor(rnd() * 0x10000), asid: Math.floor(rnd() * 0x10000), addr: Math.floor(rnd() * 2 ** 30) * 4096, range: 31 });
        w[3] = Math.floor(rnd() * 2 ** 32) >>> 12;
        const slot = prodOf[q]! & 0xff;
        for (let i = 0; i < 4; i++) mem.write32(a.vm.ramVa + RING + q * 4096 + slot * 16 + i * 4, w[i]!);
        prodOf[q] = (prodOf[q]! + 1) & 0x1ff;
      }
      mem.write32(a.page0 + 0x80 * q + 0x8, 1);
      mem.write32(a.page0 + 0x80 * q + 0x4, prodOf[q]!);
      const cons = mem.read32(a.page0 + 0x80 * q);
      const err = (cons >>> 24) & 0x7f;
      const gerr = (mem.read32(a.page0 + 0x80 * q + 0x10) ^ mem.read32(a.page0 + 0x80 * q + 0x14)) & 1;
      if (gerr) {
        assert.notEqual(err, 0, 'a halted queue carries a CERROR');
        halted++;
        // Skip like the guest driver: rewrite as CMD_SYNC, acknowledge.
        const slot = cons & 0xff;
        const sync = buildCommand(Op.SYNC);
        for (let i = 0; i < 4; i++) mem.write32(a.vm.ramVa + RING + q * 4096 + slot * 16 + i * 4, sync[i]!);
        mem.write32(a.page0 + 0x80 * q + 0x14, mem.read32(a.page0 + 0x80 * q + 0x10));
      } else {
        assert.equal(cons & 0x1ff, prodOf[q], 'caught up: every command executed');
        executed++;
      }
    } else if (kind < 0.8) {
      // Random register write anywhere in page0 (including unmapped logical slots).
      const off = Math.floor(rnd() * 0x4000) & ~3;
      mem.write32(a.page0 + off, Math.floor(rnd() * 2 ** 32));
      prodOf[0] = mem.read32(a.page0 + 0x4) & 0x1ff;
      prodOf[1] = mem.read32(a.page0 + 0x84) & 0x1ff;
    } else {
      mem.write32(a.page0 + 0x80 * q + 0x14, mem.read32(a.page0 + 0x80 * q + 0x10));
    }
  }
  assert.ok(halted > 5 && executed > 5, `both outcomes exercised (halted ${halted}, executed ${executed})`);
  const after = snapshot(kernel, b, 2);
  assert.deepEqual(after, before, 'VM B unchanged');
  for (let i = 0; i < 32; i++) {
    const r = devB.dmaRead(0x20_0000 + i * 4096, 1);
    assert.equal(r.ok, true);
    assert.equal(r.data![0], i);
  }
});
