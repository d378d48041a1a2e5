/**
 * SMMUv3 circular-queue index arithmetic (docs/reference/smmuv3.md §3.2): an index register holds
 * `wrap | index` in LOG2SIZE + 1 bits; empty when equal, full when only the wrap bits differ.
 */

/** Bytes per command-queue entry (a command is two dwords). */
export const CMDQ_ENTRY_BYTES = 16;
/** Bytes per event-queue entry (an event record is four dwords). */
export const EVENTQ_ENTRY_BYTES = 32;

/** Mask of the index bits. */
export function qIndexMask(log2: number): number {
  return log2 >= 32 ? 0xffff_ffff : ((1 << log2) >>> 0) - 1;
}

/** Mask of index + wrap bits. */
export function qWrapMask(log2: number): number {
  return log2 >= 31 ? 0xffff_ffff : (1 << (log2 + 1)) - 1;
}

/** Slot number of an index register value. */
export function qIndex(v: number, log2: number): number {
  return v & qIndexMask(log2);
}

/** Wrap bit of an index register value. */
export function qWrap(v: number, log2: number): number {
  return (v >>> log2) & 1;
}

/** Advance `v` by `n` slots (wrap toggles on overflow; bits above wrap are dropped). */
export function qAdvance(v: number, n: number, log2: number): number {
  return ((v & qWrapMask(log2)) + n) & qWrapMask(log2);
}

/** Whether the queue is empty. */
export function qEmpty(prod: number, cons: number, log2: number): boolean {
  const m = qWrapMask(log2);
  return (prod & m) === (cons & m);
}

/** Whether the queue is full. */
export function qFull(prod: number, cons: number, log2: number): boolean {
  return qIndex(prod, log2) === qIndex(cons, log2) && qWrap(prod, log2) !== qWrap(cons, log2);
}

/** Number of entries between cons and prod. */
export function qUsed(prod: number, cons: number, log2: number): number {
  // Index + wrap form a (log2 + 1)-bit counter: the distance is their difference modulo 2^(log2 + 1).
  const m = qWrapMask(log2);
  return log2 >= 31 ? ((prod >>> 0) - (cons >>> 0) + 2 ** 32) % 2 ** 32 : ((prod & m) - (cons & m)) & m;
}
