/**
 * A guest IOMMU domain: one ASID, a context descriptor and stage-1 page tables in guest RAM,
 * the STE that points a device at it, and the DMA API (map/unmap with TLB invalidation).
 * Invalidations go to a CMDQV VCMDQ when the CMDQV accepts them, else to the SMMU queue —
 * the routing that makes guest invalidations skip the VM exit.
 */

import { buildCommand, D1, Op } from '../arch/smmuv3/commands.js';
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

/** TLBI address bits in dword1's words: VA[31:12] in the low word, VA[52:32] in the high one. */
const TLBI_ADDR_LO = D1.ADDR_PAGE.wordMask(0);
const TLBI_ADDR_HI = D1.ADDR_PAGE.wordMask(1);
const TWO32 = 2 ** 32;

/** Map options of every mapping: not global (the domain's ASID tags its translations). */
const NON_GLOBAL = { nG: true } as const;

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
    if (cmds.length === 0) return;
    const cmdqv = this.cmdqv;
    let start = 0;
    let onVcmdq = cmdqv !== undefined && cmdqv.accepts(cmds[0]!);
    for (let i = 1; i <= cmds.length; i++) {
      const toVcmdq = i < cmds.length ? cmdqv !== undefined && cmdqv.accepts(cmds[i]!) : !onVcmdq;
      if (toVcmdq === onVcmdq) continue;
      // The run [start, i) ends here (a whole batch on one queue, the usual case, is not copied).
      const run = start === 0 && i === cmds.length ? cmds : cmds.slice(start, i);
      if (onVcmdq) {
        cmdqv!.submit(run);
        this.stats.viaVcmdq += run.length;
      } else {
        this.smmu.submit(run);
        this.stats.viaSmmu += run.length;
      }
      start = i;
      onVcmdq = toVcmdq;
    }
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
  /** TLBI_NH_VA (this ASID, leaf) at address 0: each page's command is a copy with its address. */
  private readonly tlbiTemplate: Uint32Array;
  /**
   * Command buffers {@link invalidateBatch} fills and submits (the queue copies the words into
   * its ring), reused from batch to batch; and the batch being built.
   */
  private readonly cmdPool: Uint32Array[] = [];
  private batch: Uint32Array[] = [];

  /** A new domain (CD and page tables allocated); with `saved`, the domain saved by {@link save}. */
  constructor(
    readonly router: CommandRouter,
    readonly asid: number,
    saved?: IommuDomainState,
  ) {
    const smmu = router.smmu;
    const bus = smmu.platform.bus;
    this.tables = new PageTableBuilder(
      bus,
      { stage: 1, granule: 4096, inputBits: 48, allocTable: () => smmu.mem.alloc(PAGE), ...(saved ? { existing: saved.tables } : {}) },
    );
    this.tlbiTemplate = buildCommand(Op.TLBI_NH_VA, { asid, addr: 0, leaf: true });
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
    this.tables.map(iova, gpa, size, writable ? 3 : 1, NON_GLOBAL);
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
    if (pages === 1) return [this.tlbiPage(iova)];
    return Array.from({ length: pages }, (_, i) => this.tlbiPage(iova + i * PAGE));
  }

  /**
   * Invalidate the buffers at `iovas[0..count)` (each `size` bytes, already unmapped) as one
   * batch: their TLBIs ({@link invalidations}) and the router's CMD_SYNC. Page-sized buffers
   * reuse command buffers, and a batch of the previous batch's length its array, rather than
   * allocating them per page or per batch.
   */
  invalidateBatch(iovas: readonly number[], size: number, count = iovas.length): void {
    if (Math.ceil(size / PAGE) === 1) {
      let batch = this.batch;
      if (batch.length !== count) batch = this.batch = new Array<Uint32Array>(count);
      for (let i = 0; i < count; i++) {
        let w = this.cmdPool[i];
        if (w === undefined) {
          w = new Uint32Array(4);
          this.cmdPool.push(w);
        }
        batch[i] = this.tlbiPage(iovas[i]!, w);
      }
      this.router.submit(batch);
      return;
    }
    const batch: Uint32Array[] = [];
    for (let i = 0; i < count; i++) for (const c of this.invalidations(iovas[i]!, size)) batch.push(c);
    this.router.submit(batch);
  }

  /** TLBI_NH_VA of the page at `addr` (leaf) into `w` (default: a new buffer): the template with the address deposited. */
  private tlbiPage(addr: number, w: Uint32Array = new Uint32Array(4)): Uint32Array {
    w.set(this.tlbiTemplate);
    w[2] = ((w[2]! & ~TLBI_ADDR_LO) | (addr & TLBI_ADDR_LO)) >>> 0; // `&` takes addr's low 32 bits
    w[3] = ((w[3]! & ~TLBI_ADDR_HI) | (Math.floor(addr / TWO32) & TLBI_ADDR_HI)) >>> 0;
    return w;
  }

  /** Invalidate the whole ASID. */
  flushAll(): void {
    this.router.submit([buildCommand(Op.TLBI_NH_ASID, { asid: this.asid })]);
  }
}
