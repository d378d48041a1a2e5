// A guest can never crash the VMM or the host: random MMIO accesses (any size, alignment and
// value) to the SMMU and CMDQV windows, random queue contents in guest RAM, random doorbells.
// Every access must complete (logged when invalid) and the machine must stay usable.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AccessSize } from '../../src/kit/memory-region.js';
import { mulberry32 } from '../../src/kit/prng.js';
import { runWorkload } from '../../src/platform/workload.js';
import { Machine, VIRT_RAM_BASE } from '../../src/platform/machine.js';

test('random guest MMIO and queue contents never throw; the machine still runs the workload after reset', () => {
  const m = Machine.create([]);
  const rnd = mulberry32(0x5eed);
  const smmu = m.smmus[0]!;
  const windows: [number, number][] = [
    [smmu.base, 0x20000],
    [smmu.cmdqvBase!, 0x50000],
  ];
  // Interesting offsets get extra weight so state machines are actually driven.
  const hot = [0x0, 0x4, 0x8, 0x1c, 0x200, 0x204, 0x1000, 0x10000, 0x10004, 0x10008, 0x10014, 0x20000, 0x20080, 0x30000, 0x30004, 0x30008, 0x30014, 0x40000];
  const smmuHot = [0x20, 0x44, 0x50, 0x64, 0x80, 0x88, 0x90, 0x98, 0x9c, 0xa0, 0x100a8, 0x100ac];
  const sizes: AccessSize[] = [1, 2, 4, 8];
  for (let i = 0; i < 4000; i++) {
    const which = rnd() < 0.5 ? 0 : 1;
    const [base, size] = windows[which]!;
    const pool = which === 0 ? smmuHot : hot;
    let off = rnd() < 0.7 ? pool[Math.floor(rnd() * pool.length)]! : Math.floor(rnd() * size);
    if (rnd() < 0.1) off += Math.floor(rnd() * 8);
    const sz = sizes[Math.floor(rnd() * sizes.length)]!;
    const r = rnd();
    // Values: mostly small or ring-ish addresses in guest RAM, sometimes anything.
    const value = r < 0.3 ? BigInt(Math.floor(rnd() * 4)) : r < 0.6 ? BigInt(VIRT_RAM_BASE + Math.floor(rnd() * 0x100_0000) * 16) | BigInt(Math.floor(rnd() * 20)) : BigInt(Math.floor(rnd() * 2 ** 32)) * BigInt(Math.floor(rnd() * 2 ** 32));
    if (rnd() < 0.5) m.write(base + off, sz, value & ((1n << BigInt(sz * 8)) - 1n));
    else m.read(base + off, sz);
    if (i % 50 === 0) {
      // Scribble commands into likely ring locations.
      for (let k = 0; k < 16; k++) {
        const words = new Uint8Array(16).map(() => Math.floor(rnd() * 256));
        words[0] = [0x03, 0x04, 0x05, 0x11, 0x12, 0x40, 0x46, 0x7f][Math.floor(rnd() * 8)]!;
        m.writeRam(VIRT_RAM_BASE + Math.floor(rnd() * 0x1000) * 16, words);
      }
    }
    m.runMainLoop();
  }
  assert.ok(m.log.count('guest_error') + m.log.count('unimp') > 100, 'bad accesses were logged');
  m.reset();
  const rep = runWorkload(m, { ops: 16, batch: 4, pages: 1, injectError: true, skipInvalidation: false });
  assert.equal(rep.dmaChecks.failed, 0);
  assert.equal(rep.errors.cmdqvErrorsHandled, 1);
});
