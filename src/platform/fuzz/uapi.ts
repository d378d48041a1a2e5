/**
 * Fuzzing the uAPI seam: a hostile VMM process issues random ioctls (every iommufd command and
 * the VFIO cdev ones) with structure-aware arguments — truncated and oversized structs (zero and
 * non-zero tails), ids of its own live and destroyed objects, another process's ids, random
 * numbers, reserved flags, overflowing ranges, bad user pointers — plus mmaps with wrong offsets
 * and lengths, reads and closes in random orders, while a victim VM on the same host runs.
 *
 * Invariants: a call returns a number (a negative errno from the known set, never an exception);
 * the victim's VCMDQ still consumes commands, its device still translates to its own memory and
 * reads its own data; after the attacker's files are closed and its memory unmapped, the host
 * has every VINTF, HW queue, SID pair, VMID and page back.
 */

import { buildCommand, Op } from '../../arch/smmuv3/commands.js';
import * as C from '../../arch/tegra241-cmdqv/registers.js';
import { mulberry32 } from '../../kit/prng.js';
import { Tracer } from '../../kit/trace.js';
import { HostKernel } from '../../host/kernel/host-kernel.js';
import type { Process } from '../../host/kernel/process.js';
import { Errno } from '../../uapi/errno.js';
import * as U from '../../uapi/iommufd.js';
import type { StructInfo } from '../../uapi/layout.js';
import { MAP_SHARED, mmapAnonymous, PROT_READ, PROT_WRITE } from '../../uapi/syscalls.js';
import * as V from '../../uapi/vfio.js';
import { IommufdBackend } from '../../vmm/backends/iommufd.js';
import type { Finding } from './case.js';

const KNOWN_ERRNOS = new Set<number>(Object.values(Errno));
const RING_IOVA = 0x100_0000;
const RING_LOG2 = 8;
const SECRET_IOVA = 0x200_0000;
const SECRET = 0x5ec2_e7a5;
const VICTIM_RAM = 2 ** 30;
/** The ioctls the attacker issues: iommufd's (with and without modelled structs) and VFIO's. */
const VFIO_IOCTLS: readonly { readonly number: number; readonly struct: StructInfo }[] = [
  { number: V.VFIO_DEVICE_BIND_IOMMUFD, struct: V.vfio_device_bind_iommufd },
  { number: V.VFIO_DEVICE_ATTACH_IOMMUFD_PT, struct: V.vfio_device_attach_iommufd_pt },
  { number: V.VFIO_DEVICE_DETACH_IOMMUFD_PT, struct: V.vfio_device_detach_iommufd_pt },
  { number: V.VFIO_DEVICE_GET_INFO, struct: V.vfio_device_info },
  { number: V.VFIO_DEVICE_GET_REGION_INFO, struct: V.vfio_region_info },
  { number: V.VFIO_DEVICE_RESET, struct: V.vfio_device_info },
];

const MODELLED_IOCTLS = U.IOCTLS.filter((io) => io.struct !== undefined);

/** What the host holds, for the resource balance. */
function resources(host: HostKernel): string {
  const parts = [`kernel ${host.phys.kernelBytesInUse}`, `user ${host.phys.userBytesInUse}`];
  for (const smmu of host.smmus.values()) {
    parts.push(`${smmu.name} vmids ${smmu.driver.vmidsInUse}`);
    if (smmu.cmdqv) {
      const use = smmu.cmdqv.inUse;
      parts.push(`vintfs ${use.vintfs} queues ${use.queues} sids ${use.sidPairs}`);
    }
  }
  return parts.join(', ');
}

/** The victim VM: a VINTF with one HW queue, a nested-parent HWPT, a device, known memory. */
class Victim {
  readonly proc: Process;
  private readonly page0: number;
  private readonly ramVa: number;
  private prod = 0;

  constructor(private readonly host: HostKernel) {
    this.proc = host.createProcess();
    const backend = new IommufdBackend('victim', this.proc, new Tracer());
    this.ramVa = mmapAnonymous(this.proc, VICTIM_RAM, true);
    const { vfioFd, devId } = backend.bindDevice('/dev/vfio/devices/vfio0');
    const ioas = backend.allocIoas();
    backend.mapDma(ioas, 0, VICTIM_RAM, this.ramVa);
    const s2 = backend.allocHwpt(devId, ioas, U.iommufd_hwpt_alloc_flags.IOMMU_HWPT_ALLOC_NEST_PARENT, 0);
    backend.attachDevice(vfioFd, s2);
    const { viommuId, data } = backend.allocViommu(devId, U.iommu_viommu_type.IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV, s2, new Uint8Array(16));
    const offset = Number(U.iommu_viommu_tegra241_cmdqv.decode(data!).out_vintf_mmap_offset);
    backend.allocHwQueue(viommuId, U.iommu_hw_queue_type.IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV, 0, RING_IOVA, 16 << RING_LOG2);
    this.page0 = backend.viommuMmap(viommuId, C.CMDQV_PAGE_SIZE, offset);
    // The ring: TLBIs and a CMD_SYNC in every slot pattern; the secret in its memory.
    for (let i = 0; i < 1 << RING_LOG2; i++) {
      const words = i % 4 === 3 ? buildCommand(Op.SYNC) : buildCommand(Op.TLBI_NH_VA, { asid: 1, addr: i * 4096 });
      this.proc.memory.store(this.ramVa + RING_IOVA + i * 16, new Uint8Array(words.buffer));
    }
    this.proc.memory.write32(this.ramVa + SECRET_IOVA, SECRET);
    this.proc.memory.write32(this.page0 + C.lvcmdqPage0Offset(0, 0) - C.vintfPage0Offset(0) + C.VCMDQ_CONFIG.spec.offset, 1);
  }

  /** Empty when the victim sees what it should; else what is wrong. */
  check(): string {
    const slot = C.lvcmdqPage0Offset(0, 0) - C.vintfPage0Offset(0);
    this.prod = (this.prod + 4) % (2 << RING_LOG2);
    this.proc.memory.write32(this.page0 + slot + C.VCMDQ_PROD.spec.offset, this.prod);
    const cons = this.proc.memory.read32(this.page0 + slot + C.VCMDQ_CONS.spec.offset);
    if ((cons & C.VCMDQ_CONS.f.RD.wordMask(0)) !== this.prod || C.VCMDQ_CONS.f.ERR.get(cons) !== 0) {
      return `the victim's VCMDQ reads CONS 0x${cons.toString(16)} after PROD 0x${this.prod.toString(16)}`;
    }
    const dma = this.host.devices[0]!.dmaRead(SECRET_IOVA, 4);
    if (!dma.ok || dma.pa !== this.proc.mem.translate(this.ramVa + SECRET_IOVA)) return `the victim's device DMA at 0x${SECRET_IOVA.toString(16)} does not reach its own memory`;
    if (this.proc.memory.read32(this.ramVa + SECRET_IOVA) !== SECRET) return "the victim's memory changed";
    return '';
  }
}

/** A seeded hostile process. */
class Attacker {
  readonly proc: Process;
  private readonly random: () => number;
  readonly fds: number[] = [];
  private readonly ids: number[] = [];
  private readonly maps: { va: number; length: number }[] = [];
  private readonly scratch: number;
  private iommufd = -1;

  constructor(host: HostKernel, seed: number) {
    this.proc = host.createProcess();
    this.random = mulberry32(seed);
    this.scratch = mmapAnonymous(this.proc, 0x10000);
    this.maps.push({ va: this.scratch, length: 0x10000 });
  }

  private int(n: number): number {
    return Math.floor(this.random() * n);
  }

  private pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** A number for a field, by what the field's name says it is. */
  private fieldValue(name: string): bigint {
    const r = this.random();
    if (name === 'size' || name === 'argsz') return BigInt(r < 0.8 ? -1 : this.int(96)); // -1: the struct's own size
    if (/_id$|^id$|^iommufd$/.test(name)) {
      if (r < 0.6 && this.ids.length) return BigInt(this.pick(this.ids));
      if (r < 0.8) return BigInt(this.int(16));
      return BigInt(this.int(2 ** 32));
    }
    if (/flags|__reserved|type$/.test(name)) return BigInt(r < 0.6 ? 0 : r < 0.8 ? 1 << this.int(8) : this.int(2 ** 32));
    if (/uptr|user_va|_va$/.test(name)) {
      if (r < 0.5) return BigInt(this.scratch + 0x1000);
      if (r < 0.7) return 0n;
      if (r < 0.85) return BigInt(this.scratch + 0x10000 - this.int(64)); // crosses the end of the mapping
      return BigInt(this.int(2 ** 32)) << 16n;
    }
    if (/length|iova|len$|num$|depth|index|addr/.test(name)) {
      const choices = [0n, 4096n, 0x10000n, BigInt(this.int(2 ** 20)) * 4096n, (1n << 64n) - 1n, (1n << 64n) - 4096n, 1n << 63n, BigInt(this.int(2 ** 32))];
      return this.pick(choices);
    }
    return r < 0.5 ? 0n : BigInt(this.int(2 ** 32)) * BigInt(this.int(2 ** 20));
  }

  /** Encode a hostile argument for `struct` at the scratch area; returns its pointer. */
  private argument(struct: StructInfo | undefined): number {
    const size = struct?.size ?? 8 + 8 * this.int(8);
    const extra = this.random() < 0.15 ? 8 * (1 + this.int(4)) : 0;
    const bytes = new Uint8Array(size + extra);
    const view = new DataView(bytes.buffer);
    if (struct) {
      for (const f of struct.fields) {
        let v = this.fieldValue(f.name);
        if (v === -1n) v = BigInt(this.random() < 0.7 ? size : this.pick([size - 4, struct.minSize - 4, size + extra, 0]));
        for (let k = 0; k < f.size && k < 8; k++) bytes[f.offset + k] = Number((BigInt.asUintN(64, v) >> BigInt(8 * k)) & 0xffn);
      }
    } else {
      view.setUint32(0, size, true);
    }
    if (extra && this.random() < 0.5) bytes[size + this.int(extra)] = 1 + this.int(255); // a non-zero tail
    this.proc.memory.store(this.scratch + 0x1000, bytes);
    const r = this.random();
    return r < 0.9 ? this.scratch + 0x1000 : r < 0.95 ? 0 : this.scratch + 0x10000 - 4;
  }

  /** One hostile call; returns its result. */
  step(): number {
    const r = this.random();
    if (r < 0.04 || this.iommufd < 0) {
      const path = this.pick(['/dev/iommu', '/dev/iommu', '/dev/vfio/devices/vfio1', '/dev/vfio/devices/vfio0', '/dev/nope']);
      const fd = this.proc.open(path);
      if (fd >= 0) {
        this.fds.push(fd);
        if (path === '/dev/iommu') this.iommufd = fd;
      }
      return fd;
    }
    if (r < 0.06 && this.fds.length) {
      const fd = this.fds.splice(this.int(this.fds.length), 1)[0]!;
      if (fd === this.iommufd) this.iommufd = this.fds.find((f) => f !== fd) ?? -1;
      return this.proc.close(fd);
    }
    if (r < 0.09) {
      const length = this.pick([0, 0x1000, 0x10000, 0x20000, 0x12345]);
      const va = this.proc.mmap(0, length, PROT_READ | PROT_WRITE, this.pick([MAP_SHARED, 0]), this.pick([this.iommufd, ...this.fds, 99]), this.pick([0, 0x1000, 0x10000, 2 ** 40, this.int(2 ** 32) * 0x1000]));
      if (va >= 0) this.maps.push({ va, length });
      return va;
    }
    if (r < 0.1 && this.maps.length > 1) {
      const m = this.maps.splice(1 + this.int(this.maps.length - 1), 1)[0]!;
      return this.proc.munmap(m.va, m.length);
    }
    if (r < 0.12 && this.fds.length) return this.proc.read(this.pick(this.fds), this.scratch + 0x8000, this.pick([0, 8, 24, 4096, 0x10000]));
    if (r < 0.14) {
      // Config-space reads and writes on any fd: offsets in and past the config region, odd sizes, bad buffers.
      const offset = this.pick([V.VFIO_PCI_CONFIG_REGION_INDEX * 2 ** 40, V.VFIO_PCI_CONFIG_REGION_INDEX * 2 ** 40 + this.int(0x110), 0, 2 ** 40, 2 ** 44 + 4, -1]);
      const count = this.pick([1, 2, 4, 3, 8, 0x100, 0x1000, 0]);
      const buf = this.pick([this.scratch + 0x8000, 0, this.scratch + 0x10000 - 2]);
      const fd = this.pick(this.fds.length ? this.fds : [3]);
      return this.random() < 0.5 ? this.proc.pread(fd, buf, count, offset) : this.proc.pwrite(fd, buf, count, offset);
    }
    if (r < 0.2) {
      const io = this.pick(VFIO_IOCTLS);
      return this.proc.ioctl(this.pick(this.fds.length ? this.fds : [3]), io.number, this.argument(io.struct));
    }
    // Mostly the ioctls the host implements (the rest answer EOPNOTSUPP at once).
    const io = this.pick(this.random() < 0.9 ? MODELLED_IOCTLS : U.IOCTLS);
    const ret = this.proc.ioctl(this.random() < 0.95 ? this.iommufd : this.pick([...this.fds, 77]), this.random() < 0.98 ? io.number : this.int(2 ** 32), this.argument(io.struct));
    if (ret === 0 && io.struct) {
      // Learn the ids the kernel handed out (out_*_id fields), so later calls use live ones.
      const out = this.proc.memory.load(this.scratch + 0x1000, io.struct.size);
      const view = new DataView(out.buffer);
      for (const f of io.struct.fields) if (/^out_.*_id$/.test(f.name) && f.size === 4) this.ids.push(view.getUint32(f.offset, true));
    }
    return ret;
  }

  /** Process exit: close every file, unmap every mapping. */
  exit(): void {
    for (const fd of this.fds.splice(0)) this.proc.close(fd);
    for (const m of this.maps.splice(0)) this.proc.munmap(m.va, m.length);
  }
}

/** Run `calls` hostile uAPI calls of `seed` next to a victim VM; a finding if an invariant broke. */
export function runUapiCase(seed: number, calls: number, observe?: (result: number) => void): Finding | undefined {
  const argv: readonly string[] = [];
  const host = new HostKernel();
  const victim = new Victim(host);
  const baseline = resources(host);
  const attacker = new Attacker(host, seed);
  for (let i = 0; i < calls; i++) {
    let ret: number;
    try {
      ret = attacker.step();
    } catch (e) {
      return { seed, kind: 'exception', message: `uAPI call ${i} threw ${(e as Error).name}: ${(e as Error).message}`, index: i, argv, source: 'uapi' };
    }
    if (typeof ret !== 'number' || !Number.isInteger(ret) || (ret < 0 && !KNOWN_ERRNOS.has(-ret))) {
      return { seed, kind: 'exception', message: `uAPI call ${i} returned ${String(ret)}, not a result or a known errno`, index: i, argv, source: 'uapi' };
    }
    observe?.(ret);
    if (i % 500 === 499) {
      const wrong = victim.check();
      if (wrong) return { seed, kind: 'isolation', message: `after uAPI call ${i}: ${wrong}`, index: i, argv, source: 'uapi' };
    }
  }
  try {
    attacker.exit();
  } catch (e) {
    return { seed, kind: 'exception', message: `closing the attacker's files threw ${(e as Error).message}`, index: calls, argv, source: 'uapi' };
  }
  const wrong = victim.check();
  if (wrong) return { seed, kind: 'isolation', message: `after the attacker exited: ${wrong}`, index: calls, argv, source: 'uapi' };
  const after = resources(host);
  if (after !== baseline) return { seed, kind: 'isolation', message: `resources did not balance after the attacker exited: before ${baseline}; after ${after}`, index: calls, argv, source: 'uapi' };
  return undefined;
}
