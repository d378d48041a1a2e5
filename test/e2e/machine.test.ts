// End to end: the whole stack (guest driver -> VMM -> uAPI -> host kernel -> silicon) through
// the library's Machine, as a user runs it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { DEFAULT_HOST, type HostConfig } from '../../src/host/config.js';
import { runWorkload } from '../../src/platform/workload.js';
import { Machine } from '../../src/platform/machine.js';
import { OptionError } from '../../src/vmm/virt/options.js';

const bin = fileURLToPath(new URL('../../src/cli/bin.js', import.meta.url));
const W = { ops: 32, batch: 8, pages: 1, injectError: true, skipInvalidation: false };

describe('default machine', () => {
  test('guest-owned invalidations take the VCMDQ: zero VM exits and ioctls for them; DMA checks pass; error path works', () => {
    const m = Machine.create([]);
    const r = runWorkload(m, W);
    assert.equal(r.vcmdq.commands, 32);
    assert.equal(r.vcmdq.exits, 0);
    assert.equal(r.vcmdq.ioctls, 0);
    assert.equal(r.smmuCmdq.commands, 0);
    assert.deepEqual(r.dmaChecks, { passed: 64, failed: 0, staleHits: 0 });
    assert.equal(r.errors.cmdqvErrorsHandled, 1);
    assert.equal(r.errors.cmdqvIrqs, 1);
    assert.equal(r.hwQueues.filter((q) => q.id !== undefined).length, 2);
    assert.match(r.dmesg.join('\n'), /found companion CMDQV device: CV01/);
    assert.equal(m.interruptCounts()['tegra241-cmdqv (GSIV 148)'], 1);
  });

  test('cmdqv=off: the same invalidations trap and become HWPT_INVALIDATE ioctls', () => {
    const m = Machine.create([
      '-m', '4G', '-object', 'iommufd,id=iommufd0',
      '-device', 'arm-smmuv3,primary-bus=pcie.0,accel=on,cmdqv=off,identifier=1',
      '-device', 'vfio-pci,host=0009:01:00.0,iommufd=iommufd0',
    ]);
    const r = runWorkload(m, { ...W, injectError: false });
    assert.equal(r.vcmdq.commands, 0);
    assert.equal(r.smmuCmdq.commands, 32);
    assert.ok(r.smmuCmdq.exits > 0);
    assert.equal(r.smmuCmdq.ioctls, 4, 'one HWPT_INVALIDATE per batch (flushed at CMD_SYNC)');
    assert.equal(r.dmaChecks.failed, 0);
    assert.equal(m.smmus[0]!.cmdqv, undefined);
  });

  test('a guest that forgets an invalidation is caught by the DMA check', () => {
    const m = Machine.create([]);
    const r = runWorkload(m, { ...W, skipInvalidation: true, injectError: false });
    assert.equal(r.dmaChecks.staleHits, 32);
    assert.equal(r.dmaChecks.failed, 32);
  });
});

describe('two SMMUs each with a CMDQV on separate pxb-pcie buses', () => {
  test('each SMMU gets its own VINTF, VCMDQs, platform-bus slots and ACPI pairing', () => {
    const host: HostConfig = {
      ...DEFAULT_HOST,
      smmus: [DEFAULT_HOST.smmus[0]!, { ...DEFAULT_HOST.smmus[0]!, name: 'smmu1' }],
      devices: [DEFAULT_HOST.devices[0]!, { bdf: '0019:01:00.0', sid: 0x100, smmu: 'smmu1' }],
    };
    const m = Machine.create([
      '-m', '4G', '-object', 'iommufd,id=iommufd0',
      '-device', 'pxb-pcie,id=pcie.1,bus_nr=0x10',
      '-device', 'pxb-pcie,id=pcie.2,bus_nr=0x20,bus=pcie.0',
      '-device', 'arm-smmuv3,primary-bus=pcie.1,accel=on,cmdqv=on,identifier=1',
      '-device', 'arm-smmuv3,primary-bus=pcie.2,accel=on,cmdqv=on,identifier=2',
      '-device', 'pcie-root-port,id=rp1,bus=pcie.1,chassis=1', '-device', 'pcie-root-port,id=rp2,bus=pcie.2,chassis=2',
      '-device', 'vfio-pci,host=0009:01:00.0,iommufd=iommufd0,bus=rp1',
      '-device', 'vfio-pci,host=0019:01:00.0,iommufd=iommufd0,bus=rp2',
    ], { host });
    // docs/reference/qemu-accel-smmuv3.md §2.2: SMMUs at 0x0C000000 / 0x0C020000, CMDQVs at 0x0C080000 / 0x0C100000.
    assert.deepEqual(m.smmus.map((s) => [s.base, s.irqBaseGsiv, s.cmdqvBase, s.cmdqvGsiv]), [
      [0x0c00_0000, 144, 0x0c08_0000, 152],
      [0x0c02_0000, 148, 0x0c10_0000, 153],
    ]);
    assert.deepEqual(m.devices.map((d) => d.host.guestSid), [0x1100, 0x2100]);
    const r = runWorkload(m, W);
    assert.equal(r.vcmdq.commands, 64);
    assert.equal(r.vcmdq.exits, 0);
    assert.equal(r.dmaChecks.failed, 0);
    assert.match(r.dmesg.join('\n'), /CV01[\s\S]*CV02/);
    const vintfs = [0, 1].map((i) => m.host.smmus.get(`smmu${i}`)!.cmdqvHw!.read(0x1100, 4) & 1);
    assert.deepEqual(vintfs, [1, 1], 'a VINTF enabled on each host CMDQV');
  });
});

describe('bad input', () => {
  const bad: [string[], RegExp][] = [
    [['-device', 'vfio-pci,host=0009:01:00.0,iommufd=i0', '-object', 'iommufd,id=i0'], /behind no arm-smmuv3/],
    [['-object', 'iommufd,id=i0', '-device', 'pxb-pcie,id=pcie.1,bus_nr=0x10',
      '-device', 'arm-smmuv3,primary-bus=pcie.0,accel=on,identifier=1', '-device', 'arm-smmuv3,primary-bus=pcie.1,accel=on,identifier=1'], /identifier 1 is already used/],
    [['-object', 'iommufd,id=i0', '-device', 'arm-smmuv3,primary-bus=pcie.0,accel=on,cmdqv=on'], /cmdqv=on requires at least one cold-plugged VFIO device/],
    [['-object', 'iommufd,id=i0', '-device', 'arm-smmuv3,primary-bus=pcie.0,cmdqv=on'], /cmdqv can only be enabled if accel=on/],
    [['-object', 'iommufd,id=i0', '-device', 'arm-smmuv3,primary-bus=pcie.9,accel=on'], /^-device arm-smmuv3,primary-bus=pcie\.9,accel=on: Device 'pcie\.9' not found$/],
    [['-object', 'iommufd,id=i0', '-device', 'arm-smmuv3,primary-bus=pcie.0,accel=on', '-device', 'vfio-pci,host=0009:01:00.0'], /without an iommufd backend/],
    [['-trace', 'nonexistent_event_*'], /no trace event matches/],
  ];
  for (const [argv, re] of bad) {
    test(`${argv.join(' ').slice(0, 70)}...`, () => {
      assert.throws(() => Machine.create(argv), (e: unknown) => e instanceof OptionError && re.test(e.message));
    });
  }

  test('the CLI prints the error without a stack trace and exits 1', () => {
    const p = spawnSync(process.execPath, [bin, 'run', '--', '-device', 'arm-smmuv3,primary-bus=pcie.0,accel=on,cmdqv=sometimes'], { encoding: 'utf8' });
    assert.equal(p.status, 1);
    assert.match(p.stderr, /^qemu-system-aarch64: -device arm-smmuv3,primary-bus=pcie.0,accel=on,cmdqv=sometimes: /);
    assert.doesNotMatch(p.stderr, /\n\s+at /, 'no stack trace');
  });

  test('migration of a CMDQV machine is refused with QEMU\'s reason', () => {
    assert.throws(() => Machine.create([]).migrate(), /Migration not supported with SMMUv3 accelerator mode enabled/);
  });
});
