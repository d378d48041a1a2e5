/**
 * The main job: boot the guest's IOMMU drivers on a machine, run a map / DMA / unmap workload
 * with invalidations on every passthrough device, inject one illegal VCMDQ command to exercise
 * the error path, and collect what happened on each path (commands, VM exits, ioctls, errors,
 * DMA checks).
 */

import { buildCommand, Op } from '../arch/smmuv3/commands.js';
import { GuestKernel } from '../guest/kernel.js';
import type { IommuDomain } from '../guest/iommu-domain.js';
import { GuestIommuTestdev, isIommuTestdev } from '../guest/iommu-testdev.js';
import { scanPci } from '../guest/pci.js';
import { GuestOutOfMemory } from '../guest/platform.js';
import type { Machine } from './machine.js';

export type { GuestKernel };

/**
 * A device the workload maps buffers for and makes DMA with: a passthrough device (its DMA
 * goes through the host SMMU) or an iommu-testdev behind an emulated SMMUv3 (its DMA is
 * translated in the VMM; the guest triggers it through the device's BAR0).
 */
interface DmaMaster {
  readonly name: string;
  readonly rid: number;
  readonly smmu: string;
  /** DMA at `iova` must land at guest-physical `pa`: whether it did. */
  landed(iova: number, pa: number, tag: number): boolean;
  /** DMA at an unmapped `iova` still reached `pa` (a stale translation was used). */
  stale(iova: number, pa: number): boolean;
}

/**
 * The machine's DMA masters, as the guest finds them: its PCI scan through ECAM (as Linux
 * enumerates) gives each function's requester ID; an iommu-testdev is driven through its BAR0,
 * a passthrough function's DMA is made by the host device behind it (the VMM's vfio-pci whose
 * requester ID it is).
 */
function dmaMasters(m: Machine, kernel: GuestKernel): DmaMaster[] {
  const out: DmaMaster[] = [];
  for (const d of scanPci(kernel.platform.bus, m.acpi)) {
    if (d.bridge) continue;
    const rid = (d.bus << 8) | d.devfn;
    if (isIommuTestdev(d)) {
      const drv = GuestIommuTestdev.probe(kernel.platform.bus, d);
      const root = m.buses.find((b) => b.root === b.id && b.busNr <= d.bus && d.bus <= b.subordinate);
      const smmu = m.emulatedSmmus.find((e) => e.opts === undefined || e.opts.primaryBus === root?.id);
      out.push({
        name: `iommu-testdev ${d.bdf}`,
        rid,
        smmu: smmu?.id ?? 'none',
        // The device writes its pattern through its IOMMU and checks it at pa (result 0 = landed).
        landed: (iova, pa) => drv.dma(iova, pa, 4) === 0,
        stale: (iova, pa) => drv.dma(iova, pa, 4) === 0,
      });
      continue;
    }
    const dev = m.devices.find((x) => x.host.guestSid === rid);
    if (!dev) continue; // a function cmdqv does not drive DMA for
    const hostDev = m.host.devices[dev.hostIndex]!;
    const pattern = new Uint8Array([0, 0, 0xc3, 0x5a]); // bytes 0-1: the tag of each check
    out.push({
      name: dev.opts.host,
      rid,
      smmu: dev.smmu.dev.props.id,
      landed: (iova, pa, tag) => {
        pattern[0] = tag & 0xff;
        pattern[1] = (tag >> 8) & 0xff;
        if (!hostDev.dmaWrite(iova, pattern).ok) return false;
        const got = m.readRam(pa, 4);
        return got[0] === pattern[0] && got[1] === pattern[1] && got[2] === pattern[2] && got[3] === pattern[3];
      },
      stale: (iova) => hostDev.dmaRead(iova, 4).ok,
    });
  }
  return out;
}

/** The workload asked of a machine does not fit it (the message says what and why). */
export class WorkloadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WorkloadError';
  }
}

/** IOVA of the first buffer slot, and how many slots the workload cycles through. */
const IOVA_BASE = 0x1_0000_0000;
const IOVA_SLOTS = 4096;
/** Slot size unit: 1 MiB (a buffer larger than that spans several units, so slots never overlap). */
const MIN_SLOT = 0x10_0000;
const PAGE = 4096;
/** IOVA bytes one table page covers at each level below the root (4 KiB granule: 2 MiB, 1 GiB, 512 GiB). */
const TABLE_SPANS = [2 ** 21, 2 ** 30, 2 ** 39];

/** The IOVA slot of a `bytes` buffer: whole 1 MiB units. */
function slotBytes(bytes: number): number {
  return Math.ceil(bytes / MIN_SLOT) * MIN_SLOT;
}

/** Workload options. */
export interface WorkloadOptions {
  /** map/DMA/unmap operations per device. */
  ops: number;
  /** Buffers unmapped per invalidation batch (one CMD_SYNC per batch). */
  batch: number;
  /** Pages per buffer. */
  pages: number;
  /** Inject one illegal command on a VCMDQ (error path demo). */
  injectError: boolean;
  /** Model a buggy driver that skips invalidations (the DMA check must catch it). */
  skipInvalidation: boolean;
  /**
   * Check every N-th unmapped buffer is no longer reachable (default 1: all). The check is a
   * DMA that faults on purpose, so it costs a host fault, its forwarding and the guest's event
   * handling (VM exits) that a driver's own work does not; the report counts it apart.
   */
  verifyEvery?: number;
  /**
   * A guest already running on the machine ({@link bootGuest}; the web view keeps one across
   * runs, as a VM does). Default: the run boots one, as a fresh VM would.
   */
  guest?: GuestKernel;
  /** Told once the guest's drivers are up and the devices attached, before the first operation. */
  started?: () => void;
  /** Progress callback (ops done, total). */
  progress?: (done: number, total: number) => void;
}

export const DEFAULT_WORKLOAD: WorkloadOptions = { ops: 256, batch: 16, pages: 1, injectError: true, skipInvalidation: false };

/** Counters of one path. */
export interface PathStats {
  commands: number;
  batches: number;
  exits: number;
  ioctls: number;
  /** Modelled time the path's invalidation batches took (submission to CMD_SYNC completion). */
  modelNs: number;
}

/** What the run produced. */
export interface WorkloadReport {
  dmesg: string[];
  devices: { host: string; sid: number; smmu: string }[];
  vcmdq: PathStats;
  smmuCmdq: PathStats;
  /** VM exits and direct accesses over the whole run. */
  exits: number;
  directAccesses: number;
  ioctls: Record<string, number>;
  dmaChecks: { passed: number; failed: number; staleHits: number };
  /** What the after-unmap checks cost on their own: checks made, VM exits and host faults they caused. */
  verification: { checks: number; exits: number; hostFaults: number };
  /** Wall-clock nanoseconds the model took for the run (for the real-time factor). */
  wallNs: number;
  errors: { cmdqvErrorsHandled: number; cmdqvIrqs: number; smmuCerrorsSkipped: number; smmuEvents: number; hostFaultsForwarded: number };
  hwQueues: { smmu: string; index: number; id: number | undefined }[];
  modelNs: number;
}

/** Run the workload on `m`. */
export function runWorkload(m: Machine, o: WorkloadOptions = DEFAULT_WORKLOAD): WorkloadReport {
  try {
    return run(m, o);
  } catch (e) {
    // Guarded by checkFits; a guest allocation failing anyway is still the user's sizes, not a crash.
    if (e instanceof GuestOutOfMemory) throw new WorkloadError(`the guest ran out of memory (${e.message}) with ${m.ramBytes / 2 ** 20} MiB of RAM`);
    throw e;
  }
}

/**
 * Refuse sizes the guest cannot hold, before anything runs: one pool of `batch` buffers (shared
 * by every device, used one device at a time) and, per device, the page tables of the IOVA
 * slots the run touches.
 * @throws WorkloadError naming the sizes, what they need and what the guest has
 */
function checkFits(o: WorkloadOptions, devices: number, free: number): void {
  const bufBytes = o.pages * PAGE;
  const poolBytes = Math.min(o.batch, o.ops) * bufBytes;
  const window = Math.min(o.ops, IOVA_SLOTS) * slotBytes(bufBytes);
  let tablePages = 0;
  for (const span of TABLE_SPANS) tablePages += Math.ceil(window / span) + 1;
  const need = poolBytes + devices * tablePages * PAGE;
  if (need > free) {
    const mib = (n: number) => Math.ceil(n / 2 ** 20);
    throw new WorkloadError(
      `batch ${o.batch} × pages ${o.pages}: the buffers and their page tables need ${mib(need)} MiB of guest memory, the guest has ${mib(free)} MiB free (lower batch or pages)`,
    );
  }
}

/**
 * Boot the guest's IOMMU drivers on `m` (what {@link runWorkload} does first unless it is given
 * a guest that is already running).
 * @throws WorkloadError when the guest's RAM cannot hold them
 */
export function bootGuest(m: Machine): GuestKernel {
  try {
    return new GuestKernel(m.guestPlatform(), m.acpi);
  } catch (e) {
    if (e instanceof GuestOutOfMemory) {
      throw new WorkloadError(`the guest cannot boot its IOMMU drivers in ${m.ramBytes / 2 ** 20} MiB of RAM (${e.message}); give it more RAM (-m)`);
    }
    throw e;
  }
}

function run(m: Machine, o: WorkloadOptions): WorkloadReport {
  const kernel = o.guest ?? bootGuest(m);
  const path = () => ({ commands: 0, batches: 0, exits: 0, ioctls: 0, modelNs: 0 });
  const rep: WorkloadReport = {
    dmesg: [...kernel.iommus.flatMap((i) => i.dmesg), ...kernel.failedProbes.flat()],
    devices: [],
    vcmdq: path(),
    smmuCmdq: path(),
    exits: 0,
    directAccesses: 0,
    ioctls: {},
    dmaChecks: { passed: 0, failed: 0, staleHits: 0 },
    verification: { checks: 0, exits: 0, hostFaults: 0 },
    wallNs: 0,
    errors: { cmdqvErrorsHandled: 0, cmdqvIrqs: 0, smmuCerrorsSkipped: 0, smmuEvents: 0, hostFaultsForwarded: 0 },
    hwQueues: [],
    modelNs: 0,
  };
  const stats = m.as.stats;
  const exits0 = stats.exits;
  const direct0 = stats.direct;
  const ioctl0 = m.host.stats.ioctls;
  const fwd0 = m.host.stats.eventsForwarded;
  const t0 = m.clock.now;
  const wall0 = process.hrtime.bigint();
  const every = Math.max(1, Math.floor(o.verifyEvery ?? 1));
  const doms: { d: IommuDomain; dev: DmaMaster }[] = [];
  for (const dev of dmaMasters(m, kernel)) {
    if (!kernel.iommuFor(dev.rid)) {
      // Its SMMU's probe failed in the guest (or it has none): the device takes no part.
      rep.dmesg.push(`${dev.name}: no IOMMU; not used`);
      continue;
    }
    const d = kernel.attachDevice(dev.rid);
    doms.push({ d, dev });
    rep.devices.push({ host: dev.name, sid: dev.rid, smmu: dev.smmu });
  }
  checkFits(o, doms.length, kernel.mem.free);
  o.started?.();
  const bufBytes = o.pages * PAGE;
  const slot = slotBytes(bufBytes);
  const total = o.ops * doms.length;
  let done = 0;
  const pool = Array.from({ length: Math.min(o.batch, o.ops) }, () => kernel.mem.alloc(bufBytes, PAGE));
  for (const { d, dev } of doms) {
    for (let op = 0; op < o.ops; op += o.batch) {
      const n = Math.min(o.batch, o.ops - op);
      const iovas: number[] = [];
      for (let k = 0; k < n; k++) {
        const iova = IOVA_BASE + ((op + k) % IOVA_SLOTS) * slot;
        d.map(iova, pool[k]!, bufBytes);
        iovas.push(iova);
        if (dev.landed(iova + 8, pool[k]! + 8, (op & 0xff) | ((k & 0xff) << 8))) rep.dmaChecks.passed++;
        else rep.dmaChecks.failed++;
      }
      // Unmap the batch: one invalidation batch, one CMD_SYNC.
      const before = snapshot(m, d);
      for (const iova of iovas) d.tables.unmap(iova, bufBytes);
      if (!o.skipInvalidation) d.invalidateBatch(iovas, bufBytes);
      account(m, d, before, rep);
      m.runMainLoop();
      const vExits = stats.exits;
      const vFaults = m.host.stats.eventsForwarded;
      for (let k = 0; k < iovas.length; k++) {
        if ((op + k) % every !== 0) continue;
        rep.verification.checks++;
        if (!dev.stale(iovas[k]! + 8, pool[k]! + 8)) rep.dmaChecks.passed++;
        else {
          rep.dmaChecks.failed++;
          rep.dmaChecks.staleHits++;
        }
      }
      // The faults the checks caused come back to the guest here (event queue, VM exits).
      m.runMainLoop();
      rep.verification.exits += stats.exits - vExits;
      rep.verification.hostFaults += m.host.stats.eventsForwarded - vFaults;
      done += n;
      o.progress?.(done, total);
    }
  }
  if (o.injectError) submitIllegalBatch(kernel);
  m.runMainLoop();
  for (const io of kernel.iommus) {
    rep.errors.cmdqvErrorsHandled += io.cmdqv?.stats.errorsHandled ?? 0;
    rep.errors.cmdqvIrqs += io.cmdqv?.stats.irqs ?? 0;
    rep.errors.smmuCerrorsSkipped += io.smmu.stats.cerrorsSkipped;
    rep.errors.smmuEvents += io.smmu.stats.events;
  }
  for (const s of m.smmus) {
    s.cmdqv?.hwQueue.forEach((id, index) => rep.hwQueues.push({ smmu: s.dev.props.id, index, id }));
  }
  rep.errors.hostFaultsForwarded = m.host.stats.eventsForwarded - fwd0;
  rep.exits = stats.exits - exits0;
  rep.directAccesses = stats.direct - direct0;
  rep.modelNs = m.clock.now - t0;
  rep.wallNs = Number(process.hrtime.bigint() - wall0);
  const ioctlsTotal = m.host.stats.ioctls - ioctl0;
  for (const b of m.backends.values()) for (const [name, n] of b.callCounts) rep.ioctls[name] = (rep.ioctls[name] ?? 0) + n;
  rep.ioctls.total = ioctlsTotal;
  return rep;
}

/**
 * The error-path demo: on VCMDQ0 of the first CMDQV the guest probed, a batch with a CFGI_STE
 * between two TLBIs. A CFGI_STE is not a guest VCMDQ command: the host stops the queue, the
 * VMM forwards the error, the guest's ISR skips the command and the queue resumes. Returns
 * whether the guest has a CMDQV to submit it on.
 */
function submitIllegalBatch(kernel: GuestKernel): boolean {
  const io = kernel.iommus.find((i) => i.cmdqv);
  io?.cmdqv!.submit([buildCommand(Op.TLBI_NH_ASID, { asid: 1 }), buildCommand(Op.CFGI_STE, { sid: 0 }), buildCommand(Op.TLBI_NH_ASID, { asid: 1 })]);
  return io !== undefined;
}

/** What {@link injectIllegalCommand} did. */
export interface InjectReport {
  /** Whether the guest had a CMDQV to submit the illegal batch on (false: nothing was injected). */
  readonly injected: boolean;
  /** Queue errors the guest's CMDQV driver handled (skipped and acknowledged), and its error interrupts. */
  readonly errorsHandled: number;
  readonly irqs: number;
}

/**
 * The error path on its own (the web view's "inject" button): on `guest` (default: a guest
 * booted for it, as {@link runWorkload} does) submit only the illegal batch; the main loop then
 * runs until idle.
 */
export function injectIllegalCommand(m: Machine, guest?: GuestKernel): InjectReport {
  const kernel = guest ?? bootGuest(m);
  const stats = kernel.iommus.find((i) => i.cmdqv)?.cmdqv?.stats;
  const handled0 = stats?.errorsHandled ?? 0;
  const irqs0 = stats?.irqs ?? 0;
  const injected = submitIllegalBatch(kernel);
  m.runMainLoop();
  return { injected, errorsHandled: (stats?.errorsHandled ?? 0) - handled0, irqs: (stats?.irqs ?? 0) - irqs0 };
}

function snapshot(m: Machine, d: IommuDomain) {
  return { exits: m.as.stats.exits, ioctls: m.host.stats.ioctls, v: d.router.stats.viaVcmdq, s: d.router.stats.viaSmmu, t: m.clock.now };
}

/** Attribute the exits/ioctls of one invalidation batch to the path it took. */
function account(m: Machine, d: IommuDomain, b: ReturnType<typeof snapshot>, rep: WorkloadReport): void {
  const dv = d.router.stats.viaVcmdq - b.v;
  const ds = d.router.stats.viaSmmu - b.s;
  const target = dv > 0 && ds === 0 ? rep.vcmdq : rep.smmuCmdq;
  target.commands += dv + ds;
  target.batches++;
  target.exits += m.as.stats.exits - b.exits;
  target.ioctls += m.host.stats.ioctls - b.ioctls;
  target.modelNs += m.clock.now - b.t;
}
