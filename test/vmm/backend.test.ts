// The VMM's iommufd backend: vEVENT read-and-validate (docs/reference/qemu-accel-smmuv3.md §11.2 and §16 vectors).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Tracer } from '../../src/kit/trace.js';
import { HostKernel } from '../../src/host/kernel/host-kernel.js';
import { VeventQueue } from '../../src/host/iommufd/veventq.js';
import { BackendError, IommufdBackend, strerror, type Veventq } from '../../src/vmm/backends/iommufd.js';
import * as U from '../../src/uapi/iommufd.js';

function setup(depth: number) {
  const kernel = new HostKernel();
  const proc = kernel.createProcess();
  const be = new IommufdBackend('iommufd0', proc, new Tracer());
  const hostQ = new VeventQueue(2, depth);
  const fd = proc.installFile({ kind: 'veventq', read: (va, n) => hostQ.read(n, (bytes, at) => proc.mem.copyToUser(va + at, bytes)), readable: () => hostQ.pending > 0, close: () => {}, watch: () => {} });
  const q: Veventq = { id: 7, fd, type: 2, lastSeq: 0, started: false };
  return { be, hostQ, q };
}

const map = (b: number) => new Uint8Array(16).fill(0).map((_, i) => (i === 0 ? b : 0));

test('records are read whole; a sequence gap reports lost events; nothing queued is "none"', () => {
  const { be, hostQ, q } = setup(16);
  assert.deepEqual(be.readVevent(q, 16), { kind: 'none' });
  hostQ.report(map(1));
  const r1 = be.readVevent(q, 16);
  assert.equal(r1.kind, 'record');
  assert.equal(r1.kind === 'record' && r1.lost, 0);
  // Sequence 1 and 2 are consumed elsewhere (e.g. lost): the next one (3) shows a gap of 2.
  hostQ.report(map(2));
  hostQ.report(map(3));
  hostQ.read(48, () => {});
  hostQ.report(map(4));
  const r2 = be.readVevent(q, 16);
  assert.ok(r2.kind === 'record');
  assert.equal(r2.sequence, 3);
  assert.equal(r2.lost, 2, 'lost 2 event(s)');
  assert.equal(r2.payload[0], 4);
});

test('an overflow header is reported and restarts sequence tracking', () => {
  const { be, hostQ, q } = setup(1);
  hostQ.report(map(1));
  hostQ.report(map(2)); // dropped: lost-events header
  const r1 = be.readVevent(q, 16);
  assert.equal(r1.kind, 'record');
  const r2 = be.readVevent(q, 16);
  assert.deepEqual(r2, { kind: 'error', message: 'vEVENTQ(type 2 id 7): overflowed' });
  assert.equal(q.started, false);
  hostQ.report(map(3));
  const r3 = be.readVevent(q, 16);
  assert.ok(r3.kind === 'record');
  assert.equal(r3.lost, 0, 'no bogus gap after an overflow');
});

test('failed calls carry errno and QEMU\'s message text', () => {
  const { be } = setup(1);
  assert.throws(() => be.allocHwQueue(99, 1, 0, 0x1000, 4096), (e: unknown) =>
    e instanceof BackendError && e.errno === 2 && e.message === 'IOMMU_HW_QUEUE_ALLOC failed: No such file or directory');
  assert.equal(strerror(95), 'Operation not supported');
  const msgs: string[] = [];
  be.freeId(1234, (m) => msgs.push(m));
  assert.deepEqual(msgs, ['Failed to free id: 1234 No such file or directory']);
});

test('IOMMU_HWPT_INVALIDATE: the argument bytes are the layout\'s encoding, entry_num comes back, failures carry it and the call is recorded', () => {
  const kernel = new HostKernel();
  const proc = kernel.createProcess();
  const seen: Uint8Array[] = [];
  const answers: { ret: number; handled: number }[] = [{ ret: 0, handled: 2 }, { ret: -22, handled: 1 }];
  const ioctl = proc.ioctl.bind(proc);
  const sys = Object.create(proc) as typeof proc;
  // The kernel's side, faked: copy the argument out, write entry_num back, return the answer.
  sys.ioctl = (fd: number, request: number, arg: number): number => {
    if (request !== U.IOMMU_HWPT_INVALIDATE.number) return ioctl(fd, request, arg);
    seen.push(proc.memory.load(arg, U.iommu_hwpt_invalidate.size));
    const a = answers.shift()!;
    proc.memory.write32(arg + U.iommu_hwpt_invalidate.field('entry_num').offset, a.handled);
    return a.ret;
  };
  const be = new IommufdBackend('iommufd0', sys, new Tracer());
  const entries = new Uint8Array(48).map((_, i) => i);
  assert.equal(be.invalidateCache(0x1234_5678, 3, entries), 2);
  assert.throws(() => be.invalidateCache(7, 1, entries.subarray(0, 32)), (e: unknown) => e instanceof BackendError && e.errno === 22 && e.entryNum === 1);
  const vas = be.calls.filter((c) => c.name === 'IOMMU_HWPT_INVALIDATE').map((c) => c.args.data_uptr as bigint);
  assert.equal(vas.length, 2);
  assert.ok(vas[0]! > 0xffff_ffffn, 'a user address above 4 GiB: both words of data_uptr are written');
  assert.deepEqual(seen[0], U.iommu_hwpt_invalidate.encode({ hwpt_id: 0x1234_5678, data_uptr: vas[0]!, data_type: 3, entry_len: 16, entry_num: 3 }));
  assert.deepEqual(seen[1], U.iommu_hwpt_invalidate.encode({ hwpt_id: 7, data_uptr: vas[1]!, data_type: 1, entry_len: 16, entry_num: 2 }));
  assert.deepEqual(proc.memory.load(Number(vas[0]!), 48), entries);
  assert.deepEqual(be.calls.at(-1), { name: 'IOMMU_HWPT_INVALIDATE', args: { hwpt_id: 7, data_uptr: vas[1]!, data_type: 1, entry_len: 16, entry_num: 2 }, ret: -22 });
  // A length that is not whole entries is refused as the layout refuses it.
  assert.throws(() => be.invalidateCache(7, 1, entries.subarray(0, 20)), /entry_num: value 1.25 does not fit u32/);
});

test('a record read into the caller\'s buffer, and records queued after others were read (their buffers reused), keep their own bytes', () => {
  const { be, hostQ, q } = setup(4);
  const into = new Uint8Array(16);
  hostQ.report(map(1));
  const r1 = be.readVevent(q, 16, into);
  assert.ok(r1.kind === 'record');
  assert.equal(r1.payload, into, 'read into the given buffer');
  assert.equal(into[0], 1);
  // The queue reuses the read record's copy for the next: each queued record keeps its bytes.
  const src = map(2);
  hostQ.report(src);
  src[0] = 99; // the caller's buffer changing after report does not reach the queue
  hostQ.report(map(3));
  assert.deepEqual(hostQ.state.records.map((r) => r.payload[0]), [2, 3]);
  assert.notEqual(hostQ.state.records[0]!.payload, hostQ.state.records[1]!.payload);
  const r2 = be.readVevent(q, 16);
  const r3 = be.readVevent(q, 16);
  assert.ok(r2.kind === 'record' && r3.kind === 'record');
  assert.deepEqual([r2.payload[0], r3.payload[0], r2.sequence, r3.sequence], [2, 3, 1, 2]);
  assert.notEqual(r2.payload, r3.payload, 'without a buffer each read returns its own array');
});
