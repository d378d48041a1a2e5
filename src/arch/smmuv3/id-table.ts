/**
 * The IOTLB's hash table: open addressing from a page number to an entry id.
 *
 * Keys travel as two int32 halves (hi, lo): small integers, so no call boxes a heap number (a
 * double argument to a call TurboFan does not inline would). A slot is four int32s,
 * [lo, hi, id, unused]: a probe reads one 16-byte slot. Linear probing, backward-shift deletion
 * (no tombstones), load factor at most 1/2.
 */

/** No id: an empty slot, or a key not present. */
export const NONE = -1;
const SLOT = 4;

/** Slot hash of a key's halves (fmix32). */
function hash32(hi: number, lo: number): number {
  let h = lo ^ Math.imul(hi, 0x9e3779b1);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/**
 * Page number (as int32 halves; the high half is never negative, -1 marks an empty slot) →
 * entry id; grows and shrinks with its contents.
 */
export class IdTable {
  /** slots[4i] = lo, slots[4i + 1] = hi (NONE when empty), slots[4i + 2] = id. */
  private slots: Int32Array;
  private mask: number;
  /** Number of keys present. */
  count = 0;

  constructor(capacity = 8) {
    this.slots = emptySlots(capacity);
    this.mask = capacity - 1;
  }

  /** Number of slots (for iteration with {@link idAt}). */
  get capacity(): number {
    return this.mask + 1;
  }

  /** Id stored in slot `i`, or NONE for an empty slot. */
  idAt(i: number): number {
    return this.slots[SLOT * i + 1] === NONE ? NONE : this.slots[SLOT * i + 2];
  }

  get(hi: number, lo: number): number {
    const slots = this.slots;
    const mask = this.mask;
    for (let i = hash32(hi, lo) & mask; ; i = (i + 1) & mask) {
      const h = slots[SLOT * i + 1];
      if (h === hi && slots[SLOT * i] === lo) return slots[SLOT * i + 2];
      if (h === NONE) return NONE;
    }
  }

  /** Insert or replace. */
  set(hi: number, lo: number, id: number): void {
    this.put(hi, lo, id);
  }

  /** Insert or replace, returning the id the key had (NONE: it was not present). One probe. */
  put(hi: number, lo: number, id: number): number {
    const slots = this.slots;
    const mask = this.mask;
    for (let i = hash32(hi, lo) & mask; ; i = (i + 1) & mask) {
      const h = slots[SLOT * i + 1];
      if (h === hi && slots[SLOT * i] === lo) {
        const old = slots[SLOT * i + 2];
        slots[SLOT * i + 2] = id;
        return old;
      }
      if (h === NONE) {
        slots[SLOT * i] = lo;
        slots[SLOT * i + 1] = hi;
        slots[SLOT * i + 2] = id;
        if (++this.count * 2 > mask + 1) this.resize(2 * (mask + 1));
        return NONE;
      }
    }
  }

  /** Remove a key that is present. */
  delete(hi: number, lo: number): void {
    const slots = this.slots;
    const mask = this.mask;
    let i = hash32(hi, lo) & mask;
    while (slots[SLOT * i + 1] !== hi || slots[SLOT * i] !== lo) i = (i + 1) & mask;
    // Backward shift: pull later members of the probe run into the hole unless their home
    // slot lies cyclically in (hole, their slot], where moving them would hide them.
    for (let j = (i + 1) & mask; slots[SLOT * j + 1] !== NONE; j = (j + 1) & mask) {
      const home = hash32(slots[SLOT * j + 1], slots[SLOT * j]) & mask;
      const stays = i <= j ? home > i && home <= j : home > i || home <= j;
      if (!stays) {
        slots[SLOT * i] = slots[SLOT * j];
        slots[SLOT * i + 1] = slots[SLOT * j + 1];
        slots[SLOT * i + 2] = slots[SLOT * j + 2];
        i = j;
      }
    }
    slots[SLOT * i + 1] = NONE;
    this.count--;
    // Shrink a table that emptied out, so walking its slots stays proportional to its contents.
    if (mask >= 64 && this.count * 8 < mask + 1) this.resize((mask + 1) / 4);
  }

  private resize(capacity: number): void {
    const old = this.slots;
    this.slots = emptySlots(capacity);
    this.mask = capacity - 1;
    this.count = 0;
    for (let i = 0; i < old.length; i += SLOT) {
      if (old[i + 1] !== NONE) this.set(old[i + 1], old[i], old[i + 2]);
    }
  }
}

function emptySlots(capacity: number): Int32Array {
  const slots = new Int32Array(SLOT * capacity);
  for (let i = 1; i < slots.length; i += SLOT) slots[i] = NONE;
  return slots;
}
