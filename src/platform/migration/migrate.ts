/**
 * Live migration of a running CMDQV VM between two simulated hosts, modelled on QEMU's
 * precopy (docs/reference/live-migration.md §2; docs/design.md "Live migration"):
 *
 * 1. Setup: start the dirty log of guest RAM.
 * 2. Pre-copy rounds: round 1 sends every touched page, each later round the pages written
 *    during the previous one; the guest keeps running while a round's pages cross the link
 *    (for as much modelled time as the copy takes). The rounds end when the pages left would
 *    cross within the downtime limit (QEMU's `downtime-limit` test), or after `maxRounds`.
 * 3. Stop-and-copy: the guest is paused; the VMM waits for every running command queue to
 *    drain (quiesce.ts, bounded); the remaining dirty pages and the device state (`save({ ram:
 *    false })`) cross; the destination re-creates the VM through the uAPI (`Machine.restore`)
 *    with the received RAM; the VM resumes there and the source is closed.
 *
 * Any failure before the switch — a VCMDQ in error, a queue that does not drain, a destination
 * that refuses (no free VINTF: ENOSPC; a device in use: EBUSY) — ends the migration with its
 * reason; the source was only read, so it simply resumes.
 *
 * Time: the migration keeps its own modelled time. The guest's clock moves only while the guest
 * runs (the rounds); during the pause it stands still, as QEMU keeps a stopped VM's virtual
 * counter still (docs/reference/live-migration.md §4), so the destination resumes at the
 * instant the source paused.
 */

import { DIRTY_PAGE_SIZE, SparseMemory } from '../../kit/sparse-memory.js';
import type { HostConfig } from '../../host/config.js';
import { DEFAULT_COST_MODEL, type CostModel } from '../cost-model.js';
import { HostKernel, Machine, VIRT_RAM_BASE } from '../machine.js';
import * as T from './trace-events.js';
import { GuestDirtyLog } from './guest-dirty-log.js';
import { hostObjects, type SmmuHostObjects } from './host-objects.js';
import { IDLE_GUEST } from './guests.js';
import { quiesceQueues, type QueueDrain } from './quiesce.js';

/** The guest's activity while it migrates. */
export interface MigrationGuest {
  /** Let the guest run on `m` for `ns` of modelled time (or until it has nothing left to do). */
  runFor(m: Machine, ns: number): void;
}

/** Options of {@link migrate}. */
export interface MigrateOptions {
  /** The destination host, or a description of a new one. */
  readonly dest: HostKernel | HostConfig;
  /** What the guest does during the pre-copy rounds (default: idle). */
  readonly guest?: MigrationGuest;
  /** Stop pre-copying when the pages left would cross within this (QEMU's downtime-limit, default 300 ms). */
  readonly downtimeLimitNs?: number;
  /** Go to stop-and-copy after this many rounds even if not converged (default 30). */
  readonly maxRounds?: number;
  /** Bound of the queue drain wait (default 10 ms). */
  readonly drainTimeoutNs?: number;
  /** Pause between two drain polls (default 1 µs). */
  readonly drainPollNs?: number;
  readonly costModel?: CostModel;
}

/** QEMU's default `downtime-limit`: 300 ms. */
export const DEFAULT_DOWNTIME_LIMIT_NS = 300_000_000;
export const DEFAULT_MAX_ROUNDS = 30;
export const DEFAULT_DRAIN_TIMEOUT_NS = 10_000_000;
export const DEFAULT_DRAIN_POLL_NS = 1_000;

/** One pre-copy round. */
export interface PrecopyRound {
  readonly round: number;
  /** Pages sent in this round. */
  readonly pages: number;
  /** Modelled time the round took (its dirty-log sync and its pages on the link). */
  readonly ns: number;
  /** Pages the guest wrote meanwhile (what the next round, or the stop-and-copy, sends). */
  readonly dirtied: number;
}

/** A re-created object: before (source host) and after (destination host). */
export interface Recreated<T> {
  readonly old: T;
  readonly new: T;
}

/** What one accelerated SMMU's host objects became on the destination. */
export interface RecreatedSmmu {
  readonly smmu: string;
  readonly viommuId: Recreated<number>;
  readonly vintf: Recreated<number | undefined>;
  readonly vmid: Recreated<number | undefined>;
  readonly hwQueues: readonly { readonly lvcmdq: number; readonly id: Recreated<number | undefined>; readonly vcmdq: Recreated<number | undefined> }[];
  readonly vdevices: readonly { readonly virtId: number; readonly id: Recreated<number | undefined> }[];
}

/** The parts of the downtime (modelled ns). */
export interface Downtime {
  /** The drain wait of the command queues. */
  readonly quiesceNs: number;
  /** The last dirty pages on the link. */
  readonly ramNs: number;
  /** The device state on the link. */
  readonly deviceStateNs: number;
  /** The destination's uAPI calls re-creating the VM (ioctls × ioctlNs). */
  readonly recreateNs: number;
  /** Stop, handshake, start. */
  readonly switchoverNs: number;
  readonly totalNs: number;
}

/** What a migration did. */
export interface MigrationReport {
  readonly rounds: readonly PrecopyRound[];
  /** Whether the rounds met the downtime limit (false: stopped by maxRounds). */
  readonly converged: boolean;
  /** Pages sent in the stop-and-copy phase. */
  readonly finalPages: number;
  /** Bytes of device state sent. */
  readonly deviceStateBytes: number;
  /** Pages sent in all (rounds + final). */
  readonly totalPages: number;
  /** Touched pages round 1 found all zero and left out (the destination's RAM starts zeroed). */
  readonly zeroPagesSkipped: number;
  /** Queues as the drain wait last saw them. */
  readonly queues: readonly QueueDrain[];
  /**
   * How long the guest was paused: the switch's downtime, or, when the migration failed after the
   * rounds, the pause before the source resumed (no switchover). Undefined when nothing paused.
   */
  readonly downtime: Downtime | undefined;
  /** Modelled time from the start to the switch (or the failure). */
  readonly totalNs: number;
  /** The destination's ioctls re-creating the VM. */
  readonly recreateIoctls: number;
  readonly recreated: readonly RecreatedSmmu[];
}

/** The outcome: the VM on the destination, or the reason it stayed on the source. */
export type MigrationResult =
  | { readonly ok: true; readonly machine: Machine; readonly report: MigrationReport }
  | { readonly ok: false; readonly reason: string; readonly phase: 'quiesce' | 'restore'; readonly report: MigrationReport };

/**
 * Migrate `source` live to `opts.dest`. On success the source is closed and the result holds the
 * VM on the destination; on failure the source is as it was (only read) and keeps running.
 */
export function migrate(source: Machine, opts: MigrateOptions): MigrationResult {
  const costs = opts.costModel ?? DEFAULT_COST_MODEL;
  const guest = opts.guest ?? IDLE_GUEST;
  const limit = opts.downtimeLimitNs ?? DEFAULT_DOWNTIME_LIMIT_NS;
  const maxRounds = opts.maxRounds ?? DEFAULT_MAX_ROUNDS;
  if (!(maxRounds >= 1) || !Number.isInteger(maxRounds)) throw new RangeError(`maxRounds ${maxRounds} must be a positive integer`);
  if (!(limit >= 0)) throw new RangeError(`downtime limit ${limit} must be a non-negative number of ns`);
  // What the destination has received: guest RAM as 4 KiB pages from offset 0 (VIRT_RAM_BASE).
  const received = new SparseMemory(source.ramBytes);
  const rounds: PrecopyRound[] = [];
  let elapsed = 0;
  let sent = 0;
  let zeroSkipped = 0;
  /** Send `pages`; with `skipZero` (round 1: the destination's RAM starts zeroed) zero pages stay behind. Returns pages sent. */
  const send = (pages: readonly number[], skipZero: boolean): number => {
    let n = 0;
    for (const p of pages) {
      const off = p * DIRTY_PAGE_SIZE;
      const bytes = source.readRam(VIRT_RAM_BASE + off, Math.min(DIRTY_PAGE_SIZE, source.ramBytes - off));
      if (skipZero && allZero(bytes)) {
        zeroSkipped++;
        continue;
      }
      received.writeBytes(off, bytes);
      n++;
    }
    sent += n;
    return n;
  };
  const report = (extra: Partial<MigrationReport>): MigrationReport => ({
    rounds,
    converged: false,
    finalPages: 0,
    deviceStateBytes: 0,
    totalPages: sent,
    zeroPagesSkipped: zeroSkipped,
    queues: [],
    downtime: undefined,
    totalNs: elapsed,
    recreateIoctls: 0,
    recreated: [],
    ...extra,
  });

  const tracer = source.tracer;
  /** One dirty-log sync, traced as QEMU traces its bitmap syncs. */
  const sync = (): number[] => {
    tracer.emit(T.T_SYNC_START);
    const pages = log.collect();
    tracer.emit(T.T_SYNC_END, pages.length);
    return pages;
  };
  /** The failure's trace records; returns the result unchanged. */
  const failed = (r: MigrationResult & { ok: false }): MigrationResult => {
    tracer.emit(T.T_ERROR, r.reason);
    tracer.emit(T.T_SET_STATE, 'failed');
    return r;
  };
  tracer.emit(T.T_SET_STATE, 'setup');
  const log = new GuestDirtyLog(source);
  log.start();
  try {
    // Pre-copy: the guest runs while each round's pages cross.
    tracer.emit(T.T_SET_STATE, 'active');
    let toSend = log.touchedPages();
    let dirty: number[] = [];
    let converged = false;
    for (let round = 1; ; round++) {
      const pages = send(toSend, round === 1);
      const ns = costs.migrationRoundNs + pages * costs.migrationPageNs;
      guest.runFor(source, ns);
      elapsed += ns;
      dirty = sync();
      rounds.push({ round, pages, ns, dirtied: dirty.length });
      tracer.emit(T.T_ROUND, round, pages, ns, dirty.length);
      if (dirty.length * costs.migrationPageNs <= limit) {
        converged = true;
        break;
      }
      if (round >= maxRounds) break;
      toSend = dirty;
    }

    // Stop-and-copy: the guest is paused from here on (nothing runs it).
    const q = quiesceQueues(source, { timeoutNs: opts.drainTimeoutNs ?? DEFAULT_DRAIN_TIMEOUT_NS, pollIntervalNs: opts.drainPollNs ?? DEFAULT_DRAIN_POLL_NS, costs });
    for (const d of q.queues) tracer.emit(T.T_QUEUE, d.queue, d.cons, d.prod, d.state);
    if (!q.ok) {
      const paused = withTotal({ quiesceNs: q.waitedNs, ramNs: 0, deviceStateNs: 0, recreateNs: 0, switchoverNs: 0 });
      elapsed += paused.totalNs;
      return failed({ ok: false, reason: q.reason!, phase: 'quiesce', report: report({ converged, queues: q.queues, downtime: paused, totalNs: elapsed }) });
    }
    const last = mergeSorted(dirty, sync());
    send(last, false);
    log.stop();
    const state = source.save({ ram: false });
    const before = hostObjects(source);
    // A new host starts at 0 ioctls; a shared one is counted from here.
    const destHost = opts.dest instanceof HostKernel ? opts.dest : undefined;
    const ioctls0 = destHost?.stats.ioctls ?? 0;
    let dest: Machine;
    try {
      // The received pages are the destination's RAM (nothing else holds them): adopted, not copied.
      dest = Machine.restore(state, { host: opts.dest, ram: received, adopt: true });
    } catch (e) {
      const ioctls = (destHost?.stats.ioctls ?? 0) - ioctls0;
      const paused = withTotal({
        quiesceNs: q.waitedNs,
        ramNs: last.length * costs.migrationPageNs,
        deviceStateNs: pagesOf(state.length) * costs.migrationPageNs,
        recreateNs: ioctls * costs.ioctlNs,
        switchoverNs: 0,
      });
      elapsed += paused.totalNs;
      return failed({
        ok: false,
        reason: `the destination refused the VM: ${oneLine((e as Error).message)}`,
        phase: 'restore',
        report: report({ converged, queues: q.queues, finalPages: last.length, deviceStateBytes: state.length, downtime: paused, totalNs: elapsed, recreateIoctls: ioctls }),
      });
    }
    const recreateIoctls = dest.host.stats.ioctls - ioctls0;
    const downtime: Downtime = withTotal({
      quiesceNs: q.waitedNs,
      ramNs: last.length * costs.migrationPageNs,
      deviceStateNs: pagesOf(state.length) * costs.migrationPageNs,
      recreateNs: recreateIoctls * costs.ioctlNs,
      switchoverNs: costs.migrationSwitchoverNs,
    });
    elapsed += downtime.totalNs;
    const recreated = compareObjects(before, hostObjects(dest));
    tracer.emit(T.T_DOWNTIME, downtime.totalNs, downtime.quiesceNs, downtime.ramNs, downtime.deviceStateNs, downtime.recreateNs, downtime.switchoverNs);
    tracer.emit(T.T_SET_STATE, 'completed');
    source.close();
    return {
      ok: true,
      machine: dest,
      report: report({ converged, queues: q.queues, finalPages: last.length, deviceStateBytes: state.length, downtime, totalNs: elapsed, recreateIoctls, recreated }),
    };
  } finally {
    log.stop();
  }
}

/** A multi-line error (QEMU's error_report with its hint) on one line. */
function oneLine(message: string): string {
  return message
    .split('\n')
    .map((l) => l.trim().replace(/:$/, ''))
    .filter((l) => l !== '')
    .join('; ');
}

/** Whether every byte of a page is zero. */
function allZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

function withTotal(d: Omit<Downtime, 'totalNs'>): Downtime {
  return { ...d, totalNs: d.quiesceNs + d.ramNs + d.deviceStateNs + d.recreateNs + d.switchoverNs };
}

/** Link units (4 KiB) of `bytes`. */
function pagesOf(bytes: number): number {
  return Math.ceil(bytes / DIRTY_PAGE_SIZE);
}

/** Union of two ascending lists, ascending, without duplicates. */
function mergeSorted(a: readonly number[], b: readonly number[]): number[] {
  const out: number[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const x = j >= b.length || (i < a.length && a[i]! < b[j]!) ? a[i++]! : b[j++]!;
    if (out.length === 0 || out[out.length - 1] !== x) out.push(x);
  }
  return out;
}

/** Pair each SMMU's objects before and after. */
function compareObjects(before: readonly SmmuHostObjects[], after: readonly SmmuHostObjects[]): RecreatedSmmu[] {
  return before.map((b) => {
    const a = after.find((x) => x.smmu === b.smmu);
    return {
      smmu: b.smmu,
      viommuId: { old: b.viommuId, new: a?.viommuId ?? -1 },
      vintf: { old: b.vintf, new: a?.vintf },
      vmid: { old: b.vmid, new: a?.vmid },
      hwQueues: b.hwQueues.map((q) => {
        const n = a?.hwQueues.find((x) => x.lvcmdq === q.lvcmdq);
        return { lvcmdq: q.lvcmdq, id: { old: q.id, new: n?.id }, vcmdq: { old: q.vcmdq, new: n?.vcmdq } };
      }),
      vdevices: b.vdevices.map((v) => ({ virtId: v.virtId, id: { old: v.id, new: a?.vdevices.find((x) => x.virtId === v.virtId)?.id } })),
    };
  });
}
