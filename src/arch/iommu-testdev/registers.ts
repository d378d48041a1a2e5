/**
 * QEMU's iommu-testdev (vendor 0x1b36, device 0x0005): a conventional PCI function with one
 * 4 KiB 32-bit memory BAR whose registers describe a DMA and trigger it through the device's
 * IOMMU (QEMU 11.1 `include/hw/misc/iommu-testdev.h`; docs/reference/pci.md §5).
 */
import { defineRegister } from '../../kit/registers.js';

/** BAR0 size. */
export const ITD_BAR0_SIZE = 0x1000;

/** DMA_RESULT values: idle, busy (armed), and the error codes. 0 means the DMA passed its check. */
export const ITD_DMA_RESULT_IDLE = 0xffff_ffff;
export const ITD_DMA_RESULT_BUSY = 0xffff_fffe;
export const ITD_DMA_ERR_BAD_LEN = 0xdead_0001;
export const ITD_DMA_ERR_TX_FAIL = 0xdead_0002;
export const ITD_DMA_ERR_RD_FAIL = 0xdead_0003;
export const ITD_DMA_ERR_MISMATCH = 0xdead_0004;
export const ITD_DMA_ERR_NOT_ARMED = 0xdead_0005;
export const ITD_DMA_ERR_BAD_ATTRS = 0xdead_0006;
/** The 32-bit pattern the DMA writes (little-endian, repeated; a tail takes its low bytes). */
export const ITD_DMA_WRITE_VAL = 0x1234_5678;
/** DMA_DBELL bit 0: 1 arms, 0 disarms. */
export const ITD_DMA_DBELL_ARM = 0x1;
/** DMA_ATTRS: [0] secure, [2:1] Arm security space, [3] space valid. */
export const ITD_ATTRS_SPACE_SECURE = 0;
export const ITD_ATTRS_SPACE_NONSECURE = 1;

/** A read of DMA_TRIGGERING runs the armed DMA (reads 0); writes are ignored. */
export const DMA_TRIGGERING = defineRegister({ name: 'DMA_TRIGGERING', offset: 0x00, width: 32, access: 'RO' });
export const DMA_GVA_LO = defineRegister({ name: 'DMA_GVA_LO', offset: 0x04, width: 32 });
export const DMA_GVA_HI = defineRegister({ name: 'DMA_GVA_HI', offset: 0x08, width: 32 });
export const DMA_LEN = defineRegister({ name: 'DMA_LEN', offset: 0x0c, width: 32 });
/** Writable by software; the device sets it on arm/disarm and when a DMA completes. */
export const DMA_RESULT = defineRegister({ name: 'DMA_RESULT', offset: 0x10, width: 32, reset: ITD_DMA_RESULT_IDLE });
/** Write-only in effect: reads 0. */
export const DMA_DBELL = defineRegister({ name: 'DMA_DBELL', offset: 0x14, width: 32, access: 'WO', fields: { ARM: { lsb: 0, width: 1 } } });
export const DMA_ATTRS = defineRegister({
  name: 'DMA_ATTRS',
  offset: 0x18,
  width: 32,
  reserved: 'stored',
  reset: ITD_ATTRS_SPACE_NONSECURE << 1,
  fields: { SECURE: { lsb: 0, width: 1 }, SPACE: { lsb: 1, width: 2 }, SPACE_VALID: { lsb: 3, width: 1 } },
});
export const DMA_GPA_LO = defineRegister({ name: 'DMA_GPA_LO', offset: 0x1c, width: 32 });
export const DMA_GPA_HI = defineRegister({ name: 'DMA_GPA_HI', offset: 0x20, width: 32 });

/** Every BAR0 register, in offset order. */
export const ITD_REGISTERS = [DMA_TRIGGERING, DMA_GVA_LO, DMA_GVA_HI, DMA_LEN, DMA_RESULT, DMA_DBELL, DMA_ATTRS, DMA_GPA_LO, DMA_GPA_HI] as const;
