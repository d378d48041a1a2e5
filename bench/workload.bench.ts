/**
 * Rows 3, 5 and 7: the guest-driver loop on both paths, scaling over VMs sharing one host, and
 * the modelled hardware latency built from the event counts of row 3.
 */

import { buildCommand, Op } from '../src/arch/smmuv3/commands.js';
import { GuestKernel } from '../src/guest/kernel.js';
import { DEFAULT_HOST, type HostConfig } from '../src/host/config.js';
import { HostKernel } from '../src/host/kernel/host-kernel.js';
import { DEFAULT_COST_MODEL, modelLatency, type CostModel, type PathCounts } from '../src/platform/cost-model.js';
import { runWorkload } from '../src/platform/workload.js';
import { Machine } from '../src/platform/machine.js';
import type { Row } from './harness.js';

function machineArgs(cmdqv: 'on' | 'off', host = '0009:01:00.0', mem = '4G'): string[] {
  return ['-m', mem, '-object', 'iommufd,id=iommufd0', '-device', `arm-smmuv3,primary-bus=pcie.0,accel=on,cmdqv=${cmdqv},identifier=1`,
    '-device', `vfio-pci,host=${host},iommufd=iommufd0`];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Row 3 result for one (path, batch). */
export interface LoopResult {
  path: 'cmdqv' | 'trapped';
  batch: number;
  opsPerSec: number;
  min: number;
  max: number;
  exitsPerOp: number;
  counts: PathCounts;
  /**
   * Real-time factor (median over the runs): the modelled hardware time of the run (the cost
   * model charged to the virtual clock for the run's own events) over the wall time the model
   * took; >= 1 means the model ran the workload at least as fast as the hardware would.
   */
  realTime: number;
  /** Modelled hardware time per operation, ns. */
  modelNsPerOp: number;
}

/** After-unmap reachability checks: every N-th buffer, as `cmdqv run` does by default. */
export const LOOP_VERIFY_EVERY = 8;

/** Row 3: map / DMA / unmap + invalidation + sync per operation, batches of 1, 16, 256. */
export function benchGuestLoop(quick: boolean): LoopResult[] {
  const out: LoopResult[] = [];
  // Each run builds a new machine; the first few runs of a process still JIT-compile the loop,
  // so a full run warms up twice and measures enough operations to reach the steady state. A run
  // of 16 Ki operations (~30 ms at batch 1) measured mostly that compilation: V8 optimises the
  // loop again for each new machine, and again after each full collection has freed the previous
  // machine (several land in a row), so a run's factor swung from 0.4 to 1.2 with the collector's
  // timing. 64 Ki operations per run amortise it (per-run factors within ~10% of each other).
  const ops = quick ? 256 : 65536;
  const runs = quick ? 3 : 5;
  const warmups = quick ? 1 : 2;
  for (const batch of [1, 16, 256]) {
    for (const path of ['cmdqv', 'trapped'] as const) {
      const rates: number[] = [];
      const factors: number[] = [];
      let modelNs = 0;
      let counts: PathCounts | undefined;
      for (let r = 0; r < warmups + runs; r++) {
        const m = Machine.create(machineArgs(path === 'cmdqv' ? 'on' : 'off'));
        const t0 = process.hrtime.bigint();
        const rep = runWorkload(m, { ops, batch, pages: 1, injectError: false, skipInvalidation: false, verifyEvery: LOOP_VERIFY_EVERY });
        const ns = Number(process.hrtime.bigint() - t0);
        if (rep.dmaChecks.failed) throw new Error(`row 3: ${rep.dmaChecks.failed} DMA checks failed`);
        if (r < warmups) continue;
        rates.push((ops / ns) * 1e9);
        // Both sides over the same span: the run after the guest kernel booted (the report's own clocks).
        factors.push(rep.modelNs / rep.wallNs);
        modelNs = rep.modelNs;
        const p = path === 'cmdqv' ? rep.vcmdq : rep.smmuCmdq;
        counts = { operations: ops, commands: p.commands, syncs: p.batches, exits: p.exits, ioctls: p.ioctls, directAccesses: path === 'cmdqv' ? rep.directAccesses : 0 };
      }
      out.push({
        path, batch, opsPerSec: median(rates), min: Math.min(...rates), max: Math.max(...rates), exitsPerOp: counts!.exits / ops, counts: counts!,
        realTime: median(factors), modelNsPerOp: modelNs / ops,
      });
    }
  }
  return out;
}

/** Row 5 result. */
export interface ScaleResult {
  vms: number;
  commandsPerSec: number;
  bytesPerIdleVm: number;
}

/** A host with two CMDQV SMMUs and 64 devices (VINTF0 of each CMDQV is the host's: 126 user VINTFs). */
export function scaleHost(): HostConfig {
  const smmu = DEFAULT_HOST.smmus[0]!;
  const devices = Array.from({ length: 64 }, (_, i) => ({ bdf: `000${i < 32 ? 9 : 'a'}:${(i % 32).toString(16).padStart(2, '0')}:00.0`, sid: 0x100 + (i % 32) * 8, smmu: i < 32 ? 'smmu0' : 'smmu1' }));
  return { ...DEFAULT_HOST, ramBytes: 256 * 2 ** 30, smmus: [smmu, { ...smmu, name: 'smmu1' }], devices };
}

/** JS heap + typed-array memory after full collections (needs node --expose-gc to be exact). */
function heap(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  for (let i = 0; i < 3; i++) gc?.();
  const u = process.memoryUsage();
  return u.heapUsed + u.arrayBuffers;
}

/** Row 5: N VMs, each with its own VINTF and 2 VCMDQs, submitting in turn. */
export function benchScale(quick: boolean): ScaleResult[] {
  const out: ScaleResult[] = [];
  for (const n of quick ? [1, 8] : [1, 8, 64]) {
    const cfg = scaleHost();
    const host = new HostKernel(cfg);
    // Warm the module-level tables (register layouts, trace catalog) before measuring.
    const warm = Machine.create(machineArgs('on', cfg.devices[63]!.bdf, '1G'), { host: new HostKernel(cfg) });
    const before = heap();
    const hostResident0 = host.phys.residentBytes;
    const machines = Array.from({ length: n }, (_, i) => Machine.create(machineArgs('on', cfg.devices[i]!.bdf, '1G'), { host }));
    const idle = (heap() - before + (host.phys.residentBytes - hostResident0)) / n;
    void warm.ramBytes; // keep the warm-up machine alive until measured
    const guests = machines.map((m) => new GuestKernel(m.guestPlatform(), m.acpi));
    const cmds = Array.from({ length: 64 }, (_, i) => buildCommand(Op.TLBI_NH_VA, { asid: 1, addr: i * 4096 }));
    // The same number of submissions whatever the VM count, so rates compare.
    const rounds = Math.max(1, Math.floor((quick ? 256 : 4096) / n));
    const run = () => {
      let c = 0;
      for (let r = 0; r < rounds; r++) {
        for (const g of guests) {
          const q = g.iommus[0]!.cmdqv!;
          q.submit(cmds, r & 1);
          c += cmds.length;
        }
      }
      return c;
    };
    run();
    const rates: number[] = [];
    for (let k = 0; k < (quick ? 3 : 5); k++) {
      const t0 = process.hrtime.bigint();
      const c = run();
      rates.push((c / Number(process.hrtime.bigint() - t0)) * 1e9);
    }
    out.push({ vms: n, commandsPerSec: median(rates), bytesPerIdleVm: idle });
  }
  return out;
}

/** Row 7: modelled invalidation latency per operation on both paths, from row-3 counts. */
export function costRows(loop: LoopResult[], model: CostModel = DEFAULT_COST_MODEL): Row[] {
  const rows: Row[] = [];
  for (const batch of [1, 16, 256]) {
    const v = loop.find((l) => l.batch === batch && l.path === 'cmdqv')!;
    const t = loop.find((l) => l.batch === batch && l.path === 'trapped')!;
    const lv = modelLatency(v.counts, model).perOpNs;
    const lt = modelLatency(t.counts, model).perOpNs;
    rows.push({
      name: `7. modelled invalidation latency, batch ${batch}`,
      value: (1 - lv / lt) * 100,
      unit: '% less',
      note: `VCMDQ ${(lv / 1000).toFixed(2)} us/op vs trapped ${(lt / 1000).toFixed(2)} us/op (NVIDIA reports 70-90%)`,
    });
  }
  return rows;
}
