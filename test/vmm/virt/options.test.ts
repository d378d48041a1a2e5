// QEMU-style command line parsing and its error texts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OptionError, parseKeyval, parseSize, parseVirtArgs } from '../../../src/vmm/virt/options.js';

test('key=value rules: implied key, bare key means on, ",," escapes a comma', () => {
  const kv = parseKeyval('arm-smmuv3,accel,id=a,,b', 'driver');
  assert.deepEqual([...kv], [['driver', 'arm-smmuv3'], ['accel', 'on'], ['id', 'a,b']]);
  assert.throws(() => parseKeyval('x,a=1,a=2', 'driver'), /Parameter 'a' specified more than once/);
  assert.equal(parseSize('4G', 2 ** 20), 4 * 2 ** 30);
  assert.equal(parseSize('512', 2 ** 20), 512 * 2 ** 20);
});

test('a full command line', () => {
  const o = parseVirtArgs([
    '-machine', 'virt,accel=kvm', '-m', '8G', '-object', 'iommufd,id=iommufd0',
    '-device', 'pxb-pcie,id=pcie.1,bus_nr=0x10,bus=pcie.0',
    '-device', 'arm-smmuv3,primary-bus=pcie.0,accel=on,cmdqv=on,identifier=1,ril=off',
    '-device', 'vfio-pci,host=0009:01:00.0,iommufd=iommufd0',
    '-trace', 'tegra241_cmdqv_*',
  ]);
  assert.equal(o.memBytes, 8 * 2 ** 30);
  assert.deepEqual(o.iommufds, ['iommufd0']);
  assert.deepEqual(o.pxbs, [{ id: 'pcie.1', busNr: 0x10, bus: 'pcie.0', bypassIommu: false }]);
  assert.equal(o.smmus[0]!.cmdqv, 'on');
  assert.equal(o.smmus[0]!.identifier, 1);
  assert.equal(o.smmus[0]!.ril, 'off');
  assert.equal(o.smmus[0]!.ats, 'auto');
  // No bus=: placed later by QEMU's rule (pci-topology.ts).
  assert.deepEqual(o.vfios, [{ id: undefined, host: '0009:01:00.0', iommufd: 'iommufd0', bus: undefined }]);
  assert.deepEqual(o.trace, ['tegra241_cmdqv_*']);
});

test('errors name the option and the problem', () => {
  const bad: [string[], RegExp][] = [
    [['-foo'], /^-foo: invalid option$/],
    [['-device', 'foo'], /^-device foo: 'foo' is not a valid device model name$/],
    [['-device', 'arm-smmuv3,primary-bus=pcie.0,bogus=1'], /Property 'arm-smmuv3\.bogus' not found/],
    [['-device', 'arm-smmuv3,primary-bus=pcie.0,cmdqv=maybe'], /Parameter 'cmdqv' does not accept value 'maybe'/],
    [['-device', 'arm-smmuv3,primary-bus=pcie.0,accel=perhaps'], /Parameter 'accel' expects 'on' or 'off'/],
    [['-device', 'arm-smmuv3,primary-bus=pcie.0,identifier=300'], /^-device arm-smmuv3,primary-bus=pcie\.0,identifier=300: Parameter 'identifier' expects uint8_t$/],
    [['-device', 'arm-smmuv3'], /SMMU is not attached to any PCI bus/],
    [['-device', 'vfio-pci,iommufd=x'], /No provided host device/],
    [['-object', 'iommufd'], /Parameter 'id' is missing/],
    [['-object', 'iommufd,id=a', '-object', 'iommufd,id=a'], /Duplicate ID 'a'/],
    [['-m'], /-m: requires an argument/],
    [['-m', 'lots'], /Parameter 'size' expects/],
    [['-machine', 'q35'], /^unsupported machine type: "q35"\nUse -machine help to list supported machines$/],
  ];
  for (const [argv, re] of bad) {
    assert.throws(() => parseVirtArgs(argv), (e: unknown) => e instanceof OptionError && re.test(e.message), argv.join(' '));
  }
});
