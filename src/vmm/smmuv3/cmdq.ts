/**
 * The trapped SMMU command queue of the accelerated SMMUv3: what each opcode does (
 * docs/reference/qemu-accel-smmuv3.md §12.2, as data) and the batching of invalidations forwarded to the host with
 * IOMMU_HWPT_INVALIDATE.
 *
 * Batching (a deliberate difference from QEMU, which issues one ioctl per command):
 * consecutive forwardable commands are collected and sent in one ioctl when a CMD_SYNC
 * arrives, before any command that is not forwarded (so ordering with STE installs is kept),
 * when the batch is full ({@link MAX_BATCH}), and when the queue stops (empty or error). If
 * the host rejects a batch, its commands are re-issued one per ioctl, from the first the kernel
 * did not handle (its entry_num), to find the one the host refuses; the queue then stops at that
 * command with CERROR_ILL, exactly where QEMU's per-command forwarding would have stopped.
 * Invalidations are idempotent, so a command re-sent after a failure that was not about it is
 * harmless.
 */

import { LITTLE_ENDIAN_HOST } from '../../kit/sparse-memory.js';
import { Field } from '../../kit/bits.js';
import { Op } from '../../arch/smmuv3/commands.js';
import { CMDQ_ENTRY_BYTES } from '../../arch/smmuv3/queue.js';

/** How the accelerated SMMUv3 handles an opcode. */
export type CommandClass =
  /** CMD_SYNC: complete (CS=IRQ pulses the CMD_SYNC interrupt). */
  | 'sync'
  /** No effect. */
  | 'noop'
  /** Install the STE of one StreamID on the host. */
  | 'cfgi_ste'
  /** Install the STEs of a StreamID range (CFGI_ALL is range 31). */
  | 'cfgi_ste_range'
  /** Forwarded when the StreamID names a device with a vDEVICE. */
  | 'forward_sid'
  /** Forwarded (when a vIOMMU exists). */
  | 'forward'
  /** ATC_INV: forwarded when ATS is advertised and the device has a vDEVICE, else unhandled. */
  | 'atc_inv'
  /** Traced as unhandled, no error. */
  | 'unhandled';

/** Opcode → handling; opcodes absent here are illegal (CERROR_ILL). */
export const COMMAND_TABLE: ReadonlyMap<number, CommandClass> = new Map<number, CommandClass>([
  [Op.SYNC, 'sync'],
  [Op.PREFETCH_CFG, 'noop'],
  [Op.PREFETCH_ADDR, 'noop'],
  [Op.CFGI_STE, 'cfgi_ste'],
  [Op.CFGI_STE_RANGE, 'cfgi_ste_range'],
  [Op.CFGI_CD, 'forward_sid'],
  [Op.CFGI_CD_ALL, 'forward_sid'],
  [Op.TLBI_NH_ALL, 'forward'],
  [Op.TLBI_NH_ASID, 'forward'],
  [Op.TLBI_NH_VA, 'forward'],
  [Op.TLBI_NH_VAA, 'forward'],
  [Op.TLBI_NSNH_ALL, 'forward'],
  [Op.ATC_INV, 'atc_inv'],
  [Op.TLBI_EL3_ALL, 'unhandled'],
  [Op.TLBI_EL3_VA, 'unhandled'],
  [Op.TLBI_EL2_ALL, 'unhandled'],
  [Op.TLBI_EL2_ASID, 'unhandled'],
  [Op.TLBI_EL2_VA, 'unhandled'],
  [Op.TLBI_EL2_VAA, 'unhandled'],
  [Op.TLBI_S12_VMALL, 'unhandled'],
  [Op.TLBI_S2_IPA, 'unhandled'],
  [Op.PRI_RESP, 'unhandled'],
  [Op.RESUME, 'unhandled'],
  [Op.STALL_TERM, 'unhandled'],
]);

/** dword0 bit 10: SSec (secure stream); a non-secure queue may not set it (CERROR_ILL). */
export const CMD_SSEC = new Field('SSEC', 10, 1);

/**
 * Commands per IOMMU_HWPT_INVALIDATE at most. The kernel takes any entry_num (it copies the
 * array and issues it to the CMDQ in 63-command chunks, each with a CMD_SYNC), so this bounds
 * only the VMM's buffer: 64 KiB. A guest driver's own batches (64 with the CMD_SYNC in Linux)
 * stay one ioctl each; a long run of TLBIs without a CMD_SYNC costs one ioctl per 4096.
 */
export const MAX_BATCH = 4096;

/**
 * Forwardable commands waiting to be sent: their words back to back and the CMDQ_CONS value
 * pointing at each (so a refused command can stop the queue exactly there). Preallocated:
 * adding a command allocates nothing.
 */
export class CommandBatch {
  readonly words = new Uint32Array(MAX_BATCH * 4);
  readonly cons = new Float64Array(MAX_BATCH);
  count = 0;

  /** Append the command in `w` (4 words) found at `cons`. */
  push(w: Uint32Array, cons: number): void {
    const i = this.count * 4;
    this.words[i] = w[0]!;
    this.words[i + 1] = w[1]!;
    this.words[i + 2] = w[2]!;
    this.words[i + 3] = w[3]!;
    this.cons[this.count++] = cons;
  }

  /** Append the command at `src[at..at + 3]` (e.g. straight from the mapped ring) found at `cons`. */
  pushFrom(src: Uint32Array, at: number, cons: number): void {
    const i = this.count * 4;
    const words = this.words;
    words[i] = src[at]!;
    words[i + 1] = src[at + 1]!;
    words[i + 2] = src[at + 2]!;
    words[i + 3] = src[at + 3]!;
    this.cons[this.count++] = cons;
  }

  /**
   * Append the `n` commands at `src[at..]` (a run of consecutive ring slots that does not wrap)
   * in one block copy; the first was found at `cons`, the others at the CONS values after it.
   */
  pushRun(src: Uint32Array, at: number, n: number, cons: number): void {
    const count = this.count;
    this.words.set(src.subarray(at, at + n * 4), count * 4);
    const consOf = this.cons;
    for (let j = 0; j < n; j++) consOf[count + j] = cons + j;
    this.count = count + n;
  }

  get full(): boolean {
    return this.count >= MAX_BATCH;
  }

  /**
   * The 16-byte entries of commands [from, from + n), little-endian, as iommufd takes them. On
   * a little-endian host this is a view of the batch (no copy): use it before the batch changes.
   */
  bytes(from = 0, n = this.count - from): Uint8Array {
    if (LITTLE_ENDIAN_HOST) return new Uint8Array(this.words.buffer, from * CMDQ_ENTRY_BYTES, n * CMDQ_ENTRY_BYTES);
    const out = new Uint8Array(n * CMDQ_ENTRY_BYTES);
    const dv = new DataView(out.buffer);
    for (let k = 0; k < n * 4; k++) dv.setUint32(k * 4, this.words[from * 4 + k]!, true);
    return out;
  }
}

/** Result of flushing a batch: the index of the command the host refused, if any. */
export interface FlushResult {
  readonly failedAt: number | undefined;
  readonly error: unknown;
  /** Ioctls issued. */
  readonly calls: number;
  /**
   * The batch's own failure when every command then went through on its own (a transient host
   * refusal): nothing was lost, but it is reported, not dropped.
   */
  readonly batchError?: unknown;
}

const FLUSHED: FlushResult = Object.freeze({ failedAt: undefined, error: undefined, calls: 1 });

/**
 * Send the batch with `issue` (one IOMMU_HWPT_INVALIDATE). On failure re-issue the commands one
 * at a time to find the refused one. The batch is left untouched (the caller clears it).
 */
export function flushCommands(batch: CommandBatch, issue: (entries: Uint8Array) => void): FlushResult {
  if (batch.count === 0) return { failedAt: undefined, error: undefined, calls: 0 };
  let handled = 0;
  let refused: unknown;
  try {
    issue(batch.bytes());
    return FLUSHED;
  } catch (batchError) {
    if (batch.count === 1) return { failedAt: 0, error: batchError, calls: 1 };
    refused = batchError;
    // The kernel reports how many entries it handled before the refused one: start there.
    const n = (batchError as { entryNum?: unknown }).entryNum;
    if (typeof n === 'number' && Number.isInteger(n) && n >= 0 && n < batch.count) handled = n;
  }
  let calls = 1;
  for (let i = handled; i < batch.count; i++) {
    calls++;
    try {
      issue(batch.bytes(i, 1));
    } catch (e) {
      return { failedAt: i, error: e, calls };
    }
  }
  // Every command went through on its own: the batch failure was not about a command.
  return { failedAt: undefined, error: undefined, calls, batchError: refused };
}
