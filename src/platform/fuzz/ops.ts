/**
 * Fuzzing operations: what a hostile guest can do to the machine, as plain data (so a finding's
 * reproduction is a JSON list that `cmdqv fuzz --replay` re-runs), and how each is applied.
 */

import type { AccessSize } from '../../kit/memory-region.js';
import type { Machine } from '../machine.js';

/** One guest operation. Values are hex strings where they may exceed 2^53. */
export type FuzzOp =
  | { readonly op: 'write'; readonly addr: number; readonly size: AccessSize; readonly value: string }
  | { readonly op: 'read'; readonly addr: number; readonly size: AccessSize }
  | { readonly op: 'ram'; readonly gpa: number; readonly words: readonly number[] }
  | { readonly op: 'loop' }
  | { readonly op: 'reset' }
  /** The guest's passthrough device DMAs (a guest programs its device to do so). */
  | { readonly op: 'dma'; readonly iova: number; readonly write: boolean };

/** Main-loop work one `loop` operation may run before it counts as a livelock. */
export const MAIN_LOOP_LIMIT = 10_000;

const DMA_PATTERN = new Uint8Array([0xd5, 0xa5, 0x5a, 0x3c]);

/** A broken invariant: what kind, and a message naming it. */
export class InvariantError extends Error {
  constructor(
    readonly kind: 'hang' | 'memory' | 'reset' | 'isolation',
    message: string,
  ) {
    super(message);
    this.name = 'InvariantError';
  }
}

/** Apply one operation as the guest (or the machine's owner, for `reset`). */
export function applyOp(m: Machine, o: FuzzOp): void {
  switch (o.op) {
    case 'write':
      m.write(o.addr, o.size, BigInt(o.value));
      break;
    case 'read':
      m.read(o.addr, o.size);
      break;
    case 'ram': {
      const bytes = new Uint8Array(o.words.length * 4);
      const view = new DataView(bytes.buffer);
      o.words.forEach((w, i) => view.setUint32(i * 4, w >>> 0, true));
      m.writeRam(o.gpa, bytes);
      break;
    }
    case 'loop': {
      // The main loop must settle: fd handlers that keep re-arming themselves are a livelock.
      const ran = m.clock.runUntilIdle(MAIN_LOOP_LIMIT);
      if (ran >= MAIN_LOOP_LIMIT) throw new InvariantError('hang', `the main loop ran ${ran} handlers without settling (livelock)`);
      break;
    }
    case 'reset':
      m.reset();
      break;
    case 'dma': {
      const dev = m.devices[0];
      if (!dev) break;
      const hostDev = m.host.devices[dev.hostIndex]!;
      if (o.write) hostDev.dmaWrite(o.iova, DMA_PATTERN);
      else hostDev.dmaRead(o.iova, DMA_PATTERN.length);
      break;
    }
  }
}
