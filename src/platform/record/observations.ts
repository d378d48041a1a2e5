/**
 * What the machine answers that a recording keeps and replay compares, encoded the same way on
 * both sides: a DMA's outcome, and the counters a run leaves behind.
 */

import type { DmaResult } from '../../host/kernel/host-device.js';
import type { Machine } from '../machine.js';
import * as F from './format.js';

/** A DMA's outcome bits (record flags). */
export function dmaFlags(r: DmaResult): number {
  return (r.ok ? F.FLAG_DMA_OK : 0) | (r.masterAbort ? F.FLAG_DMA_MASTER_ABORT : 0) | (r.iotlbHit ? F.FLAG_DMA_IOTLB_HIT : 0);
}

/** A DMA record's aux2: its length and the fault's event ID (SMMUv3 event IDs fit 8 bits). */
export function dmaAux2(len: number, r: DmaResult): number {
  return (len & 0xff) | ((r.event & 0xff) << 8);
}

/** The ACPI tables the guest reads, as one CRC-32 over IORT, DSDT and MCFG, and their bytes. */
export function acpiTables(acpi: { readonly iort: Uint8Array; readonly dsdt: Uint8Array; readonly mcfg: Uint8Array }): { crc: number; bytes: number } {
  const tables = new Uint8Array(acpi.iort.length + acpi.dsdt.length + acpi.mcfg.length);
  tables.set(acpi.iort, 0);
  tables.set(acpi.dsdt, acpi.iort.length);
  tables.set(acpi.mcfg, acpi.iort.length + acpi.dsdt.length);
  return { crc: F.crc32(tables), bytes: tables.length };
}

/**
 * The counters a run leaves behind, as `[id, value]` (ids: format.ts `COUNTERS`, interrupt
 * lines at `IRQ_COUNTER_BASE + GSIV`), in a fixed order.
 */
export function finalCounters(m: Machine): [number, number][] {
  const s = m.as.stats;
  const values = [
    m.clock.now,
    s.exits,
    s.direct,
    s.ram,
    s.invalid,
    s.unassigned,
    m.host.stats.ioctls,
    m.host.stats.eventsForwarded,
    m.log.count('guest_error'),
    m.log.count('unimp'),
    m.faults?.injected.length ?? 0,
    acpiTables(m.acpi).crc,
  ];
  const out: [number, number][] = values.map((v, id) => [id, v]);
  for (const gsiv of [...m.irqs.keys()].sort((a, b) => a - b)) out.push([F.IRQ_COUNTER_BASE + gsiv, m.irqs.get(gsiv)!.count]);
  return out;
}
