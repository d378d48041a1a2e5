// STE installation: abort / bypass / nested stage-1 HWPTs chosen from the guest's stream table,
// proven with device DMA on the host; a guest stage-1 translation end to end through the nested
// HWPT; a TLBI_NH_VA through the trapped queue invalidating a stale host IOTLB entry.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildCommand, Op } from '../../../src/arch/smmuv3/commands.js';
import * as R from '../../../src/arch/smmuv3/registers.js';
import { PageTableBuilder } from '../../../src/kit/page-table-builder.js';
import { iommu_hwpt_arm_smmuv3 } from '../../../src/uapi/iommufd.js';
import {
  ABORT_STE, attachedTo, BYPASS_STE, CD_IPA, DATA_IPA, Guest, GSID, hostVdevice, makeRig, type Rig, s1Ste, STRTAB, TABLES, writeCd,
} from './rig.js';

const IOVA = 0x1000_0000;
const ASID = 7;

function setup(opts: { smmuen?: boolean; both?: boolean } = {}): { rig: Rig; g: Guest; s1: PageTableBuilder } {
  const rig = makeRig();
  const g = new Guest(rig);
  rig.smmu.attachDevice(rig.devs[0]!);
  if (opts.both) rig.smmu.attachDevice(rig.devs[1]!);
  g.init({ smmuen: opts.smmuen ?? true });
  let next = TABLES;
  const s1 = new PageTableBuilder(rig.mem, {
    stage: 1,
    granule: 4096,
    inputBits: 48,
    allocTable: () => {
      const t = next;
      next += 4096;
      return t;
    },
  });
  writeCd(rig.mem, CD_IPA, ASID, s1.root);
  return { rig, g, s1 };
}

function cfgiSte(g: Guest, sid: number): void {
  g.submit(buildCommand(Op.CFGI_STE, { sid }), g.sync());
}

describe('STE installation', () => {
  test('abort STE: the device is attached to the abort HWPT and its DMA is terminated', () => {
    const { rig, g } = setup();
    g.writeSte(GSID[0], BYPASS_STE);
    cfgiSte(g, GSID[0]);
    g.writeSte(GSID[0], ABORT_STE);
    cfgiSte(g, GSID[0]);
    assert.equal(attachedTo(rig, 0), rig.smmu.abortHwptId);
    assert.equal(rig.kernel.devices[0]!.dmaRead(0x5000, 4).ok, false);
    assert.deepEqual(rig.traces.named('smmuv3_accel_install_ste').at(-1), [GSID[0], 'abort', rig.smmu.abortHwptId]);
    // An invalid STE (V = 0) is an abort too.
    g.writeSte(GSID[0], [0, 0, 0, 0]);
    cfgiSte(g, GSID[0]);
    assert.equal(attachedTo(rig, 0), rig.smmu.abortHwptId);
  });

  test('bypass STE: the device is attached to the bypass HWPT; DMA goes IOVA = IPA through stage 2', () => {
    const { rig, g } = setup();
    g.writeSte(GSID[0], BYPASS_STE);
    cfgiSte(g, GSID[0]);
    assert.equal(attachedTo(rig, 0), rig.smmu.bypassHwptId);
    const r = rig.kernel.devices[0]!.dmaWrite(0x7000, new Uint8Array([1, 2, 3, 4]));
    assert.equal(r.ok, true);
    assert.equal(r.pa, rig.proc.mem.translate(rig.ramVa + 0x7000));
    assert.equal(rig.mem.read32(0x7000), 0x0403_0201, 'the guest sees the data');
  });

  test('the vDEVICE is allocated once, with the guest SID, on the first install', () => {
    const { rig, g } = setup({ smmuen: false });
    assert.equal(hostVdevice(rig, 0), undefined);
    g.writeSte(GSID[0], ABORT_STE);
    cfgiSte(g, GSID[0]);
    cfgiSte(g, GSID[0]);
    assert.equal(hostVdevice(rig, 0)?.virtId, GSID[0]);
    assert.equal(rig.backend.calls.filter((c) => c.name === 'IOMMU_VDEVICE_ALLOC').length, 1);
    assert.equal(rig.smmu.deviceState(GSID[0])!.vdevId, hostVdevice(rig, 0)!.id);
    // With the SMMU disabled the GBPA choice is installed whatever the STE says.
    assert.equal(attachedTo(rig, 0), rig.smmu.bypassHwptId);
  });

  test('translate STE: a nested stage-1 HWPT from the guest STE, and guest stage-1 DMA end to end', () => {
    const { rig, g, s1 } = setup();
    s1.map(IOVA, DATA_IPA, 4096, 3);
    // MEV (word 1 bit 19) and S1ContextPtr bits 55:52 are not accepted by the host: masked off.
    g.writeSte(GSID[0], s1Ste(CD_IPA, (1 << 19) | (1 << 4)).map((w, i) => (i === 1 ? w | 0x00f0_0000 : w)));
    const from = rig.backend.calls.length;
    cfgiSte(g, GSID[0]);
    const alloc = rig.backend.calls.slice(from).find((c) => c.name === 'IOMMU_HWPT_ALLOC')!;
    assert.equal(alloc.ret, 0);
    assert.equal(alloc.args.pt_id, rig.smmu.viommuId);
    assert.equal(alloc.args.data_type, 2);
    assert.equal(alloc.args.data_len, 16);
    const data = iommu_hwpt_arm_smmuv3.decode(rig.proc.mem.copyFromUser(Number(alloc.args.data_uptr as bigint), 16));
    assert.deepEqual(data.ste, [BigInt(CD_IPA) | 0b1011n, 1n << 4n]);
    const s1Hwpt = rig.smmu.deviceState(GSID[0])!.s1Hwpt!;
    assert.equal(attachedTo(rig, 0), s1Hwpt);
    assert.deepEqual(rig.traces.named('smmuv3_accel_install_ste').at(-1), [GSID[0], 'translate', s1Hwpt]);
    assert.deepEqual(rig.traces.named('smmuv3_accel_translate_ste').at(-1), [GSID[0], s1Hwpt, 1n << 4n, BigInt(CD_IPA) | 0b1011n]);

    const dev = rig.kernel.devices[0]!;
    const w = dev.dmaWrite(IOVA + 0x10, new Uint8Array([0xaa, 0xbb]));
    assert.equal(w.ok, true);
    assert.equal(w.pa, rig.proc.mem.translate(rig.ramVa + DATA_IPA) + 0x10, 'IOVA -> IPA (guest S1) -> PA (S2)');
    assert.equal(rig.mem.read32(DATA_IPA + 0x10) & 0xffff, 0xbbaa);
    assert.equal(dev.dmaRead(IOVA + 0x2000, 4).ok, false, 'unmapped IOVA faults');
  });

  test('re-installing frees the previous stage-1 HWPT; switching to bypass frees it too', () => {
    const { rig, g } = setup();
    g.writeSte(GSID[0], s1Ste(CD_IPA));
    cfgiSte(g, GSID[0]);
    const first = rig.smmu.deviceState(GSID[0])!.s1Hwpt!;
    const from = rig.backend.calls.length;
    cfgiSte(g, GSID[0]);
    const second = rig.smmu.deviceState(GSID[0])!.s1Hwpt!;
    assert.notEqual(second, first);
    assert.deepEqual(
      rig.backend.calls.slice(from).map((c) => [c.name, c.ret]),
      [['IOMMU_HWPT_ALLOC', 0], ['VFIO_DEVICE_ATTACH_IOMMUFD_PT', 0], ['IOMMU_DESTROY', 0]],
    );
    assert.equal(rig.backend.calls.at(-1)!.args.id, first);
    g.writeSte(GSID[0], BYPASS_STE);
    cfgiSte(g, GSID[0]);
    assert.equal(rig.smmu.deviceState(GSID[0])!.s1Hwpt, undefined);
    assert.equal(rig.backend.calls.at(-1)!.args.id, second);
  });

  test('a stage-2 STE is invalid for a stage-1 vSMMU: CERROR_ILL, device unchanged', () => {
    const { rig, g } = setup();
    g.writeSte(GSID[0], BYPASS_STE);
    cfgiSte(g, GSID[0]);
    g.writeSte(GSID[0], [1 | (0b110 << 1), 0, 0, 0]);
    g.submit(buildCommand(Op.CFGI_STE, { sid: GSID[0] }));
    assert.equal((g.cons() >>> 24) & 0x7f, 1);
    assert.equal(rig.smmu.hostErrors.at(-1), 'Invalid STE config for sid 0x8');
    assert.equal(attachedTo(rig, 0), rig.smmu.bypassHwptId);
  });

  test('an STE the host refuses (EATS = 2) fails the command with CERROR_ILL and keeps the old HWPT', () => {
    const { rig, g } = setup();
    g.writeSte(GSID[0], BYPASS_STE);
    cfgiSte(g, GSID[0]);
    g.writeSte(GSID[0], s1Ste(CD_IPA, 2 << 28));
    g.submit(buildCommand(Op.CFGI_STE, { sid: GSID[0] }));
    assert.equal((g.cons() >>> 24) & 0x7f, 1);
    assert.equal(rig.smmu.hostErrors.at(-1), 'Failed to allocate hwpt: Input/output error');
    assert.equal(attachedTo(rig, 0), rig.smmu.bypassHwptId);
  });

  test('CFGI_STE_RANGE installs the devices in range; CFGI_ALL installs all', () => {
    const { rig, g } = setup({ both: true });
    g.writeSte(GSID[0], BYPASS_STE);
    g.writeSte(GSID[1], BYPASS_STE);
    g.submit(buildCommand(Op.CFGI_STE_RANGE, { sid: GSID[0], range: 2 }), g.sync()); // SIDs 8..15
    assert.equal(attachedTo(rig, 0), rig.smmu.bypassHwptId);
    assert.equal(attachedTo(rig, 1), rig.smmu.abortHwptId, 'SID 0x10 untouched (installed abort at SMMUEN)');
    assert.deepEqual(rig.traces.named('smmuv3_cmdq_cfgi_ste_range').at(-1), [8, 15]);
    g.submit(buildCommand(Op.CFGI_STE_RANGE, { range: 31 }), g.sync());
    assert.equal(attachedTo(rig, 1), rig.smmu.bypassHwptId);
    assert.deepEqual(rig.traces.named('smmuv3_cmdq_cfgi_ste_range').at(-1), [0, 0xffff_ffff]);
  });

  test('a CFGI_STE for a SID with no device, or outside the stream table, installs nothing', () => {
    const { rig, g } = setup();
    const from = rig.backend.calls.length;
    g.submit(buildCommand(Op.CFGI_STE, { sid: 0x30 }), g.sync());
    assert.equal(rig.backend.calls.length, from);
    // Shrink the table to 4 STEs: SID 8 is out of range, so its STE is not looked up.
    g.w32(R.STRTAB_BASE_CFG.spec.offset, 2);
    g.writeSte(GSID[0], BYPASS_STE);
    cfgiSte(g, GSID[0]);
    assert.equal(attachedTo(rig, 0), rig.smmu.abortHwptId);
    assert.equal(g.gerror(), 0, 'no error: nothing to install');
  });

  test('2-level stream table', () => {
    const { rig, g, s1 } = setup();
    const L2 = 0x18_0000;
    // L1 descriptor 0 covers SIDs 0..63 (SPLIT = 6, Span = 7).
    rig.mem.write32(STRTAB, (L2 | 7) >>> 0);
    rig.mem.write32(STRTAB + 4, 0);
    g.w32(R.STRTAB_BASE_CFG.spec.offset, (1 << 16) | (6 << 6) | 16);
    const ste = s1Ste(CD_IPA);
    for (let i = 0; i < 4; i++) rig.mem.write32(L2 + GSID[0] * 64 + 4 * i, ste[i]!);
    s1.map(IOVA, DATA_IPA, 4096, 3);
    cfgiSte(g, GSID[0]);
    assert.equal(attachedTo(rig, 0), rig.smmu.deviceState(GSID[0])!.s1Hwpt);
    assert.equal(rig.kernel.devices[0]!.dmaRead(IOVA, 4).pa, rig.proc.mem.translate(rig.ramVa + DATA_IPA));
    const walk = rig.traces.named('smmuv3_find_ste_2lvl').at(-1)!;
    assert.deepEqual(walk, [STRTAB, STRTAB, 0, L2, GSID[0], 63]);
    // Span 0: the L1 entry is invalid, nothing is installed.
    rig.mem.write32(STRTAB, L2);
    g.writeSte(GSID[0], BYPASS_STE);
    cfgiSte(g, GSID[0]);
    assert.equal(attachedTo(rig, 0), rig.smmu.deviceState(GSID[0])!.s1Hwpt);
  });

  test('a device joining while the SMMU is on gets its STE at once (abort when there is none)', () => {
    const { rig, g, s1 } = setup();
    s1.map(IOVA, DATA_IPA, 4096, 3);
    g.writeSte(GSID[1], s1Ste(CD_IPA));
    rig.smmu.attachDevice(rig.devs[1]!);
    assert.equal(attachedTo(rig, 1), rig.smmu.deviceState(GSID[1])!.s1Hwpt);
    assert.equal(rig.kernel.devices[1]!.dmaRead(IOVA, 4).pa, rig.proc.mem.translate(rig.ramVa + DATA_IPA));
    const other = setup();
    other.g.w32(R.STRTAB_BASE_CFG.spec.offset, 2); // SID 0x10 is outside the table
    other.rig.smmu.attachDevice(other.rig.devs[1]!);
    assert.equal(attachedTo(other.rig, 1), other.rig.smmu.abortHwptId);
    assert.equal(other.rig.kernel.devices[1]!.dmaRead(0x1000, 4).ok, false, 'no stage-2-only access');
  });

  test('the first device attached while the SMMU is on (hot-plug) gets its STE, not GBPA', () => {
    const rig = makeRig();
    const g = new Guest(rig);
    g.init({ smmuen: true });
    g.writeSte(GSID[0], ABORT_STE);
    rig.smmu.attachDevice(rig.devs[0]!);
    assert.equal(attachedTo(rig, 0), rig.smmu.abortHwptId);
    assert.equal(hostVdevice(rig, 0)?.virtId, GSID[0]);
    assert.equal(rig.kernel.devices[0]!.dmaRead(0x1000, 4).ok, false);
  });

  test('enabling the SMMU installs the STEs; disabling it returns to the GBPA choice', () => {
    const { rig, g, s1 } = setup({ smmuen: false });
    s1.map(IOVA, DATA_IPA, 4096, 3);
    g.writeSte(GSID[0], s1Ste(CD_IPA));
    assert.equal(attachedTo(rig, 0), rig.smmu.bypassHwptId);
    g.enableSmmu(true);
    assert.equal(attachedTo(rig, 0), rig.smmu.deviceState(GSID[0])!.s1Hwpt);
    assert.equal(rig.kernel.devices[0]!.dmaRead(IOVA, 4).ok, true);
    g.enableSmmu(false);
    assert.equal(attachedTo(rig, 0), rig.smmu.bypassHwptId);
  });
});

describe('invalidation through the trapped queue', () => {
  test('TLBI_NH_VA removes a stale IOTLB entry on the host', () => {
    const { rig, g, s1 } = setup();
    s1.map(IOVA, DATA_IPA, 4096, 3, { nG: true });
    g.writeSte(GSID[0], s1Ste(CD_IPA));
    cfgiSte(g, GSID[0]);
    const dev = rig.kernel.devices[0]!;
    const pa = rig.proc.mem.translate(rig.ramVa + DATA_IPA);
    assert.equal(dev.dmaRead(IOVA, 4).pa, pa);
    // The guest unmaps without invalidating: the host IOTLB still translates.
    s1.unmap(IOVA, 4096);
    const stale = dev.dmaRead(IOVA, 4);
    assert.equal(stale.ok, true);
    assert.equal(stale.iotlbHit, true);
    // A TLBI for another ASID does not help.
    g.submit(buildCommand(Op.TLBI_NH_VA, { asid: ASID + 1, addr: IOVA, leaf: true }), g.sync());
    assert.equal(dev.dmaRead(IOVA, 4).ok, true);
    const from = rig.backend.calls.length;
    g.submit(buildCommand(Op.TLBI_NH_VA, { asid: ASID, addr: IOVA, leaf: true }), g.sync());
    assert.deepEqual(rig.backend.calls.slice(from).map((c) => [c.name, c.ret]), [['IOMMU_HWPT_INVALIDATE', 0]]);
    const after = dev.dmaRead(IOVA, 4);
    assert.equal(after.ok, false);
    assert.equal(after.event, 0x10, 'F_TRANSLATION');
  });

  test('CFGI_CD makes the host refetch a changed CD', () => {
    const { rig, g, s1 } = setup();
    s1.map(IOVA, DATA_IPA, 4096, 3, { nG: true });
    g.writeSte(GSID[0], s1Ste(CD_IPA));
    cfgiSte(g, GSID[0]);
    const dev = rig.kernel.devices[0]!;
    assert.equal(dev.dmaRead(IOVA, 4).ok, true);
    // Point the CD at an empty table under a new ASID; the host keeps the cached CD until CFGI_CD.
    const empty = 0x7f_0000;
    writeCd(rig.mem, CD_IPA, ASID + 1, empty);
    g.submit(buildCommand(Op.TLBI_NH_ASID, { asid: ASID }), g.sync());
    assert.equal(dev.dmaRead(IOVA, 4).ok, true, 'still the cached CD: walks the old tables');
    g.submit(buildCommand(Op.CFGI_CD, { sid: GSID[0], leaf: true }), buildCommand(Op.TLBI_NH_ASID, { asid: ASID + 1 }), g.sync());
    assert.equal(dev.dmaRead(IOVA, 4).ok, false);
  });
});
