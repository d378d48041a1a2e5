/** ACPI tables of the `virt` machine (IORT, DSDT) and the guest-side decoders for them. */
export * from './aml.js';
export * from './dsdt.js';
export * from './iort.js';
export * from './parse.js';
export * from './table.js';
export * from './topology.js';
