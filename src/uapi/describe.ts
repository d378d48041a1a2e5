/**
 * A machine-readable description of the uAPI (the `cmdqv uapi --json` document), so anyone can
 * diff our layouts against a real kernel header.
 */

import { ENUMS, IOCTLS, STRUCTS } from './iommufd.js';

/** `{"structs": {...}, "ioctls": {...}, "enums": {...}}` as documented in the README. */
export interface UapiDescription {
  structs: Record<string, { size: number; fields: Record<string, { offset: number; size: number }> }>;
  ioctls: Record<string, number>;
  enums: Record<string, Record<string, number>>;
}

/** Describe every struct, ioctl and enum; key order is declaration order (stable output). */
export function describeUapi(): UapiDescription {
  const structs: UapiDescription['structs'] = {};
  for (const s of Object.values(STRUCTS)) {
    const fields: Record<string, { offset: number; size: number }> = {};
    for (const f of s.fields) fields[f.name] = { offset: f.offset, size: f.size };
    structs[s.name] = { size: s.size, fields };
  }
  const ioctls: Record<string, number> = {};
  for (const i of IOCTLS) ioctls[i.name] = i.number;
  const enums: Record<string, Record<string, number>> = {};
  for (const [name, values] of Object.entries(ENUMS)) enums[name] = { ...values };
  return { structs, ioctls, enums };
}
