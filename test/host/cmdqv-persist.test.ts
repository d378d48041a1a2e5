// Save/restore of the Tegra241 CMDQV silicon model: every register file and the logical-queue
// decode in one plain state.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildCommand, Op } from '../../src/arch/smmuv3/commands.js';
import { HostKernel } from '../../src/host/kernel/host-kernel.js';
import { assertPlainState } from '../../src/kit/persist.js';

function silicon() {
  const kernel = new HostKernel();
  return { kernel, hw: kernel.smmus.get('smmu0')!.cmdqvHw! };
}

/** A guest-owned VINTF1 with q3 as its LVCMDQ1, stopped on a refused CFGI_STE. */
function stoppedQueue(kernel: HostKernel, hw: ReturnType<typeof silicon>['hw'], ring: number): void {
  const cmds = [buildCommand(Op.TLBI_NH_ASID, { asid: 1 }), buildCommand(Op.CFGI_STE, { sid: 8 }), buildCommand(Op.TLBI_NH_ASID, { asid: 2 })];
  cmds.forEach((c, i) => c.forEach((word, k) => kernel.phys.mem.write32(ring + i * 16 + k * 4, word)));
  hw.write(0x20c, 4, 0x8003);
  hw.write(0x1100, 4, (9 << 1) | 1);
  hw.write64(0x20000 + 0x80 * 3, BigInt(ring) | 4n);
  hw.write(0x50080 + 0x8, 4, 1);
  hw.write(0x50080 + 0x4, 4, 3);
}

test('host CMDQV silicon: save is plain; a restored model reads and runs the same', () => {
  const a = silicon();
  const ring = a.kernel.phys.allocKernel(4096);
  stoppedQueue(a.kernel, a.hw, ring);
  assert.equal(a.hw.read(0x50080, 4) >>> 24, 1, 'stopped with CERROR_ILL');
  const saved = a.hw.save();
  assertPlainState(saved);

  const b = silicon();
  // Same ring contents at the same physical address in the second host.
  for (let o = 0; o < 48; o += 4) b.kernel.phys.mem.write32(ring + o, a.kernel.phys.mem.read32(ring + o));
  b.hw.restore(saved);
  assert.deepEqual(b.hw.save(), saved);
  assert.equal(b.hw.globalQueue(1, 1), 3, 'logical decode restored');
  for (const off of [0x4, 0x14, 0x24, 0x20c, 0x1100, 0x1104, 0x11c0, 0x50080, 0x50084, 0x50090]) {
    assert.equal(b.hw.read(off, 4), a.hw.read(off, 4), `0x${off.toString(16)}`);
  }
  // Next access: acknowledging the error resumes the queue on both, to the same CONS.
  for (const { hw } of [a, b]) hw.write(0x50080 + 0x14, 4, hw.read(0x50080 + 0x10, 4));
  assert.equal(b.hw.read(0x50080, 4), a.hw.read(0x50080, 4));
  assert.deepEqual(b.hw.save(), a.hw.save());
});
