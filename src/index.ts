/**
 * cmdqv — a virtual platform for NVIDIA Tegra241 CMDQV on an iommufd-accelerated Arm SMMUv3.
 * Library entry point: the device-model kit and the iommufd uAPI.
 */

export * from './kit/index.js';
export * as uapi from './uapi/index.js';
export { Machine, DEFAULT_ARGS, VIRT_RAM_BASE } from './vmm/virt/machine.js';
export { OptionError } from './vmm/virt/options.js';
export { runWorkload, DEFAULT_WORKLOAD, type WorkloadOptions, type WorkloadReport } from './run/workload.js';
export { HostKernel } from './host/kernel/host-kernel.js';
export { DEFAULT_HOST, type HostConfig } from './host/config.js';
