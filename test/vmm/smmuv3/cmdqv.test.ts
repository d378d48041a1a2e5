// CMDQV selection (off / auto / on) through a recording fake CmdqvOps, probe failures, vIOMMU
// allocation through the ops and its unwinding, the unplug blocker, reset ordering and the
// IDR1.CMDQS cap, and unplug without a CMDQV.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as R from '../../../src/arch/smmuv3/registers.js';
import { AccelSmmuV3, CMDQV_UNPLUG_BLOCKER_TEXT } from '../../../src/vmm/smmuv3/accel-smmuv3.js';
import { SMMUV3_CMDQV_NONE, SMMUV3_CMDQV_TEGRA241, type CmdqvHost, type CmdqvOps } from '../../../src/vmm/smmuv3/cmdqv-ops.js';
import { attachedTo, Guest, hostVdevice, makeRig, type Rig } from './rig.js';

interface Fake {
  calls: string[];
  host: CmdqvHost | undefined;
  factory: (host: CmdqvHost) => CmdqvOps;
}

/**
 * A CMDQV that records its calls. Its vIOMMU is a real TEGRA241_CMDQV vIOMMU on the host; its
 * reset caps CMDQS from the smallest RAM page size, as Tegra241's does.
 */
function fakeCmdqv(opts: { probeError?: string; initError?: string; allocViommu?: (host: CmdqvHost, devId: number, s2: number) => number } = {}): Fake {
  const f: Fake = {
    calls: [],
    host: undefined,
    factory: (host) => {
      f.calls.push('factory');
      f.host = host;
      let viommu: number | undefined;
      return {
        probe: (dev) => {
          f.calls.push(`probe(${dev.devId})`);
          if (opts.probeError) throw new Error(opts.probeError);
        },
        init: () => {
          f.calls.push('init');
          if (opts.initError) throw new Error(opts.initError);
        },
        allocViommu: (dev, s2) => {
          f.calls.push(`allocViommu(${dev.devId},${s2})`);
          viommu = opts.allocViommu
            ? opts.allocViommu(host, dev.devId, s2)
            : host.backend.allocViommu(dev.devId, 2, s2, new Uint8Array(16)).viommuId;
          return viommu;
        },
        freeViommu: () => {
          f.calls.push('freeViommu');
          if (viommu !== undefined && viommu < 1000) host.backend.freeId(viommu, () => {});
        },
        getType: () => SMMUV3_CMDQV_TEGRA241,
        reset: () => {
          f.calls.push('reset');
          const ctz = Math.log2(host.minRamPageSize());
          host.setCmdqs(Math.min(ctz - 4, host.getCmdqs()));
        },
      };
    },
  };
  return f;
}

function viommuAllocs(rig: Rig): Record<string, unknown>[] {
  return rig.backend.calls.filter((c) => c.name === 'IOMMU_VIOMMU_ALLOC').map((c) => c.args);
}

describe('CMDQV selection', () => {
  test('cmdqv=off: the factory is never used; plain ARM_SMMUV3 vIOMMU', () => {
    const f = fakeCmdqv();
    const rig = makeRig({ props: { cmdqv: 'off' }, cmdqvFactory: f.factory });
    rig.smmu.attachDevice(rig.devs[0]!);
    assert.deepEqual(f.calls, []);
    assert.deepEqual(viommuAllocs(rig).map((a) => [a.type, a.dev_id, a.hwpt_id, a.data_len]), [[1, rig.devs[0]!.devId, rig.s2, 0]]);
    assert.equal(rig.smmu.cmdqvType(), SMMUV3_CMDQV_NONE);
    assert.equal(rig.smmu.cmdqvOps, undefined);
    assert.equal(rig.smmu.deviceState(rig.devs[0]!.guestSid)!.blocker, undefined);
  });

  test('cmdqv=auto with a supporting host: probe, init, vIOMMU through the ops, unplug blocker', () => {
    const f = fakeCmdqv();
    const rig = makeRig({ props: { cmdqv: 'auto' }, cmdqvFactory: f.factory });
    const [d0, d1] = [rig.devs[0]!, rig.devs[1]!];
    rig.smmu.attachDevice(d0);
    rig.smmu.attachDevice(d1);
    assert.deepEqual(f.calls, ['factory', `probe(${d0.devId})`, 'init', `allocViommu(${d0.devId},${rig.s2})`]);
    assert.deepEqual(viommuAllocs(rig).map((a) => a.type), [2], 'one TEGRA241_CMDQV vIOMMU');
    assert.equal(rig.smmu.cmdqvType(), SMMUV3_CMDQV_TEGRA241);
    assert.ok(rig.smmu.cmdqvOps);
    // Abort/bypass HWPTs live on the CMDQV's vIOMMU; the second device joins it.
    assert.equal(attachedTo(rig, 0), rig.smmu.bypassHwptId);
    assert.equal(attachedTo(rig, 1), rig.smmu.bypassHwptId);
    // The device that established the association cannot be unplugged; the other can.
    assert.throws(() => rig.smmu.unplug(d0), { message: CMDQV_UNPLUG_BLOCKER_TEXT });
    assert.equal(attachedTo(rig, 0), rig.smmu.bypassHwptId, 'refused unplug changed nothing');
    const g = new Guest(rig);
    g.init({ smmuen: true }); // installs both devices' STEs: vDEVICEs exist
    assert.ok(hostVdevice(rig, 1));
    rig.smmu.unplug(d1);
    assert.equal(attachedTo(rig, 1), rig.s2, 'back on the stage-2 HWPT');
    assert.equal(hostVdevice(rig, 1), undefined, 'vDEVICE destroyed');
    assert.notEqual(rig.smmu.viommuId, undefined, 'the vIOMMU stays with device 0');
    assert.equal(rig.smmu.deviceState(d1.guestSid), undefined);
  });

  test('reset: GBPA HWPT re-attached, then the CMDQV reset, which caps IDR1.CMDQS', () => {
    const f = fakeCmdqv();
    const rig = makeRig({ props: { cmdqv: 'auto' }, cmdqvFactory: f.factory });
    rig.smmu.attachDevice(rig.devs[0]!);
    const g = new Guest(rig);
    assert.equal((g.r32(R.IDR1.spec.offset) >>> 21) & 0x1f, 19);
    const from = rig.backend.calls.length;
    f.calls.length = 0;
    rig.smmu.reset();
    assert.deepEqual(rig.backend.calls.slice(from).map((c) => c.name), ['VFIO_DEVICE_ATTACH_IOMMUFD_PT']);
    assert.deepEqual(f.calls, ['reset']);
    assert.equal(f.host!.getCmdqs(), 19, '1 GiB pages: 30 - 4 > 19, capped at 19');
    // setCmdqs is what the guest reads in IDR1.CMDQS.
    f.host!.setCmdqs(3);
    assert.equal((g.r32(R.IDR1.spec.offset) >>> 21) & 0x1f, 3);
    rig.smmu.reset();
    assert.equal((g.r32(R.IDR1.spec.offset) >>> 21) & 0x1f, 19, 'reset restores 19, the CMDQV caps from there');
  });

  test('cmdqv=auto with a 4 KiB-page guest: CMDQS 8 after reset', () => {
    const f = fakeCmdqv();
    const rig = makeRig({ props: { cmdqv: 'auto' }, cmdqvFactory: f.factory });
    const smmu = new AccelSmmuV3(
      { ...rig.smmu.props },
      { ...rig.deps, minRamPageSize: () => 4096 },
    );
    smmu.setS2Hwpt(rig.s2);
    smmu.attachDevice(rig.devs[0]!);
    smmu.reset();
    assert.equal((smmu.mmio.ops!.read(R.IDR1.spec.offset, 4) >>> 21) & 0x1f, 8);
  });

  test('cmdqv=auto with a probe failure: silently a plain vIOMMU, no blocker', () => {
    const f = fakeCmdqv({ probeError: 'Host CMDQV: unsupported version 2 (expected 1)' });
    const rig = makeRig({ props: { cmdqv: 'auto' }, cmdqvFactory: f.factory });
    rig.smmu.attachDevice(rig.devs[0]!);
    assert.deepEqual(f.calls, ['factory', `probe(${rig.devs[0]!.devId})`]);
    assert.deepEqual(viommuAllocs(rig).map((a) => a.type), [1]);
    assert.equal(rig.smmu.cmdqvType(), SMMUV3_CMDQV_NONE);
    rig.smmu.unplug(rig.devs[0]!);
    assert.equal(rig.smmu.viommuId, undefined);
  });

  test('cmdqv=auto without CMDQV support compiled in: plain vIOMMU', () => {
    const rig = makeRig({ props: { cmdqv: 'auto' } });
    rig.smmu.attachDevice(rig.devs[0]!);
    assert.deepEqual(viommuAllocs(rig).map((a) => a.type), [1]);
  });

  test('cmdqv=on with a probe failure: the attach fails with the probe message and the hint', () => {
    const f = fakeCmdqv({ probeError: 'Host CMDQV: unsupported version 2 (expected 1)' });
    const rig = makeRig({ props: { cmdqv: 'on' }, cmdqvFactory: f.factory });
    assert.throws(() => rig.smmu.attachDevice(rig.devs[0]!), {
      message: 'Host CMDQV: unsupported version 2 (expected 1)\nCMDQV requested but not supported',
    });
    assert.deepEqual(viommuAllocs(rig), []);
    assert.equal(rig.smmu.viommuId, undefined);
    assert.equal(rig.smmu.deviceState(rig.devs[0]!.guestSid), undefined);
    assert.equal(attachedTo(rig, 0), rig.s2);
  });

  test('cmdqv=on without CMDQV support compiled in: "No CMDQV ops found"', () => {
    const rig = makeRig({ props: { cmdqv: 'on' } });
    assert.throws(() => rig.smmu.attachDevice(rig.devs[0]!), { message: 'No CMDQV ops found\nCMDQV requested but not supported' });
  });

  test('an init failure fails the selection', () => {
    const f = fakeCmdqv({ initError: 'Tegra241 CMDQV requires SMMUv3 acceleration' });
    const rig = makeRig({ props: { cmdqv: 'auto' }, cmdqvFactory: f.factory });
    assert.throws(() => rig.smmu.attachDevice(rig.devs[0]!), { message: 'Tegra241 CMDQV requires SMMUv3 acceleration' });
    assert.equal(rig.smmu.cmdqvOps, undefined);
  });

  test('a vIOMMU allocation failure in the ops: hinted error, nothing left behind', () => {
    const f = fakeCmdqv({
      allocViommu: (host, devId) => host.backend.allocViommu(devId, 2, 9999, new Uint8Array(16)).viommuId,
    });
    const rig = makeRig({ props: { cmdqv: 'on' }, cmdqvFactory: f.factory });
    assert.throws(() => rig.smmu.attachDevice(rig.devs[0]!), {
      message: `IOMMU_VIOMMU_ALLOC failed: No such file or directory\nUnable to alloc vIOMMU: hiodi devid 0x${rig.devs[0]!.devId.toString(16)}: `,
    });
    assert.equal(rig.smmu.viommuId, undefined);
    assert.ok(!f.calls.includes('freeViommu'), 'nothing to free yet');
  });

  test('a failure after the ops allocated the vIOMMU unwinds through ops.freeViommu', () => {
    // The ops hand back an id the host does not know: the abort HWPT allocation fails.
    const f = fakeCmdqv({ allocViommu: () => 4242 });
    const rig = makeRig({ props: { cmdqv: 'on' }, cmdqvFactory: f.factory });
    assert.throws(() => rig.smmu.attachDevice(rig.devs[0]!), { message: /^Failed to allocate hwpt: No such file or directory\nUnable to alloc vIOMMU/ });
    assert.equal(f.calls.at(-1), 'freeViommu');
    assert.equal(rig.smmu.viommuId, undefined);
  });

  test('stats count the ioctls the CMDQV makes on the SMMU\'s behalf', () => {
    const f = fakeCmdqv();
    const rig = makeRig({ props: { cmdqv: 'auto' }, cmdqvFactory: f.factory });
    const from = rig.backend.calls.length;
    rig.smmu.attachDevice(rig.devs[0]!);
    assert.equal(rig.smmu.stats.ioctls, rig.backend.calls.length - from);
  });
});

describe('unplug without CMDQV', () => {
  test('the last device takes the vIOMMU, its HWPTs and vEVENTQ with it', () => {
    const rig = makeRig();
    const g = new Guest(rig);
    rig.smmu.attachDevice(rig.devs[0]!);
    g.init({ smmuen: true, eventq: 2 });
    const ids = [rig.smmu.veventq!.id, rig.smmu.bypassHwptId, rig.smmu.abortHwptId, rig.smmu.viommuId];
    const vdev = rig.smmu.deviceState(rig.devs[0]!.guestSid)!.vdevId;
    const from = rig.backend.calls.length;
    rig.smmu.unplug(rig.devs[0]!);
    const calls = rig.backend.calls.slice(from);
    assert.deepEqual(calls.map((c) => [c.name, c.ret]), [
      ['VFIO_DEVICE_ATTACH_IOMMUFD_PT', 0],
      ['IOMMU_DESTROY', 0], // vDEVICE
      ['IOMMU_DESTROY', 0], // vEVENTQ
      ['IOMMU_DESTROY', 0], // bypass
      ['IOMMU_DESTROY', 0], // abort
      ['IOMMU_DESTROY', 0], // vIOMMU
    ]);
    assert.deepEqual(calls.slice(1).map((c) => c.args.id), [vdev, ...ids]);
    assert.equal(attachedTo(rig, 0), rig.s2);
    assert.equal(rig.smmu.viommuId, undefined);
    assert.deepEqual(rig.smmu.hostErrors, []);
    // A new device builds a new vIOMMU.
    rig.smmu.attachDevice(rig.devs[1]!);
    assert.notEqual(rig.smmu.viommuId, undefined);
  });

  test('attaching the same device twice is a no-op; another device on the same SID is refused', () => {
    const rig = makeRig();
    rig.smmu.attachDevice(rig.devs[0]!);
    const n = rig.backend.calls.length;
    rig.smmu.attachDevice(rig.devs[0]!);
    assert.equal(rig.backend.calls.length, n);
    assert.throws(() => rig.smmu.attachDevice({ ...rig.devs[1]!, guestSid: rig.devs[0]!.guestSid }), {
      message: `Device already has an associated hiodi 0x${rig.devs[1]!.devId.toString(16)}`,
    });
  });

  test('no backend: the attach is refused with QEMU\'s text; no S2 HWPT: hinted error', () => {
    const rig = makeRig();
    const noBe = new AccelSmmuV3(
      { ...rig.smmu.props },
      { ...rig.deps, backend: undefined },
    );
    assert.throws(() => noBe.attachDevice(rig.devs[0]!), {
      message: 'vfio-pci endpoint devices without an iommufd backend not allowed when using arm-smmuv3,accel=on',
    });
    const noS2 = new AccelSmmuV3({ ...rig.smmu.props }, rig.deps);
    assert.throws(() => noS2.attachDevice(rig.devs[0]!), /setS2Hwpt/);
  });
});
