// Register-level tests of the Tegra241 CMDQV silicon model (docs/reference/tegra241-cmdqv.md §2–3).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildCommand, Op } from '../../src/arch/smmuv3/commands.js';
import { HostKernel } from '../../src/host/kernel/host-kernel.js';

function hw() {
  const kernel = new HostKernel();
  const inst = kernel.smmus.get('smmu0')!;
  return { kernel, hw: inst.cmdqvHw!, drv: inst.cmdqv!, log: kernel.log };
}

test('PARAM describes Grace: version 1, 128 VCMDQs, 64 VINTFs, 16 SIDs per VINTF', () => {
  const { hw: h, drv } = hw();
  assert.equal(h.read(0x4, 4), 1 | (7 << 4) | (6 << 8) | (4 << 12));
  assert.deepEqual([drv.numVcmdqs, drv.numVintfs, drv.perVintf, drv.sidsPerVintf], [128, 64, 2, 16]);
  assert.equal(h.mmio.size, 0x830000, 'aperture ends at 0x30000 + 64 * 0x20000');
});

test('after the driver probe: CMDQV enabled, every VCMDQ pre-assigned but not mapped, VINTF0 host-owned', () => {
  const { hw: h } = hw();
  assert.equal(h.read(0x0, 4) & 1, 1);
  assert.equal(h.read(0x8, 4) & 1, 1, 'STATUS follows CONFIG');
  // docs/reference/tegra241-cmdqv.md §2.2 worked example: VINTF1/LVCMDQ1 -> q = 3, CMDQ_ALLOC(3) at 0x20C = 0x8002 while pre-assigned.
  assert.equal(h.read(0x20c, 4), 0x8002);
  assert.equal(h.read(0x1000, 4), 0x0002_0001, 'VINTF0 CONFIG = HYP_OWN | EN');
  assert.equal(h.read(0x1004, 4) & 1, 1);
});

test('CMDQ_ALLOC_MAP drives the logical VINTF apertures; unmapped slots drop writes (logged)', () => {
  const { hw: h, log } = hw();
  // Map q = 3 (VINTF1, LVCMDQ1) and reach its page0 through VINTF1's page: 0x50000 + 0x80.
  h.write(0x20c, 4, 0x8003);
  assert.equal(h.globalQueue(1, 1), 3);
  h.write(0x50080 + 0x4, 4, 0x12);
  assert.equal(h.read(0x10000 + 0x80 * 3 + 0x4, 4), 0x12, 'same register through the global page0 view');
  h.write64(0x60080, 0x8_0000_000cn);
  assert.equal(h.read64(0x20000 + 0x80 * 3), 0x8_0000_000cn, 'docs/reference/tegra241-cmdqv.md §2.2: BASE for a 64 KiB ring at PA 0x8_0000_0000');
  const before = log.count('guest_error');
  h.write(0x50000 + 0x4, 4, 1); // LVCMDQ0 of VINTF1 is not mapped
  assert.equal(log.count('guest_error'), before + 1);
  assert.equal(h.read(0x50000 + 0x4, 4), 0);
  h.write(0x20c, 4, 0x8002); // unmap
  assert.equal(h.globalQueue(1, 1), -1);
  assert.equal(h.read(0x50080 + 0x4, 4), 0);
});

test('VINTF page0 ops (the user mapping) reach the same registers as the aperture, unmapped slots and offsets past the page included', () => {
  const { hw: h, log } = hw();
  h.write(0x20c, 4, 0x8003); // q = 3 as VINTF1's LVCMDQ1
  const ops = h.vintfPage0Ops(1);
  const base = h.vintfPage0Offset(1);
  assert.equal(base, 0x50000);
  ops.write(0x80 + 0x4, 4, 0x21);
  assert.equal(h.read(0x10000 + 0x80 * 3 + 0x4, 4), 0x21, 'LVCMDQ1 CONS is q 3 CONS');
  assert.equal(ops.read(0x80 + 0x4, 4), 0x21);
  for (const o of [0x80, 0x84, 0x88, 0x8c, 0x90, 0x94, 0x9c]) assert.equal(ops.read(o, 4), h.read(base + o, 4), `read 0x${o.toString(16)}`);
  // LVCMDQ0 is not mapped: dropped and logged, as through the aperture.
  const before = log.count('guest_error');
  ops.write(0x4, 4, 1);
  assert.equal(log.count('guest_error'), before + 1);
  assert.equal(ops.read(0x4, 4), 0);
  // Past the page (VINTF1's page1) and before it: the aperture's decode answers.
  h.write64(0x60080, 0x8_0000_000cn);
  assert.equal(ops.read(0x10080, 4), 0x0000_000c, 'VINTF1 page1: LVCMDQ1 BASE low word');
  assert.equal(ops.read(-0x50000 + 0x4, 4), h.read(0x4, 4), 'PARAM');
});

test('read-only registers ignore writes and log; STATUS mirrors enables', () => {
  const { hw: h, log } = hw();
  const param = h.read(0x4, 4);
  h.write(0x4, 4, 0);
  assert.equal(h.read(0x4, 4), param);
  assert.ok(log.count('guest_error') >= 1);
  h.write(0x1000 + 0x100 * 5, 4, (9 << 1) | 1);
  assert.equal(h.read(0x1000 + 0x100 * 5 + 4, 4) & 1, 1, 'VINTF5 ENABLE_OK');
  h.write(0x1000 + 0x100 * 5, 4, 0);
  assert.equal(h.read(0x1000 + 0x100 * 5 + 4, 4) & 1, 0);
});

test('a hyp-owned queue executes any command; a disabled queue does not consume', () => {
  const { kernel, hw: h } = hw();
  // Use VINTF0 (host-owned) logical 0 = global q0 with a ring in host kernel memory.
  const ring = kernel.phys.allocKernel(4096);
  h.write(0x200, 4, h.read(0x200, 4) | 1);
  h.write64(0x20000, BigInt(ring) | 8n);
  const cfgi = buildCommand(Op.CFGI_STE_RANGE, { range: 31 });
  for (let i = 0; i < 4; i++) kernel.phys.mem.write32(ring + i * 4, cfgi[i]!);
  h.write(0x30000 + 0x4, 4, 1);
  assert.equal(h.read(0x30000, 4), 0, 'not enabled: nothing consumed');
  h.write(0x30000 + 0x8, 4, 1);
  assert.equal(h.read(0x30000 + 0xc, 4), 1);
  assert.equal(h.read(0x30000, 4), 1, 'consumed on enable');
  assert.equal(h.read(0x30000 + 0x10, 4), 0, 'no error: CFGI is allowed on a hyp-owned VINTF');
});
