/**
 * One fuzzing case: a fresh machine, the operations of one seed, the invariants checked after
 * every operation (no exception escapes a guest access; the main loop settles; memory stays
 * bounded) and at the end (after `reset()` the machine reads exactly like a new one). A finding
 * is shrunk to a short reproduction that `replayOps` re-runs.
 */

import * as C from '../../arch/tegra241-cmdqv/registers.js';
import { shrinkList } from '../../kit/shrink.js';
import { DEFAULT_ARGS, Machine } from '../machine.js';
import { OpGenerator, type FuzzTargets } from './generate.js';
import { applyOp, InvariantError, MAIN_LOOP_LIMIT, type FuzzOp } from './ops.js';

/** What a case attacks: one machine's guest, the uAPI next to a victim VM, or a victim VM next to a hostile guest. */
export type CaseKind = 'guest' | 'uapi' | 'isolation';

/** What a broken invariant was. */
export type FindingKind = 'exception' | 'hang' | 'memory' | 'reset' | 'isolation' | 'timeout';

/** A finding: the seed, where it happened, and (when shrunk) a short reproduction. */
export interface Finding {
  readonly seed: number;
  readonly kind: FindingKind;
  readonly message: string;
  /** Index of the operation that failed (the case length for end-of-case invariants). */
  readonly index: number;
  /** A minimal operation list that reproduces it on a fresh machine. */
  readonly reproduction?: readonly FuzzOp[];
  /** The machine's command line (guest cases). */
  readonly argv: readonly string[];
  /** Which kind of case found it. */
  readonly source: CaseKind;
}

/** A reproduction file (`cmdqv fuzz --replay FILE`). */
export interface ReplayFile {
  readonly version: 1;
  readonly argv: readonly string[];
  readonly seed: number;
  readonly kind: FindingKind;
  readonly message: string;
  readonly ops: readonly FuzzOp[];
  /** The kind of case (absent: guest, whose `ops` replay it). */
  readonly source?: CaseKind;
  /**
   * A uAPI or isolation finding: re-run the case of `seed` with this many calls / attacker
   * operations (ops is empty).
   */
  readonly caseOps?: number;
}

/** Heap growth (bytes) one case may cause before it is a memory finding. */
export const HEAP_LIMIT = 1024 * 2 ** 20;

/** Where the operations aim, from the machine's layout. */
export function targetsOf(m: Machine): FuzzTargets {
  const smmu = m.smmus[0];
  if (!smmu) throw new Error('the fuzzed machine needs an arm-smmuv3');
  return { smmuBase: smmu.base, cmdqvBase: smmu.cmdqvBase, ramBase: m.guestPlatform().ramBase, ramSize: m.ramBytes };
}

/** Addresses of the register words the reset invariant compares, in image order. */
function registerImageAddresses(t: FuzzTargets): number[] {
  const addrs: number[] = [];
  for (let off = 0; off < 0x200; off += 4) addrs.push(t.smmuBase + off);
  if (t.cmdqvBase !== undefined) {
    for (let off = 0; off < 0x1200; off += 4) addrs.push(t.cmdqvBase + off);
    for (const page of [0x10000, 0x20000, 0x30000, 0x40000]) for (let off = 0; off < 0x100; off += 4) addrs.push(t.cmdqvBase + page + off);
  }
  return addrs;
}

/** Every guest-visible register word of the SMMU and CMDQV apertures (for the reset invariant). */
export function registerImage(m: Machine, t: FuzzTargets = targetsOf(m)): Uint32Array {
  return Uint32Array.from(registerImageAddresses(t), (a) => Number(m.read(a, 4).value));
}

function messageOf(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}

/** Run `ops` on `m`, checking the per-operation invariants; the first broken one, if any. */
function runOps(m: Machine, ops: Iterable<FuzzOp>, seed: number, argv: readonly string[], heapStart: number): Finding | undefined {
  let index = 0;
  for (const o of ops) {
    try {
      applyOp(m, o);
    } catch (e) {
      return { seed, kind: e instanceof InvariantError ? e.kind : 'exception', message: messageOf(e), index, argv, source: 'guest' };
    }
    if (index % 4096 === 4095) {
      const grown = process.memoryUsage().heapUsed - heapStart;
      if (grown > HEAP_LIMIT) return { seed, kind: 'memory', message: `heap grew by ${(grown / 2 ** 20).toFixed(0)} MiB`, index, argv, source: 'guest' };
    }
    index++;
  }
  return undefined;
}

/**
 * Register words reset deliberately leaves alone: VINTF0 SID_MATCH/SID_REPLACE survive reset, as
 * in QEMU (quirk Q4 kept; docs/design.md, docs/reference/qemu-accel-smmuv3.md §15).
 */
function preservedByReset(t: FuzzTargets, addr: number): boolean {
  if (t.cmdqvBase === undefined) return false;
  const block = t.cmdqvBase + C.vintfBlockOffset(0);
  const sidStart = block + C.VINTF_SID_MATCH.spec.offset;
  const sidEnd = block + C.VINTF_SID_REPLACE.spec.offset + 4 * C.VINTF_SID_REPLACE.spec.repeat!.count;
  return addr >= sidStart && addr < sidEnd;
}

/** The end-of-case invariant: after reset (and the main loop settling) the registers read as new. */
function checkReset(m: Machine, t: FuzzTargets, fresh: Uint32Array, seed: number, argv: readonly string[], index: number): Finding | undefined {
  try {
    m.reset();
    if (m.clock.runUntilIdle(MAIN_LOOP_LIMIT) >= MAIN_LOOP_LIMIT) return { seed, kind: 'hang', message: 'the main loop does not settle after reset', index, argv, source: 'guest' };
    const difference = registerDifference(m, fresh, t);
    if (difference) return { seed, kind: 'reset', message: `after reset, ${difference}`, index, argv, source: 'guest' };
  } catch (e) {
    return { seed, kind: 'exception', message: messageOf(e), index, argv, source: 'guest' };
  }
  return undefined;
}

/**
 * The first register word where `m` reads other than `fresh` ({@link registerImage} of a new
 * machine), leaving out what reset deliberately keeps; undefined when it reads like a new one.
 */
export function registerDifference(m: Machine, fresh: Uint32Array, t: FuzzTargets = targetsOf(m)): string | undefined {
  const now = registerImage(m, t);
  const addrs = registerImageAddresses(t);
  for (let i = 0; i < now.length; i++) {
    const addr = addrs[i]!;
    if (now[i] !== fresh[i] && !preservedByReset(t, addr)) return `0x${addr.toString(16)} reads 0x${now[i]!.toString(16)}, a new machine 0x${fresh[i]!.toString(16)}`;
  }
  return undefined;
}


const freshImages = new Map<string, Uint32Array>();

/** The register image of a new machine built from `argv` (cached per argv). */
function freshImage(argv: readonly string[]): Uint32Array {
  const key = argv.join('\0');
  let image = freshImages.get(key);
  if (!image) {
    const m = Machine.create(argv);
    image = registerImage(m, targetsOf(m));
    m.close();
    freshImages.set(key, image);
  }
  return image;
}

/** Re-run a list of operations on a fresh machine and check every invariant. */
export function replayOps(ops: readonly FuzzOp[], argv: readonly string[] = DEFAULT_ARGS, seed = 0): Finding | undefined {
  const m = Machine.create(argv);
  const t = targetsOf(m);
  try {
    return runOps(m, ops, seed, argv, process.memoryUsage().heapUsed) ?? checkReset(m, t, freshImage(argv), seed, argv, ops.length);
  } finally {
    m.close();
  }
}

/** Options of {@link runCase}. */
export interface CaseOptions {
  readonly argv?: readonly string[];
  /** Shrink a finding to a short reproduction (default true). */
  readonly shrink?: boolean;
  /** Replays the shrinker may spend (default 400). */
  readonly shrinkBudget?: number;
}

/** Run the `count` operations of `seed` on a fresh machine; a finding if an invariant broke. */
export function runCase(seed: number, count: number, opts: CaseOptions = {}): Finding | undefined {
  const argv = opts.argv ?? DEFAULT_ARGS;
  const fresh = freshImage(argv);
  const m = Machine.create(argv);
  const t = targetsOf(m);
  const generator = new OpGenerator(seed, t);
  const batch: FuzzOp[] = [];
  function* stream(): Generator<FuzzOp> {
    let left = count;
    while (left > 0) {
      batch.length = 0;
      generator.next(batch);
      for (const o of batch) {
        if (left-- <= 0) return;
        yield o;
      }
    }
  }
  let finding: Finding | undefined;
  try {
    finding = runOps(m, stream(), seed, argv, process.memoryUsage().heapUsed) ?? checkReset(m, t, fresh, seed, argv, count);
  } finally {
    m.close();
  }
  if (!finding || opts.shrink === false || finding.kind === 'memory') return finding;
  const ops = new OpGenerator(seed, t).take(Math.min(finding.index + 1, count));
  const same = (f: Finding | undefined) => f !== undefined && f.kind === finding!.kind && (f.kind !== 'exception' || f.message === finding!.message);
  const reproduction = shrinkList(ops, (candidate) => same(replayOps(candidate, argv, seed)), opts.shrinkBudget ?? 400);
  return { ...finding, reproduction };
}
