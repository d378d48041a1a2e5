/**
 * cmdqv — a virtual platform for NVIDIA Tegra241 CMDQV on an iommufd-accelerated Arm SMMUv3.
 * Library entry point: the machine (composition root), the device-model kit and the iommufd uAPI.
 */

export * from './kit/index.js';
export * as uapi from './uapi/index.js';
export { Machine, DEFAULT_ARGS, VIRT_RAM_BASE, OptionError, type MachineCreateOptions } from './platform/machine.js';
export { runWorkload, DEFAULT_WORKLOAD, type WorkloadOptions, type WorkloadReport } from './platform/workload.js';
export { HostKernel, DEFAULT_HOST, type HostConfig } from './platform/machine.js';
export { startRecording, recordRun } from './platform/record/record-run.js';
export { replayRecording, type ReplayOptions, type ReplayResult, type Divergence } from './platform/record/replayer.js';
export { RecordingFormatError } from './platform/record/format.js';
export { parseFaultSpecs, FaultSpecError, type FaultSpec, type InjectedFault } from './platform/fault-injection.js';
export { runCampaign, replayOps, runCase, type CampaignOptions, type CampaignSummary, type Finding } from './platform/fuzz/index.js';
export { migrate, busyGuest, IDLE_GUEST, type MigrateOptions, type MigrationGuest, type MigrationReport, type MigrationResult } from './platform/migration/index.js';
