// A snapshot image is user input: what follows the checksums is attacked here. Valid images
// (CMDQV path with a VCMDQ error pending, trapped path with a host fault pending, emulated
// SMMUv3, an idle CMDQV VM, and one saved on a host busy with another VM) are decoded, their
// state mutated (out-of-range numbers, addresses outside RAM, foreign StreamIDs, wrong types,
// missing and extra keys, huge arrays, NaN, bigints), re-encoded with valid checksums by the
// image module's own writer, and restored onto a host that runs a victim VM. Every case must
// end in a SnapshotError or in a VM that runs as a guest with that state would; a failed
// restore leaves the host's resources as they were; the victim's DMA results, registers and
// IOTLB entries equal those of a twin victim on an untouched host.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mulberry32 } from '../../src/kit/prng.js';
import type { PlainValue } from '../../src/kit/persist.js';
import { registerImage, targetsOf } from '../../src/platform/fuzz/case.js';
import { HostKernel, Machine, SnapshotError } from '../../src/platform/machine.js';
import { decodePlain, encodePlain } from '../../src/platform/snapshot/codec.js';
import { readImage, writeImage } from '../../src/platform/snapshot/image.js';
import { runWorkload, WorkloadError, WorkloadRun, type WorkloadReport } from '../../src/platform/workload.js';
import { hostResources } from '../faults/host-balance.js';
import { busyHost, lineFor, pathLine, poke, type Path, type Poke } from './snapshot-rig.js';

const VICTIM_BDF = '0009:01:00.1';

/** A valid image of a small run on `path`, with `what` pending at the save. */
function source(path: Path, what: Poke, busy = false): Uint8Array {
  const host = busy ? busyHost(path === 'emulated' ? 'cmdqv' : path).host : new HostKernel();
  const m = Machine.create(path === 'emulated' ? pathLine(path) : lineFor(path === 'cmdqv'), { host });
  const run = WorkloadRun.start(m, { ops: 24, batch: 4, pages: 1, injectError: true, skipInvalidation: false, verifyEvery: 2 });
  run.runTo(12);
  poke(m, run, what);
  const img = m.save();
  m.close();
  return img;
}

const SOURCES: readonly Uint8Array[] = [
  source('cmdqv', 'vcmdq-error'),
  source('cmdqv', 'host-fault'),
  source('trapped', 'host-fault'),
  source('emulated', 'none'),
  source('cmdqv', 'none', true),
];

type Sections = Map<string, Uint8Array>;

/** Re-encode `sections` with `name` replaced by `value` (plain state) or raw bytes. */
function rebuild(sections: Sections, name: string, value: PlainValue | Uint8Array, raw = false): Uint8Array {
  return writeImage([...sections].map(([n, data]) => ({ name: n, data: n !== name ? data : raw ? (value as Uint8Array) : encodePlain(value as PlainValue) })));
}

type Rnd = () => number;
type Container = Record<string, PlainValue> | PlainValue[];

/** Every place in a value: its container and key (typed arrays: an element). */
interface Slot {
  readonly parent: Container | Uint8Array | Uint16Array | Uint32Array | Int32Array | Float64Array | BigUint64Array;
  readonly key: string | number;
  readonly path: string;
}

function slots(v: PlainValue, path: string, out: Slot[]): void {
  if (v === null || typeof v !== 'object') return;
  if (ArrayBuffer.isView(v)) {
    const t = v as Uint32Array;
    for (let i = 0; i < Math.min(t.length, 64); i++) out.push({ parent: t, key: i, path: `${path}[${i}]` });
    return;
  }
  const entries: [string | number, PlainValue][] = Array.isArray(v) ? v.map((x, i) => [i, x]) : Object.entries(v);
  for (const [k, x] of entries) {
    out.push({ parent: v as Container, key: k, path: `${path}.${k}` });
    slots(x, `${path}.${k}`, out);
  }
}

const HOSTILE: readonly PlainValue[] = [
  -1, 0.5, -0.5, 2 ** 31, 2 ** 32, 2 ** 32 + 4096, 2 ** 48, 2 ** 53, 2 ** 64, -(2 ** 53), NaN, Infinity, -Infinity, 1e300,
  0x7_0000_0000, 0x4000_0000, 0xffff_ffff, 0, 1, 7, 8, 127, 128, 4096, 64,
  2n ** 64n, -1n, 5n, '1', '', 'x'.repeat(300), null, undefined, true, false,
  [], {}, new Uint8Array(3), new Uint32Array(1000), new Float64Array([NaN]),
];

/** One mutation of a decoded section, in place; returns what it did. */
function mutate(root: PlainValue, rnd: Rnd): string {
  const all: Slot[] = [];
  slots(root, '', all);
  if (all.length === 0) return 'nothing to mutate';
  const s = all[Math.floor(rnd() * all.length)]!;
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  if (ArrayBuffer.isView(s.parent)) {
    const t = s.parent as Uint32Array;
    const i = s.key as number;
    if (t instanceof BigUint64Array) {
      (t as unknown as BigUint64Array)[i] = pick([0n, 2n ** 64n - 1n, 2n ** 63n, 1n << BigInt(Math.floor(rnd() * 64))]);
    } else if (t instanceof Float64Array) {
      (t as unknown as Float64Array)[i] = pick([NaN, -1, 1e300, 0.5]);
    } else {
      const v = pick([0xffff_ffff, 0x8000_0000, 0, 1 << Math.floor(rnd() * 32), Math.floor(rnd() * 2 ** 32), t[i]! ^ (1 << Math.floor(rnd() * 32))]);
      t[i] = v;
    }
    return `${s.path} element = 0x${Number((s.parent as Uint32Array)[i]).toString(16)}`;
  }
  const parent = s.parent as Record<string | number, PlainValue>;
  const old = parent[s.key];
  const r = rnd();
  if (r < 0.08 && !Array.isArray(parent)) {
    delete parent[s.key];
    return `${s.path} deleted`;
  }
  if (r < 0.14 && !Array.isArray(parent)) {
    parent['extra' + Math.floor(rnd() * 10)] = pick(HOSTILE);
    return `${s.path}: extra key beside it`;
  }
  if (r < 0.2 && Array.isArray(old)) {
    const n = pick([0, 1, 17, 300, 20000]);
    parent[s.key] = Array.from({ length: n }, (_, i) => (old.length ? old[i % old.length]! : 0));
    return `${s.path} = an array of ${n}`;
  }
  if (r < 0.45 && typeof old === 'number') {
    const v = pick([old + 1, old - 1, old * 2, old + 4096, old + 2 ** 30, old * 2 ** 20, -old, old + 0.5]);
    parent[s.key] = v;
    return `${s.path} = ${v} (was ${old})`;
  }
  const v = pick(HOSTILE);
  parent[s.key] = v;
  return `${s.path} = ${typeof v === 'bigint' ? `${v}n` : ArrayBuffer.isView(v) ? `${v.constructor.name}(${(v as Uint8Array).length})` : JSON.stringify(v) ?? String(v)}`;
}

/** Targeted mutations of the RAM section's raw block table. */
function mutateRam(data: Uint8Array, rnd: Rnd): { bytes: Uint8Array; what: string } {
  const out = data.slice();
  const view = new DataView(out.buffer);
  const count = view.getUint32(0, true);
  const r = rnd();
  if (r < 0.25 || count === 0) {
    const n = [0xffff_ffff, count + 1, 1 << 20][Math.floor(rnd() * 3)]!;
    view.setUint32(0, n, true);
    return { bytes: out, what: `ram block count = ${n}` };
  }
  if (r < 0.6) {
    const hi = [0, 1, 0xffff_ffff, 0x1f_ffff, 0x20_0000][Math.floor(rnd() * 5)]!;
    const lo = [0xffff_f000, 0, 0xffff_ffff, 3][Math.floor(rnd() * 4)]!;
    view.setUint32(4, lo, true);
    view.setUint32(8, hi, true);
    return { bytes: out, what: `ram block 0 offset = ${hi}:${lo}` };
  }
  const len = [0xffff_ffff, view.getUint32(12, true) + 1, 0][Math.floor(rnd() * 3)]!;
  view.setUint32(12, len, true);
  return { bytes: out, what: `ram block 0 length = ${len}` };
}

/** Targeted mutations of the places an attacker aims at (queue bases, SIDs, cursors). */
function mutateTargeted(name: string, v: PlainValue, rnd: Rnd): string {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const o = v as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  if (name === 'vmm') {
    const smmu = o.smmus?.[0];
    const cmdqv = smmu?.cmdqv;
    const k = Math.floor(rnd() * 9);
    if (k === 0 && cmdqv) {
      const q = Math.floor(rnd() * cmdqv.page1.length);
      const words = cmdqv.page1[q] as Uint32Array;
      words[0] = pick([0x0000_0000, 0xffff_f000, 0x4000_000c, 0x8000_001f, 0x4800_0000 | 12]);
      words[1] = pick([0, 1, 0xffff, 0x1_0000, 0xffff_ffff]);
      return `cmdqv page1[${q}] BASE = 0x${words[1]!.toString(16)}_${words[0]!.toString(16)}`;
    }
    if (k === 1 && cmdqv) {
      const q = Math.floor(rnd() * cmdqv.page0.length);
      const words = cmdqv.page0[q] as Uint32Array;
      const slot = Math.floor(rnd() * words.length);
      words[slot] = pick([0xffff_ffff, 0x8000_0000 | 0xfff, 1 << 20, 0x7fff_ffff]);
      return `cmdqv page0[${q}] word ${slot} = 0x${words[slot]!.toString(16)}`;
    }
    if (k === 2 && smmu) {
      const dev = smmu.accel.devices?.[0];
      if (dev) {
        dev.hostDevice.guestSid = pick([0, 0x100, 0x101, 0xffff, -1, 2 ** 32]);
        return `device guestSid = ${dev.hostDevice.guestSid}`;
      }
    }
    if (k === 3 && smmu) {
      const dev = smmu.accel.devices?.[0];
      if (dev?.s1Data) {
        const d = dev.s1Data as Uint8Array;
        for (let i = 0; i < d.length; i++) d[i] = Math.floor(rnd() * 256);
        return 's1Data randomised';
      }
    }
    if (k === 4 && smmu) {
      const [n, size] = pick([[1, 0], [1, 7], [64, 32], [5000, 32], [2, 1 << 20]] as const);
      smmu.vevents[pick(['smmuv3', 'cmdqv'])] = Array.from({ length: n }, () => new Uint8Array(size));
      return `${n} pending vEVENTs of ${size} bytes`;
    }
    if (k === 5) {
      o.dispatches = [{ smmu: pick([0, 1, -1, 0.5]), queue: pick(['smmuv3', 'cmdqv', 'x']), at: pick([0, NaN, -1, 1e300]) }];
      return `dispatches = ${JSON.stringify(o.dispatches)}`;
    }
    if (k === 6 && smmu) {
      const regs = smmu.accel.registers as Uint32Array;
      const i = Math.floor(rnd() * regs.length);
      regs[i] = pick([0xffff_ffff, Math.floor(rnd() * 2 ** 32)]);
      return `accel register word ${i} = 0x${regs[i]!.toString(16)}`;
    }
    if (k === 7) {
      o.clockNs = pick([-1, NaN, 2 ** 60, 0.5]);
      return `clockNs = ${o.clockNs}`;
    }
    if (k === 8 && o.pci?.length) {
      const f = o.pci[Math.floor(rnd() * o.pci.length)];
      const c = f.config as Uint8Array;
      const at = pick([0x04, 0x10, 0x18, 0x19, 0x1a, 0x3c]);
      c[at] = Math.floor(rnd() * 256);
      return `pci config byte 0x${at.toString(16)} = ${c[at]}`;
    }
    return mutate(v, rnd);
  }
  if (name === 'guest') {
    const k = Math.floor(rnd() * 6);
    if (k === 0 && o.cursor) {
      o.cursor[pick(['dom', 'op'])] = pick([-1, 5, 1e9, 0.5, NaN]);
      return `cursor = ${JSON.stringify(o.cursor)}`;
    }
    if (k === 1 && o.options) {
      o.options[pick(['ops', 'batch', 'pages', 'verifyEvery'])] = pick([0, -1, 1e12, 0.5, NaN, 2 ** 31]);
      return `options = ${JSON.stringify(o.options)}`;
    }
    if (k === 2 && o.pool) {
      o.pool[0] = pick([0, -4096, 2 ** 40, 0x4000_0000 + 2 ** 32, 0.5]);
      return `pool[0] = ${o.pool[0]}`;
    }
    if (k === 3 && o.domains?.[0]) {
      o.domains[0].tables.root = pick([0, 2 ** 40, -1, 0x4000_0001]);
      return `domain root = ${o.domains[0].tables.root}`;
    }
    if (k === 4 && o.kernel) {
      o.kernel.mem = pick([0, -1, 2 ** 50, 0.5, 0x4000_0000]);
      return `kernel allocator = ${o.kernel.mem}`;
    }
    if (k === 5 && o.masters?.[0]) {
      // The victim's device is host device 1: a DMA master the guest does not own.
      if (o.masters[0].kind === 'vfio' && rnd() < 0.5) {
        o.masters[0].hostIndex = 1;
        return 'master hostIndex = 1 (the victim\'s device)';
      }
      o.masters[0].rid = pick([0x100, 0x101, 0xffff, -1]);
      return `master rid = ${o.masters[0].rid}`;
    }
    return mutate(v, rnd);
  }
  if (name === 'meta') {
    const k = Math.floor(rnd() * 4);
    if (k === 0 && Array.isArray(o.argv)) {
      o.argv = (o.argv as string[]).map((a) => a.replace('0009:01:00.0', VICTIM_BDF));
      if (rnd() < 0.5) o.hostUnits = [];
      return `argv names the victim's device${o.hostUnits.length ? '' : ', hostUnits empty'}`;
    }
    if (k === 1) {
      o.ramBytes = pick([0, 2 ** 20, 2 ** 33, 2 ** 40, -1, 0.5]);
      return `ramBytes = ${o.ramBytes}`;
    }
    if (k === 2 && Array.isArray(o.argv)) {
      const i = (o.argv as string[]).indexOf('-m');
      if (i >= 0) o.argv[i + 1] = pick(['64T', '1', '0', '2G']);
      return `argv -m ${o.argv[i + 1]}`;
    }
    return mutate(v, rnd);
  }
  return mutate(v, rnd);
}

/** What the victim shows: its workload's results, its registers, its IOTLB entries. */
function victimStep(v: Machine, k: number, vmids: ReadonlySet<number>): string {
  const rep: WorkloadReport = runWorkload(v, { ops: 4, batch: 4, pages: 1, injectError: k % 3 === 0, skipInvalidation: false });
  v.runMainLoop();
  const iotlb = v.host.smmus.get('smmu0')!.hw.iotlb.entries().filter((e) => vmids.has(e.vmid)).map((e) => [e.vmid, e.asid, e.iova, e.pa, e.size, e.perm]);
  return JSON.stringify({ dma: rep.dmaChecks, errors: { ...rep.errors, hostFaultsForwarded: undefined }, regs: [...registerImage(v, targetsOf(v))], iotlb: iotlb.sort() });
}

/** The victims' machine line: a CMDQV VM on the second host device. */
function victimOn(host: HostKernel): Machine {
  return Machine.create(['-m', '1G', '-object', 'iommufd,id=iommufd0', '-device', 'arm-smmuv3,primary-bus=pcie.0,accel=on,cmdqv=on,identifier=1', '-device', `vfio-pci,host=${VICTIM_BDF},iommufd=iommufd0`], { host });
}

const CASES = Number(process.env.CMDQV_HOSTILE_CASES ?? 300);

test(`hostile snapshot state (${CASES} seeded cases): a SnapshotError or a VM that runs; host and victim untouched`, () => {
  const twinHost = new HostKernel();
  const twin = victimOn(twinHost);
  const host = new HostKernel();
  const victim = victimOn(host);
  const vmids = new Set(twinHost.smmus.get('smmu0')!.hw.iotlb.entries().map((e) => e.vmid));
  let step = 0;
  const decoded = SOURCES.map((img) => readImage(img));
  const outcomes = { refused: 0, restored: 0 };
  const failures: string[] = [];
  try {
    for (let seed = 1; seed <= CASES; seed++) {
      const rnd = mulberry32(seed * 7919);
      const sections = decoded[seed % decoded.length]!;
      const names = [...sections.keys()];
      const name = names[Math.floor(rnd() * names.length)]!;
      let image: Uint8Array;
      let what: string;
      if (name === 'ram') {
        const m = mutateRam(sections.get('ram')!, rnd);
        image = rebuild(sections, 'ram', m.bytes, true);
        what = m.what;
      } else {
        const value = decodePlain(sections.get(name)!, name);
        what = rnd() < 0.5 ? mutateTargeted(name, value, rnd) : mutate(value, rnd);
        image = rebuild(sections, name, value);
      }
      const label = `seed ${seed}, section '${name}': ${what}`;
      if (process.env.CMDQV_HOSTILE_TRACE) console.error(label.slice(0, 300));
      const before = hostResources(host);
      let m: Machine | undefined;
      try {
        m = Machine.restore(image, { host });
        outcomes.restored++;
      } catch (e) {
        if (!(e instanceof SnapshotError)) failures.push(`${label}: restore threw ${(e as Error).name}: ${(e as Error).message}`);
        else outcomes.refused++;
      }
      if (m) {
        try {
          if (m.restoredGuest !== undefined) {
            const run = WorkloadRun.resume(m);
            run.runTo(run.done + 8);
          }
          m.runMainLoop();
        } catch (e) {
          const ok = e instanceof SnapshotError || (e instanceof WorkloadError && /holds no workload run/.test(e.message));
          if (!ok) failures.push(`${label}: the restored VM's run threw ${(e as Error).name}: ${(e as Error).message}`);
        } finally {
          m.close();
        }
      }
      const after = hostResources(host);
      if (JSON.stringify(after) !== JSON.stringify(before)) failures.push(`${label}: the host holds other resources after it: ${JSON.stringify(before)} → ${JSON.stringify(after)}`);
      if (seed % 10 === 0) {
        const a = victimStep(twin, step, vmids);
        const b = victimStep(victim, step, vmids);
        step++;
        if (a !== b) failures.push(`${label}: the victim differs from its twin: ${a.slice(0, 200)} vs ${b.slice(0, 200)}`);
      }
      if (failures.length > 20) break;
    }
  } finally {
    victim.close();
    twin.close();
  }
  if (process.env.CMDQV_HOSTILE_TRACE) console.error(JSON.stringify(outcomes));
  assert.deepEqual(failures, [], failures.join('\n'));
  // Both outcomes happen: the mutations reach past the checks into loaded state.
  assert.ok(outcomes.refused > CASES / 10 && outcomes.restored > CASES / 10, JSON.stringify(outcomes));
});

test("an image naming another VM's host device (hostUnits emptied to dodge the topology check) is refused naming the device; the host is as before", () => {
  const sections = readImage(SOURCES[0]!);
  const meta = decodePlain(sections.get('meta')!, 'meta') as { argv: string[]; hostUnits: unknown[] };
  meta.argv = meta.argv.map((a) => a.replace('0009:01:00.0', VICTIM_BDF));
  meta.hostUnits = [];
  const host = new HostKernel();
  const victim = victimOn(host);
  const before = hostResources(host);
  assert.throws(() => Machine.restore(rebuild(sections, 'meta', meta as unknown as PlainValue), { host }), (e: unknown) => e instanceof SnapshotError && /0009:01:00\.1/.test(e.message));
  assert.deepEqual(hostResources(host), before);
  victim.close();
});
