// The host command engines consume a queue in runs (docs/design.md, Performance notes): these
// tests put the places where a run must end — a 64 KiB memory chunk boundary, the ring's end,
// PROD, a failing command — inside one consumption and check that every command is executed
// exactly once and that an error stops the queue on the failing command.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildCommand, CERROR_ILL, Op } from '../../src/arch/smmuv3/commands.js';
import * as R from '../../src/arch/smmuv3/registers.js';
import { HostKernel } from '../../src/host/kernel/host-kernel.js';

const LOG2 = 13; // 8192 entries, 128 KiB: two 64 KiB chunks
const ENTRIES = 2 ** LOG2;
// VINTF0 (host-owned) logical queue 0 = global VCMDQ 0.
const VINTF0_CONFIG = 0x200;
const Q0_BASE = 0x20000;
const Q0 = 0x30000;
const CONS = 0x0;
const PROD = 0x4;
const CONFIG = 0x8;
const GERROR = 0x10;

function rig() {
  const kernel = new HostKernel();
  const inst = kernel.smmus.get('smmu0')!;
  const hw = inst.cmdqvHw!;
  const ring = kernel.phys.allocKernel(ENTRIES * 16); // buddy-allocated: 128 KiB aligned
  const put = (slot: number, w: Uint32Array) => {
    for (let k = 0; k < 4; k++) kernel.phys.mem.write32(ring + slot * 16 + k * 4, w[k]!);
  };
  // Slot i holds TLBI_NH_VA of ASID i: which slots ran shows in nothing else, so the counters
  // must account for every one.
  for (let i = 0; i < ENTRIES; i++) put(i, buildCommand(Op.TLBI_NH_VA, { asid: i & 0xffff, vmid: 7, addr: i * 4096 }));
  hw.write(VINTF0_CONFIG, 4, hw.read(VINTF0_CONFIG, 4) | 1);
  hw.write64(Q0_BASE, BigInt(ring) | BigInt(LOG2));
  hw.write(Q0 + CONFIG, 4, 1);
  return { kernel, hw, smmu: inst.hw, ring, put };
}

test('one PROD write consumes across a 64 KiB chunk boundary and the ring end, each command once', () => {
  const { hw, smmu } = rig();
  const c0 = smmu.stats.commands;
  const t0 = smmu.stats.tlbi;
  hw.write(Q0 + PROD, 4, 8000); // slots 0..7999: the chunk boundary is at slot 4096
  assert.equal(hw.read(Q0 + CONS, 4), 8000);
  // Then through the ring's end: slots 8000..8191 and 0..499, wrap bit set.
  hw.write(Q0 + PROD, 4, ENTRIES | 500);
  assert.equal(hw.read(Q0 + CONS, 4), ENTRIES | 500);
  assert.equal(smmu.stats.commands - c0, 8000 + 192 + 500);
  assert.equal(smmu.stats.tlbi - t0, 8000 + 192 + 500);
  assert.equal(hw.stats.commands, 8000 + 192 + 500);
  assert.equal(hw.read(Q0 + GERROR, 4), 0);
});

test('an illegal command after the wrap stops the queue on it, with every command before it executed', () => {
  const { hw, smmu, put } = rig();
  hw.write(Q0 + PROD, 4, 8000);
  const c0 = smmu.stats.commands;
  put(108, buildCommand(0x7f));
  hw.write(Q0 + PROD, 4, ENTRIES | 500);
  const cons = hw.read(Q0 + CONS, 4);
  assert.equal(cons & 0xfffff, ENTRIES | 108, 'CONS points at the illegal command');
  assert.equal((cons >>> 24) & 0x7f, CERROR_ILL);
  assert.equal(hw.read(Q0 + GERROR, 4) & 1, 1, 'GERROR.CMDQ_ERR toggled');
  // 192 before the ring's end, 108 after it, and the illegal one, which the SMMU refused.
  assert.equal(smmu.stats.commands - c0, 192 + 108 + 1);
  assert.equal(hw.stats.commands, 8000 + 192 + 108 + 1);
});

test('a ring that runs off the end of memory stops with CERROR_ABT at the first command outside it', () => {
  const { kernel, hw, smmu } = rig();
  const size = kernel.phys.mem.size;
  // A 16-entry ring whose last 4 slots lie beyond the top of memory.
  const base = size - 12 * 16;
  for (let i = 0; i < 12; i++) {
    const w = buildCommand(Op.TLBI_NH_VA, { asid: i, vmid: 7 });
    for (let k = 0; k < 4; k++) kernel.phys.mem.write32(base + i * 16 + k * 4, w[k]!);
  }
  hw.write(Q0 + CONFIG, 4, 0);
  hw.write64(Q0_BASE, BigInt(base) | 4n);
  hw.write(Q0 + CONS, 4, 0);
  hw.write(Q0 + PROD, 4, 0);
  hw.write(Q0 + CONFIG, 4, 1);
  const c0 = smmu.stats.commands;
  hw.write(Q0 + PROD, 4, 14);
  const cons = hw.read(Q0 + CONS, 4);
  assert.equal(cons & 0xfffff, 12);
  assert.equal((cons >>> 24) & 0x7f, 2, 'CERROR_ABT');
  assert.equal(smmu.stats.commands - c0, 12, 'the 12 commands inside memory ran');
});

test('a ring smaller than a chunk wraps at its own end, not at the end of the memory around it', () => {
  const { kernel, hw, smmu } = rig();
  const base = kernel.phys.allocKernel(2 * 4096);
  const put = (addr: number, w: Uint32Array) => {
    for (let k = 0; k < 4; k++) kernel.phys.mem.write32(addr + k * 4, w[k]!);
  };
  for (let i = 0; i < 256; i++) put(base + i * 16, buildCommand(Op.TLBI_NH_VA, { asid: i, vmid: 7 }));
  // Right after the ring, in the same chunk: an illegal command that a run overrunning the
  // ring's end would execute.
  put(base + 256 * 16, buildCommand(0x7f));
  hw.write(Q0 + CONFIG, 4, 0);
  hw.write64(Q0_BASE, BigInt(base) | 8n);
  hw.write(Q0 + CONS, 4, 200);
  hw.write(Q0 + PROD, 4, 200);
  hw.write(Q0 + CONFIG, 4, 1);
  const c0 = smmu.stats.commands;
  hw.write(Q0 + PROD, 4, 256 | 50);
  assert.equal(hw.read(Q0 + CONS, 4), 256 | 50, 'no error: slot 255 is followed by slot 0');
  assert.equal(smmu.stats.commands - c0, 56 + 50);
});

test('the main CMDQ: a small ring wraps at its own end; an illegal command after the wrap stops it there', () => {
  const { kernel, smmu } = rig();
  const base = kernel.phys.allocKernel(2 * 4096);
  const put = (addr: number, w: Uint32Array) => {
    for (let k = 0; k < 4; k++) kernel.phys.mem.write32(addr + k * 4, w[k]!);
  };
  for (let i = 0; i < 256; i++) put(base + i * 16, buildCommand(Op.TLBI_NH_VA, { asid: i, vmid: 7 }));
  put(base + 256 * 16, buildCommand(0x7f)); // just past the ring's end
  const b = smmu.bank;
  const cr0 = b.read(R.CR0.spec.offset, 4);
  b.write(R.CR0.spec.offset, 4, cr0 & ~R.CR0.f.CMDQEN.wordMask(0));
  b.write64(R.CMDQ_BASE.spec.offset, BigInt(base) | 8n);
  b.write(R.CMDQ_CONS.spec.offset, 4, 200);
  b.write(R.CMDQ_PROD.spec.offset, 4, 256 | 50);
  const c0 = smmu.stats.commands;
  b.write(R.CR0.spec.offset, 4, cr0);
  assert.equal(b.read(R.CMDQ_CONS.spec.offset, 4), 256 | 50, 'slot 255 is followed by slot 0');
  assert.equal(smmu.stats.commands - c0, 56 + 50);
  put(base + 60 * 16, buildCommand(0x7f));
  b.write(R.CMDQ_PROD.spec.offset, 4, 100);
  const cons = b.read(R.CMDQ_CONS.spec.offset, 4);
  assert.equal(cons & 0x1ff, 256 | 60, 'CONS on the illegal command');
  assert.equal((cons >>> 24) & 0x7f, CERROR_ILL);
  assert.equal(smmu.stats.commands - c0, 56 + 50 + 10 + 1);
});
