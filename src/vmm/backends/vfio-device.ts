/**
 * A vfio-pci device's config space as the VMM reaches it (QEMU's vfio_populate_device and the
 * config accessors of hw/vfio/pci.c): VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_REGION_INFO of the
 * config and BAR regions, then pread/pwrite on the device file at the config region's offset
 * (docs/reference/iommufd-uapi.md §16).
 */
import type { Tracer } from '../../kit/trace.js';
import { Errno } from '../../uapi/errno.js';
import * as V from '../../uapi/vfio.js';
import type { VfioDeviceConfig } from '../pci/functions.js';
import { BackendError, type IommufdBackend } from './iommufd.js';
import { T_VFIO_CFG_ERROR, T_VFIO_CFG_READ, T_VFIO_CFG_WRITE, T_VFIO_GET_DEVICE, T_VFIO_REGION, T_VFIO_RESET } from './trace-events.js';

/** Little-endian value of `bytes`. */
function le(bytes: Uint8Array): number {
  let v = 0;
  for (let i = 0; i < bytes.length; i++) v |= bytes[i]! << (8 * i);
  return v >>> 0;
}

/** The config region of one bound VFIO device file. */
export class VfioDevice implements VfioDeviceConfig {
  readonly configSize: number;
  readonly resetWorks: boolean;
  private readonly configOffset: number;
  private readonly barSizes: number[] = [];
  private readonly word = new Uint8Array(4);

  /** Query the device (QEMU's vfio_populate_device); throws {@link BackendError} with QEMU's texts. */
  constructor(
    private readonly backend: IommufdBackend,
    private readonly fd: number,
    /** The host BDF (QEMU's vbasedev.name). */
    readonly name: string,
    private readonly tracer: Tracer,
  ) {
    const info = backend.vfioDeviceInfo(fd);
    tracer.emit(T_VFIO_GET_DEVICE, name, info.flags, info.numRegions, info.numIrqs);
    if (!(info.flags & V.VFIO_DEVICE_FLAGS_PCI)) throw new BackendError(Errno.EINVAL, 'This device is not a PCI device');
    if (info.numRegions < V.VFIO_PCI_CONFIG_REGION_INDEX + 1) throw new BackendError(Errno.EINVAL, `unexpected number of io regions ${info.numRegions}`);
    this.resetWorks = (info.flags & V.VFIO_DEVICE_FLAGS_RESET) !== 0;
    for (let i = V.VFIO_PCI_BAR0_REGION_INDEX; i < V.VFIO_PCI_ROM_REGION_INDEX; i++) {
      const r = backend.vfioRegionInfo(fd, i);
      tracer.emit(T_VFIO_REGION, name, i, r.flags, r.offset, r.size);
      this.barSizes.push(r.size);
    }
    const cfg = backend.vfioRegionInfo(fd, V.VFIO_PCI_CONFIG_REGION_INDEX);
    tracer.emit(T_VFIO_REGION, name, V.VFIO_PCI_CONFIG_REGION_INDEX, cfg.flags, cfg.offset, cfg.size);
    this.configSize = cfg.size;
    this.configOffset = cfg.offset;
  }

  barSize(index: number): number {
    return this.barSizes[index] ?? 0;
  }

  read(offset: number, size: 1 | 2 | 4): number | undefined {
    const r = this.backend.vfioPread(this.fd, this.configOffset + offset, size);
    if (typeof r === 'number' || r.length !== size) {
      this.tracer.emit(T_VFIO_CFG_ERROR, this.name, 'pread', offset, size, typeof r === 'number' ? r : r.length);
      return undefined;
    }
    const v = le(r);
    this.tracer.emit(T_VFIO_CFG_READ, this.name, offset, size, v);
    return v;
  }

  write(offset: number, size: 1 | 2 | 4, value: number): void {
    const w = this.word.subarray(0, size);
    for (let i = 0; i < size; i++) w[i] = (value >>> (8 * i)) & 0xff;
    this.tracer.emit(T_VFIO_CFG_WRITE, this.name, offset, value >>> 0, size);
    const ret = this.backend.vfioPwrite(this.fd, this.configOffset + offset, w);
    // QEMU reports a failed or short config write and carries on.
    if (ret !== size) this.tracer.emit(T_VFIO_CFG_ERROR, this.name, 'pwrite', offset, size, ret);
  }

  reset(): void {
    this.tracer.emit(T_VFIO_RESET, this.name, this.backend.vfioReset(this.fd));
  }
}
