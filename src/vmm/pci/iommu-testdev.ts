/**
 * QEMU's iommu-testdev (1b36:0005), a conventional PCI function for IOMMU tests: BAR0 holds a
 * DMA description (input address GVA, check address GPA, length, attributes); a doorbell arms
 * it and a read of DMA_TRIGGERING runs it. The DMA writes the pattern 0x12345678 through the
 * device's IOMMU at GVA with the device's requester ID as it is at that moment, then reads the
 * bytes back from guest-physical GPA (no IOMMU) and compares (QEMU 11.1 hw/misc/iommu-testdev.c;
 * docs/reference/pci.md §5). As in QEMU, the DMA does not look at COMMAND.MASTER.
 */
import type { PlainValue } from '../../kit/persist.js';
import {
  DMA_ATTRS,
  DMA_DBELL,
  DMA_GPA_HI,
  DMA_GPA_LO,
  DMA_GVA_HI,
  DMA_GVA_LO,
  DMA_LEN,
  DMA_RESULT,
  DMA_TRIGGERING,
  ITD_ATTRS_SPACE_NONSECURE,
  ITD_ATTRS_SPACE_SECURE,
  ITD_BAR0_SIZE,
  ITD_DMA_DBELL_ARM,
  ITD_DMA_ERR_BAD_ATTRS,
  ITD_DMA_ERR_BAD_LEN,
  ITD_DMA_ERR_MISMATCH,
  ITD_DMA_ERR_NOT_ARMED,
  ITD_DMA_ERR_RD_FAIL,
  ITD_DMA_ERR_TX_FAIL,
  ITD_DMA_RESULT_BUSY,
  ITD_DMA_RESULT_IDLE,
  ITD_DMA_WRITE_VAL,
  ITD_REGISTERS,
} from '../../arch/iommu-testdev/registers.js';
import { PCI_CLASS_OTHERS, PCI_DEVICE_ID_REDHAT_TEST, PCI_SUBDEVICE_ID_QEMU, PCI_SUBVENDOR_ID_REDHAT_QUMRANET, PCI_VENDOR_ID_REDHAT } from '../../arch/pci/config.js';
import type { ModelLog } from '../../kit/log.js';
import { MemoryRegion, type AccessRules } from '../../kit/memory-region.js';
import { RegisterBank } from '../../kit/register-bank.js';
import { RegisterLayout, type RegisterInfo } from '../../kit/registers.js';
import type { Tracer } from '../../kit/trace.js';
import { PciFunction } from './device.js';
import { type0Header } from './headers.js';
import { DmaTranslation, type PciIommu } from './iommu.js';
import * as T from './trace-events.js';

/** BAR0 layout, shared by every instance. */
const LAYOUT = new RegisterLayout('iommu-testdev bar0', ITD_BAR0_SIZE, [...ITD_REGISTERS]);
/** QEMU's ops take only aligned 32-bit accesses. */
const BAR0_RULES: AccessRules = { sizes: [4], unaligned: false };

/** Guest-physical memory as a DMA master sees it (no IOMMU): false = the access failed (nothing there). */
export interface DmaMemory {
  write(pa: number, bytes: Uint8Array): boolean;
  read(pa: number, out: Uint8Array): boolean;
}

/** What the device is wired to. */
export interface IommuTestdevDeps {
  /** The IOMMU in front of the device's root bus now (undefined: DMA goes to guest-physical addresses). */
  readonly iommu: () => PciIommu | undefined;
  readonly memory: DmaMemory;
  readonly log: ModelLog;
  readonly tracer: Tracer;
}

/** The device. */
export class IommuTestdev extends PciFunction {
  readonly bank: RegisterBank;
  /** Armed until a trigger consumes the request. */
  private armed = false;
  private readonly tr = new DmaTranslation();
  /** DMAs run (for reports and tests). */
  readonly stats = { dmas: 0, faults: 0 };

  constructor(
    id: string | undefined,
    private readonly deps: IommuTestdevDeps,
  ) {
    const bank = new RegisterBank('iommu-testdev', LAYOUT, deps.log);
    super(
      'iommu-testdev',
      id,
      type0Header({ vendor: PCI_VENDOR_ID_REDHAT, device: PCI_DEVICE_ID_REDHAT_TEST, revision: 0, classCode: PCI_CLASS_OTHERS, subsystem: { vendor: PCI_SUBVENDOR_ID_REDHAT_QUMRANET, device: PCI_SUBDEVICE_ID_QEMU } }),
      [{ index: 0, size: ITD_BAR0_SIZE, is64: false, prefetch: false, region: MemoryRegion.mmio(`iommu-testdev.bar0`, ITD_BAR0_SIZE, bank, BAR0_RULES) }],
      false,
    );
    this.bank = bank;
    // Offsets past the registers read 0 and ignore writes, silently (QEMU's default case).
    bank.fallback = { read: () => 0, write: () => {}, read64: () => 0n, write64: () => {} };
    bank.onRead(DMA_TRIGGERING, () => this.runDma());
    bank.onWrite(DMA_DBELL, (reg) => this.doorbell(reg));
    this.resetDevice();
  }

  private get file() {
    return this.bank.file;
  }

  private reg(def: (typeof ITD_REGISTERS)[number]): RegisterInfo {
    return LAYOUT.of(def);
  }

  private doorbell(reg: RegisterInfo): void {
    const arm = (this.file.get32(reg) & ITD_DMA_DBELL_ARM) !== 0;
    // Arming again is harmless; a write of 0 disarms.
    this.armed = arm;
    this.file.set32(this.reg(DMA_RESULT), arm ? ITD_DMA_RESULT_BUSY : ITD_DMA_RESULT_IDLE);
    this.deps.tracer.emit(T.T_ITD_DMA_ARMED, arm);
  }

  /** The 64-bit address of a LO/HI register pair. */
  private addr(lo: (typeof ITD_REGISTERS)[number], hi: (typeof ITD_REGISTERS)[number]): number {
    return this.file.get32(this.reg(hi)) * 2 ** 32 + this.file.get32(this.reg(lo));
  }

  private setResult(v: number): void {
    this.file.set32(this.reg(DMA_RESULT), v);
    this.deps.tracer.emit(T.T_ITD_DMA_RESULT, v);
  }

  /** A read of DMA_TRIGGERING: run the armed DMA and record its result. */
  private runDma(): void {
    if (!this.armed) {
      this.setResult(ITD_DMA_ERR_NOT_ARMED);
      return;
    }
    this.armed = false;
    this.deps.tracer.emit(T.T_ITD_DMA_START);
    this.stats.dmas++;
    const len = this.file.get32(this.reg(DMA_LEN));
    if (len === 0) return this.setResult(ITD_DMA_ERR_BAD_LEN);
    if (attrsInconsistent(this.file.get32(this.reg(DMA_ATTRS)))) return this.setResult(ITD_DMA_ERR_BAD_ATTRS);
    const gva = this.addr(DMA_GVA_LO, DMA_GVA_HI);
    const gpa = this.addr(DMA_GPA_LO, DMA_GPA_HI);
    const data = new Uint8Array(len);
    for (let i = 0; i < len; i++) data[i] = (ITD_DMA_WRITE_VAL >>> ((i & 3) * 8)) & 0xff;
    this.deps.tracer.emit(T.T_ITD_DMA_WRITE, gva, len);
    if (!this.dmaWrite(gva, data)) return this.setResult(ITD_DMA_ERR_TX_FAIL);
    this.deps.tracer.emit(T.T_ITD_DMA_READ, gpa, len);
    const back = new Uint8Array(len);
    if (!this.deps.memory.read(gpa, back)) return this.setResult(ITD_DMA_ERR_RD_FAIL);
    for (let i = 0; i < len; i += 4) {
      let want = 0;
      let got = 0;
      for (let j = 0; j < 4 && i + j < len; j++) {
        want |= data[i + j]! << (8 * j);
        got |= back[i + j]! << (8 * j);
      }
      this.deps.tracer.emit(T.T_ITD_DMA_VERIFY, want >>> 0, got >>> 0);
      if (want !== got) return this.setResult(ITD_DMA_ERR_MISMATCH);
    }
    this.setResult(0);
  }

  /**
   * Write `data` at input address `iova` through the IOMMU, as dma_memory_write does: a page
   * (the translation's span) at a time; an access that fails does not end the DMA. A failed
   * translation fails one access of at most 4 bytes, no larger than the address's alignment,
   * and the next access translates again (so a faulting DMA records an event per access, and
   * pages after a fault are still written). Returns false when any access failed
   * (docs/reference/qemu-smmuv3.md §5.3).
   */
  private dmaWrite(iova: number, data: Uint8Array): boolean {
    const iommu = this.deps.iommu();
    if (!iommu) return this.deps.memory.write(iova, data);
    // The StreamID is the requester ID now: firmware may have renumbered the bus since plug time.
    const sid = this.requesterId;
    let ok = true;
    for (let done = 0; done < data.length; ) {
      const at = iova + done;
      const t = iommu.translate(sid, at, true, this.tr);
      if (!t.ok) {
        this.stats.faults++;
        ok = false;
        done += failedAccessBytes(at, data.length - done);
        continue;
      }
      const n = Math.min(t.span, data.length - done);
      if (!this.deps.memory.write(t.pa, data.subarray(done, done + n))) ok = false;
      done += n;
    }
    return ok;
  }

  protected override resetDevice(): void {
    this.bank.reset();
    this.armed = false;
  }

  protected override saveDevice(): PlainValue {
    return { registers: this.file.words.slice(), armed: this.armed };
  }

  protected override restoreDevice(saved: PlainValue): void {
    const s = saved as { registers: Uint32Array; armed: boolean };
    this.file.words.set(s.registers);
    this.armed = s.armed;
  }

  /** Whether a DMA is armed (for tests and reports). */
  get isArmed(): boolean {
    return this.armed;
  }
}

/** With the space marked valid, a Secure or Non-secure space must agree with the secure bit. */
function attrsInconsistent(cfg: number): boolean {
  if (!DMA_ATTRS.f.SPACE_VALID.get(cfg)) return false;
  const space = DMA_ATTRS.f.SPACE.get(cfg);
  const secure = DMA_ATTRS.f.SECURE.get(cfg) === 1;
  if (space === ITD_ATTRS_SPACE_SECURE || space === ITD_ATTRS_SPACE_NONSECURE) return secure !== (space === ITD_ATTRS_SPACE_SECURE);
  return false;
}

/** QEMU's largest access to an address with nothing behind it (unassigned memory). */
const UNASSIGNED_ACCESS_MAX = 4;

/**
 * Bytes of the access that fails at `addr` with `left` bytes to go: at most 4, no larger than
 * the address's alignment, a power of two (QEMU's memory_access_size on unassigned memory).
 */
function failedAccessBytes(addr: number, left: number): number {
  let n = UNASSIGNED_ACCESS_MAX;
  while (n > 1 && (n > left || addr % n !== 0)) n >>= 1;
  return n;
}
