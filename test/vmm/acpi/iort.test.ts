// The IORT builder against QEMU's bios-tables-test blobs, the accelerated (RMR) layout of
// docs/reference/acpi.md §2.4/§2.7, and the guest-side decoder.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  AcpiError,
  buildIort,
  byteSum,
  MSI_IOVA_BASE,
  MSI_IOVA_LENGTH,
  planIort,
  type AcpiTopology,
} from '../../../src/vmm/acpi/index.js';
import { iortRouteRid, parseIort, type ParsedIort } from '../../../src/guest/acpi-parse.js';
import { golden, GOLDEN_TOPOLOGIES, hex, NO_GOLDEN, ONE_CMDQV, TWO_CMDQV } from './fixtures.js';

const u32 = (b: Uint8Array, at: number): number => new DataView(b.buffer, b.byteOffset).getUint32(at, true);

describe('IORT byte-for-byte equal to QEMU (shared/acpi-golden)', () => {
  for (const [name, topo] of Object.entries(GOLDEN_TOPOLOGIES)) {
    test(name, { skip: NO_GOLDEN }, () => {
      const want = golden(name);
      const got = buildIort(topo);
      assert.equal(got.length, want.length, 'length');
      assert.equal(hex(got), hex(want));
    });
  }

  test('HEAD QEMU with default identifier 0 differs only at the SMMU Identifier fields (docs/reference/acpi.md §2.9)', { skip: NO_GOLDEN }, () => {
    const zero = (t: AcpiTopology): AcpiTopology => ({ ...t, smmus: t.smmus.map((s) => ({ ...s, identifier: 0 })) });
    const cases: [string, number[], number][] = [
      ['IORT.smmuv3-legacy', [0x4c], 0x4b],
      ['IORT.smmuv3-dev', [0x4c, 0xa4], 0xcb],
    ];
    for (const [name, offsets, checksum] of cases) {
      const want = golden(name);
      const got = buildIort(zero(GOLDEN_TOPOLOGIES[name]!));
      const diff = [...got.keys()].filter((i) => got[i] !== want[i]);
      assert.deepEqual(diff, [9, ...offsets], name);
      assert.equal(got[9], checksum, `${name} checksum`);
      for (const o of offsets) assert.equal(got[o], 0);
    }
  });
});

describe('IORT layout', () => {
  test('header: revision 5, QEMU OEM, node array at 48, checksum 0', () => {
    const t = buildIort(GOLDEN_TOPOLOGIES['IORT.smmuv3-dev']!);
    assert.equal(Buffer.from(t.subarray(0, 4)).toString('latin1'), 'IORT');
    assert.equal(u32(t, 4), t.length);
    assert.equal(t[8], 5);
    assert.equal(byteSum(t), 0);
    assert.equal(u32(t, 36), 4);
    assert.equal(u32(t, 40), 48);
    assert.equal(u32(t, 44), 0);
  });

  test('no ITS and no SMMU: a lone RC node without mappings (array offset still 36)', () => {
    const p = parseIort(buildIort({ its: false, rootComplexes: [{ busNr: 0 }], smmus: [] }));
    assert.equal(p.nodes.length, 1);
    const rc = p.rootComplexes[0]!;
    assert.equal(rc.identifier, 0);
    assert.deepEqual(rc.mappings, []);
    assert.equal(u32(buildIort({ its: false, rootComplexes: [], smmus: [] }), 48 + 12), 36);
  });

  test('accelerated SMMU with CMDQV: one RMR after the RC, single-mapping to the SMMU (docs/reference/acpi.md §2.4)', () => {
    const t = buildIort(ONE_CMDQV);
    const p = parseIort(t);
    assert.deepEqual(p.nodes.map((n) => n.kind), ['its', 'smmuv3', 'rc', 'rmr']);
    assert.deepEqual(p.nodes.map((n) => n.identifier), [0, 1, 2, 3]);
    assert.deepEqual(p.nodes.map((n) => n.revision), [1, 4, 3, 3]);
    const rmrAt = p.rmrs[0]!.offset;
    assert.equal(rmrAt + 68, t.length);
    // Type 6, length 68, rev 3, id 3, 1 mapping at +28; flags 0, 1 descriptor at +48;
    // mapping {0x000, 0x1ff, 0x000, SMMU node 0x48, single}; range 0x08000000 + 0x100000.
    assert.equal(
      hex(t.subarray(rmrAt)),
      '064400030300000001000000' + '1c000000' + '00000000' + '01000000' + '30000000' +
        '00000000' + 'ff010000' + '00000000' + '48000000' + '01000000' +
        '0000000800000000' + '0000100000000000' + '00000000',
    );
    assert.deepEqual(p.rmrs[0]!.ranges, [{ base: MSI_IOVA_BASE, length: MSI_IOVA_LENGTH }]);
  });

  test('two accelerated SMMUs: IORT sorted by RID, RMRs in that order, ATS attribute from any SMMU', () => {
    const p = parseIort(buildIort(TWO_CMDQV));
    assert.deepEqual(p.nodes.map((n) => n.kind), ['its', 'smmuv3', 'smmuv3', 'rc', 'rmr', 'rmr']);
    // pcie.0's SMMU (created second, identifier 1) comes first because its RIDs start at 0.
    assert.deepEqual(p.smmus.map((s) => [s.identifier, s.base, s.gsiv.event]), [[1, 0x0c02_0000, 148], [2, 0x0c00_0000, 144]]);
    assert.deepEqual(p.nodes.map((n) => n.identifier), [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(p.rmrs.map((r) => [r.mappings[0]!.inputBase, r.mappings[0]!.idCount, r.mappings[0]!.outputRef]), [
      [0x0000, 0x200, p.smmus[0]!.offset],
      [0x1000, 0x100, p.smmus[1]!.offset],
    ]);
    assert.equal(p.rootComplexes[0]!.ats, 1);
    assert.equal(parseIort(buildIort(ONE_CMDQV)).rootComplexes[0]!.ats, 0);
  });

  test('RID-space split: SMMU ranges first, then the ITS gaps (docs/reference/acpi.md §2.6)', () => {
    const plan = planIort(GOLDEN_TOPOLOGIES['IORT.smmuv3-dev']!);
    assert.deepEqual(plan.itsRanges, [{ start: 0x200, count: 0xe00 }, { start: 0x1100, count: 0xef00 }]);
    const p = parseIort(buildIort(GOLDEN_TOPOLOGIES['IORT.smmuv3-dev']!));
    const its = p.itsGroups[0]!.offset;
    assert.deepEqual(
      p.rootComplexes[0]!.mappings.map((m) => [m.inputBase, m.idCount, m.outputRef]),
      [[0, 0x200, p.smmus[0]!.offset], [0x1000, 0x100, p.smmus[1]!.offset], [0x200, 0xe00, its], [0x1100, 0xef00, its]],
    );
    // An SMMU covering the top of the RID space leaves no trailing ITS range.
    const top = planIort({ its: true, rootComplexes: [{ busNr: 0xf0, subordinateBus: 0xff, smmu: 0 }], smmus: [{ identifier: 0, base: 0x0c00_0000, irqBaseGsiv: 144 }] });
    assert.deepEqual(top.itsRanges, [{ start: 0, count: 0xf000 }]);
  });

  test('topologies QEMU cannot build are rejected', () => {
    const dev = { identifier: 1, base: 0x0c00_0000, irqBaseGsiv: 144 };
    const legacy = { identifier: 0, base: 0x0905_0000, irqBaseGsiv: 106, legacy: true };
    const bad: [string, AcpiTopology, RegExp][] = [
      ['legacy + device SMMU', { its: true, rootComplexes: [{ busNr: 0 }], smmus: [legacy, dev] }, /excludes/],
      ['device SMMU without a bus', { its: true, rootComplexes: [{ busNr: 0 }], smmus: [dev] }, /exactly one primary bus, got 0/],
      ['device SMMU with two buses', { its: true, rootComplexes: [{ busNr: 0, smmu: 0 }, { busNr: 1, smmu: 0 }], smmus: [dev] }, /got 2/],
      ['CMDQV without accel', { its: true, rootComplexes: [{ busNr: 0, smmu: 0 }], smmus: [{ ...dev, accel: false, cmdqv: { base: 0x0c08_0000, gsiv: 148 } }] }, /needs accel/],
      ['accelerated legacy', { its: true, rootComplexes: [{ busNr: 0 }], smmus: [{ ...legacy, accel: true }] }, /cannot be accelerated/],
      ['overlapping buses', { its: true, rootComplexes: [{ busNr: 0, subordinateBus: 0x10 }, { busNr: 0x10 }], smmus: [] }, /overlap/],
      ['identifier 256', { its: true, rootComplexes: [{ busNr: 0, smmu: 0 }], smmus: [{ ...dev, identifier: 256 }] }, /identifier/],
      ['bad SMMU index', { its: true, rootComplexes: [{ busNr: 0, smmu: 3 }], smmus: [dev] }, /smmu = 3/],
      ['bypass on a primary bus', { its: true, rootComplexes: [{ busNr: 0, smmu: 0, bypassIommu: true }], smmus: [dev] }, /bypassIommu/],
    ];
    for (const [what, topo, re] of bad) assert.throws(() => buildIort(topo), re, what);
  });
});

describe('parseIort', () => {
  test('round trip: identifiers, bases, GSIVs, mappings', () => {
    for (const topo of [...Object.values(GOLDEN_TOPOLOGIES), ONE_CMDQV, TWO_CMDQV]) {
      const p = parseIort(buildIort(topo));
      const sorted = planIort(topo).smmus.map((s) => s.smmu);
      assert.deepEqual(
        p.smmus.map((s) => ({ id: s.identifier, base: s.base, gsiv: s.gsiv, model: s.model, flags: s.flags })),
        sorted.map((s) => ({
          id: s.identifier,
          base: s.base,
          gsiv: { event: s.irqBaseGsiv, pri: s.irqBaseGsiv + 1, gerr: s.irqBaseGsiv + 3, sync: s.irqBaseGsiv + 2 },
          model: 0,
          flags: 1,
        })),
      );
      assert.equal(p.itsGroups.length, topo.its ? 1 : 0);
      for (const s of p.smmus) assert.deepEqual(s.mappings.map((m) => [m.inputBase, m.idCount]), topo.its ? [[0, 0x10000]] : []);
      const rc = p.rootComplexes[0]!;
      assert.equal(rc.segment, 0);
      assert.equal(rc.addressSizeLimit, 64);
      assert.equal(rc.memoryAccessFlags, 3);
    }
  });

  test('RID routing as Linux resolves it (smmuv3-dev topology)', () => {
    const p = parseIort(buildIort(GOLDEN_TOPOLOGIES['IORT.smmuv3-dev']!));
    const route = (rid: number): [string, number, number] | undefined => {
      const r = iortRouteRid(p, rid);
      return r && [r.node.kind, r.node.identifier, r.id];
    };
    assert.deepEqual(route(0x0008), ['smmuv3', 1, 0x0008]);
    assert.deepEqual(route(0x01ff), ['smmuv3', 1, 0x01ff]);
    assert.deepEqual(route(0x0200), ['its', 0, 0x0200]);
    assert.deepEqual(route(0x1010), ['smmuv3', 2, 0x1010]);
    assert.deepEqual(route(0x2000), ['its', 0, 0x2000], 'pcie.2 has no SMMU');
    assert.equal(iortRouteRid(p, 0, 1), undefined, 'no RC for segment 1');
    const itsOff = parseIort(buildIort(GOLDEN_TOPOLOGIES['IORT.its_off']!));
    assert.equal(iortRouteRid(itsOff, 0x0100), undefined, 'its=off leaves other RIDs unmapped');
  });

  test('a last-ID match yields to a later range starting there (Linux off-by-one tolerance)', () => {
    const p = parseIort(buildIort(GOLDEN_TOPOLOGIES['IORT.smmuv3-dev']!));
    const rc = p.rootComplexes[0]!;
    const its = p.itsGroups[0]!.offset;
    const buggy: ParsedIort = {
      ...p,
      rootComplexes: [{ ...rc, mappings: [{ inputBase: 0, idCount: 0x101, outputBase: 0, outputRef: p.smmus[0]!.offset, flags: 0 }, { inputBase: 0x100, idCount: 0xff00, outputBase: 0x100, outputRef: its, flags: 0 }] }],
    };
    assert.equal(iortRouteRid(buggy, 0x100)!.node.kind, 'its');
    assert.equal(iortRouteRid(buggy, 0xff)!.node.kind, 'smmuv3');
  });

  test('golden blobs decode (QEMU-built tables, not only ours)', { skip: NO_GOLDEN }, () => {
    const p = parseIort(golden('IORT.smmuv3-legacy'));
    assert.deepEqual(p.smmus.map((s) => [s.identifier, s.base, s.gsiv]), [[1, 0x0905_0000, { event: 106, pri: 107, gerr: 109, sync: 108 }]]);
    assert.equal(p.rootComplexes[0]!.mappings.length, 4);
  });

  test('corrupt tables are rejected with a clear error', () => {
    const t = buildIort(ONE_CMDQV);
    const badSum = t.slice();
    badSum[50] ^= 0x10;
    assert.throws(() => parseIort(badSum), (e: unknown) => e instanceof AcpiError && /^IORT: bad checksum/.test(e.message));

    const fix = (b: Uint8Array): Uint8Array => {
      b[9] = 0;
      b[9] = (256 - byteSum(b)) & 0xff;
      return b;
    };
    const p = parseIort(t);
    // Point the SMMU's ITS mapping (its Output reference field) into the middle of the ITS node.
    const badRef = t.slice();
    new DataView(badRef.buffer).setUint32(p.smmus[0]!.offset + 68 + 12, 0x31, true);
    assert.throws(() => parseIort(fix(badRef)), /output reference 0x31 is not a node/);

    const badLen = t.slice();
    new DataView(badLen.buffer).setUint16(p.rmrs[0]!.offset + 1, 0x1000, true);
    assert.throws(() => parseIort(fix(badLen)), /node length 4096 is invalid/);

    const badCount = t.slice();
    new DataView(badCount.buffer).setUint32(36, 5, true);
    assert.throws(() => parseIort(fix(badCount)), /node 4 at 0x.*runs past the table end/);
  });
});
