// The emulated SMMUv3 in the virt machine: which root buses it serves (emulatedSmmuFor, the
// seam PCI devices translate through), programmed through the machine's address space, reset
// with the machine.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Op, buildCommand } from '../../../src/arch/smmuv3/commands.js';
import * as R from '../../../src/arch/smmuv3/registers.js';
import { STE, STE_CFG_ABORT, STE_CFG_BYPASS } from '../../../src/arch/smmuv3/structures.js';
import { Machine } from '../../../src/platform/machine.js';
import { DmaTranslation } from '../../../src/vmm/pci/iommu.js';

const PXBS = ['-device', 'pxb-pcie,id=pcie.1,bus_nr=8', '-device', 'pxb-pcie,id=pcie.2,bus_nr=16,bypass_iommu=on,bus=pcie.0', '-device', 'pcie-root-port,id=rp1,bus=pcie.1,chassis=1'];

describe('emulated SMMUv3 in the virt machine', () => {
  test('emulatedSmmuFor: the primary bus of a -device SMMU (and the root ports under it), nothing else', () => {
    const m = Machine.create(['-m', '1G', ...PXBS, '-device', 'arm-smmuv3,primary-bus=pcie.1,id=emu1']);
    const dev = m.emulatedSmmus[0]!.device;
    assert.equal(m.emulatedSmmuFor('pcie.1'), dev);
    assert.equal(m.emulatedSmmuFor('rp1'), dev, 'a root port resolves to its root bus');
    assert.equal(m.emulatedSmmuFor('pcie.0'), undefined, 'no SMMU on pcie.0');
    assert.equal(m.emulatedSmmuFor('pcie.2'), undefined);
    assert.equal(m.emulatedSmmuFor('nope'), undefined);
    m.close();
  });

  test('the machine-wide SMMU serves every root bus but a bypass_iommu one', () => {
    const m = Machine.create(['-m', '1G', '-M', 'virt,iommu=smmuv3', ...PXBS]);
    const dev = m.emulatedSmmus[0]!.device;
    assert.equal(m.emulatedSmmuFor('pcie.0'), dev);
    assert.equal(m.emulatedSmmuFor('pcie.1'), dev);
    assert.equal(m.emulatedSmmuFor('pcie.2'), undefined, 'bypass_iommu=on');
    m.close();
  });

  test('programmed through guest MMIO and RAM: STE bypass, then abort after CFGI_STE; reset clears it', () => {
    const m = Machine.create(['-m', '1G', '-M', 'virt,iommu=smmuv3']);
    const base = m.emulatedSmmus[0]!.base;
    const ram = 0x4000_0000;
    const strtab = ram + 0x10_0000;
    const cmdq = ram + 0x20_0000;
    const ste = (cfg: number) => {
      const w = new Uint32Array(16);
      STE.V.setWords(w, 0, 1);
      STE.CFG.setWords(w, 0, cfg);
      m.writeRam(strtab + 8 * 64, new Uint8Array(w.buffer));
    };
    ste(STE_CFG_BYPASS);
    m.write(base + R.STRTAB_BASE.spec.offset, 8, strtab);
    m.write(base + R.STRTAB_BASE_CFG.spec.offset, 4, 5);
    m.write(base + R.CMDQ_BASE.spec.offset, 8, cmdq | 4);
    m.write(base + R.CR0.spec.offset, 4, 0b1001);
    const iommu = m.emulatedSmmuFor('pcie.0')!;
    const out = new DmaTranslation();
    assert.deepEqual([iommu.translate(8, 0x1234_5000, true, out).ok, out.pa], [true, 0x1234_5000]);
    ste(STE_CFG_ABORT);
    m.writeRam(cmdq, new Uint8Array(buildCommand(Op.CFGI_STE, { sid: 8 }).buffer));
    m.write(base + R.CMDQ_PROD.spec.offset, 4, 1);
    assert.equal(Number(m.read(base + R.CMDQ_CONS.spec.offset, 4).value), 1);
    assert.deepEqual([iommu.translate(8, 0x1234_5000, true, out).ok, out.fault], [false, 0]);
    m.reset();
    assert.equal(Number(m.read(base + R.CR0.spec.offset, 4).value), 0);
    assert.deepEqual([iommu.translate(8, 0x1234_5000, true, out).ok, out.pa], [true, 0x1234_5000], 'SMMUEN = 0: GBPA bypass');
    m.close();
  });
});

test('ID registers read as QEMU 11.1 reads them: the machine-wide SMMU has both stages, -device the default stage 1', () => {
  // Observed with qtest `readl` on QEMU 11.1.3 (docs/reference/qemu-smmuv3.md §2).
  const legacy = Machine.create(['-M', 'virt,iommu=smmuv3', '-accel', 'qtest']);
  assert.equal(Number(legacy.read(0x0905_0000, 4).value), 0x0d44_101b);
  const dev = Machine.create(['-M', 'virt', '-accel', 'qtest', '-device', 'arm-smmuv3,primary-bus=pcie.0']);
  assert.equal(Number(dev.read(0x0c00_0000, 4).value), 0x0d44_101a);
  assert.equal(Number(dev.read(0x0c00_0004, 4).value), 0x0273_0010);
  const s2 = Machine.create(['-M', 'virt', '-accel', 'qtest', '-device', 'arm-smmuv3,primary-bus=pcie.0,stage=2']);
  assert.equal(Number(s2.read(0x0c00_0000, 4).value), 0x0d44_1019);
});
