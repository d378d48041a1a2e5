/**
 * Trace events of live migration. The first four are named and shaped as QEMU's
 * migration/trace-events (migration.c and ram.c sections; docs/reference/live-migration.md §5);
 * the `cmdqv_migration_*` ones are cmdqv's own (QEMU has no CMDQV migration to name them after):
 * each pre-copy round, each command queue's drain at the stop, and the downtime's parts.
 */

import { defineTrace, type TraceEvent } from '../../kit/trace.js';

const u32 = (name: string) => ({ name, type: 'u32' }) as const;
const u64 = (name: string) => ({ name, type: 'u64' }) as const;
const str = (name: string) => ({ name, type: 'str' }) as const;

/** The migration's state: setup, active (pre-copy), completed or failed. */
export const T_SET_STATE = defineTrace('migrate_set_state', [str('new_state')], 'new state %s');
/** Why the migration failed. */
export const T_ERROR = defineTrace('migrate_error', [str('error_desc')], 'error=%s');
/** A dirty-log sync starts. */
export const T_SYNC_START = defineTrace('migration_bitmap_sync_start', [], '');
/** A dirty-log sync found `dirty_pages` pages written since the last one. */
export const T_SYNC_END = defineTrace('migration_bitmap_sync_end', [u64('dirty_pages')], 'dirty_pages %u');
/** One pre-copy round: pages sent, its modelled time, pages the guest wrote meanwhile. */
export const T_ROUND = defineTrace('cmdqv_migration_round', [u32('round'), u64('pages'), u64('ns'), u64('dirtied')], 'round %u: %u pages sent in %u ns, %u dirtied');
/** One command queue at the stop: CONS and PROD as last read, and what became of it. */
export const T_QUEUE = defineTrace('cmdqv_migration_queue', [str('queue'), u32('cons'), u32('prod'), str('state')], '%s cons 0x%x prod 0x%x: %s');
/** The downtime's parts in modelled ns: total, drain, last RAM, device state, re-creation ioctls, switchover. */
export const T_DOWNTIME = defineTrace(
  'cmdqv_migration_downtime',
  [u64('total'), u64('quiesce'), u64('ram'), u64('device_state'), u64('recreate'), u64('switchover')],
  'downtime %u ns: drain %u, ram %u, device state %u, re-creation %u, switchover %u',
);

export const MIGRATION_TRACE_EVENTS: readonly TraceEvent[] = [T_SET_STATE, T_ERROR, T_SYNC_START, T_SYNC_END, T_ROUND, T_QUEUE, T_DOWNTIME];
