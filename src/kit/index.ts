/** The device-model kit: bit fields, register tables, memory regions, logs, traces, clock. */
export * from './bits.js';
export * from './registers.js';
export * from './register-bank.js';
export * from './memory-region.js';
export * from './address-space.js';
export * from './sparse-memory.js';
export * from './log.js';
export * from './recent-list.js';
export * from './trace.js';
export * from './clock.js';
export * from './irq.js';
export * from './guest-seam.js';
export * from './prng.js';
