/**
 * The seeded generator of `cmdqv difftest`: qtest request sequences that drive QEMU's
 * emulated SMMUv3 (`-M virt,iommu=smmuv3`) and an iommu-testdev the way a guest driver — or a
 * hostile one — would: register programming, command queues with legal and illegal commands,
 * GERROR acknowledgement, STEs, CDs and page tables in RAM, and DMA through the testdev with
 * the event queue read back (docs/reference/qemu-smmuv3.md). The same seed gives the same
 * sequence; each step is self-contained text, so a shrinker may drop any of them.
 */

import { ITD_BAR0_SIZE } from '../../arch/iommu-testdev/registers.js';
import { buildCommand, D0, Op, SYNC_CS_IRQ, SYNC_CS_NONE, SYNC_CS_SEV } from '../../arch/smmuv3/commands.js';
import * as R from '../../arch/smmuv3/registers.js';
import { buildCd, STE, STE_CFG_ABORT, STE_CFG_BYPASS, STE_CFG_NESTED, STE_CFG_S1, STE_CFG_S2, STE_WORDS } from '../../arch/smmuv3/structures.js';
import { PageTableBuilder } from '../../kit/page-table-builder.js';
import { mulberry32 } from '../../kit/prng.js';

/** One unit of a sequence: the qtest request lines it sends, and what it does. */
export interface Step {
  readonly what: string;
  readonly lines: readonly string[];
}

/** A generated sequence: the fixed setup (PCI enumeration, IRQ interception), then the steps. */
export interface DiffSequence {
  readonly seed: number;
  readonly setup: readonly Step[];
  readonly steps: readonly Step[];
}

/** The machine both programs run (besides the qtest options). */
export const DIFFTEST_MACHINE = ['-M', 'virt,iommu=smmuv3,gic-version=3', '-m', '512', '-device', 'iommu-testdev', '-display', 'none', '-nodefaults'] as const;

/** The machine-wide SMMUv3's frame (VIRT_SMMU) and the GIC's QOM path (its inputs are the SPIs). */
const SMMU = 0x0905_0000;
const GIC_PATH = '/machine/unattached/device[1]';
/** High ECAM; the testdev is the first device after the host bridge: bus 0, slot 1 (SID 8). */
const ECAM = 0x40_1000_0000;
const TESTDEV_DEVFN = 8;
const TESTDEV_SID = TESTDEV_DEVFN;
const BAR0 = 0x1000_0000;
const PCI_COMMAND_MEMORY_MASTER = 0x6;

/** Guest RAM well above QEMU's DTB at 0x40000000 (QEMU's RAM is zero there, as cmdqv's is). */
const STRTAB = 0x4800_0000;
const STRTAB_L2 = 0x4804_0000;
const CMDQ = 0x4810_0000;
const EVENTQ = 0x4820_0000;
const CD_GPA = 0x4830_0000;
const S1_TABLES = 0x4840_0000;
const S2_TABLES = 0x4880_0000;
const DATA = 0x4900_0000;
/** Stage 2 maps this RAM range onto itself (the CD and stage-1 tables are IPAs in nested). */
const IDENTITY_BASE = 0x4800_0000;
const IDENTITY_SIZE = 0x200_0000;
const IOVA = 0x8080_0000;
const PAGES = 8;
const PAGE = 0x1000;
const ASID = 0x1e20;
const VMID = 7;
/** Two-level stream table: SPLIT 6 (64 STEs per L2 table), L1 Span = SPLIT + 1. */
const SPLIT = 6;
const STRTAB_FMT_2LVL = 1 << 16;
const CR0_SMMUEN_EVENTQEN_CMDQEN = 0xd;
const GBPA_UPDATE = 0x8000_0000;
const GBPA_ABORT = 0x10_0000;
/** CFGI commands' SSec bit (dword0 bit 10). */
const CMD_SSEC = 1 << 10;

const REG = {
  IDR: [R.IDR0, R.IDR1, R.IDR2, R.IDR3, R.IDR4, R.IDR5, R.IIDR, R.AIDR],
  ALL: [R.CR0, R.CR0ACK, R.CR1, R.CR2, R.STATUSR, R.GBPA, R.AGBPA, R.IRQ_CTRL, R.IRQ_CTRLACK, R.GERROR, R.GERRORN, R.GERROR_IRQ_CFG0, R.GERROR_IRQ_CFG1, R.GERROR_IRQ_CFG2, R.STRTAB_BASE, R.STRTAB_BASE_CFG, R.CMDQ_BASE, R.CMDQ_PROD, R.CMDQ_CONS, R.EVENTQ_BASE, R.EVENTQ_IRQ_CFG0, R.EVENTQ_IRQ_CFG1, R.EVENTQ_IRQ_CFG2, R.EVENTQ_PROD, R.EVENTQ_CONS],
} as const;

/** Hex for a request; a negative number is a 32-bit value built with bit operators. */
const hex = (v: number): string => `0x${(v < 0 ? v >>> 0 : v).toString(16)}`;

function bytesHex(words: Uint32Array): string {
  return `0x${Buffer.from(words.buffer, words.byteOffset, words.byteLength).toString('hex')}`;
}

/** The state a driver keeps (where it believes the queues are); the device's may differ. */
class Generator {
  private readonly rnd: () => number;
  private cmdqLog2 = 4;
  private evtqLog2 = 3;
  private cmdProd = 0;
  private gerrorn = 0;
  /** Chosen once per sequence: QEMU never leaves the 2-level format once set (allow-list). */
  private readonly twoLevel: boolean;
  /** Page-table words written so far (the builders read back what they wrote). */
  private readonly tableWords = new Map<number, number>();
  private pending: string[] = [];
  private readonly s1: PageTableBuilder;
  private readonly s2: PageTableBuilder;
  private readonly mapped = { s1: new Set<number>(), s2: new Set<number>() };
  private identity = false;

  constructor(seed: number) {
    this.rnd = mulberry32(seed);
    this.twoLevel = this.chance(0.3);
    const mem = {
      read32: (a: number) => this.tableWords.get(a) ?? 0,
      write32: (a: number, v: number) => {
        this.tableWords.set(a, v >>> 0);
        this.pending.push(`writel ${hex(a)} ${hex(v >>> 0)}`);
      },
    };
    let s1Next = S1_TABLES;
    let s2Next = S2_TABLES;
    this.s1 = new PageTableBuilder(mem, { stage: 1, granule: 4096, inputBits: 48, allocTable: () => ((s1Next += PAGE) - PAGE) });
    this.s2 = new PageTableBuilder(mem, { stage: 2, granule: 4096, inputBits: 44, allocTable: () => ((s2Next += PAGE) - PAGE) });
    this.pending = [];
  }

  private int(n: number): number {
    return Math.floor(this.rnd() * n);
  }
  private chance(p: number): boolean {
    return this.rnd() < p;
  }
  private pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }

  setup(): Step[] {
    const cfg = (reg: number) => hex(ECAM + (TESTDEV_DEVFN << 12) + reg);
    return [
      { what: 'intercept the GIC inputs', lines: [`irq_intercept_in ${GIC_PATH}`] },
      {
        what: 'assign the testdev BAR0, memory + bus master',
        lines: [`readl ${cfg(0)}`, `writel ${cfg(0x10)} ${hex(BAR0)}`, `readl ${cfg(0x10)}`, `writew ${cfg(4)} ${hex(PCI_COMMAND_MEMORY_MASTER)}`, `readw ${cfg(4)}`],
      },
    ];
  }

  step(index: number): Step {
    if (index === 0 && this.chance(0.85)) return this.enable();
    const kinds: readonly [number, () => Step][] = [
      [3, () => this.enable()],
      [6, () => this.register()],
      [3, () => this.readRegisters()],
      [8, () => this.ste()],
      [5, () => this.cd()],
      [8, () => this.map()],
      [16, () => this.commands()],
      [4, () => this.ackGerror()],
      [14, () => this.dma()],
      [4, () => this.eventQueue()],
    ];
    let r = this.int(kinds.reduce((s, k) => s + k[0], 0));
    for (const [w, f] of kinds) {
      if (r < w) return f();
      r -= w;
    }
    return this.register();
  }

  private w(reg: { spec: { offset: number } }, v: number, size: 4 | 8 = 4): string {
    return `write${size === 8 ? 'q' : 'l'} ${hex(SMMU + reg.spec.offset)} ${hex(v)}`;
  }
  private r(reg: { spec: { offset: number } }, size: 4 | 8 = 4): string {
    return `read${size === 8 ? 'q' : 'l'} ${hex(SMMU + reg.spec.offset)}`;
  }

  /** QEMU's qsmmu_program_bank order, with random queue sizes, table format and IRQ enables. */
  private enable(): Step {
    this.cmdqLog2 = 2 + this.int(4);
    this.evtqLog2 = 1 + this.int(4);
    this.cmdProd = 0;
    const irqCtrl = this.chance(0.7) ? 0b111 : this.int(8);
    const cr0 = this.chance(0.85) ? CR0_SMMUEN_EVENTQEN_CMDQEN : this.int(0x20);
    const cfg = this.twoLevel ? STRTAB_FMT_2LVL | (SPLIT << 6) | 8 : 5 + this.int(4);
    const lines = [
      this.w(R.GBPA, GBPA_UPDATE | (this.chance(0.2) ? GBPA_ABORT : 0)),
      this.w(R.CR0, 0),
      this.r(R.CR0ACK),
      this.w(R.CR1, 0x0d75),
      this.w(R.CMDQ_BASE, CMDQ | this.cmdqLog2, 8),
      this.w(R.CMDQ_CONS, 0),
      this.w(R.CMDQ_PROD, 0),
      this.w(R.EVENTQ_BASE, EVENTQ | this.evtqLog2, 8),
      this.w(R.EVENTQ_PROD, 0),
      this.w(R.EVENTQ_CONS, 0),
      this.w(R.STRTAB_BASE_CFG, cfg),
      this.w(R.STRTAB_BASE, STRTAB, 8),
      this.w(R.IRQ_CTRL, irqCtrl),
      this.r(R.IRQ_CTRLACK),
      this.w(R.CR0, cr0),
      this.r(R.CR0ACK),
      this.r(R.GERROR),
    ];
    if (this.twoLevel) lines.push(`writeq ${hex(STRTAB)} ${hex(STRTAB_L2 | (SPLIT + 1))}`);
    return { what: `enable (CMDQ 2^${this.cmdqLog2}, EVENTQ 2^${this.evtqLog2}, ${this.twoLevel ? '2-level' : 'linear'} stream table, IRQ_CTRL ${irqCtrl}, CR0 ${hex(cr0)})`, lines };
  }

  /** One register written (plausible or random value, 32 or 64 bits) and read back. */
  private register(): Step {
    const reg = this.pick(REG.ALL);
    const wide = reg.spec.width === 64 && this.chance(0.7);
    let v: number;
    switch (reg) {
      case R.CR0:
        v = this.int(0x20);
        break;
      case R.GBPA:
        v = (this.chance(0.6) ? GBPA_UPDATE : 0) | (this.chance(0.5) ? GBPA_ABORT : 0) | (this.chance(0.2) ? this.int(0x10000) : 0);
        break;
      case R.IRQ_CTRL:
        v = this.int(8);
        break;
      case R.CMDQ_BASE:
        v = CMDQ + this.int(24);
        break;
      case R.EVENTQ_BASE:
        v = EVENTQ + this.int(24);
        break;
      case R.STRTAB_BASE_CFG:
        v = this.chance(0.5) ? this.int(12) : (this.int(2) << 16) | (this.int(12) << 6) | this.int(24);
        break;
      default:
        v = this.chance(0.5) ? this.int(0x40) : this.int(0x1_0000_0000);
    }
    const size = wide ? 8 : 4;
    const half = !wide && reg.spec.width === 64 && this.chance(0.3) ? 4 : 0;
    const at = SMMU + reg.spec.offset + half;
    return { what: `register ${reg.spec.name}${half ? ' (high half)' : ''} = ${hex(v)}`, lines: [`write${size === 8 ? 'q' : 'l'} ${hex(at)} ${hex(v)}`, `read${size === 8 ? 'q' : 'l'} ${hex(at)}`] };
  }

  private readRegisters(): Step {
    const lines: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = this.int(10);
      if (r < 3) lines.push(this.r(this.pick(REG.IDR)));
      else if (r < 8) lines.push(this.r(this.pick(REG.ALL)));
      else lines.push(`readl ${hex(SMMU + this.pick([0x10000, 0x8000]) + 4 * this.int(0x40))}`);
    }
    return { what: 'read registers', lines };
  }

  /** An STE for the testdev (sometimes another SID), valid or with a mutated field. */
  private ste(): Step {
    const sid = this.chance(0.85) ? TESTDEV_SID : this.int(64);
    const config = this.pick([STE_CFG_S1, STE_CFG_S1, STE_CFG_S2, STE_CFG_NESTED, STE_CFG_BYPASS, STE_CFG_ABORT, 1 + this.int(3)]);
    const w = new Uint32Array(STE_WORDS);
    STE.V.setWords(w, 0, this.chance(0.95) ? 1 : 0);
    STE.CFG.setWords(w, 0, config);
    STE.S1CTXPTR.setWords(w, 0, CD_GPA / 2 ** STE.S1CTXPTR.lsb);
    STE.S2VMID.setWords(w, 4, VMID);
    STE.S2T0SZ.setWords(w, 4, 20);
    STE.S2SL0.setWords(w, 4, 2);
    STE.S2PS.setWords(w, 4, 5);
    STE.S2AA64.setWords(w, 4, 1);
    STE.S2R.setWords(w, 4, this.chance(0.8) ? 1 : 0);
    STE.S2TTB.setWords(w, 6, this.s2.root / 2 ** STE.S2TTB.lsb);
    let what = `STE ${sid} config ${config}`;
    if (this.chance(0.25)) {
      const bit = this.int(256);
      w[bit >> 5] = (w[bit >> 5]! ^ (1 << (bit & 31))) >>> 0;
      what += ` bit ${bit} flipped`;
    }
    const at = this.twoLevel ? STRTAB_L2 + (sid % (1 << SPLIT)) * 64 : STRTAB + sid * 64;
    return { what, lines: [`write ${hex(at)} 0x40 ${bytesHex(w)}`] };
  }

  private cd(): Step {
    const w = buildCd({ asid: ASID, ttb0: this.s1.root, record: this.chance(0.8) });
    let what = 'CD';
    if (this.chance(0.3)) {
      const bit = this.int(128);
      w[bit >> 5] = (w[bit >> 5]! ^ (1 << (bit & 31))) >>> 0;
      what += ` bit ${bit} flipped`;
    }
    return { what, lines: [`write ${hex(CD_GPA)} 0x40 ${bytesHex(w)}`] };
  }

  /** Map (or unmap) one IOVA page at stage 1 or stage 2, or stage 2's identity map of the tables. */
  private map(): Step {
    this.pending = [];
    const k = this.int(PAGES);
    const iova = IOVA + k * PAGE;
    let what: string;
    if (!this.identity && this.chance(0.25)) {
      this.identity = true;
      this.s2.map(IDENTITY_BASE, IDENTITY_BASE, IDENTITY_SIZE, 3);
      what = 'S2 identity map of the tables and data';
    } else {
      const stage = this.chance(0.6) ? 1 : 2;
      const set = stage === 1 ? this.mapped.s1 : this.mapped.s2;
      const b = stage === 1 ? this.s1 : this.s2;
      if (set.has(k)) {
        b.unmap(iova, PAGE);
        set.delete(k);
        what = `S${stage} unmap ${hex(iova)}`;
      } else {
        const perm = stage === 1 ? this.pick([1, 3, 3]) : this.pick([1, 2, 3, 3]);
        b.map(iova, DATA + k * PAGE, PAGE, perm, stage === 1 ? { nG: true } : {});
        set.add(k);
        what = `S${stage} map ${hex(iova)} perm ${perm}`;
      }
    }
    const lines = this.pending;
    this.pending = [];
    return { what, lines };
  }

  private command(): [string, Uint32Array] {
    const r = this.int(24);
    const sid = this.chance(0.8) ? TESTDEV_SID : this.int(0x100);
    const addr = IOVA + this.int(PAGES) * PAGE;
    switch (r) {
      case 0:
      case 1:
        return ['CFGI_STE', buildCommand(Op.CFGI_STE, { sid, leaf: this.chance(0.5) })];
      case 2:
        return ['CFGI_CD', buildCommand(Op.CFGI_CD, { sid })];
      case 3:
        return ['CFGI_CD_ALL', buildCommand(Op.CFGI_CD_ALL, { sid })];
      case 4:
        return ['CFGI_STE_RANGE', buildCommand(Op.CFGI_STE_RANGE, { sid, range: this.pick([0, 3, 31, this.int(32)]) })];
      case 5:
        return ['TLBI_NH_ALL', buildCommand(Op.TLBI_NH_ALL, { vmid: VMID })];
      case 6:
        return ['TLBI_NH_ASID', buildCommand(Op.TLBI_NH_ASID, { asid: this.chance(0.8) ? ASID : this.int(0x10000), vmid: VMID })];
      case 7:
      case 8: {
        const tg = this.chance(0.5) ? 0 : 1;
        return ['TLBI_NH_VA', buildCommand(Op.TLBI_NH_VA, { asid: ASID, vmid: VMID, addr, leaf: this.chance(0.5), tg, num: this.int(4), scale: this.int(3), ttl: tg ? 3 : 0 })];
      }
      case 9:
        return ['TLBI_NH_VAA', buildCommand(Op.TLBI_NH_VAA, { vmid: VMID, addr })];
      case 10:
        return ['TLBI_S12_VMALL', buildCommand(Op.TLBI_S12_VMALL, { vmid: this.chance(0.8) ? VMID : this.int(16) })];
      case 11:
        return ['TLBI_S2_IPA', buildCommand(Op.TLBI_S2_IPA, { vmid: VMID, addr, tg: this.chance(0.5) ? 0 : 1, num: this.int(2) })];
      case 12:
        return ['TLBI_NSNH_ALL', buildCommand(Op.TLBI_NSNH_ALL)];
      case 13:
      case 14:
        return ['CMD_SYNC', buildCommand(Op.SYNC, { cs: this.pick([SYNC_CS_NONE, SYNC_CS_IRQ, SYNC_CS_IRQ, SYNC_CS_SEV]) })];
      case 15:
        return ['PREFETCH', buildCommand(this.pick([Op.PREFETCH_CFG, Op.PREFETCH_ADDR]), { sid })];
      case 16: {
        const c = buildCommand(this.pick([Op.CFGI_STE, Op.CFGI_CD, Op.CFGI_STE_RANGE, Op.CFGI_CD_ALL]), { sid });
        c[0] = (c[0]! | CMD_SSEC) >>> 0;
        return ['CFGI with SSec', c];
      }
      case 17:
        return ['EL2/EL3 TLBI', buildCommand(this.pick([Op.TLBI_EL2_ALL, Op.TLBI_EL2_ASID, Op.TLBI_EL2_VA, Op.TLBI_EL2_VAA, Op.TLBI_EL3_ALL, Op.TLBI_EL3_VA]), { asid: ASID, addr })];
      case 18:
        return ['ATC/PRI/stall', buildCommand(this.pick([Op.ATC_INV, Op.PRI_RESP, Op.RESUME, Op.STALL_TERM]), { sid })];
      case 19: {
        const op = this.int(0x100);
        return [`opcode ${hex(op)}`, buildCommand(op, { sid })];
      }
      case 20: {
        const c = buildCommand(Op.CFGI_STE, { sid });
        c[this.int(4)] = this.int(0x1_0000_0000);
        return [`random words (opcode ${hex(D0.OPCODE.get(c[0]!))})`, c];
      }
      default:
        return ['CMD_SYNC (IRQ)', buildCommand(Op.SYNC, { cs: SYNC_CS_IRQ })];
    }
  }

  /** 1..4 commands into the ring at the driver's PROD, PROD written, CONS and GERROR read. */
  private commands(): Step {
    const n = 1 + this.int(4);
    const lines: string[] = [];
    const names: string[] = [];
    const size = 1 << this.cmdqLog2;
    for (let i = 0; i < n; i++) {
      const [name, c] = this.command();
      names.push(name);
      lines.push(`write ${hex(CMDQ + (this.cmdProd & (size - 1)) * 16)} 0x10 ${bytesHex(c)}`);
      this.cmdProd = (this.cmdProd + 1) & (2 * size - 1);
    }
    lines.push(this.w(R.CMDQ_PROD, this.chance(0.05) ? this.int(0x100000) : this.cmdProd), this.r(R.CMDQ_CONS), this.r(R.GERROR));
    return { what: `commands ${names.join(', ')}`, lines };
  }

  /** Toggle GERRORN bits (mostly CMDQ_ERR: acknowledging a command error) and re-read the state. */
  private ackGerror(): Step {
    const bits = this.pick([1, 1, 1, 4, 5, this.int(0x200)]);
    this.gerrorn ^= bits;
    const lines = [this.w(R.GERRORN, this.gerrorn), this.r(R.GERROR), this.r(R.GERRORN), this.r(R.CMDQ_CONS)];
    if (this.chance(0.3)) {
      // Skip the failing command(s) as a driver that gives up on them would.
      lines.push(this.w(R.CMDQ_CONS, this.cmdProd), this.r(R.CMDQ_CONS));
    }
    return { what: `GERRORN ^= ${hex(bits)}`, lines };
  }

  /** A DMA through the testdev; the result, the bytes at the GPA and the event queue read back. */
  private dma(): Step {
    const k = this.int(PAGES + 1);
    const off = 4 * this.int(PAGE / 8);
    const gva = IOVA + k * PAGE + off;
    const gpa = DATA + Math.min(k, PAGES - 1) * PAGE + off;
    const len = this.chance(0.9) ? 4 * (1 + this.int(16)) : this.int(0x2000);
    const reg = (o: number) => hex(BAR0 + o);
    const lines = [`memset ${hex(gpa)} 0x40 0`, `writel ${reg(0x04)} ${hex(gva)}`, `writel ${reg(0x08)} 0`, `writel ${reg(0x0c)} ${hex(len)}`, `writel ${reg(0x1c)} ${hex(gpa)}`, `writel ${reg(0x20)} 0`];
    if (this.chance(0.1)) lines.push(`writel ${reg(0x18)} ${hex(this.int(16))}`);
    if (this.chance(0.95)) lines.push(`writel ${reg(0x14)} 1`);
    lines.push(`readl ${reg(0x00)}`, `readl ${reg(0x10)}`, `b64read ${hex(gpa)} 0x40`, this.r(R.EVENTQ_PROD), this.r(R.GERROR));
    lines.push(`b64read ${hex(EVENTQ)} ${hex(32 * Math.min(1 << this.evtqLog2, 8))}`);
    if (this.chance(0.05)) lines.push(`readl ${reg(4 * this.int(ITD_BAR0_SIZE / 4))}`);
    return { what: `DMA ${len} bytes at ${hex(gva)}`, lines };
  }

  /** The event queue's indexes read, CONS moved (not always to PROD: the driver guesses). */
  private eventQueue(): Step {
    const cons = this.int(2 << this.evtqLog2) | (this.chance(0.2) ? 0x8000_0000 : 0);
    return { what: `EVENTQ_CONS = ${hex(cons)}`, lines: [this.r(R.EVENTQ_PROD), this.w(R.EVENTQ_CONS, cons), this.r(R.EVENTQ_CONS), this.r(R.EVENTQ_PROD)] };
  }
}

/** The sequence of seed `seed`: the setup, then `steps` steps. */
export function generateSequence(seed: number, steps: number): DiffSequence {
  const g = new Generator(seed);
  const out: Step[] = [];
  for (let i = 0; i < steps; i++) out.push(g.step(i));
  return { seed, setup: g.setup(), steps: out };
}
