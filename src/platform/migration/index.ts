/** Live migration of a CMDQV VM between simulated hosts (see migrate.ts). */
export { migrate, DEFAULT_DOWNTIME_LIMIT_NS, DEFAULT_DRAIN_POLL_NS, DEFAULT_DRAIN_TIMEOUT_NS, DEFAULT_MAX_ROUNDS } from './migrate.js';
export type { Downtime, MigrateOptions, MigrationGuest, MigrationReport, MigrationResult, PrecopyRound, Recreated, RecreatedSmmu } from './migrate.js';
export { busyGuest, IDLE_GUEST } from './guests.js';
export { GuestDirtyLog } from './guest-dirty-log.js';
export { hostObjects, type SmmuHostObjects } from './host-objects.js';
export { queueStates, quiesceQueues, type QueueDrain, type QuiesceResult } from './quiesce.js';
