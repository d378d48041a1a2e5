/**
 * A cost model of invalidation latency on real hardware, applied to the event counts a run
 * really produced (VM exits, ioctls, commands, CMD_SYNCs on each path). Every parameter is
 * named and documented; users can plug in their own with `--cost-model FILE.json`.
 *
 * The defaults are order-of-magnitude figures for an Arm server with KVM (stated as
 * assumptions, not measurements of this machine): a VM exit with return, QEMU's MMIO
 * emulation of a queue register write, an ioctl into iommufd with the kernel's command
 * conversion, a command written to the host SMMU queue, a CMD_SYNC round trip on the SMMU,
 * and a guest command in a VCMDQ ring consumed by the CMDQV.
 */

/** Parameters in nanoseconds. */
export interface CostModel {
  /** Guest trap to the host and back (KVM MMIO exit + return). */
  vmExitNs: number;
  /** VMM handling of one trapped MMIO access (decode + device model). */
  mmioEmulationNs: number;
  /** One ioctl: syscall entry/exit, argument copies, iommufd object lookup. */
  ioctlNs: number;
  /** Host kernel per command: conversion and queue insertion on the host SMMU CMDQ. */
  hostCmdqCommandNs: number;
  /** One CMD_SYNC completion wait on a hardware queue (SMMU CMDQ or VCMDQ). */
  syncWaitNs: number;
  /** Guest per command written into a VCMDQ ring (no trap). */
  vcmdqCommandNs: number;
  /** One uncached MMIO access that does not trap (VCMDQ PROD write / CONS poll). */
  directMmioNs: number;
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
    if (!(k in DEFAULT_COST_MODEL)) throw new Error(`${source}: unknown parameter '${k}' (known: ${Object.keys(DEFAULT_COST_MODEL).join(', ')})`);
    if (typeof v !== 'number' || !(v >= 0)) throw new Error(`${source}: '${k}' must be a non-negative number of nanoseconds`);
    out[k] = v;
  }
  return out as unknown as CostModel;
}
