/**
 * Reading 16-byte commands out of a queue in host-physical memory, the hot path of every command
 * engine (the SMMU's CMDQ and the CMDQV's VCMDQs). Queues are naturally aligned, so a command
 * never straddles a 64 KiB memory chunk; the reader keeps the chunk it last used as words and
 * looks up a new one only when the address leaves it.
 *
 * Engines walk a queue in runs ({@link CommandReader.span}): the bounds check and the chunk
 * look-up are made once per run of commands that lie together in one chunk, and the commands of
 * the run are then read straight out of {@link CommandReader.words}.
 */

import { CMDQ_ENTRY_BYTES } from '../../arch/smmuv3/queue.js';
import { WordWindow, type SparseMemory } from '../../kit/sparse-memory.js';

/** A cursor over host memory for command fetches. */
export class CommandReader {
  private readonly win = new WordWindow();
  /** [lo, hi) is the address range `win` maps (empty when none). */
  private lo = 0;
  private hi = 0;
  /** The words the last {@link span} mapped: its first command starts at `words[at]`. */
  words: Uint32Array = this.win.words;
  at = 0;
  /** {@link SparseMemory.generation} the window was mapped under (a replaced or dropped chunk ends it). */
  private gen: number;

  constructor(private readonly mem: SparseMemory) {
    this.gen = mem.generation;
  }

  /**
   * Forget the mapped chunk. Not needed between walks: a window stays valid while the memory's
   * {@link SparseMemory.generation} stays (no chunk replaced or dropped), checked per run.
   */
  reset(): void {
    this.lo = 0;
    this.hi = 0;
  }

  /** Map the chunk holding `addr`; false when it lies outside memory or cannot be seen as words. */
  private map(addr: number): boolean {
    const mem = this.mem;
    if (addr < 0 || addr + CMDQ_ENTRY_BYTES > mem.size || !mem.mapWords(addr, this.win)) {
      this.reset();
      return false;
    }
    this.lo = addr;
    this.gen = mem.generation;
    // A window never reaches past the end of memory.
    this.hi = Math.min(addr + this.win.bytes, mem.size);
    return true;
  }

  /**
   * How many whole commands from `addr` on lie in one directly readable stretch of memory
   * (0 when the command at `addr` must go through {@link read}); the first is at
   * `words[at]`, the next four words on, and so on.
   */
  span(addr: number): number {
    if ((addr >= this.hi || addr < this.lo || this.gen !== this.mem.generation) && !this.map(addr)) return 0;
    const win = this.win;
    this.words = win.words;
    this.at = win.index + ((addr - this.lo) >>> 2);
    return Math.floor((this.hi - addr) / CMDQ_ENTRY_BYTES);
  }

  /**
   * The next run of a ring walk: the commands from index `cons` on (the ring at `base` holds
   * `entries` commands; indexes wrap with `wrapMask`, PROD is `end`) that can be read together,
   * stopping at PROD, the ring's end and the end of the readable stretch. The first is at
   * `words[at]`. A command that cannot be seen directly is read alone into `one` (a run of 1,
   * `words` = `one`, `at` = 0). 0 when the command lies outside memory (an abort on command fetch).
   */
  nextRun(base: number, cons: number, end: number, entries: number, wrapMask: number, one: Uint32Array): number {
    const slot = cons & (entries - 1);
    const addr = base + slot * CMDQ_ENTRY_BYTES;
    let run = this.span(addr);
    if (run === 0) {
      if (!this.read(addr, one)) return 0;
      this.words = one;
      this.at = 0;
      return 1;
    }
    const pending = (end - cons) & wrapMask;
    if (run > pending) run = pending;
    if (run > entries - slot) run = entries - slot;
    return run;
  }

  /**
   * Read the command at `addr` into `w[0..3]`; false when it lies outside memory (an abort on
   * command fetch).
   */
  read(addr: number, w: Uint32Array): boolean {
    if (this.span(addr) === 0) {
      const mem = this.mem;
      if (addr < 0 || addr + CMDQ_ENTRY_BYTES > mem.size) return false;
      w[0] = mem.read32(addr);
      w[1] = mem.read32(addr + 4);
      w[2] = mem.read32(addr + 8);
      w[3] = mem.read32(addr + 12);
      return true;
    }
    const c = this.words;
    const i = this.at;
    w[0] = c[i]!;
    w[1] = c[i + 1]!;
    w[2] = c[i + 2]!;
    w[3] = c[i + 3]!;
    return true;
  }
}
