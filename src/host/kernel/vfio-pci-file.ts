/**
 * The vfio-pci side of a VFIO device file (failed copies throw ErrnoError): VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_REGION_INFO and
 * VFIO_DEVICE_RESET, and pread/pwrite of the config region at `VFIO_PCI_CONFIG_REGION_INDEX << 40`
 * with the kernel's chunking (aligned 4, 2 or 1 bytes) and errnos
 * (docs/reference/iommufd-uapi.md §16).
 */
import { Errno } from '../../uapi/errno.js';
import * as V from '../../uapi/vfio.js';
import type { ProcessMemory } from '../memory/process-memory.js';
import type { HostDevice } from './host-device.js';

/** The argsz a VFIO ioctl argument claims (its first u32). */
function argsz(mem: ProcessMemory, argp: number): number {
  return new DataView(mem.copyFromUser(argp, 4).buffer).getUint32(0, true);
}

/** One of the device ioctls on a bound file; throws {@link ErrnoError}. */
export function vfioDeviceIoctl(mem: ProcessMemory, dev: HostDevice, request: number, argp: number): number {
  if (request === V.VFIO_DEVICE_RESET) {
    dev.config.reset();
    return 0;
  }
  if (request === V.VFIO_DEVICE_GET_INFO) {
    const L = V.vfio_device_info;
    if (argsz(mem, argp) < L.minSize) return -Errno.EINVAL;
    const info = { argsz: argsz(mem, argp), flags: V.VFIO_DEVICE_FLAGS_PCI | V.VFIO_DEVICE_FLAGS_RESET, num_regions: V.VFIO_PCI_NUM_REGIONS, num_irqs: V.VFIO_PCI_NUM_IRQS };
    // The kernel copies back only up to num_irqs when the device has no capability chain.
    mem.copyToUser(argp, L.encode(info).subarray(0, L.minSize));
    return 0;
  }
  const L = V.vfio_region_info;
  if (argsz(mem, argp) < L.minSize) return -Errno.EINVAL;
  const arg = L.decode(mem.copyFromUser(argp, L.size));
  const index = arg.index as number;
  if (index >= V.VFIO_PCI_NUM_REGIONS || index === V.VFIO_PCI_VGA_REGION_INDEX) return -Errno.EINVAL;
  let size = 0;
  let flags = 0;
  if (index === V.VFIO_PCI_CONFIG_REGION_INDEX) {
    size = dev.config.size;
    flags = V.VFIO_REGION_INFO_FLAG_READ | V.VFIO_REGION_INFO_FLAG_WRITE;
  } else if (index < V.VFIO_PCI_ROM_REGION_INDEX) {
    size = dev.config.bars.find((b) => b.index === index)?.size ?? 0;
    if (size) flags = V.VFIO_REGION_INFO_FLAG_READ | V.VFIO_REGION_INFO_FLAG_WRITE | V.VFIO_REGION_INFO_FLAG_MMAP;
  }
  // No expansion ROM: size 0, no flags.
  mem.copyToUser(argp, L.encode({ ...arg, flags, cap_offset: 0, size: BigInt(size), offset: BigInt(V.vfioPciIndexToOffset(index)) }));
  return 0;
}

/**
 * pread/pwrite of `count` bytes at file `offset`: only the config region is served (BAR and ROM
 * contents are not modelled: EINVAL). Accesses split into naturally aligned 4/2/1-byte chunks;
 * any byte outside the config space is EFAULT before anything moves.
 */
export function vfioPciRw(mem: ProcessMemory, dev: HostDevice, bufVa: number, count: number, offset: number, write: boolean): number {
  const { index, within } = V.vfioPciOffsetToIndex(offset);
  if (index >= V.VFIO_PCI_NUM_REGIONS || index !== V.VFIO_PCI_CONFIG_REGION_INDEX) return -Errno.EINVAL;
  if (count === 0) return 0;
  const cfg = dev.config;
  if (within >= cfg.size || within + count > cfg.size) return -Errno.EFAULT;
  const buf = write ? mem.copyFromUser(bufVa, count) : new Uint8Array(count);
  let pos = within;
  let done = 0;
  while (done < count) {
    const left = count - done;
    const n: 1 | 2 | 4 = left >= 4 && pos % 4 === 0 ? 4 : left >= 2 && pos % 2 === 0 ? 2 : 1;
    if (write) {
      let v = 0;
      for (let i = 0; i < n; i++) v |= buf[done + i]! << (8 * i);
      cfg.write(pos, n, v >>> 0);
    } else {
      const v = cfg.read(pos, n);
      for (let i = 0; i < n; i++) buf[done + i] = (v >>> (8 * i)) & 0xff;
    }
    pos += n;
    done += n;
  }
  if (!write) mem.copyToUser(bufVa, buf);
  return count;
}

