/**
 * What a guest does while its RAM is pre-copied: nothing (idle: time passes, the VMM's main
 * loop runs), or its workload run continuing batch by batch for as long as a round takes.
 */

import type { Machine } from '../machine.js';
import type { WorkloadRun } from '../workload.js';
import type { MigrationGuest } from './migrate.js';

/** A guest that does nothing: time passes, the VMM's main loop runs, RAM stays as it is. */
export const IDLE_GUEST: MigrationGuest = {
  runFor(m, ns) {
    m.clock.advance(ns);
  },
};

/**
 * The workload run keeps going while a round's pages cross: whole invalidation batches until
 * the guest's clock has moved by the round's time (the last batch may end after it). When the
 * run has nothing left, the guest idles for the rest of the round.
 */
export function busyGuest(run: WorkloadRun): MigrationGuest {
  return {
    runFor(m: Machine, ns: number) {
      const until = m.clock.now + ns;
      while (m.clock.now < until && run.done < run.total) run.runTo(run.done + 1);
      if (m.clock.now < until) m.clock.advance(until - m.clock.now);
    },
  };
}
