// AML encoder primitives (docs/reference/acpi.md §4), checked against those encodings and against
// byte sequences taken from QEMU's own DSDT (shared/acpi-golden/DSDT.smmuv3-dev).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  amlBuffer,
  amlDevice,
  amlInteger,
  amlMethod,
  amlName,
  amlPackage,
  amlReturn,
  amlScope,
  amlString,
  dwordMemory,
  endTag,
  extendedInterrupt,
  memory32Fixed,
  nameSeg,
  nameString,
  pkgLength,
  qwordMemory,
  resourceTemplate,
  wordBusNumber,
} from '../../../src/vmm/acpi/index.js';
import { fromHex, golden, hex, indexOfBytes, NO_GOLDEN } from './fixtures.js';

describe('names', () => {
  test('NameSeg pads with "_" and rejects invalid names', () => {
    assert.equal(hex(nameSeg('_SB')), '5f53425f');
    assert.equal(hex(nameSeg('CV01')), '43563031');
    for (const bad of ['', 'cv01', '1ABC', 'ABCDE', 'A-B']) assert.throws(() => nameSeg(bad), RangeError, bad);
  });

  test('NameString prefixes and multi-segment paths', () => {
    assert.equal(hex(nameString('\\_SB')), '5c5f53425f');
    assert.equal(hex(nameString('_SB.PCI0')), '2e5f53425f50434930');
    assert.equal(hex(nameString('\\_SB.PCI0.S08')), '5c2f035f53425f504349305330385f');
    assert.equal(hex(nameString('^^FOO')), '5e5e464f4f5f');
    assert.equal(hex(nameString('\\')), '5c00');
  });
});

describe('PkgLength (smallest form, counts itself)', () => {
  test('1-byte form up to a total of 63', () => {
    assert.equal(hex(pkgLength(0)), '01');
    assert.equal(hex(pkgLength(62)), '3f');
  });

  test('2-, 3- and 4-byte forms at their boundaries', () => {
    assert.equal(hex(pkgLength(63)), '4104', '63 + 2 = 65 = 0x041');
    assert.equal(hex(pkgLength(0xffd)), '4fff');
    assert.equal(hex(pkgLength(0xffe)), '810001', '0xffe + 3 = 0x1001 needs 3 bytes');
    assert.equal(hex(pkgLength(0xffffc)), '8fffff');
    assert.equal(hex(pkgLength(0xffffd)), 'c1000001', '0xffffd + 4 = 0x100001');
    assert.throws(() => pkgLength(0x0fff_fffc), RangeError);
  });

  test("the real DSDT's Scope(\\_SB) header: 10 87 74 02", () => {
    assert.equal(hex(pkgLength(0x2747 - 3)), '877402');
  });
});

describe('data objects', () => {
  test('integers use Zero/One then the smallest prefix (QEMU rule)', () => {
    const cases: [number | bigint, string][] = [
      [0, '00'],
      [1, '01'],
      [2, '0a02'],
      [0xff, '0aff'],
      [0x100, '0b0001'],
      [0xffff, '0bffff'],
      [0x1_0000, '0c00000100'],
      [0xffff_ffff, '0cffffffff'],
      [0x1_0000_0000, '0e0000000001000000'],
      [0xffff_ffff_ffff_ffffn, '0effffffffffffffff'],
    ];
    for (const [v, h] of cases) assert.equal(hex(amlInteger(v)), h, String(v));
    assert.throws(() => amlInteger(-1), RangeError);
    assert.throws(() => amlInteger(1n << 64n), RangeError);
    assert.throws(() => amlInteger(0.5), RangeError);
  });

  test('string, buffer, package, name', () => {
    assert.equal(hex(amlString('NVDA200C')), '0d4e5644413230304300');
    assert.throws(() => amlString('é'), RangeError);
    assert.equal(hex(amlBuffer(Uint8Array.of(1, 2, 3))), '11060a03010203');
    assert.equal(hex(amlBuffer(new Uint8Array(0))), '110200');
    assert.equal(hex(amlPackage(amlInteger(0xffff), amlInteger(1))), '1206020bffff01');
    assert.equal(hex(amlName('_CCA', amlInteger(1))), '085f43434101');
  });

  test('Scope, Device, Method, Return', () => {
    assert.equal(hex(amlScope('\\_SB')), '10065c5f53425f');
    assert.equal(hex(amlDevice('CV01')), '5b820543563031');
    assert.equal(hex(amlMethod('_STA', 0, false, amlReturn(amlInteger(0x0f)))), '14095f53544100a40a0f');
    assert.equal(hex(amlMethod('_DSM', 4, true)), '14065f44534d0c');
    assert.throws(() => amlMethod('_DSM', 8, false), RangeError);
  });
});

describe('resource descriptors', () => {
  test('QWordMemory and Extended Interrupt of the CMDQV node (docs/reference/acpi.md §3.3)', () => {
    const q = qwordMemory({ minimum: 0x0c08_0000, maximum: 0x0c0c_ffff, length: 0x5_0000, cacheability: 'cacheable' });
    assert.equal(q.length, 46);
    assert.equal(hex(q.subarray(0, 6)), '8a2b00000c03');
    assert.equal(hex(extendedInterrupt({ edge: true, gsivs: [148] })), '890600030194000000');
    assert.equal(hex(endTag()), '7900');
  });

  test('the general/type flag bits', () => {
    const q = qwordMemory({ consumer: true, subtractiveDecode: true, minFixed: false, maxFixed: false, readWrite: false, cacheability: 'prefetchable', minimum: 0, maximum: 0, length: 0 });
    assert.equal(hex(q.subarray(3, 6)), '000306');
    const i = extendedInterrupt({ consumer: false, activeLow: true, shared: true, wake: true, gsivs: [1, 2] });
    assert.equal(hex(i), '890a001c020100000002000000');
    assert.throws(() => extendedInterrupt({ gsivs: [] }), RangeError);
  });

  test('DWordMemory layout', () => {
    const d = dwordMemory({ minimum: 0x1000_0000, maximum: 0x3efe_ffff, length: 0x2eff_0000 });
    assert.equal(hex(d), '871700000c01' + '00000000' + '00000010' + 'fffffe3e' + '00000000' + '0000ff2e');
  });

  test('ResourceTemplate = Buffer(descriptors + end tag)', () => {
    assert.equal(hex(resourceTemplate(memory32Fixed(0x0900_0000, 0x1000))), '11110a0e' + '860900010000000900100000' + '7900');
  });

  test('encodings appear verbatim in QEMU\'s DSDT', { skip: NO_GOLDEN }, () => {
    const dsdt = golden('DSDT.smmuv3-dev');
    const expectIn = (what: string, b: Uint8Array): void => assert.ok(indexOfBytes(dsdt, b) >= 0, `${what}: ${hex(b)} not in QEMU's DSDT`);
    // COM0's _CRS: Memory32Fixed + level interrupt 33.
    expectIn('COM0 _CRS', amlName('_CRS', resourceTemplate(memory32Fixed(0x0900_0000, 0x1000), extendedInterrupt({ gsivs: [33] }))));
    // PC10's bus window, and its leading Names.
    expectIn('PC10 bus', wordBusNumber({ minimum: 0x10, maximum: 0x10, length: 1 }));
    expectIn('PC10 names', Uint8Array.from([
      ...amlName('_HID', amlString('PNP0A08')),
      ...amlName('_CID', amlString('PNP0A03')),
      ...amlName('_BBN', amlInteger(0x10)),
      ...amlName('_UID', amlInteger(0x10)),
    ]));
    // PCI0's 32-bit MMIO window.
    expectIn('PCI0 MMIO32', dwordMemory({ minimum: 0x1000_0000, maximum: 0x3efe_ffff, length: 0x2eff_0000 }));
    // The top-level Scope(\_SB) opener, right after the header.
    assert.equal(hex(dsdt.subarray(36, 45)), hex(fromHex('10877402 5c5f53425f')));
  });
});
