/**
 * Row 8: QEMU's emulated SMMUv3 (accel=off), every translation and every invalidation in the VMM
 * (the path beside rows 1–3: VCMDQ to the silicon, trapped and forwarded to the host).
 * - translations/s through the PciIommu seam (what iommu-testdev calls): IOTLB hits over 256
 *   mapped pages, and misses (the IOTLB emptied before each sweep, so every access walks the
 *   4-level stage-1 tables in guest RAM);
 * - invalidations/s: row 1/2's ring (TLBI_NH_VA with the ASID and address stepping, then
 *   CMD_SYNC) consumed by the VMM on one trapped PROD write, with the IOTLB holding entries.
 */

import * as R from '../src/arch/smmuv3/registers.js';
import { buildCd, STE, STE_CFG_S1 } from '../src/arch/smmuv3/structures.js';
import { PageTableBuilder } from '../src/kit/page-table-builder.js';
import { Machine, VIRT_RAM_BASE } from '../src/platform/machine.js';
import { DmaTranslation } from '../src/vmm/pci/iommu.js';
import { measureRate, type Row } from './harness.js';
import { fillRing } from './vcmdq.bench.js';

const PAGES = 256;
const IOVA = 0x1_0000_0000;
const SID = 8;
const ASID = 1;

/** A machine with an emulated SMMUv3 on pcie.0: stage-1 STE + CD + tables mapping PAGES pages, queues on. */
function emulatedSetup(log2: number) {
  const m = Machine.create(['-m', '2G', '-device', 'arm-smmuv3,primary-bus=pcie.0']);
  const base = m.emulatedSmmus[0]!.base;
  const strtab = VIRT_RAM_BASE + 0x10_0000;
  const cd = VIRT_RAM_BASE + 0x20_0000;
  const ring = VIRT_RAM_BASE + 2 ** 24;
  let nextTable = VIRT_RAM_BASE + 0x40_0000;
  const mem = { read32: (a: number) => m.as.read32(a), write32: (a: number, v: number) => m.as.write32(a, v) };
  const s1 = new PageTableBuilder(mem, { stage: 1, granule: 4096, inputBits: 48, allocTable: () => ((nextTable += 4096) - 4096) });
  s1.map(IOVA, VIRT_RAM_BASE + 0x1000_0000, PAGES * 4096, 3, { nG: true, useBlocks: false });
  m.writeRam(cd, new Uint8Array(buildCd({ asid: ASID, ttb0: s1.root }).buffer));
  const s = new Uint32Array(16);
  STE.V.setWords(s, 0, 1);
  STE.CFG.setWords(s, 0, STE_CFG_S1);
  STE.S1CTXPTR.setWords(s, 0, cd / 64);
  m.writeRam(strtab + SID * 64, new Uint8Array(s.buffer));
  const entries = 2 ** log2;
  fillRing((o, v) => m.as.write32(ring + o, v), entries);
  m.write(base + R.STRTAB_BASE.spec.offset, 8, strtab);
  m.write(base + R.STRTAB_BASE_CFG.spec.offset, 4, 8);
  m.write(base + R.CMDQ_BASE.spec.offset, 8, BigInt(ring) | BigInt(log2));
  m.write(base + R.CR0.spec.offset, 4, 0b1001); // SMMUEN + CMDQEN
  const smmu = m.emulatedSmmus[0]!.device;
  return { m, base, smmu, iommu: m.emulatedSmmuFor('pcie.0')!, entries };
}

/** Row 8. */
export function benchEmulated(quick: boolean): Row[] {
  const log2 = quick ? 14 : 19;
  const s = emulatedSetup(log2);
  const out = new DmaTranslation();
  const sweeps = quick ? 20 : 400;
  const translateAll = (): number => {
    let ok = 0;
    for (let k = 0; k < sweeps; k++) for (let p = 0; p < PAGES; p++) ok += s.iommu.translate(SID, IOVA + p * 4096 + 8, false, out).ok ? 1 : 0;
    if (ok !== sweeps * PAGES) throw new Error(`${sweeps * PAGES - ok} translations failed`);
    return ok;
  };
  const runs = quick ? 3 : 5;
  const warm = quick ? 1 : 2;
  const hit = measureRate('8. emulated SMMUv3 translate, IOTLB hit', 'xlate/s', translateAll, runs, warm);
  hit.note = `${PAGES} pages, PciIommu.translate in the VMM`;
  const iotlb = s.smmu.engine.iotlb;
  const missSweeps = quick ? 4 : 40;
  const miss = measureRate('8. emulated SMMUv3 translate, IOTLB miss', 'xlate/s', () => {
    let ok = 0;
    for (let k = 0; k < missSweeps; k++) {
      iotlb.invalidateAll();
      for (let p = 0; p < PAGES; p++) ok += s.iommu.translate(SID, IOVA + p * 4096 + 8, false, out).ok ? 1 : 0;
    }
    if (ok !== missSweeps * PAGES) throw new Error(`${missSweeps * PAGES - ok} translations failed`);
    return ok;
  }, runs, warm);
  miss.note = '4-level stage-1 walk in guest RAM per access';
  const n = s.entries - 1;
  const wrap = 2 * s.entries;
  let prod = 0;
  const inval = measureRate(`8. emulated SMMUv3 CMDQ (TLBI + CMD_SYNC in the VMM), ring 2^${log2}-1`, 'cmd/s', () => {
    for (let p = 0; p < PAGES; p++) s.iommu.translate(SID, IOVA + p * 4096, false, out); // entries to invalidate
    prod = (prod + n) % wrap;
    s.m.write(s.base + R.CMDQ_PROD.spec.offset, 4, prod);
    const cons = Number(s.m.read(s.base + R.CMDQ_CONS.spec.offset, 4).value) & 0xfffff;
    if (cons !== prod) throw new Error(`CONS 0x${cons.toString(16)} did not catch up with 0x${prod.toString(16)}`);
    return n;
  }, runs, warm);
  inval.note = `1 trapped PROD write; 0 ioctls; IOTLB holding ${PAGES} entries`;
  s.m.close();
  return [hit, miss, inval];
}
