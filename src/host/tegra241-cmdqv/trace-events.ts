/** Trace events of the Tegra241 CMDQV silicon model (this project's own; QEMU has none for it). */

import { defineTrace, type TraceEvent } from '../../kit/trace.js';

const u32 = (name: string) => ({ name, type: 'u32' }) as const;
const str = (name: string) => ({ name, type: 'str' }) as const;

export const T_HW_QUEUE_ERROR = defineTrace(
  'tegra241_cmdqv_hw_queue_error',
  [u32('vcmdq'), u32('vintf'), u32('lvcmdq'), u32('cons'), u32('cerror'), str('opcode')],
  'vcmdq %u (vintf %u lvcmdq %u) stopped at cons=0x%x cerror=%u on %s',
);
export const T_HW_CONSUME = defineTrace('tegra241_cmdqv_hw_consume', [u32('vcmdq'), u32('count'), u32('cons')], 'vcmdq %u consumed %u commands, cons=0x%x');

export const TRACE_EVENTS: readonly TraceEvent[] = [T_HW_QUEUE_ERROR, T_HW_CONSUME];
