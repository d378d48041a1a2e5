/**
 * A bounded record of reports: the newest `capacity` items are kept, the count of every item
 * ever added is exact. Models whose reports a guest can trigger at will keep them here, so a
 * guest repeating a refused operation cannot grow the VMM's memory (like {@link ModelLog}).
 */

/** The last `capacity` items added, with the exact number added. */
export class RecentList<T> {
  private readonly ring: T[] = [];
  /** Slot the next item goes to once the ring is full. */
  private next = 0;
  private added = 0;

  constructor(readonly capacity = 256) {
    if (!(capacity >= 1)) throw new RangeError(`capacity must be >= 1, got ${capacity}`);
  }

  /** Items ever added (including those no longer kept). */
  get total(): number {
    return this.added;
  }

  /** Add an item; the oldest is dropped once `capacity` are kept. */
  push(item: T): void {
    this.added++;
    if (this.ring.length < this.capacity) {
      this.ring.push(item);
      return;
    }
    this.ring[this.next] = item;
    this.next = (this.next + 1) % this.capacity;
  }

  /** The kept items, oldest first (a new array). */
  entries(): T[] {
    return this.next === 0 ? this.ring.slice() : [...this.ring.slice(this.next), ...this.ring.slice(0, this.next)];
  }

  /** Forget every item and the count. */
  clear(): void {
    this.ring.length = 0;
    this.next = 0;
    this.added = 0;
  }
}
