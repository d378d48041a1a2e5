/**
 * The web view's HTTP API as types: what `cmdqv serve` answers and what the page (web/) reads.
 * Plain data only (numbers, strings, arrays): this file imports nothing, so the page's bundle
 * takes it as types alone.
 *
 * Routes (all JSON unless said otherwise; errors are `{ "error": "..." }` with status 4xx/5xx):
 * - `GET  /api/state`                       → {@link MachineState}
 * - `POST /api/run`      {@link RunRequest} → {@link RunSummary} (then a `state` event)
 * - `POST /api/inject`                      → {@link InjectSummary} (then a `state` event)
 * - `POST /api/reset`                       → {@link MachineState} (then a `state` event)
 * - `POST /api/snapshot`                    → {@link SnapshotSaved}: the VM saved into the session (then a `state` event)
 * - `GET  /api/snapshots`                   → {@link SnapshotInfo}[] (oldest first; the session keeps a few)
 * - `POST /api/restore`  `{ "id": N }`      → {@link MachineState}: the VM of snapshot N, on a fresh host (then a `state` event)
 * - `GET  /api/snapshot-image?id=N`         → the image (application/octet-stream), as `Machine.save()` writes it
 * - `GET  /api/compare?ops=N&batch=N`       → {@link CompareTable}
 * - `GET  /api/trace?path=trapped|cmdqv&ops=N&batch=N` → the Chrome/Perfetto JSON the run writes,
 *   with the workload's window in the {@link WORKLOAD_HEADER} header
 * - `GET  /api/registers`                   → {@link RegisterBlock}[]
 * - `GET  /api/register?block=ID&name=NAME` → {@link RegisterReadout}
 * - `GET  /api/events`                      → server-sent events: `state` ({@link MachineState}) after every change
 */

/** Counters on each seam of the stack, since the machine was created or last reset. */
export interface SeamCounters {
  /** guest ↔ VMM: accesses that trapped (VM exits). */
  readonly vmExits: number;
  /** guest → CMDQV silicon: accesses to the mapped VINTF page0 that did not trap. */
  readonly directAccesses: number;
  /** VMM ↔ host kernel: ioctls (all), and IOMMU_HWPT_INVALIDATE calls among them. */
  readonly ioctls: number;
  readonly invalidateIoctls: number;
  /** host kernel → host SMMU: commands the SMMU's own command queue consumed. */
  readonly hostCmdqCommands: number;
  /** CMDQV silicon: commands the VCMDQs consumed. */
  readonly vcmdqCommands: number;
  /** Host SMMU DMA translations. */
  readonly translations: number;
  /** Modelled time (virtual clock, ns). */
  readonly modelNs: number;
}

/** One guest VCMDQ (a logical queue of VINTF0) as the guest reads it, with the host's queue behind it. */
export interface VcmdqRow {
  readonly smmu: string;
  readonly lvcmdq: number;
  /** The iommufd HW queue object backing it (undefined: not allocated). */
  readonly hwQueueId: number | undefined;
  readonly enabled: boolean;
  /** PROD and CONS indexes (with their wrap bit), the ring's entries and the commands waiting. */
  readonly prod: number;
  readonly cons: number;
  readonly entries: number;
  readonly occupancy: number;
  /** CONS.ERR: the last command error code (0 none, 1 CERROR_ILL, ...). */
  readonly consErr: number;
  /** GERROR bits not yet acknowledged in GERRORN (empty: no error outstanding). */
  readonly errors: readonly string[];
}

/** An SMMU of the machine and where its registers are. */
export interface SmmuInfo {
  readonly id: string;
  readonly base: number;
  readonly cmdqvBase: number | undefined;
}

/** The workload settings a run uses (the `cmdqv serve` options give the defaults). */
export interface RunRequest {
  readonly ops: number;
  readonly batch: number;
}

/** The whole page's state. */
export interface MachineState {
  /** The QEMU line the machine was built from. */
  readonly qemu: readonly string[];
  readonly defaults: RunRequest;
  readonly smmus: readonly SmmuInfo[];
  readonly counters: SeamCounters;
  readonly vcmdqs: readonly VcmdqRow[];
  /** Recent error reports, guest-error log entries and trace lines, oldest first. */
  readonly events: readonly string[];
  /** Runs and injections since the machine was created or reset. */
  readonly runs: number;
  readonly injections: number;
}

/** A VM snapshot the session keeps. */
export interface SnapshotInfo {
  readonly id: number;
  /** The image's size. */
  readonly bytes: number;
  /** Modelled time (virtual clock, ns) of the VM when saved. */
  readonly modelNs: number;
  /** Runs and injections the page had counted when it was saved. */
  readonly runs: number;
  readonly injections: number;
  /** Whether the guest had booted its IOMMU drivers (they are in the image then). */
  readonly guestBooted: boolean;
}

/** What Save did: the new snapshot, all the session keeps, and the state. */
export interface SnapshotSaved {
  readonly saved: SnapshotInfo;
  readonly snapshots: readonly SnapshotInfo[];
  readonly state: MachineState;
}

/** Counters of one invalidation path in a run. */
export interface PathSummary {
  readonly commands: number;
  readonly batches: number;
  readonly exits: number;
  readonly ioctls: number;
  readonly modelNs: number;
}

/** What one workload run did. */
export interface RunSummary {
  readonly ops: number;
  readonly batch: number;
  readonly vcmdq: PathSummary;
  readonly smmuCmdq: PathSummary;
  readonly exits: number;
  readonly directAccesses: number;
  readonly dmaPassed: number;
  readonly dmaFailed: number;
  readonly modelNs: number;
  readonly wallMs: number;
  readonly state: MachineState;
}

/** What an injected illegal command did: the error, and how the stack recovered. */
export interface InjectSummary {
  readonly injected: boolean;
  /** The error as the layers reported it (silicon trace, VMM error report, guest-error log). */
  readonly error: readonly string[];
  /** The recovery: what the guest's driver did and the queue afterwards. */
  readonly recovery: readonly string[];
  readonly queue: VcmdqRow | undefined;
  readonly state: MachineState;
}

/** `--compare` as a table: a header row, then one row per measure (three paths side by side). */
export interface CompareTable {
  readonly head: readonly string[];
  readonly rows: readonly (readonly string[])[];
  readonly lines: readonly string[];
}

/** A register block of the inspector (one register table at one base address). */
export interface RegisterBlock {
  readonly id: string;
  readonly title: string;
  readonly base: number;
  readonly registers: readonly { readonly name: string; readonly offset: number; readonly width: 32 | 64 }[];
}

/** One field of a decoded register. */
export interface FieldReadout {
  readonly name: string;
  readonly msb: number;
  readonly lsb: number;
  /** The field's value, hex. */
  readonly value: string;
  readonly access: string;
  readonly doc: string | undefined;
}

/** A register read (as a debugger reads it: no VM exit, no modelled time) and decoded from its table. */
export interface RegisterReadout {
  readonly block: string;
  readonly name: string;
  readonly address: string;
  readonly width: 32 | 64;
  readonly value: string;
  readonly access: string;
  readonly fields: readonly FieldReadout[];
}

/** The two paths the timeline panel shows (the same Perfetto trace `cmdqv run --trace-out` writes). */
export const TIMELINE_PATHS = ['trapped', 'cmdqv'] as const;
export type TimelinePath = (typeof TIMELINE_PATHS)[number];

/** What the page's timeline canvas shows, per path (its `data-summary`, which the browser tests read). */
export interface TimelineSummary {
  readonly key: string;
  readonly windowUs: number;
  readonly lanes: readonly { readonly name: string; readonly slices: number; readonly busyUs: number }[];
}

/** Response header of `/api/trace`: `START,END` of the workload in the trace, µs (the boot comes before). */
export const WORKLOAD_HEADER = 'x-cmdqv-workload-us';
