/** The VMM's accelerated SMMUv3 (QEMU `arm-smmuv3,accel=on`) and its CMDQV ops interface. */
export * from './accel-smmuv3.js';
export * from './cmdq.js';
export * from './cmdqv-ops.js';
export * from './idr.js';
export * from './properties.js';
export * from './ste-install.js';
