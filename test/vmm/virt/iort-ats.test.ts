// The IORT root-complex ATS attribute agrees with what each vSMMU advertises in IDR0.ATS after
// `ats=auto` is resolved from the host (issue 14 #7.1; docs/reference/acpi.md §2.4).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { IDR0 } from '../../../src/arch/smmuv3/registers.js';
import { DEFAULT_HOST, GRACE_SMMU_IDR, type HostConfig } from '../../../src/host/config.js';
import { Machine } from '../../../src/platform/machine.js';

/** Byte offset of the ATS Attribute in a root-complex node (after the 16-byte header and the 8-byte memory properties). */
const RC_ATS_OFFSET = 24;
const IORT_NODE_COUNT = 36;
const IORT_NODE_OFFSET = 40;
const NODE_TYPE_ROOT_COMPLEX = 2;

/** The raw ATS Attribute word of the (single) root-complex node, read from the table bytes. */
function rcAtsWord(iort: Uint8Array): number {
  const dv = new DataView(iort.buffer, iort.byteOffset, iort.byteLength);
  let at = dv.getUint32(IORT_NODE_OFFSET, true);
  for (let n = dv.getUint32(IORT_NODE_COUNT, true); n > 0; n--) {
    if (dv.getUint8(at) === NODE_TYPE_ROOT_COMPLEX) return dv.getUint32(at + RC_ATS_OFFSET, true);
    at += dv.getUint16(at + 1, true);
  }
  throw new Error('no root-complex node');
}

function idr0Ats(m: Machine): number {
  return IDR0.f.ATS.get(m.as.read32(m.smmus[0]!.base + IDR0.spec.offset));
}

function line(ats: string): string[] {
  return [
    '-m', '4G', '-object', 'iommufd,id=iommufd0',
    '-device', `arm-smmuv3,primary-bus=pcie.0,accel=on,cmdqv=on,ats=${ats},identifier=1`,
    '-device', 'vfio-pci,host=0009:01:00.0,iommufd=iommufd0',
  ];
}

const NO_ATS_HOST: HostConfig = {
  ...DEFAULT_HOST,
  smmus: [{ ...DEFAULT_HOST.smmus[0]!, idr: [IDR0.f.ATS.set(GRACE_SMMU_IDR[0], 0) >>> 0, ...GRACE_SMMU_IDR.slice(1)] as unknown as HostConfig['smmus'][0]['idr'] }],
};

describe('IORT root-complex ATS attribute follows the vSMMU (issue 14 #7.1)', () => {
  test('default machine (ats=auto on a Grace host): IDR0.ATS=1 and the IORT says ATS supported', () => {
    const m = Machine.create([]);
    assert.equal(idr0Ats(m), 1);
    assert.equal(rcAtsWord(m.acpi.iort), 1);
  });

  test('ats=auto on a host SMMU without ATS: IDR0.ATS=0 and the IORT says no ATS', () => {
    const m = Machine.create(line('auto'), { host: NO_ATS_HOST });
    assert.equal(idr0Ats(m), 0);
    assert.equal(rcAtsWord(m.acpi.iort), 0);
  });

  test('ats=off: neither IDR0 nor the IORT advertise ATS', () => {
    const m = Machine.create(line('off'));
    assert.equal(idr0Ats(m), 0);
    assert.equal(rcAtsWord(m.acpi.iort), 0);
  });

  test('ats=on: both advertise ATS', () => {
    const m = Machine.create(line('on'));
    assert.equal(idr0Ats(m), 1);
    assert.equal(rcAtsWord(m.acpi.iort), 1);
  });
});
