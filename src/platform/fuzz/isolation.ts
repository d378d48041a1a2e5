/**
 * Two VMs on one host, one of them hostile: the victim runs a known workload in chunks while
 * the attacker's guest runs the fuzzer's operations between them (its own SMMU and CMDQV,
 * another device on the same host SMMU and CMDQV). The victim's observations — its DMA
 * results, its error counts, its guest-visible registers and the host IOTLB entries of its
 * VMIDs — must equal those of the same run with an idle neighbour.
 */

import { HostKernel } from '../../host/kernel/host-kernel.js';
import { Machine } from '../machine.js';
import { runWorkload, type WorkloadReport } from '../workload.js';
import { OpGenerator } from './generate.js';
import { applyOp, MAIN_LOOP_LIMIT, type FuzzOp } from './ops.js';
import { registerImage, targetsOf, type Finding } from './case.js';

/** Guest operations of the attacker between two chunks of the victim's workload. */
const CHUNKS = 4;

function vmArgs(bdf: string): string[] {
  return [
    '-m', '1G', '-object', 'iommufd,id=iommufd0',
    '-device', 'arm-smmuv3,primary-bus=pcie.0,accel=on,cmdqv=on,identifier=1',
    '-device', `vfio-pci,host=${bdf},iommufd=iommufd0`,
  ];
}

/** What the victim sees of a run (nothing host-global, nothing the neighbour may change legitimately). */
interface Observation {
  readonly reports: readonly unknown[];
  readonly registers: readonly number[];
  readonly iotlb: string;
}

function observe(report: WorkloadReport): unknown {
  return {
    dma: report.dmaChecks,
    errors: { ...report.errors, hostFaultsForwarded: undefined },
    vcmdq: { commands: report.vcmdq.commands, batches: report.vcmdq.batches, exits: report.vcmdq.exits },
    smmuCmdq: { commands: report.smmuCmdq.commands, batches: report.smmuCmdq.batches, exits: report.smmuCmdq.exits },
    hwQueues: report.hwQueues.map((q) => q.id !== undefined),
  };
}

function iotlbOf(host: HostKernel, vmids: ReadonlySet<number>): string {
  const entries = host.smmus.get('smmu0')!.hw.iotlb.entries().filter((e) => vmids.has(e.vmid));
  return JSON.stringify(entries.map((e) => [e.vmid, e.asid, e.iova, e.pa, e.size, e.perm]).sort());
}

/**
 * The victim's workload in chunks on a fresh host next to the attacker; `burst` (if any) runs
 * the attacker's guest operations before each chunk. `vmids`: the victim's VMIDs (from the
 * baseline run, whose IOTLB holds only the victim's entries); undefined to learn them.
 */
function victimRun(burst: ((attacker: Machine) => void) | undefined, vmids: ReadonlySet<number> | undefined): Observation & { vmids: ReadonlySet<number> } {
  const host = new HostKernel();
  const victim = Machine.create(vmArgs('0009:01:00.0'), { host });
  const attacker = Machine.create(vmArgs('0009:01:00.1'), { host });
  try {
    const reports: unknown[] = [];
    for (let k = 0; k < CHUNKS; k++) {
      burst?.(attacker);
      reports.push(observe(runWorkload(victim, { ops: 8, batch: 4, pages: 1, injectError: k === CHUNKS - 1, skipInvalidation: false })));
      victim.runMainLoop();
    }
    const own = vmids ?? new Set(host.smmus.get('smmu0')!.hw.iotlb.entries().map((e) => e.vmid));
    return { reports, registers: [...registerImage(victim, targetsOf(victim))], iotlb: iotlbOf(host, own), vmids: own };
  } finally {
    attacker.close();
    victim.close();
  }
}

/** The first difference between two observations, or ''. */
function difference(a: Observation, b: Observation): string {
  for (let k = 0; k < a.reports.length; k++) {
    const x = JSON.stringify(a.reports[k]);
    const y = JSON.stringify(b.reports[k]);
    if (x !== y) return `workload chunk ${k}: alone ${x}; with the attacker ${y}`;
  }
  const i = a.registers.findIndex((v, j) => v !== b.registers[j]);
  if (i >= 0) return `register word ${i}: alone 0x${a.registers[i]!.toString(16)}, with the attacker 0x${b.registers[i]!.toString(16)}`;
  if (a.iotlb !== b.iotlb) return "the host IOTLB entries of the victim's VMIDs differ";
  return '';
}

/**
 * One isolation case: the victim's run alone and next to an attacker running `ops` guest
 * operations of `seed` (in bursts between the workload chunks); a finding if the victim can tell.
 */
export function runIsolationCase(seed: number, ops: number): Finding | undefined {
  const argv: readonly string[] = [];
  let baseline: Observation & { vmids: ReadonlySet<number> };
  try {
    baseline = victimRun(undefined, undefined);
  } catch (e) {
    return { seed, kind: 'exception', message: `the victim's run alone failed: ${(e as Error).message}`, index: -1, argv, source: 'isolation' };
  }
  let index = 0;
  let attacked: Observation;
  try {
    let generator: OpGenerator | undefined;
    const burst: FuzzOp[] = [];
    const perBurst = Math.ceil(ops / CHUNKS);
    attacked = victimRun((attacker) => {
      generator ??= new OpGenerator(seed, targetsOf(attacker));
      for (let i = 0; i < perBurst; ) {
        burst.length = 0;
        generator.next(burst);
        for (const o of burst) {
          applyOp(attacker, o);
          index++;
          i++;
        }
      }
      // The attacker's pending main-loop work runs too (its vEVENT handlers), bounded.
      attacker.clock.runUntilIdle(MAIN_LOOP_LIMIT);
    }, baseline.vmids);
  } catch (e) {
    return { seed, kind: 'exception', message: `with the attacker: ${(e as Error).name}: ${(e as Error).message}`, index, argv, source: 'isolation' };
  }
  const diff = difference(baseline, attacked);
  return diff ? { seed, kind: 'isolation', message: diff, index, argv, source: 'isolation' } : undefined;
}
