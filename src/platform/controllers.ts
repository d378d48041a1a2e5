/**
 * The machine's controllers: a qtest session and QMP sessions bound to one {@link Machine}
 * (docs/reference/qtest-qmp.md). The transports (sockets, stdio) belong to the program's edge.
 */

import { QmpError, QmpSession, type Json, type QmpMachine, type RunState } from '../vmm/qmp/qmp-server.js';
import { QtestSession } from '../vmm/qtest/qtest-server.js';
import { qtestTarget } from '../vmm/virt/qtest-target.js';
import type { Machine } from './machine.js';

export { QmpSession, QmpError, qmpText, type Json, type RunState } from '../vmm/qmp/qmp-server.js';
export { QtestSession, QTEST_MAX_TRANSFER } from '../vmm/qtest/qtest-server.js';
export { GIC_QOM_PATH } from '../vmm/virt/qtest-target.js';
export type { CharBackend, MonitorOptions } from '../vmm/virt/monitor-options.js';

/** The QEMU release whose protocols and behaviour cmdqv follows (reported by QMP). */
export const QEMU_VERSION = { major: 11, minor: 1, micro: 0, package: 'cmdqv' } as const;

/** A qtest session on `m`. */
export function qtestSession(m: Machine, send: (text: string) => void, log?: (text: string) => void): QtestSession {
  return new QtestSession(qtestTarget(m), send, log);
}

/** The QMP view of `m`; `quit` ends the process. */
export function qmpMachine(m: Machine, quit: () => void): QmpMachine {
  return {
    version: QEMU_VERSION,
    reset: () => m.reset(),
    quit,
    extraCommands: ['x-query-cmdqv'],
    extraCommand: (name, args) => {
      if (name !== 'x-query-cmdqv') return undefined;
      for (const k of Object.keys(args)) throw new QmpError('GenericError', `Parameter '${k}' is unexpected`);
      return cmdqvStatus(m);
    },
  };
}

/** A QMP session on `m` sharing run state `state` with the machine's other monitors. */
export function qmpSession(m: Machine, state: { run: RunState }, send: (text: string) => void, quit: () => void, now = () => Date.now() * 1000): QmpSession {
  return new QmpSession(qmpMachine(m, quit), state, send, now);
}

/** `x-query-cmdqv`: every SMMU, its CMDQV's queues and counters, and the machine's exit counts. */
export function cmdqvStatus(m: Machine): Json {
  const s = m.as.stats;
  return {
    smmus: m.smmus.map((sm) => ({
      id: sm.dev.props.id,
      base: sm.base,
      accel: sm.opts.accel,
      stats: { ...sm.dev.stats },
      cmdqv: sm.cmdqv
        ? {
            base: sm.cmdqvBase ?? null,
            gsiv: sm.cmdqvGsiv ?? null,
            vcmdqs: sm.cmdqv.hwQueue.map((id, index) => ({ index, allocated: id !== undefined, 'hw-queue-id': id ?? null })),
            stats: { ...sm.cmdqv.stats },
            errors: sm.cmdqv.errors.length,
          }
        : null,
    })),
    'vm-exits': s.exits,
    'direct-accesses': s.direct,
  };
}
