/**
 * Where the emulated SMMUv3 finds an STE and which STEs and CDs it accepts: QEMU's
 * `smmu_find_ste` (linear and 2-level stream tables in guest memory) and the limits QEMU's
 * `decode_ste` / `decode_ste_s2_cfg` / `decode_cd` put on top of the architecture
 * (docs/reference/qemu-smmuv3.md §3). The architecture decode itself is the shared engine's
 * (`arch/smmuv3/stream-config.ts`); what is refused here is a C_BAD_STE / C_BAD_CD with QEMU's
 * guest-error message.
 */

import type { FaultRecord } from '../../arch/smmuv3/event-record.js';
import type { Granule } from '../../arch/smmuv3/page-table.js';
import * as R from '../../arch/smmuv3/registers.js';
import type { CdConfig, StreamConfig } from '../../arch/smmuv3/stream-config.js';
import type { WalkConfig } from '../../arch/smmuv3/page-table.js';
import { addressBits, CD, Evt, STE, STE_CFG_ABORT, STE_CFG_BYPASS } from '../../arch/smmuv3/structures.js';
import type { TranslatorDevice } from '../../arch/smmuv3/translator.js';
import type { ModelLog } from '../../kit/log.js';
import type { Tracer } from '../../kit/trace.js';
import type { SmmuRegisterFrame } from './register-frame.js';
import { findSte, type GuestMemory } from './ste-install.js';
import * as T from './trace-events.js';

/** QEMU's emulated OAS: 44 bits (IDR5.OAS = 4); stage output sizes are capped to it. */
export const EMULATED_OAS_BITS = 44;
/** Most concatenated stage-2 start-level tables (VMSA). */
const MAX_S2_CONCAT = 16;
/** QEMU's implementation StreamID width (IDR1.SIDSIZE). */
const SIDSIZE = 16;
/** STE.Config bit 0 / bit 1: stage 1 / stage 2 enabled (for the translating configurations). */
const CFG_S1 = 0b001;
const CFG_S2 = 0b010;
/** STE.Config bit 2: translating or bypass (clear: abort, or a reserved value). */
const CFG_ENABLED = 0b100;

/** log2 of a granule. */
function shiftOf(granule: Granule): number {
  return granule === 4096 ? 12 : granule === 16384 ? 14 : 16;
}

/** The STE/CD rules of one emulated SMMUv3, as the engine's {@link TranslatorDevice}. */
export class EmulatedConfigRules implements TranslatorDevice {
  /** Guest memory whose reads outside RAM throw (a DMA abort), for the stream-table walk. */
  private readonly mem: GuestMemory;

  constructor(
    private readonly frame: SmmuRegisterFrame,
    guestMemory: GuestMemory,
    private readonly log: ModelLog,
    private readonly tracer: Tracer,
  ) {
    const word = new Uint32Array(1);
    this.mem = guestMemory.readWords === undefined ? guestMemory : {
      read32: (gpa) => {
        if (!guestMemory.readWords!(gpa, word, 0, 1)) throw new RangeError(`DMA read abort at 0x${gpa.toString(16)}`);
        return word[0]!;
      },
      write32: (gpa, v) => guestMemory.write32(gpa, v),
    };
  }

  /** QEMU's smmu_find_ste: linear or 2-level, SID checked against LOG2SIZE and SIDSIZE. */
  steAddress(sid: number, fault: FaultRecord): number {
    const { file, regs } = this.frame;
    const cfg = file.get32(regs.strtabCfg);
    const st = {
      base: this.frame.address(regs.strtabBase, R.STRTAB_BASE.f.ADDR),
      log2size: R.STRTAB_BASE_CFG.f.LOG2SIZE.get(cfg),
      split: qemuSplit(R.STRTAB_BASE_CFG.f.SPLIT.get(cfg)),
      fmt: R.STRTAB_BASE_CFG.f.FMT.get(cfg),
      sidSize: SIDSIZE,
    };
    this.tracer.emit(T.T_FIND_STE, sid, st.fmt, st.split);
    const r = findSte(this.mem, st, sid, {
      twoLevel: (base, l1ptr, l1Off, l2ptr, l2Off, maxL2) => this.tracer.emit(T.T_FIND_STE_2LVL, base, l1ptr, l1Off, l2ptr, l2Off, maxL2),
      fetch: (addr) => this.tracer.emit(T.T_GET_STE, addr),
    });
    if (r.ok) return r.addr;
    fault.id = r.event;
    if (r.event === Evt.F_STE_FETCH) {
      fault.fetchAddr = r.addr;
      this.log.guestError(this.frame.logSource, `Cannot fetch pte at address=0x${r.addr.toString(16)}`);
    }
    return -1;
  }

  /**
   * QEMU's decode_ste takes every valid STE whose Config has bit 2 clear (0b000..0b011, the
   * reserved values included) as abort: no event (docs/reference/qemu-smmuv3.md §3).
   */
  steFetched(w: Uint32Array): void {
    if (!STE.V.getWords(w[0]!, w[1]!)) return;
    const cfg = STE.CFG.getWords(w[0]!, w[1]!);
    if (cfg !== STE_CFG_ABORT && (cfg & CFG_ENABLED) === 0) STE.CFG.setWords(w, 0, STE_CFG_ABORT);
  }

  /** QEMU's decode_ste limits (stages offered, stage-2 shape, one CD, no stall). */
  steUsable(w: Uint32Array, sc: StreamConfig): boolean {
    const cfg = STE.CFG.getWords(w[0]!, w[1]!);
    if (cfg === STE_CFG_ABORT || cfg === STE_CFG_BYPASS) return true;
    const why = this.steProblem(w, cfg, sc);
    if (why) {
      this.log.guestError(this.frame.logSource, why);
      return false;
    }
    // VMID counts whenever stage 2 is offered (QEMU: even for a stage-1-only STE); else none.
    sc.vmid = this.frame.stage2 ? STE.S2VMID.getWords(w[4]!, w[5]!) : 0;
    if (sc.s2) {
      sc.s2.oasBits = Math.min(sc.s2.oasBits, EMULATED_OAS_BITS);
      sc.s2.ttb = alignTableBase(sc.s2);
    }
    return true;
  }

  private steProblem(w: Uint32Array, cfg: number, sc: StreamConfig): string | undefined {
    if (!this.frame.stage1 && (cfg & CFG_S1) !== 0) return 'SMMUv3 S1 used but not supported.';
    if (!this.frame.stage2 && (cfg & CFG_S2) !== 0) return 'SMMUv3 S2 used but not supported.';
    if (sc.s2) {
      const lo = w[4]!;
      const hi = w[5]!;
      const s2 = sc.s2;
      const sl0 = STE.S2SL0.getWords(lo, hi);
      if (sl0 === 3) return 'SMMUv3 S2SL0 = 0x3 has no meaning!';
      const effPs = addressBits(Math.min(STE.S2PS.getWords(lo, hi), 4));
      if (s2.ttb >= 2 ** effPs) return `SMMUv3 S2TTB too large 0x${s2.ttb.toString(16)}, effective PS ${effPs} bits`;
      const tsz = 64 - s2.inputBits;
      // The IPA may not exceed the effective PS (QEMU 11.1: "bad STE S2T0SZ", docs/reference/qemu-smmuv3.md §3).
      const minTsz = s2.granule === 65536 ? 64 - effPs : Math.max(64 - effPs, 16);
      if (tsz > 39 || tsz < minTsz) return `SMMUv3 bad STE S2T0SZ = ${tsz}`;
      if (!s2ConcatValid(s2.granule, s2.startLevel!, s2.inputBits)) return 'SMMUv3 STE stage 2 config not valid!';
      if (STE.S2ENDI.getWords(lo, hi)) return 'SMMUv3 STE_S2ENDI only supports LE!';
      if (STE.S2S.getWords(lo, hi)) return 'SMMUv3 Stall not implemented!';
    }
    if (STE.S1CDMAX.getWords(w[0]!, w[1]!) !== 0) return 'SMMUv3 does not support multiple context descriptors yet';
    if (STE.S1STALLD.getWords(w[2]!, w[3]!)) return 'SMMUv3 S1 stalling fault model not allowed yet';
    return undefined;
  }

  /** QEMU's decode_cd limits (A set, no stall, no HTTU, T0SZ 16..39, LE, TTB0 within the OAS). */
  cdUsable(w: Uint32Array, cd: CdConfig): boolean {
    const lo = w[0]!;
    const hi = w[1]!;
    const oas = Math.min(addressBits(CD.IPS.getWords(lo, hi)), EMULATED_OAS_BITS);
    const tsz = 64 - cd.s1.inputBits;
    const bad = !CD.A.getWords(lo, hi) || CD.S.getWords(lo, hi) || CD.HA.getWords(lo, hi) || CD.HD.getWords(lo, hi) ||
      tsz < 16 || tsz > 39 || CD.ENDI.getWords(lo, hi) || cd.s1.ttb >= 2 ** oas;
    this.tracer.emit(T.T_DECODE_CD, oas);
    if (bad) return false;
    cd.s1.oasBits = oas;
    cd.s1.ttb = alignTableBase(cd.s1);
    return true;
  }
}

/**
 * Whether a stage-2 walk starting at `level` can cover `ipaBits` with at most 16 concatenated
 * tables (QEMU's s2_pgtable_config_valid).
 */
function s2ConcatValid(granule: Granule, level: number, ipaBits: number): boolean {
  if (!(level >= 0 && level <= 3)) return false;
  const p = shiftOf(granule);
  const stride = p - 3;
  const below = p + stride * (3 - level); // input bits resolved below the start level's index
  const indexBits = ipaBits - below;
  return indexBits <= stride || 2 ** (indexBits - stride) <= MAX_S2_CONCAT;
}

/**
 * QEMU's walk clears the TTB bits below the start-level table's size (the index bits there):
 * 2^(inputBits − stride · (4 − startLevel)) bytes, concatenated stage-2 tables included
 * (docs/reference/qemu-smmuv3.md §3).
 */
function alignTableBase(c: WalkConfig): number {
  const pageShift = Math.log2(c.granule);
  const stride = pageShift - 3;
  const level = c.startLevel ?? 4 - Math.ceil((c.inputBits - pageShift) / stride);
  const size = 2 ** (c.inputBits - stride * (4 - level));
  return c.ttb - (c.ttb % size);
}

/**
 * QEMU 11.1 takes a 2-level SPLIT of 6, 8 or 10 and uses 6 for any other value ("Invalid
 * STRTAB_BASE_CFG.SPLIT=N, use 6 instead", docs/reference/qemu-smmuv3.md §3).
 */
function qemuSplit(split: number): number {
  return split === 6 || split === 8 || split === 10 ? split : 6;
}
