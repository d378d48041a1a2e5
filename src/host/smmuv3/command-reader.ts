/**
 * Reading 16-byte commands out of a queue in host-physical memory, the hot path of every command
 * engine (the SMMU's CMDQ and the CMDQV's VCMDQs). Queues are naturally aligned, so a command
 * never straddles a 64 KiB memory chunk; the reader keeps the chunk it last used as words and
 * looks up a new one only when the address leaves it.
 */

import { CHUNK_SIZE, type SparseMemory } from '../../kit/sparse-memory.js';

/** A cursor over host memory for command fetches. */
export class CommandReader {
  private chunk: Uint32Array | undefined;
  /** [chunkBase, chunkEnd) is the cached chunk's address range (empty when none). */
  private chunkBase = 0;
  private chunkEnd = 0;

  constructor(private readonly mem: SparseMemory) {}

  /** Forget the cached chunk (call before a new walk). */
  reset(): void {
    this.chunk = undefined;
    this.chunkBase = 0;
    this.chunkEnd = 0;
  }

  /**
   * Read the command at `addr` into `w[0..3]`; false when it lies outside memory (an abort on
   * command fetch).
   */
  read(addr: number, w: Uint32Array): boolean {
    if (addr >= this.chunkEnd || addr < this.chunkBase) {
      // Leaving the cached chunk (rare: once per 4096 commands): bounds check and look it up.
      const mem = this.mem;
      if (addr < 0 || addr + 16 > mem.size) return false;
      this.chunkBase = addr - (addr % CHUNK_SIZE);
      this.chunkEnd = this.chunkBase + CHUNK_SIZE;
      this.chunk = mem.chunkWords(addr);
    }
    const c = this.chunk;
    if (c) {
      const i = (addr - this.chunkBase) >>> 2;
      w[0] = c[i]!;
      w[1] = c[i + 1]!;
      w[2] = c[i + 2]!;
      w[3] = c[i + 3]!;
    } else {
      const mem = this.mem;
      w[0] = mem.read32(addr);
      w[1] = mem.read32(addr + 4);
      w[2] = mem.read32(addr + 8);
      w[3] = mem.read32(addr + 12);
    }
    return true;
  }
}
