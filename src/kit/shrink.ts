/**
 * Shrinking a failing operation list to a small one that still fails (delta debugging): the
 * reproduction a fuzzing finding prints. Deterministic; the predicate is called at most
 * `budget` times.
 */

/**
 * Remove chunks of `items` (halves, then quarters, ... then single items) while `stillFails`
 * holds for what is left; returns the smallest list found. `items` itself must fail.
 */
export function shrinkList<T>(items: readonly T[], stillFails: (candidate: readonly T[]) => boolean, budget = 2000): T[] {
  let current = items.slice();
  let calls = 0;
  let chunk = Math.max(1, Math.floor(current.length / 2));
  while (chunk >= 1 && calls < budget) {
    let removedAny = false;
    for (let start = 0; start < current.length && calls < budget; ) {
      const candidate = current.slice(0, start).concat(current.slice(start + chunk));
      calls++;
      if (candidate.length < current.length && stillFails(candidate)) {
        current = candidate;
        removedAny = true;
      } else {
        start += chunk;
      }
    }
    if (!removedAny) {
      if (chunk === 1) break;
      chunk = Math.max(1, Math.floor(chunk / 2));
    }
  }
  return current;
}
