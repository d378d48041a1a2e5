/**
 * The guest kernel model's IOMMU bring-up: find every SMMUv3 in the IORT and its Tegra241 CMDQV
 * in the DSDT (HID NVDA200C, _UID = the IORT node's identifier), probe them in that order, and
 * hand out IOMMU domains for the PCI devices behind each SMMU (by requester ID through the
 * IORT root-complex mappings).
 */

import { iortRouteRid, parseDsdtCmdqvDevices, parseIort, type ParsedIort } from './acpi-parse.js';
import { GuestSmmu, type GuestSmmuState } from './arm-smmu-v3.js';
import { CommandRouter, IommuDomain, type IommuDomainState, type RouteStats } from './iommu-domain.js';
import { GuestAllocator, type GuestPlatform } from './platform.js';
import { GuestCmdqv, type GuestCmdqvState } from './tegra241-cmdqv.js';

/** One probed SMMU. */
export interface GuestIommu {
  readonly identifier: number;
  readonly smmu: GuestSmmu;
  readonly cmdqv: GuestCmdqv | undefined;
  readonly router: CommandRouter;
  /** Log lines of the probe, like the kernel's dmesg. */
  readonly dmesg: string[];
}

/** The guest kernel's state apart from guest RAM (see {@link GuestKernel.save}). */
export interface GuestKernelState {
  readonly mem: number;
  readonly nextAsid: number;
  readonly failedProbes: readonly (readonly string[])[];
  readonly iommus: readonly {
    readonly node: number;
    readonly identifier: number;
    readonly smmu: GuestSmmuState;
    readonly cmdqv: GuestCmdqvState | undefined;
    readonly cmdqvBase: number | undefined;
    readonly cmdqvGsiv: number | undefined;
    readonly route: RouteStats;
    readonly dmesg: readonly string[];
  }[];
}

/** The guest kernel. */
export class GuestKernel {
  readonly iommus: GuestIommu[] = [];
  /** dmesg of SMMUs whose probe failed (Linux registers no IOMMU for them). */
  readonly failedProbes: string[][] = [];
  readonly mem: GuestAllocator;
  readonly iort: ParsedIort;
  private nextAsid = 1;

  /**
   * Boot: probe every SMMU of the IORT and its CMDQV. With `saved`, take over a kernel saved by
   * {@link save} instead (a restored VM): the drivers come back from their state and their
   * interrupt handlers are wired again; nothing is written to the machine.
   */
  constructor(
    readonly platform: GuestPlatform,
    tables: { iort: Uint8Array; dsdt: Uint8Array },
    saved?: GuestKernelState,
  ) {
    // Keep the first 256 MiB of RAM for "the rest of the kernel"; IOMMU structures come after.
    this.mem = new GuestAllocator(platform.ramBase + 0x1000_0000, Math.min(platform.ramSize - 0x1000_0000, 0x4000_0000));
    this.iort = parseIort(tables.iort);
    if (saved) {
      this.restoreFrom(saved);
      return;
    }
    const cmdqvs = parseDsdtCmdqvDevices(tables.dsdt);
    this.iort.smmus.forEach((node, nodeIndex) => {
      const dmesg: string[] = [];
      const smmu = new GuestSmmu(platform, node.base, this.mem, node.identifier);
      dmesg.push(`arm-smmu-v3: SMMUv3 at 0x${node.base.toString(16)} (identifier ${node.identifier}), ${smmu.ril ? 'RIL, ' : ''}cmdq 2^${smmu.cmdqLog2}`);
      let cmdqv: GuestCmdqv | undefined;
      // Linux formats the identifier as "%u" and matches it against the NVDA200C _UID.
      const dev = node.model === 0 ? cmdqvs.find((d) => String(d.uid) === String(node.identifier)) : undefined;
      if (dev) {
        dmesg.push(`arm-smmu-v3: found companion CMDQV device: CV${node.identifier.toString(16).padStart(2, '0').toUpperCase()}`);
        if (dev.gsiv === undefined) dmesg.push('tegra241-cmdqv: no interrupt. errors will not be reported');
        try {
          cmdqv = new GuestCmdqv(platform, dev.memBase, smmu, dev.gsiv);
        } catch (e) {
          // The CMDQV is the SMMU's implementation: its reset failing fails the SMMU's device
          // reset, so the whole SMMU probe fails and no IOMMU is registered (as Linux does).
          dmesg.push(`${(e as Error).message}`, `arm-smmu-v3: SMMUv3 at 0x${node.base.toString(16)}: failed to reset impl; probe failed`);
          this.failedProbes.push(dmesg);
          return;
        }
        dmesg.push(`tegra241-cmdqv: ${cmdqv.numVintfs} VINTF, ${cmdqv.numVcmdqs} VCMDQs, hyp_own=${cmdqv.hypOwn ? 1 : 0}`);
      }
      this.wireSmmuIrqs(nodeIndex, smmu);
      this.iommus.push({ identifier: node.identifier, smmu, cmdqv, router: new CommandRouter(smmu, cmdqv), dmesg });
      this.nodeOf.push(nodeIndex);
    });
  }

  /** IORT SMMU node index of each entry of {@link iommus}. */
  private readonly nodeOf: number[] = [];

  /** The SMMU's event and GERROR interrupts go to its handlers (as Linux requests them). */
  private wireSmmuIrqs(nodeIndex: number, smmu: GuestSmmu): void {
    const node = this.iort.smmus[nodeIndex]!;
    const line = this.platform.irq(node.gsiv.event);
    if (line) line.onRaise = () => smmu.drainEvents();
    const gerr = this.platform.irq(node.gsiv.gerr);
    if (gerr) {
      gerr.onRaise = () => smmu.handleGerror();
      smmu.gerrorIrq = true;
    }
  }

  /**
   * The kernel's state apart from guest RAM: the allocator, each probed IOMMU's drivers and
   * routing counters, the failed probes' dmesg, the next ASID. The guest CPU and kernel memory
   * of a real VM hold this; here it is part of a snapshot.
   */
  save(): GuestKernelState {
    return {
      mem: this.mem.save(),
      nextAsid: this.nextAsid,
      failedProbes: this.failedProbes.map((d) => [...d]),
      iommus: this.iommus.map((io, k) => ({
        node: this.nodeOf[k]!,
        identifier: io.identifier,
        smmu: io.smmu.save(),
        cmdqv: io.cmdqv?.save(),
        cmdqvBase: io.cmdqv?.base,
        cmdqvGsiv: io.cmdqv?.gsiv,
        route: { ...io.router.stats },
        dmesg: [...io.dmesg],
      })),
    };
  }

  private restoreFrom(saved: GuestKernelState): void {
    this.mem.restore(saved.mem);
    this.nextAsid = saved.nextAsid;
    for (const d of saved.failedProbes) this.failedProbes.push([...d]);
    for (const s of saved.iommus) {
      const node = this.iort.smmus[s.node];
      if (!node) throw new Error(`guest kernel: the saved SMMU ${s.node} is not in the IORT`);
      // The saved GERROR wiring is taken over, then wired again the same way.
      const smmu = new GuestSmmu(this.platform, node.base, this.mem, node.identifier, s.smmu);
      const cmdqv = s.cmdqv && s.cmdqvBase !== undefined ? new GuestCmdqv(this.platform, s.cmdqvBase, smmu, s.cmdqvGsiv, s.cmdqv) : undefined;
      this.wireSmmuIrqs(s.node, smmu);
      smmu.gerrorIrq = s.smmu.gerrorIrq;
      const router = new CommandRouter(smmu, cmdqv);
      Object.assign(router.stats, s.route);
      this.iommus.push({ identifier: s.identifier, smmu, cmdqv, router, dmesg: [...s.dmesg] });
      this.nodeOf.push(s.node);
    }
  }

  /** A domain saved with {@link IommuDomain.save}, on the IOMMU that routes `rid`. */
  restoreDomain(rid: number, saved: IommuDomainState): IommuDomain {
    const io = this.iommuFor(rid);
    if (!io) throw new Error(`no IOMMU for RID 0x${rid.toString(16)}`);
    return new IommuDomain(io.iommu.router, saved.asid, saved);
  }

  /** The SMMU and StreamID a requester ID is routed to (IORT root-complex ID mappings). */
  iommuFor(rid: number): { iommu: GuestIommu; sid: number } | undefined {
    const route = iortRouteRid(this.iort, rid);
    if (!route || route.node.kind !== 'smmuv3') return undefined;
    const idx = this.iort.smmus.findIndex((n) => n.offset === route.node.offset);
    const iommu = this.iommus[idx];
    return iommu ? { iommu, sid: route.id } : undefined;
  }

  /** A new domain for device `rid`, attached (its STE installed). */
  attachDevice(rid: number): IommuDomain {
    const io = this.iommuFor(rid);
    if (!io) throw new Error(`no IOMMU for RID 0x${rid.toString(16)}`);
    const d = new IommuDomain(io.iommu.router, this.nextAsid++);
    d.attach(io.sid);
    return d;
  }
}
