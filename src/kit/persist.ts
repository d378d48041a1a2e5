/**
 * Architectural state apart from runtime, in the style of Firecracker's `Persist` trait.
 *
 * A model keeps everything the architecture defines (registers, queue indexes, cached
 * configuration, error state) in one plain state object, and its runtime handles (file
 * descriptors, mapped views, callbacks, tracers, logs) elsewhere. `save()` returns a deep copy
 * of the state; `restore()` loads one into a model built with the same runtime dependencies.
 * Snapshot, restore and migration stand on this; a state object must survive
 * {@link cloneState} unchanged, which {@link assertPlainState} checks.
 */

/** Values a plain state may hold. */
export type PlainValue =
  | number
  | bigint
  | string
  | boolean
  | null
  | undefined
  | Uint8Array
  | Uint16Array
  | Uint32Array
  | Int32Array
  | Float64Array
  | BigUint64Array
  | readonly PlainValue[]
  | { readonly [key: string]: PlainValue };

/** A model whose architectural state is one plain object. */
export interface Persist<State> {
  /** A deep copy of the architectural state. */
  save(): State;
  /** Load a state produced by {@link save} of a model of the same configuration. */
  restore(state: State): void;
}

type TypedArray = Uint8Array | Uint16Array | Uint32Array | Int32Array | Float64Array | BigUint64Array;

function isTypedArray(v: unknown): v is TypedArray {
  return (
    v instanceof Uint8Array ||
    v instanceof Uint16Array ||
    v instanceof Uint32Array ||
    v instanceof Int32Array ||
    v instanceof Float64Array ||
    v instanceof BigUint64Array
  );
}

/**
 * Throw unless `value` is plain state: numbers, bigints, strings, booleans, null/undefined,
 * typed arrays, arrays and plain records of those (no functions, class instances, Maps, Sets,
 * shared buffers). The message names the path of the first offending value.
 */
export function assertPlainState(value: unknown, path = 'state'): void {
  const t = typeof value;
  if (value === null || t === 'undefined' || t === 'number' || t === 'bigint' || t === 'string' || t === 'boolean') return;
  if (isTypedArray(value)) return;
  if (Array.isArray(value)) {
    value.forEach((v, i) => assertPlainState(v, `${path}[${i}]`));
    return;
  }
  if (t === 'object') {
    const proto = Object.getPrototypeOf(value) as unknown;
    if (proto !== Object.prototype && proto !== null) {
      throw new TypeError(`${path} is not plain state (a ${(value as object).constructor?.name ?? 'class instance'})`);
    }
    for (const [k, v] of Object.entries(value as object)) assertPlainState(v, `${path}.${k}`);
    return;
  }
  throw new TypeError(`${path} is not plain state (a ${t})`);
}

/** Deep copy of plain state (typed arrays copied, records and arrays rebuilt). */
export function cloneState<T>(value: T): T {
  if (value === null || typeof value !== 'object') return value;
  if (isTypedArray(value)) return value.slice() as T;
  if (Array.isArray(value)) return value.map((v: unknown) => cloneState(v)) as T;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as object)) out[k] = cloneState(v);
  return out as T;
}
