/** Trace events of the host kernel's iommufd. */

import { defineTrace, type TraceEvent } from '../../kit/trace.js';

const i32 = (name: string) => ({ name, type: 'i32' }) as const;
const str = (name: string) => ({ name, type: 'str' }) as const;

/** One ioctl on an iommufd file: its name and the return value (0 or a negative errno). */
export const T_IOMMUFD_IOCTL = defineTrace('iommufd_ioctl', [str('name'), i32('ret')], '%s ret=%d');

export const TRACE_EVENTS: readonly TraceEvent[] = [T_IOMMUFD_IOCTL];
