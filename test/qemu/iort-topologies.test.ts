// issue 11 §6: for generated non-accel topologies, cmdqv's IORT (`cmdqv acpi`) equals the one
// QEMU 11.1 builds for the same line, read through fw_cfg after firmware-style bridge numbering
// (docs/reference/qemu-machine.md §3-4). Seeded: a failure names its seed and line.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { mulberry32 } from '../../src/kit/prng.js';
import { hex } from '../vmm/acpi/fixtures.js';
import { cmdqvAcpi } from './cmdqv-side.js';
import { inParallel, NO_QEMU, QEMU, qemuAcpiTables, QTEST_ARGS, rootBuses } from './qtest-client.js';

/**
 * One topology: pcie.0 and 0-3 pxb-pcie (ascending bus_nr, some bypass_iommu=on), 0-3
 * pcie-root-port per root bus (some with an endpoint behind), and no SMMU, the machine-wide one,
 * or emulated arm-smmuv3 on some root buses; GICv2 or v3, ITS on or off, and sometimes
 * default-bus-bypass-iommu=on.
 */
export function topologyLine(seed: number): string[] {
  const r = mulberry32(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const gic = pick([2, 3] as const);
  const smmu = pick(['none', 'legacy', 'device', 'device'] as const);
  const machine = [`virt`, `gic-version=${gic}`];
  if (r() < 0.3) machine.push('its=off');
  if (smmu === 'legacy') machine.push('iommu=smmuv3');
  if (r() < 0.2) machine.push('default-bus-bypass-iommu=on');
  const args = ['-M', machine.join(',')];
  const roots = ['pcie.0'];
  let busNr = 0;
  const pxbs: string[][] = [];
  for (let i = 1, n = Math.floor(r() * 4); i <= n; i++) {
    busNr += 8 + 8 * Math.floor(r() * 8);
    roots.push(`pcie.${i}`);
    pxbs.push(['-device', `pxb-pcie,id=pcie.${i},bus=pcie.0,bus_nr=${busNr}${r() < 0.3 ? ',bypass_iommu=on' : ''}`]);
  }
  let chassis = 0;
  // Each root port with the endpoint behind it (if any): one group of arguments.
  const ports = (root: string): string[][] => {
    const out: string[][] = [];
    for (let p = 0, n = Math.floor(r() * 4); p < n; p++) {
      const id = `rp${++chassis}`;
      const group = ['-device', `pcie-root-port,id=${id},bus=${root},chassis=${chassis}`];
      if (r() < 0.3) group.push('-device', `virtio-rng-pci,bus=${id}`);
      out.push(group);
    }
    return out;
  };
  // pcie.0's root ports and the pxb-pcie devices interleave on pcie.0 (slot order is creation order).
  const onRoot0 = [...pxbs, ...ports('pcie.0')].sort(() => r() - 0.5);
  const pxbOrder = onRoot0.filter((d) => d[1]!.startsWith('pxb-pcie'));
  const rest = onRoot0.filter((d) => !d[1]!.startsWith('pxb-pcie'));
  // A pxb's devices come after it; keep the pxb-pcie devices in bus_nr order (pcie.N ids).
  pxbOrder.sort((a, b) => a[1]!.localeCompare(b[1]!, 'en', { numeric: true }));
  for (const d of [...rest, ...pxbOrder]) args.push(...d);
  for (const root of roots.slice(1)) for (const d of ports(root)) args.push(...d);
  if (smmu === 'device') {
    // QEMU refuses an SMMU on a bypass_iommu root bus (test/qemu/bad-lines.test.ts has that case).
    roots.forEach((root, i) => {
      const bypass = i === 0 ? machine.includes('default-bus-bypass-iommu=on') : pxbs[i - 1]![1]!.includes('bypass_iommu=on');
      if (!bypass && r() < 0.6) args.push('-device', `arm-smmuv3,primary-bus=${root},id=smmuv3.${i}`);
    });
  }
  return args;
}

const SEEDS = Array.from({ length: 32 }, (_, i) => 1000 + i);

describe('generated non-accel topologies: cmdqv IORT == QEMU 11.1 IORT', { skip: NO_QEMU }, () => {
  const qemuIort = new Map<number, Uint8Array | Error>();
  before(async () => {
    const tables = await inParallel(SEEDS.map((seed) => async () => {
      const args = topologyLine(seed);
      try {
        return (await qemuAcpiTables(QEMU!, args, rootBuses(args))).get('IORT')!;
      } catch (e) {
        return e as Error;
      }
    }), 8);
    SEEDS.forEach((s, i) => qemuIort.set(s, tables[i]!));
  });

  for (const seed of SEEDS) {
    const line = topologyLine(seed);
    test(`seed ${seed}: ${line.join(' ')}`, () => {
      const q = qemuIort.get(seed)!;
      if (q instanceof Error) throw q;
      const c = cmdqvAcpi([...line, ...QTEST_ARGS]);
      assert.equal(c.status, 0, c.err);
      assert.equal(hex(c.iort!), hex(q));
    });
  }

  test('the generator covers every kind of topology', () => {
    const lines = SEEDS.map((s) => topologyLine(s).join(' '));
    for (const re of [/gic-version=2/, /gic-version=3/, /its=off/, /iommu=smmuv3/, /arm-smmuv3,primary-bus=pcie\.0/, /arm-smmuv3,primary-bus=pcie\.[1-3]/,
      /bypass_iommu=on/, /default-bus-bypass-iommu=on/, /pcie-root-port,id=\w+,bus=pcie\.[1-3]/, /pxb-pcie,id=pcie\.3/]) {
      assert.ok(lines.some((l) => re.test(l)), `no generated line matches ${re}`);
    }
  });
});
