/**
 * `cmdqv run [options] [-- QEMU options]`: the main job. Boots the machine (the embedded
 * default, or the given QEMU-style command line), runs the guest workload and prints a report.
 */

import { parseArgs } from 'node:util';
import { DEFAULT_WORKLOAD, runWorkload, WorkloadRun, type WorkloadReport } from '../platform/workload.js';
import { DEFAULT_ARGS, DEFAULT_HOST, Machine, SnapshotError } from '../platform/machine.js';
import { formatCompare, runCompare } from '../platform/compare.js';
import { readFileSync, writeFileSync } from 'node:fs';
import { DEFAULT_COST_MODEL, parseCostModel, type CostModel } from '../platform/cost-model.js';
import { ChromeTraceWriter } from '../kit/trace.js';
import { checkWritable, CliError, openStreamedOutput } from './output-file.js';
import { lvcmdqPage0Offset, VCMDQ_GERROR, VCMDQ_STATUS } from '../arch/tegra241-cmdqv/registers.js';
import { errnoName } from '../uapi/errno.js';
import { FaultSpecError, parseFaultSpecs, type FaultSpec } from '../platform/fault-injection.js';
import { UsageError } from './usage-error.js';
import { abandonRecording, recordRun, startRecording } from '../platform/record/record-run.js';
import { splitCommandLine } from './command-line.js';


/**
 * The CLI checks every 8th unmapped buffer: enough that `--skip-invalidation` is caught in any
 * run of 8 or more operations, without making every operation a forced fault.
 */
const DEFAULT_VERIFY_EVERY = 8;
/** Trace events recorded by default: a few hundred MB of JSON at most. */
const DEFAULT_TRACE_LIMIT = 2_000_000;

export const RUN_USAGE = `usage: cmdqv run [--ops N] [--batch N] [--pages N] [--cmdqv on|off|auto]
                 [--no-error] [--skip-invalidation] [--trace PATTERN]... [--trace-out FILE.json]
                 [--trace-limit N] [--cost-model FILE.json] [--json] [--inject SPEC]...
                 [--compare] [--verify-every N] [--record FILE] [--save-at OPS --save FILE]
                 [-- QEMU options]
       cmdqv run --restore FILE [--json] [--trace-out FILE.json] [--cost-model FILE.json]

--trace-out FILE.json writes the run's timeline in modelled time (Chrome/Perfetto JSON: one process
per layer, a track per queue, VM exits, the VMM's CMDQ walk, syscalls, consumed batches and each
hop of a fault record as slices, flows from the guest's doorbell or trapped write to the queue that
consumed it and along each fault record, occupancy counters), streamed as the run goes;
--trace-limit N stops recording after N events (default ${DEFAULT_TRACE_LIMIT}).
--cost-model FILE.json sets what each exit, ioctl, command and CMD_SYNC costs in modelled time
(src/platform/cost-model.ts; parameters not named keep their defaults).

--verify-every N checks that every N-th unmapped buffer is no longer reachable (default ${DEFAULT_VERIFY_EVERY});
each check is a DMA that faults on purpose, and the report counts its cost on its own line.

--compare runs the workload on three paths of the topology (emulated SMMUv3 with iommu-testdevs,
accelerated with trapped invalidations, accelerated + CMDQV) and prints them side by side.

--save-at OPS --save FILE writes the whole VM (guest RAM, devices, the guest-visible host state, the
guest's drivers and the workload's progress) to FILE once OPS operations are done (at the end of
that invalidation batch), then finishes the run. --restore FILE re-creates that VM on a new host
and finishes its workload: the report is the one the uninterrupted run prints.
--inject SPEC fails a host call the VMM makes, as the kernel would: ioctl=NAME:ERRNO[:N] (the N-th
call of that ioctl), mmap=ERRNO[:N] (the N-th file mmap, e.g. VINTF page0), open=PATH:ERRNO[:N];
the report says what fired, what the VMM reported and what the guest saw.

--record FILE records every guest-visible input of the run and what the machine answered
(accesses, time, interrupts, DMA, final counters); \`cmdqv replay FILE\` reproduces it bit for bit.

Without QEMU options the embedded default machine is used:
  ${DEFAULT_ARGS.join(' ')}`;

/** An integer option in [min, max] (`dflt` when absent); a usage error names it otherwise. */
export function int(v: string | undefined, name: string, dflt: number, min: number, max: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be an integer in ${min}..${max}, got '${v}'`);
  return n;
}

/** `cmdqv run`'s options, parsed and checked (`cmdqv serve` takes the same ones). */
export interface RunOptions {
  /** The QEMU line (the embedded default when none was given), with `--cmdqv` and `--trace` applied. */
  readonly qemu: readonly string[];
  readonly ops: number;
  readonly batch: number;
  readonly pages: number;
  readonly injectError: boolean;
  readonly verifyEvery: number;
  readonly skipInvalidation: boolean;
  readonly trace: readonly string[];
  readonly traceOut: string | undefined;
  readonly traceLimit: number;
  readonly costModel: CostModel;
  readonly inject: readonly FaultSpec[];
  /** `--inject` as given (what a recording keeps). */
  readonly injectSpecs: readonly string[];
  readonly compare: boolean;
  readonly json: boolean;
  /** `--record FILE`. */
  readonly record: string | undefined;
  /** `--save-at OPS --save FILE` / `--restore FILE`. */
  readonly snapshot: { readonly save?: { readonly at: number; readonly file: string }; readonly restore?: string };
}

/**
 * Parse `[options] [-- QEMU options]` as `cmdqv run` does.
 * @throws UsageError, CliError (or parseArgs' TypeError) naming the bad option
 */
export function parseRunOptions(argv: readonly string[]): RunOptions {
  const line = splitCommandLine(argv);
  const own = line.own;
  let qemu = line.qemu;
  const { values } = parseArgs({
    args: [...own],
    options: {
      ops: { type: 'string' },
      batch: { type: 'string' },
      pages: { type: 'string' },
      cmdqv: { type: 'string' },
      'no-error': { type: 'boolean', default: false },
      'verify-every': { type: 'string' },
      'skip-invalidation': { type: 'boolean', default: false },
      trace: { type: 'string', multiple: true },
      'trace-out': { type: 'string' },
      'trace-limit': { type: 'string' },
      'cost-model': { type: 'string' },
      json: { type: 'boolean', default: false },
      inject: { type: 'string', multiple: true },
      compare: { type: 'boolean', default: false },
      record: { type: 'string' },
      'save-at': { type: 'string' },
      save: { type: 'string' },
      restore: { type: 'string' },
    },
    strict: true,
  });
  const snapshot = snapshotOptions(values, own, line.qemuGiven);
  if (values.cmdqv !== undefined) {
    if (!['on', 'off', 'auto'].includes(values.cmdqv)) throw new UsageError(`--cmdqv must be on, off or auto, got '${values.cmdqv}'`);
    qemu = qemu.map((a) => (a.startsWith('arm-smmuv3') ? a.replace(/(^|,)cmdqv=[a-z]+/, '') + `,cmdqv=${values.cmdqv}` : a));
  }
  for (const t of values.trace ?? []) qemu.push('-trace', t);
  const ops = int(values.ops, 'ops', DEFAULT_WORKLOAD.ops, 1, 1_000_000);
  const batch = int(values.batch, 'batch', DEFAULT_WORKLOAD.batch, 1, 4096);
  const pages = int(values.pages, 'pages', DEFAULT_WORKLOAD.pages, 1, 512);
  const traceOut = values['trace-out'];
  if (traceOut) checkWritable('--trace-out', traceOut);
  const traceLimit = int(values['trace-limit'], 'trace-limit', DEFAULT_TRACE_LIMIT, 1, Number.MAX_SAFE_INTEGER);
  const costModel = values['cost-model'] === undefined ? DEFAULT_COST_MODEL : readCostModel(values['cost-model']);
  let inject: FaultSpec[] = [];
  try {
    inject = (values.inject ?? []).flatMap((spec) => parseFaultSpecs(spec));
  } catch (e) {
    if (e instanceof FaultSpecError) throw new CliError(e.message);
    throw e;
  }
  if (values.record !== undefined) {
    if (values.compare) throw new UsageError('--record records one run; --compare makes three');
    checkWritable('--record', values.record);
  }
  return {
    qemu,
    ops,
    batch,
    pages,
    injectError: !values['no-error'],
    verifyEvery: int(values['verify-every'], 'verify-every', DEFAULT_VERIFY_EVERY, 1, 1_000_000),
    skipInvalidation: values['skip-invalidation'] === true,
    trace: values.trace ?? [],
    traceOut,
    traceLimit,
    costModel,
    inject,
    injectSpecs: values.inject ?? [],
    compare: values.compare === true,
    json: values.json === true,
    record: values.record,
    snapshot,
  };
}

/** Run the main job; returns the text to print. */
export function runCommand(argv: readonly string[], progress: (s: string) => void): string {
  const { qemu, ops, batch, pages, traceOut, traceLimit, costModel, inject, ...values } = parseRunOptions(argv);
  if (values.compare) {
    const cols = runCompare(qemu, { ops, batch, pages, injectError: false, skipInvalidation: values.skipInvalidation });
    return values.json ? JSON.stringify(cols, null, 2) : formatCompare(cols);
  }
  const traceFile = traceOut ? openStreamedOutput('--trace-out', traceOut) : undefined;
  const trace = traceFile ? new ChromeTraceWriter((chunk) => traceFile.write(chunk), traceLimit) : undefined;
  const recorder = values.record === undefined ? undefined : startRecording(values.record, {
    argv: qemu, host: DEFAULT_HOST, inject: values.injectSpecs, costModel,
    workload: { ops, batch, pages, injectError: values.injectError, verifyEvery: values.verifyEvery, skipInvalidation: values.skipInvalidation },
  });
  let m: Machine;
  try {
    m = values.snapshot.restore
      ? restoreFile(values.snapshot.restore, { costModel, ...(trace ? { trace } : {}) })
      : Machine.create(qemu, { inject, costModel, trace, attach: recorder && ((vm) => recorder.attach(vm)) });
  } catch (e) {
    if (recorder) abandonRecording(recorder);
    throw e;
  }
  // The streamed trace takes the tracer's records; the in-memory one would grow without bound.
  if (trace) m.tracer.removeSink(m.traceChrome);
  // QEMU's warnings about the line (e.g. a PCIe function behind a root port at a slot other than 0).
  for (const w of m.placementWarnings) progress(`qemu-system-aarch64: ${w}`);
  let last = 0;
  const onProgress = (done: number, total: number) => {
    const pct = Math.floor((done / total) * 10);
    if (total >= 10_000 && pct > last) {
      last = pct;
      progress(`progress: ${done}/${total} operations`);
    }
  };
  const work = {
    ops,
    batch,
    pages,
    injectError: values.injectError,
    verifyEvery: values.verifyEvery,
    skipInvalidation: values.skipInvalidation,
    progress: onProgress,
  };
  const save = values.snapshot.save;
  const workload = (): WorkloadReport => {
    if (values.snapshot.restore) return WorkloadRun.resume(m, onProgress).finish();
    if (!save) return runWorkload(m, work);
    const run = WorkloadRun.start(m, work);
    run.runTo(save.at);
    const image = m.save();
    writeFileSync(save.file, image);
    progress(`cmdqv: saved the VM after ${run.done} of ${run.total} operations to ${save.file} (${image.length} bytes)`);
    return run.finish();
  };
  let rep: WorkloadReport;
  if (recorder) {
    const { result, summary } = recordRun(recorder, m, workload);
    rep = result;
    progress(`--record: ${summary.records} records (${(summary.bytes / 2 ** 20).toFixed(1)} MiB) in ${summary.file}; \`cmdqv replay ${summary.file}\` reproduces the run`);
  } else rep = workload();
  if (trace && traceFile) {
    trace.close(m.clock.now);
    traceFile.close();
    if (trace.dropped > 0) progress(`--trace-out: the trace stopped at --trace-limit ${traceLimit} events (${trace.dropped} left out)`);
  }
  if (values.json) return JSON.stringify(inject.length ? { ...rep, faults: faultReport(m, inject) } : rep, null, 2);
  const out = formatReport(m, rep) + (inject.length ? `\n\n${formatFaults(faultReport(m, inject))}` : '');
  return (values.trace.length ? `${m.traceText.lines.join('\n')}\n\n` : '') + out;
}

/** `--save-at OPS --save FILE` / `--restore FILE`, checked against each other and the rest. */
function snapshotOptions(
  values: { 'save-at'?: string; save?: string; restore?: string; compare?: boolean; inject?: string[] },
  own: readonly string[],
  qemuLine: boolean,
): { save?: { at: number; file: string }; restore?: string } {
  const { save, restore } = values;
  const saveAt = values['save-at'];
  if ((saveAt === undefined) !== (save === undefined)) throw new UsageError(saveAt === undefined ? '--save needs --save-at OPS (when to save)' : '--save-at needs --save FILE (where to save)');
  if (restore !== undefined) {
    if (save !== undefined) throw new UsageError('--restore cannot be combined with --save');
    // The machine, the workload and its options come from the image.
    const allowed = new Set(['--restore', '--json', '--trace-out', '--trace-limit', '--cost-model']);
    const other = own.find((a) => a.startsWith('--') && !allowed.has(a.split('=')[0]!));
    if (other || qemuLine) throw new UsageError(`--restore takes the machine and the workload from the image; ${other ? `${other.split('=')[0]}` : 'QEMU options'} cannot be given with it`);
    return { restore };
  }
  if (save === undefined) return {};
  if (values.compare) throw new UsageError('--save cannot be combined with --compare');
  checkWritable('--save', save);
  return { save: { at: int(saveAt, 'save-at', 0, 0, Number.MAX_SAFE_INTEGER), file: save } };
}

/** `--restore FILE`: the VM of the image, on a new host. */
function restoreFile(file: string, opts: { costModel: CostModel; trace?: ChromeTraceWriter }): Machine {
  let image: Uint8Array;
  try {
    image = readFileSync(file);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new CliError(`--restore ${file}: cannot read it: ${err.code === 'ENOENT' ? 'No such file or directory' : err.message}`);
  }
  try {
    // The buffer just read is ours alone: the VM takes its RAM blocks instead of a copy.
    return Machine.restore(image, { create: opts, adopt: true });
  } catch (e) {
    if (e instanceof SnapshotError) throw new CliError(`--restore ${file}: ${e.message}`);
    throw e;
  }
}

/** `--cost-model FILE.json`: the parameters it names over the defaults. */
export function readCostModel(file: string): CostModel {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new CliError(`--cost-model ${file}: ${(e as Error).message}`);
  }
  try {
    return parseCostModel(json, `--cost-model ${file}`);
  } catch (e) {
    throw new CliError((e as Error).message);
  }
}

/** What was injected, what fired, and what the VMM and the guest made of it. */
export interface FaultReport {
  readonly asked: readonly string[];
  readonly fired: readonly { readonly spec: string; readonly call: string; readonly nth: number; readonly errno: string }[];
  /** The VMM's error reports (QEMU's error_report lines) from every device. */
  readonly vmmReported: readonly string[];
  /** Guest-visible outcome: each VCMDQ's state as the guest reads it. */
  readonly guestSaw: readonly string[];
}

function faultReport(m: Machine, inject: readonly FaultSpec[]): FaultReport {
  const vmmReported = m.smmus.flatMap((s) => [...s.dev.hostErrors, ...(s.cmdqv?.errors ?? [])]);
  const guestSaw: string[] = [];
  for (const s of m.smmus) {
    if (s.cmdqvBase === undefined) continue;
    for (let q = 0; q < 2; q++) {
      const page0 = s.cmdqvBase + lvcmdqPage0Offset(0, q);
      const gerror = Number(m.read(page0 + VCMDQ_GERROR.spec.offset, 4).value);
      const status = Number(m.read(page0 + VCMDQ_STATUS.spec.offset, 4).value);
      const errors = Object.entries(VCMDQ_GERROR.f).filter(([, f]) => f.get(gerror)).map(([name]) => name);
      guestSaw.push(`${s.dev.props.id} VCMDQ${q}: CMDQ_EN_OK=${VCMDQ_STATUS.f.CMDQ_EN_OK.get(status)} GERROR=${errors.length ? errors.join('|') : 'none'}`);
    }
  }
  const asked = inject.map((f) => (f.call === 'ioctl' ? `ioctl=${f.ioctl}` : f.call === 'open' ? `open=${f.path}` : 'mmap') + `:${errnoName(f.errno)}:${f.nth}`);
  return { asked, fired: m.faults?.injected ?? [], vmmReported, guestSaw };
}

function formatFaults(f: FaultReport): string {
  const L = ['Faults injected'];
  for (const spec of f.asked) {
    const hit = f.fired.find((x) => x.spec === spec);
    L.push(hit ? `  ${spec}: fired (${hit.call} call ${hit.nth} returned -${hit.errno})` : `  ${spec}: did not fire (the call was not made that many times)`);
  }
  L.push(`  VMM reported: ${f.vmmReported.length ? '' : 'nothing'}`);
  for (const line of f.vmmReported) L.push(`    ${line}`);
  L.push('  guest saw:');
  for (const line of f.guestSaw) L.push(`    ${line}`);
  return L.join('\n');
}

/**
 * The run's modelled hardware time (the virtual clock, which the cost model advances at every
 * exit, direct access, ioctl, consumed batch and translation) and that divided by the model's
 * wall time: >= 1 means the model ran at least as fast as the hardware it models.
 */
export function realTime(r: WorkloadReport): { hardwareNs: number; factor: number } {
  return { hardwareNs: r.modelNs, factor: r.wallNs > 0 ? r.modelNs / r.wallNs : 0 };
}

/** The human-readable report. */
export function formatReport(m: Machine, r: WorkloadReport): string {
  const L: string[] = [];
  const cfg = m.host.config;
  L.push('cmdqv run: Tegra241 CMDQV on an iommufd-accelerated SMMUv3');
  L.push('');
  L.push('Topology');
  L.push(`  host   ${cfg.smmus.length} SMMU(s) [${cfg.smmus.map((s) => `${s.name}${s.cmdqv ? ` + CMDQV v${s.cmdqv.version} (${2 ** s.cmdqv.log2Vcmdqs} VCMDQs, ${2 ** s.cmdqv.log2Vintfs} VINTFs)` : ''}`).join(', ')}], ${cfg.pageSize / 1024} KiB pages${cfg.hugepages ? ` + ${cfg.hugepageSize / 2 ** 20} MiB hugepages` : ''}`);
  L.push(`  guest  ${m.ramBytes / 2 ** 30} GiB RAM at 0x40000000`);
  for (const s of m.smmus) {
    L.push(`  ${s.dev.props.id}: MMIO 0x${s.base.toString(16)} GSIV ${s.irqBaseGsiv}-${s.irqBaseGsiv + 3}, identifier ${s.opts.identifier}, primary-bus ${s.opts.primaryBus}, ` +
      (s.cmdqv ? `CMDQV at 0x${s.cmdqvBase!.toString(16)} GSIV ${s.cmdqvGsiv}` : 'no CMDQV'));
  }
  for (const d of r.devices) L.push(`  vfio-pci ${d.host} -> guest SID 0x${d.sid.toString(16)} behind ${d.smmu}`);
  if (m.options.notModelled.length) L.push(`  not modelled: ${m.options.notModelled.join(', ')}`);
  L.push('');
  L.push('Guest');
  for (const line of r.dmesg) L.push(`  ${line}`);
  L.push('');
  L.push('VINTF / VCMDQ');
  if (r.hwQueues.length === 0) L.push('  no CMDQV: every invalidation goes through the trapped SMMU command queue');
  for (const q of r.hwQueues) L.push(`  ${q.smmu} VCMDQ${q.index}: ${q.id !== undefined ? `host HW queue id ${q.id} (guest page0 mapped, no exits)` : 'not allocated'}`);
  L.push('');
  L.push('Invalidations by path                 commands  batches  VM exits  ioctls');
  const row = (name: string, p: WorkloadReport['vcmdq']) =>
    `  ${name.padEnd(34)} ${String(p.commands).padStart(8)} ${String(p.batches).padStart(8)} ${String(p.exits).padStart(9)} ${String(p.ioctls).padStart(7)}`;
  L.push(row('VCMDQ (direct to host silicon)', r.vcmdq));
  L.push(row('SMMU CMDQ (trapped, HWPT_INVALIDATE)', r.smmuCmdq));
  L.push(`  whole run: ${r.exits} VM exits, ${r.directAccesses} direct page0 accesses, ${r.ioctls.total ?? 0} ioctls`);
  const perBatch = (p: WorkloadReport['vcmdq']) => (p.batches ? `${(p.modelNs / p.batches / 1000).toFixed(2)} µs` : '-');
  L.push(`  modelled time per batch (submission to CMD_SYNC): VCMDQ ${perBatch(r.vcmdq)}, SMMU CMDQ ${perBatch(r.smmuCmdq)}`);
  L.push(`  of which the after-unmap checks (${r.verification.checks} DMA(s) that fault on purpose): ${r.verification.exits} VM exits, ${r.verification.hostFaults} host faults forwarded`);
  L.push('');
  L.push('Errors handled');
  L.push(`  CMDQV: ${r.errors.cmdqvErrorsHandled} queue error(s) skipped, ${r.errors.cmdqvIrqs} interrupt(s)`);
  L.push(`  SMMU: ${r.errors.smmuCerrorsSkipped} CERROR(s) skipped, ${r.errors.smmuEvents} event(s) (${r.errors.hostFaultsForwarded} host faults forwarded)`);
  L.push('');
  L.push(`DMA checks: ${r.dmaChecks.passed} passed, ${r.dmaChecks.failed} failed${r.dmaChecks.staleHits ? ` (${r.dmaChecks.staleHits} DMA(s) reached an unmapped buffer through a stale IOTLB entry)` : ''}`);
  const rt = realTime(r);
  L.push('');
  L.push(`Speed: the model took ${(r.wallNs / 1e6).toFixed(1)} ms; the modelled hardware takes ${(rt.hardwareNs / 1e6).toFixed(2)} ms for the run: real-time factor ${rt.factor.toFixed(3)}`);
  return L.join('\n');
}
