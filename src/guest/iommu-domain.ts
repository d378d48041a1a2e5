/**
 * A guest IOMMU domain: one ASID, a context descriptor and stage-1 page tables in guest RAM,
 * the STE that points a device at it, and the DMA API (map/unmap with TLB invalidation).
 * Invalidations go to a CMDQV VCMDQ when the CMDQV accepts them, else to the SMMU queue —
 * the routing that makes guest invalidations skip the VM exit.
 */

import { buildCommand, Op } from '../arch/smmuv3/commands.js';
import { PageTableBuilder } from '../kit/page-table-builder.js';
import type { GuestSmmu } from './arm-smmu-v3.js';
import type { GuestCmdqv } from './tegra241-cmdqv.js';

const PAGE = 4096;

/** Where invalidations went. */
export interface RouteStats {
  viaVcmdq: number;
  viaSmmu: number;
}

/** Command routing of one SMMU (its CMDQV first, when it accepts the commands). */
export class CommandRouter {
  readonly stats: RouteStats = { viaVcmdq: 0, viaSmmu: 0 };
  constructor(
    readonly smmu: GuestSmmu,
    readonly cmdqv: GuestCmdqv | undefined,
  ) {}

  /** Submit a batch with a CMD_SYNC, splitting where the VCMDQ filter changes its mind. */
  submit(cmds: readonly Uint32Array[]): void {
    let run: Uint32Array[] = [];
    let onVcmdq = false;
    const flush = () => {
      if (run.length === 0) return;
      if (onVcmdq) {
        this.cmdqv!.submit(run);
        this.stats.viaVcmdq += run.length;
      } else {
        this.smmu.submit(run);
        this.stats.viaSmmu += run.length;
      }
      run = [];
    };
    for (const c of cmds) {
      const v = this.cmdqv !== undefined && this.cmdqv.accepts(c);
      if (run.length > 0 && v !== onVcmdq) flush();
      onVcmdq = v;
      run.push(c);
    }
    flush();
  }
}

/** A stage-1 domain attached to one device. */
export class IommuDomain {
  readonly tables: PageTableBuilder;
  readonly cd: number;

  constructor(
    readonly router: CommandRouter,
    readonly asid: number,
  ) {
    const smmu = router.smmu;
    const bus = smmu.p.bus;
    this.tables = new PageTableBuilder(
      { read32: (a) => bus.read32(a), write32: (a, v) => bus.write32(a, v) },
      { stage: 1, granule: 4096, inputBits: 48, allocTable: () => smmu.mem.alloc(PAGE) },
    );
    this.cd = smmu.mem.alloc(64);
    // CD: T0SZ = 16 (48-bit), TG0 = 4K, EPD1, V, IPS = 48-bit, AA64, ASID; TTB0.
    bus.write32(this.cd, (16 | (1 << 30) | (1 << 31)) >>> 0);
    bus.write32(this.cd + 4, (5 | (1 << 9) | (asid << 16)) >>> 0);
    bus.write32(this.cd + 8, this.tables.root % 2 ** 32);
    bus.write32(this.cd + 12, Math.floor(this.tables.root / 2 ** 32));
  }

  /** Point device `sid` at this domain (STE: S1 translate, one CD). */
  attach(sid: number): void {
    const ste = new Uint32Array(8);
    ste[0] = ((this.cd % 2 ** 32) | 0b1011) >>> 0; // V | Config = S1 translate | S1ContextPtr
    ste[1] = Math.floor(this.cd / 2 ** 32);
    this.router.smmu.writeSte(sid, ste);
  }

  /** Detach: the STE becomes abort. */
  detach(sid: number): void {
    const ste = new Uint32Array(8);
    ste[0] = 1;
    this.router.smmu.writeSte(sid, ste);
  }

  /** Map [iova, iova + size) to guest PA `gpa`. New mappings need no invalidation. */
  map(iova: number, gpa: number, size: number, writable = true): void {
    this.tables.map(iova, gpa, size, writable ? 3 : 1, { nG: true });
  }

  /**
   * Unmap and invalidate: TLBI_NH_VA per page (a range form when the SMMU has RIL), then the
   * router's CMD_SYNC. `skipInvalidation` models a buggy driver.
   */
  unmap(iova: number, size: number, skipInvalidation = false): void {
    this.tables.unmap(iova, size);
    if (skipInvalidation) return;
    this.router.submit(this.invalidations(iova, size));
  }

  /** The TLBI commands for a range (range form when RIL is available). */
  invalidations(iova: number, size: number): Uint32Array[] {
    const pages = Math.ceil(size / PAGE);
    if (this.router.smmu.ril && pages > 1) {
      const out: Uint32Array[] = [];
      let done = 0;
      while (done < pages) {
        const left = pages - done;
        // Linux's split: SCALE = lowest set bit of the remaining count, NUM + 1 = the next 5 bits.
        const scale = Math.min(31, Math.floor(Math.log2(left & -left)));
        const n = Math.floor(left / 2 ** scale) & 31;
        out.push(buildCommand(Op.TLBI_NH_VA, { asid: this.asid, addr: iova + done * PAGE, tg: 1, scale, num: n - 1, leaf: true }));
        done += n * 2 ** scale;
      }
      return out;
    }
    return Array.from({ length: pages }, (_, i) => buildCommand(Op.TLBI_NH_VA, { asid: this.asid, addr: iova + i * PAGE, leaf: true }));
  }

  /** Invalidate the whole ASID. */
  flushAll(): void {
    this.router.submit([buildCommand(Op.TLBI_NH_ASID, { asid: this.asid })]);
  }
}
