/** The fuzzing campaign: operations, generators, cases with their invariants, workers, shards. */
export { applyOp, InvariantError, MAIN_LOOP_LIMIT, type FuzzOp } from './ops.js';
export { OpGenerator, type FuzzTargets } from './generate.js';
export { replayOps, runCase, targetsOf, type CaseKind, type CaseOptions, type Finding, type FindingKind, type ReplayFile } from './case.js';
export { runUapiCase } from './uapi.js';
export { runIsolationCase } from './isolation.js';
export { ISOLATION_OPS_PER_CASE, runCampaign, shardSeeds, type CampaignOptions, type CampaignSummary } from './campaign.js';
