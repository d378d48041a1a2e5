/**
 * The machine behind the web view: one {@link Machine} built from `cmdqv serve`'s options (the
 * same as `cmdqv run`'s), the actions the page's buttons take on it (run a workload, inject an
 * illegal command, reset), and its state as the page shows it (seam counters, the VCMDQ table,
 * registers decoded from their tables, recent errors). The `--compare` table and the timeline's
 * two traces run on fresh machines, as `cmdqv run --compare` and `--trace-out` do.
 */

import { lvcmdqPage0Offset, lvcmdqPage1Offset, VCMDQ_BASE, VCMDQ_CONS, VCMDQ_GERROR, VCMDQ_GERRORN, VCMDQ_PROD, VCMDQ_STATUS } from '../arch/tegra241-cmdqv/registers.js';
import { ChromeTraceWriter } from '../kit/trace.js';
import { compareTable, lineFor, runCompare } from '../platform/compare.js';
import type { CostModel } from '../platform/cost-model.js';
import type { FaultSpec } from '../platform/fault-injection.js';
import { Machine, SnapshotError } from '../platform/machine.js';
import { bootGuest, idleGuest, injectIllegalCommand, resumeIdleGuest, runWorkload, WorkloadError, type GuestKernel, type WorkloadOptions } from '../platform/workload.js';
import type { CompareTable, InjectSummary, MachineState, RegisterBlock, SnapshotInfo, SnapshotSaved, RegisterReadout, RunRequest, RunSummary, SeamCounters, TimelinePath, VcmdqRow } from './api.js';
import { decodeFields, hex, inspectorBlocks, type InspectorBlock } from './registers.js';

/** What the session is built from: `cmdqv run`'s options (its `RunOptions` fits). */
export interface SessionOptions {
  readonly qemu: readonly string[];
  readonly ops: number;
  readonly batch: number;
  readonly pages: number;
  readonly verifyEvery: number;
  readonly skipInvalidation: boolean;
  readonly costModel: CostModel;
  readonly inject: readonly FaultSpec[];
  /** Events each timeline trace records at most (the page draws them all). */
  readonly traceLimit: number;
}

/** One path's trace for the timeline: the JSON and when the workload's operations ran in it (after the boot and the guest's probe). */
export interface TimelineTrace {
  readonly json: string;
  readonly workloadNs: readonly [number, number];
}

/** A request the page made that cannot be served as asked (HTTP 4xx; the message says why). */
export class RequestError extends Error {
  constructor(
    message: string,
    readonly status = 400,
  ) {
    super(message);
    this.name = 'RequestError';
  }
}

/** Largest workload the page may ask for (as `cmdqv run --ops/--batch`). */
export const MAX_OPS = 1_000_000;
export const MAX_BATCH = 4096;
/** Snapshots the session keeps (the oldest goes first): an image holds the VM's guest RAM that has data. */
export const MAX_SNAPSHOTS = 4;
/** Bytes of images the session keeps at most (past it the oldest go; the newest is always kept). */
export const MAX_SNAPSHOT_BYTES = 256 * 2 ** 20;
/** Error lines the page keeps. */
const EVENT_LINES = 200;
/**
 * Trace events enabled on the session's machine so the page can show the error path: the
 * silicon stopping a queue, the VMM receiving the error map, the host driver's CMDQ error.
 */
const ERROR_TRACE = ['tegra241_cmdqv_hw_queue_error', 'tegra241_cmdqv_err_map', 'smmuv3_host_cmdq_error'];

/** The web view's machine and its actions. */
export class Session {
  private m: Machine;
  /** The guest's drivers, once booted (undefined: not yet, or reset since). */
  private guest: GuestKernel | undefined;
  /** Counter values at creation or the last reset (the page shows counts since then). */
  private base: SeamCounters;
  private readonly events: string[] = [];
  /** How many VMM error reports were already taken from each SMMU. */
  private readonly seenErrors = new Map<string, number>();
  private unsubscribeLog: () => void = () => {};
  private runs = 0;
  private injections = 0;
  private readonly traces = new Map<string, TimelineTrace>();
  private readonly compares = new Map<string, CompareTable>();
  private blocks: InspectorBlock[];
  /** Saved VMs, oldest first, with what the page showed when each was saved. */
  private readonly snapshots: { info: SnapshotInfo; image: Uint8Array; counters: SeamCounters }[] = [];
  private nextSnapshot = 1;
  /** Told after every change of the machine's state (server-sent `state` events). */
  onChange: ((state: MachineState) => void) | undefined;

  /**
   * Build the machine.
   * @throws OptionError for a bad QEMU line (QEMU's text)
   */
  constructor(readonly options: SessionOptions) {
    this.m = this.boot();
    this.base = this.rawCounters();
    this.blocks = this.makeBlocks();
  }

  /** The machine (tests and the lead's snapshot wiring reach it here). */
  get machine(): Machine {
    return this.m;
  }

  private boot(): Machine {
    const qemu = [...this.options.qemu];
    for (const t of ERROR_TRACE) qemu.push('-trace', t);
    return this.adopt(Machine.create(qemu, { inject: this.options.inject, costModel: this.options.costModel }));
  }

  /** Make `m` the page's machine: its error log and trace lines go to the event list. */
  private adopt(m: Machine): Machine {
    // The page takes the text lines; the in-memory Perfetto records would only grow.
    m.tracer.removeSink(m.traceChrome);
    this.unsubscribeLog();
    this.unsubscribeLog = m.log.subscribe((e) => this.event(`${e.time}ns ${e.kind} ${e.source}: ${e.message}`));
    for (const w of m.placementWarnings) this.event(`qemu-system-aarch64: ${w}`);
    return m;
  }

  private makeBlocks(): InspectorBlock[] {
    return inspectorBlocks(this.m.smmus.map((s) => ({ id: s.dev.props.id, base: s.base, cmdqvBase: s.cmdqvBase, vcmdqs: s.cmdqv?.hwQueue.length ?? 0 })));
  }

  private event(line: string): void {
    this.events.push(line);
    if (this.events.length > EVENT_LINES) this.events.splice(0, this.events.length - EVENT_LINES);
  }

  /** Move the machine's new trace lines and VMM error reports into the event list; returns them. */
  private harvest(): string[] {
    const out: string[] = [];
    const lines = this.m.traceText.lines;
    out.push(...lines);
    lines.length = 0;
    for (const s of this.m.smmus) {
      const reports = [...s.dev.hostErrors, ...(s.cmdqv?.errors ?? [])];
      const id = s.dev.props.id;
      const seen = this.seenErrors.get(id) ?? 0;
      for (const r of reports.slice(seen)) out.push(`qemu-system-aarch64: ${r}`);
      this.seenErrors.set(id, reports.length);
    }
    for (const l of out) this.event(l);
    return out;
  }

  private rawCounters(): SeamCounters {
    const m = this.m;
    let all = 0;
    let vcmdq = 0;
    let translations = 0;
    // The host SMMU's command engine consumes both its own queue and the VCMDQs: its count
    // less the CMDQV's is what the SMMU's own queue consumed.
    for (const u of m.host.smmus.values()) {
      all += u.hw.stats.commands;
      vcmdq += u.cmdqvHw?.stats.commands ?? 0;
      translations += u.hw.stats.translations;
    }
    let invalidate = 0;
    for (const b of m.backends.values()) invalidate += b.callCounts.get('IOMMU_HWPT_INVALIDATE') ?? 0;
    return {
      vmExits: m.as.stats.exits,
      directAccesses: m.as.stats.direct,
      ioctls: m.host.stats.ioctls,
      invalidateIoctls: invalidate,
      hostCmdqCommands: all - vcmdq,
      vcmdqCommands: vcmdq,
      translations,
      modelNs: m.clock.now,
    };
  }

  /** Seam counters since creation or the last reset. */
  counters(): SeamCounters {
    return counterDifference(this.rawCounters(), this.base);
  }

  /**
   * A register as a debugger reads it (QEMU's monitor `xp`): straight from the region's
   * handler, so it is no guest access — no VM exit counted, no modelled time charged.
   */
  private peek(addr: number, width: 32 | 64): bigint {
    const hit = this.m.as.resolve(addr);
    const ops = hit?.region.ops;
    if (!hit || !ops) return 0n;
    return width === 64 ? ops.read64(hit.offset) : BigInt(ops.read(hit.offset, 4) >>> 0);
  }

  /** Every guest VCMDQ (VINTF0's logical queues) of every CMDQV. */
  vcmdqs(): VcmdqRow[] {
    const rows: VcmdqRow[] = [];
    for (const s of this.m.smmus) {
      if (s.cmdqv === undefined || s.cmdqvBase === undefined) continue;
      for (let q = 0; q < s.cmdqv.hwQueue.length; q++) rows.push(this.vcmdqRow(s.dev.props.id, s.cmdqvBase, q, s.cmdqv.hwQueue[q]));
    }
    return rows;
  }

  private vcmdqRow(smmu: string, cmdqvBase: number, q: number, hwQueueId: number | undefined): VcmdqRow {
    const p0 = cmdqvBase + lvcmdqPage0Offset(0, q);
    const rd = (off: number) => Number(this.peek(p0 + off, 32));
    const cons = rd(VCMDQ_CONS.spec.offset);
    const prod = rd(VCMDQ_PROD.spec.offset);
    const status = rd(VCMDQ_STATUS.spec.offset);
    const outstanding = rd(VCMDQ_GERROR.spec.offset) ^ rd(VCMDQ_GERRORN.spec.offset);
    const log2 = Number(VCMDQ_BASE.f.LOG2SIZE.getBig(this.peek(cmdqvBase + lvcmdqPage1Offset(0, q) + VCMDQ_BASE.spec.offset, 64)));
    // Indexes carry a wrap bit above the index: occupancy is their difference modulo 2^(log2 + 1).
    const mask = 2 ** (log2 + 1) - 1;
    const p = VCMDQ_PROD.f.WR.get(prod) & mask;
    const c = VCMDQ_CONS.f.RD.get(cons) & mask;
    return {
      smmu,
      lvcmdq: q,
      hwQueueId,
      enabled: VCMDQ_STATUS.f.CMDQ_EN_OK.get(status) === 1,
      prod: p,
      cons: c,
      entries: 2 ** log2,
      occupancy: (p - c + mask + 1) & mask,
      consErr: VCMDQ_CONS.f.ERR.get(cons),
      errors: Object.entries(VCMDQ_GERROR.f).filter(([, f]) => f.get(outstanding)).map(([name]) => name),
    };
  }

  /** The page's whole state (new trace lines and error reports move into its event list first). */
  state(): MachineState {
    this.harvest();
    return {
      qemu: this.options.qemu,
      defaults: { ops: this.options.ops, batch: this.options.batch },
      smmus: this.m.smmus.map((s) => ({ id: s.dev.props.id, base: s.base, cmdqvBase: s.cmdqvBase })),
      counters: this.counters(),
      vcmdqs: this.vcmdqs(),
      events: [...this.events],
      runs: this.runs,
      injections: this.injections,
    };
  }

  private changed(): MachineState {
    const s = this.state();
    this.onChange?.(s);
    return s;
  }

  /**
   * The guest running on the machine: booted at the first action and kept, as a VM keeps its
   * drivers (each run attaches the devices to new domains; the drivers probe once).
   * @throws RequestError when the guest cannot boot
   */
  private running(): GuestKernel {
    try {
      this.guest ??= bootGuest(this.m);
    } catch (e) {
      if (e instanceof WorkloadError) throw new RequestError(`workload: ${e.message}`);
      throw e;
    }
    return this.guest;
  }

  /** Check a page's workload request. */
  static request(ops: unknown, batch: unknown): RunRequest {
    const int = (v: unknown, name: string, max: number) => {
      // Query strings: decimal digits only (no 0x, exponents or blanks, as cmdqv run's options).
      const n = typeof v === 'string' ? (/^\d{1,16}$/.test(v) ? Number(v) : NaN) : v;
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > max) throw new RequestError(`${name} must be an integer in 1..${max}, got ${JSON.stringify(v)}`);
      return n;
    };
    return { ops: int(ops, 'ops', MAX_OPS), batch: int(batch, 'batch', MAX_BATCH) };
  }

  private workload(req: RunRequest): WorkloadOptions {
    const o = this.options;
    return { ops: req.ops, batch: req.batch, pages: o.pages, injectError: false, skipInvalidation: o.skipInvalidation, verifyEvery: o.verifyEvery };
  }

  /** Run the guest workload on the machine's running guest. */
  run(req: RunRequest): RunSummary {
    let rep;
    try {
      rep = runWorkload(this.m, { ...this.workload(req), guest: this.running() });
    } catch (e) {
      if (e instanceof WorkloadError) throw new RequestError(`workload: ${e.message}`);
      throw e;
    }
    this.runs++;
    return {
      ops: req.ops,
      batch: req.batch,
      vcmdq: rep.vcmdq,
      smmuCmdq: rep.smmuCmdq,
      exits: rep.exits,
      directAccesses: rep.directAccesses,
      dmaPassed: rep.dmaChecks.passed,
      dmaFailed: rep.dmaChecks.failed,
      modelNs: rep.modelNs,
      wallMs: rep.wallNs / 1e6,
      state: this.changed(),
    };
  }

  /** Inject one illegal command on a VCMDQ; report the error as each layer saw it and the recovery. */
  inject(): InjectSummary {
    const guest = this.running();
    // What came before (e.g. the guest's boot) goes to the event list, not to the injection's error.
    this.harvest();
    const r = injectIllegalCommand(this.m, guest);
    const error = this.harvest();
    this.injections++;
    const queue = this.vcmdqs()[0];
    const recovery: string[] = [];
    if (!r.injected) error.push('this machine has no CMDQV: there is no VCMDQ to inject on (give an arm-smmuv3 with cmdqv=on)');
    else {
      recovery.push(`guest tegra241-cmdqv ISR: ${r.irqs} error interrupt(s), ${r.errorsHandled} queue error(s) handled (the bad command replaced by CMD_SYNC, GERRORN acknowledged)`);
      if (queue) {
        recovery.push(
          `${queue.smmu} VCMDQ${queue.lvcmdq}: ${queue.enabled ? 'enabled' : 'DISABLED'}, PROD 0x${queue.prod.toString(16)} CONS 0x${queue.cons.toString(16)} ` +
            `(${queue.occupancy === 0 ? 'the commands after the bad one consumed' : `${queue.occupancy} waiting`}), ` +
            `${queue.errors.length === 0 ? 'no error outstanding' : `outstanding: ${queue.errors.join('|')}`}; CONS.ERR keeps the last code (${queue.consErr})`,
        );
      }
    }
    return { injected: r.injected, error, recovery, queue, state: this.changed() };
  }

  /** System reset (QEMU's system_reset) and reboot; counters count from here. */
  reset(): MachineState {
    this.m.reset();
    // The machine reboots: the firmware assigns the PCI resources again, and the guest's
    // drivers probe again at the next action.
    this.m.runFirmware();
    this.guest = undefined;
    this.harvest();
    this.base = this.rawCounters();
    this.runs = 0;
    this.injections = 0;
    this.events.length = 0;
    this.event(`${this.m.clock.now}ns system reset`);
    return this.changed();
  }

  /** The saved snapshots, oldest first. */
  snapshotList(): SnapshotInfo[] {
    return this.snapshots.map((s) => s.info);
  }

  /**
   * Save the whole VM (`Machine.save()`) between two actions, with the guest's drivers if they
   * are booted; the session keeps the latest {@link MAX_SNAPSHOTS}.
   */
  saveSnapshot(): SnapshotSaved {
    const m = this.m;
    if (this.guest) m.guestSoftware = idleGuest(this.guest);
    let image: Uint8Array;
    try {
      image = m.save();
    } catch (e) {
      if (e instanceof SnapshotError) throw new RequestError(`save: ${e.message}`, 409);
      throw e;
    } finally {
      m.guestSoftware = undefined;
    }
    const counters = this.counters();
    const info: SnapshotInfo = { id: this.nextSnapshot++, bytes: image.length, modelNs: m.clock.now, runs: this.runs, injections: this.injections, guestBooted: this.guest !== undefined };
    this.snapshots.push({ info, image, counters });
    let bytes = 0;
    for (const x of this.snapshots) bytes += x.image.length;
    while (this.snapshots.length > 1 && (this.snapshots.length > MAX_SNAPSHOTS || bytes > MAX_SNAPSHOT_BYTES)) bytes -= this.snapshots.shift()!.image.length;
    this.event(`${m.clock.now}ns snapshot ${info.id} saved (${info.bytes} bytes)`);
    return { saved: info, snapshots: this.snapshotList(), state: this.changed() };
  }

  private snapshotById(idText: unknown): { info: SnapshotInfo; image: Uint8Array; counters: SeamCounters } {
    const id = typeof idText === 'number' ? idText : typeof idText === 'string' && /^\d{1,9}$/.test(idText) ? Number(idText) : NaN;
    if (!Number.isSafeInteger(id) || id < 1) throw new RequestError(`id must be a snapshot id (an integer from 1), got ${JSON.stringify(idText)?.slice(0, 40)}`);
    const s = this.snapshots.find((x) => x.info.id === id);
    if (!s) throw new RequestError(`no snapshot ${id} (GET /api/snapshots lists them; the session keeps the latest ${MAX_SNAPSHOTS}, ${MAX_SNAPSHOT_BYTES / 2 ** 20} MiB of images at most)`, 404);
    return s;
  }

  /** The image of snapshot `id`, as `cmdqv run --restore FILE` reads a file. */
  snapshotImage(id: unknown): { info: SnapshotInfo; image: Uint8Array } {
    return this.snapshotById(id);
  }

  /**
   * Re-create the VM of snapshot `id` on a fresh host (`cmdqv run --restore`) and make it the
   * session's machine: its guest drivers come back from the image, and the counters, runs and
   * injections go on from what the page showed when it was saved.
   */
  restoreSnapshot(id: unknown): MachineState {
    const s = this.snapshotById(id);
    let m: Machine;
    let guest: GuestKernel | undefined;
    try {
      m = Machine.restore(s.image, { create: { costModel: this.options.costModel } });
    } catch (e) {
      if (e instanceof SnapshotError) throw new RequestError(`snapshot ${s.info.id}: ${e.message}`, 500);
      throw e;
    }
    try {
      guest = resumeIdleGuest(m);
    } catch (e) {
      m.close();
      if (e instanceof SnapshotError) throw new RequestError(`snapshot ${s.info.id}: ${e.message}`, 500);
      throw e;
    }
    const old = this.m;
    this.m = this.adopt(m);
    old.close();
    this.guest = guest;
    // The restored VMM's error reports and the restore's own trace lines were seen when saved.
    m.traceText.lines.length = 0;
    for (const u of m.smmus) this.seenErrors.set(u.dev.props.id, u.dev.hostErrors.length + (u.cmdqv?.errors.length ?? 0));
    // Counted on from the values shown at the save.
    this.base = counterDifference(this.rawCounters(), s.counters);
    this.runs = s.info.runs;
    this.injections = s.info.injections;
    this.blocks = this.makeBlocks();
    this.event(`${m.clock.now}ns snapshot ${s.info.id} restored on a fresh host`);
    return this.changed();
  }

  /** The three paths side by side on fresh machines (`cmdqv run --compare`). */
  compare(req: RunRequest): CompareTable {
    const key = `${req.ops}/${req.batch}`;
    let t = this.compares.get(key);
    if (!t) {
      const cols = runCompare(this.options.qemu, this.workload(req), this.options.costModel);
      const [head, ...rows] = compareTable(cols);
      t = { head: head!, rows, lines: cols.map((c) => `${c.path}: ${c.line.join(' ')}`) };
      this.compares.set(key, t);
    }
    return t;
  }

  /**
   * The Perfetto trace `cmdqv run --trace-out` writes, for the workload on one path's machine
   * (`trapped`: the accelerated SMMUv3 with cmdqv=off; `cmdqv`: with cmdqv=on).
   */
  trace(path: TimelinePath, req: RunRequest): TimelineTrace {
    const key = `${path}/${req.ops}/${req.batch}`;
    const cached = this.traces.get(key);
    if (cached !== undefined) return cached;
    const chunks: string[] = [];
    const writer = new ChromeTraceWriter((c) => chunks.push(c), this.options.traceLimit);
    const m = Machine.create(lineFor(this.options.qemu, path), { costModel: this.options.costModel, trace: writer });
    let start: number;
    let end: number;
    try {
      m.tracer.removeSink(m.traceChrome);
      start = m.clock.now;
      runWorkload(m, { ...this.workload(req), started: () => (start = m.clock.now) });
      end = m.clock.now;
      writer.close(end);
    } catch (e) {
      if (e instanceof WorkloadError) throw new RequestError(`workload: ${e.message}`);
      throw e;
    } finally {
      m.close();
    }
    const t = { json: chunks.join(''), workloadNs: [start, end] as const };
    // Keep the latest few: a trace can be megabytes.
    if (this.traces.size >= 4) this.traces.delete(this.traces.keys().next().value!);
    this.traces.set(key, t);
    return t;
  }

  /** The inspector's register blocks. */
  registerBlocks(): RegisterBlock[] {
    return this.blocks.map(({ id, title, base, registers }) => ({ id, title, base, registers }));
  }

  /** Read register `name` of block `blockId` and decode it by its table. */
  readRegister(blockId: string, name: string): RegisterReadout {
    const b = this.blocks.find((x) => x.id === blockId);
    if (!b) throw new RequestError(`no register block '${blockId}' (GET /api/registers lists them)`, 404);
    const info = b.layout.registers.find((r) => r.name === name);
    if (!info) throw new RequestError(`block '${blockId}' has no register '${name}'`, 404);
    const addr = b.base + info.offset;
    const value = this.peek(addr, info.width);
    return {
      block: b.id,
      name: info.name,
      address: hex(addr),
      width: info.width,
      value: hex(value),
      access: info.def.spec.access ?? 'RW',
      fields: decodeFields(info, value),
    };
  }

  /**
   * Read the register at `offset` (a decimal or 0x-hex byte offset into block `blockId`) of
   * `width` bits: a register the block's table declares there is decoded as {@link readRegister}
   * does; any other offset is answered as unmapped (404), never read.
   */
  readRegisterAt(blockId: string, offsetText: string, widthText: string): RegisterReadout {
    const b = this.blocks.find((x) => x.id === blockId);
    if (!b) throw new RequestError(`no register block '${blockId.slice(0, 80)}' (GET /api/registers lists them)`, 404);
    if (widthText !== '32' && widthText !== '64') throw new RequestError(`width must be 32 or 64, got '${widthText.slice(0, 20)}'`);
    const width = Number(widthText);
    const offset = /^(0x[0-9a-f]{1,8}|\d{1,10})$/i.test(offsetText) ? Number(offsetText) : NaN;
    if (!(offset <= 0xffff_ffff)) throw new RequestError(`offset must be a byte offset 0..0xffffffff (decimal or 0x hex), got '${offsetText.slice(0, 20)}'`);
    if (offset % (width / 8) !== 0) throw new RequestError(`offset 0x${offset.toString(16)} is not aligned to ${width / 8} bytes`);
    const info = b.layout.registers.find((r) => r.offset === offset && r.width === width);
    if (!info) throw new RequestError(`block '${blockId}' has no ${width}-bit register at offset 0x${offset.toString(16)} (unmapped)`, 404);
    return this.readRegister(blockId, info.name);
  }

  /** End the machine (the server's shutdown). */
  close(): void {
    this.unsubscribeLog();
    this.m.close();
  }
}

/** `a − b`, counter by counter. */
function counterDifference(a: SeamCounters, b: SeamCounters): SeamCounters {
  return {
    vmExits: a.vmExits - b.vmExits,
    directAccesses: a.directAccesses - b.directAccesses,
    ioctls: a.ioctls - b.ioctls,
    invalidateIoctls: a.invalidateIoctls - b.invalidateIoctls,
    hostCmdqCommands: a.hostCmdqCommands - b.hostCmdqCommands,
    vcmdqCommands: a.vcmdqCommands - b.vcmdqCommands,
    translations: a.translations - b.translations,
    modelNs: a.modelNs - b.modelNs,
  };
}
