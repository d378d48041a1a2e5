/**
 * `cmdqv migrate [options] [-- QEMU options]`: boot the machine on a source host, run part of
 * the workload, migrate the VM live to a second host (which may run other VMs), finish the
 * workload there, and print the pre-copy rounds, the downtime and what was re-created.
 */

import { parseArgs } from 'node:util';
import { DEFAULT_COST_MODEL, type CostModel } from '../platform/cost-model.js';
import { HostKernel, Machine, type HostConfig } from '../platform/machine.js';
import {
  busyGuest,
  DEFAULT_DOWNTIME_LIMIT_NS,
  DEFAULT_DRAIN_TIMEOUT_NS,
  DEFAULT_MAX_ROUNDS,
  IDLE_GUEST,
  migrate,
  type MigrationReport,
  type Recreated,
} from '../platform/migration/index.js';
import { WorkloadRun, type WorkloadReport } from '../platform/workload.js';
import { int, readCostModel } from './run-command.js';
import { UsageError } from './usage-error.js';
import { splitCommandLine } from './command-line.js';

/** Most other VMs a destination can hold next to the migrating one: 64 VINTFs, one the host's. */
const MAX_DEST_VMS = 63;

export const MIGRATE_USAGE = `usage: cmdqv migrate [--ops N] [--batch N] [--pages N] [--at N] [--busy | --idle]
                     [--dest-vms N] [--max-rounds N] [--downtime-limit MS] [--drain-timeout MS]
                     [--trace PATTERN]... [--cost-model FILE.json] [--json] [-- QEMU options]

Boots the machine on a source host, runs --at of the workload's operations (default: half),
then migrates the VM live to a destination host and finishes the workload there.

--busy (default) keeps the workload running during the pre-copy rounds; --idle pauses it.
--dest-vms N boots N other VMs on the destination first (0..${MAX_DEST_VMS}), so the VM gets another
VINTF, other VCMDQs and another VMID there; with ${MAX_DEST_VMS} no VINTF is left and the destination refuses.
--max-rounds N stops pre-copying after N rounds (default ${DEFAULT_MAX_ROUNDS}); --downtime-limit MS is
QEMU's downtime-limit (default ${DEFAULT_DOWNTIME_LIMIT_NS / 1e6} ms): the rounds end when the dirty pages left would
cross the link within it. --drain-timeout MS bounds the wait for the command queues to drain
(default ${DEFAULT_DRAIN_TIMEOUT_NS / 1e6} ms). Times are modelled (src/platform/cost-model.ts, --cost-model).
--trace PATTERN enables the source VM's trace events (as -trace; the migration's own are
migrate_set_state, migrate_error, migration_bitmap_sync_* and cmdqv_migration_*) and prints them first.

Exit status 1 when the migration fails; the VM then finishes its workload on the source.`;

/** The longest time option taken (an hour of modelled time): ns beyond it lose their meaning. */
const MAX_MS = 3_600_000;

/** A non-negative number of milliseconds (plain decimal, at most {@link MAX_MS}), in ns. */
function ms(v: string | undefined, name: string, dflt: number, positive: boolean): number {
  if (v === undefined) return dflt;
  const n = /^\d+(\.\d+)?$/.test(v) ? Number(v) : NaN;
  if (!(n >= 0 && n <= MAX_MS) || (positive && n === 0)) {
    throw new UsageError(`--${name} must be a ${positive ? 'positive' : 'non-negative'} number of milliseconds up to ${MAX_MS}, got '${v}'`);
  }
  return Math.round(n * 1e6);
}

/** {@link int} for decimal digits only ('', '0x10', '1e3' and ' 8' are not counts). */
function count(v: string | undefined, name: string, dflt: number, min: number, max: number): number {
  if (v !== undefined && !/^\d{1,16}$/.test(v)) throw new UsageError(`--${name} must be an integer in ${min}..${max}, got '${v}'`);
  return int(v, name, dflt, min, max);
}

/** What the command prints and its exit status. */
export interface MigrateCommandResult {
  readonly text: string;
  readonly status: number;
}

/** Run `cmdqv migrate`. */
export function migrateCommand(argv: readonly string[]): MigrateCommandResult {
  const { own, qemu: line } = splitCommandLine(argv);
  const { values } = parseArgs({
    args: [...own],
    options: {
      ops: { type: 'string' },
      batch: { type: 'string' },
      pages: { type: 'string' },
      at: { type: 'string' },
      busy: { type: 'boolean', default: false },
      idle: { type: 'boolean', default: false },
      'dest-vms': { type: 'string' },
      'max-rounds': { type: 'string' },
      'downtime-limit': { type: 'string' },
      'drain-timeout': { type: 'string' },
      'cost-model': { type: 'string' },
      json: { type: 'boolean', default: false },
      trace: { type: 'string', multiple: true },
    },
    strict: true,
  });
  if (values.busy && values.idle) throw new UsageError('--busy and --idle exclude each other');
  const ops = count(values.ops, 'ops', 256, 1, 1_000_000);
  const batch = count(values.batch, 'batch', 4, 1, 4096);
  const pages = count(values.pages, 'pages', 1, 1, 512);
  const destVms = count(values['dest-vms'], 'dest-vms', 0, 0, MAX_DEST_VMS);
  const maxRounds = count(values['max-rounds'], 'max-rounds', DEFAULT_MAX_ROUNDS, 1, 10_000);
  const downtimeLimitNs = ms(values['downtime-limit'], 'downtime-limit', DEFAULT_DOWNTIME_LIMIT_NS, false);
  const drainTimeoutNs = ms(values['drain-timeout'], 'drain-timeout', DEFAULT_DRAIN_TIMEOUT_NS, true);
  const costModel: CostModel = values['cost-model'] === undefined ? DEFAULT_COST_MODEL : readCostModel(values['cost-model']);

  // --at's syntax before anything boots; its range once the workload's length is known.
  if (values.at !== undefined) count(values.at, 'at', 0, 0, Number.MAX_SAFE_INTEGER);
  const trace = values.trace ?? [];
  const qemu = [...line, ...trace.flatMap((t) => ['-trace', t])];
  const source = Machine.create(qemu, { costModel });
  let run: WorkloadRun;
  try {
    run = WorkloadRun.start(source, { ops, batch, pages, injectError: false, skipInvalidation: false, verifyEvery: 8 });
    run.runTo(count(values.at, 'at', Math.floor(run.total / 2), 0, run.total));
  } catch (e) {
    source.close();
    throw e;
  }
  const before = run.done;
  const dest = destination(source.host.config, destVms, costModel);
  const r = migrate(source, {
    dest: dest.host,
    guest: values.idle ? IDLE_GUEST : busyGuest(run),
    downtimeLimitNs,
    maxRounds,
    drainTimeoutNs,
    costModel,
  });
  const during = run.done - before;
  let workload: WorkloadReport;
  if (r.ok) {
    workload = WorkloadRun.resume(r.machine).finish();
    r.machine.close();
  } else {
    workload = run.finish();
    source.close();
  }
  for (const vm of dest.vms) vm.close();
  const status = r.ok ? 0 : 1;
  if (values.json) {
    return { text: JSON.stringify({ ok: r.ok, reason: r.ok ? undefined : r.reason, phase: r.ok ? undefined : r.phase, migration: r.report, workload }, null, 2), status };
  }
  const lines = formatMigration(r.report, { ok: r.ok, busy: !values.idle, limitNs: downtimeLimitNs, costs: costModel, destVms });
  if (r.ok) lines.push(`workload: ${run.total} operations (${before} before the migration, ${during} during it, the rest on the destination); DMA checks ${workload.dmaChecks.passed} passed, ${workload.dmaChecks.failed} failed`);
  else {
    lines.push(`migration failed (${r.phase}): ${r.reason}`);
    lines.push(`the VM kept running on the source: ${run.total} operations, DMA checks ${workload.dmaChecks.passed} passed, ${workload.dmaChecks.failed} failed`);
  }
  const traced = trace.length ? `${source.traceText.lines.join('\n')}\n\n` : '';
  return { text: traced + lines.join('\n'), status };
}

/**
 * The destination: the source's host description with a device for each other VM (on the first
 * SMMU with a CMDQV) and the RAM they need; each other VM boots and runs a few operations, so
 * its VINTF, VCMDQs and VMID are taken before the migrating VM arrives.
 */
function destination(src: HostConfig, vms: number, costModel: CostModel): { host: HostKernel; vms: Machine[] } {
  const smmu = src.smmus.find((s) => s.cmdqv) ?? src.smmus[0]!;
  const extra: HostConfig['devices'][number][] = Array.from({ length: vms }, (_, k) => ({
    bdf: `000a:00:${(k >> 3).toString(16).padStart(2, '0')}.${k & 7}`,
    sid: 0x1000 + k,
    smmu: smmu.name,
  }));
  const perVm = src.hugepages ? Math.max(src.hugepageSize, 2 ** 30) : 2 ** 30;
  const host = new HostKernel({ ...src, ramBytes: src.ramBytes + vms * perVm, devices: [...src.devices, ...extra] });
  const machines = extra.map((d) => {
    const vm = Machine.create(
      [
        '-m', '1G', '-object', 'iommufd,id=iommufd0',
        '-device', `arm-smmuv3,primary-bus=pcie.0,id=smmuv3.0,accel=on,cmdqv=${smmu.cmdqv ? 'on' : 'off'},identifier=1`,
        '-device', `vfio-pci,host=${d.bdf},iommufd=iommufd0,id=hostdev0`,
      ],
      { host, costModel },
    );
    WorkloadRun.start(vm, { ops: 4, batch: 4, pages: 1, injectError: false, skipInvalidation: false }).runTo(4);
    return vm;
  });
  return { host, vms: machines };
}

const us = (ns: number): string => `${(ns / 1000).toFixed(1)} µs`;
const arrow = <T>(r: Recreated<T>): string => `${r.old ?? '-'} → ${r.new ?? '-'}`;

/** The report as text: rounds, the stop-and-copy, what was re-created. */
function formatMigration(
  rep: MigrationReport,
  o: { ok: boolean; busy: boolean; limitNs: number; costs: CostModel; destVms: number },
): string[] {
  const out: string[] = [];
  out.push(`migration to a destination host running ${o.destVms} other VM${o.destVms === 1 ? '' : 's'}`);
  out.push(`pre-copy (${o.busy ? 'busy' : 'idle'} guest; downtime limit ${us(o.limitNs)}; link ${o.costs.migrationPageNs} ns per 4 KiB page)`);
  for (const r of rep.rounds) out.push(`  round ${r.round}: ${r.pages} pages in ${us(r.ns)}; the guest dirtied ${r.dirtied}`);
  out.push(rep.converged ? '  converged: the dirty pages left fit the downtime limit' : `  not converged after ${rep.rounds.length} rounds: stop-and-copy anyway`);
  if (rep.zeroPagesSkipped) out.push(`  ${rep.zeroPagesSkipped} touched pages were zero and not sent`);
  if (rep.queues.length) {
    out.push('stop-and-copy (guest paused)');
    for (const q of rep.queues) {
      const regs = q.cons === q.prod ? `CONS = PROD = 0x${q.cons.toString(16)}` : `CONS 0x${q.cons.toString(16)}, PROD 0x${q.prod.toString(16)}`;
      out.push(`  ${q.queue}: ${q.state}, ${regs}`);
    }
  }
  const d = rep.downtime;
  if (d && !o.ok) out.push(`  the guest was paused ${us(d.totalNs)} (drain wait ${us(d.quiesceNs)}) before it resumed on the source`);
  if (d && o.ok) {
    out.push(`  drain wait ${us(d.quiesceNs)}; last ${rep.finalPages} pages ${us(d.ramNs)}; device state ${rep.deviceStateBytes} bytes ${us(d.deviceStateNs)}`);
    out.push(`  re-created on the destination with ${rep.recreateIoctls} ioctls (${us(d.recreateNs)}):`);
    for (const s of rep.recreated) {
      out.push(`    ${s.smmu}: vIOMMU ${arrow(s.viommuId)}, VINTF ${arrow(s.vintf)}, VMID ${arrow(s.vmid)}`);
      for (const q of s.hwQueues) out.push(`      VCMDQ${q.lvcmdq}: HW queue ${arrow(q.id)}, global VCMDQ ${arrow(q.vcmdq)}`);
      for (const v of s.vdevices) out.push(`      vDEVICE vSID 0x${v.virtId.toString(16)}: ${arrow(v.id)}`);
    }
    out.push(`  switchover ${us(d.switchoverNs)}`);
    out.push(`downtime ${us(d.totalNs)}; migration ${us(rep.totalNs)}; ${rep.totalPages} pages sent`);
  }
  return out;
}
