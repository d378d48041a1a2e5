/**
 * A guest IOMMU domain: one ASID, a context descriptor and stage-1 page tables in guest RAM,
 * the STE that points a device at it, and the DMA API (map/unmap with TLB invalidation).
 * Invalidations go to a CMDQV VCMDQ when the CMDQV accepts them, else to the SMMU queue —
 * the routing that makes guest invalidations skip the VM exit.
 */

import { buildCommand, Op } from '../arch/smmuv3/commands.js';
import { CD, STE, STE_CFG_ABORT, STE_CFG_S1 } from '../arch/smmuv3/structures.js';
import { PageTableBuilder, type PageTableBuilderState } from '../kit/page-table-builder.js';
import type { GuestSmmu } from './arm-smmu-v3.js';
import type { GuestCmdqv } from './tegra241-cmdqv.js';

const PAGE = 4096;
/** CD.IPS encoding of a 48-bit intermediate physical address size. */
const IPS_48BIT = 5;
/** CD.IR0/OR0: write-back, read/write-allocate (ARM_LPAE_TCR_RGN_WBWA). */
const CACHE_WBWA = 1;
/** CD.SH0: inner shareable. */
const SH_INNER = 3;
/** CD.T0SZ for a 48-bit input range. */
const T0SZ_48BIT = 64 - 48;

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
      const toVcmdq = this.cmdqv !== undefined && this.cmdqv.accepts(c);
      if (run.length > 0 && toVcmdq !== onVcmdq) flush();
      onVcmdq = toVcmdq;
      run.push(c);
    }
    flush();
  }
}

/** What a domain keeps apart from guest RAM (see {@link IommuDomain.save}). */
export interface IommuDomainState {
  readonly asid: number;
  readonly cd: number;
  readonly tables: PageTableBuilderState;
}

/** A stage-1 domain attached to one device. */
export class IommuDomain {
  readonly tables: PageTableBuilder;
  readonly cd: number;

  /** A new domain (CD and page tables allocated); with `saved`, the domain saved by {@link save}. */
  constructor(
    readonly router: CommandRouter,
    readonly asid: number,
    saved?: IommuDomainState,
  ) {
    const smmu = router.smmu;
    const bus = smmu.platform.bus;
    this.tables = new PageTableBuilder(
      { read32: (a) => bus.read32(a), write32: (a, v) => bus.write32(a, v) },
      { stage: 1, granule: 4096, inputBits: 48, allocTable: () => smmu.mem.alloc(PAGE), ...(saved ? { existing: saved.tables } : {}) },
    );
    if (saved) {
      this.cd = saved.cd;
      return;
    }
    this.cd = smmu.mem.alloc(64);
    // CD as Linux's arm_smmu_make_s1_cd writes it: T0SZ = 16 (48-bit), TG0 = 4K, write-back
    // inner-shareable walks, EPD1, V, IPS = 48-bit, AA64, R (record faults), A (abort, never
    // stall: QEMU's emulated SMMUv3 refuses a CD without it as C_BAD_CD), ASET, ASID; TTB0.
    const cd = new Uint32Array(4);
    CD.T0SZ.setWords(cd, 0, T0SZ_48BIT);
    CD.IR0.setWords(cd, 0, CACHE_WBWA);
    CD.OR0.setWords(cd, 0, CACHE_WBWA);
    CD.SH0.setWords(cd, 0, SH_INNER);
    CD.EPD1.setWords(cd, 0, 1);
    CD.V.setWords(cd, 0, 1);
    CD.IPS.setWords(cd, 0, IPS_48BIT);
    CD.AA64.setWords(cd, 0, 1);
    CD.R.setWords(cd, 0, 1);
    CD.A.setWords(cd, 0, 1);
    CD.ASET.setWords(cd, 0, 1);
    CD.ASID.setWords(cd, 0, asid);
    CD.TTB0.setWords(cd, 2, this.tables.root / 2 ** CD.TTB0.lsb);
    cd.forEach((word, i) => bus.write32(this.cd + 4 * i, word));
  }

  /** The domain's state apart from guest RAM (its CD and tables are there). */
  save(): IommuDomainState {
    return { asid: this.asid, cd: this.cd, tables: this.tables.save() };
  }

  /** Point device `sid` at this domain (STE: S1 translate, one CD). */
  attach(sid: number): void {
    const ste = new Uint32Array(8);
    STE.V.setWords(ste, 0, 1);
    STE.CFG.setWords(ste, 0, STE_CFG_S1);
    STE.S1CTXPTR.setWords(ste, 0, this.cd / 2 ** STE.S1CTXPTR.lsb);
    this.router.smmu.writeSte(sid, ste);
  }

  /** Detach: the STE becomes abort. */
  detach(sid: number): void {
    const ste = new Uint32Array(8);
    STE.V.setWords(ste, 0, 1);
    STE.CFG.setWords(ste, 0, STE_CFG_ABORT);
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
