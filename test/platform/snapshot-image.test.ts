// Issue 13 "Done when": truncated, corrupt, other-version and other-topology images are refused
// with a message naming the problem, before anything is created; a restore that fails after
// creation leaves the host as it was. Also the encoding itself and the restored VM's host
// objects on a busy host.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULT_HOST } from '../../src/host/config.js';
import { decodePlain, encodePlain } from '../../src/platform/snapshot/codec.js';
import { crc32, tableCrc32 } from '../../src/kit/crc32.js';
import { readImage, writeImage } from '../../src/platform/snapshot/image.js';
import { forEachRamBlock, ramSection } from '../../src/platform/snapshot/ram-section.js';
import { HostKernel, Machine, SnapshotError } from '../../src/platform/machine.js';
import { WorkloadRun } from '../../src/platform/workload.js';
import { hostResources } from '../faults/host-balance.js';
import { busyHost, lineFor } from './snapshot-rig.js';

/** An image of the default VM 24 ops into a small run. */
function image(): Uint8Array {
  const m = Machine.create(lineFor(true));
  WorkloadRun.start(m, { ops: 32, batch: 8, pages: 1, injectError: false, skipInvalidation: false }).runTo(24);
  const img = m.save();
  m.close();
  return img;
}

const IMG = image();

function refused(img: Uint8Array, pattern: RegExp, host?: HostKernel | typeof DEFAULT_HOST): void {
  assert.throws(() => Machine.restore(img, host ? { host } : {}), (e: unknown) => e instanceof SnapshotError && pattern.test(e.message), `expected ${pattern}`);
}

test('the section checksum is CRC-32 (reference values; the JavaScript fallback agrees with zlib, also continued)', () => {
  const e = (s: string) => new TextEncoder().encode(s);
  for (const f of [crc32, tableCrc32]) {
    assert.equal(f(e('')), 0);
    assert.equal(f(e('123456789')), 0xcbf43926);
    assert.equal(f(e('The quick brown fox jumps over the lazy dog')), 0x414fa339);
    assert.equal(f(e('xThe quick brown fox jumps over the lazy dog').subarray(1)), 0x414fa339);
    assert.equal(f(e('56789'), f(e('1234'))), 0xcbf43926);
  }
  const big = new Uint8Array(100_003).map((_, i) => (i * 131 + 7) & 0xff);
  assert.equal(crc32(big), tableCrc32(big));
});

test('plain state round-trips exactly through the encoding', () => {
  const v = { n: -1.5, big: 2n ** 64n - 1n, s: 'é', t: true, f: false, z: null, u: undefined, a: [1, [2, { x: new Uint32Array([1, 0xffff_ffff]) }]], b: new Uint8Array([1, 2, 3]).subarray(1), i: new Int32Array([-1]), d: new Float64Array([0.1]), q: new BigUint64Array([5n]), w: new Uint16Array([7]) };
  const back = decodePlain(encodePlain(v), 'test') as typeof v;
  assert.deepEqual(back, v);
  assert.ok(back.b instanceof Uint8Array && back.b.length === 2);
  // A file read is a Node Buffer, often a view into a shared pool: the arrays still come out right.
  const pooled = Buffer.from(encodePlain(v));
  assert.deepEqual(decodePlain(pooled, 'pooled'), v);
  assert.throws(() => decodePlain(encodePlain(v).subarray(0, 20), 'the state'), /the state is truncated/);
  assert.throws(() => decodePlain(new Uint8Array([42]), 'the state'), /unknown value tag 42/);
});

test('a truncated image is refused, naming the truncation, at every length', () => {
  for (const n of [0, 7, 23, 60, IMG.length >> 1, IMG.length - 1]) refused(IMG.subarray(0, n), /truncated|not a cmdqv snapshot image/);
  refused(IMG.subarray(0, IMG.length - 1), /truncated: section 'ram'/);
});

test('a corrupt image is refused, naming the corrupt part', () => {
  const sections = readImage(IMG);
  const at = (name: string) => sections.get(name)!.byteOffset + 3;
  for (const [name, pattern] of [['ram', /section 'ram' is corrupt/], ['vmm', /section 'vmm' is corrupt/], ['guest', /section 'guest' is corrupt/], ['meta', /section 'meta' is corrupt/]] as const) {
    const bad = IMG.slice();
    bad[at(name)]! ^= 0x40;
    refused(bad, pattern);
  }
  const header = IMG.slice();
  header[22]! ^= 1; // inside the section table
  refused(header, /header is corrupt/);
  const magic = IMG.slice();
  magic[0] = 0x58;
  refused(magic, /not a cmdqv snapshot image/);
  refused(new TextEncoder().encode('hello, this is not an image at all'), /not a cmdqv snapshot image/);
});

test('the RAM section starts on a 4 KiB boundary of the image; a non-zero byte in the padding before it is refused', () => {
  const sections = readImage(IMG);
  const ram = sections.get('ram')!;
  assert.equal((ram.byteOffset - IMG.byteOffset) % 4096, 0);
  const before = Math.max(...[...sections.values()].filter((d) => d !== ram).map((d) => d.byteOffset - IMG.byteOffset + d.length));
  const at = ram.byteOffset - IMG.byteOffset - 1;
  assert.ok(at >= before, 'there is padding before the RAM section');
  const bad = IMG.slice();
  bad[at] = 1;
  refused(bad, new RegExp(`non-zero byte at ${at}, in the padding before section 'ram'`));
});

test('sections that overlap are refused (each would pass its own checksum)', () => {
  const same = new Uint8Array(16).fill(7);
  const img = writeImage([{ name: 'a', data: same }, { name: 'b', data: same }]);
  const dv = new DataView(img.buffer, img.byteOffset);
  const headerLen = dv.getUint32(12, true);
  // Entry 'b' (after entry 'a': 1 + 1 + 8 + 8 + 4 bytes): its offset made 'a''s, the header re-summed.
  const bEntry = 20 + 22;
  dv.setUint32(bEntry + 2, dv.getUint32(20 + 2, true), true);
  dv.setUint32(headerLen - 4, crc32(img.subarray(0, headerLen - 4)), true);
  assert.throws(() => readImage(img.subarray(0, img.length - 16)), (e: unknown) => e instanceof SnapshotError && /section 'b' overlaps the bytes before it/.test(e.message));
});

test('the RAM section: a table, then page-aligned block bytes back to back; anything else in it is named', () => {
  const blocks = [{ offset: 0x10000, bytes: new Uint8Array(4096).fill(1) }, { offset: 2 ** 33, bytes: new Uint8Array(8).fill(2) }];
  const img = writeImage([{ name: 'meta', data: new Uint8Array(3) }, ramSection(blocks)]);
  const data = readImage(img).get('ram')!;
  assert.equal((data.byteOffset - img.byteOffset) % 4096, 0);
  const seen: [number, number[]][] = [];
  forEachRamBlock(data, (o, b) => seen.push([o, [...new Set(b)]]));
  assert.deepEqual(seen, [[0x10000, [1]], [2 ** 33, [2]]]);
  assert.equal(data[4096], 1, 'block data starts at the first 4 KiB boundary after the table');
  const edit = (f: (d: Uint8Array) => void) => {
    const d = data.slice();
    f(d);
    return () => forEachRamBlock(d, () => {});
  };
  assert.throws(edit((d) => (d[4] = 1)), /the word after its block count is not zero/);
  assert.throws(edit((d) => (d[8 + 12] = 1)), /block 0's reserved word is not zero/);
  assert.throws(edit((d) => (d[100] = 1)), /the padding after its table is not zero/);
  assert.throws(edit((d) => (d[2] = 1)), /is truncated: a table of 65538 blocks/);
  assert.throws(edit((d) => (d[8 + 16 + 8] = 9)), /is truncated: block 1 needs/);
  assert.throws(() => forEachRamBlock(new Uint8Array([...data, 0, 0]), () => {}), /2 bytes follow its blocks/);
});

test('an image of another version is refused, naming both versions (version 1 had XXH32 checksums)', () => {
  for (const v of [1, 3]) {
    const other = IMG.slice();
    new DataView(other.buffer).setUint32(8, v, true);
    refused(other, new RegExp(`version ${v} is not supported \\(this cmdqv reads version 2\\)`));
  }
});

test('a well-formed image whose sections do not describe a machine is refused', () => {
  refused(writeImage([{ name: 'meta', data: encodePlain({ hello: 1 }) }]), /does not describe a machine/);
  const sections = readImage(IMG);
  refused(writeImage([{ name: 'meta', data: sections.get('meta')! }]), /has no 'vmm' section/);
});

test('another topology is refused before anything is created on the host', () => {
  const noDevice = { ...DEFAULT_HOST, devices: DEFAULT_HOST.devices.filter((d) => d.bdf !== '0009:01:00.0') };
  refused(IMG, /uses host device 0009:01:00.0, which the destination host does not have/, noDevice);
  refused(IMG, /backed by 1073741824-byte pages; the destination host gives no hugepages/, { ...DEFAULT_HOST, hugepages: false });
  refused(IMG, /CMDQV behind smmu0 differs/, { ...DEFAULT_HOST, smmus: DEFAULT_HOST.smmus.map((s) => ({ ...s, cmdqv: undefined })) });
  // The device is another VM's on this host: refused, and that VM's host state is untouched.
  const host = new HostKernel();
  const other = Machine.create(lineFor(true), { host });
  const before = hostResources(host);
  refused(IMG, /0009:01:00.0 is in use on the destination host/, host);
  assert.deepEqual(hostResources(host), before);
  other.close();
});

test('a restore failing after the VM was created closes it: the host gets everything back', () => {
  const sections = readImage(IMG);
  const vmm = decodePlain(sections.get('vmm')!, 'vmm') as { pci: unknown[] };
  vmm.pci.pop();
  const bad = writeImage([...sections].map(([name, data]) => ({ name, data: name === 'vmm' ? encodePlain(vmm as never) : data })));
  const host = new HostKernel();
  const fresh = hostResources(host);
  refused(bad, /restore failed, the machine was closed: snapshot state vmm\.pci: has \d+ elements, the machine has \d+/, host);
  assert.deepEqual(hostResources(host), fresh);
  // The good image still restores on that host.
  Machine.restore(IMG, { host }).close();
  assert.deepEqual(hostResources(host), fresh);
});

test('restored next to another VM: another VINTF index and VMID; the guest reads the same', () => {
  const src = Machine.create(lineFor(true));
  WorkloadRun.start(src, { ops: 16, batch: 8, pages: 1, injectError: false, skipInvalidation: false }).runTo(8);
  const img = src.save();
  const { host, other } = busyHost('cmdqv');
  const m = Machine.restore(img, { host });
  // CMDQ_ALLOC_MAP of the host silicon: which VINTF each allocated global VCMDQ serves.
  const vintfs = (h: HostKernel) => {
    const hw = h.smmus.get('smmu0')!.cmdqvHw!;
    const used = new Set<number>();
    for (let q = 0; q < 128; q++) {
      const v = hw.read(0x200 + 4 * q, 4);
      if (v & 1) used.add((v >>> 15) & 0x3f);
    }
    return [...used].sort();
  };
  assert.deepEqual(vintfs(src.host), [1], 'the source VM had VINTF 1');
  assert.deepEqual(vintfs(host), [1, 2], 'restored next to the other VM: its queues are in VINTF 2');
  assert.equal(host.smmus.get('smmu0')!.driver.vmidsInUse, 2);
  const page0 = src.smmus[0]!.cmdqvBase! + 0x30000;
  for (let o = 0; o < 0x100; o += 4) assert.equal(m.read(page0 + o, 4).value, src.read(page0 + o, 4).value, `page0 +0x${o.toString(16)}`);
  m.close();
  other.close();
  src.close();
});

test('save with ram: false leaves RAM out; the RAM given to restore fills it', async () => {
  const { SparseMemory } = await import('../../src/kit/sparse-memory.js');
  const src = Machine.create(lineFor(true));
  WorkloadRun.start(src, { ops: 16, batch: 8, pages: 1, injectError: false, skipInvalidation: false }).runTo(8);
  const img = src.save({ ram: false });
  assert.ok(!readImage(img).has('ram'));
  refused(img, /holds no guest RAM/);
  const pages = new SparseMemory(src.ramBytes);
  src.forEachTouchedRam((offset, bytes) => pages.writeBytes(offset, bytes));
  const m = Machine.restore(img, { ram: pages });
  const run = WorkloadRun.resume(m);
  const ref = WorkloadRun.resume(Machine.restore(src.save())).finish();
  assert.deepEqual({ ...run.finish(), wallNs: 0 }, { ...ref, wallNs: 0 });
  assert.throws(() => Machine.restore(img, { ram: new SparseMemory(4096) }), /the RAM given to restore is 4096 bytes/);
  src.close();
});

test('two SMMUs behind pxb-pcie root ports: the restored run prints the same report, host ids included', async () => {
  const { formatReport } = await import('../../src/cli/run-command.js');
  const line = ('-M virt,gic-version=3 -m 8G -object iommufd,id=iommufd0 -device pxb-pcie,id=pcie.1,bus_nr=1 ' +
    '-device pcie-root-port,id=rp1,bus=pcie.1,chassis=1 -device pxb-pcie,id=pcie.2,bus_nr=8,bus=pcie.0 ' +
    '-device pcie-root-port,id=rp2,bus=pcie.2,chassis=2 -device arm-smmuv3,primary-bus=pcie.1,accel=on,cmdqv=on,identifier=1 ' +
    '-device arm-smmuv3,primary-bus=pcie.2,accel=on,identifier=2 -device vfio-pci,host=0009:01:00.0,iommufd=iommufd0,bus=rp1 ' +
    '-device vfio-pci,host=0009:01:00.1,iommufd=iommufd0,bus=rp2').split(' ');
  const text = (m: Machine, r: ReturnType<WorkloadRun['finish']>) => formatReport(m, r).split('\n').filter((l) => !l.startsWith('Speed')).join('\n');
  const work = { ops: 24, batch: 8, pages: 2, injectError: true, skipInvalidation: false, verifyEvery: 3 };
  const src = Machine.create(line);
  const run = WorkloadRun.start(src, work);
  run.runTo(16);
  const img = src.save();
  const dst = Machine.restore(img);
  assert.equal(dst.devices.map((d) => d.host.guestSid).join(), '512,2304', 'bus numbers from the bridges: SIDs 0x200, 0x900');
  assert.equal(text(dst, WorkloadRun.resume(dst).finish()), text(src, run.finish()));
});
