/**
 * Host VCMDQ consumption: a ring of 2^19 − 1 commands (TLBI_NH_VA, then one CMD_SYNC)
 * prefilled in guest RAM (1 GiB hugepage-backed, so the 8 MiB ring is one contiguous host
 * range), one PROD write through the mapped VINTF page0, timed until CONS catches up.
 */

import { buildCommand, Op } from '../src/arch/smmuv3/commands.js';
import { HostKernel } from '../src/host/kernel/host-kernel.js';
import { MAP_SHARED, PROT_READ, PROT_WRITE } from '../src/host/kernel/process.js';
import * as U from '../src/uapi/iommufd.js';
import * as V from '../src/uapi/vfio.js';
import { measureRate, type Row } from './harness.js';

/** Build a host with one VM owning a VINTF and a HW queue of 2^log2 entries. */
export function vcmdqSetup(log2: number) {
  const kernel = new HostKernel();
  const proc = kernel.createProcess();
  const fd = proc.open('/dev/iommu');
  const scratch = proc.mmapAnon(1 << 20);
  let bump = scratch;
  const call = (io: U.IoctlDef, v: Record<string, unknown>) => {
    const layout = io.struct!;
    const va = bump;
    bump += 128;
    proc.mem.copyToUser(va, layout.encode(v as never));
    const ret = proc.ioctl(fd, io.number, va);
    if (ret !== 0) throw new Error(`${io.name}: ${ret} ${kernel.lastError}`);
    return layout.decode(proc.mem.copyFromUser(va, layout.size)) as Record<string, number | bigint>;
  };
  const ram = proc.mmapAnon(2 ** 30, true);
  const vfio = proc.open('/dev/vfio/devices/vfio0');
  const bindVa = bump;
  bump += 64;
  proc.mem.copyToUser(bindVa, V.vfio_device_bind_iommufd.encode({ argsz: 16, iommufd: fd }));
  proc.ioctl(vfio, V.VFIO_DEVICE_BIND_IOMMUFD, bindVa);
  const devId = V.vfio_device_bind_iommufd.decode(proc.mem.copyFromUser(bindVa, 16)).out_devid;
  const ioas = call(U.IOMMU_IOAS_ALLOC, {}).out_ioas_id as number;
  call(U.IOMMU_IOAS_MAP, { flags: 7, ioas_id: ioas, user_va: BigInt(ram), length: 2n ** 30n, iova: 0n });
  const s2 = call(U.IOMMU_HWPT_ALLOC, { flags: 1, dev_id: devId, pt_id: ioas }).out_hwpt_id as number;
  const data = bump;
  bump += 64;
  const vi = call(U.IOMMU_VIOMMU_ALLOC, { type: 2, dev_id: devId, hwpt_id: s2, data_len: 16, data_uptr: BigInt(data) }).out_viommu_id as number;
  const off = Number(U.iommu_viommu_tegra241_cmdqv.decode(proc.mem.copyFromUser(data, 16)).out_vintf_mmap_offset);
  const ringIpa = 2 ** 24;
  const entries = 2 ** log2;
  call(U.IOMMU_HW_QUEUE_ALLOC, { viommu_id: vi, type: 1, index: 0, nesting_parent_iova: BigInt(ringIpa), length: BigInt(entries * 16) });
  const page0 = proc.mmap(fd, 0x10000, PROT_READ | PROT_WRITE, MAP_SHARED, off);
  // Prefill: contiguous host range, write the words straight into host memory.
  const ringPa = proc.mem.translate(ram + ringIpa);
  const mem = kernel.phys.mem;
  const tlbi = buildCommand(Op.TLBI_NH_VA, { asid: 1, addr: 0x1000_0000, leaf: true });
  const sync = buildCommand(Op.SYNC);
  for (let i = 0; i < entries; i++) {
    const w = i === entries - 2 ? sync : tlbi;
    for (let k = 0; k < 4; k++) mem.write32(ringPa + i * 16 + k * 4, w[k]!);
  }
  proc.mem.write32(page0 + 0x8, 1);
  return { kernel, proc, page0, entries };
}

/** Rows of the host VCMDQ consumption benchmark. */
export function benchVcmdq(quick: boolean): Row[] {
  const log2 = quick ? 14 : 19;
  const s = vcmdqSetup(log2);
  const n = s.entries - 1;
  const wrap = 2 * s.entries;
  let prod = 0;
  const row = measureRate(`host VCMDQ consumption (ring 2^${log2} - 1)`, 'cmd/s', () => {
    prod = (prod + n) % wrap;
    s.proc.mem.write32(s.page0 + 0x4, prod);
    const cons = s.proc.mem.read32(s.page0) & 0xfffff;
    if (cons !== prod) throw new Error(`CONS 0x${cons.toString(16)} did not catch up with 0x${prod.toString(16)}`);
    return n;
  }, quick ? 3 : 5);
  return [row];
}
