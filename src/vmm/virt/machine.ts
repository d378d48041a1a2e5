/**
 * The virt machine as the VMM builds it: guest RAM, the platform bus with the accelerated
 * SMMUv3s and their Tegra241 CMDQVs, PCIe root buses (pcie.0 and pxb-pcie expanders) with the
 * VFIO devices behind each SMMU, GIC-level interrupt lines and the ACPI tables. It reaches its
 * host only through {@link Syscalls}; `src/platform` gives it one (the library's `Machine`).
 */

import { AddressSpace, type AccessResult } from '../../kit/address-space.js';
import { VirtualClock } from '../../kit/clock.js';
import type { IrqLine } from '../../kit/irq.js';
import { ModelLog } from '../../kit/log.js';
import { MemoryRegion, RAM_RULES, type AccessSize } from '../../kit/memory-region.js';
import { ChromeTraceSink, TextTraceSink, traceCatalog, Tracer, type TraceEvent } from '../../kit/trace.js';
import { TRACE_EVENTS as BACKEND_EVENTS } from '../backends/trace-events.js';
import { TRACE_EVENTS as SMMUV3_EVENTS } from '../smmuv3/trace-events.js';
import { TRACE_EVENTS as CMDQV_EVENTS } from '../tegra241-cmdqv/trace-events.js';
import { mmapAnonymous, type MemoryView, type Syscalls } from '../../uapi/syscalls.js';
import { buildDsdt } from '../acpi/dsdt.js';
import { buildIort } from '../acpi/iort.js';
import type { AcpiTopology } from '../acpi/topology.js';
import { IommufdBackend } from '../backends/iommufd.js';
import { AccelSmmuV3 } from '../smmuv3/accel-smmuv3.js';
import { EmulatedSmmuV3 } from '../smmuv3/emulated-smmuv3.js';
import type { PciIommu } from '../pci/iommu.js';
import type { AccelHostDevice } from '../smmuv3/cmdqv-ops.js';
import type { GuestMemory } from '../smmuv3/ste-install.js';
import { Tegra241Cmdqv } from '../tegra241-cmdqv/cmdqv.js';
import type { GuestPlatform } from '../../kit/guest-seam.js';
import { ClockMainLoop } from '../main-loop.js';
import { CpuBus } from './cpu-bus.js';
import { OptionError, PHYS_ADDR_BITS, type SmmuOpts, type VfioOpts, type VirtOptions } from './options.js';
import { placePciDevices, type PciPlacement } from './pci-topology.js';
import { PlatformBus } from './platform-bus.js';
import { buildMcfg } from '../acpi/mcfg.js';
import type { PciBus, PciFunction } from '../pci/device.js';
import { pcieRootPort, pxbPcieFunction, gpexRoot, vfioPciFunction, VfioPciFunction } from '../pci/functions.js';
import { VfioDevice } from '../backends/vfio-device.js';
import { PciHost } from '../pci/host.js';
import { IommuTestdev, type DmaMemory } from '../pci/iommu-testdev.js';
import { TRACE_EVENTS as PCI_EVENTS } from '../pci/trace-events.js';
import { virtPciLayout } from '../pci/virt-layout.js';
import { LEGACY_SMMU_BASE, LEGACY_SMMU_GSIV_BASE, planIort, type AcpiSmmu } from '../acpi/topology.js';

/** {@link VirtMachine.readRam} reads at most this many bytes into a caller's buffer word by word. */
const SMALL_RAM_READ = 16;

/** Guest RAM base of the virt machine (VIRT_MEM). */
export const VIRT_RAM_BASE = 0x4000_0000;
/** The embedded default machine: one accelerated SMMUv3 with CMDQV and one passthrough device. */
export const DEFAULT_ARGS: readonly string[] = [
  '-machine', 'virt,accel=kvm,kernel-irqchip=on',
  '-m', '4G',
  '-object', 'iommufd,id=iommufd0',
  '-device', 'arm-smmuv3,primary-bus=pcie.0,id=smmuv3.0,accel=on,cmdqv=on,identifier=1',
  '-device', 'vfio-pci,host=0009:01:00.0,iommufd=iommufd0,id=hostdev0',
];

/** Every trace event of the VMM (iommufd backend, SMMUv3, Tegra241 CMDQV). */
export const VMM_TRACE_EVENTS: readonly TraceEvent[] = traceCatalog(BACKEND_EVENTS, SMMUV3_EVENTS, CMDQV_EVENTS, PCI_EVENTS);

/** A PCIe bus: a root bus (pcie.0, a pxb-pcie) or the secondary bus of a pcie-root-port. */
export interface RootBus {
  readonly id: string;
  readonly busNr: number;
  /** The root bus it lies under (itself for a root bus). */
  readonly root: string;
  /** Highest bus number under a root bus (firmware's numbering of the root ports behind it). */
  readonly subordinate: number;
  /** `bypass_iommu=on` (pxb-pcie). */
  readonly bypassIommu: boolean;
}

/** Size of an SMMUv3's register frame (two 64 KiB pages). */
const SMMU_MMIO_SIZE = 0x2_0000;

/**
 * An emulated (non-accel) SMMUv3 of the command line, or the machine-wide one of
 * `iommu=smmuv3`: translation and invalidation done in the VMM (QEMU's emulated SMMUv3).
 */
export interface EmulatedSmmu {
  /** The `-device arm-smmuv3` options; undefined for the machine-wide (legacy) SMMU. */
  readonly opts: SmmuOpts | undefined;
  readonly id: string;
  readonly base: number;
  /** GSIV of IRQ 0 (event), +1 PRI, +2 CMD_SYNC, +3 GERROR. */
  readonly irqBaseGsiv: number;
  readonly device: EmulatedSmmuV3;
}

/** An SMMU of the machine with its platform-bus resources. */
export interface MachineSmmu {
  readonly opts: SmmuOpts;
  readonly dev: AccelSmmuV3;
  readonly base: number;
  /** GSIV of IRQ 0 (event), +1 PRI, +2 CMD_SYNC, +3 GERROR. */
  readonly irqBaseGsiv: number;
  cmdqv: Tegra241Cmdqv | undefined;
  cmdqvBase: number | undefined;
  cmdqvGsiv: number | undefined;
}

/** A passthrough device. */
export interface MachineDevice {
  readonly opts: VfioOpts;
  readonly host: AccelHostDevice;
  readonly smmu: MachineSmmu;
  readonly bus: RootBus;
  /** Host device index (its /dev/vfio/devices/vfioN). */
  readonly hostIndex: number;
}

/** How guest RAM is backed on the host (QEMU's memory backend). */
export interface RamBacking {
  /** Hugepage-backed (hugetlbfs): IDR1.CMDQS and the HW-queue contiguity check depend on it. */
  readonly hugepages: boolean;
  /** Backing page size in bytes. */
  readonly pageSize: number;
}

/** What the VMM process runs with: its system calls, clock, log and tracer. */
export interface VmmEnvironment {
  readonly sys: Syscalls;
  readonly clock: VirtualClock;
  readonly log: ModelLog;
  readonly tracer: Tracer;
  readonly ramBacking: RamBacking;
}

function smmuPrimaryBus(m: MachineSmmu | EmulatedSmmu): string | undefined {
  return m.opts?.primaryBus;
}

/** The VMM's machine. */
export class VirtMachine {
  readonly clock: VirtualClock;
  readonly log: ModelLog;
  readonly tracer: Tracer;
  readonly traceText: TextTraceSink;
  readonly traceChrome: ChromeTraceSink;
  /** The VMM process's system calls. */
  readonly sys: Syscalls;
  /** The VMM's main loop (fd handlers and deferred work run on the virtual clock). */
  readonly mainLoop: ClockMainLoop;
  readonly as: AddressSpace;
  readonly ramVa: number;
  readonly ramBytes: number;
  readonly ramPageSize: number;
  readonly backends = new Map<string, IommufdBackend>();
  readonly buses: RootBus[] = [];
  readonly smmus: MachineSmmu[] = [];
  /** Emulated SMMUv3s (accel=off, and the machine-wide `iommu=smmuv3`). */
  readonly emulatedSmmus: EmulatedSmmu[] = [];
  /** Every SMMU (accelerated or emulated) in creation order: the platform-bus and ACPI order. */
  private readonly smmuOrder: (MachineSmmu | EmulatedSmmu)[] = [];
  private readonly placement: PciPlacement;
  readonly devices: MachineDevice[] = [];
  readonly irqs = new Map<number, IrqLine>();
  /** The PCIe host bridge (ECAM, root buses, BAR decoding). */
  readonly pci: PciHost;
  /** Every modelled PCI function of the command line by its index in `options.pciDevices`. */
  readonly pciFunctions: (PciFunction | undefined)[] = [];
  /** The iommu-testdev devices, in creation order. */
  readonly testdevs: IommuTestdev[] = [];
  private acpiTables: { iort: Uint8Array; dsdt: Uint8Array; mcfg: Uint8Array } | undefined;
  private readonly platformBus = new PlatformBus();
  private readonly s2 = new Map<string, number>();
  private readonly ioas = new Map<string, number>();
  private readonly ramOps: MemoryView;
  /** The guest CPU's loads and stores (guest RAM direct, the rest through {@link as}). */
  private readonly cpuBus: CpuBus;
  /** Bytes of the guest RAM mapping (whole backing pages). */
  private readonly ramMapBytes: number;
  private closed = false;

  constructor(
    readonly options: VirtOptions,
    env: VmmEnvironment,
  ) {
    this.clock = env.clock;
    this.log = env.log;
    this.tracer = env.tracer;
    this.sys = env.sys;
    this.mainLoop = new ClockMainLoop(env.sys, env.clock);
    this.traceText = new TextTraceSink();
    this.traceChrome = new ChromeTraceSink();
    this.tracer.addSink(this.traceText);
    this.tracer.addSink(this.traceChrome);
    for (const p of options.trace) {
      const unmatched = this.tracer.enable(p);
      if (unmatched.length) throw new OptionError(`-trace ${p}: no trace event matches '${unmatched.join("', '")}'`);
    }
    // Guest RAM, backed as the memory backend says (hugepages: hugetlbfs).
    this.ramBytes = options.memBytes;
    const huge = env.ramBacking.hugepages;
    this.ramPageSize = env.ramBacking.pageSize;
    this.ramMapBytes = Math.ceil(this.ramBytes / this.ramPageSize) * this.ramPageSize;
    const ramVa = mmapAnonymous(this.sys, this.ramMapBytes, huge);
    if (ramVa < 0) throw new OptionError(`-m: cannot allocate ${this.ramBytes} bytes of guest RAM on the host (errno ${-ramVa})`);
    this.ramVa = ramVa;
    const root = MemoryRegion.container('system', 2 ** PHYS_ADDR_BITS);
    this.ramOps = this.sys.memory.view(ramVa);
    const ram = new MemoryRegion('mach-virt.ram', this.ramBytes, 'ram', this.ramOps, RAM_RULES);
    root.addSubregion(VIRT_RAM_BASE, ram);
    this.as = new AddressSpace('memory', root, this.log);
    this.cpuBus = new CpuBus(this.as, ram, this.ramOps, VIRT_RAM_BASE, () => this.checkOpen());
    for (const id of options.iommufds) {
      try {
        this.backends.set(id, new IommufdBackend(id, this.sys, this.tracer));
      } catch (e) {
        throw new OptionError(`-object iommufd,id=${id}: ${(e as Error).message}`);
      }
    }
    this.placement = placePciDevices(options.pciDevices);
    for (const b of this.placement.buses) {
      this.buses.push({ id: b.id, busNr: b.busNr, root: b.root, subordinate: b.subordinate, bypassIommu: b.id === 'pcie.0' ? options.defaultBusBypassIommu : options.pxbs.find((p) => p.id === b.id)?.bypassIommu ?? false });
    }
    this.pci = this.buildPci(root);
    if (options.legacySmmu) this.plugEmulatedSmmu(undefined, 'virt-smmu', '-machine virt,iommu=smmuv3', LEGACY_SMMU_BASE, LEGACY_SMMU_GSIV_BASE);
    options.smmus.forEach((s, i) => this.plugSmmu(s, i));
    for (const v of options.vfios) this.plugVfio(v);
    this.machineInitDone();
    this.checkTestdevs();
    this.reset();
  }

  /**
   * The ACPI tables as the guest reads them: built at the first read, from the bridge registers
   * as firmware left them (QEMU rebuilds its tables when the guest first reads them, after
   * enumeration; docs/reference/pci.md §6), then kept.
   */
  get acpi(): { iort: Uint8Array; dsdt: Uint8Array; mcfg: Uint8Array } {
    this.acpiTables ??= {
      iort: buildIort(this.acpiTopology()),
      dsdt: buildDsdt(this.acpiTopology()),
      mcfg: buildMcfg({ base: this.pci.layout.ecamBase, endBus: this.pci.layout.ecamSize / 2 ** 20 - 1 }),
    };
    return this.acpiTables;
  }

  /** The host bridge at QEMU's addresses, and every modelled PCI function at its placement. */
  private buildPci(root: MemoryRegion): PciHost {
    const host = new PciHost(virtPciLayout(this.ramBytes, this.options.highmemEcam, PHYS_ADDR_BITS), root, this.log, this.tracer);
    root.addSubregion(host.layout.ecamBase, host.ecam);
    const buses = new Map<string, PciBus>([['pcie.0', host.roots[0]!]]);
    host.roots[0]!.plug(gpexRoot(), 0);
    const ram: DmaMemory = {
      write: (pa, bytes) => this.dmaRam(pa, bytes.length) && (this.sys.memory.store(this.ramVa + pa - VIRT_RAM_BASE, bytes), true),
      read: (pa, out) => this.dmaRam(pa, out.length) && (out.set(this.sys.memory.load(this.ramVa + pa - VIRT_RAM_BASE, out.length)), true),
    };
    this.options.pciDevices.forEach((d, i) => {
      const where = this.placement.devices[i]!;
      const bus = buses.get(where.bus)!;
      let fn: PciFunction | undefined;
      if (d.driver === 'pxb-pcie') {
        fn = pxbPcieFunction(d.id!);
        buses.set(d.id!, host.addRootBus(d.id!, d.opens?.kind === 'root' ? d.opens.busNr : 0));
      } else if (d.driver === 'pcie-root-port') {
        const p = this.options.rootPorts.find((r) => r.id === d.id)!;
        const port = pcieRootPort(d.id!, { port: p.port, slot: p.slot });
        buses.set(d.id!, port.secondary);
        fn = port;
      } else if (d.driver === 'vfio-pci') {
        fn = vfioPciFunction(d.id ?? `vfio-pci.${i}`);
      } else if (d.driver === 'iommu-testdev') {
        const rootId = () => fn!.bus!.root.id;
        const dev = new IommuTestdev(d.id, { iommu: () => this.busIommu(rootId()), memory: ram, log: this.log, tracer: this.tracer });
        this.testdevs.push(dev);
        fn = dev;
      }
      // Devices cmdqv does not model keep their slot but have no function.
      if (d.multifunction) fn?.markMultifunction();
      if (fn) bus.plug(fn, where.devfn);
      this.pciFunctions.push(fn);
    });
    return host;
  }

  /** Whether [pa, pa + n) is guest RAM (where cmdqv's DMA masters may write). */
  private dmaRam(pa: number, n: number): boolean {
    return pa >= VIRT_RAM_BASE && pa + n <= VIRT_RAM_BASE + this.ramBytes;
  }

  /**
   * The IOMMU in front of root bus `rootBusId` for emulated devices' DMA: its emulated SMMUv3,
   * or none (DMA goes straight to guest-physical addresses).
   */
  private busIommu(rootBusId: string): PciIommu | undefined {
    return this.emulatedSmmuFor(rootBusId);
  }

  /** QEMU refuses an emulated endpoint behind an accel=on SMMU (smmuv3-accel.c). */
  private checkTestdevs(): void {
    for (const t of this.testdevs) {
      const root = t.bus!.root.id;
      if (this.smmus.some((m) => m.opts.primaryBus === root)) {
        throw new OptionError(`-device iommu-testdev${t.id ? `,id=${t.id}` : ''}: Emulated endpoint devices are not allowed when using arm-smmuv3,accel=on`);
      }
    }
  }

  private plugSmmu(s: SmmuOpts, index: number): void {
    const id = s.id ?? `smmuv3.${index}`;
    const ctx = `-device ${s.arg}`;
    const bus = this.buses.find((b) => b.id === s.primaryBus);
    if (!bus) throw new OptionError(`${ctx}: Device '${s.primaryBus}' not found`);
    if (bus.root !== bus.id) throw new OptionError(`${ctx}: SMMU should be attached to a default PCIe root complex(pcie.0) or a pxb-pcie based root complex`);
    if (bus.bypassIommu) throw new OptionError(`${ctx}: Bypass option cannot be set for SMMUv3 associated PCIe RC`);
    const clash = this.smmuOrder.find((m) => smmuPrimaryBus(m) === s.primaryBus);
    if (clash) throw new OptionError(`${ctx}: An iommu is already attached to this bus`);
    const same = this.smmus.find((m) => s.accel && m.opts.identifier === s.identifier);
    if (same) throw new OptionError(`${ctx}: identifier ${s.identifier} is already used by ${same.dev.props.id} (IORT node and CMDQV _UID must be unique)`);
    if (!s.accel) {
      this.plugEmulatedSmmu(s, id, ctx);
      return;
    }
    let dev: AccelSmmuV3;
    try {
      dev = new AccelSmmuV3(
        { id, identifier: s.identifier, primaryBus: s.primaryBus, accel: s.accel, cmdqv: s.cmdqv, ats: s.ats, ril: s.ril, ssidsize: s.ssidsize, oas: s.oas, stage: s.stage },
        {
          // The iommufd of the VFIO devices behind this SMMU (QEMU learns it from the first one).
          backend: this.backends.get(this.options.vfios.find((v) => this.buses.find((b) => b.id === this.vfioBus(v))?.root === s.primaryBus)?.iommufd ?? ''),
          guestMemory: this.dmaMemory(),
          mainLoop: this.mainLoop,
          log: this.log,
          tracer: this.tracer,
          cmdqvFactory: (host) => new Tegra241Cmdqv({ host, log: this.log, tracer: this.tracer, mainLoop: this.mainLoop }),
          minRamPageSize: () => this.ramPageSize,
        },
      );
    } catch (e) {
      throw new OptionError(`${ctx}: ${(e as Error).message}`);
    }
    const base = this.platformBus.allocMmio(dev.mmio.size, id);
    const irqBaseGsiv = this.platformBus.allocIrq(`${id} eventq`);
    for (let k = 1; k < 4; k++) this.platformBus.allocIrq(`${id} irq${k}`);
    dev.irqs.forEach((line, k) => this.irqs.set(irqBaseGsiv + k, line));
    this.as.root.addSubregion(base, dev.mmio);
    const m: MachineSmmu = { opts: s, dev, base, irqBaseGsiv, cmdqv: undefined, cmdqvBase: undefined, cmdqvGsiv: undefined };
    this.smmus.push(m);
    this.smmuOrder.push(m);
  }

  /**
   * An emulated SMMUv3 (QEMU's accel=off device, or the machine-wide one at its fixed address
   * and GSIVs when `opts` is undefined): MMIO and 4 IRQs on the platform bus, DMA over guest
   * memory.
   */
  private plugEmulatedSmmu(s: SmmuOpts | undefined, id: string, ctx: string, fixedBase?: number, fixedGsiv?: number): void {
    let device: EmulatedSmmuV3;
    try {
      device = new EmulatedSmmuV3(
        s
          ? { id, identifier: s.identifier, primaryBus: s.primaryBus, accel: false, cmdqv: s.cmdqv, ats: s.ats, ril: s.ril, ssidsize: s.ssidsize, oas: s.oas, stage: s.stage }
          : // QEMU 11.1's machine-wide SMMU advertises both stages (IDR0 0x0d44101b observed; docs/reference/qemu-smmuv3.md §2).
            { id, identifier: 0, primaryBus: 'pcie.0', accel: false, cmdqv: 'auto', ats: 'auto', ril: 'auto', ssidsize: 'auto', oas: 'auto', stage: 'nested' },
        { guestMemory: this.dmaMemory(), log: this.log, tracer: this.tracer },
      );
    } catch (e) {
      throw new OptionError(`${ctx}: ${(e as Error).message}`);
    }
    let base = fixedBase;
    let irqBaseGsiv = fixedGsiv;
    if (base === undefined || irqBaseGsiv === undefined) {
      base = this.platformBus.allocMmio(SMMU_MMIO_SIZE, id);
      irqBaseGsiv = this.platformBus.allocIrq(`${id} eventq`);
      for (let k = 1; k < 4; k++) this.platformBus.allocIrq(`${id} irq${k}`);
    }
    device.irqs.forEach((line, k) => this.irqs.set(irqBaseGsiv + k, line));
    this.as.root.addSubregion(base, device.mmio);
    const emulated: EmulatedSmmu = { opts: s, id, base, irqBaseGsiv, device };
    this.emulatedSmmus.push(emulated);
    this.smmuOrder.push(emulated);
  }

  /**
   * The emulated SMMUv3 translating the DMA of devices under root bus `rootBusId` (a bus behind
   * a root port resolves to its root bus): the one whose primary bus it is, or the machine-wide
   * SMMU for every root bus. Undefined for a `bypass_iommu` bus, a bus without an SMMU, or one
   * behind an accelerated SMMU.
   */
  emulatedSmmuFor(rootBusId: string): PciIommu | undefined {
    const bus = this.buses.find((b) => b.id === rootBusId);
    const root = bus && this.buses.find((b) => b.id === bus.root);
    if (!root || root.bypassIommu) return undefined;
    return this.emulatedSmmus.find((e) => e.opts === undefined || e.opts.primaryBus === root.id)?.device;
  }

  /** Index in `options.pciDevices` of a vfio-pci device: the k-th vfio-pci of the PCI devices is the k-th of `vfios`. */
  private vfioIndex(v: VfioOpts): number {
    let k = this.options.vfios.indexOf(v);
    return this.options.pciDevices.findIndex((d) => d.driver === 'vfio-pci' && k-- === 0);
  }

  /** The function of a vfio-pci device. */
  private vfioFunction(v: VfioOpts): PciFunction {
    return this.pciFunctions[this.vfioIndex(v)]!;
  }

  /** The bus a vfio-pci device was placed on (its `bus=`, or QEMU's choice without one). */
  private vfioBus(v: VfioOpts): string {
    return this.placement.devices[this.vfioIndex(v)]!.bus;
  }

  /** QEMU's warnings for the line's PCI placement (a PCIe function behind a root port at a slot other than 0). */
  get placementWarnings(): readonly string[] {
    return this.placement.warnings;
  }

  /** Whether the guest has a GICv3 ITS: gic-version 3+ (KVM's default on a GICv3 host; TCG's default is v2) and its=on. */
  get hasIts(): boolean {
    const v = this.options.gicVersion ?? (this.options.accel === 'kvm' ? 'host' : 2);
    return this.options.itsProp && v !== 2;
  }

  /**
   * Device-side (DMA) access to guest memory for the emulated SMMU's table and queue walks:
   * straight to RAM (not a CPU access, so not counted as one), other addresses through the
   * address space.
   */
  private dmaMemory(): GuestMemory {
    const end = VIRT_RAM_BASE + this.ramBytes;
    return {
      readWords: (a, out, at, n) => a >= VIRT_RAM_BASE && a + 4 * n <= end && this.ramOps.readWords(a - VIRT_RAM_BASE, out, at, n),
      mapWords: (a, win) => {
        if (a < VIRT_RAM_BASE || a + 4 > end || !this.ramOps.mapWords(a - VIRT_RAM_BASE, win)) return false;
        win.bytes = Math.min(win.bytes, end - a);
        return true;
      },
      read32: (a) => (a >= VIRT_RAM_BASE && a + 4 <= end ? this.ramOps.read(a - VIRT_RAM_BASE, 4) : this.as.read32(a)),
      write32: (a, v) => {
        if (a >= VIRT_RAM_BASE && a + 4 <= end) this.ramOps.write(a - VIRT_RAM_BASE, 4, v);
        else this.as.write32(a, v);
      },
    };
  }

  /**
   * QEMU's failure for vfio-pci behind an emulated SMMUv3: VFIO's memory listener asks the
   * SMMU's IOMMU region for MAP notifications, which it refuses (docs/reference/qemu-smmuv3.md
   * §8). The region is named after the bus number and devfn at realize time (0 behind a root
   * port, before firmware numbers it).
   */
  private vfioBehindEmulated(v: VfioOpts, bus: RootBus): string {
    const busNum = bus.root === bus.id ? bus.busNr : 0;
    const devfn = this.vfioFunction(v).devfn;
    const h2 = (n: number) => n.toString(16).padStart(2, '0');
    return `vfio ${v.host}: memory listener initialization failed: Region smmuv3-iommu-memory-region-${busNum}-${devfn}: ` +
      `device ${h2(busNum)}.${h2(devfn >> 3)}.${(devfn & 7).toString(16)} requires iommu MAP notifier which is not currently supported`;
  }

  private plugVfio(v: VfioOpts): void {
    const ctx = `-device vfio-pci,host=${v.host}`;
    const bus = this.buses.find((b) => b.id === this.vfioBus(v))!;
    if (this.emulatedSmmuFor(bus.id)) throw new OptionError(`${ctx}: ${this.vfioBehindEmulated(v, bus)}`);
    // The SMMU of the device's root bus (a root port's devices are behind their root bus's SMMU).
    const smmu = this.smmus.find((m) => m.opts.primaryBus === bus.root);
    if (!smmu) throw new OptionError(`${ctx}: bus '${bus.id}' is behind no arm-smmuv3 (every passthrough device needs an accelerated SMMU)`);
    if (!v.iommufd) throw new OptionError(`${ctx}: vfio-pci endpoint devices without an iommufd backend not allowed when using arm-smmuv3,accel=on`);
    const backend = this.backends.get(v.iommufd);
    if (!backend) throw new OptionError(`${ctx}: iommufd '${v.iommufd}' not found`);
    const first = this.options.vfios.find((x) => this.buses.find((b) => b.id === this.vfioBus(x))?.root === bus.root);
    if (first && first.iommufd !== v.iommufd) {
      throw new OptionError(`${ctx}: all devices behind ${smmu.dev.props.id} must use one iommufd (${first.iommufd})`);
    }
    // The device's VFIO cdev and its host IOMMU, as QEMU finds them in sysfs.
    const sysfs = `/sys/bus/pci/devices/${v.host}`;
    const cdevs = this.sys.readdir(`${sysfs}/vfio-dev`);
    const cdev = typeof cdevs === 'number' ? undefined : cdevs.find((n) => /^vfio\d+$/.test(n));
    if (!cdev) {
      const all = this.sys.readdir('/sys/bus/pci/devices');
      throw new OptionError(`${ctx}: vfio ${v.host}: no such host device (host has ${typeof all === 'number' ? 'none' : all.join(', ')})`);
    }
    const hostIndex = Number(cdev.slice('vfio'.length));
    const iommuLink = this.sys.readlink(`${sysfs}/iommu`);
    if (typeof iommuLink === 'number') throw new OptionError(`${ctx}: vfio ${v.host}: the device has no IOMMU`);
    const hostIommu = iommuLink.slice(iommuLink.lastIndexOf('/') + 1);
    try {
      const { vfioFd, devId } = backend.bindDevice(`/dev/vfio/devices/${cdev}`);
      // One IOAS with guest RAM (IOVA = guest PA) and one nesting-parent HWPT per host SMMU.
      let ioas = this.ioas.get(v.iommufd);
      if (ioas === undefined) {
        ioas = backend.allocIoas();
        backend.mapDma(ioas, VIRT_RAM_BASE, this.ramBytes, this.ramVa);
        this.ioas.set(v.iommufd, ioas);
      }
      const key = `${v.iommufd}:${hostIommu}`;
      let s2 = this.s2.get(key);
      if (s2 === undefined) {
        s2 = backend.allocHwpt(devId, ioas, 1, 0);
        this.s2.set(key, s2);
      }
      backend.attachDevice(vfioFd, s2);
      const fn = this.vfioFunction(v);
      // The function's header comes from the device through its VFIO file (QEMU's vfio_realize).
      if (fn instanceof VfioPciFunction) fn.realize(new VfioDevice(backend, vfioFd, v.host, this.tracer));
      // The vSID is the device's requester ID at the time it is used: firmware numbers the bus behind a root port.
      const host: AccelHostDevice = { host: v.host, devId, vfioFd, get guestSid() { return fn.requesterId; } };
      if (smmu.dev.s2HwptId === undefined) smmu.dev.setS2Hwpt(s2);
      smmu.dev.attachDevice(host);
      this.devices.push({ opts: v, host, smmu, bus, hostIndex });
    } catch (e) {
      if (e instanceof OptionError) throw e;
      throw new OptionError(`${ctx}: ${(e as Error).message}`);
    }
  }

  /** Machine-init-done: cold-plug checks, then link each CMDQV's MMIO and IRQ (docs/reference/qemu-accel-smmuv3.md §2.2, §4.1). */
  private machineInitDone(): void {
    for (const m of this.smmus) {
      const ops = m.dev.cmdqvOps;
      if (m.opts.cmdqv === 'on' && !ops) throw new OptionError('arm-smmuv3 cmdqv=on requires at least one cold-plugged VFIO device');
      if (m.dev.autoMode && !m.dev.autoFinalised) {
        throw new OptionError("arm-smmuv3 accel=on with 'auto' properties requires at least one cold-plugged VFIO device");
      }
      if (ops instanceof Tegra241Cmdqv && ops.mmio) {
        m.cmdqv = ops;
        m.cmdqvBase = this.platformBus.allocMmio(ops.mmio.size, `${m.dev.props.id} cmdqv`);
        m.cmdqvGsiv = this.platformBus.allocIrq(`${m.dev.props.id} cmdqv`);
        this.irqs.set(m.cmdqvGsiv, ops.irq);
        this.as.root.addSubregion(m.cmdqvBase, ops.mmio);
      }
    }
  }

  /** The topology the ACPI tables describe. */
  acpiTopology(): AcpiTopology {
    const smmus: AcpiSmmu[] = this.smmuOrder.map((m) => {
      if (!('dev' in m)) return { identifier: 0, base: m.base, irqBaseGsiv: m.irqBaseGsiv, ...(m.opts ? {} : { legacy: true }) };
      return {
        identifier: m.opts.identifier,
        base: m.base,
        irqBaseGsiv: m.irqBaseGsiv,
        accel: true,
        ats: m.dev.atsAdvertised,
        ...(m.cmdqv ? { cmdqv: { base: m.cmdqvBase!, gsiv: m.cmdqvGsiv! } } : {}),
      };
    });
    const topo: AcpiTopology = {
      its: this.hasIts,
      // A pxb-pcie with bus_nr 0 hides behind pcie.0 (firmware never finds it): one root complex per number.
      rootComplexes: this.buses.filter((b, i, all) => b.root === b.id && !all.slice(0, i).some((o) => o.root === o.id && o.busNr === b.busNr)).map((b) => {
        const i = this.smmuOrder.findIndex((m) => smmuPrimaryBus(m) === b.id);
        const subordinate = this.liveSubordinate(b.id, b.busNr);
        return {
          busNr: b.busNr,
          ...(subordinate !== b.busNr ? { subordinateBus: subordinate } : {}),
          ...(i >= 0 ? { smmu: i } : {}),
          ...(b.bypassIommu ? { bypassIommu: true } : {}),
        };
      }),
      smmus,
    };
    // QEMU 11.1 writes, for an emulated -device arm-smmuv3, its IORT node counter (the ITS
    // takes 0, then each SMMU node in IORT order), whatever identifier= says; the machine-wide
    // SMMU gets 0 (docs/design.md "Command lines").
    let plan;
    try {
      plan = planIort(topo);
    } catch (e) {
      throw new OptionError(`-device arm-smmuv3: ${(e as Error).message}`);
    }
    plan.smmus.forEach((p, k) => {
      const m = this.smmuOrder[p.index]!;
      if (!('dev' in m) && m.opts) smmus[p.index]!.identifier = (topo.its ? 1 : 0) + k;
    });
    return topo;
  }

  /**
   * The highest bus number under root bus `id` as its bridges' registers say now (QEMU's
   * pci_bus_range): the largest programmed subordinate number, else the root's own.
   */
  private liveSubordinate(id: string, busNr: number): number {
    const root = this.pci.roots.find((r) => r.id === id);
    let max = busNr;
    if (root) for (const br of root.bridges()) if (br.secondaryBus !== 0) max = Math.max(max, br.subordinateBus);
    return max;
  }

  /** System reset: every SMMU (and through it its CMDQV) and every PCI function return to their reset state. */
  reset(): void {
    this.checkOpen();
    for (const m of this.smmus) m.dev.reset();
    for (const e of this.emulatedSmmus) e.device.reset();
    this.pci.reset();
  }

  /**
   * End the VM as QEMU's exit does: the VMM closes the files it opened (VFIO devices, then
   * each iommufd) and unmaps guest RAM and its ioctl buffers. What the devices still hold
   * (page0 mappings, vEVENTQ fds) goes with the process (the platform's process exit). Every
   * later call on the machine throws; a second close does nothing.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const d of this.devices) this.sys.close(d.host.vfioFd);
    for (const b of this.backends.values()) b.close();
    this.sys.munmap(this.ramVa, this.ramMapBytes);
  }

  /** Whether {@link close} was called. */
  get isClosed(): boolean {
    return this.closed;
  }

  private checkOpen(): void {
    if (this.closed) throw new Error('machine is closed');
  }

  /** Migration/snapshot: refused while an accelerated SMMU exists (QEMU's blocker text). */
  migrate(): never {
    this.checkOpen();
    const b = this.smmus.find((m) => m.dev.migrationBlocker)?.dev.migrationBlocker;
    throw new Error(b ?? 'migration is not modelled');
  }

  /**
   * Guest-physical read (API edge): value and whether it trapped.
   * @throws RangeError for a non-integer address or a size other than 1, 2, 4 or 8
   */
  read(addr: number, size: AccessSize): AccessResult {
    this.checkAccess(addr, size);
    return this.as.read(addr, size);
  }

  /**
   * Guest-physical write (API edge). The value is the register's bits: an integer (number or
   * bigint), negative values as two's complement, masked to the access size as a CPU store
   * would. A non-integer (1.5, NaN, Infinity) has no bit pattern and is refused.
   * @throws RangeError naming the bad address, size or value
   */
  write(addr: number, size: AccessSize, value: bigint | number): AccessResult {
    this.checkAccess(addr, size);
    if (typeof value === 'number' && !Number.isSafeInteger(value)) {
      throw new RangeError(`write at 0x${addr.toString(16)}: value ${value} is not an integer (a store needs a bit pattern)`);
    }
    return this.as.write(addr, size, value);
  }

  private checkAccess(addr: number, size: number): void {
    this.checkOpen();
    if (!Number.isSafeInteger(addr) || addr < 0) throw new RangeError(`guest address ${addr} is not a non-negative integer`);
    if (size !== 1 && size !== 2 && size !== 4 && size !== 8) throw new RangeError(`access size ${size} at 0x${addr.toString(16)} is not 1, 2, 4 or 8`);
  }

  /**
   * Copy bytes out of guest RAM: into `out` (exactly `length` bytes, returned) when given, so
   * a caller checking memory per operation allocates nothing.
   * @throws RangeError when [gpa, gpa + length) is not inside guest RAM or `out` is not `length` bytes
   */
  readRam(gpa: number, length: number, out?: Uint8Array): Uint8Array {
    this.checkRam(gpa, length, 'readRam');
    if (out !== undefined && length <= SMALL_RAM_READ && out.length === length) {
      // A few bytes (a DMA check's word): loaded as the aligned words holding them, through the
      // RAM view's page TLB, rather than a copy_from_user of the mapping.
      const base = gpa - VIRT_RAM_BASE;
      for (let i = 0; i < length; ) {
        const at = base + i;
        const lane = at & 3;
        const word = this.ramOps.read(at - lane, 4);
        for (let b = lane; b < 4 && i < length; b++, i++) out[i] = (word >>> (8 * b)) & 0xff;
      }
      return out;
    }
    return this.sys.memory.load(this.ramVa + (gpa - VIRT_RAM_BASE), length, out);
  }

  /**
   * Copy bytes into guest RAM.
   * @throws RangeError when the bytes would not all land inside guest RAM
   */
  writeRam(gpa: number, data: Uint8Array): void {
    this.checkRam(gpa, data.length, 'writeRam');
    this.sys.memory.store(this.ramVa + (gpa - VIRT_RAM_BASE), data);
  }

  /** Guest RAM is [VIRT_RAM_BASE, + ramBytes); the mapping behind it may be longer (whole pages). */
  private checkRam(gpa: number, length: number, what: string): void {
    this.checkOpen();
    const end = VIRT_RAM_BASE + this.ramBytes;
    if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`${what}: length ${length} is not a non-negative integer`);
    if (!Number.isSafeInteger(gpa) || gpa < VIRT_RAM_BASE || gpa + length > end) {
      const hex = (n: number) => (Number.isFinite(n) ? `0x${n.toString(16)}` : String(n));
      throw new RangeError(`${what}: [${hex(gpa)}, ${hex(gpa + length)}) is outside guest RAM [${hex(VIRT_RAM_BASE)}, ${hex(end)})`);
    }
  }

  /** Interrupts raised, by line name. */
  interruptCounts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [gsiv, l] of this.irqs) out[`${l.name} (GSIV ${gsiv})`] = l.count;
    return out;
  }

  /** The guest's view of the machine, for the guest driver model. */
  guestPlatform(): GuestPlatform {
    this.checkOpen();
    return {
      bus: this.cpuBus,
      clock: this.clock,
      irq: (gsiv) => this.irqs.get(gsiv),
      ramBase: VIRT_RAM_BASE,
      ramSize: this.ramBytes,
    };
  }

  /** Run pending main-loop work (vEVENTQ handlers) at the current time. */
  runMainLoop(): void {
    this.checkOpen();
    this.clock.advance(0);
  }
}
