/**
 * The SMMUv3 translation sequence (docs/reference/smmuv3.md §5–6): StreamID → STE → CD, the
 * IOTLB, stage-1 / stage-2 / nested table walks, and the fault each step can raise, with the
 * configuration cache (decoded STEs and their CDs, invalidated only by CFGI_*) and the IOTLB
 * (invalidated only by TLBI_*) an implementation keeps.
 *
 * One engine for both SMMUs of the stack: the host SMMU runs it over host-physical memory, the
 * VMM's emulated SMMUv3 (QEMU's `arm-smmuv3` without accel) over guest memory. What differs is
 * given at construction: the memory ({@link TableReader}), where a StreamID's STE lives and the
 * device's own limits on STEs and CDs ({@link TranslatorDevice}), and how faults are reported
 * ({@link FaultModel}). Registers (SMMUEN, GBPA) and the event queue stay with the device: it
 * calls {@link Translator.translate} once translation is enabled and records the
 * {@link Translator.fault} when one is reported.
 *
 * Hot path: an IOTLB hit allocates nothing; a walk allocates only the IOTLB entry it caches.
 */

import { Iotlb, MIN_ENTRY_SIZE, NO_ASID, PERM_R, PERM_W, type IotlbEntry } from './iotlb.js';
import {
  FAULT_ACCESS,
  FAULT_ADDR_SIZE,
  FAULT_NONE,
  FAULT_PERMISSION,
  FAULT_S2_ON_TABLE,
  FAULT_TRANSLATION,
  FAULT_WALK_ABORT,
  walk,
  WalkResult,
  type TableReader,
  type WalkConfig,
} from './page-table.js';
import { decodeCd, decodeSte, type CdConfig, type StreamConfig } from './stream-config.js';
import { CD, CD_BYTES, CD_WORDS, CLASS_CD, CLASS_IN, CLASS_TT, Evt, STE_WORDS } from './structures.js';
import { FaultRecord } from './event-record.js';

/** Access kinds of {@link Translator.translate}. */
export const ACCESS_READ = 1;
export const ACCESS_WRITE = 2;

/** Outcome of a translation (reuse one per caller). */
export class Translation {
  /** Output address (valid when `ok`). */
  pa = 0;
  ok = false;
  /** Event ID recorded for the fault (0 when ok or aborted silently). */
  event = 0;
  /** Whether the IOTLB supplied the result. */
  hit = false;
  /** Bytes from `pa` to the end of the page or block that translated it. */
  span = 0;
}

/** What the engine needs from the SMMU it runs in. */
export interface TranslatorDevice {
  /**
   * Address of StreamID `sid`'s STE, or −1 after filling `fault` (C_BAD_STREAMID,
   * F_STE_FETCH, C_BAD_STE; id 0 for an abort without an event).
   */
  steAddress(sid: number, fault: FaultRecord): number;
  /** Rewrite an STE as fetched, before it is decoded (a device's reading of reserved encodings). */
  steFetched?(w: Uint32Array): void;
  /** The device's own limits on a decoded STE (false: C_BAD_STE). */
  steUsable?(w: Uint32Array, sc: StreamConfig): boolean;
  /** The device's own limits on a decoded CD (false: C_BAD_CD). */
  cdUsable?(w: Uint32Array, cd: CdConfig): boolean;
}

/** How faults are reported: the architecture as the host SMMU implements it, or QEMU's choices. */
export interface FaultModel {
  /**
   * Translation, address-size, access and permission faults are recorded only when the stage's
   * R bit (CD.R, STE.S2R) is set; otherwise the transaction aborts silently. Walk aborts are
   * always recorded.
   */
  readonly honourRecordBits: boolean;
  /** A walk that ends in a permission fault still fills the IOTLB. */
  readonly cacheOnPermissionFault: boolean;
  /**
   * A nested CD fetch whose stage-2 translation faults is reported as that stage-2 fault with
   * CLASS_CD (QEMU); otherwise as F_CD_FETCH.
   */
  readonly cdFetchS2FaultAsWalk: boolean;
  /** A stream whose CD cannot be used stays in the configuration cache (QEMU re-reads the STE). */
  readonly cacheStreamOnBadCd: boolean;
  /**
   * A stage-2 fault on a nested stage-1 table fetch (CLASS_TT) reports RnW = read, the table
   * access (QEMU 11.1); otherwise the transaction's direction.
   */
  readonly tableFetchFaultIsRead: boolean;
  /**
   * A CD with EPD0 = 1 is usable and every TT0 access is a stage-1 translation fault (the
   * architecture; QEMU 11.1); otherwise such a CD is C_BAD_CD.
   */
  readonly epd0TranslationFault: boolean;
  /**
   * A nested translation's stage 2 of the stage-1 output looks in the IOTLB's stage-2 entries
   * of the VMID first (the ones the table fetches cached) and walks only without one: stage-2
   * translations may be cached and used for any stage-2 lookup of their VMID, until a stage-2
   * invalidation removes them (docs/reference/smmuv3.md §4.7). Absent: always walk (QEMU).
   */
  readonly nestedOutputFromS2Cache?: boolean;
}

/** The host SMMU's fault model (the architecture, every fault recorded). */
export const HARDWARE_FAULTS: FaultModel = {
  honourRecordBits: false, cacheOnPermissionFault: true, cdFetchS2FaultAsWalk: false, cacheStreamOnBadCd: true, tableFetchFaultIsRead: false, epd0TranslationFault: false,
  nestedOutputFromS2Cache: true,
};

/** Counters of the engine's work. */
export interface TranslatorStats {
  /** Table walks (IOTLB misses that walked). */
  walks: number;
  /** Configuration-cache misses (STE decodes). */
  steFetches: number;
  cdFetches: number;
}

/**
 * Stage-1 table reads in a nested walk go through stage 2; reports the stage-2 fault kind.
 *
 * The stage-2 translation of a table address is looked up in the IOTLB's stage-2 entries of
 * the stream's VMID, and a walk that had to be made is cached there: the walk cache an SMMU
 * keeps for its stage-1 table fetches, and what QEMU does (translate_table_addr_ipa caches
 * it as a stage-2 IOTLB entry, docs/reference/qemu-smmuv3.md §10). Such entries go with the
 * stage-2 invalidations that would remove any stage-2 entry (TLBI_S2_IPA, TLBI_S12_VMALL,
 * TLBI_NSNH_ALL); stage-1 invalidations leave them, as they leave stage 2 itself.
 *
 * A descriptor is one 64-bit fetch, translated once: the walker reads it as two words, and the
 * high word (at the low word's IPA + 4, same page) reuses the low word's stage-2 result.
 */
class NestedReader implements TableReader {
  lastFault = 0;
  faultAddress = 0;
  descHi = 0;
  s2: WalkConfig | undefined;
  private vmid = 0;
  /** IPA and output address of the last word translated (−1: none; reset per walk). */
  private lastIpa = -1;
  /** The walk-cache entry handed to the IOTLB (which keeps a copy): one object for every insert. */
  private readonly entry = newEntry();
  private lastPa = 0;
  constructor(
    private readonly phys: TableReader,
    private readonly out: WalkResult,
    private readonly iotlb: Iotlb,
  ) {}

  /** Start a walk of a stream with stage 2 `s2` under `vmid`: nothing translated yet. */
  begin(s2: WalkConfig | undefined, vmid: number): void {
    this.s2 = s2;
    this.vmid = vmid;
    this.lastFault = 0;
    this.lastIpa = -1;
  }

  readTableWord(ipa: number): number {
    // `& 7` keeps the low bits of any address below 2^53 (a `%` above 2^31 is a library call).
    if (ipa === this.lastIpa + 4 && (ipa & 7) === 4) {
      // The high word of the descriptor whose low word was just fetched.
      this.lastIpa = -1;
      return this.phys.readTableWord(this.lastPa + 4);
    }
    const pa = this.translateTableAddress(ipa);
    if (pa < 0) return -1;
    this.lastIpa = ipa;
    this.lastPa = pa;
    return this.phys.readTableWord(pa);
  }

  /**
   * The PA of table address `ipa` through stage 2 (the IOTLB's stage-2 entries, else a walk
   * whose result is cached there), or −1 after recording the stage-2 fault.
   */
  private translateTableAddress(ipa: number): number {
    const cached = this.iotlb.peek(this.vmid, NO_ASID, ipa);
    if (cached !== undefined && (cached.perm & PERM_R) !== 0) return cached.pa + (ipa - cached.iova);
    const r = walk(this.s2!, this.phys, ipa, ACCESS_READ, this.out);
    if (r.fault !== FAULT_NONE) {
      this.lastIpa = -1;
      this.lastFault = r.fault;
      this.faultAddress = ipa;
      return -1;
    }
    const size = r.blockSize;
    const base = Math.floor(ipa / size) * size;
    const e = this.entry;
    e.vmid = this.vmid;
    e.asid = 0;
    e.global = false;
    e.stage1 = false;
    e.iova = base;
    e.size = size;
    e.ipa = base;
    e.pa = r.blockBase;
    e.perm = r.perm;
    this.iotlb.insert(e);
    return r.outputAddress;
  }

  /** The descriptor at `ipa` (8-byte aligned): one stage-2 translation, one fetch of both words. */
  readTableDesc(ipa: number): number {
    const pa = this.translateTableAddress(ipa);
    if (pa < 0) return -1;
    const phys = this.phys;
    // The high word at PA + 4 (same page) reuses this translation, as readTableWord's does.
    this.lastIpa = ipa;
    this.lastPa = pa;
    if (phys.readTableDesc !== undefined) {
      const lo = phys.readTableDesc(pa);
      if (lo >= 0) this.descHi = phys.descHi!;
      return lo;
    }
    const lo = phys.readTableWord(pa);
    if (lo < 0) return -1;
    const hi = phys.readTableWord(pa + 4);
    if (hi < 0) return -1;
    this.descHi = hi;
    return lo;
  }
}

/** An IOTLB entry being filled in: insert copies what it keeps, so one serves every walk. */
type EntryScratch = { -readonly [K in keyof IotlbEntry]: IotlbEntry[K] };

function newEntry(): EntryScratch {
  return { vmid: 0, asid: 0, global: false, stage1: false, iova: 0, size: MIN_ENTRY_SIZE, ipa: 0, pa: 0, perm: 0 };
}

/** The translation engine of one SMMU. */
export class Translator {
  readonly iotlb: Iotlb;
  /** The fault of the last failed {@link translate} (valid until the next call). */
  readonly fault = new FaultRecord();
  readonly stats: TranslatorStats = { walks: 0, steFetches: 0, cdFetches: 0 };
  /** Configuration cache: decoded STEs (and their CDs) by StreamID. */
  private readonly streams = new Map<number, StreamConfig>();
  /**
   * The configuration-cache entries the last translation used (StreamID −1: none), ahead of
   * the Maps: a device's DMAs name one stream and one CD. Forgotten whenever the cache changes.
   */
  private lastSid = -1;
  private lastStream: StreamConfig | undefined = undefined;
  private lastSsid = -1;
  private lastCd: CdConfig | undefined = undefined;
  private readonly walkOut = new WalkResult();
  /** The entry handed to the IOTLB (which keeps a copy): one object for every walk. */
  private readonly entry = newEntry();
  private readonly s2Out = new WalkResult();
  private readonly nested: NestedReader;
  private readonly words = new Uint32Array(Math.max(STE_WORDS, CD_WORDS));

  constructor(
    private readonly mem: TableReader,
    private readonly device: TranslatorDevice,
    private readonly faults: FaultModel = HARDWARE_FAULTS,
    iotlbCapacity?: number,
  ) {
    this.iotlb = new Iotlb(iotlbCapacity);
    this.nested = new NestedReader(mem, this.s2Out, this.iotlb);
  }

  // ------------------------------------------------------------------------------------------
  // Configuration cache

  /** The cached configuration of `sid`, if any (for tests and reports). */
  cachedConfig(sid: number): StreamConfig | undefined {
    return this.streams.get(sid);
  }

  /** Number of StreamIDs with a cached configuration. */
  get cachedConfigs(): number {
    return this.streams.size;
  }

  /** Forget {@link lastStream} and {@link lastCd} (the configuration cache changed). */
  private forgetLast(): void {
    this.lastSid = -1;
    this.lastStream = undefined;
    this.lastSsid = -1;
    this.lastCd = undefined;
  }

  /** CFGI_STE. */
  invalidateSte(sid: number): void {
    this.forgetLast();
    this.streams.delete(sid);
  }

  /** CFGI_STE_RANGE: the StreamIDs of the naturally aligned 2^(range+1) block holding `sid`; range ≥ 31 is all. */
  invalidateSteRange(sid: number, range: number): void {
    this.forgetLast();
    if (range >= 31) {
      this.streams.clear();
      return;
    }
    const span = 2 ** (range + 1);
    const first = Math.floor(sid / span) * span;
    for (const s of [...this.streams.keys()]) if (s >= first && s < first + span) this.streams.delete(s);
  }

  /** CFGI_CD (one SubstreamID) of `sid`. */
  invalidateCd(sid: number, ssid: number): void {
    this.forgetLast();
    this.streams.get(sid)?.cds.delete(ssid);
  }

  /** CFGI_CD_ALL of `sid`. */
  invalidateCdAll(sid: number): void {
    this.forgetLast();
    this.streams.get(sid)?.cds.clear();
  }

  /** Empty the configuration cache and the IOTLB (reset, restore, table base writes). */
  dropCaches(): void {
    this.forgetLast();
    this.streams.clear();
    this.iotlb.invalidateAll();
  }

  /** Empty the configuration cache only. */
  dropConfigs(): void {
    this.forgetLast();
    this.streams.clear();
  }

  private streamConfig(sid: number, iova: number): StreamConfig | undefined {
    if (sid === this.lastSid) return this.lastStream;
    const cached = this.streams.get(sid);
    if (cached) {
      this.forgetLast();
      this.lastSid = sid;
      this.lastStream = cached;
      return cached;
    }
    this.stats.steFetches++;
    const fault = this.fault.reset(0, sid, iova);
    const steAddr = this.device.steAddress(sid, fault);
    if (steAddr < 0) return undefined;
    const w = this.fetchWords(steAddr, STE_WORDS, Evt.F_STE_FETCH, sid, iova);
    if (!w) return undefined;
    this.device.steFetched?.(w);
    const sc = decodeSte(w);
    if (!sc || (this.device.steUsable !== undefined && !this.device.steUsable(w, sc))) {
      fault.reset(Evt.C_BAD_STE, sid, iova);
      return undefined;
    }
    this.streams.set(sid, sc);
    return sc;
  }

  private fetchCd(sc: StreamConfig, sid: number, ssid: number, iova: number): CdConfig | undefined {
    // lastCd belongs to lastStream: both are forgotten together, and a new stream forgets it.
    if (ssid === this.lastSsid && sc === this.lastStream) return this.lastCd;
    const cached = sc.cds.get(ssid);
    if (cached) {
      if (sc === this.lastStream) {
        this.lastSsid = ssid;
        this.lastCd = cached;
      }
      return cached;
    }
    this.stats.cdFetches++;
    const fault = this.fault;
    if (ssid >= 2 ** sc.s1cdmax) {
      fault.reset(Evt.C_BAD_SUBSTREAMID, sid, iova);
      return undefined;
    }
    let addr = sc.s1ctxPtr + ssid * CD_BYTES;
    if (sc.kind === 'nested') {
      // The CD pointer is an IPA: fetch through stage 2.
      const r = walk(sc.s2!, this.mem, addr, ACCESS_READ, this.s2Out);
      if (r.fault !== FAULT_NONE) {
        if (this.faults.cdFetchS2FaultAsWalk) {
          // ADDR is the transaction's input address, ADDR2 the CD's IPA (QEMU 11.1 [R]).
          if (!this.walkFault(r.fault, sc, undefined, 2, sid, iova, ACCESS_READ, ssid, CLASS_CD, addr, r.faultAddress)) fault.id = 0;
        } else {
          fault.reset(Evt.F_CD_FETCH, sid, iova).s2 = 1;
          fault.ipa = addr;
          fault.fetchAddr = addr;
          fault.addr2 = addr;
        }
        return undefined;
      }
      addr = r.outputAddress;
    }
    const w = this.fetchWords(addr, CD_WORDS, Evt.F_CD_FETCH, sid, iova);
    if (!w) return undefined;
    let cd = decodeCd(w);
    if (!cd && this.faults.epd0TranslationFault && CD.EPD0.getWords(w[0]!, w[1]!)) {
      CD.EPD0.setWords(w, 0, 0);
      const tt0 = decodeCd(w);
      if (tt0) cd = { ...tt0, tt0Disabled: true };
    }
    if (!cd || (this.device.cdUsable !== undefined && !this.device.cdUsable(w, cd))) {
      fault.reset(Evt.C_BAD_CD, sid, iova);
      return undefined;
    }
    sc.cds.set(ssid, cd);
    return cd;
  }

  /** The `n` words of a structure at `addr`, or undefined after filling an `id` fetch fault. */
  private fetchWords(addr: number, n: number, id: number, sid: number, iova: number): Uint32Array | undefined {
    const w = this.words;
    for (let i = 0; i < n; i++) {
      const v = this.mem.readTableWord(addr + i * 4);
      if (v < 0) {
        const f = this.fault.reset(id, sid, iova);
        f.fetchAddr = addr;
        f.addr2 = addr;
        return undefined;
      }
      w[i] = v;
    }
    return w;
  }

  // ------------------------------------------------------------------------------------------
  // Translation

  /**
   * Translate an access of StreamID `sid`, SubstreamID `ssid` (0 without PASID) at `iova`;
   * `access` = ACCESS_READ or ACCESS_WRITE. The caller has checked SMMUEN. On a fault `out.ok`
   * is false and {@link fault} says what to record (id 0: abort without an event); `out.event`
   * is that id.
   */
  translate(sid: number, ssid: number, iova: number, access: number, out: Translation): Translation {
    out.ok = false;
    out.hit = false;
    out.event = 0;
    const sc = this.streamConfig(sid, iova);
    if (!sc) return this.faulted(out);
    if (sc.kind === 'abort') return out;
    if (sc.kind === 'bypass') {
      out.pa = iova;
      out.span = MIN_ENTRY_SIZE - (iova % MIN_ENTRY_SIZE);
      out.ok = true;
      return out;
    }
    const perm = access === ACCESS_WRITE ? PERM_W : PERM_R;
    let asid = NO_ASID;
    let cd: CdConfig | undefined;
    if (sc.kind !== 's2') {
      cd = this.fetchCd(sc, sid, ssid, iova);
      if (!cd) {
        if (!this.faults.cacheStreamOnBadCd) {
          this.forgetLast();
          this.streams.delete(sid);
        }
        return this.faulted(out);
      }
      asid = cd.asid;
    }
    const hit = this.iotlb.lookup(sc.vmid, asid, iova);
    if (hit) {
      if ((hit.perm & perm) === 0) {
        const s2 = sc.kind === 's2' ? 1 : 0;
        const ipa = hit.ipa + (iova - hit.iova);
        if (!this.record(s2 === 1 ? sc.s2RecordFaults : cd!.recordFaults)) return this.faulted(out);
        this.fill(Evt.F_PERMISSION, sid, iova, s2, ipa, access, ssid, CLASS_IN, s2 === 1 ? ipa : 0);
        return this.faulted(out);
      }
      out.pa = hit.pa + (iova - hit.iova);
      out.span = hit.size - (iova - hit.iova);
      out.ok = true;
      out.hit = true;
      return out;
    }
    this.stats.walks++;
    let ipa = iova;
    let s1Size = Infinity;
    let s1Perm = PERM_R | PERM_W;
    let global = false;
    if (cd) {
      let reader: TableReader = this.mem;
      const nested = this.nested;
      if (sc.kind === 'nested') {
        nested.begin(sc.s2, sc.vmid);
        reader = nested;
      }
      if (cd.tt0Disabled) {
        this.walkFault(FAULT_TRANSLATION, sc, cd, 1, sid, iova, access, ssid, CLASS_IN, 0, 0);
        return this.faulted(out);
      }
      const r = walk(cd.s1, reader, iova, access, this.walkOut);
      if (r.fault !== FAULT_NONE) {
        if (r.fault === FAULT_S2_ON_TABLE || (sc.kind === 'nested' && nested.lastFault !== 0)) {
          // QEMU translates a nested CD's TTB0 through stage 2 when it decodes the CD: a fault
          // there is a CD that cannot be used, and the stream is not cached.
          if (!this.faults.cacheStreamOnBadCd && Math.floor(nested.faultAddress / MIN_ENTRY_SIZE) === Math.floor(cd.s1.ttb / MIN_ENTRY_SIZE)) {
            this.forgetLast();
            this.streams.delete(sid);
          }
          const rw = this.faults.tableFetchFaultIsRead ? ACCESS_READ : access;
          if (!this.walkFault(nested.lastFault, sc, cd, 2, sid, iova, rw, ssid, CLASS_TT, nested.faultAddress, nested.faultAddress)) return this.faulted(out);
        } else if (!this.walkFault(r.fault, sc, cd, 1, sid, iova, access, ssid, CLASS_IN, 0, r.faultAddress)) {
          return this.faulted(out);
        }
        return this.faulted(out);
      }
      ipa = r.outputAddress;
      s1Size = r.blockSize;
      s1Perm = r.perm;
      global = !r.nG;
    }
    let pa = ipa;
    let size = s1Size;
    let s2Perm = PERM_R | PERM_W;
    if (sc.s2) {
      const s2e = sc.kind === 'nested' && this.faults.nestedOutputFromS2Cache === true ? this.iotlb.peek(sc.vmid, NO_ASID, ipa) : undefined;
      if (s2e !== undefined) {
        // The cached stage-2 leaf: what the walk would give (entries are cached from walks that
        // reached the leaf; a permission fault is the walk's, without a descriptor address).
        if ((s2e.perm & perm) === 0) {
          this.walkFault(FAULT_PERMISSION, sc, cd, 2, sid, iova, access, ssid, CLASS_IN, ipa, 0);
          return this.faulted(out);
        }
        pa = s2e.pa + (ipa - s2e.iova);
        size = Math.min(size, s2e.size);
        s2Perm = s2e.perm;
      } else {
        const r2 = walk(sc.s2, this.mem, ipa, access, this.s2Out);
        if (r2.fault !== FAULT_NONE) {
          this.walkFault(r2.fault, sc, cd, 2, sid, iova, access, ssid, CLASS_IN, ipa, r2.faultAddress);
          return this.faulted(out);
        }
        pa = r2.outputAddress;
        size = Math.min(size, r2.blockSize);
        s2Perm = r2.perm;
      }
    }
    if (!Number.isFinite(size)) size = MIN_ENTRY_SIZE;
    const combined = s1Perm & s2Perm;
    const base = Math.floor(iova / size) * size;
    const permitted = (combined & perm) !== 0;
    if (permitted || this.faults.cacheOnPermissionFault) {
      const e = this.entry;
      e.vmid = sc.vmid;
      e.asid = cd ? asid : 0;
      e.global = global;
      e.stage1 = cd !== undefined;
      e.iova = base;
      e.size = size;
      e.ipa = Math.floor(ipa / size) * size;
      e.pa = pa - (iova - base);
      e.perm = combined;
      this.iotlb.insert(e);
    }
    if (!permitted) {
      const s2 = (s2Perm & perm) === 0 ? 1 : 0;
      if (!this.record(s2 === 1 ? sc.s2RecordFaults : cd!.recordFaults)) return this.faulted(out);
      this.fill(Evt.F_PERMISSION, sid, iova, s2, ipa, access, ssid, CLASS_IN, s2 === 1 ? ipa : 0);
      return this.faulted(out);
    }
    out.pa = pa;
    out.span = size - (iova - base);
    out.ok = true;
    return out;
  }

  /** Whether a fault of a stage with R bit `r` is recorded under the fault model. */
  private record(r: boolean): boolean {
    if (this.faults.honourRecordBits && !r) {
      this.fault.id = 0;
      return false;
    }
    return true;
  }

  /**
   * Fill {@link fault} for a walk fault of `kind` at `stage`; false (and id 0) when the fault
   * model drops it. `ipa` is the host record's IPA field, `addr2` QEMU's.
   */
  private walkFault(
    kind: number, sc: StreamConfig, cd: CdConfig | undefined, stage: number, sid: number, iova: number,
    access: number, ssid: number, cls: number, ipa: number, descAddr: number,
  ): boolean {
    const abort = kind === FAULT_WALK_ABORT;
    if (!abort && !this.record(stage === 2 ? sc.s2RecordFaults : cd !== undefined && cd.recordFaults)) return false;
    const id = stage === 2 ? s2EventId(kind) : s1EventId(kind);
    // QEMU's ADDR2: the descriptor address of a walk abort, the IPA of a stage-2 fault.
    const addr2 = abort ? descAddr : stage === 2 ? ipa : 0;
    // A stage-1 walk abort is a fault on the table walk itself (CLASS_TT).
    const c = abort && stage === 1 && this.faults.honourRecordBits ? CLASS_TT : cls;
    this.fill(id, sid, iova, stage === 2 ? 1 : 0, stage === 2 ? ipa : 0, access, ssid, c, addr2);
    return true;
  }

  private fill(id: number, sid: number, iova: number, s2: number, ipa: number, access: number, ssid: number, cls: number, addr2: number): void {
    const f = this.fault.reset(id, sid, iova);
    f.s2 = s2;
    f.ipa = ipa;
    f.addr2 = addr2;
    f.rnw = access === ACCESS_READ ? 1 : 0;
    f.ssid = ssid;
    f.ssv = ssid !== 0;
    f.cls = cls;
  }

  private faulted(out: Translation): Translation {
    out.ok = false;
    out.event = this.fault.id;
    return out;
  }
}

function s1EventId(fault: number): number {
  switch (fault) {
    case FAULT_ACCESS:
      return Evt.F_ACCESS;
    case FAULT_PERMISSION:
      return Evt.F_PERMISSION;
    case FAULT_ADDR_SIZE:
      return Evt.F_ADDR_SIZE;
    case FAULT_WALK_ABORT:
      return Evt.F_WALK_EABT;
    default:
      return Evt.F_TRANSLATION;
  }
}

function s2EventId(fault: number): number {
  return fault === FAULT_TRANSLATION || fault === FAULT_S2_ON_TABLE ? Evt.F_TRANSLATION : s1EventId(fault);
}
