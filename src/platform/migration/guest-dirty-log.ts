/**
 * Dirty-page tracking of one VM's guest RAM, as a VMM gets it from KVM's dirty log of the RAM
 * memslot. Guest RAM is the VMM process's anonymous mapping, backed by host pages (or
 * hugepages) scattered over the host's physical memory; the host memory logs stores per 4 KiB
 * host page (kit/sparse-memory.ts) — the guest's own stores, the VMM's, and every DMA write a
 * device makes through the SMMU — and this class turns host page numbers back into guest page
 * numbers through the mapping's frames. Stores to pages that are not this VM's RAM (another VM
 * on the host, kernel rings) are dropped here. On real hardware DMA needs the IOMMU's own dirty
 * tracking next to KVM's log (docs/reference/live-migration.md §3).
 */

import { DIRTY_PAGE_SIZE, type SparseMemory } from '../../kit/sparse-memory.js';
import type { Machine } from '../machine.js';

/** A VM's guest RAM as 4 KiB pages: page n is guest-physical VIRT_RAM_BASE + n · 4096. */
export class GuestDirtyLog {
  /** The host memory behind the guest RAM (shared with everything else on the host). */
  private readonly mem: SparseMemory;
  /** Host PA of each backing frame of the RAM mapping. */
  private readonly frames: Float64Array;
  /** 4 KiB pages per backing frame (1 for base pages, 262144 for a 1 GiB hugepage). */
  private readonly perFrame: number;
  /** Host frame number (PA / frame size) → frame index in the mapping. */
  private readonly frameIndex = new Map<number, number>();
  /** Guest RAM pages (the mapping may be longer: whole backing pages). */
  readonly pages: number;
  private running = false;

  constructor(m: Machine) {
    const mapping = m.proc.mem.find(m.ramVa);
    if (!mapping?.anon || mapping.va !== m.ramVa) throw new Error('guest RAM is not an anonymous mapping of the VMM');
    this.mem = m.proc.mem.phys.mem;
    this.frames = mapping.frames;
    this.perFrame = mapping.pageSize / DIRTY_PAGE_SIZE;
    for (let i = 0; i < this.frames.length; i++) this.frameIndex.set(this.frames[i]! / mapping.pageSize, i);
    this.pages = Math.ceil(m.ramBytes / DIRTY_PAGE_SIZE);
  }

  /** Start logging (KVM_MEM_LOG_DIRTY_PAGES on the RAM slot). */
  start(): void {
    this.mem.startDirtyLog();
    this.running = true;
  }

  /** Stop logging; safe to call twice. */
  stop(): void {
    if (!this.running) return;
    this.running = false;
    this.mem.stopDirtyLog();
  }

  /**
   * Guest pages that may hold anything but zero: those whose host pages lie in touched memory
   * (what a first pre-copy round sends; untouched RAM reads as zero on both sides). Ascending.
   */
  touchedPages(): number[] {
    const out: number[] = [];
    const frameBytes = this.perFrame * DIRTY_PAGE_SIZE;
    const host: number[] = [];
    for (let i = 0; i < this.frames.length; i++) {
      host.length = 0;
      this.mem.residentPages(this.frames[i]!, frameBytes, host);
      const first = this.frames[i]! / DIRTY_PAGE_SIZE;
      for (const p of host) {
        const g = i * this.perFrame + (p - first);
        if (g < this.pages) out.push(g);
      }
    }
    return out.sort((a, b) => a - b);
  }

  /** Guest pages written since start or the last collect (KVM_GET_DIRTY_LOG + clear), ascending. */
  collect(): number[] {
    const out: number[] = [];
    for (const p of this.mem.collectDirtyPages()) {
      const frame = Math.floor(p / this.perFrame);
      const i = this.frameIndex.get(frame);
      if (i === undefined) continue; // not this VM's RAM
      const g = i * this.perFrame + (p - frame * this.perFrame);
      if (g < this.pages) out.push(g);
    }
    return out.sort((a, b) => a - b);
  }
}
