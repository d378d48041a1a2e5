/**
 * Reading 16-byte commands out of a queue in host-physical memory, the hot path of every command
 * engine (the SMMU's CMDQ and the CMDQV's VCMDQs). Queues are naturally aligned, so a command
 * never straddles a 64 KiB memory chunk; the reader keeps the chunk it last used as words and
 * looks up a new one only when the address leaves it.
 */

import { CMDQ_ENTRY_BYTES } from '../../arch/smmuv3/queue.js';
import { WordWindow, type SparseMemory } from '../../kit/sparse-memory.js';

/** A cursor over host memory for command fetches. */
export class CommandReader {
  private readonly win = new WordWindow();
  /** [lo, hi) is the address range `win` maps (empty when none). */
  private lo = 0;
  private hi = 0;

  constructor(private readonly mem: SparseMemory) {}

  /** Forget the mapped chunk (call before a new walk). */
  reset(): void {
    this.lo = 0;
    this.hi = 0;
  }

  /**
   * Read the command at `addr` into `w[0..3]`; false when it lies outside memory (an abort on
   * command fetch).
   */
  read(addr: number, w: Uint32Array): boolean {
    const win = this.win;
    if (addr >= this.hi || addr < this.lo) {
      // Leaving the mapped chunk (rare: once per 4096 commands): bounds check and map the next.
      const mem = this.mem;
      if (addr < 0 || addr + CMDQ_ENTRY_BYTES > mem.size) return false;
      if (!mem.mapWords(addr, win)) {
        this.reset();
        w[0] = mem.read32(addr);
        w[1] = mem.read32(addr + 4);
        w[2] = mem.read32(addr + 8);
        w[3] = mem.read32(addr + 12);
        return true;
      }
      this.lo = addr;
      this.hi = addr + win.bytes;
    }
    const c = win.words;
    const i = win.index + ((addr - this.lo) >>> 2);
    w[0] = c[i]!;
    w[1] = c[i + 1]!;
    w[2] = c[i + 2]!;
    w[3] = c[i + 3]!;
    return true;
  }
}
