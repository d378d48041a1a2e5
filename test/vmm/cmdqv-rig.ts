// A test rig for the VMM's Tegra241 CMDQV: a simulated host, a VMM process with guest RAM in an
// IOAS and a nesting-parent HWPT, the device's MMIO block in a guest address space.
import { AddressSpace } from '../../src/kit/address-space.js';
import { VirtualClock } from '../../src/kit/clock.js';
import { ModelLog } from '../../src/kit/log.js';
import { MemoryRegion } from '../../src/kit/memory-region.js';
import { TextTraceSink, Tracer } from '../../src/kit/trace.js';
import { TRACE_CATALOG } from '../../src/platform/machine.js';
import { HostKernel } from '../../src/host/kernel/host-kernel.js';
import { UserMemoryOps } from '../../src/host/memory/process-memory.js';
import type { Process } from '../../src/host/kernel/process.js';
import { mmapAnonymous } from '../../src/uapi/syscalls.js';
import { IommufdBackend } from '../../src/vmm/backends/iommufd.js';
import type { AccelHostDevice } from '../../src/vmm/smmuv3/cmdqv-ops.js';
import { ClockMainLoop } from '../../src/vmm/main-loop.js';
import { Tegra241Cmdqv } from '../../src/vmm/tegra241-cmdqv/cmdqv.js';
import type { GuestSmmu } from '../../src/guest/arm-smmu-v3.js';
import { GuestAllocator, type GuestPlatform } from '../../src/guest/platform.js';

/** Guest-physical base of the CMDQV block in the rig (the virt platform-bus slot of docs/reference/qemu-accel-smmuv3.md §2.2). */
export const CMDQV_BASE = 0x0c08_0000;
export const RAM_BASE = 0x4000_0000;

export interface Rig {
  kernel: HostKernel;
  /** The VMM process (host side). */
  proc: Process;
  backend: IommufdBackend;
  cmdqv: Tegra241Cmdqv;
  as: AddressSpace;
  log: ModelLog;
  tracer: Tracer;
  trace: TextTraceSink;
  clock: VirtualClock;
  dev: AccelHostDevice;
  s2: number;
  ramVa: number;
  cmdqs: { value: number };
  /** Guest store/load of 4 bytes at a CMDQV offset; returns whether it trapped. */
  w(off: number, v: number): boolean;
  r(off: number): number;
  w64(off: number, v: bigint): boolean;
}

/** Build the rig; `ramPage` picks the guest RAM backing (1 GiB hugepages by default). */
export function rig(opts: { ramBytes?: number; hugepages?: boolean; ramPage?: number; tracePattern?: string } = {}): Rig {
  const ramBytes = opts.ramBytes ?? 2 ** 30;
  const kernel = new HostKernel();
  const proc = kernel.createProcess();
  const log = new ModelLog();
  const tracer = new Tracer(TRACE_CATALOG);
  const trace = new TextTraceSink();
  tracer.addSink(trace);
  if (opts.tracePattern) tracer.enable(opts.tracePattern);
  const clock = new VirtualClock();
  const backend = new IommufdBackend('iommufd0', proc, tracer);
  const ramVa = mmapAnonymous(proc, ramBytes, opts.hugepages ?? true);
  const { vfioFd, devId } = backend.bindDevice('/dev/vfio/devices/vfio0');
  const ioas = backend.allocIoas();
  backend.mapDma(ioas, RAM_BASE, ramBytes, ramVa);
  const s2 = backend.allocHwpt(devId, ioas, 1, 0);
  const cmdqs = { value: 19 };
  const cmdqv = new Tegra241Cmdqv({
    host: {
      backend,
      getCmdqs: () => cmdqs.value,
      setCmdqs: (n) => (cmdqs.value = n),
      minRamPageSize: () => opts.ramPage ?? (opts.hugepages === false ? 4096 : 2 ** 30),
    },
    log,
    tracer,
    mainLoop: new ClockMainLoop(proc, clock),
  });
  const dev: AccelHostDevice = { host: '0009:01:00.0', devId, vfioFd, guestSid: 0x8 };
  const root = MemoryRegion.container('system', 2 ** 40);
  root.addSubregion(RAM_BASE, new MemoryRegion('ram', ramBytes, 'ram', new UserMemoryOps(proc.mem, ramVa), { sizes: [1, 2, 4, 8], unaligned: true }));
  const as = new AddressSpace('memory', root, log);
  const r: Rig = {
    kernel, proc, backend, cmdqv, as, log, tracer, trace, clock, dev, s2, ramVa, cmdqs,
    w: (off, v) => as.write(CMDQV_BASE + off, 4, v).trapped,
    r: (off) => Number(as.read(CMDQV_BASE + off, 4).value),
    w64: (off, v) => as.write(CMDQV_BASE + off, 8, v).trapped,
  };
  return r;
}

/** Probe + init + place the block + vIOMMU + reset: the state a guest boots into. */
export function boot(r: Rig): Rig {
  r.cmdqv.probe(r.dev);
  r.cmdqv.init();
  r.as.root.addSubregion(CMDQV_BASE, r.cmdqv.mmio!);
  r.cmdqv.allocViommu(r.dev, r.s2);
  r.cmdqv.reset();
  return r;
}

/** The GSIV the guest driver tests give the rig's CMDQV interrupt. */
export const CMDQV_GSIV = 148;

/**
 * The guest's view of the rig: loads and stores through its address space (`onWrite` sees each
 * store first), the CMDQV interrupt at {@link CMDQV_GSIV}, 1 GiB of RAM at RAM_BASE.
 */
export function guestPlatform(r: Rig, onWrite?: (addr: number, value: bigint | number) => void): GuestPlatform {
  return {
    bus: {
      read32: (a) => Number(r.as.read(a, 4).value),
      write32: (a, v) => {
        onWrite?.(a, v);
        r.as.write(a, 4, v);
      },
      read64: (a) => r.as.read(a, 8).value,
      write64: (a, v) => {
        onWrite?.(a, v);
        r.as.write(a, 8, v);
      },
    },
    clock: r.clock,
    irq: (gsiv) => (gsiv === CMDQV_GSIV ? r.cmdqv.irq : undefined),
    ramBase: RAM_BASE,
    ramSize: 2 ** 30,
  };
}

/** The part of a guest SMMU the CMDQV driver uses: IDR1 (CMDQS), the page allocator, submit. */
export function guestSmmuStub(submit: (cmds: readonly Uint32Array[]) => void = () => {}): GuestSmmu {
  return { idr1: 19 << 21, mem: new GuestAllocator(RAM_BASE + 0x100_0000, 0x100_0000), submit } as unknown as GuestSmmu;
}
