// The DSDT: the CMDQV node byte for byte as QEMU emits it (docs/reference/acpi.md §3.3), the root
// bridges, and the guest-side AML walker.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  AcpiError,
  amlDevice,
  amlMethod,
  amlName,
  amlPackage,
  amlInteger,
  amlScope,
  amlString,
  beginTable,
  buildCmdqvNode,
  buildDsdt,
  buildIort,
  byteSum,
  ByteWriter,
  cmdqvDeviceName,
  finishTable,
  type AcpiTopology,
} from '../../../src/vmm/acpi/index.js';
import { parseDsdtCmdqvDevices, parseDsdtDevices, parseDsdtPciRootBridges, parseIort, type DsdtCmdqvDevice } from '../../../src/guest/acpi-parse.js';
import { fromHex, GOLDEN_TOPOLOGIES, hex, indexOfBytes, ONE_CMDQV, TWO_CMDQV } from './fixtures.js';

// docs/reference/acpi.md §3.3, the example for id 1, B = 0x0C080000, G = 148.
const SPEC_CV01 = fromHex(`
  5b 82 43 06 43 56 30 31 08 5f 48 49 44 0d 4e 56 44 41 32 30 30 43 00 08 5f 55 49 44 01
  08 5f 43 43 41 01 08 5f 43 52 53 11 3c 0a 39 8a 2b 00 00 0c 03 00 00 00 00 00 00 00 00
  00 00 08 0c 00 00 00 00 ff ff 0c 0c 00 00 00 00 00 00 00 00 00 00 00 00 00 00 05 00 00
  00 00 00 89 06 00 03 01 94 00 00 00 79 00`);

function dsdtOf(...terms: Uint8Array[]): Uint8Array {
  const w = new ByteWriter();
  beginTable(w, 'DSDT', 2);
  w.bytes(amlScope('\\_SB', ...terms));
  return finishTable(w);
}

describe('CMDQV device node', () => {
  test("equals the exact AML of docs/reference/acpi.md §3.3 for identifier 1, base 0x0C080000, GSIV 148", () => {
    const node = buildCmdqvNode({ identifier: 1, base: 0x0c08_0000, size: 0x5_0000, gsiv: 148 });
    assert.equal(node.length, 101);
    assert.equal(hex(node), hex(SPEC_CV01));
    assert.equal(hex(buildCmdqvNode({ identifier: 1, base: 0x0c08_0000, gsiv: 148 })), hex(SPEC_CV01), 'size defaults to 0x50000');
  });

  test('sizes and PkgLength by identifier (docs/reference/acpi.md §3.3): 0/1 → 101 bytes, 2..99 → 102', () => {
    const n0 = buildCmdqvNode({ identifier: 0, base: 0x0c08_0000, gsiv: 148 });
    assert.equal(n0.length, 101);
    assert.equal(hex(n0.subarray(0, 8)), '5b82430643563030');
    const n42 = buildCmdqvNode({ identifier: 42, base: 0x0c10_0000, gsiv: 153 });
    assert.equal(n42.length, 102);
    assert.equal(hex(n42.subarray(0, 8)), '5b82440643563432');
    assert.equal(hex(n42.subarray(23, 30)), '085f5549440a2a', '_UID ByteConst 42');
    assert.equal(cmdqvDeviceName(7), 'CV07');
    assert.throws(() => cmdqvDeviceName(100), /0\.\.99/);
    assert.throws(() => buildCmdqvNode({ identifier: 1, base: 0, size: 0, gsiv: 1 }), RangeError);
  });
});

describe('DSDT', () => {
  test('header: DSDT revision 2, QEMU OEM, checksum 0; AML starts with Scope(\\_SB)', () => {
    const t = buildDsdt(ONE_CMDQV);
    assert.equal(Buffer.from(t.subarray(0, 4)).toString('latin1'), 'DSDT');
    assert.equal(new DataView(t.buffer).getUint32(4, true), t.length);
    assert.equal(t[8], 2);
    assert.equal(byteSum(t), 0);
    assert.equal(Buffer.from(t.subarray(10, 36)).toString('latin1'), 'BOCHS BXPC    \x01\x00\x00\x00BXPC\x01\x00\x00\x00');
    assert.equal(t[36], 0x10);
  });

  test('the CMDQV node appears verbatim in the table, after the root bridges', () => {
    const t = buildDsdt(ONE_CMDQV);
    const at = indexOfBytes(t, SPEC_CV01);
    assert.ok(at > 0);
    assert.equal(at + SPEC_CV01.length, t.length, 'last object of Scope(\\_SB)');
  });

  test('CMDQV nodes follow creation order, not the IORT order; legacy and non-CMDQV SMMUs get none', () => {
    assert.deepEqual(parseDsdtCmdqvDevices(buildDsdt(TWO_CMDQV)).map((d) => d.path), ['\\_SB_.CV02', '\\_SB_.CV01']);
    assert.deepEqual(parseIort(buildIort(TWO_CMDQV)).smmus.map((s) => s.identifier), [1, 2]);
    for (const topo of Object.values(GOLDEN_TOPOLOGIES)) assert.deepEqual(parseDsdtCmdqvDevices(buildDsdt(topo)), []);
  });

  test('CMDQVs that would share a CVnn name or exceed CV99 are rejected', () => {
    const same: AcpiTopology = { ...TWO_CMDQV, smmus: TWO_CMDQV.smmus.map((s) => ({ ...s, identifier: 3 })) };
    assert.throws(() => buildDsdt(same), /two CMDQVs with identifier 3/);
    assert.doesNotThrow(() => buildIort(same), 'QEMU does not check IORT identifiers');
    const big: AcpiTopology = { ...ONE_CMDQV, smmus: [{ ...ONE_CMDQV.smmus[0]!, identifier: 100 }] };
    assert.throws(() => buildDsdt(big), /CVnn device name/);
  });

  test('round trip: uid, hid, window and GSIV; IORT identifiers find their companions', () => {
    const cv = parseDsdtCmdqvDevices(buildDsdt(TWO_CMDQV));
    assert.deepEqual(cv, [
      { path: '\\_SB_.CV02', hid: 'NVDA200C', uid: 2, memBase: 0x0c08_0000, memLength: 0x5_0000, gsiv: 152 },
      { path: '\\_SB_.CV01', hid: 'NVDA200C', uid: 1, memBase: 0x0c10_0000, memLength: 0x5_0000, gsiv: 153 },
    ]);
    // The guest's lookup: SMMUv3 node Identifier (as "%u") → NVDA200C with that _UID.
    for (const smmu of parseIort(buildIort(TWO_CMDQV)).smmus) {
      const companion: DsdtCmdqvDevice | undefined = cv.find((d) => String(d.uid) === String(smmu.identifier));
      const src = TWO_CMDQV.smmus.find((s) => s.identifier === smmu.identifier)!;
      assert.equal(companion?.memBase, src.cmdqv!.base);
      assert.equal(companion?.gsiv, src.cmdqv!.gsiv);
    }
  });

  test('root bridges: PCI0 takes the buses below the first pxb; pxbs their own range', () => {
    const rb = parseDsdtPciRootBridges(buildDsdt(GOLDEN_TOPOLOGIES['IORT.smmuv3-dev']!));
    assert.deepEqual(rb, [
      { path: '\\_SB_.PCI0', segment: 0, busNr: 0, uid: 0, busMin: 0, busMax: 0x0f },
      { path: '\\_SB_.PC10', segment: 0, busNr: 0x10, uid: 0x10, busMin: 0x10, busMax: 0x10 },
      { path: '\\_SB_.PC20', segment: 0, busNr: 0x20, uid: 0x20, busMin: 0x20, busMax: 0x20 },
    ]);
    const alone = parseDsdtPciRootBridges(buildDsdt(GOLDEN_TOPOLOGIES['IORT']!));
    assert.deepEqual(alone.map((b) => [b.busMin, b.busMax]), [[0, 0xff]]);
    const pxbWithPort: AcpiTopology = { its: true, rootComplexes: [{ busNr: 0x30, subordinateBus: 0x31 }, { busNr: 0 }], smmus: [] };
    assert.deepEqual(parseDsdtPciRootBridges(buildDsdt(pxbWithPort)).map((b) => [b.path, b.busMin, b.busMax]), [
      ['\\_SB_.PCI0', 0, 0x2f],
      ['\\_SB_.PC30', 0x30, 0x31],
    ]);
  });
});

describe('AML walker', () => {
  test('nested scopes, methods skipped whole, packages with names, relative paths', () => {
    const t = dsdtOf(
      amlDevice('PCI0', amlName('_HID', amlString('PNP0A08')), amlMethod('_OSC', 4, false, Uint8Array.of(0xa4, 0x68)), amlDevice('S08', amlName('_ADR', amlInteger(0x8_0000)))),
      amlScope('PCI0', amlDevice('^CV05', amlName('_HID', amlString('NVDA200C')), amlName('_UID', amlString('5')), amlName('_CRS', fromHex('1105 0a02 7900')))),
      amlDevice('LNK0', amlName('_PRT', amlPackage(amlPackage(amlInteger(0xffff), amlInteger(0), Uint8Array.from([0x4c, 0x30, 0x30, 0x30]), amlInteger(0))))),
    );
    const devs = parseDsdtDevices(t);
    assert.deepEqual(devs.map((d) => d.path), ['\\_SB_.PCI0', '\\_SB_.PCI0.S08_', '\\_SB_.CV05', '\\_SB_.LNK0']);
    assert.deepEqual(devs[0]!.methods, ['_OSC']);
    assert.deepEqual(devs[1]!.names.get('_ADR'), { kind: 'integer', value: 0x8_0000n });
    const prt = devs[3]!.names.get('_PRT');
    assert.deepEqual(prt, { kind: 'package', elements: [{ kind: 'package', elements: [
      { kind: 'integer', value: 0xffffn }, { kind: 'integer', value: 0n }, { kind: 'name', path: 'L000' }, { kind: 'integer', value: 0n },
    ] }] });
    // A string _UID and no resources other than the end tag: found, but without a window.
    assert.throws(() => parseDsdtCmdqvDevices(t), /CV05: NVDA200C device without a memory resource/);
  });

  test('unsupported opcodes and overruns are reported with their offset', () => {
    const opRegion = dsdtOf(amlDevice('DEV0', Uint8Array.of(0x5b, 0x80, 0x52, 0x45, 0x47, 0x30, 0x00, 0x00, 0x0a, 0x10)));
    assert.throws(() => parseDsdtDevices(opRegion), (e: unknown) => e instanceof AcpiError && /DSDT AML at 0x32: unsupported term opcode 0x5b/.test(e.message));
    const t = buildDsdt(ONE_CMDQV);
    const bad = t.slice();
    bad[t.length - 3] ^= 1; // a GSIV byte: checksum no longer sums to 0
    assert.throws(() => parseDsdtCmdqvDevices(bad), /DSDT: bad checksum/);
    assert.throws(() => parseDsdtCmdqvDevices(buildIort(ONE_CMDQV)), /signature "IORT", expected "DSDT"/);
  });
});
