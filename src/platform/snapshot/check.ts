/**
 * Shape and range checks of decoded image state. An image is user input: after its checksums
 * pass, every value is still checked for its type and range before it reaches a model (a wrong
 * type, NaN, a fraction or a number past its field would otherwise surface as an exception deep
 * in a device, or as a state no hardware can hold). Each check throws a {@link SnapshotError}
 * naming the value by its path in the image (`vmm.smmus[0].cmdqv.page1[1]`).
 */

import type { PlainValue } from '../../kit/persist.js';
import { SnapshotError } from './errors.js';

/** Why `path` is refused. */
export function bad(path: string, why: string): never {
  throw new SnapshotError(`snapshot state ${path}: ${why}`);
}

function shown(v: unknown): string {
  if (typeof v === 'bigint') return `${v}n`;
  if (ArrayBuffer.isView(v)) return `a ${v.constructor.name}`;
  if (Array.isArray(v)) return 'an array';
  if (v === null) return 'null';
  if (typeof v === 'object') return 'a record';
  if (typeof v === 'string') return `'${v.slice(0, 40)}'`;
  return String(v);
}

/** A record (not an array, typed array or null) with exactly `keys` (optional ones may be absent). */
export function record(v: unknown, path: string, keys: readonly string[], optional: readonly string[] = []): Record<string, PlainValue> {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || ArrayBuffer.isView(v)) bad(path, `is ${shown(v)}, not a record`);
  const o = v as Record<string, PlainValue>;
  for (const k of keys) if (!(k in o)) bad(path, `has no '${k}'`);
  for (const k of Object.keys(o)) if (!keys.includes(k) && !optional.includes(k)) bad(path, `has an unknown field '${k.slice(0, 40)}'`);
  return o;
}

/** An array of at most `max` elements (exactly `max` with `exact`). */
export function array(v: unknown, path: string, max: number, exact = false): readonly PlainValue[] {
  if (!Array.isArray(v)) bad(path, `is ${shown(v)}, not an array`);
  if (exact ? v.length !== max : v.length > max) bad(path, `has ${v.length} elements, ${exact ? 'the machine has' : 'at most'} ${max}`);
  return v as PlainValue[];
}

/** An integer in [lo, hi]. */
export function int(v: unknown, path: string, lo: number, hi: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) bad(path, `is ${shown(v)}, not an integer in [${lo}, ${hi}]`);
  return v;
}

/** An integer in [lo, hi], or undefined. */
export function optInt(v: unknown, path: string, lo: number, hi: number): number | undefined {
  return v === undefined ? undefined : int(v, path, lo, hi);
}

/** A finite number ≥ 0. */
export function time(v: unknown, path: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) bad(path, `is ${shown(v)}, not a time (a finite number ≥ 0)`);
  return v;
}

export function bool(v: unknown, path: string): boolean {
  if (typeof v !== 'boolean') bad(path, `is ${shown(v)}, not a boolean`);
  return v;
}

export function str(v: unknown, path: string, max = 4096): string {
  if (typeof v !== 'string' || v.length > max) bad(path, `is ${shown(v)}, not a string of at most ${max} characters`);
  return v;
}

/** A typed array of kind `T` with `length` elements (or at most `max` with `length` undefined). */
export function typed<T extends ArrayBufferView>(v: unknown, path: string, kind: { new (n: number): T; name: string }, length: number | undefined, max = Infinity): T {
  if (!(v instanceof kind)) bad(path, `is ${shown(v)}, not a ${kind.name}`);
  const n = (v as unknown as { length: number }).length;
  if (length !== undefined && n !== length) bad(path, `has ${n} elements, the machine's has ${length}`);
  if (n > max) bad(path, `has ${n} elements, at most ${max}`);
  return v as T;
}

/** The unsigned 32-bit words of a plain number array (IDRs). */
export function u32s(v: unknown, path: string, length: number): number[] {
  return array(v, path, length, true).map((x, i) => int(x, `${path}[${i}]`, 0, 0xffff_ffff));
}

/** Guest/host ids: small non-negative integers. */
export const MAX_ID = 2 ** 31 - 1;

/** A record of counts by name (any names, each an integer ≥ 0). */
export function counts(v: unknown, path: string): Record<string, number> {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || ArrayBuffer.isView(v)) bad(path, `is ${shown(v)}, not a record`);
  const o = v as Record<string, unknown>;
  for (const [k, x] of Object.entries(o)) int(x, `${path}.${k.slice(0, 40)}`, 0, Number.MAX_SAFE_INTEGER);
  return o as Record<string, number>;
}

/** A finite number. */
export function finite(v: unknown, path: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) bad(path, `is ${shown(v)}, not a finite number`);
  return v;
}
