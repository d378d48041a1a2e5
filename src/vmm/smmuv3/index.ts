/** The VMM's SMMUv3s: accelerated (QEMU `arm-smmuv3,accel=on`) with its CMDQV ops interface, and emulated (accel=off). */
export * from './accel-smmuv3.js';
export * from './cmdq.js';
export * from './cmdqv-ops.js';
export * from './emulated-smmuv3.js';
export * from './idr.js';
export * from './properties.js';
export * from './ste-install.js';
