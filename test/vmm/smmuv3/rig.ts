// Test rig for the accelerated SMMUv3: a real simulated host, the VMM process with its iommufd
// backend, guest RAM mapped into an IOAS with a nesting-parent HWPT (what VFIO sets up), bound
// VFIO devices, and a minimal guest driver that programs the SMMU through MMIO and guest RAM.
import { buildCommand } from '../../../src/arch/smmuv3/commands.js';
import * as R from '../../../src/arch/smmuv3/registers.js';
import type { HostConfig } from '../../../src/host/config.js';
import { DEFAULT_HOST } from '../../../src/host/config.js';
import { HostKernel } from '../../../src/host/kernel/host-kernel.js';
import type { Process } from '../../../src/host/kernel/process.js';
import { UserMemoryOps } from '../../../src/host/memory/process-memory.js';
import { ModelLog } from '../../../src/kit/log.js';
import { Tracer, type TraceEvent, type TraceSink } from '../../../src/kit/trace.js';
import { TRACE_CATALOG } from '../../../src/platform/machine.js';
import { iommufd_hwpt_alloc_flags } from '../../../src/uapi/iommufd.js';
import { mmapAnonymous } from '../../../src/uapi/syscalls.js';
import { IommufdBackend } from '../../../src/vmm/backends/iommufd.js';
import type { MainLoop } from '../../../src/vmm/main-loop.js';
import { AccelSmmuV3, type AccelSmmuV3Deps } from '../../../src/vmm/smmuv3/accel-smmuv3.js';
import type { AccelHostDevice, CmdqvHost, CmdqvOps } from '../../../src/vmm/smmuv3/cmdqv-ops.js';
import type { AccelSmmuV3Properties } from '../../../src/vmm/smmuv3/properties.js';
import type { GuestMemory } from '../../../src/vmm/smmuv3/ste-install.js';

export const RAM_BYTES = 2 ** 30;
/** Guest SIDs of the two devices (guest BDFs 00:01.0 and 00:02.0). */
export const GSID = [0x08, 0x10] as const;

/** Guest memory layout used by the tests. */
export const STRTAB = 0x10_0000; // linear stream table, 2^8 STEs
export const CMDQ = 0x20_0000; // command queue
export const EVENTQ = 0x30_0000; // event queue
export const CD_IPA = 0x40_0000;
export const TABLES = 0x80_0000; // stage-1 tables bump allocator
export const DATA_IPA = 0x2000_0000;

export const DEFAULT_PROPS: AccelSmmuV3Properties = {
  id: 'smmuv3.0',
  identifier: 0,
  primaryBus: 'pcie.0',
  accel: true,
  cmdqv: 'off',
  ats: 'auto',
  ril: 'auto',
  ssidsize: 'auto',
  oas: 'auto',
};

/** A main loop that only records the fd handlers registered on it (tests poll by hand). */
export class RecordingMainLoop implements MainLoop {
  readonly fdHandlers = new Map<number, () => void>();
  setFdHandler(fd: number, handler: (() => void) | undefined): number {
    if (handler) this.fdHandlers.set(fd, handler);
    else this.fdHandlers.delete(fd);
    return 0;
  }
  defer(fn: () => void): void {
    fn();
  }
}

/** Trace records, for asserting on trace points. */
export class TraceLog implements TraceSink {
  readonly records: { name: string; values: readonly unknown[] }[] = [];
  record(ev: TraceEvent, _t: number, values: readonly unknown[]): void {
    this.records.push({ name: ev.name, values });
  }
  named(name: string): (readonly unknown[])[] {
    return this.records.filter((r) => r.name === name).map((r) => r.values);
  }
}

export interface RigOptions {
  props?: Partial<AccelSmmuV3Properties>;
  host?: HostConfig;
  cmdqvFactory?: (host: CmdqvHost) => CmdqvOps;
  /**
   * Give the SMMU the machine's direct view of RAM (`mapWords`) and leave tracing off: the
   * command queue then takes its fast paths, as in the virt machine.
   */
  fastRam?: boolean;
  /** Back guest RAM with base pages (scattered host frames) instead of 1 GiB hugepages. */
  smallPages?: boolean;
  /** Don't create the SMMU (for property tests that construct it themselves). */
  noSmmu?: boolean;
}

export interface Rig {
  kernel: HostKernel;
  proc: Process;
  backend: IommufdBackend;
  log: ModelLog;
  tracer: Tracer;
  traces: TraceLog;
  ramVa: number;
  ioasId: number;
  s2: number;
  devs: AccelHostDevice[];
  mem: GuestMemory & { writes: number };
  smmu: AccelSmmuV3;
  mainLoop: RecordingMainLoop;
  deps: AccelSmmuV3Deps;
}

/** Host + VMM + (unattached) SMMU. Both host devices are bound and attached to the S2 HWPT. */
export function makeRig(o: RigOptions = {}): Rig {
  const kernel = new HostKernel(o.host ?? DEFAULT_HOST);
  const proc = kernel.createProcess();
  const log = new ModelLog();
  const tracer = new Tracer(TRACE_CATALOG);
  const traces = new TraceLog();
  tracer.addSink(traces);
  if (!o.fastRam) tracer.enable('smmuv3_*,smmu_*');
  const backend = new IommufdBackend('iommufd0', proc, tracer);
  const ramVa = mmapAnonymous(proc, RAM_BYTES, !o.smallPages);
  const ioasId = backend.allocIoas();
  backend.mapDma(ioasId, 0, RAM_BYTES, ramVa);
  const devs: AccelHostDevice[] = [];
  let s2 = 0;
  for (let i = 0; i < 2; i++) {
    const { vfioFd, devId } = backend.bindDevice(`/dev/vfio/devices/vfio${i}`);
    if (i === 0) s2 = backend.allocHwpt(devId, ioasId, iommufd_hwpt_alloc_flags.IOMMU_HWPT_ALLOC_NEST_PARENT, 0);
    backend.attachDevice(vfioFd, s2); // VFIO's default attach
    devs.push({ host: kernel.devices[i]!.bdf, devId, vfioFd, guestSid: GSID[i]! });
  }
  const ramOps = new UserMemoryOps(proc.mem, ramVa);
  const mem: GuestMemory & { writes: number } = {
    writes: 0,
    read32(gpa: number): number {
      if (gpa < 0 || gpa + 4 > RAM_BYTES) throw new RangeError(`no RAM at 0x${gpa.toString(16)}`);
      return proc.mem.read32(ramVa + gpa);
    },
    write32(gpa: number, v: number): void {
      if (gpa < 0 || gpa + 4 > RAM_BYTES) throw new RangeError(`no RAM at 0x${gpa.toString(16)}`);
      this.writes++;
      proc.mem.write32(ramVa + gpa, v);
    },
  };
  if (o.fastRam) mem.mapWords = (gpa, win) => gpa >= 0 && gpa + 4 <= RAM_BYTES && ramOps.mapWords(gpa, win);
  const mainLoop = new RecordingMainLoop();
  const deps: AccelSmmuV3Deps = {
    backend,
    guestMemory: mem,
    mainLoop,
    log,
    tracer,
    cmdqvFactory: o.cmdqvFactory,
    minRamPageSize: () => 2 ** 30,
  };
  const smmu = o.noSmmu ? (undefined as unknown as AccelSmmuV3) : new AccelSmmuV3({ ...DEFAULT_PROPS, ...o.props }, deps);
  if (smmu) smmu.setS2Hwpt(s2);
  return { kernel, proc, backend, log, tracer, traces, ramVa, ioasId, s2, devs, mem, smmu, mainLoop, deps };
}

/** ioctl names the backend issued since `from`. */
export function callsSince(rig: Rig, from: number): { name: string; args: Record<string, unknown>; ret: number }[] {
  return rig.backend.calls.slice(from);
}

/** The HWPT host device `i` is attached to, as the host kernel sees it. */
export function attachedTo(rig: Rig, i: number): number | undefined {
  return rig.kernel.devices[i]!.binding?.obj.attached?.id;
}

/** The vDEVICE of host device `i`, as the host kernel sees it. */
export function hostVdevice(rig: Rig, i: number): { id: number; virtId: number } | undefined {
  const vd = rig.kernel.devices[i]!.binding?.obj.vdevice;
  return vd && { id: vd.id, virtId: Number(vd.virtId) };
}

/** A minimal guest SMMUv3 driver: MMIO programming and rings in guest RAM. */
export class Guest {
  private prod = 0;
  constructor(
    readonly rig: Rig,
    readonly cmdqLog2 = 8,
  ) {}

  get smmu(): AccelSmmuV3 {
    return this.rig.smmu;
  }
  r32(off: number): number {
    return this.smmu.mmio.ops!.read(off, 4);
  }
  w32(off: number, v: number): void {
    this.smmu.mmio.ops!.write(off, 4, v >>> 0);
  }
  w64(off: number, v: bigint): void {
    this.smmu.mmio.ops!.write64(off, v);
  }
  r64(off: number): bigint {
    return this.smmu.mmio.ops!.read64(off);
  }

  /** Linear stream table of 2^log2 STEs at STRTAB, command queue at CMDQ; CMDQEN on. */
  init(opts: { smmuen?: boolean; eventq?: number; irqs?: number } = {}): void {
    this.w64(R.STRTAB_BASE.spec.offset, BigInt(STRTAB));
    this.w32(R.STRTAB_BASE_CFG.spec.offset, 8);
    this.w64(R.CMDQ_BASE.spec.offset, BigInt(CMDQ) | BigInt(this.cmdqLog2));
    this.w32(R.CMDQ_PROD.spec.offset, 0);
    this.w32(R.CMDQ_CONS.spec.offset, 0);
    if (opts.irqs !== undefined) this.w32(R.IRQ_CTRL.spec.offset, opts.irqs);
    let cr0 = 0b1000; // CMDQEN
    if (opts.eventq !== undefined) {
      this.w64(R.EVENTQ_BASE.spec.offset, BigInt(EVENTQ) | BigInt(opts.eventq));
      this.w32(R.EVENTQ_PROD.spec.offset, 0);
      this.w32(R.EVENTQ_CONS.spec.offset, 0);
      cr0 |= 0b100;
    }
    if (opts.smmuen) cr0 |= 1;
    this.w32(R.CR0.spec.offset, cr0);
  }

  enableSmmu(on = true): void {
    const cr0 = this.r32(R.CR0.spec.offset);
    this.w32(R.CR0.spec.offset, on ? cr0 | 1 : cr0 & ~1);
  }

  /** Write a guest STE (first four words; the rest zero) for `sid`. */
  writeSte(sid: number, w: readonly number[]): void {
    for (let i = 0; i < 16; i++) this.rig.mem.write32(STRTAB + sid * 64 + 4 * i, w[i] ?? 0);
  }

  /** Write commands to the ring and publish them with one PROD write. */
  submit(...cmds: Uint32Array[]): void {
    const n = 1 << this.cmdqLog2;
    for (const c of cmds) {
      this.writeSlot(this.prod & (n - 1), c);
      this.prod = (this.prod + 1) & (2 * n - 1);
    }
    this.w32(R.CMDQ_PROD.spec.offset, this.prod);
  }

  /** Overwrite ring slot `i` (the driver's skip routine). */
  writeSlot(i: number, c: Uint32Array): void {
    for (let k = 0; k < 4; k++) this.rig.mem.write32(CMDQ + i * 16 + k * 4, c[k]!);
  }

  cons(): number {
    return this.r32(R.CMDQ_CONS.spec.offset);
  }
  gerror(): number {
    return this.r32(R.GERROR.spec.offset);
  }
  ack(): void {
    this.w32(R.GERRORN.spec.offset, this.gerror());
  }
  sync(cs = 0): Uint32Array {
    return buildCommand(0x46, { cs });
  }
}

/** CD for a 48-bit, 4 KiB-granule stage 1 with ASID `asid` and TTB0 `ttb0`. */
export function writeCd(mem: GuestMemory, at: number, asid: number, ttb0: number): void {
  // T0SZ=16, TG0=4K, EPD1, V; IPS=48-bit, AA64, A (abort on fault terminates), ASID.
  mem.write32(at, (16 | (1 << 30) | (1 << 31)) >>> 0);
  mem.write32(at + 4, (5 | (1 << 9) | (1 << 14) | (asid << 16)) >>> 0);
  mem.write32(at + 8, ttb0);
  mem.write32(at + 12, 0);
  for (let i = 4; i < 16; i++) mem.write32(at + 4 * i, 0);
}

/** STE word 0..3 for an S1-translate STE using the CD at `cd`. */
export function s1Ste(cd: number, extra1 = 0): number[] {
  return [(1 | (0b101 << 1) | cd) >>> 0, 0, extra1 >>> 0, 0];
}
export const ABORT_STE = [1, 0, 0, 0];
export const BYPASS_STE = [1 | (0b100 << 1), 0, 0, 0];
