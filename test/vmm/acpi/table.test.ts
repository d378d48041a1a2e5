// The ACPI table header and checksum (docs/reference/acpi.md §1).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  AcpiError,
  beginTable,
  byteSum,
  ByteWriter,
  finishTable,
  parseTableHeader,
  QEMU_OEM,
} from '../../../src/vmm/acpi/index.js';

function table(body: number[], oem = QEMU_OEM): Uint8Array {
  const w = new ByteWriter();
  beginTable(w, 'TEST', 7, oem);
  for (const b of body) w.u8(b);
  return finishTable(w);
}

describe('ACPI header', () => {
  test('fields, length and checksum', () => {
    const t = table([1, 2, 3, 0xff]);
    assert.equal(t.length, 40);
    assert.equal(Buffer.from(t.subarray(0, 4)).toString('latin1'), 'TEST');
    assert.equal(new DataView(t.buffer).getUint32(4, true), 40);
    assert.equal(t[8], 7);
    assert.equal(Buffer.from(t.subarray(10, 36)).toString('latin1'), 'BOCHS BXPC    \x01\x00\x00\x00BXPC\x01\x00\x00\x00');
    assert.equal(byteSum(t), 0);
    const h = parseTableHeader(t, 'TEST');
    assert.deepEqual(h.oem, { ...QEMU_OEM });
    assert.equal(h.length, 40);
    assert.equal(h.revision, 7);
  });

  test('short user OEM strings are NUL-padded, long ones rejected', () => {
    const t = table([], { id: 'AB', tableId: 'XY', revision: 0x1234, creatorId: 'Q', creatorRevision: 9 });
    assert.deepEqual([...t.subarray(10, 16)], [0x41, 0x42, 0, 0, 0, 0]);
    assert.deepEqual([...t.subarray(16, 24)], [0x58, 0x59, 0, 0, 0, 0, 0, 0]);
    assert.deepEqual(parseTableHeader(t).oem, { id: 'AB', tableId: 'XY', revision: 0x1234, creatorId: 'Q', creatorRevision: 9 });
    assert.throws(() => table([], { ...QEMU_OEM, id: 'TOOLONG' }), RangeError);
    assert.throws(() => table([], { ...QEMU_OEM, tableId: 'ÉÉ' }), RangeError);
  });

  test('a bad checksum, length or signature is reported clearly', () => {
    const t = table([1, 2, 3]);
    const bad = t.slice();
    bad[37] = (bad[37]! + 1) & 0xff;
    assert.throws(() => parseTableHeader(bad), (e: unknown) => e instanceof AcpiError && /TEST: bad checksum: .* sum to 0x01/.test(e.message));
    assert.throws(() => parseTableHeader(t.subarray(0, 38)), /Length 39 does not fit the 38 bytes/);
    assert.throws(() => parseTableHeader(t.subarray(0, 20)), /shorter than the 36-byte header/);
    assert.throws(() => parseTableHeader(t, 'IORT'), /signature "TEST", expected "IORT"/);
  });

  test('ByteWriter grows and patches', () => {
    const w = new ByteWriter();
    for (let i = 0; i < 1000; i++) w.u32(i);
    w.bytes(new Uint8Array(600).fill(7));
    w.patchU32(4, 0xdead_beef);
    const b = w.toBytes();
    assert.equal(b.length, 4600);
    assert.equal(new DataView(b.buffer).getUint32(4, true), 0xdead_beef);
    assert.equal(new DataView(b.buffer).getUint32(3996, true), 999);
    assert.equal(b[4599], 7);
    assert.throws(() => w.u8(256), RangeError);
    assert.throws(() => w.u64(-1), RangeError);
  });
});
