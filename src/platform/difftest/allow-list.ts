/**
 * The differences between QEMU 11.1 and cmdqv's drop-in that are facts of the two programs, not
 * bugs: `cmdqv difftest` skips a reply that an entry here matches and counts it under the
 * entry's id. Every entry says why the difference is right. Anything not listed is a
 * divergence.
 */

import * as R from '../../arch/smmuv3/registers.js';

/** The machine-wide SMMUv3's frame (VIRT_SMMU). */
const SMMU_BASE = 0x0905_0000;
const PAGE1 = 0x1_0000;
const layout = R.smmuv3Layout();

/** One compared request: the line sent and what each program answered. */
export interface ComparedReply {
  readonly request: string;
  readonly qemu: string;
  readonly cmdqv: string;
}

/** A documented, accepted difference. */
export interface AllowedDifference {
  readonly id: string;
  /** Why the difference is a fact of the two programs rather than a bug. */
  readonly reason: string;
  /** Whether this reply pair is an instance of the difference; `history` holds the requests before it. */
  readonly matches: (r: ComparedReply, history: readonly string[]) => boolean;
  /** The difference changes state the rest of the run depends on: stop comparing the run. */
  readonly stopsComparison?: boolean;
}

/** `readl|readq ADDR` of the SMMU frame: the offset and size, else undefined. */
function smmuRead(request: string): { offset: number; size: 4 | 8 } | undefined {
  const m = /^read([lq]) (0x[0-9a-f]+)$/.exec(request);
  if (!m) return undefined;
  const offset = Number(m[2]) - SMMU_BASE;
  return offset >= 0 && offset < R.SMMUV3_MMIO_SIZE ? { offset, size: m[1] === 'q' ? 8 : 4 } : undefined;
}

/** The value of an `OK 0x...` reply without IRQ lines. */
function okValue(reply: string): bigint | undefined {
  const m = /^OK (0x[0-9a-f]+)$/.exec(reply);
  return m ? BigInt(m[1]!) : undefined;
}

/** The bits of the register word(s) at `offset` cmdqv's frame keeps (its defined fields). */
function definedBits(offset: number, size: 4 | 8): bigint | undefined {
  const lo = layout.slotAt(offset);
  if (lo < 0) return undefined;
  if (size === 4) return BigInt(layout.readMask[lo]!);
  const hi = layout.slotAt(offset + 4);
  return BigInt(layout.readMask[lo]!) | (hi < 0 ? 0n : BigInt(layout.readMask[hi]!) << 32n);
}

/** Below RAM: flash, device MMIO and the PCIe window, which QEMU's DMA reads (zeros, mostly). */
const VIRT_RAM_BASE = 0x4000_0000;
const CR0_AT = `0x${(SMMU_BASE + R.CR0.spec.offset).toString(16)}`;
const BASE_REGISTERS = [R.STRTAB_BASE, R.CMDQ_BASE, R.EVENTQ_BASE].map((r) => SMMU_BASE + r.spec.offset);

/**
 * Whether, after `history`, the SMMU was turned on (a CR0 write) while a stream table or queue
 * base register points below RAM.
 */
function baseBelowRam(history: readonly string[]): boolean {
  const lo = BASE_REGISTERS.map(() => 0);
  const hi = BASE_REGISTERS.map(() => 0);
  let enabled = false;
  for (const h of history) {
    const w = h.split(' ');
    if (w[0] === 'writel' && w[1] === CR0_AT) enabled = true;
    if (w[0] !== 'writel' && w[0] !== 'writeq') continue;
    const at = Number(w[1]);
    const v = BigInt(w[2] ?? '0');
    BASE_REGISTERS.forEach((b, i) => {
      if (w[0] === 'writeq' && at === b) {
        lo[i] = Number(v & 0xffff_ffffn);
        hi[i] = Number((v >> 32n) & 0xffff_ffffn);
      } else if (w[0] === 'writel' && at === b) lo[i] = Number(v);
      else if (w[0] === 'writel' && at === b + 4) hi[i] = Number(v);
    });
  }
  // The address fields start at bit 5 or 6 and end at bit 51: the high word's low 20 bits.
  return enabled && lo.some((l, i) => (hi[i]! & 0xf_ffff) === 0 && (l & ~0x3f) >>> 0 < VIRT_RAM_BASE);
}

/** Where the generator puts stream tables (linear and 2-level, below its command queue). */
const STE_AREA = [0x4800_0000, 0x4810_0000] as const;

/** A 64-byte STE write whose dword0 has any of bits 52..55 set (byte 6, high nibble). */
function steCtxPtrHighBits(request: string): boolean {
  const w = request.split(' ');
  const at = Number(w[1]);
  return w[0] === 'write' && w[2] === '0x40' && at >= STE_AREA[0] && at < STE_AREA[1] && w[3] !== undefined && w[3].length >= 16 && (Number.parseInt(w[3].slice(2 + 12, 2 + 14), 16) & 0xf0) !== 0;
}

const STRTAB_BASE_CFG_AT = `0x${(SMMU_BASE + R.STRTAB_BASE_CFG.spec.offset).toString(16)}`;
const STRTAB_FMT_2LVL = 1 << 16;

/** The allow-list (docs/reference/qemu-smmuv3.md §9 lists the same entries). */
export const ALLOWED_DIFFERENCES: readonly AllowedDifference[] = [
  {
    id: 'smmu-reserved-bits',
    reason:
      'QEMU stores whole 32-bit words in CR0..CR2, GERRORN, the queue PROD/CONS and the other ' +
      'plain registers, reserved bits included; cmdqv\'s register frame (shared with the ' +
      'accelerated SMMUv3) keeps RES0 bits zero as the architecture reads them. The defined fields agree.',
    matches: (r) => {
      const at = smmuRead(r.request);
      if (!at) return false;
      const bits = definedBits(at.offset, at.size);
      const q = okValue(r.qemu);
      const c = okValue(r.cmdqv);
      return bits !== undefined && q !== undefined && c !== undefined && (q & bits) === c;
    },
  },
  {
    id: 'smmu-page1-alias',
    reason:
      'QEMU makes page 1 of the SMMU frame an alias of page 0 (a CONSTRAINED UNPREDICTABLE choice, ' +
      'hw/arm/smmuv3.c); cmdqv implements only EVENTQ_PROD/CONS there (0x100A8/0x100AC) and reads ' +
      'the rest of page 1 as zero, as the architecture defines page 1 (deliberate, emulated-smmuv3.ts).',
    matches: (r) => {
      const at = smmuRead(r.request);
      return at !== undefined && at.offset >= PAGE1 && at.offset !== R.EVENTQ_PROD.spec.offset && at.offset !== R.EVENTQ_CONS.spec.offset && /^OK 0x0+$/.test(r.cmdqv);
    },
  },
  {
    id: 'smmu-tables-below-ram',
    reason:
      'Below RAM QEMU\'s virt machine has the flash, device registers and the PCIe MMIO window, and a ' +
      'DMA read there succeeds (zeros, mostly): a stream table there holds invalid STEs (C_BAD_STE), a ' +
      'queue there takes records. cmdqv\'s DMA reaches guest RAM only: a fetch there is an external ' +
      'abort (F_STE_FETCH, CERROR_ABT). Once the SMMU is on with a base register there, the rest of the ' +
      'run is not compared.',
    stopsComparison: true,
    matches: (_r, history) => baseBelowRam(history),
  },
  {
    id: 'ste-ctxptr-bits-52-55',
    reason:
      'QEMU reads STE.S1ContextPtr as bits [55:6]; the architecture (and cmdqv\'s shared STE decoder) ' +
      'ends it at bit 51, bits 52..55 being RES0. An STE with those bits set fetches its CD elsewhere ' +
      'in QEMU; the rest of the run is not compared.',
    stopsComparison: true,
    matches: (_r, history) => history.some(steCtxPtrHighBits),
  },
  {
    id: 'qemu-aborts',
    reason:
      'QEMU 11.1 aborts the whole process on some hostile STE/CD encodings (g_assert_not_reached in ' +
      'oas2bits for an IPS/S2PS of 7, in decode_ste_s2_cfg); cmdqv logs a guest error and handles ' +
      'the access as the device would, as every cmdqv model must (a guest cannot crash the VMM). ' +
      'Nothing after QEMU\'s exit can be compared.',
    stopsComparison: true,
    matches: (r) => r.qemu.startsWith('Bail out!') || r.qemu.startsWith('<exited:'),
  },
  {
    id: 'smmu-sticky-2lvl-strtab',
    reason:
      'QEMU switches to the 2-level stream table format when STRTAB_BASE_CFG.FMT = 1 is written and ' +
      'never back (smmu_writel sets SMMU_FEATURE_2LVL_STE and nothing clears it); cmdqv follows ' +
      'FMT as the architecture does. Once FMT went from 1 to 0 the two look STEs up in different ' +
      'places, so the rest of the run is not compared.',
    stopsComparison: true,
    matches: (_r, history) => {
      let twoLevel = false;
      for (const h of history) {
        const w = h.split(' ');
        if (w[0] !== 'writel' || w[1] !== STRTAB_BASE_CFG_AT) continue;
        const fmt2 = (Number(w[2]) & STRTAB_FMT_2LVL) !== 0;
        if (fmt2) twoLevel = true;
        else if (twoLevel) return true;
      }
      return false;
    },
  },
];
