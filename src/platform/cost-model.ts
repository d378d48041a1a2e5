/**
 * The cost model: what each event of a run costs on real hardware, in nanoseconds. It is the
 * one table behind both uses: the bench applies it to the event counts a run produced
 * ({@link modelLatency}), and a run charges it to the virtual clock as the events happen
 * (platform/timeline.ts: per trapped access in the address space's exit path, per ioctl at the
 * host's syscall entry, per consumed batch as commands × cost + CMD_SYNCs × wait), so the
 * Perfetto trace has a realistic timeline. Users plug in their own with `--cost-model FILE.json`
 * (`cmdqv run` and the bench); a file names only the parameters it changes.
 *
 * Where the defaults come from (order-of-magnitude figures for an Arm server with KVM, stated
 * as assumptions, not measurements of this machine):
 * - `vmExitNs + mmioEmulationNs` = 2.3 µs: an Arm64 KVM MMIO exit to user space and back,
 *   measured at about 2.3 µs on Kunpeng 920 by the kvm-unit-tests micro-benchmarks
 *   (arm/micro-bench `mmio_read_user`); split as trap + return vs QEMU's decode and device model.
 * - `ioctlNs`: a syscall with argument copies and an iommufd object lookup (about a microsecond).
 * - `hostCmdqCommandNs`, `vcmdqCommandNs`: a 16-byte command into a queue in memory (tens of ns).
 * - `syncWaitNs`: a CMD_SYNC round trip on the SMMU (about a microsecond).
 * - `directMmioNs`: an uncached device access that does not trap (PROD write, CONS poll).
 * - `dmaTranslationNs`, `tableWalkNs`: an SMMU IOTLB hit (tens of ns) and a table walk on a miss
 *   (a few dependent memory reads); charged per host-SMMU translation, not in the bench's sums.
 * - `eventIrqNs`: a fault record on its way to the VMM: the host SMMU's event interrupt and the
 *   kernel's threaded handler that reads the record and queues it on the vEVENTQ, waking the
 *   VMM (a couple of microseconds); the VMM's read(2) of the record is charged `ioctlNs` (a
 *   syscall with a copy-out). Charged per record, not in the bench's sums.
 * - Live migration (platform/migration/): `migrationPageNs` = 1311 ns is one 4 KiB page on a
 *   25 Gbit/s migration link (4096 × 8 / 25 ns; QEMU's per-page header is a few bytes and
 *   ignored); device state goes at the same rate, whole 4 KiB units. `migrationRoundNs` is one
 *   dirty-log sync per pre-copy round (KVM_GET_DIRTY_LOG/CLEAR on the RAM slot plus the bitmap
 *   scan: tens of µs for a few GiB). `migrationSwitchoverNs` is the fixed part of the switch:
 *   stopping the vCPUs, the end-of-stream handshake over the link and starting the vCPUs on the
 *   destination (about 100 µs). Re-creating the host objects on the destination is charged per
 *   ioctl at `ioctlNs`, and each drain poll of a queue at `directMmioNs`.
 * The check: NVIDIA reports that CMDQV cuts invalidation time by 70-90% against the trapped
 * path. With these defaults `cmdqv run --ops 64 --batch 4` gives 2.15 µs per batch on a VCMDQ
 * against 18.6 µs trapped (88% less; test/platform/perfetto-trace.test.ts). Larger batches
 * widen the gap (91% at 16) because the trapped path's exits grow with the batch.
 */

/** Parameters in nanoseconds. */
export interface CostModel {
  /** Guest trap to the host and back (KVM MMIO exit + return). */
  vmExitNs: number;
  /** VMM handling of one trapped MMIO access (decode + device model). */
  mmioEmulationNs: number;
  /** One ioctl: syscall entry/exit, argument copies, iommufd object lookup (also a vEVENTQ read(2)). */
  ioctlNs: number;
  /** Host kernel per command: conversion and queue insertion on the host SMMU CMDQ. */
  hostCmdqCommandNs: number;
  /** One CMD_SYNC completion wait on a hardware queue (SMMU CMDQ or VCMDQ). */
  syncWaitNs: number;
  /** Guest per command written into a VCMDQ ring (no trap). */
  vcmdqCommandNs: number;
  /** One uncached MMIO access that does not trap (VCMDQ PROD write / CONS poll). */
  directMmioNs: number;
  /** One DMA translation by the host SMMU that hits its IOTLB. */
  dmaTranslationNs: number;
  /** Each page-table walk a DMA translation needed (an IOTLB miss), on top of the translation. */
  tableWalkNs: number;
  /** Host side of one fault record: event interrupt, handler, vEVENTQ report (see the module comment). */
  eventIrqNs: number;
  /** One 4 KiB page of guest RAM over the migration link (its bandwidth: 4096 B per this time). */
  migrationPageNs: number;
  /** One pre-copy round's dirty-log sync (get and clear the log, scan the bitmap). */
  migrationRoundNs: number;
  /** Fixed cost of the switch to the destination: stop, end-of-stream handshake, start there. */
  migrationSwitchoverNs: number;
}

/** Defaults (assumptions, see the module comment). */
export const DEFAULT_COST_MODEL: CostModel = {
  vmExitNs: 1500,
  mmioEmulationNs: 800,
  ioctlNs: 1200,
  hostCmdqCommandNs: 60,
  syncWaitNs: 1000,
  vcmdqCommandNs: 20,
  directMmioNs: 150,
  dmaTranslationNs: 50,
  tableWalkNs: 500,
  eventIrqNs: 2000,
  migrationPageNs: 1311,
  migrationRoundNs: 20_000,
  migrationSwitchoverNs: 100_000,
};

/** No cost at all: under `-accel qtest` no guest runs and QEMU's clock moves only by clock_step. */
export const ZERO_COST_MODEL: CostModel = {
  vmExitNs: 0,
  mmioEmulationNs: 0,
  ioctlNs: 0,
  hostCmdqCommandNs: 0,
  syncWaitNs: 0,
  vcmdqCommandNs: 0,
  directMmioNs: 0,
  dmaTranslationNs: 0,
  tableWalkNs: 0,
  eventIrqNs: 0,
  migrationPageNs: 0,
  migrationRoundNs: 0,
  migrationSwitchoverNs: 0,
};

/** Event counts of one path over a run. */
export interface PathCounts {
  operations: number;
  commands: number;
  syncs: number;
  exits: number;
  ioctls: number;
  directAccesses: number;
}

/** Modelled latency of one path: total and per operation. */
export function modelLatency(c: PathCounts, p: CostModel): { totalNs: number; perOpNs: number } {
  const totalNs =
    c.exits * (p.vmExitNs + p.mmioEmulationNs) +
    c.ioctls * p.ioctlNs +
    (c.ioctls > 0 ? c.commands * p.hostCmdqCommandNs : c.commands * p.vcmdqCommandNs) +
    c.syncs * p.syncWaitNs +
    c.directAccesses * p.directMmioNs;
  return { totalNs, perOpNs: c.operations ? totalNs / c.operations : 0 };
}

/** Validate a user cost model: every field a non-negative number. */
export function parseCostModel(json: unknown, source: string): CostModel {
  if (typeof json !== 'object' || json === null) throw new Error(`${source}: expected a JSON object`);
  const out: Record<string, number> = { ...DEFAULT_COST_MODEL };
  for (const [k, v] of Object.entries(json)) {
    if (!Object.hasOwn(DEFAULT_COST_MODEL, k)) throw new Error(`${source}: unknown parameter '${k}' (known: ${Object.keys(DEFAULT_COST_MODEL).join(', ')})`);
    if (typeof v !== 'number' || !(v >= 0) || !Number.isFinite(v)) throw new Error(`${source}: '${k}' must be a non-negative number of nanoseconds`);
    out[k] = v;
  }
  return out as unknown as CostModel;
}
