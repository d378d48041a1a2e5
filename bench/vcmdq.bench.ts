/**
 * Rows 1 and 2: one ring of 2^19 − 1 commands (TLBI_NH_VA with the ASID and address stepping
 * as in QEMU's peer script, then one CMD_SYNC) consumed after one PROD write.
 * - Row 1: a guest VCMDQ — the PROD store goes through the mapped VINTF page0 straight to the
 *   host silicon model (guest RAM on 1 GiB hugepages, so the 8 MiB ring is contiguous).
 * - Row 2: the guest's emulated SMMU command queue — the PROD store traps to the VMM, which
 *   decodes, batches into IOMMU_HWPT_INVALIDATE (uAPI bytes), the host kernel converts and
 *   pushes to the host SMMU command queue.
 */

import { buildCommand, Op } from '../src/arch/smmuv3/commands.js';
import { HostKernel } from '../src/host/kernel/host-kernel.js';
import * as R from '../src/arch/smmuv3/registers.js';
import * as U from '../src/uapi/iommufd.js';
import { mmapAnonymous } from '../src/uapi/syscalls.js';
import { Tracer } from '../src/kit/trace.js';
import { IommufdBackend } from '../src/vmm/backends/iommufd.js';
import { Machine, VIRT_RAM_BASE } from '../src/platform/machine.js';
import { measureRate, type Row } from './harness.js';

/** The ring contents of the peer script: TLBI_NH_VA i with ASID i & 0xffff and VA i << 12, then CMD_SYNC. */
export function fillRing(write32: (off: number, v: number) => void, entries: number): void {
  const n = entries - 1;
  for (let i = 0; i < n - 1; i++) {
    const w = buildCommand(Op.TLBI_NH_VA, { asid: i & 0xffff, addr: i * 4096 });
    for (let k = 0; k < 4; k++) write32(i * 16 + k * 4, w[k]!);
  }
  // CMD_SYNC ends the batch; the ring's last slot also holds one so that later passes, which
  // start one slot further round the ring, still find valid commands everywhere.
  const s = buildCommand(Op.SYNC);
  for (const slot of [n - 1, n]) for (let k = 0; k < 4; k++) write32(slot * 16 + k * 4, s[k]!);
}

/** A host with one VM owning a VINTF and a HW queue of 2^log2 entries (through the VMM's backend). */
export function vcmdqSetup(log2: number) {
  const kernel = new HostKernel();
  const proc = kernel.createProcess();
  const be = new IommufdBackend('iommufd0', proc, new Tracer());
  const ram = mmapAnonymous(proc, 2 ** 30, true);
  const { devId } = be.bindDevice('/dev/vfio/devices/vfio0');
  const ioas = be.allocIoas();
  be.mapDma(ioas, 0, 2 ** 30, ram);
  const s2 = be.allocHwpt(devId, ioas, 1, 0);
  const { viommuId, data } = be.allocViommu(devId, 2, s2, new Uint8Array(16));
  const off = Number(U.iommu_viommu_tegra241_cmdqv.decode(data!).out_vintf_mmap_offset);
  const ringIpa = 2 ** 24;
  const entries = 2 ** log2;
  be.allocHwQueue(viommuId, 1, 0, ringIpa, entries * 16);
  const page0 = be.viommuMmap(viommuId, 0x10000, off);
  const ringPa = proc.mem.translate(ram + ringIpa);
  fillRing((o, v) => kernel.phys.mem.write32(ringPa + o, v), entries);
  proc.mem.write32(page0 + 0x8, 1);
  return { kernel, proc, page0, entries };
}

/**
 * Collect the garbage of earlier setups (each row builds a whole host) before timing, so that a
 * full collection does not land in a timed pass (runs under node --expose-gc; else nothing).
 */
function settleHeap(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

/**
 * The quick (CI) rings are 2^14-1 commands, a fraction of a millisecond each: with 1 warm-up and
 * 3 runs the median landed before, during or after the JIT's optimisation of the consumption
 * loop (1 to 90 M commands/s from one run to the next), which the CI guard cannot compare.
 * More short passes cost a few milliseconds and measure the optimised loop.
 */
const QUICK_WARMUPS = 8;
const QUICK_RUNS = 7;

/** Row 1. */
export function benchVcmdq(quick: boolean): Row {
  const log2 = quick ? 14 : 19;
  const s = vcmdqSetup(log2);
  settleHeap();
  const n = s.entries - 1;
  const wrap = 2 * s.entries;
  let prod = 0;
  const row = measureRate(`1. host VCMDQ consumption, ring 2^${log2}-1`, 'cmd/s', () => {
    prod = (prod + n) % wrap;
    s.proc.mem.write32(s.page0 + 0x4, prod);
    const cons = s.proc.mem.read32(s.page0) & 0xfffff;
    if (cons !== prod) throw new Error(`CONS 0x${cons.toString(16)} did not catch up with 0x${prod.toString(16)}`);
    return n;
  }, quick ? QUICK_RUNS : 5, quick ? QUICK_WARMUPS : 2); // two warm-up passes: the JIT settles on the second
  row.note = '1 PROD write via mapped VINTF page0; 0 VM exits, 0 ioctls';
  return row;
}

/** Row 2: the trapped path. Returns the row plus exits and ioctls per 1000 commands. */
export function benchTrapped(quick: boolean): Row[] {
  const log2 = quick ? 14 : 19;
  const m = Machine.create(['-m', '2G', '-object', 'iommufd,id=iommufd0', '-device', 'arm-smmuv3,primary-bus=pcie.0,accel=on,cmdqv=off,identifier=1',
    '-device', 'vfio-pci,host=0009:01:00.0,iommufd=iommufd0']);
  const smmu = m.smmus[0]!.base;
  const ring = VIRT_RAM_BASE + 2 ** 24;
  const entries = 2 ** log2;
  fillRing((o, v) => m.as.write32(ring + o, v), entries);
  m.write(smmu + R.CMDQ_BASE.spec.offset, 8, BigInt(ring) | BigInt(log2));
  m.write(smmu + R.CMDQ_PROD.spec.offset, 4, 0);
  m.write(smmu + R.CMDQ_CONS.spec.offset, 4, 0);
  m.write(smmu + R.CR0.spec.offset, 4, 0b1000);
  const n = entries - 1;
  const wrap = 2 * entries;
  let prod = 0;
  let exits = 0;
  settleHeap();
  let ioctls = 0;
  let cmds = 0;
  const row = measureRate(`2. trapped SMMU CMDQ, ring 2^${log2}-1`, 'cmd/s', () => {
    const e0 = m.as.stats.exits;
    const i0 = m.host.stats.ioctls;
    prod = (prod + n) % wrap;
    m.write(smmu + R.CMDQ_PROD.spec.offset, 4, prod);
    const cons = Number(m.read(smmu + R.CMDQ_CONS.spec.offset, 4).value) & 0xfffff;
    if (cons !== prod) throw new Error(`CONS 0x${cons.toString(16)} did not catch up with 0x${prod.toString(16)}`);
    exits += m.as.stats.exits - e0;
    ioctls += m.host.stats.ioctls - i0;
    cmds += n;
    return n;
  }, quick ? QUICK_RUNS : 5, quick ? QUICK_WARMUPS : 2); // two warm-up passes: the JIT settles on the second
  row.note = `decode + HWPT_INVALIDATE batches + host CMDQ`;
  return [
    row,
    { name: '2. trapped path VM exits per 1000 commands', value: (exits / cmds) * 1000, unit: '' },
    { name: '2. trapped path ioctls per 1000 commands', value: (ioctls / cmds) * 1000, unit: '' },
  ];
}
