// Every iommufd ioctl (and the VFIO cdev ones) with extreme field values answers with 0 or a
// Linux errno and never throws (issue 14 #6: no JS exception may escape an ioctl). Each field of
// a valid baseline struct is overwritten in raw bytes with each extreme value in turn.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HostKernel } from '../../src/host/kernel/host-kernel.js';
import { Errno } from '../../src/uapi/errno.js';
import * as U from '../../src/uapi/iommufd.js';
import type { AnyStruct, LayoutField } from '../../src/uapi/layout.js';
import * as V from '../../src/uapi/vfio.js';
import { makeVm, type VmSetup } from './uapi-client.js';

const KNOWN_ERRNOS = new Set<number>(Object.values(Errno));
const EXTREMES_32 = [0n, 1n, 0x7fff_ffffn, 0x8000_0000n, 0xffff_ffffn];
const EXTREMES_64 = [...EXTREMES_32, 0x1_0000_0000n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n];

function extremesFor(size: number): bigint[] {
  if (size === 1) return [0n, 1n, 0x80n, 0xffn];
  if (size === 2) return [0n, 0x8000n, 0xffffn];
  return size === 4 ? EXTREMES_32 : EXTREMES_64;
}

/** Write `value` little-endian into `bytes[at, at + size)`. */
function putRaw(bytes: Uint8Array, at: number, size: number, value: bigint): void {
  for (let i = 0; i < size; i++) bytes[at + i] = Number((value >> BigInt(8 * i)) & 0xffn);
}

/** Each scalar (or array element) of a layout: offset and byte size. */
function slots(layout: AnyStruct): { name: string; at: number; size: number }[] {
  const out: { name: string; at: number; size: number }[] = [];
  for (const f of layout.fields as readonly LayoutField[]) {
    const count = f.count ?? 1;
    const each = f.size / count;
    for (let i = 0; i < count; i++) out.push({ name: count > 1 ? `${f.name}[${i}]` : f.name, at: f.offset + i * each, size: each });
  }
  return out;
}

/** A VM with a Tegra vIOMMU: the objects the baselines name. */
function world(): { vm: VmSetup; viommu: number; data: number } {
  const vm = makeVm(new HostKernel(), 0, 2 ** 22, false);
  const data = vm.c.alloc(4096);
  const viommu = vm.c.ok(U.IOMMU_VIOMMU_ALLOC, {
    type: U.iommu_viommu_type.IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV, dev_id: vm.devId, hwpt_id: vm.s2Id, data_len: 16, data_uptr: BigInt(data),
  }).out_viommu_id as number;
  return { vm, viommu, data };
}

/** A valid argument for each modelled ioctl in `w`. */
function baseline(io: U.IoctlDef, w: ReturnType<typeof world>): Record<string, unknown> {
  const { vm, viommu, data } = w;
  const buf = BigInt(data);
  switch (io) {
    case U.IOMMU_DESTROY: return { id: vm.s2Id };
    case U.IOMMU_IOAS_ALLOC: return {};
    case U.IOMMU_IOAS_MAP: return { flags: 7, ioas_id: vm.ioasId, user_va: BigInt(vm.ramVa), length: 0x1000n, iova: 0x1000_0000n };
    case U.IOMMU_IOAS_UNMAP: return { ioas_id: vm.ioasId, iova: 0n, length: 0x1000n };
    case U.IOMMU_GET_HW_INFO: return { dev_id: vm.devId, data_len: 40, data_uptr: buf };
    case U.IOMMU_HWPT_ALLOC: return { dev_id: vm.devId, pt_id: viommu, data_type: 2, data_len: 16, data_uptr: buf };
    case U.IOMMU_HWPT_INVALIDATE: return { hwpt_id: viommu, data_uptr: buf, data_type: 1, entry_len: 16, entry_num: 1 };
    case U.IOMMU_VIOMMU_ALLOC: return { type: 2, dev_id: vm.devId, hwpt_id: vm.s2Id, data_len: 16, data_uptr: buf };
    case U.IOMMU_VDEVICE_ALLOC: return { viommu_id: viommu, dev_id: vm.devId, virt_id: 0x10n };
    case U.IOMMU_VEVENTQ_ALLOC: return { viommu_id: viommu, type: 2, veventq_depth: 4 };
    case U.IOMMU_HW_QUEUE_ALLOC: return { viommu_id: viommu, type: 1, index: 0, nesting_parent_iova: 0x10000n, length: 0x1000n };
    default: return {};
  }
}

function assertErrno(ret: number, what: string): void {
  assert.ok(Number.isInteger(ret) && ret <= 0 && (ret === 0 || KNOWN_ERRNOS.has(-ret)), `${what}: returned ${ret}`);
}

describe('no JS exception escapes an ioctl (issue 14 #6)', () => {
  for (const io of U.IOCTLS) {
    test(`${io.name}: every field at every extreme value gives 0 or an errno`, () => {
      const w = world();
      const { c } = w.vm;
      const layout = io.struct as AnyStruct | undefined;
      if (!layout) {
        assertErrno(c.proc.ioctl(c.fd, io.number, c.put(new Uint8Array(new Uint32Array([64, 0, 0, 0]).buffer))), io.name);
        return;
      }
      const base = layout.encode({ ...baseline(io, w), size: layout.size } as never);
      for (const slot of slots(layout)) {
        for (const value of extremesFor(slot.size)) {
          const bytes = base.slice();
          putRaw(bytes, slot.at, slot.size, value);
          let ret: number;
          try {
            ret = c.proc.ioctl(c.fd, io.number, c.put(bytes));
          } catch (e) {
            assert.fail(`${io.name}.${slot.name} = 0x${value.toString(16)} threw ${String(e)}`);
          }
          assertErrno(ret, `${io.name}.${slot.name} = 0x${value.toString(16)}`);
        }
      }
    });
  }

  test('bad argument pointers and request numbers: EFAULT / ENOTTY, never a throw', () => {
    const { vm } = world();
    const { c } = vm;
    for (const argp of [0, 1, 2 ** 32, 2 ** 53, Number.MAX_SAFE_INTEGER, -1]) {
      for (const io of U.IOCTLS) assertErrno(c.proc.ioctl(c.fd, io.number, argp), `${io.name} at ${argp}`);
    }
    for (const request of [0, 0x3b00, 0x3b7f, 0x3b95, 0x3bff, 0xffff_ffff]) assertErrno(c.proc.ioctl(c.fd, request, c.alloc(64)), `request 0x${request.toString(16)}`);
  });

  test('VFIO cdev ioctls with extreme fields give 0 or an errno', () => {
    const { vm } = world();
    const { c } = vm;
    for (const [request, layout] of [
      [V.VFIO_DEVICE_BIND_IOMMUFD, V.vfio_device_bind_iommufd],
      [V.VFIO_DEVICE_ATTACH_IOMMUFD_PT, V.vfio_device_attach_iommufd_pt],
      [V.VFIO_DEVICE_DETACH_IOMMUFD_PT, V.vfio_device_detach_iommufd_pt],
    ] as const) {
      const base = (layout as AnyStruct).encode({ argsz: layout.size } as never);
      for (const slot of slots(layout as AnyStruct)) {
        for (const value of extremesFor(slot.size)) {
          const bytes = base.slice();
          putRaw(bytes, slot.at, slot.size, value);
          assertErrno(c.proc.ioctl(vm.vfio, request, c.put(bytes)), `${layout.name}.${slot.name} = 0x${value.toString(16)}`);
        }
      }
      assertErrno(c.proc.ioctl(vm.vfio, request, 0), `${layout.name} at NULL`);
    }
  });
});
