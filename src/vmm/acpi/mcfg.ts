/**
 * The MCFG table (PCI Express memory-mapped configuration space) as QEMU's build_mcfg writes it
 * for the virt machine: revision 1, eight reserved bytes, then one allocation for segment 0 —
 * the ECAM base, start bus 0 and the last bus the ECAM window holds (docs/reference/pci.md §6).
 */
import { ByteWriter, beginTable, finishTable, QEMU_OEM, type AcpiOem } from '../../arch/acpi/table.js';

/** MCFG revision QEMU writes. */
export const MCFG_REVISION = 1;

/** What the one MCFG allocation describes. */
export interface McfgParams {
  /** ECAM base (guest-physical). */
  readonly base: number;
  /** Last bus number: 255 for the high ECAM, 15 for the low one. */
  readonly endBus: number;
  readonly oem?: AcpiOem;
}

/** Build the MCFG. */
export function buildMcfg(p: McfgParams): Uint8Array {
  const w = new ByteWriter();
  beginTable(w, 'MCFG', MCFG_REVISION, p.oem ?? QEMU_OEM);
  w.u64(0);
  w.u64(p.base).u16(0 /* segment */).u8(0 /* start bus */).u8(p.endBus).u32(0);
  return finishTable(w);
}
