// The two struct codecs (generated code, and the interpreted fallback for pages whose
// Content-Security-Policy forbids `new Function`) must be interchangeable on every struct, and
// field names must never be able to reach an object's prototype.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as U from '../../src/uapi/iommufd.js';
import * as V from '../../src/uapi/vfio.js';
import { defineStruct, type AnyStruct, type FieldDecl, type ScalarType } from '../../src/uapi/layout.js';
import { mulberry32 } from '../../src/kit/prng.js';

const LAYOUTS: readonly AnyStruct[] = [
  ...Object.values(U.STRUCTS),
  V.vfio_device_bind_iommufd as AnyStruct,
  V.vfio_device_attach_iommufd_pt as AnyStruct,
  V.vfio_device_detach_iommufd_pt as AnyStruct,
];

test('the compiled and the interpreted codec give identical bytes, values and errors on every struct', () => {
  const rnd = mulberry32(10);
  const u32 = () => Math.floor(rnd() * 2 ** 32);
  const scalar = (type: ScalarType): number | bigint => {
    switch (type) {
      case 'u8': return u32() & 0xff;
      case 'u16': return u32() & 0xffff;
      case 'u32': return u32();
      case 's32': return u32() | 0;
      case 'u64': return rnd() < 0.3 ? u32() : (BigInt(u32()) << 32n) | BigInt(u32());
    }
  };
  for (const layout of LAYOUTS) {
    const compiled = layout.withCodec('compiled');
    const interpreted = layout.withCodec('interpreted');
    assert.equal(compiled.codec, 'compiled');
    assert.equal(interpreted.codec, 'interpreted');
    for (let round = 0; round < 30; round++) {
      const value: Record<string, unknown> = {};
      for (const f of layout.fields) {
        if (f.union || rnd() < 0.2) continue;
        value[f.name] = f.count === undefined ? scalar(f.type) : Array.from({ length: f.count }, () => scalar(f.type));
      }
      const bytes = compiled.encode(value);
      assert.deepEqual([...interpreted.encode(value)], [...bytes], `${layout.name} encode`);
      const out = new Uint8Array(layout.size + 4).fill(0x5a);
      assert.deepEqual([...interpreted.encode(value, out, 4)], [...compiled.encode(value, out.slice(), 4)], `${layout.name} encode at an offset`);
      const noise = Uint8Array.from({ length: layout.size }, () => u32() & 0xff);
      for (const input of [bytes, noise, noise.subarray(0, layout.size >> 1)]) {
        const decoded = interpreted.decode(input);
        assert.deepEqual(decoded, compiled.decode(input), `${layout.name} decode`);
        assert.deepEqual(Object.keys(decoded), layout.fields.map((f) => f.name), `${layout.name} key order`);
      }
    }
    // Values out of range fail the same way through both.
    const first = layout.fields[0]!;
    const bad = { [first.name]: first.count === undefined ? (first.type === 'u64' ? -1n : 1.5) : new Array(first.count + 1).fill(0) };
    const message = (codec: AnyStruct) => {
      try {
        codec.encode(bad);
      } catch (e) {
        return (e as Error).message;
      }
      return 'no error';
    };
    assert.equal(message(interpreted), message(compiled), `${layout.name} error`);
    assert.notEqual(message(compiled), 'no error', `${layout.name} rejects ${JSON.stringify(bad, (_k, x) => (typeof x === 'bigint' ? `${x}n` : x))}`);
  }
});

test('field names must be plain identifiers and never prototype keys', () => {
  const struct = (name: string) => defineStruct('s', 8, [{ name, offset: 0, type: 'u64' }] as readonly FieldDecl[]);
  for (const name of ['__proto__', 'constructor', 'prototype']) {
    assert.throws(() => struct(name), /not a safe identifier/, name);
  }
  for (const name of ['a-b', '0x', 'a b', '', 'x"]; y', 'ä']) assert.throws(() => struct(name), /not a safe identifier/, name);
  for (const name of ['__reserved', '$x', 'out_vintf_mmap_offset']) {
    const layout = struct(name);
    assert.equal(layout.decode(layout.encode({ [name]: 5n }))[name], 5n, name);
  }
});
