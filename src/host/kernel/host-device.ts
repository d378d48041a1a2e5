/**
 * An assignable PCI device on the host and its DMA engine: every access is translated by the
 * SMMU it sits behind, so tests can see which host page a DMA really touched, or that it
 * faulted.
 */

import type { DeviceConfig } from '../config.js';
import type { IommufdContext } from '../iommufd/iommufd.js';
import type { DeviceObj } from '../iommufd/objects.js';
import { HostPciConfig } from './host-pci-config.js';
import { ACCESS_READ, ACCESS_WRITE, Translation } from '../smmuv3/smmu.js';
import type { SmmuInstance } from './host-kernel.js';

/** Result of one DMA. */
export interface DmaResult {
  readonly ok: boolean;
  /** Host PA of the first byte (when ok). */
  readonly pa: number;
  /** Event ID of the fault (when not ok; 0 for a silent abort). */
  readonly event: number;
  /** Whether the first page hit the IOTLB. */
  readonly iotlbHit: boolean;
  /** Data read (reads). */
  readonly data: Uint8Array | undefined;
  /**
   * The device could not issue the request: COMMAND.MASTER is clear, so nothing reaches the
   * SMMU or memory (no event, no IOTLB lookup) — the device sees an Unsupported Request.
   */
  readonly masterAbort: boolean;
}

/** The result of any DMA while bus mastering is off (shared: nothing per call). */
const MASTER_ABORT: DmaResult = Object.freeze({ ok: false, pa: -1, event: 0, iotlbHit: false, data: undefined, masterAbort: true });

const PAGE = 4096;
/** What {@link HostDevice.move} did. */
const MOVED = 0;
const FAULTED = 1;
const NO_MASTER = 2;

/** A host PCI device. */
export class HostDevice {
  readonly bdf: string;
  readonly sid: number;
  /** The device has a PCIe ATS capability. */
  readonly ats: boolean;
  /** The iommufd context and object it is bound to (VFIO cdev bind). */
  binding: { ctx: IommufdContext; obj: DeviceObj } | undefined;
  /** Its config space (what vfio-pci serves through the config region). */
  readonly config: HostPciConfig;
  private readonly translation = new Translation();
  /** What the last {@link move} found: the first page's PA and IOTLB hit, or the fault's event ID. */
  private firstPa = -1;
  private firstHit = false;
  private lastEvent = 0;
  /** Buffer {@link dmaReadOk} reads into. */
  private scratch = new Uint8Array(4);

  constructor(
    cfg: DeviceConfig,
    readonly smmu: SmmuInstance,
  ) {
    this.bdf = cfg.bdf;
    this.sid = cfg.sid;
    this.ats = cfg.ats ?? true;
    this.config = new HostPciConfig(cfg);
  }

  /** DMA read of `len` bytes at `iova` (SubstreamID `ssid`). Faults stop the transfer; bus mastering off stops it before it starts. */
  dmaRead(iova: number, len: number, ssid = 0): DmaResult {
    const out = new Uint8Array(len);
    return this.result(this.move(iova, len, ssid, ACCESS_READ, out), ACCESS_READ, out);
  }

  /** DMA write of `data` at `iova`. */
  dmaWrite(iova: number, data: Uint8Array, ssid = 0): DmaResult {
    return this.result(this.move(iova, data.length, ssid, ACCESS_WRITE, data), ACCESS_WRITE, data);
  }

  /**
   * {@link dmaWrite} when only whether it completed matters (the workload's DMA checks): the same
   * transfer, no result object. A recording routes it through `dmaWrite`, so it is recorded.
   */
  dmaWriteOk(iova: number, data: Uint8Array, ssid = 0): boolean {
    return this.move(iova, data.length, ssid, ACCESS_WRITE, data) === MOVED;
  }

  /** {@link dmaRead} when only whether it completed matters: the bytes land in a reused buffer. */
  dmaReadOk(iova: number, len: number, ssid = 0): boolean {
    // Sized to the last read (the workload's checks are all one size): no view per call.
    if (this.scratch.length !== len) this.scratch = new Uint8Array(len);
    return this.move(iova, len, ssid, ACCESS_READ, this.scratch) === MOVED;
  }

  /** The result of the {@link move} that returned `status`. */
  private result(status: number, access: number, buf: Uint8Array): DmaResult {
    if (status === NO_MASTER) return MASTER_ABORT;
    if (status === FAULTED) return { ok: false, pa: -1, event: this.lastEvent, iotlbHit: false, data: undefined, masterAbort: false };
    return { ok: true, pa: this.firstPa, event: 0, iotlbHit: this.firstHit, data: access === ACCESS_READ ? buf : undefined, masterAbort: false };
  }

  /**
   * Translate page by page and move the bytes between memory and `buf` (no closure per call):
   * {@link MOVED} (the first page's PA and IOTLB hit in `firstPa`/`firstHit`), {@link FAULTED}
   * (the event in `lastEvent`) or {@link NO_MASTER}.
   */
  private move(iova: number, len: number, ssid: number, access: number, buf: Uint8Array): number {
    if (!this.config.busMaster) return NO_MASTER;
    let done = 0;
    let firstPa = -1;
    let firstHit = false;
    while (done < len) {
      const a = iova + done;
      const t = this.smmu.hw.translate(this.sid, ssid, a, access, this.translation);
      if (!t.ok) {
        this.lastEvent = t.event;
        return FAULTED;
      }
      if (firstPa < 0) {
        firstPa = t.pa;
        firstHit = t.hit;
      }
      // `& (PAGE - 1)` keeps the low bits of any IOVA below 2^53, without a floating-point `%`.
      const n = Math.min(len - done, PAGE - (a & (PAGE - 1)));
      const part = done === 0 && n === len ? buf : buf.subarray(done, done + n);
      if (access === ACCESS_READ) this.smmu.hw.phys.mem.readBytes(t.pa, n, part);
      else this.smmu.hw.phys.mem.writeBytes(t.pa, part);
      done += n;
    }
    this.firstPa = firstPa;
    this.firstHit = firstHit;
    return MOVED;
  }
}
