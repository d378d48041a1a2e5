// The accelerated SMMUv3's register file: reset values, ID register derivation from the
// properties and the host, every host-incompatibility text, property validation, GBPA update,
// CR0/IRQ_CTRL acknowledgement, and guest errors for bad accesses.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as R from '../../../src/arch/smmuv3/registers.js';
import { DEFAULT_HOST, GRACE_SMMU_IDR, type HostConfig } from '../../../src/host/config.js';
import { AccelSmmuV3, MIGRATION_BLOCKER_TEXT } from '../../../src/vmm/smmuv3/accel-smmuv3.js';
import type { AccelSmmuV3Properties } from '../../../src/vmm/smmuv3/properties.js';
import { attachedTo, DEFAULT_PROPS, Guest, makeRig } from './rig.js';

/** QEMU's IDRs for a stage-1 accel SMMU before `auto` properties are resolved. */
const IDR0 = 0x0d44_101a; // S1P TTF=AArch64 COHACC ASID16 VMID16 TTENDIAN=LE STALL_MODEL=1 TERM_MODEL ST_LEVEL=2lvl
const IDR1 = 0x0273_0010; // SIDSIZE=16 EVENTQS=19 CMDQS=19
const IDR3 = 0x0000_1404; // HAD RIL BBML=2
const IDR5 = 0x0000_0074; // OAS=44 GRAN4K GRAN16K GRAN64K

function hostWith(change: (idr: number[]) => void): HostConfig {
  const idr = [...GRACE_SMMU_IDR];
  change(idr);
  return { ...DEFAULT_HOST, smmus: [{ ...DEFAULT_HOST.smmus[0]!, idr: idr as unknown as HostConfig['smmus'][0]['idr'] }] };
}

/** Every register's guest-visible reset value. */
function expectedResetValues(): Map<string, bigint> {
  const m = new Map<string, bigint>();
  for (const r of R.smmuv3Layout().registers) m.set(r.name, 0n);
  m.set('IDR0', BigInt(IDR0));
  m.set('IDR1', BigInt(IDR1));
  m.set('IDR3', BigInt(IDR3));
  m.set('IDR5', BigInt(IDR5));
  m.set('AIDR', 1n);
  m.set('GBPA', 0x1000n);
  m.set('CMDQ_BASE', 19n);
  m.set('EVENTQ_BASE', 19n);
  return m;
}

function readAll(g: Guest): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const r of R.smmuv3Layout().registers) {
    const lo = BigInt(g.r32(r.offset));
    const hi = r.width === 64 ? BigInt(g.r32(r.offset + 4)) : 0n;
    out.set(r.name, (hi << 32n) | lo);
  }
  return out;
}

describe('AccelSmmuV3 registers', () => {
  test('every register reads its reset value, and reset() restores them', () => {
    const rig = makeRig();
    const g = new Guest(rig);
    assert.deepEqual(readAll(g), expectedResetValues());
    assert.equal(rig.log.count('guest_error'), 0, 'no register read is a guest error');
    // Dirty everything writable, then reset.
    g.init({ smmuen: true, eventq: 4, irqs: 0b101 });
    g.w32(R.CR1.spec.offset, 0xfff);
    g.w32(R.CR2.spec.offset, 0x7);
    g.w32(R.GBPA.spec.offset, 0x8010_0000);
    g.w64(R.GERROR_IRQ_CFG0.spec.offset, 0x1234_5670n);
    g.w32(R.GERROR_IRQ_CFG1.spec.offset, 0x55);
    g.w32(R.GERROR_IRQ_CFG2.spec.offset, 0x3);
    g.w64(R.EVENTQ_IRQ_CFG0.spec.offset, 0x8000n);
    g.w32(R.EVENTQ_IRQ_CFG1.spec.offset, 0x66);
    g.w32(R.EVENTQ_IRQ_CFG2.spec.offset, 0x1);
    assert.notDeepEqual(readAll(g), expectedResetValues());
    rig.smmu.reset();
    assert.deepEqual(readAll(g), expectedResetValues());
  });

  test('64-bit registers are accessible as one 8-byte access and as two halves', () => {
    const rig = makeRig();
    const g = new Guest(rig);
    g.w64(R.STRTAB_BASE.spec.offset, 0x4000_1234_5678_9ac0n);
    assert.equal(g.r64(R.STRTAB_BASE.spec.offset), 0x4000_1234_5678_9ac0n);
    assert.equal(g.r32(R.STRTAB_BASE.spec.offset + 4), 0x4000_1234);
    g.w32(R.CMDQ_BASE.spec.offset, 0x0010_0008);
    g.w32(R.CMDQ_BASE.spec.offset + 4, 0x4000_0000);
    assert.equal(g.r64(R.CMDQ_BASE.spec.offset), 0x4000_0000_0010_0008n);
  });

  test('CR0 is acknowledged in CR0ACK and IRQ_CTRL in IRQ_CTRLACK', () => {
    const rig = makeRig();
    const g = new Guest(rig);
    g.w32(R.CR0.spec.offset, 0b1100);
    assert.equal(g.r32(R.CR0ACK.spec.offset), 0b1100);
    g.w32(R.IRQ_CTRL.spec.offset, 0b101);
    assert.equal(g.r32(R.IRQ_CTRLACK.spec.offset), 0b101);
    g.w32(R.CR0.spec.offset, 0);
    assert.equal(g.r32(R.CR0ACK.spec.offset), 0);
  });

  test('writes to read-only registers are guest errors and change nothing', () => {
    const rig = makeRig();
    const g = new Guest(rig);
    g.w32(R.IDR0.spec.offset, 0);
    g.w32(R.GERROR.spec.offset, 1);
    g.w32(R.CR0ACK.spec.offset, 0xf);
    assert.equal(g.r32(R.IDR0.spec.offset), IDR0);
    assert.equal(g.r32(R.GERROR.spec.offset), 0);
    assert.equal(g.r32(R.CR0ACK.spec.offset), 0);
    assert.equal(rig.log.count('guest_error'), 3);
    g.r32(0x1000); // hole
    assert.equal(rig.log.count('guest_error'), 4);
  });

  test('explicit properties override the ID registers at realize', () => {
    const rig = makeRig({ props: { ats: 'on', ril: 'off', oas: 48, ssidsize: 16 } });
    const g = new Guest(rig);
    assert.equal(g.r32(R.IDR0.spec.offset), IDR0 | (1 << 10), 'ATS');
    assert.equal(g.r32(R.IDR1.spec.offset), IDR1 | (16 << 6), 'SSIDSIZE');
    assert.equal(g.r32(R.IDR3.spec.offset), IDR3 & ~(1 << 10), 'no RIL');
    assert.equal(g.r32(R.IDR5.spec.offset), (IDR5 & ~7) | 5, 'OAS 48');
    // The host (Grace) supports all of it: the attach succeeds and keeps the values.
    rig.smmu.attachDevice(rig.devs[0]!);
    assert.equal(g.r32(R.IDR3.spec.offset), IDR3 & ~(1 << 10));
    assert.equal(rig.smmu.autoFinalised, false, 'nothing was auto');
  });

  test('auto properties are resolved from the first host device', () => {
    const rig = makeRig();
    const g = new Guest(rig);
    assert.equal(rig.smmu.autoMode, true);
    rig.smmu.attachDevice(rig.devs[0]!);
    assert.equal(rig.smmu.autoFinalised, true);
    // Grace: ATS, SSIDSIZE 20, RIL, 48-bit OAS.
    assert.equal(g.r32(R.IDR0.spec.offset), IDR0 | (1 << 10));
    assert.equal(g.r32(R.IDR1.spec.offset), IDR1 | (20 << 6));
    assert.equal(g.r32(R.IDR3.spec.offset), IDR3);
    assert.equal(g.r32(R.IDR5.spec.offset), (IDR5 & ~7) | 5);
    assert.ok(rig.backend.calls.some((c) => c.name === 'IOMMU_GET_HW_INFO' && c.args.in_data_type === 0 && c.args.data_len === 40));
    // The values survive reset (they are realize-time values, like QEMU's).
    rig.smmu.reset();
    assert.equal(g.r32(R.IDR1.spec.offset), IDR1 | (20 << 6));
  });

  test('auto follows a host without RIL/ATS instead of failing', () => {
    const rig = makeRig({ host: hostWith((idr) => {
      idr[0] = (idr[0]! & ~(1 << 10)) >>> 0;
      idr[3] = (idr[3]! & ~(1 << 10)) >>> 0;
      idr[5] = ((idr[5]! & ~7) | 4) >>> 0;
    }) });
    const g = new Guest(rig);
    rig.smmu.attachDevice(rig.devs[0]!);
    assert.equal(g.r32(R.IDR0.spec.offset) & (1 << 10), 0);
    assert.equal(g.r32(R.IDR3.spec.offset) & (1 << 10), 0);
    assert.equal(g.r32(R.IDR5.spec.offset) & 7, 4);
  });

  const incompatible: [string, Partial<AccelSmmuV3Properties>, (idr: number[]) => void, string][] = [
    ['stream table format', {}, (i) => { i[0] = (i[0]! & ~(3 << 27)) >>> 0; }, 'Host SMMUv3 Stream Table format mismatch (host STLEVEL=0, QEMU STLEVEL=1)'],
    ['endianness', {}, (i) => { i[0] = (i[0]! | (3 << 21)) >>> 0; }, "Host SMMUv3 doesn't support Little-endian translation table"],
    ['table format', {}, (i) => { i[0] = ((i[0]! & ~(3 << 2)) | (1 << 2)) >>> 0; }, "Host SMMUv3 doesn't support AArch64 translation table format"],
    ['SIDSIZE', {}, (i) => { i[1] = ((i[1]! & ~0x3f) | 12) >>> 0; }, 'Host SMMUv3 SIDSIZE not compatible (host=12, QEMU=16)'],
    ['SSIDSIZE', { ssidsize: 20 }, (i) => { i[1] = ((i[1]! & ~(0x1f << 6)) | (10 << 6)) >>> 0; }, 'Host SMMUv3 SSIDSIZE not compatible (host=10, QEMU=20)'],
    ['RIL', { ril: 'on' }, (i) => { i[3] = (i[3]! & ~(1 << 10)) >>> 0; }, "Host SMMUv3 doesn't support Range Invalidation"],
    ['OAS', { oas: 48 }, (i) => { i[5] = ((i[5]! & ~7) | 4) >>> 0; }, 'Host SMMUv3 supports only 44-bit IPA, but the vSMMU OAS implies 48-bit IPA'],
    ['ATS', { ats: 'on' }, (i) => { i[0] = (i[0]! & ~(1 << 10)) >>> 0; }, "Host SMMUv3 doesn't support Address Translation Services"],
    ['4K granule', {}, (i) => { i[5] = (i[5]! & ~(1 << 4)) >>> 0; }, "Host SMMUv3 doesn't support 4K translation granule"],
    ['16K granule', {}, (i) => { i[5] = (i[5]! & ~(1 << 5)) >>> 0; }, "Host SMMUv3 doesn't support 16K translation granule"],
    ['64K granule', {}, (i) => { i[5] = (i[5]! & ~(1 << 6)) >>> 0; }, "Host SMMUv3 doesn't support 64K translation granule"],
  ];
  for (const [what, props, change, text] of incompatible) {
    test(`host incompatibility: ${what}`, () => {
      const rig = makeRig({ props, host: hostWith(change) });
      assert.throws(() => rig.smmu.attachDevice(rig.devs[0]!), { message: text });
      assert.equal(rig.smmu.viommuId, undefined, 'no vIOMMU');
      assert.equal(attachedTo(rig, 0), rig.s2, 'device untouched');
      assert.equal(rig.backend.calls.filter((c) => c.name === 'IOMMU_VIOMMU_ALLOC').length, 0);
    });
  }

  test('a device the host does not know fails with the backend text', () => {
    const rig = makeRig();
    assert.throws(() => rig.smmu.attachDevice({ ...rig.devs[0]!, devId: 999, guestSid: 0x20 }), {
      message: 'Failed to get hardware info: No such file or directory',
    });
  });

  test('GBPA: writes without UPDATE are ignored; UPDATE applies and reads back clear', () => {
    const rig = makeRig();
    const g = new Guest(rig);
    const GBPA = R.GBPA.spec.offset;
    g.w32(GBPA, 1 << 20);
    assert.equal(g.r32(GBPA), 0x1000);
    g.w32(GBPA, (1 << 31) | (1 << 20));
    assert.equal(g.r32(GBPA) >>> 0, 1 << 20, 'ABORT, UPDATE complete');
    g.w32(GBPA, (1 << 31) | 0x1000);
    assert.equal(g.r32(GBPA), 0x1000);
  });

  test('GBPA selects the HWPT while the SMMU is disabled: abort stops DMA, bypass is IPA = IOVA', () => {
    const rig = makeRig();
    const g = new Guest(rig);
    rig.smmu.attachDevice(rig.devs[0]!);
    assert.equal(attachedTo(rig, 0), rig.smmu.bypassHwptId, 'GBPA reset value: bypass');
    const dev = rig.kernel.devices[0]!;
    const ok = dev.dmaWrite(0x5000, new Uint8Array([9, 8, 7]));
    assert.equal(ok.ok, true);
    assert.equal(ok.pa, rig.proc.mem.translate(rig.ramVa + 0x5000));
    g.w32(R.GBPA.spec.offset, (1 << 31) | (1 << 20));
    assert.equal(attachedTo(rig, 0), rig.smmu.abortHwptId);
    const ab = dev.dmaRead(0x5000, 4);
    assert.equal(ab.ok, false);
    g.w32(R.GBPA.spec.offset, (1 << 31) | 0x1000);
    assert.equal(attachedTo(rig, 0), rig.smmu.bypassHwptId);
    // reset() re-attaches the reset GBPA choice (bypass).
    g.w32(R.GBPA.spec.offset, (1 << 31) | (1 << 20));
    rig.smmu.reset();
    assert.equal(attachedTo(rig, 0), rig.smmu.bypassHwptId);
  });

  test('migration blocker with accel=on only', () => {
    const rig = makeRig();
    assert.equal(rig.smmu.migrationBlocker, MIGRATION_BLOCKER_TEXT);
    const plain = new AccelSmmuV3({ ...DEFAULT_PROPS, accel: false, ats: 'auto', ril: 'auto' }, rig.deps);
    assert.equal(plain.migrationBlocker, undefined);
    assert.throws(() => plain.attachDevice(rig.devs[0]!), /accel=off/);
  });

  test('mmio region: size, name, access rules', () => {
    const rig = makeRig();
    assert.equal(rig.smmu.mmio.size, 0x20000);
    assert.equal(rig.smmu.mmio.kind, 'mmio');
    assert.equal(rig.smmu.irqs.length, 4);
  });
});

describe('AccelSmmuV3 properties', () => {
  const rig = makeRig({ noSmmu: true });
  const bad: [Partial<AccelSmmuV3Properties>, string][] = [
    [{ accel: false, cmdqv: 'on' }, 'cmdqv can only be enabled if accel=on'],
    [{ accel: false, cmdqv: 'auto', ril: 'off' }, 'ril can only be disabled if accel=on'],
    [{ accel: false, cmdqv: 'auto', ats: 'on' }, 'ats can only be enabled if accel=on'],
    [{ accel: false, cmdqv: 'auto', oas: 48 }, 'oas must be 44 bits when accel=off'],
    [{ accel: false, cmdqv: 'auto', ssidsize: 4 }, 'ssidsize can only be greater than 0 bits if accel=on'],
    [{ stage: '2' }, 'Only stage1 is supported for SMMUv3 with accel=on'],
    [{ stage: 'nested' }, 'Only stage1 is supported for SMMUv3 with accel=on'],
    [{ oas: 52 as never }, "Parameter 'oas' does not accept value '52'"],
    [{ ssidsize: 21 }, "Parameter 'ssidsize' does not accept value '21'"],
    [{ cmdqv: 'yes' as never }, "Parameter 'cmdqv' does not accept value 'yes'"],
    [{ identifier: 256 }, "Parameter 'identifier' expects uint8_t"],
  ];
  for (const [p, text] of bad) {
    test(`rejects ${JSON.stringify(p)}`, () => {
      assert.throws(() => new AccelSmmuV3({ ...DEFAULT_PROPS, ...p }, rig.deps), { message: text });
    });
  }
  test('accepts stage "1", accel=off with defaults, identifier 255', () => {
    new AccelSmmuV3({ ...DEFAULT_PROPS, stage: '1', identifier: 255, cmdqv: 'on' }, rig.deps);
    new AccelSmmuV3({ ...DEFAULT_PROPS, accel: false, cmdqv: 'off', stage: '2' }, rig.deps);
  });
});
