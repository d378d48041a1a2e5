// Shared by the snapshot tests: random workloads, save points with pending work, and every
// guest-visible observation of a machine at the end of a run.
import { buildCommand, Op } from '../../src/arch/smmuv3/commands.js';
import { qAdvance } from '../../src/arch/smmuv3/queue.js';
import { lvcmdqPage0Offset, VCMDQ_PROD } from '../../src/arch/tegra241-cmdqv/registers.js';
import { mulberry32 } from '../../src/kit/prng.js';
import { HostKernel, Machine } from '../../src/platform/machine.js';
import { WorkloadRun, type WorkloadOptions, type WorkloadReport } from '../../src/platform/workload.js';
import { crc32 } from '../../src/kit/crc32.js';

/** Which path a case runs: accelerated with the CMDQV, accelerated trapped, or QEMU's emulated SMMUv3. */
export type Path = 'cmdqv' | 'trapped' | 'emulated';

/**
 * The machine line of a path (emulated: an iommu-testdev behind the machine-wide SMMUv3). With
 * `smallPages` guest RAM is a memory-backend-ram (4 KiB pages): IDR1.CMDQS is capped at 8, so
 * the rings are 256 entries and a run wraps them.
 */
export function pathLine(path: Path, bdf = '0009:01:00.0', smallPages = false): string[] {
  if (path === 'emulated') return ['-M', 'virt,iommu=smmuv3', '-m', '1G', '-device', 'iommu-testdev'];
  const line = lineFor(path === 'cmdqv', bdf);
  if (!smallPages) return line;
  // 320 MiB: the guest kernel's 256 MiB plus room for its rings (every 4 KiB page is pinned).
  line[1] += ',memory-backend=mem0';
  line[3] = '320M';
  line.push('-object', 'memory-backend-ram,id=mem0,size=320M');
  return line;
}

/** The embedded default line with the CMDQV on or off (trapped invalidations), on host device `bdf`. */
export function lineFor(cmdqv: boolean, bdf = '0009:01:00.0'): string[] {
  return [
    '-machine', 'virt,accel=kvm,kernel-irqchip=on', '-m', '4G', '-object', 'iommufd,id=iommufd0',
    '-device', `arm-smmuv3,primary-bus=pcie.0,id=smmuv3.0,accel=on,cmdqv=${cmdqv ? 'on' : 'off'},identifier=1`,
    '-device', `vfio-pci,host=${bdf},iommufd=iommufd0,id=hostdev0`,
  ];
}

/** What the guest does before the save, beyond whole batches. */
export type Poke = 'none' | 'vcmdq-error' | 'host-fault';

/** One random case. */
export interface Case {
  readonly path: Path;
  /** 4 KiB-page RAM: 256-entry rings that the run wraps. */
  readonly smallPages: boolean;
  readonly work: WorkloadOptions;
  /** Ops to run before saving (rounded up to a batch). */
  readonly saveAt: number;
  readonly poke: Poke;
}

/** A small random case for `seed` (both paths; errors pending; queues mid-ring). */
export function randomCase(seed: number): Case {
  const rnd = mulberry32(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo + 1));
  const r = rnd();
  // Every 40th seed: 4 KiB-page RAM (the CMDQV caps IDR1.CMDQS at 8: 256-entry rings) and a run
  // long enough that the save finds the rings wrapped.
  const smallPages = seed % 40 === 0;
  const path: Path = smallPages ? 'cmdqv' : r < 0.55 ? 'cmdqv' : r < 0.9 ? 'trapped' : 'emulated';
  const ops = smallPages ? int(280, 320) : int(4, 40);
  const work: WorkloadOptions = { ops, batch: smallPages ? int(4, 12) : int(1, 12), pages: int(1, 3), injectError: rnd() < 0.5, skipInvalidation: false, verifyEvery: int(1, 4) };
  const pokes: Poke[] = path === 'cmdqv' ? ['none', 'vcmdq-error', 'host-fault'] : path === 'trapped' ? ['none', 'host-fault'] : ['none'];
  return { path, smallPages, work, saveAt: smallPages ? int(260, ops) : int(0, ops), poke: pokes[int(0, pokes.length - 1)]! };
}

/**
 * Leave work pending at the save: an illegal command rung on VCMDQ 0 without waiting (the
 * queue stops, a vEVENT waits for the VMM's main loop), or a device DMA to an unmapped IOVA (a
 * fault waits in the SMMUv3 vEVENTQ).
 */
export function poke(m: Machine, run: WorkloadRun, what: Poke): void {
  if (what === 'vcmdq-error') {
    const io = run.kernel.iommus.find((i) => i.cmdqv)!;
    const cmdqv = io.cmdqv!;
    const q = cmdqv.queues[0]!.queue;
    const bus = run.kernel.platform.bus;
    const bad = buildCommand(Op.CFGI_STE, { sid: 0 });
    const at = q.slot(q.prod);
    for (let i = 0; i < 4; i++) bus.write32(at + 4 * i, bad[i]!);
    q.prod = qAdvance(q.prod, 1, q.log2);
    bus.write32(cmdqv.base + lvcmdqPage0Offset(0, 0) + VCMDQ_PROD.spec.offset, q.prod);
  } else if (what === 'host-fault') {
    m.host.devices[m.devices[0]!.hostIndex]!.dmaRead(0x7_0000_0000, 4);
  }
}

/** Every guest-visible observation at the end of a run. */
export interface Observation {
  report: unknown;
  registers: number[];
  ram: string;
  irqs: unknown;
  clock: number;
  guestEvents: number[][];
}

/** Registers the guest can read: the SMMU frame, the CMDQV config page and VCMDQ pages (both apertures). */
function registerReads(m: Machine): number[] {
  const out: number[] = [];
  for (const e of m.emulatedSmmus) for (let o = 0; o < 0x100; o += 4) out.push(Number(m.read(e.base + o, 4).value));
  for (const s of m.smmus) {
    for (let o = 0; o < 0x100; o += 4) out.push(Number(m.read(s.base + o, 4).value));
    for (const o of [0x100a8, 0x100ac]) out.push(Number(m.read(s.base + o, 4).value));
    if (s.cmdqvBase === undefined) continue;
    for (const o of [0x0, 0x4, 0x8, 0xc, 0x10, 0x14, 0x18, 0x1c, 0x20, 0x24, 0x200, 0x204, 0x208, 0x20c, 0x1000, 0x1004, 0x1008, 0x100c, 0x1040, 0x1080, 0x10c0, 0x10c4, 0x10c8, 0x10cc]) {
      out.push(Number(m.read(s.cmdqvBase + o, 4).value));
    }
    for (const page of [0x10000, 0x30000]) for (let q = 0; q < 2; q++) for (let o = 0; o < 0x18; o += 4) out.push(Number(m.read(s.cmdqvBase + page + q * 0x80 + o, 4).value));
    for (const page of [0x20000, 0x40000]) for (let q = 0; q < 2; q++) for (let o = 0; o < 0x10; o += 4) out.push(Number(m.read(s.cmdqvBase + page + q * 0x80 + o, 4).value));
  }
  return out;
}

/** Every guest RAM block that holds data: its offset and a hash of its bytes. */
function ramDigest(m: Machine): string {
  const out: string[] = [];
  m.forEachTouchedRam((offset, bytes) => out.push(`${offset.toString(16)}:${crc32(bytes).toString(16)}`));
  return out.join(' ');
}

/** The report without what is not guest-visible: wall time and host object ids. */
function guestReport(r: WorkloadReport): unknown {
  return { ...r, wallNs: 0, hwQueues: r.hwQueues.map((q) => ({ smmu: q.smmu, index: q.index, allocated: q.id !== undefined })) };
}

export function observe(m: Machine, run: WorkloadRun, rep: WorkloadReport): Observation {
  return {
    report: guestReport(rep),
    ram: ramDigest(m),
    registers: registerReads(m),
    irqs: [...m.irqs].map(([gsiv, l]) => [gsiv, l.level, l.count]),
    clock: m.clock.now,
    guestEvents: run.kernel.iommus.flatMap((io) => io.smmu.events.map((e) => [...e])),
  };
}

/** A host already running another VM (on the second device), which has done some work. */
export function busyHost(path: Path): { host: HostKernel; other: Machine } {
  const host = new HostKernel();
  const other = Machine.create(path === 'emulated' ? pathLine(path) : lineFor(path === 'cmdqv', '0009:01:00.1'), { host });
  WorkloadRun.start(other, { ops: 8, batch: 4, pages: 1, injectError: false, skipInvalidation: false }).runTo(8);
  return { host, other };
}
