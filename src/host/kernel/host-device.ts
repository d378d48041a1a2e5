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
    return this.dma(iova, len, ssid, ACCESS_READ, out);
  }

  /** DMA write of `data` at `iova`. */
  dmaWrite(iova: number, data: Uint8Array, ssid = 0): DmaResult {
    return this.dma(iova, data.length, ssid, ACCESS_WRITE, data);
  }

  /** Translate page by page and move the bytes between memory and `buf` (no closure per call). */
  private dma(iova: number, len: number, ssid: number, access: number, buf: Uint8Array): DmaResult {
    if (!this.config.busMaster) return MASTER_ABORT;
    let done = 0;
    let firstPa = -1;
    let firstHit = false;
    while (done < len) {
      const a = iova + done;
      const t = this.smmu.hw.translate(this.sid, ssid, a, access, this.translation);
      if (!t.ok) return { ok: false, pa: -1, event: t.event, iotlbHit: false, data: undefined, masterAbort: false };
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
    return { ok: true, pa: firstPa, event: 0, iotlbHit: firstHit, data: access === ACCESS_READ ? buf : undefined, masterAbort: false };
  }
}
