// The guest domain's invalidation commands: the per-page TLBI built from the domain's template
// (and the reused buffers of a batch) carries exactly the words buildCommand gives.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildCommand, Op } from '../../src/arch/smmuv3/commands.js';
import type { GuestSmmu } from '../../src/guest/arm-smmu-v3.js';
import { CommandRouter, IommuDomain } from '../../src/guest/iommu-domain.js';

/** An SMMU stand-in: guest RAM as a word map, a bump allocator, and a log of submitted batches (copied at submission). */
function stubSmmu(ril = false) {
  const ram = new Map<number, number>();
  let next = 0x4000_0000;
  const batches: number[][][] = [];
  const smmu = {
    ril,
    platform: { bus: { read32: (a: number) => ram.get(a) ?? 0, write32: (a: number, v: number) => void ram.set(a, v >>> 0) } },
    mem: { alloc: (bytes: number) => { const at = next; next += Math.max(4096, bytes); return at; } },
    submit: (cmds: readonly Uint32Array[]) => void batches.push(cmds.map((c) => [...c])),
  };
  return { smmu: smmu as unknown as GuestSmmu, batches };
}

const ADDRS = [0, 0x1000, 0x7fff_f000, 0x8000_0000, 0x1_0000_0000, 0x1234_5678_9000, 0xffff_ffff_f000];

test('a page TLBI from the template equals buildCommand, below and above 2^32', () => {
  const { smmu } = stubSmmu();
  const d = new IommuDomain(new CommandRouter(smmu, undefined), 0x1234);
  for (const addr of ADDRS) {
    assert.deepEqual([...d.invalidations(addr, 4096)[0]!], [...buildCommand(Op.TLBI_NH_VA, { asid: 0x1234, addr, leaf: true })], `0x${addr.toString(16)}`);
  }
});

test('invalidateBatch submits one batch per call with the right words, reusing its buffers', () => {
  const { smmu, batches } = stubSmmu();
  const d = new IommuDomain(new CommandRouter(smmu, undefined), 7);
  d.invalidateBatch(ADDRS, 4096);
  d.invalidateBatch([0x5000, 0x6000], 4096);
  const want = (addrs: number[]) => addrs.map((addr) => [...buildCommand(Op.TLBI_NH_VA, { asid: 7, addr, leaf: true })]);
  assert.deepEqual(batches, [want(ADDRS), want([0x5000, 0x6000])]);
  assert.deepEqual(d.router.stats, { viaVcmdq: 0, viaSmmu: ADDRS.length + 2 });
});

test('invalidateBatch of multi-page buffers uses the range form with RIL', () => {
  const { smmu, batches } = stubSmmu(true);
  const d = new IommuDomain(new CommandRouter(smmu, undefined), 7);
  d.invalidateBatch([0x10_0000, 0x20_0000], 3 * 4096);
  assert.deepEqual(batches, [[...d.invalidations(0x10_0000, 3 * 4096), ...d.invalidations(0x20_0000, 3 * 4096)].map((c) => [...c])]);
  assert.equal(batches[0]!.length, 2, 'one range command (NUM + 1 = 3 pages) per buffer');
});
