/**
 * The main job: boot the guest's IOMMU drivers on a machine, run a map / DMA / unmap workload
 * with invalidations on every passthrough device, inject one illegal VCMDQ command to exercise
 * the error path, and collect what happened on each path (commands, VM exits, ioctls, errors,
 * DMA checks).
 */

import { array, bad, bool, counts, finite, int, MAX_ID, optInt, record, str } from './snapshot/check.js';
import { SnapshotError } from './snapshot/errors.js';
import { buildCommand, Op } from '../arch/smmuv3/commands.js';
import { GuestKernel, type GuestKernelState } from '../guest/kernel.js';
import type { IommuDomain, IommuDomainState } from '../guest/iommu-domain.js';
import { GuestIommuTestdev, isIommuTestdev } from '../guest/iommu-testdev.js';
import { scanPci } from '../guest/pci.js';
import { GuestOutOfMemory } from '../guest/platform.js';
import { cloneState, type PlainValue } from '../kit/persist.js';
import type { Machine } from './machine.js';
import type { GuestSoftware } from './snapshot/state.js';

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

/** What identifies a DMA master across a save and restore (the guest found it by its PCI scan). */
type MasterInfo =
  | { readonly kind: 'testdev'; readonly name: string; readonly rid: number; readonly smmu: string; readonly bar0: number }
  | { readonly kind: 'vfio'; readonly name: string; readonly rid: number; readonly smmu: string; readonly hostIndex: number };

/**
 * The machine's DMA masters, as the guest finds them: its PCI scan through ECAM (as Linux
 * enumerates) gives each function's requester ID; an iommu-testdev is driven through its BAR0,
 * a passthrough function's DMA is made by the host device behind it (the VMM's vfio-pci whose
 * requester ID it is).
 */
function findMasters(m: Machine, kernel: GuestKernel): MasterInfo[] {
  const out: MasterInfo[] = [];
  for (const d of scanPci(kernel.platform.bus, m.acpi)) {
    if (d.bridge) continue;
    const rid = (d.bus << 8) | d.devfn;
    if (isIommuTestdev(d)) {
      const drv = GuestIommuTestdev.probe(kernel.platform.bus, d);
      const root = m.buses.find((b) => b.root === b.id && b.busNr <= d.bus && d.bus <= b.subordinate);
      const smmu = m.emulatedSmmus.find((e) => e.opts === undefined || e.opts.primaryBus === root?.id);
      out.push({ kind: 'testdev', name: `iommu-testdev ${d.bdf}`, rid, smmu: smmu?.id ?? 'none', bar0: drv.bar0 });
      continue;
    }
    const dev = m.devices.find((x) => x.host.guestSid === rid);
    if (!dev) continue; // a function cmdqv does not drive DMA for
    out.push({ kind: 'vfio', name: dev.opts.host, rid, smmu: dev.smmu.dev.props.id, hostIndex: dev.hostIndex });
  }
  return out;
}

/** The DMA master a {@link MasterInfo} names. */
function dmaMaster(m: Machine, kernel: GuestKernel, info: MasterInfo): DmaMaster {
  const { name, rid, smmu } = info;
  if (info.kind === 'testdev') {
    const drv = new GuestIommuTestdev(kernel.platform.bus, info.bar0);
    // The device writes its pattern through its IOMMU and checks it at pa (result 0 = landed).
    return { name, rid, smmu, landed: (iova, pa) => drv.dma(iova, pa, 4) === 0, stale: (iova, pa) => drv.dma(iova, pa, 4) === 0 };
  }
  const hostDev = m.host.devices[info.hostIndex]!;
  const pattern = new Uint8Array([0, 0, 0xc3, 0x5a]); // bytes 0-1: the tag of each check
  const got = new Uint8Array(4); // read back into, so a check allocates nothing
  return {
    name,
    rid,
    smmu,
    landed: (iova, pa, tag) => {
      pattern[0] = tag & 0xff;
      pattern[1] = (tag >> 8) & 0xff;
      if (!hostDev.dmaWriteOk(iova, pattern)) return false;
      m.readRam(pa, 4, got);
      return got[0] === pattern[0] && got[1] === pattern[1] && got[2] === pattern[2] && got[3] === pattern[3];
    },
    stale: (iova) => hostDev.dmaReadOk(iova, 4),
  };
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
  /** Progress callback (ops done, total). */
  progress?: (done: number, total: number) => void;
  /**
   * A guest already running on the machine ({@link bootGuest}; the web view keeps one across
   * runs, as a VM does). Default: the run boots one, as a fresh VM would.
   */
  guest?: GuestKernel;
  /** Told once the guest's drivers are up and the devices attached, before the first operation. */
  started?: () => void;
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
  return guestSized(m, () => WorkloadRun.start(m, o).finish());
}

/** Run `fn`, turning a guest allocation failure into the user's sizes (a WorkloadError). */
function guestSized<T>(m: Machine, fn: () => T): T {
  try {
    return fn();
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
 * Boot the guest's IOMMU drivers on `m` (what {@link WorkloadRun.start} does first unless it is
 * given a guest that is already running).
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

/** Most operations per device a resumed run may hold (a run of 2^32 batches never ends). */
const MAX_RESUMED_OPS = 2 ** 24;

/**
 * A saved run's own bookkeeping (the `guest` section is user input): options in the ranges a
 * run can have, a buffer pool of whole pages in guest RAM, the DMA masters the machine's own
 * (its passthrough functions by host device, requester ID and host index; its test devices),
 * the cursor inside the run, and counters of the report's shape.
 * @throws SnapshotError naming the value
 */
function checkRunState(m: Machine, s: WorkloadRunState): void {
  const st = record(s, 'guest', ['options', 'kernel', 'masters', 'domains', 'pool', 'report', 'cursor', 'done', 'counted']);
  const o = record(st.options, 'guest.options', ['ops', 'batch', 'pages', 'injectError', 'skipInvalidation'], ['verifyEvery']);
  const ops = int(o.ops, 'guest.options.ops', 1, MAX_RESUMED_OPS);
  const batch = int(o.batch, 'guest.options.batch', 1, MAX_RESUMED_OPS);
  const pages = int(o.pages, 'guest.options.pages', 1, 2 ** 18);
  bool(o.injectError, 'guest.options.injectError');
  bool(o.skipInvalidation, 'guest.options.skipInvalidation');
  optInt(o.verifyEvery, 'guest.options.verifyEvery', 1, MAX_RESUMED_OPS);
  const ram = m.guestPlatform();
  const bytes = pages * PAGE;
  const pool = array(st.pool, 'guest.pool', Math.min(batch, ops), true);
  pool.forEach((a, i) => {
    const at = int(a, `guest.pool[${i}]`, ram.ramBase, ram.ramBase + ram.ramSize - bytes);
    if (at % PAGE !== 0) bad(`guest.pool[${i}]`, `0x${at.toString(16)} is not page aligned`);
  });
  const masters = array(st.masters, 'guest.masters', 64);
  masters.forEach((x, i) => {
    const p = `guest.masters[${i}]`;
    const r = record(x, p, ['kind', 'name', 'rid', 'smmu'], ['hostIndex', 'bar0']);
    str(r.name, `${p}.name`, 128);
    str(r.smmu, `${p}.smmu`, 128);
    const rid = int(r.rid, `${p}.rid`, 0, 0xffff);
    if (r.kind === 'vfio') {
      const dev = m.devices.find((d) => d.opts.host === r.name);
      const hostIndex = int(r.hostIndex, `${p}.hostIndex`, 0, MAX_ID);
      if (!dev || dev.hostIndex !== hostIndex || dev.host.guestSid !== rid || dev.smmu.dev.props.id !== r.smmu) {
        bad(p, `(${String(r.name)}, RID 0x${rid.toString(16)}, host device index ${hostIndex}) is no passthrough device of this VM`);
      }
    } else if (r.kind === 'testdev') {
      int(r.bar0, `${p}.bar0`, 0, Number.MAX_SAFE_INTEGER);
      if (!m.emulatedSmmus.length) bad(p, 'is an iommu-testdev; the VM has no emulated SMMUv3');
    } else bad(`${p}.kind`, `is ${String(r.kind)}, not vfio or testdev`);
  });
  array(st.domains, 'guest.domains', masters.length, true);
  const cursor = record(st.cursor, 'guest.cursor', ['dom', 'op']);
  int(cursor.dom, 'guest.cursor.dom', 0, masters.length);
  int(cursor.op, 'guest.cursor.op', 0, ops);
  int(st.done, 'guest.done', 0, ops * masters.length);
  sameShape(st.report, reportShape(), 'guest.report');
  const c = record(st.counted, 'guest.counted', ['exits', 'direct', 'ioctls', 'forwarded', 'modelNs', 'wallNs', 'calls']);
  for (const k of ['exits', 'direct', 'ioctls', 'forwarded', 'modelNs', 'wallNs']) finite(c[k], `guest.counted.${k}`);
  counts(c.calls, 'guest.counted.calls');
}

/** An empty report: the shape a saved one must have. */
function reportShape(): WorkloadReport {
  const path = () => ({ commands: 0, batches: 0, exits: 0, ioctls: 0, modelNs: 0 });
  return {
    dmesg: [''], devices: [{ host: '', sid: 0, smmu: '' }], vcmdq: path(), smmuCmdq: path(), exits: 0, directAccesses: 0, ioctls: {},
    dmaChecks: { passed: 0, failed: 0, staleHits: 0 }, verification: { checks: 0, exits: 0, hostFaults: 0 }, wallNs: 0,
    errors: { cmdqvErrorsHandled: 0, cmdqvIrqs: 0, smmuCerrorsSkipped: 0, smmuEvents: 0, hostFaultsForwarded: 0 },
    hwQueues: [{ smmu: '', index: 0, id: 0 }], modelNs: 0,
  };
}

/**
 * `v` has the shape of `like`: the same record keys (a record with no keys in `like`: any keys,
 * number values), numbers finite, strings, arrays of at most 4096 elements shaped like `like`'s
 * first (an `id` may also be undefined).
 */
function sameShape(v: unknown, like: unknown, path: string): void {
  if (typeof like === 'number') finite(v, path);
  else if (typeof like === 'string') str(v, path);
  else if (Array.isArray(like)) array(v, path, 4096).forEach((x, i) => sameShape(x, like[0], `${path}[${i}]`));
  else {
    const keys = Object.keys(like as object);
    if (keys.length === 0) {
      counts(v, path);
      return;
    }
    const r = record(v, path, keys);
    for (const k of keys) {
      if (k === 'id' && r[k] === undefined) continue;
      sameShape(r[k], (like as Record<string, unknown>)[k], `${path}.${k}`);
    }
  }
}

/** The machine counters a report takes the difference of (machine-wide: rebased on a restore). */
interface Counters {
  exits: number;
  direct: number;
  ioctls: number;
  forwarded: number;
  modelNs: number;
  wallNs: number;
  /** Backend ioctls by name since the machine was created. */
  calls: Record<string, number>;
}

function readCounters(m: Machine): Counters {
  const calls: Record<string, number> = {};
  for (const b of m.backends.values()) for (const [name, n] of b.callCounts) calls[name] = (calls[name] ?? 0) + n;
  return { exits: m.as.stats.exits, direct: m.as.stats.direct, ioctls: m.host.stats.ioctls, forwarded: m.host.stats.eventsForwarded, modelNs: m.clock.now, wallNs: Number(process.hrtime.bigint()), calls };
}

/** What {@link WorkloadRun} saves into a machine image (the guest's CPU and kernel memory). */
export interface WorkloadRunState {
  readonly options: Omit<WorkloadOptions, 'progress'>;
  readonly kernel: GuestKernelState;
  readonly masters: readonly MasterInfo[];
  readonly domains: readonly IommuDomainState[];
  readonly pool: readonly number[];
  readonly report: WorkloadReport;
  /** Next device (index in `domains`) and its next op. */
  readonly cursor: { readonly dom: number; readonly op: number };
  readonly done: number;
  /** The counters' progress so far: what has been counted since the run started. */
  readonly counted: Counters;
}

/**
 * One run of the workload, resumable: {@link start} boots the guest's drivers and attaches the
 * devices; {@link runTo} runs whole invalidation batches up to an op count; {@link finish}
 * runs the rest, the error demo and the final accounting. The run is the machine's guest
 * software: `Machine.save()` keeps it in the image and {@link resume} continues it on the
 * restored machine, which ends with the report an uninterrupted run gives.
 */
export class WorkloadRun implements GuestSoftware {
  /** Where the run is: the device (index in `doms`) and its next op. */
  private dom: number;
  private op: number;
  private readonly every: number;
  private readonly bufBytes: number;
  private readonly slot: number;
  /** The current batch's IOVAs (one array for the whole run). */
  private readonly iovas: number[];
  /** Counters at the start of this machine's part of the run, and what earlier parts counted. */
  private base: Counters;
  private counted: Counters;

  private constructor(
    private readonly m: Machine,
    private readonly o: WorkloadOptions,
    readonly kernel: GuestKernel,
    private readonly masters: readonly MasterInfo[],
    private readonly doms: readonly { d: IommuDomain; dev: DmaMaster }[],
    private readonly pool: readonly number[],
    private readonly rep: WorkloadReport,
    cursor: { readonly dom: number; readonly op: number },
    private doneOps: number,
    counted: Counters,
  ) {
    this.dom = cursor.dom;
    this.op = cursor.op;
    this.every = Math.max(1, Math.floor(o.verifyEvery ?? 1));
    this.bufBytes = o.pages * PAGE;
    this.slot = slotBytes(this.bufBytes);
    this.iovas = new Array<number>(Math.min(o.batch, o.ops)).fill(0);
    this.base = readCounters(m);
    this.counted = counted;
    m.guestSoftware = this;
  }

  /** Boot the guest's IOMMU drivers on `m`, attach every DMA master and allocate the buffer pool. */
  static start(m: Machine, o: WorkloadOptions = DEFAULT_WORKLOAD): WorkloadRun {
    return guestSized(m, () => {
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
      // Counted from before the devices attach, as the report always has.
      const before = readCounters(m);
      // Ioctls by name are the VMM's since the machine was created (its creation included).
      const zero = { exits: 0, direct: 0, ioctls: 0, forwarded: 0, modelNs: 0, wallNs: 0, calls: { ...before.calls } };
      const masters: MasterInfo[] = [];
      const doms: { d: IommuDomain; dev: DmaMaster }[] = [];
      for (const info of findMasters(m, kernel)) {
        const dev = dmaMaster(m, kernel, info);
        if (!kernel.iommuFor(dev.rid)) {
          // Its SMMU's probe failed in the guest (or it has none): the device takes no part.
          rep.dmesg.push(`${dev.name}: no IOMMU; not used`);
          continue;
        }
        const d = kernel.attachDevice(dev.rid);
        masters.push(info);
        doms.push({ d, dev });
        rep.devices.push({ host: dev.name, sid: dev.rid, smmu: dev.smmu });
      }
      checkFits(o, doms.length, kernel.mem.free);
      o.started?.();
      const bufBytes = o.pages * PAGE;
      const pool = Array.from({ length: Math.min(o.batch, o.ops) }, () => kernel.mem.alloc(bufBytes, PAGE));
      const run = new WorkloadRun(m, o, kernel, masters, doms, pool, rep, { dom: 0, op: 0 }, 0, zero);
      run.base = before;
      return run;
    });
  }

  /**
   * Continue the run saved in the image `m` was restored from (`m.restoredGuest`): the guest
   * kernel and domains come back from their state, the counters go on from where they were.
   * `progress` is the caller's, as in {@link WorkloadOptions}.
   * @throws WorkloadError when the image holds no workload run
   */
  static resume(m: Machine, progress?: WorkloadOptions['progress']): WorkloadRun {
    const s = m.restoredGuest as WorkloadRunState | undefined;
    if (!s || typeof s !== 'object' || !('cursor' in s) || !('kernel' in s)) throw new WorkloadError('the image holds no workload run to finish (it was saved from a machine no workload was running on)');
    checkRunState(m, s);
    let kernel: GuestKernel;
    let doms: { d: IommuDomain; dev: DmaMaster }[];
    try {
      kernel = new GuestKernel(m.guestPlatform(), m.acpi, s.kernel);
      doms = s.masters.map((info, k) => ({ d: kernel.restoreDomain(info.rid, s.domains[k]!), dev: dmaMaster(m, kernel, info) }));
    } catch (e) {
      throw new SnapshotError(`snapshot section 'guest': the guest's driver state does not load: ${e instanceof Error ? e.message : String(e)}`);
    }
    const report = cloneState(s.report);
    return new WorkloadRun(m, { ...s.options, progress }, kernel, s.masters, doms, [...s.pool], report, { ...s.cursor }, s.done, cloneState(s.counted));
  }

  /** Operations done so far (over all devices). */
  get done(): number {
    return this.doneOps;
  }

  /** Operations the whole run makes. */
  get total(): number {
    return this.o.ops * this.doms.length;
  }

  /** Run whole invalidation batches until at least `ops` operations are done (or all are). */
  runTo(ops: number): void {
    guestSized(this.m, () => {
      while (this.doneOps < ops && this.dom < this.doms.length) this.batch();
    });
  }

  /** The guest software's state for `Machine.save()` (see {@link WorkloadRunState}). */
  saveGuest(): PlainValue {
    const state: WorkloadRunState = {
      options: { ops: this.o.ops, batch: this.o.batch, pages: this.o.pages, injectError: this.o.injectError, skipInvalidation: this.o.skipInvalidation, verifyEvery: this.o.verifyEvery },
      kernel: this.kernel.save(),
      masters: this.masters,
      domains: this.doms.map(({ d }) => d.save()),
      pool: this.pool,
      report: this.rep,
      cursor: { dom: this.dom, op: this.op },
      done: this.doneOps,
      counted: this.countedNow(),
    };
    return cloneState(state as unknown as PlainValue);
  }

  /** What has been counted since the run started: earlier parts plus this machine's so far. */
  private countedNow(): Counters {
    const now = readCounters(this.m);
    const c = this.counted;
    const b = this.base;
    const calls: Record<string, number> = { ...c.calls };
    for (const [name, n] of Object.entries(now.calls)) calls[name] = (calls[name] ?? 0) + n - (b.calls[name] ?? 0);
    return {
      exits: c.exits + now.exits - b.exits,
      direct: c.direct + now.direct - b.direct,
      ioctls: c.ioctls + now.ioctls - b.ioctls,
      forwarded: c.forwarded + now.forwarded - b.forwarded,
      modelNs: c.modelNs + now.modelNs - b.modelNs,
      wallNs: c.wallNs + now.wallNs - b.wallNs,
      calls,
    };
  }

  /** One invalidation batch of the current device: map, DMA, unmap, invalidate, check. */
  private batch(): void {
    const { m, o, rep, pool, every, bufBytes, slot } = this;
    const stats = m.as.stats;
    const { d, dev } = this.doms[this.dom]!;
    const op = this.op;
    {
      const n = Math.min(o.batch, o.ops - op);
      // The batch's IOVAs, in an array kept from batch to batch (nothing allocated per batch).
      const iovas = this.iovas;
      for (let k = 0; k < n; k++) {
        const iova = IOVA_BASE + ((op + k) % IOVA_SLOTS) * slot;
        d.map(iova, pool[k]!, bufBytes);
        iovas[k] = iova;
        if (dev.landed(iova + 8, pool[k]! + 8, (op & 0xff) | ((k & 0xff) << 8))) rep.dmaChecks.passed++;
        else rep.dmaChecks.failed++;
      }
      // Unmap the batch: one invalidation batch, one CMD_SYNC.
      const router = d.router.stats;
      const exits0 = stats.exits;
      const ioctls0 = m.host.stats.ioctls;
      const viaVcmdq0 = router.viaVcmdq;
      const viaSmmu0 = router.viaSmmu;
      const t0 = m.clock.now;
      for (let k = 0; k < n; k++) d.tables.unmap(iovas[k]!, bufBytes);
      if (!o.skipInvalidation) d.invalidateBatch(iovas, bufBytes, n);
      // Attribute the batch's exits and ioctls to the path it took.
      const dv = router.viaVcmdq - viaVcmdq0;
      const ds = router.viaSmmu - viaSmmu0;
      const target = dv > 0 && ds === 0 ? rep.vcmdq : rep.smmuCmdq;
      target.commands += dv + ds;
      target.batches++;
      target.exits += stats.exits - exits0;
      target.ioctls += m.host.stats.ioctls - ioctls0;
      target.modelNs += m.clock.now - t0;
      m.runMainLoop();
      const vExits = stats.exits;
      const vFaults = m.host.stats.eventsForwarded;
      for (let k = 0; k < n; k++) {
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
      this.doneOps += n;
      o.progress?.(this.doneOps, this.total);
    }
    this.op = op + o.batch;
    if (this.op >= o.ops) {
      this.dom++;
      this.op = 0;
    }
  }

  /** Run what is left, inject the error (if asked), and report. */
  finish(): WorkloadReport {
    const { m, o, rep, kernel } = this;
    this.runTo(this.total);
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
    const c = this.countedNow();
    rep.errors.hostFaultsForwarded = c.forwarded;
    rep.exits = c.exits;
    rep.directAccesses = c.direct;
    rep.modelNs = c.modelNs;
    rep.wallNs = c.wallNs;
    // Every ioctl the VMM made since the machine was created (creation included), by name.
    for (const [name, n] of Object.entries(c.calls)) rep.ioctls[name] = n;
    rep.ioctls.total = c.ioctls;
    if (m.guestSoftware === this) m.guestSoftware = undefined;
    return rep;
  }
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

/**
 * The guest between workload runs (its IOMMU drivers probed, no run in progress) as the
 * machine's guest software, so that `Machine.save()` keeps its kernel: the web view saves the VM
 * between runs. {@link resumeIdleGuest} takes it back on the restored machine.
 */
export function idleGuest(kernel: GuestKernel): GuestSoftware {
  return { saveGuest: () => cloneState({ idleKernel: kernel.save() } as unknown as PlainValue) };
}

/**
 * The kernel an {@link idleGuest} saved, on the machine restored from its image (undefined: the
 * image's guest had not booted its drivers yet).
 * @throws SnapshotError when the image's guest state is not an idle guest's or does not load
 */
export function resumeIdleGuest(m: Machine): GuestKernel | undefined {
  const s = m.restoredGuest;
  if (s === undefined || s === null) return undefined;
  if (typeof s !== 'object' || !('idleKernel' in s)) throw new SnapshotError("snapshot section 'guest': not a guest between workload runs");
  try {
    return new GuestKernel(m.guestPlatform(), m.acpi, s.idleKernel as unknown as GuestKernelState);
  } catch (e) {
    throw new SnapshotError(`snapshot section 'guest': the guest's driver state does not load: ${e instanceof Error ? e.message : String(e)}`);
  }
}
