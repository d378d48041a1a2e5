/**
 * Trace events of the host SMMUv3 hardware model (the silicon, not QEMU's emulation: these
 * names have no QEMU counterpart).
 */

import { defineTrace, type TraceEvent } from '../../kit/trace.js';

const u32 = (name: string) => ({ name, type: 'u32' }) as const;
const u64 = (name: string) => ({ name, type: 'u64' }) as const;
const str = (name: string) => ({ name, type: 'str' }) as const;

export const T_HOST_CMD = defineTrace('smmuv3_host_cmd', [str('smmu'), str('queue'), str('opcode'), u32('cerror')], '%s %s %s cerror=%u');
export const T_HOST_EVENT = defineTrace('smmuv3_host_event', [str('smmu'), u32('id'), u32('sid'), u64('iova')], '%s event 0x%x sid=0x%x iova=0x%x');
export const T_HOST_CMDQ_ERROR = defineTrace('smmuv3_host_cmdq_error', [str('smmu'), u32('cons'), u32('cerror')], '%s CMDQ stopped at cons=0x%x cerror=%u');

/** Every trace event of the host SMMUv3. */
export const TRACE_EVENTS: readonly TraceEvent[] = [T_HOST_CMD, T_HOST_EVENT, T_HOST_CMDQ_ERROR];
