/**
 * cmdqv — a virtual platform for NVIDIA Tegra241 CMDQV on an iommufd-accelerated Arm SMMUv3.
 * Library entry point: the device-model kit and the iommufd uAPI.
 */

export * from './kit/index.js';
export * as uapi from './uapi/index.js';
