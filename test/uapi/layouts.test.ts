// Sizes and offsets below are copied from docs/reference/iommufd-uapi.md §2–13 (verified there by compiling
// the Linux 7.0 header), not computed from our tables.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Errno, ErrnoError, errnoName } from '../../src/uapi/errno.js';
import { copyArrayEntry, copyOutLength, copyStructFromUser } from '../../src/uapi/extensible.js';
import * as U from '../../src/uapi/iommufd.js';
import { defineStruct } from '../../src/uapi/layout.js';
import { mulberry32 } from '../../src/kit/prng.js';

const EXPECTED: Record<string, [size: number, fields: Record<string, [offset: number, size: number]>]> = {
  iommu_destroy: [8, { size: [0, 4], id: [4, 4] }],
  iommu_ioas_alloc: [12, { size: [0, 4], flags: [4, 4], out_ioas_id: [8, 4] }],
  iommu_ioas_map: [40, { size: [0, 4], flags: [4, 4], ioas_id: [8, 4], __reserved: [12, 4], user_va: [16, 8], length: [24, 8], iova: [32, 8] }],
  iommu_ioas_unmap: [24, { size: [0, 4], ioas_id: [4, 4], iova: [8, 8], length: [16, 8] }],
  iommu_hw_info: [40, {
    size: [0, 4], flags: [4, 4], dev_id: [8, 4], data_len: [12, 4], data_uptr: [16, 8],
    in_data_type: [24, 4], out_data_type: [24, 4], out_max_pasid_log2: [28, 1], __reserved: [29, 3], out_capabilities: [32, 8],
  }],
  iommu_hw_info_arm_smmuv3: [40, { flags: [0, 4], __reserved: [4, 4], idr: [8, 24], iidr: [32, 4], aidr: [36, 4] }],
  iommu_hw_info_tegra241_cmdqv: [8, { flags: [0, 4], version: [4, 1], log2vcmdqs: [5, 1], log2vsids: [6, 1], __reserved: [7, 1] }],
  iommu_hwpt_alloc: [48, {
    size: [0, 4], flags: [4, 4], dev_id: [8, 4], pt_id: [12, 4], out_hwpt_id: [16, 4], __reserved: [20, 4],
    data_type: [24, 4], data_len: [28, 4], data_uptr: [32, 8], fault_id: [40, 4], __reserved2: [44, 4],
  }],
  iommu_hwpt_arm_smmuv3: [16, { ste: [0, 16] }],
  iommu_viommu_alloc: [40, {
    size: [0, 4], flags: [4, 4], type: [8, 4], dev_id: [12, 4], hwpt_id: [16, 4], out_viommu_id: [20, 4],
    data_len: [24, 4], __reserved: [28, 4], data_uptr: [32, 8],
  }],
  iommu_viommu_tegra241_cmdqv: [16, { out_vintf_mmap_offset: [0, 8], out_vintf_mmap_length: [8, 8] }],
  iommu_vdevice_alloc: [24, { size: [0, 4], viommu_id: [4, 4], dev_id: [8, 4], out_vdevice_id: [12, 4], virt_id: [16, 8] }],
  iommu_hw_queue_alloc: [40, {
    size: [0, 4], flags: [4, 4], viommu_id: [8, 4], type: [12, 4], index: [16, 4], out_hw_queue_id: [20, 4],
    nesting_parent_iova: [24, 8], length: [32, 8],
  }],
  iommu_veventq_alloc: [32, {
    size: [0, 4], flags: [4, 4], viommu_id: [8, 4], type: [12, 4], veventq_depth: [16, 4], out_veventq_id: [20, 4],
    out_veventq_fd: [24, 4], __reserved: [28, 4],
  }],
  iommufd_vevent_header: [8, { flags: [0, 4], sequence: [4, 4] }],
  iommu_vevent_arm_smmuv3: [32, { evt: [0, 32] }],
  iommu_vevent_tegra241_cmdqv: [16, { lvcmdq_err_map: [0, 16] }],
  iommu_hwpt_invalidate: [32, {
    size: [0, 4], hwpt_id: [4, 4], data_uptr: [8, 8], data_type: [16, 4], entry_len: [20, 4], entry_num: [24, 4], __reserved: [28, 4],
  }],
  iommu_viommu_arm_smmuv3_invalidate: [16, { cmd: [0, 16] }],
};

test('every struct the stack uses has the kernel size and field offsets', () => {
  for (const [name, [size, fields]] of Object.entries(EXPECTED)) {
    const s = U.STRUCTS[name];
    assert.ok(s, `${name} is declared`);
    assert.equal(s.size, size, `${name} size`);
    const got = Object.fromEntries(s.fields.map((f) => [f.name, [f.offset, f.size]]));
    assert.deepEqual(got, fields, `${name} fields`);
  }
});

test('minimum sizes match the kernel ioctl table (offset of the end of the last field)', () => {
  const min: Record<string, number> = {
    IOMMU_DESTROY: 8, IOMMU_IOAS_ALLOC: 12, IOMMU_IOAS_MAP: 40, IOMMU_IOAS_UNMAP: 24, IOMMU_HWPT_ALLOC: 24,
    IOMMU_GET_HW_INFO: 32, IOMMU_HWPT_INVALIDATE: 32, IOMMU_VIOMMU_ALLOC: 24, IOMMU_VDEVICE_ALLOC: 24,
    IOMMU_VEVENTQ_ALLOC: 28, IOMMU_HW_QUEUE_ALLOC: 40,
  };
  for (const [name, m] of Object.entries(min)) {
    const io = U.IOCTLS.find((i) => i.name === name);
    assert.equal(io?.struct?.minSize, m, name);
  }
});

test('ioctl numbers are _IO(";", nr)', () => {
  const numbers: Record<string, number> = {
    IOMMU_DESTROY: 0x3b80, IOMMU_IOAS_ALLOC: 0x3b81, IOMMU_IOAS_MAP: 0x3b85, IOMMU_IOAS_UNMAP: 0x3b86,
    IOMMU_HWPT_ALLOC: 0x3b89, IOMMU_GET_HW_INFO: 0x3b8a, IOMMU_HWPT_INVALIDATE: 0x3b8d, IOMMU_VIOMMU_ALLOC: 0x3b90,
    IOMMU_VDEVICE_ALLOC: 0x3b91, IOMMU_VEVENTQ_ALLOC: 0x3b93, IOMMU_HW_QUEUE_ALLOC: 15252,
  };
  for (const [name, n] of Object.entries(numbers)) assert.equal(U.IOCTLS.find((i) => i.name === name)?.number, n, name);
  assert.equal(U.ioctlByNumber(0x3b94), U.IOMMU_HW_QUEUE_ALLOC);
  assert.equal(U.IOCTLS.length, 0x94 - 0x80 + 1, 'every command number 0x80..0x94');
});

test('enum values', () => {
  assert.equal(U.iommu_hw_info_type.IOMMU_HW_INFO_TYPE_ARM_SMMUV3, 2);
  assert.equal(U.iommu_hw_info_type.IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV, 3);
  assert.equal(U.iommu_viommu_type.IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV, 2);
  assert.equal(U.iommu_veventq_type.IOMMU_VEVENTQ_TYPE_ARM_SMMUV3, 1);
  assert.equal(U.iommu_hw_queue_type.IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV, 1);
  assert.equal(U.iommu_hwpt_data_type.IOMMU_HWPT_DATA_ARM_SMMUV3, 2);
  assert.equal(U.iommu_hwpt_invalidate_data_type.IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3, 1);
  assert.equal(U.iommufd_hwpt_alloc_flags.IOMMU_HWPT_ALLOC_NEST_PARENT, 1);
  assert.equal(U.iommufd_ioas_map_flags.IOMMU_IOAS_MAP_READABLE, 4);
  assert.equal(U.iommu_veventq_flag.IOMMU_VEVENTQ_FLAG_LOST_EVENTS, 1);
});

test('encode/decode round trip, little-endian bytes', () => {
  const bytes = U.iommu_hw_queue_alloc.encode({
    viommu_id: 3, type: 1, index: 2, nesting_parent_iova: 0x1_2345_6000n, length: 0x8000n,
  });
  assert.equal(bytes.length, 40);
  assert.deepEqual([...bytes.subarray(0, 4)], [40, 0, 0, 0], 'size defaults to the struct size');
  assert.deepEqual([...bytes.subarray(24, 32)], [0x00, 0x60, 0x45, 0x23, 0x01, 0, 0, 0]);
  const v = U.iommu_hw_queue_alloc.decode(bytes);
  assert.deepEqual(v, {
    size: 40, flags: 0, viommu_id: 3, type: 1, index: 2, out_hw_queue_id: 0, nesting_parent_iova: 0x1_2345_6000n, length: 0x8000n,
  });
  const info = U.iommu_hw_info_arm_smmuv3.encode({ idr: [1, 2, 3, 4, 5, 0xffff_ffff], aidr: 2 });
  assert.deepEqual(U.iommu_hw_info_arm_smmuv3.decode(info).idr, [1, 2, 3, 4, 5, 0xffff_ffff]);
  const inv = U.iommu_viommu_arm_smmuv3_invalidate.encode({ cmd: [0x0000_0001_0000_0012n, 0xffff_ffff_ffff_f000n] });
  assert.equal(inv[0], 0x12);
  assert.equal(inv[15], 0xff);
  assert.throws(() => U.iommu_destroy.encode({ id: 2 ** 32 }), RangeError);
  const hw = U.iommu_hw_info.decode(U.iommu_hw_info.encode({ out_data_type: 3 }));
  assert.equal(hw.in_data_type, 3, 'union members alias');
});

test('layout declarations reject implicit padding and misalignment', () => {
  assert.throws(() => defineStruct('gap', 16, [{ name: 'a', offset: 0, type: 'u32' }, { name: 'b', offset: 8, type: 'u64' }]), /implicit padding/);
  assert.throws(() => defineStruct('mis', 16, [{ name: 'a', offset: 0, type: 'u32' }, { name: 'b', offset: 4, type: 'u64' }, { name: 'c', offset: 12, type: 'u32' }]), /not aligned/);
  assert.throws(() => defineStruct('short', 8, [{ name: 'a', offset: 0, type: 'u32' }]), /declared size/);
});

test('extensible struct rules: zero tail accepted, non-zero tail E2BIG, short EINVAL, zero-extension', () => {
  const L = U.iommu_viommu_alloc;
  const big = new Uint8Array(48);
  L.encode({ size: 48, type: 2, dev_id: 1 }, big);
  const k = copyStructFromUser(L, big);
  assert.equal(k.length, 40);
  assert.equal(L.decode(k).type, 2);
  big[47] = 1;
  assert.throws(() => copyStructFromUser(L, big), (e: unknown) => e instanceof ErrnoError && e.errno === Errno.E2BIG && e.code === 'E2BIG');
  const short = L.encode({ size: 24, type: 2 }).subarray(0, 24);
  const ks = copyStructFromUser(L, short);
  assert.equal(L.decode(ks).data_uptr, 0n, 'short struct is zero-extended');
  assert.throws(() => copyStructFromUser(L, short.subarray(0, 20)), (e: unknown) => e instanceof ErrnoError && e.errno === Errno.EINVAL);
  assert.equal(copyOutLength(L, 24), 24);
  assert.equal(copyOutLength(L, 64), 40);
  const entry = new Uint8Array(24);
  entry[0] = 0x12;
  assert.equal(copyArrayEntry(16, entry)[0], 0x12);
  entry[20] = 1;
  assert.throws(() => copyArrayEntry(16, entry), (e: unknown) => e instanceof ErrnoError && e.errno === Errno.E2BIG);
  assert.deepEqual([...copyArrayEntry(16, new Uint8Array([1, 2]))], [1, 2, ...new Array(14).fill(0)]);
});

test('errno values are Linux numbers', () => {
  assert.deepEqual(
    [Errno.ENOENT, Errno.EIO, Errno.E2BIG, Errno.EFAULT, Errno.EBUSY, Errno.EEXIST, Errno.EINVAL, Errno.ENOTTY, Errno.ENOSPC, Errno.EOVERFLOW, Errno.EOPNOTSUPP, Errno.ETIMEDOUT],
    [2, 5, 7, 14, 16, 17, 22, 25, 28, 75, 95, 110],
  );
  assert.equal(errnoName(95), 'EOPNOTSUPP');
  assert.equal(new ErrnoError(Errno.EBUSY, 'vIOMMU in use').message, 'EBUSY: vIOMMU in use');
});

test('generated encoders and decoders match a field-by-field reference on every struct', () => {
  const rnd = mulberry32(6);
  const u32 = () => Math.floor(rnd() * 2 ** 32);
  const SIZES = { u8: 1, u16: 2, u32: 4, s32: 4, u64: 8 } as const;
  const value = (t: keyof typeof SIZES): number | bigint => {
    switch (t) {
      case 'u8': return u32() & 0xff;
      case 'u16': return u32() & 0xffff;
      case 'u32': return u32();
      case 's32': return u32() | 0;
      case 'u64': return (BigInt(u32()) << 32n) | BigInt(u32());
    }
  };
  const put = (dv: DataView, at: number, t: keyof typeof SIZES, x: number | bigint) => {
    if (t === 'u64') dv.setBigUint64(at, BigInt(x), true);
    else if (t === 'u8') dv.setUint8(at, Number(x));
    else if (t === 'u16') dv.setUint16(at, Number(x), true);
    else if (t === 's32') dv.setInt32(at, Number(x), true);
    else dv.setUint32(at, Number(x), true);
  };
  let checked = 0;
  for (const layout of Object.values(U.STRUCTS)) {
    for (let round = 0; round < 20; round++) {
      const v: Record<string, unknown> = {};
      const ref = new Uint8Array(layout.size);
      const dv = new DataView(ref.buffer);
      // Unions: only the first member of each offset gets a value (the others alias it).
      const seen = new Set<number>();
      for (const f of layout.fields) {
        if (seen.has(f.offset) || rnd() < 0.2) continue; // some fields left out: encoded as 0
        seen.add(f.offset);
        const t = f.type;
        if (f.count === undefined) {
          // u64 fields sometimes given as numbers (the general writer's path).
          const x = t === 'u64' && rnd() < 0.3 ? u32() : value(t);
          v[f.name] = x;
          put(dv, f.offset, t, x);
        } else {
          const xs = Array.from({ length: f.count }, () => value(t));
          v[f.name] = xs;
          xs.forEach((x, k) => put(dv, f.offset + k * SIZES[t], t, x));
        }
      }
      if (v.size === undefined && layout.fields[0]?.name === 'size') put(dv, 0, 'u32', layout.size);
      assert.deepEqual([...layout.encode(v)], [...ref], `${layout.name} encode`);
      // Into a dirty buffer at an offset: the struct's bytes are zeroed first.
      const out = new Uint8Array(layout.size + 8).fill(0xa5);
      layout.encode(v, out, 8);
      assert.deepEqual([...out.subarray(8)], [...ref], `${layout.name} encode at an offset`);
      const d = layout.decode(ref);
      for (const f of layout.fields) {
        const want = f.count === undefined ? readRef(dv, f.offset, f.type) : Array.from({ length: f.count }, (_, k) => readRef(dv, f.offset + k * SIZES[f.type], f.type));
        assert.deepEqual(d[f.name], want, `${layout.name}.${f.name} decode`);
      }
      checked++;
    }
  }
  assert.ok(checked >= 20 * 20, `${checked} encodings checked`);
  // The general writer's errors still apply.
  assert.throws(() => U.iommu_hwpt_invalidate.encode({ entry_num: 1.5 }), /iommu_hwpt_invalidate.entry_num: value 1.5 does not fit u32/);
  assert.throws(() => U.iommu_hwpt_invalidate.encode({ entry_num: -1 }), /does not fit u32/);
  assert.throws(() => U.iommu_hwpt_invalidate.encode({ data_uptr: -1n }), /does not fit u64/);
  assert.throws(() => U.iommu_hwpt_invalidate.encode({ data_uptr: 2n ** 64n }), /does not fit u64/);
  assert.throws(() => U.iommu_hw_info_arm_smmuv3.encode({ idr: [1, 2, 3, 4, 5, 6, 7] }), /bad array length/);
  assert.throws(() => U.iommu_destroy.encode({ id: [1] } as never), /bad array length/);
});

function readRef(dv: DataView, at: number, t: string): number | bigint {
  if (t === 'u64') return dv.getBigUint64(at, true);
  if (t === 'u8') return dv.getUint8(at);
  if (t === 'u16') return dv.getUint16(at, true);
  if (t === 's32') return dv.getInt32(at, true);
  return dv.getUint32(at, true);
}
