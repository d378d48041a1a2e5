/**
 * Trace events of the PCI host bridge and iommu-testdev, named as QEMU's (hw/pci/trace-events
 * and hw/misc/trace-events).
 */
import { defineTrace, type TraceEvent } from '../../kit/trace.js';

const u32 = (name: string) => ({ name, type: 'u32' }) as const;
const u64 = (name: string) => ({ name, type: 'u64' }) as const;
const bool = (name: string) => ({ name, type: 'bool' }) as const;

export const T_PCI_CFG_READ = defineTrace('pci_cfg_read', [u32('bus'), u32('devfn'), u32('offs'), u32('val'), u32('size')], '%02x:devfn 0x%x @0x%x -> 0x%x (size %d)');
export const T_PCI_CFG_WRITE = defineTrace('pci_cfg_write', [u32('bus'), u32('devfn'), u32('offs'), u32('val'), u32('size')], '%02x:devfn 0x%x @0x%x <- 0x%x (size %d)');
export const T_PCI_BAR_MAP = defineTrace('pci_update_mappings', [u32('bus'), u32('devfn'), u32('bar'), u64('addr')], '%02x:devfn 0x%x BAR%d -> 0x%x');
export const T_ITD_MMIO_READ = defineTrace('iommu_testdev_mmio_read', [u64('addr'), u64('value'), u32('size')], 'addr=0x%x value=0x%x size=%d');
export const T_ITD_MMIO_WRITE = defineTrace('iommu_testdev_mmio_write', [u64('addr'), u64('value'), u32('size')], 'addr=0x%x value=0x%x size=%d');
export const T_ITD_DMA_START = defineTrace('iommu_testdev_dma_start', [], 'DMA operation started');
export const T_ITD_DMA_WRITE = defineTrace('iommu_testdev_dma_write', [u64('gva'), u32('len')], 'gva=0x%x len=%d');
export const T_ITD_DMA_READ = defineTrace('iommu_testdev_dma_read', [u64('gpa'), u32('len')], 'gpa=0x%x len=%d');
export const T_ITD_DMA_VERIFY = defineTrace('iommu_testdev_dma_verify', [u32('expected'), u32('actual')], 'expected=0x%x actual=0x%x');
export const T_ITD_DMA_RESULT = defineTrace('iommu_testdev_dma_result', [u32('result')], 'DMA completed result=0x%x');
export const T_ITD_DMA_ARMED = defineTrace('iommu_testdev_dma_armed', [bool('armed')], 'armed=%d');

/** Every PCI trace event. */
export const TRACE_EVENTS: readonly TraceEvent[] = [
  T_PCI_CFG_READ, T_PCI_CFG_WRITE, T_PCI_BAR_MAP, T_ITD_MMIO_READ, T_ITD_MMIO_WRITE, T_ITD_DMA_START, T_ITD_DMA_WRITE,
  T_ITD_DMA_READ, T_ITD_DMA_VERIFY, T_ITD_DMA_RESULT, T_ITD_DMA_ARMED,
];
