/**
 * Names for guest-physical addresses in a replay's divergence report: the register there, from
 * the register tables (`smmuv3.0 CMDQ_PROD`, `smmuv3.0 cmdqv VCMDQ0 PROD_INDX`), the PCI
 * function and offset for ECAM, `RAM` for guest RAM, else the memory region that serves it.
 */

import { smmuv3Layout, SMMUV3_MMIO_SIZE } from '../../arch/smmuv3/registers.js';
import * as C from '../../arch/tegra241-cmdqv/registers.js';
import { RegisterBank } from '../../kit/register-bank.js';
import type { RegisterLayout } from '../../kit/registers.js';
import { CMDQV_IO_LEN, CONFIG_PAGE, PAGE0, PAGE1 } from '../../vmm/tegra241-cmdqv/registers.js';
import { VIRT_RAM_BASE, type Machine } from '../machine.js';

/** Name of the register at byte `offset` of a block laid out by `layout`, or a hex offset. */
function regName(layout: RegisterLayout, offset: number): string {
  const r = layout.registerAt(offset & ~3);
  if (!r) return `+0x${offset.toString(16)}`;
  const within = offset - r.offset;
  return within === 0 ? r.name : `${r.name}+${within}`;
}

/** A VCMDQ's page0/page1 slot: which queue, and its register. */
function vcmdqName(layout: RegisterLayout, pageOffset: number, what: string): string {
  const q = Math.floor(pageOffset / C.VCMDQ_SLOT);
  return `${what}${q} ${regName(layout, pageOffset % C.VCMDQ_SLOT)}`;
}

/** The CMDQV block's decode (docs/reference/qemu-accel-smmuv3.md §3.1): config page, VCMDQ pages, VINTF0 pages. */
function cmdqvName(offset: number): string {
  const pages: [number, RegisterLayout, string][] = [
    [C.CMDQV_VCMDQ_PAGE0, PAGE0, 'VCMDQ'],
    [C.CMDQV_VCMDQ_PAGE1, PAGE1, 'VCMDQ'],
    [C.vintfPage0Offset(0), PAGE0, 'VINTF0 LVCMDQ'],
    [C.vintfPage0Offset(0) + C.CMDQV_PAGE_SIZE, PAGE1, 'VINTF0 LVCMDQ'],
  ];
  for (const [base, layout, what] of pages) {
    if (offset >= base && offset < base + C.CMDQV_PAGE_SIZE) return vcmdqName(layout, offset - base, what);
  }
  return regName(CONFIG_PAGE, offset);
}

/** A human name for guest-physical `addr` on machine `m`. */
export function addressName(m: Machine, addr: number): string {
  if (addr >= VIRT_RAM_BASE && addr < VIRT_RAM_BASE + m.ramBytes) return 'RAM';
  for (const s of m.smmus) {
    if (addr >= s.base && addr < s.base + SMMUV3_MMIO_SIZE) return `${s.dev.props.id} ${regName(smmuv3Layout(), addr - s.base)}`;
    if (s.cmdqvBase !== undefined && addr >= s.cmdqvBase && addr < s.cmdqvBase + CMDQV_IO_LEN) return `${s.dev.props.id} cmdqv ${cmdqvName(addr - s.cmdqvBase)}`;
  }
  for (const e of m.emulatedSmmus) {
    if (addr >= e.base && addr < e.base + SMMUV3_MMIO_SIZE) return `${e.id} ${regName(smmuv3Layout(), addr - e.base)}`;
  }
  const ecam = m.pci.layout;
  if (addr >= ecam.ecamBase && addr < ecam.ecamBase + ecam.ecamSize) {
    const off = addr - ecam.ecamBase;
    const bus = Math.floor(off / 2 ** 20);
    const dev = (off >>> 15) & 0x1f;
    const fn = (off >>> 12) & 7;
    const hex2 = (n: number) => n.toString(16).padStart(2, '0');
    return `ECAM ${hex2(bus)}:${hex2(dev)}.${fn} +0x${(off & 0xfff).toString(16)}`;
  }
  const r = m.as.resolve(addr);
  if (!r) return 'unassigned';
  if (r.region.ops instanceof RegisterBank) return `${r.region.name} ${regName(r.region.ops.layout, r.offset)}`;
  return `${r.region.name} +0x${r.offset.toString(16)}`;
}
