/**
 * The differences between QEMU 11.1 and cmdqv's drop-in that are facts of the two programs, not
 * bugs: `cmdqv difftest` skips a reply that an entry here matches and counts it under the
 * entry's id. Every entry says why the difference is right. Anything not listed is a
 * divergence.
 */

/** One compared request: the line sent and what each program answered. */
export interface ComparedReply {
  readonly request: string;
  readonly qemu: string;
  readonly cmdqv: string;
}

/** A documented, accepted difference. */
export interface AllowedDifference {
  readonly id: string;
  /** Why the difference is a fact of the two programs rather than a bug. */
  readonly reason: string;
  /** Whether this reply pair is an instance of the difference. */
  readonly matches: (r: ComparedReply) => boolean;
}

/** The allow-list (docs/reference/qemu-smmuv3.md §9 lists the same entries). */
export const ALLOWED_DIFFERENCES: readonly AllowedDifference[] = [];
