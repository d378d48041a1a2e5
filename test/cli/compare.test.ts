// cmdqv run --compare (issue 11 §5): one topology, three invalidation paths side by side.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { main } from '../../src/cli/main.js';
import type { CompareColumn } from '../../src/platform/compare.js';

function compare(args: readonly string[]): CompareColumn[] {
  let out = '';
  let err = '';
  const code = main(['run', '--compare', '--json', '--ops', '32', '--batch', '8', ...args], (s) => (out += s), (s) => (err += s));
  assert.equal(code, 0, err);
  return JSON.parse(out) as CompareColumn[];
}

function checkPaths(cols: readonly CompareColumn[], devices: number): void {
  const [emu, trapped, cmdqv] = cols;
  assert.deepEqual(cols.map((c) => c.path), ['emulated', 'trapped', 'cmdqv']);
  for (const c of cols) {
    assert.equal(c.commands, 32 * devices, `${c.path}: the same guest invalidations`);
    assert.deepEqual([c.dmaPassed, c.dmaFailed], [64 * devices, 0], `${c.path}: every DMA check passes`);
  }
  // Emulated: translations in the VMM, none in the host, no ioctls.
  assert.equal(emu!.vmmTranslations, 64 * devices);
  assert.equal(emu!.hostTranslations, 0);
  assert.equal(emu!.ioctls, 0);
  assert.ok(emu!.line.some((a) => a.startsWith('iommu-testdev')) && !emu!.line.some((a) => a.startsWith('vfio-pci')));
  // Accelerated: translations in the host SMMU; trapped invalidations cost exits and ioctls, the VCMDQ path almost none.
  for (const c of [trapped!, cmdqv!]) {
    assert.equal(c.vmmTranslations, 0);
    assert.equal(c.hostTranslations, 64 * devices);
  }
  assert.ok(trapped!.ioctls > cmdqv!.ioctls, 'trapped invalidations become HWPT_INVALIDATE ioctls');
  assert.equal(cmdqv!.invalidationExits, 0, 'VCMDQ doorbells and CONS polls do not exit');
  assert.ok(trapped!.invalidationExits > 0 && emu!.invalidationExits > 0, 'the SMMU command queue traps');
  assert.ok(cmdqv!.latencyPerOpNs * 3 < trapped!.latencyPerOpNs, 'the VCMDQ path is modelled several times cheaper');
}

test('--compare on the default machine', () => {
  checkPaths(compare([]), 1);
});

test('--compare on two accelerated SMMUs on two pxb-pcie buses behind root ports', () => {
  const two = [
    '-M', 'virt,gic-version=3', '-m', '8G', '-object', 'iommufd,id=iommufd0',
    '-device', 'pxb-pcie,id=pcie.1,bus_nr=1', '-device', 'pcie-root-port,id=rp1,bus=pcie.1,chassis=1',
    '-device', 'pxb-pcie,id=pcie.2,bus_nr=8,bus=pcie.0', '-device', 'pcie-root-port,id=rp2,bus=pcie.2,chassis=2',
    '-device', 'arm-smmuv3,primary-bus=pcie.1,accel=on,cmdqv=on,identifier=1',
    '-device', 'arm-smmuv3,primary-bus=pcie.2,accel=on,cmdqv=off,identifier=2',
    '-device', 'vfio-pci,host=0009:01:00.0,iommufd=iommufd0,bus=rp1', '-device', 'vfio-pci,host=0009:01:00.1,iommufd=iommufd0,bus=rp2',
  ];
  checkPaths(compare(['--', ...two]), 2);
});

test('the text report puts the three paths side by side', () => {
  let out = '';
  assert.equal(main(['run', '--compare', '--ops', '8', '--batch', '4'], (s) => (out += s), () => undefined), 0);
  assert.match(out, /emulated SMMUv3 +accel, trapped +accel \+ CMDQV/);
  assert.match(out, /translations in the VMM/);
});
