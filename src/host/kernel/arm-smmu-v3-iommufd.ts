/**
 * The arm-smmu-v3 driver's iommufd operations (docs/reference/iommufd-uapi.md §9–10), behind the seam
 * of ../iommufd/driver.ts: IOMMU_GET_HW_INFO's IDR registers, stage-2 paging domains (VMID and
 * io-pgtable), nested domains built from a validated guest STE, the STEs attach installs, and a
 * vIOMMU that converts guest invalidation commands for the host queue and forwards events of
 * nested devices to its vEVENTQ with the guest's StreamID.
 */

import { buildCommand, D0, Op } from '../../arch/smmuv3/commands.js';
import * as R from '../../arch/smmuv3/registers.js';
import {
  addressSizeEncoding,
  EVT,
  Evt,
  STE,
  STE_CFG_ABORT,
  STE_CFG_BYPASS,
  STE_CFG_NESTED,
  STE_CFG_S1,
  STE_CFG_S2,
  STE_EATS_ABT,
  STE_EATS_TRANS,
  STE_NESTED_MASK_D0,
  STE_NESTED_MASK_D1,
  STE_WORDS,
  tgFromGranule,
} from '../../arch/smmuv3/structures.js';
import { splitU64 } from '../../kit/bits.js';
import { PageTableBuilder } from '../../kit/page-table-builder.js';
import { Errno, ErrnoError } from '../../uapi/errno.js';
import * as U from '../../uapi/iommufd.js';
import {
  InvalidateEntryError,
  type DeviceTableEntry,
  type IommuDomain,
  type IommuDriverOps,
  type IommuPagingDomain,
  type UserData,
  type ViommuCore,
  type ViommuOps,
} from '../iommufd/driver.js';
import { IoAddressSpace, IOVA_BITS, type IoasArea } from '../iommufd/io-pagetable.js';
import type { PhysicalMemory } from '../memory/physical-memory.js';
import type { HostSmmu } from '../smmuv3/smmu.js';
import type { SmmuDriver } from './arm-smmu-v3.js';
import type { HostDevice } from './host-device.js';

/** Word index of STE dword 2 (the stage-2 fields) and dword 3 (S2TTB). */
const STE_DWORD2 = 4;
const STE_DWORD3 = 6;
/** V and Config in STE word 0: the host's choice when it installs a guest's nested STE. */
const STE_CFG_MASK_W0 = STE.CFG.wordMask(0);
const STE_VALID_CFG_MASK_W0 = STE.V.wordMask(0) | STE_CFG_MASK_W0;
/** Granule of the stage-2 tables' page-table entries (8-byte descriptors): log2 of 8. */
const LOG2_DESCRIPTOR_BYTES = 3;

/** Event IDs forwarded to a vEVENTQ (docs/reference/smmuv3.md §6.3): the guest's own configuration and faults. */
const FORWARDED_EVENTS: ReadonlySet<number> = new Set([
  Evt.C_BAD_STE,
  Evt.F_STREAM_DISABLED,
  Evt.C_BAD_SUBSTREAMID,
  Evt.C_BAD_CD,
  Evt.F_TRANSLATION,
  Evt.F_ADDR_SIZE,
  Evt.F_ACCESS,
  Evt.F_PERMISSION,
]);

// Command words touched by the conversion, derived once from the command fields (hot loop).
const OPCODE_MASK_W0 = D0.OPCODE.wordMask(0);
const VMID_MASK_W1 = D0.VMID.wordMask(1);
const VMID_SHIFT_W1 = D0.VMID.lsb - 32;
/** The StreamID of ATC_INV / CFGI_CD* is the whole of word 1. */
const SID_WORD = D0.SID.lsb / 32;
/** The opcode the invalidation loop converts inline, bound in this module. */
const OP_TLBI_NH_VA = Op.TLBI_NH_VA;

/** An STE that aborts every transaction (V = 1, Config = abort). */
function abortSte(): DeviceTableEntry {
  const ste = new Uint32Array(STE_WORDS);
  STE.V.setWords(ste, 0, 1);
  STE.CFG.setWords(ste, 0, STE_CFG_ABORT);
  return ste;
}

/** A stage-2 paging domain: the kernel's io-pgtable for one VMID. */
export class Smmuv3S2Domain implements IommuPagingDomain {
  readonly tables: PageTableBuilder;
  /** Page-table pages of the domain (kernel zone): freed when a table empties, all on free(). */
  private readonly tablePages = new Set<number>();

  constructor(
    readonly vmid: number,
    private readonly driver: SmmuDriver,
    readonly granule: 4096 | 16384 | 65536,
    private readonly phys: PhysicalMemory,
  ) {
    this.tables = new PageTableBuilder(phys.mem, {
      stage: 2,
      granule,
      inputBits: IOVA_BITS,
      allocTable: () => {
        const pa = phys.allocKernel(granule, granule);
        this.tablePages.add(pa);
        return pa;
      },
      freeTable: (pa) => {
        this.tablePages.delete(pa);
        phys.freeKernel(pa, granule, granule);
      },
    });
  }

  /** Map an area, coalescing physically contiguous runs so hugepages become block entries. */
  mapArea(area: IoasArea): void {
    const perm = 1 | (area.writable ? 2 : 0);
    const runs = IoAddressSpace.pinned(area);
    for (let i = 0; i < runs.count; i++) this.tables.map(area.iova + runs.offsets[i]!, runs.pas[i]!, runs.lens[i]!, perm);
  }

  /** Unmap an area and invalidate stage 2 for this VMID. */
  unmapArea(area: IoasArea): void {
    this.tables.unmap(area.iova, area.length);
    this.driver.submit([buildCommand(Op.TLBI_S12_VMALL, { vmid: this.vmid })]);
  }

  /** Release the VMID (invalidating what it tagged), then every page-table page. */
  free(): void {
    this.driver.freeVmid(this.vmid);
    for (const pa of this.tablePages) this.phys.freeKernel(pa, this.granule, this.granule);
    this.tablePages.clear();
  }

  prepareAttach(_dev: HostDevice, _vdeviceOnViommu: boolean): DeviceTableEntry {
    return this.ste(STE_CFG_S2);
  }

  /** A stage-2 STE (or a nested one, Config = nested, whose stage 1 the caller fills in). */
  ste(cfg: number): Uint32Array {
    const ste = new Uint32Array(STE_WORDS);
    STE.V.setWords(ste, 0, 1);
    STE.CFG.setWords(ste, 0, cfg);
    const log2Granule = Math.log2(this.granule);
    const levels = Math.ceil((IOVA_BITS - log2Granule) / (log2Granule - LOG2_DESCRIPTOR_BYTES));
    const start = 4 - levels;
    const sl0 = this.granule === 4096 ? 2 - start : 3 - start;
    STE.S2VMID.setWords(ste, STE_DWORD2, this.vmid);
    STE.S2T0SZ.setWords(ste, STE_DWORD2, 64 - IOVA_BITS);
    STE.S2SL0.setWords(ste, STE_DWORD2, sl0);
    STE.S2TG.setWords(ste, STE_DWORD2, tgFromGranule(this.granule));
    STE.S2PS.setWords(ste, STE_DWORD2, addressSizeEncoding(IOVA_BITS));
    STE.S2AA64.setWords(ste, STE_DWORD2, 1);
    STE.S2R.setWords(ste, STE_DWORD2, 1);
    STE.S2TTB.setWords(ste, STE_DWORD3, this.tables.root / 16);
    return ste;
  }
}

/** A nested domain: a guest STE (dwords 0 and 1) on a vIOMMU's stage-2 parent. */
export class Smmuv3NestedDomain implements IommuDomain {
  constructor(
    private readonly parent: Smmuv3S2Domain,
    /** Guest STE dword0/dword1 as four words, after validation (EATS stripped). */
    readonly guestSte: Uint32Array,
  ) {}

  prepareAttach(_dev: HostDevice, vdeviceOnViommu: boolean): DeviceTableEntry {
    const guest = this.guestSte;
    const cfg = STE.CFG.getWords(guest[0]!, guest[1]!);
    const valid = STE.V.getWords(guest[0]!, guest[1]!) === 1;
    if (valid && cfg === STE_CFG_S1) {
      if (!vdeviceOnViommu) throw new ErrnoError(Errno.ENOENT, 'nested HWPT needs a vDEVICE for the device');
      const ste = this.parent.ste(STE_CFG_NESTED);
      ste[0] = ((guest[0]! & ~STE_CFG_MASK_W0) | (ste[0]! & STE_VALID_CFG_MASK_W0)) >>> 0;
      ste[1] = guest[1]!;
      ste[2] = guest[2]!;
      ste[3] = guest[3]!;
      STE.MEV.setWords(ste, 2, 1);
      return ste;
    }
    if (valid && cfg === STE_CFG_BYPASS) return this.parent.ste(STE_CFG_S2);
    return abortSte();
  }
}

/** Check a guest STE against what a nested HWPT may carry (docs/reference/iommufd-uapi.md §9); returns its 4 words. */
export function validateGuestSte(dword0: bigint, dword1: bigint): Uint32Array {
  const words = new Uint32Array(4);
  if (STE.V.getBig(dword0) === 0n) return words; // an invalid STE: abort
  if ((dword0 & ~STE_NESTED_MASK_D0) !== 0n || (dword1 & ~STE_NESTED_MASK_D1) !== 0n) {
    throw new ErrnoError(Errno.EIO, 'STE has bits outside the allowed masks');
  }
  const cfg = Number(STE.CFG.getBig(dword0));
  if (cfg !== STE_CFG_ABORT && cfg !== STE_CFG_BYPASS && cfg !== STE_CFG_S1) throw new ErrnoError(Errno.EIO, `STE Config ${cfg} not allowed`);
  const eats = Number(STE.EATS.getBig(dword1));
  if (eats > STE_EATS_TRANS) throw new ErrnoError(Errno.EIO, `STE EATS ${eats} not allowed`);
  [words[0], words[1]] = splitU64(dword0);
  [words[2], words[3]] = splitU64(STE.EATS.setBig(dword1, BigInt(STE_EATS_ABT)));
  return words;
}

/**
 * Convert the guest command at word `at` for the host (docs/reference/iommufd-uapi.md §10), in place: VMID forced on
 * TLBIs, NSNH_ALL turned into NH_ALL, vSID → physical SID on ATC_INV/CFGI_CD*. Anything else,
 * or a vSID without a vDEVICE: EIO, reporting the commands before it as handled.
 */
function convertGuestCommand(words: Uint32Array, at: number, vmid: number, streams: ReadonlyMap<number, number>): void {
  const op = words[at]! & OPCODE_MASK_W0;
  // Cases are compared in order: the stage-1 TLBIs (nearly every entry) come first.
  switch (op) {
    case Op.TLBI_NH_VA:
    case Op.TLBI_NH_VAA:
    case Op.TLBI_NH_ALL:
    case Op.TLBI_NH_ASID:
      words[at + 1] = ((words[at + 1]! & ~VMID_MASK_W1) | (vmid << VMID_SHIFT_W1)) >>> 0;
      return;
    case Op.TLBI_NSNH_ALL:
      words[at] = Op.TLBI_NH_ALL;
      words[at + 1] = vmid << VMID_SHIFT_W1;
      words[at + 2] = 0;
      words[at + 3] = 0;
      return;
    case Op.ATC_INV:
    case Op.CFGI_CD:
    case Op.CFGI_CD_ALL: {
      const vsid = words[at + SID_WORD]!;
      const sid = streams.get(vsid);
      if (sid === undefined) throw new InvalidateEntryError(Errno.EIO, `no vDEVICE for vSID 0x${vsid.toString(16)}`, at >> 2);
      words[at + SID_WORD] = sid;
      return;
    }
    default:
      throw new InvalidateEntryError(Errno.EIO, `command 0x${op.toString(16)} not allowed`, at >> 2);
  }
}

/** Words of an SMMUv3 event record. */
const EVENT_RECORD_WORDS = 8;

/** Largest vSID a guest command (or event record) can carry: the 32-bit SID field. */
const MAX_VSID = BigInt(D0.SID.max);

/** An SMMUv3 vIOMMU (IOMMU_VIOMMU_TYPE_ARM_SMMUV3): the guest's view of one host SMMU. */
export class ArmSmmuV3Viommu implements ViommuOps {
  readonly invalidateDataType = U.iommu_hwpt_invalidate_data_type.IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3;
  readonly invalidateEntrySize = U.iommu_viommu_arm_smmuv3_invalidate.size;
  /** The stage-2 VMID the guest's commands are tagged with. */
  readonly vmid: number;
  /** Guest StreamID → host StreamID of each vDEVICE. */
  private readonly streams = new Map<number, number>();
  /** The record {@link forwardEvent} hands the vEVENTQ (which copies it), as words and as bytes. */
  private readonly eventScratch = new Uint32Array(EVENT_RECORD_WORDS);
  private readonly eventScratchBytes = new Uint8Array(this.eventScratch.buffer);
  /** The last virt_id forwarded and its 32-bit SID field (no BigInt arithmetic per event). */
  private lastVirtId = -1n;
  private lastVsid = 0;

  constructor(
    protected readonly driver: SmmuDriver,
    readonly parent: Smmuv3S2Domain,
  ) {
    this.vmid = parent.vmid;
  }

  init(_core: ViommuCore, _data: UserData): void {}

  destroy(): void {}

  allocNestedDomain(data: UserData): IommuDomain {
    if (data.type !== U.iommu_hwpt_data_type.IOMMU_HWPT_DATA_ARM_SMMUV3) throw new ErrnoError(Errno.EINVAL, 'data must be an iommu_hwpt_arm_smmuv3');
    const layout = U.iommu_hwpt_arm_smmuv3;
    const { ste } = layout.decode(data.copyStruct(layout.size, layout.minSize));
    return new Smmuv3NestedDomain(this.parent, validateGuestSte(ste[0]!, ste[1]!));
  }

  invalidate(words: Uint32Array, count: number): void {
    let done = 0;
    const vmidBits = this.vmid << VMID_SHIFT_W1;
    const keep = ~VMID_MASK_W1;
    try {
      for (let at = 0; done < count; done++, at += 4) {
        // TLBI_NH_VA (nearly every entry) inline; everything else through the full conversion.
        if ((words[at]! & OPCODE_MASK_W0) === OP_TLBI_NH_VA) words[at + 1] = (words[at + 1]! & keep) | vmidBits;
        else convertGuestCommand(words, at, this.vmid, this.streams);
      }
    } catch (e) {
      // Commands converted before the bad one are still issued (the kernel's loop can drop them;
      // see docs/design.md).
      if (done) this.driver.submitWords(words, done);
      throw e;
    }
    this.driver.submitWords(words, count);
  }

  vdeviceInit(virtId: bigint, dev: HostDevice): void {
    // The driver has no vdevice_init: any virt_id is taken, but only one that fits a command's
    // 32-bit SID field can ever be looked up.
    if (virtId <= MAX_VSID) this.streams.set(Number(virtId), dev.sid);
  }

  vdeviceDestroy(virtId: bigint): void {
    if (virtId <= MAX_VSID) this.streams.delete(Number(virtId));
  }

  supportsHwQueue(_type: number): boolean {
    return false;
  }

  hwQueueInit(_index: number, _pa: number, _length: number): void {
    throw new ErrnoError(Errno.EOPNOTSUPP, 'vIOMMU has no HW queues');
  }

  hwQueueDestroy(_index: number): void {}

  forwardEvent(core: ViommuCore, virtId: bigint, record: Uint32Array): boolean {
    const id = EVT.ID.getWords(record[0]!, record[1]!);
    const stall = EVT.STALL.getWords(record[2]!, record[3]!);
    const stage2 = EVT.S2.getWords(record[2]!, record[3]!);
    if (!FORWARDED_EVENTS.has(id) || stall || stage2) return false;
    // The vEVENTQ copies the payload: one scratch record serves every event.
    const out = this.eventScratch;
    out.set(record);
    // The event's SID field keeps the low 32 bits of the virt_id (FIELD_PREP truncates).
    if (virtId !== this.lastVirtId) {
      this.lastVirtId = virtId;
      this.lastVsid = Number(virtId & MAX_VSID);
    }
    EVT.SID.setWords(out, 0, this.lastVsid);
    return core.reportEvent(U.iommu_veventq_type.IOMMU_VEVENTQ_TYPE_ARM_SMMUV3, this.eventScratchBytes);
  }
}

/** The arm-smmu-v3 driver's iommufd operations for one SMMU. */
export class ArmSmmuV3Iommufd implements IommuDriverOps {
  constructor(
    readonly instance: string,
    protected readonly hw: HostSmmu,
    protected readonly driver: SmmuDriver,
    protected readonly phys: PhysicalMemory,
  ) {}

  hwInfo(type: number): { type: number; data: Uint8Array } {
    const T = U.iommu_hw_info_type;
    if (type !== T.IOMMU_HW_INFO_TYPE_DEFAULT && type !== T.IOMMU_HW_INFO_TYPE_ARM_SMMUV3) {
      throw new ErrnoError(Errno.EOPNOTSUPP, `hw_info type ${type} not supported by this IOMMU`);
    }
    const bank = this.hw.bank;
    const idr = [R.IDR0, R.IDR1, R.IDR2, R.IDR3, R.IDR4, R.IDR5].map((reg) => bank.read(reg.spec.offset, 4));
    const data = U.iommu_hw_info_arm_smmuv3.encode({ idr, iidr: bank.read(R.IIDR.spec.offset, 4), aidr: bank.read(R.AIDR.spec.offset, 4) });
    return { type: T.IOMMU_HW_INFO_TYPE_ARM_SMMUV3, data };
  }

  /**
   * arm_smmu_ats_supported: the SMMU implements ATS (IDR0.ATS) and the device has the
   * capability. The host root complex is taken to support ATS, as Grace's IORT says.
   */
  atsSupported(dev: HostDevice): boolean {
    return R.IDR0.f.ATS.get(this.hw.bank.read(R.IDR0.spec.offset, 4)) === 1 && dev.ats;
  }

  allocPagingDomain(granule: 4096 | 16384 | 65536): Smmuv3S2Domain {
    return new Smmuv3S2Domain(this.driver.allocVmid(), this.driver, granule, this.phys);
  }

  supportsViommu(type: number): boolean {
    return type === U.iommu_viommu_type.IOMMU_VIOMMU_TYPE_ARM_SMMUV3;
  }

  allocViommu(_type: number, parent: IommuPagingDomain, _data: UserData): ViommuOps {
    return new ArmSmmuV3Viommu(this.driver, s2Domain(parent));
  }

  install(dev: HostDevice, entry: DeviceTableEntry): void {
    this.driver.writeSte(dev.sid, entry);
  }

  block(dev: HostDevice): void {
    this.driver.writeSte(dev.sid, abortSte());
  }
}

/** The SMMUv3 domain behind a paging domain the core hands back (always one of ours). */
export function s2Domain(domain: IommuPagingDomain): Smmuv3S2Domain {
  if (!(domain instanceof Smmuv3S2Domain)) throw new ErrnoError(Errno.EINVAL, 'parent domain of another IOMMU driver');
  return domain;
}
