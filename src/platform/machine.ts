/**
 * The composition root: the one module that knows every layer. It parses the command line,
 * builds (or shares) the simulated host, starts the VMM process on it, and gives the VMM's
 * machine that process's system calls — the only way the VMM reaches the host. The guest
 * reaches the machine through `guestPlatform()` (MMIO, guest RAM, IRQs).
 */

import { readFileSync, statSync } from 'node:fs';
import { VirtualClock } from '../kit/clock.js';
import { ModelLog } from '../kit/log.js';
import { MIGRATION_TRACE_EVENTS } from './migration/trace-events.js';
import { traceCatalog, Tracer, type TraceEvent, type TraceSink } from '../kit/trace.js';
import { DEFAULT_HOST, type HostConfig } from '../host/config.js';
import { HOST_TRACE_EVENTS, HostKernel } from '../host/kernel/host-kernel.js';
import type { Process } from '../host/kernel/process.js';
import { DEFAULT_ARGS, VirtMachine, VMM_TRACE_EVENTS, type RamBacking } from '../vmm/virt/machine.js';
import { runPciFirmware, type PciFirmwareResult } from '../guest/pci-firmware.js';
import { FaultInjectingSyscalls, type FaultSpec } from './fault-injection.js';
import { OptionError, parseVirtArgs, type VirtOptions } from '../vmm/virt/options.js';
import type { ChromeTraceWriter } from '../kit/trace.js';
import type { GuestPlatform } from '../kit/guest-seam.js';
import { DEFAULT_COST_MODEL, ZERO_COST_MODEL, type CostModel } from './cost-model.js';
import { Timeline } from './timeline.js';
import type { PlainValue } from '../kit/persist.js';
import { forEachTouchedRam } from './snapshot/guest-ram.js';
import { restoreMachine, type RestoreOptions } from './snapshot/restore.js';
import { saveMachine, type SaveOptions } from './snapshot/save.js';
import type { GuestSoftware } from './snapshot/state.js';

export { SnapshotError } from './snapshot/errors.js';
export type { RamSource } from './snapshot/guest-ram.js';
export type { RestoreOptions } from './snapshot/restore.js';
export type { SaveOptions } from './snapshot/save.js';
export type { GuestSoftware } from './snapshot/state.js';

export { DEFAULT_ARGS, VIRT_RAM_BASE } from '../vmm/virt/machine.js';
export type { EmulatedSmmu, MachineDevice, MachineSmmu, RootBus } from '../vmm/virt/machine.js';
export { OptionError } from '../vmm/virt/options.js';
export { strerrorOfName } from '../uapi/errno.js';
export { cmdqvDeviceName } from '../vmm/acpi/dsdt.js';
export { HostKernel } from '../host/kernel/host-kernel.js';
export { DEFAULT_HOST, type HostConfig } from '../host/config.js';

/** Every trace event of the stack: what `-trace` patterns are matched against. */
export const TRACE_CATALOG: readonly TraceEvent[] = traceCatalog(HOST_TRACE_EVENTS, VMM_TRACE_EVENTS, MIGRATION_TRACE_EVENTS);

/** Options of {@link Machine.create}. */
export interface MachineCreateOptions {
  /** Host description or an existing host (several machines can share one). */
  host?: HostConfig | HostKernel;
  /** Faults to inject at the VMM's syscall seam (`--inject`; see fault-injection.ts). */
  inject?: readonly FaultSpec[];
  /** Run the firmware's PCI step (bus numbers, BARs) before returning; default true, as a boot does. */
  firmware?: boolean;
  /** What modelled time charges at each seam (`--cost-model`); default {@link DEFAULT_COST_MODEL}. */
  costModel?: CostModel;
  /** Write the run's Perfetto timeline here (`--trace-out`); the tracer's records go to it too. */
  trace?: ChromeTraceWriter;
  /**
   * Called with the new machine before its firmware runs (`--record` attaches its recorder
   * here, so the firmware's accesses are recorded too).
   */
  attach?: (m: Machine) => void;
}

/** A VM on a host: the VMM's machine plus the host and the VMM process it runs as. */
export class Machine extends VirtMachine {
  /** The host the VMM runs on (shared when several machines were given the same one). */
  readonly host: HostKernel;
  /** The VMM process (the host's side: fds, address space). */
  readonly proc: Process;

  /** The fault-injecting syscall layer, when faults were asked for (what fired: `.injected`). */
  readonly faults: FaultInjectingSyscalls | undefined;
  /** Stops taking the host's log entries and trace records (at close). */
  private readonly detachFromHost: () => void;
  /** Modelled time and the Perfetto trace at the layers' seams (platform/timeline.ts). */
  readonly timeline: Timeline;

  private constructor(
    options: VirtOptions,
    host: HostKernel,
    proc: Process,
    faults: FaultInjectingSyscalls | undefined,
    runtime: { clock: VirtualClock; log: ModelLog; tracer: Tracer; detach: () => void; timeline: Timeline },
  ) {
    super(options, {
      sys: faults ?? proc,
      clock: runtime.clock,
      log: runtime.log,
      tracer: runtime.tracer,
      ramBacking: ramBacking(host.config, options),
    });
    this.host = host;
    this.proc = proc;
    this.faults = faults;
    this.detachFromHost = runtime.detach;
    this.timeline = runtime.timeline;
    this.as.observer = runtime.timeline;
  }

  /**
   * Build a machine from a QEMU-style argument list (empty = the embedded default).
   * @throws OptionError for bad options or impossible topologies (message says which)
   */
  static create(argv: readonly string[] = DEFAULT_ARGS, opts: MachineCreateOptions = {}): Machine {
    const options = parseVirtArgs(argv.length ? argv : DEFAULT_ARGS);
    for (const file of options.traceEventFiles) options.trace.push(...readTraceEventsFile(file));
    const clock = new VirtualClock();
    const log = new ModelLog();
    log.now = () => clock.now;
    const tracer = new Tracer(TRACE_CATALOG);
    tracer.now = () => clock.now;
    // A new host runs on this machine's clock but keeps its own log and trace (its dmesg).
    const host = opts.host instanceof HostKernel ? opts.host : new HostKernel(opts.host ?? DEFAULT_HOST, { clock });
    const proc = host.createProcess();
    log.pid = () => proc.pid;
    tracer.pid = () => proc.pid;
    // Attached before the VMM starts, so the host's work while the machine is built shows too.
    const detachEvents = showOwnHostEvents(host, proc, log, tracer, options.trace);
    // Modelled time: the VMM's syscalls and the host's queues charge the clock from the start.
    // Under -accel qtest no guest runs: QEMU's clock moves only by clock_step/clock_set.
    const costs = options.accel === 'qtest' ? ZERO_COST_MODEL : (opts.costModel ?? DEFAULT_COST_MODEL);
    const timeline = new Timeline(clock, costs, opts.trace);
    proc.syscallObserver = timeline.syscalls;
    proc.eventObserver = timeline.veventqs;
    for (const u of host.smmus.values()) timeline.attachUnit({ name: u.name, smmu: u.hw, cmdqv: u.cmdqvHw });
    if (opts.trace) {
      opts.trace.placeRecord = timeline.placeRecord(new Set(host.tracer.catalog));
      tracer.addSink(opts.trace);
    }
    const detach = () => {
      detachEvents();
      timeline.detachUnits();
    };
    try {
      const faults = opts.inject?.length ? new FaultInjectingSyscalls(proc, opts.inject) : undefined;
      const m = new Machine(options, host, proc, faults, { clock, log, tracer, detach, timeline });
      for (const s of m.smmus) timeline.attachVmmSmmu({ name: s.dev.props.id, observers: s.dev.observers, cmdqv: s.cmdqv });
      for (const e of m.emulatedSmmus) timeline.attachVmmSmmu({ name: e.id, observers: e.device.observers, cmdqv: undefined });
      m.argv = argv.length ? [...argv] : DEFAULT_ARGS;
      opts.attach?.(m);
      if (opts.firmware !== false) m.runFirmware();
      return m;
    } catch (e) {
      // QEMU exits on a creation error: the kernel releases what the process had taken.
      proc.exit();
      detach();
      throw e;
    }
  }

  /**
   * Interposes on the guest's view of the machine (`--record`, platform/record/recorder.ts):
   * when set, {@link guestPlatform} hands the guest what it makes of the plain view. Unset (the
   * default), the guest's accesses go straight to the address space: nothing per access.
   */
  guestView: ((p: GuestPlatform) => GuestPlatform) | undefined;

  /** The guest's view of the machine (through {@link guestView} when one is set). */
  override guestPlatform(): GuestPlatform {
    const p = super.guestPlatform();
    return this.guestView ? this.guestView(p) : p;
  }

  /** The QEMU-style command line the machine was built from (an image records it). */
  argv: readonly string[] = DEFAULT_ARGS;

  /** The guest software running on the machine (driver model + workload), saved with it. */
  guestSoftware: GuestSoftware | undefined;

  /** After {@link Machine.restore}: the image's guest software state, for it to resume from. */
  restoredGuest: PlainValue | undefined;

  /**
   * The whole VM, between two guest accesses, as a versioned, self-describing image (see
   * `snapshot/image.ts` and `snapshot/state.ts`): guest RAM that holds data, every VMM device,
   * the guest-visible host state (HW queue registers, pending vEVENTs), IRQ lines, the virtual
   * clock and pending main-loop work, and the guest software's state. The machine is not
   * changed. `ram: false` leaves guest RAM out (a migration sends it page by page).
   */
  save(opts: SaveOptions = {}): Uint8Array {
    this.checkOpenForSnapshot();
    return saveMachine(this, opts);
  }

  /**
   * Re-create a saved VM on `opts.host` — a new host (a `HostConfig`, default the default host)
   * or a running one, which may hold other VMs so that VINTF indexes, HW queue ids and VMIDs
   * differ — through the calls its VMM makes (vIOMMU, vDEVICEs, nested HWPTs, HW queues, page0
   * mmap, vEVENTQs), then load the device state. The guest cannot tell. `opts.ram` is guest RAM
   * from elsewhere ({@link RamSource}: `size` = the VM's RAM size, `forEachChunk(fn(offset,
   * bytes))` with offsets from the start of guest RAM; a `SparseMemory` of that size is one),
   * laid over the image's RAM; it is required when the image was saved with `ram: false`.
   * Guest RAM is copied out of the image (it can be restored again) unless `opts.adopt` hands
   * the image's buffer and `opts.ram`'s chunks over to the VM (no copy; see `RestoreOptions`).
   * The guest software's state is left in {@link restoredGuest} (`WorkloadRun.resume` takes it).
   * @throws SnapshotError naming the problem (truncated, corrupt, another version or topology,
   * a host call failing); nothing is left on the host
   */
  static restore(image: Uint8Array, opts: RestoreOptions = {}): Machine {
    return restoreMachine(image, opts);
  }

  /**
   * Visit guest RAM that holds data, in guest order: `fn(offset, bytes)` with the offset from
   * the start of guest RAM and a view of the bytes (copy what you keep). Page copies in and out
   * are {@link readRam} / {@link writeRam}.
   */
  forEachTouchedRam(fn: (offset: number, bytes: Uint8Array) => void): void {
    this.checkOpenForSnapshot();
    forEachTouchedRam(this, fn);
  }

  private checkOpenForSnapshot(): void {
    if (this.isClosed) throw new Error('machine is closed');
  }

  /** What the firmware's PCI step did at the last boot (undefined before it ran). */
  firmware: PciFirmwareResult | undefined;

  /**
   * The firmware's PCI step, as EDK2 runs it before the OS: number the bridges and assign BARs
   * from the host bridge's windows, through ECAM (the ACPI tables are built afterwards, on
   * their first read, from what it left in the bridges).
   */
  runFirmware(): PciFirmwareResult {
    const l = this.pci.layout;
    this.firmware = runPciFirmware(this.guestPlatform().bus, { ecamBase: l.ecamBase, ecamBuses: l.ecamSize / 2 ** 20, mmio32: l.mmio, mmio64: l.highMmio });
    return this.firmware;
  }

  /**
   * End the VM as its VMM process's exit does: the VMM closes its files and unmaps its memory,
   * then the host's process teardown releases anything left (page0 mappings, vEVENTQ files).
   * Afterwards the host has every VINTF, HW queue, VMID, page and fd of this VM back; calls on
   * the machine throw.
   */
  override close(): void {
    if (this.isClosed) return;
    super.close();
    this.proc.exit();
    this.detachFromHost();
  }
}

/**
 * A VM's log and trace also show what the host did for the VM's own process (entries and
 * records with its pid), never another VM's. Host trace events the VM's tracer enables are
 * `patterns` (the VM's -trace) selects are enabled on the host tracer too (by exact name:
 * enabling is a union over the VMs).
 * Returns the function that stops it.
 */
function showOwnHostEvents(host: HostKernel, proc: Process, log: ModelLog, tracer: Tracer, patterns: readonly string[]): () => void {
  const unsubscribe = host.log.subscribe((e) => {
    if (e.pid === proc.pid) log.append(e);
  });
  // The host events the VM's patterns select, applied in order on a scratch tracer.
  const wanted = new Tracer(host.tracer.catalog);
  for (const p of patterns) wanted.enable(p);
  const names = wanted.enabledNames();
  if (names.length) host.tracer.enable(names.join(','));
  const sink: TraceSink = {
    record: (ev, time, values, pid) => {
      if (pid === proc.pid) tracer.deliver(ev, time, values, pid);
    },
  };
  host.tracer.addSink(sink);
  return () => {
    unsubscribe();
    host.tracer.removeSink(sink);
  };
}

/**
 * How guest RAM is backed. With a memory backend (`memory-backend=`, `-numa node,memdev=`) it
 * is what the backend says: a hugetlbfs `mem-path` means hugepages (refused when the host has
 * none, as QEMU fails to open the path), anything else normal pages. Without one: hugepages
 * when the host has them (the embedded default stands for a hugepage-backed line).
 */
function ramBacking(config: HostConfig, options: VirtOptions): RamBacking {
  const b = options.memBackend;
  const huge = b === undefined ? config.hugepages : b.hugepages;
  if (huge && !config.hugepages) {
    throw new OptionError(`-object ${b!.type},id=${b!.id}: can't open backing store ${b!.memPath} for guest RAM: No such file or directory`);
  }
  return huge ? { hugepages: true, pageSize: config.hugepageSize } : { hugepages: false, pageSize: config.pageSize };
}

/** The largest `-trace events=FILE` taken (a list of patterns is a few KiB). */
const MAX_TRACE_EVENTS_FILE_BYTES = 1 << 20;

/** `-trace events=FILE`: one pattern a line, `#` comments and blank lines skipped (QEMU's format). */
function readTraceEventsFile(file: string): string[] {
  let text: string;
  try {
    // A regular file of bounded size: a device (/dev/zero, a FIFO) would be read forever.
    const st = statSync(file);
    if (!st.isFile()) throw new OptionError(`-trace events=${file}: '${file}' is not a regular file`);
    if (st.size > MAX_TRACE_EVENTS_FILE_BYTES) throw new OptionError(`-trace events=${file}: '${file}' is ${st.size} bytes (at most ${MAX_TRACE_EVENTS_FILE_BYTES})`);
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if (e instanceof OptionError) throw e;
    throw new OptionError(`-trace events=${file}: Could not open '${file}': ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'No such file or directory' : (e as Error).message}`);
  }
  return text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
}
