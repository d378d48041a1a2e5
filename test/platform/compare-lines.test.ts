// cmdqv run --compare derives three lines from one (issue 11 §5).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { lineFor } from '../../src/platform/compare.js';

const TWO = [
  '-M', 'virt,gic-version=3', '-m', '8G', '-object', 'iommufd,id=iommufd0', '-global', 'arm-smmuv3.ril=off',
  '-device', 'pxb-pcie,id=pcie.1,bus_nr=0x10', '-device', 'pcie-root-port,id=rp1,bus=pcie.1,chassis=1',
  '-device', 'arm-smmuv3,primary-bus=pcie.1,accel=on,cmdqv=on,ats=on,identifier=1',
  '-device', 'vfio-pci,host=0009:01:00.0,iommufd=iommufd0,bus=rp1,addr=0.0,id=nic0',
];

test('emulated: accel-only properties and iommufd dropped, vfio-pci becomes iommu-testdev at the same place', () => {
  assert.deepEqual(lineFor(TWO, 'emulated'), [
    '-M', 'virt,gic-version=3', '-m', '8G',
    '-device', 'pxb-pcie,id=pcie.1,bus_nr=0x10', '-device', 'pcie-root-port,id=rp1,bus=pcie.1,chassis=1',
    '-device', 'arm-smmuv3,primary-bus=pcie.1,identifier=1',
    '-device', 'iommu-testdev,id=nic0,bus=rp1,addr=0.0',
  ]);
});

test('trapped and cmdqv: the same accelerated line with cmdqv off / on', () => {
  const t = lineFor(TWO, 'trapped');
  assert.equal(t[t.indexOf('arm-smmuv3,primary-bus=pcie.1,accel=on,cmdqv=off,ats=on,identifier=1')], 'arm-smmuv3,primary-bus=pcie.1,accel=on,cmdqv=off,ats=on,identifier=1');
  const c = lineFor(TWO, 'cmdqv');
  assert.deepEqual(c, TWO);
  assert.ok(t.includes('-global') && t.includes('vfio-pci,host=0009:01:00.0,iommufd=iommufd0,bus=rp1,addr=0.0,id=nic0'));
});
