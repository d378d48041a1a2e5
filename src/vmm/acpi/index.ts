/** ACPI tables of the `virt` machine (IORT, DSDT) and the AML encoder they are built with. */
export * from './aml.js';
export * from './dsdt.js';
export * from './iort.js';
export * from './mcfg.js';
export * from './topology.js';
export * from '../../arch/acpi/table.js';
