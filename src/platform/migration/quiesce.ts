/**
 * Quiescing a paused VM's command queues before its device state is saved, as a real VMM must:
 * with the vCPUs stopped nothing adds commands, but the silicon may still be consuming what the
 * guest published. A HW-backed VCMDQ's CONS/PROD live in the host silicon, reached through the
 * VMM's mapping of the VINTF page0 (an uncached read per register, no exit); the VMM waits until
 * CONS = PROD on each of them and on each accelerated SMMU's (emulated) CMDQ, polling, with a
 * bound in modelled time.
 *
 * What cannot be moved: a VCMDQ in error. Its error lives in the silicon (GERROR, CONS.ERR, the
 * VINTF and CMDQV error maps), GERROR is read-only and no uAPI call sets it on a new HW queue,
 * so the destination could not show the guest the same registers. The guest must acknowledge
 * the error first (GERRORN); the migration fails and the source keeps running.
 *
 * A VCMDQ in cache mode (no HW queue) and an SMMU CMDQ that is disabled or stopped by a CERROR
 * run nothing: their state is the VMM's registers and moves with the device state.
 *
 * The model's silicon consumes on the doorbell, so in the model a queue that has not drained at
 * the first poll is stopped (its VINTF or the CMDQV disabled on the host, the queue disabled)
 * and never drains; the polls until the bound are what a real VMM spends on it.
 */

import * as C from '../../arch/tegra241-cmdqv/registers.js';
import * as R from '../../arch/smmuv3/registers.js';
import { qEmpty } from '../../arch/smmuv3/queue.js';
import type { CostModel } from '../cost-model.js';
import type { Machine } from '../machine.js';

/** VCMDQ registers read per poll (CONS, PROD, GERROR, GERRORN). */
const VCMDQ_POLL_READS = 4;
const VCMDQ_CMDQ_ERR = C.VCMDQ_GERROR.f.CMDQ_ERR;
const SMMU_CMDQ_ERR = R.GERROR.f.CMDQ_ERR;

/** One queue as the last poll saw it. */
export interface QueueDrain {
  /** e.g. `smmuv3.0 VCMDQ1` or `smmuv3.0 CMDQ`. */
  readonly queue: string;
  readonly cons: number;
  readonly prod: number;
  /** drained: CONS = PROD; idle: runs nothing (state moves with the VMM); pending; error. */
  readonly state: 'drained' | 'idle' | 'pending' | 'error';
}

/** How the wait ended. */
export interface QuiesceResult {
  readonly ok: boolean;
  /** Modelled time the wait took (polls and the pauses between them). */
  readonly waitedNs: number;
  readonly polls: number;
  readonly queues: readonly QueueDrain[];
  /** Why it failed (undefined when ok). */
  readonly reason: string | undefined;
}

/** Bounds of the wait. */
export interface QuiesceOptions {
  /** Give up after this much modelled time. */
  readonly timeoutNs: number;
  /** Pause between two polls. */
  readonly pollIntervalNs: number;
  readonly costs: CostModel;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/** The state of every queue of `m` now (reads only: no guest-visible effect). */
export function queueStates(m: Machine): QueueDrain[] {
  const out: QueueDrain[] = [];
  for (const s of m.smmus) {
    const id = s.dev.props.id;
    const cmdqv = s.cmdqv;
    if (cmdqv) {
      for (let i = 0; i < cmdqv.hwQueue.length; i++) {
        if (cmdqv.hwQueue[i] === undefined) continue; // cache mode: nothing runs
        const p0 = C.vcmdqPage0Offset(i);
        const cons = cmdqv.read(p0 + C.VCMDQ_CONS.spec.offset, 4);
        const prod = cmdqv.read(p0 + C.VCMDQ_PROD.spec.offset, 4);
        const gerror = cmdqv.read(p0 + C.VCMDQ_GERROR.spec.offset, 4);
        const gerrorn = cmdqv.read(p0 + C.VCMDQ_GERRORN.spec.offset, 4);
        const log2 = Number(C.VCMDQ_BASE.f.LOG2SIZE.getBig(cmdqv.read64(C.vcmdqPage1Offset(i) + C.VCMDQ_BASE.spec.offset)));
        const state = VCMDQ_CMDQ_ERR.get(gerror ^ gerrorn) ? 'error' : qEmpty(prod, cons, log2) ? 'drained' : 'pending';
        out.push({ queue: `${id} VCMDQ${i}`, cons, prod, state });
      }
    }
    const b = s.dev.bank;
    const cons = b.read(R.CMDQ_CONS.spec.offset, 4);
    const prod = b.read(R.CMDQ_PROD.spec.offset, 4);
    const log2 = Number(R.CMDQ_BASE.f.LOG2SIZE.getBig(b.read64(R.CMDQ_BASE.spec.offset)));
    const running = R.CR0.f.CMDQEN.get(b.read(R.CR0.spec.offset, 4)) === 1 && !SMMU_CMDQ_ERR.get(b.read(R.GERROR.spec.offset, 4) ^ b.read(R.GERRORN.spec.offset, 4));
    out.push({ queue: `${id} CMDQ`, cons, prod, state: !running ? 'idle' : qEmpty(prod, cons, log2) ? 'drained' : 'pending' });
  }
  return out;
}

/**
 * Wait, with the guest paused, until every running queue of `m` has CONS = PROD. Fails at once
 * on a VCMDQ in error, and after `timeoutNs` of polling on a queue that does not drain. Reads
 * only: the source is untouched either way.
 */
export function quiesceQueues(m: Machine, o: QuiesceOptions): QuiesceResult {
  let waited = 0;
  let polls = 0;
  for (;;) {
    const queues = queueStates(m);
    polls++;
    const hw = queues.filter((q) => q.queue.includes('VCMDQ')).length;
    waited += hw * VCMDQ_POLL_READS * o.costs.directMmioNs;
    const bad = queues.find((q) => q.state === 'error');
    if (bad) {
      const err = C.VCMDQ_CONS.f.ERR.get(bad.cons);
      return {
        ok: false,
        waitedNs: waited,
        polls,
        queues,
        reason:
          `${bad.queue} is in error (CONS ${hex(bad.cons)}, CERROR ${err}): its error state is in the silicon, ` +
          'which no uAPI call can re-create on the destination; the guest must acknowledge it (GERRORN) first',
      };
    }
    const pending = queues.filter((q) => q.state === 'pending');
    if (pending.length === 0) return { ok: true, waitedNs: waited, polls, queues, reason: undefined };
    if (waited >= o.timeoutNs) {
      const list = pending.map((q) => `${q.queue} CONS ${hex(q.cons)} PROD ${hex(q.prod)}`).join(', ');
      return {
        ok: false,
        waitedNs: waited,
        polls,
        queues,
        reason: `${list}: did not drain in ${fmtUs(waited)} µs (the queue is not consuming: disabled, or its VINTF or the CMDQV disabled on the host)`,
      };
    }
    waited += o.pollIntervalNs;
  }
}

function fmtUs(ns: number): string {
  return (ns / 1000).toFixed(1);
}
