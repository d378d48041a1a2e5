// The VMM's Tegra241 CMDQV device over MMIO, against the simulated host (docs/reference/qemu-accel-smmuv3.md).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildCommand, Op } from '../../src/arch/smmuv3/commands.js';
import * as U from '../../src/uapi/iommufd.js';
import { boot, CMDQV_BASE, RAM_BASE, rig } from './cmdqv-rig.js';

const hwq = (r: ReturnType<typeof rig>) => r.backend.calls.filter((c) => c.name === 'IOMMU_HW_QUEUE_ALLOC');

describe('reset values and register rules (docs/reference/qemu-accel-smmuv3.md §3.3, §16)', () => {
  test('reset values', () => {
    const r = boot(rig());
    assert.equal(r.r(0x0), 0x0002_0083);
    assert.equal(r.r(0x4), 0x0000_4011);
    assert.equal(r.r(0x8), 1);
    for (const o of [0x1000, 0x1004, 0x200, 0x204, 0x14, 0x18, 0x1c, 0x24, 0x10c0]) assert.equal(r.r(o), 0, `0x${o.toString(16)}`);
    assert.equal(r.r(0xc), 0, 'GLB_FILT not emulated');
    assert.equal(r.log.count('unimp'), 1);
    assert.equal(r.cmdqs.value, 19, '1 GiB hugepages keep CMDQS at 19');
  });

  test('before the first reset every register reads zero (docs/reference/qemu-accel-smmuv3.md §4.3)', () => {
    const r = rig();
    r.cmdqv.probe(r.dev);
    r.cmdqv.init();
    r.as.root.addSubregion(CMDQV_BASE, r.cmdqv.mmio!);
    assert.equal(r.r(0x0), 0);
    assert.equal(r.r(0x4), 0);
  });

  test('HYP_OWN is forced to 0; RO registers ignore writes (LOG_UNIMP); reserved bits stored', () => {
    const r = boot(rig());
    r.w(0x1000, 0x0002_0001);
    assert.equal(r.r(0x1000), 1);
    assert.equal(r.r(0x1004), 1);
    const before = r.log.count('unimp');
    r.w(0x4, 0);
    r.w(0x1004, 0);
    assert.equal(r.r(0x4), 0x4011);
    assert.equal(r.log.count('unimp'), before + 2);
    r.w(0x200, 0xffff_fff0);
    assert.equal(r.r(0x200), 0xffff_fff0);
  });

  test('page1 stores BASE verbatim; 4-byte halves; 8-byte reads of 32-bit registers zero-extend', () => {
    const r = boot(rig());
    r.w64(0x20000, 0xaaaa_bbbb_cccc_ddddn);
    assert.equal(r.r(0x20000), 0xcccc_dddd);
    assert.equal(r.r(0x20004), 0xaaaa_bbbb);
    assert.equal(r.r(0x40000), 0xcccc_dddd, 'VINTF aperture aliases the same cache');
    assert.equal(r.as.read(CMDQV_BASE + 0x20000, 8).value, 0xaaaa_bbbb_cccc_ddddn);
    assert.equal(r.as.read(CMDQV_BASE + 0x0, 8).value, 0x0002_0083n);
    assert.equal(r.as.read(CMDQV_BASE + 0x4, 8).ok, false, 'unaligned 8-byte access rejected by the memory core');
  });

  test('docs/reference/qemu-accel-smmuv3.md §16 vectors: BASE 0x1_2345_6008 -> HW_QUEUE_ALLOC(0, 0x1_2345_6000, 4096); LOG2SIZE 19 -> 8 MiB', () => {
    const r = boot(rig());
    r.w(0x200, 1);
    r.w(0x1000, 1);
    r.w64(0x20000, 0x0000_0001_2345_6008n);
    const a = hwq(r).at(-1)!;
    assert.deepEqual([a.args.index, a.args.nesting_parent_iova, a.args.length], [0, 0x1_2345_6000n, 4096n]);
    assert.equal(a.ret, -2, 'not guest RAM: the host refuses (ENOENT), INIT_ERR cached');
    r.w64(0x20000, 0x0000_0001_2345_6013n);
    assert.equal(hwq(r).at(-1)!.args.length, 8n * 2n ** 20n);
  });

  test('invalid MMIO: sizes 1/2 and unaligned never reach the device; 8-byte writes are WI except page1 bases', () => {
    const r = boot(rig());
    const res = r.as.write(CMDQV_BASE + 0x0, 1, 0);
    assert.equal(res.ok, false);
    assert.equal(r.as.write(CMDQV_BASE + 0x2, 2, 0).ok, false);
    assert.equal(r.as.write(CMDQV_BASE + 0x2, 4, 0).ok, false);
    assert.equal(r.r(0x8), 1);
    r.w64(0x0, 0n);
    assert.equal(r.r(0x8), 1, '8-byte write to CONFIG is ignored');
    assert.match(r.log.last()!.message, /unhandled 64-bit write at 0x00000 \(WI\)/);
    r.w64(0x1000, 1n);
    assert.equal(r.r(0x1004), 0, '8-byte write does not enable VINTF0');
    r.w(0x50000 - 4, 1);
    assert.equal(r.r(0x50000 - 4), 0);
    assert.ok(r.log.count('guest_error', 'memory') >= 3);
  });
});

describe('Linux guest walk-through (docs/reference/qemu-accel-smmuv3.md §6)', () => {
  test('every step: register values, uAPI calls in order, traps vs direct accesses, HW queue state', () => {
    const r = boot(rig());
    const ring = [RAM_BASE + 0x10_0000, RAM_BASE + 0x20_0000];
    const calls0 = r.backend.calls.length;
    // 1. probe: read CONFIG, write EN, poll STATUS.
    assert.equal(r.r(0x0), 0x0002_0083);
    assert.equal(r.w(0x0, 0x0002_0083), true);
    assert.equal(r.r(0x8), 1);
    // 2. PARAM.
    assert.equal(r.r(0x4), 0x4011);
    // 3. device reset: EN=0 then EN=1.
    r.w(0x0, 0x0002_0082);
    assert.equal(r.r(0x8), 0);
    r.w(0x0, 0x0002_0083);
    assert.equal(r.r(0x8), 1);
    // 4. ALLOC map (VINTF 0, lidx q, ALLOC).
    for (const q of [0, 1]) r.w(0x200 + 4 * q, (0 << 15) | (q << 1) | 1);
    assert.equal(r.r(0x204), 0x3);
    assert.equal(hwq(r).length, 0, 'not ready yet');
    // 5. VINTF deinit per LVCMDQ (VINTF disabled -> 0x30000 traps, goes to the cache).
    for (const q of [0, 1]) {
      assert.equal(r.w(0x30000 + 0x80 * q + 0x8, 0), true);
      assert.equal(r.r(0x30000 + 0x80 * q + 0xc), 0);
      r.w(0x30000 + 0x80 * q + 0x4, 0);
      r.w(0x30000 + 0x80 * q + 0x0, 0);
      r.w64(0x40000 + 0x80 * q, 0n);
      r.w64(0x40000 + 0x80 * q + 0x8, 0n);
      assert.equal(r.r(0x30000 + 0x80 * q + 0x14), r.r(0x30000 + 0x80 * q + 0x10));
    }
    // 6-7. VINTF0_CONFIG = 0, then = HYP_OWN (masked to 0).
    r.w(0x1000, 0);
    assert.equal(r.r(0x1004) & 1, 0);
    r.w(0x1000, 1 << 17);
    assert.equal(r.r(0x1000), 0);
    // 8. HYP_OWN | EN -> enabled, page0 mapped.
    r.w(0x1000, (1 << 17) | 1);
    assert.equal(r.r(0x1004) & 1, 1);
    assert.ok(r.cmdqv.page0Region, 'VINTF page0 RAM-device subregion mapped');
    assert.equal(r.cmdqv.page0Region!.skipIommuMap, true);
    // 9. Read back CONFIG: HYP_OWN = 0 -> guest-owned.
    assert.equal((r.r(0x1000) >>> 17) & 1, 0);
    // 10. deinit again: 0x30000 now goes straight to the host page (no trap); unallocated slot.
    const exits = r.as.stats.exits;
    assert.equal(r.w(0x30000 + 0x8, 0), false, 'direct');
    assert.equal(r.r(0x30000 + 0xc), 0, 'unallocated host slot reads 0 -> disable poll succeeds');
    assert.equal(r.as.stats.exits, exits, 'no VM exits on page0 now');
    // 11. BASE (trapped page1) -> IOMMU_HW_QUEUE_ALLOC per LVCMDQ, ascending.
    for (const q of [0, 1]) assert.equal(r.w64(0x40000 + 0x80 * q, BigInt(ring[q]!) | 8n), true);
    const allocs = hwq(r);
    assert.deepEqual(
      allocs.map((c) => [c.args.index, c.args.nesting_parent_iova, c.args.length, c.ret]),
      [[0, BigInt(ring[0]!), 4096n, 0], [1, BigInt(ring[1]!), 4096n, 0]],
    );
    assert.deepEqual(r.backend.calls.slice(calls0).map((c) => c.name), ['IOMMU_HW_QUEUE_ALLOC', 'IOMMU_HW_QUEUE_ALLOC']);
    assert.ok(r.cmdqv.hwQueue.every((id) => id !== undefined));
    // The host maps the queues into this VM's VINTF with the ring's host PA.
    const hostHw = r.kernel.smmus.get('smmu0')!.cmdqvHw!;
    assert.equal(Number(hostHw.read64(0x20000 + 0x80 * 2) & ~0x1fn), r.proc.mem.translate(r.ramVa + 0x10_0000));
    // 12. enable each queue through page0 (direct), poll EN_OK.
    for (const q of [0, 1]) {
      assert.equal(r.w(0x30000 + 0x80 * q + 0x8, 1), false);
      assert.equal(r.r(0x30000 + 0x80 * q + 0xc), 1);
    }
    // 13. run: commands in the ring, PROD through page0, no trap, HW consumes.
    const mem = r.proc.mem;
    const cmd = buildCommand(Op.TLBI_NH_ASID, { asid: 3 });
    const sync = buildCommand(Op.SYNC);
    [cmd, sync].forEach((w, k) => w.forEach((x, i) => mem.write32(r.ramVa + 0x10_0000 + k * 16 + i * 4, x)));
    const ioctls = r.kernel.stats.ioctls;
    const ex = r.as.stats.exits;
    assert.equal(r.w(0x30000 + 0x4, 2), false);
    assert.equal(r.r(0x30000 + 0x0), 2, 'CONS caught up');
    assert.equal(r.as.stats.exits, ex, 'zero VM exits');
    assert.equal(r.kernel.stats.ioctls, ioctls, 'zero ioctls');
    // The direct (trapped) aperture reads the same HW registers.
    assert.equal(r.r(0x10000), 2);
    assert.ok(r.as.stats.exits > ex);
  });
});

describe('HW-queue state machines (docs/reference/qemu-accel-smmuv3.md §5.5–5.7)', () => {
  const pre: [string, (r: ReturnType<typeof rig>) => void][] = [
    ['BASE', (r) => r.w64(0x20000, BigInt(RAM_BASE + 0x10_0000) | 8n)],
    ['ALLOC', (r) => r.w(0x200, 1)],
    ['CMDQV_EN', (r) => r.w(0x0, 0x0002_0083)],
    ['VINTF_EN', (r) => r.w(0x1000, 1)],
  ];
  const perms = (xs: number[]): number[][] => (xs.length <= 1 ? [xs] : xs.flatMap((x) => perms(xs.filter((y) => y !== x)).map((p) => [x, ...p])));

  test('allocation happens exactly when the last of the four preconditions is written, in all 24 orders', () => {
    const orders = perms([0, 1, 2, 3]);
    assert.equal(orders.length, 24);
    for (const order of orders) {
      const r = boot(rig({ ramBytes: 2 ** 22, hugepages: false, ramPage: 2 ** 21 }));
      r.w(0x0, 0x0002_0082); // start with CMDQV disabled so CMDQV_EN is a real step
      order.forEach((k, step) => {
        pre[k]![1](r);
        assert.equal(hwq(r).length, step === 3 ? 1 : 0, `order ${order.map((i) => pre[i]![0]).join(',')} step ${step}`);
      });
      assert.equal(hwq(r)[0]!.ret, 0);
      assert.notEqual(r.cmdqv.hwQueue[0], undefined);
    }
  });

  test('H -> C0 on ALLOC 1->0, CMDQV EN=0, VINTF EN=0; re-enabling re-allocates; BASE=0 keeps the queue', () => {
    const r = boot(rig());
    pre.forEach(([, f]) => f(r));
    assert.equal(hwq(r).length, 1);
    r.w(0x10000 + 0x4, 5); // PROD through the direct aperture -> HW
    r.w(0x200, 0);
    assert.equal(r.cmdqv.hwQueue[0], undefined);
    assert.equal(r.r(0x10000 + 0x4), 0, 'page0 cache zeroed by free');
    r.w(0x200, 1);
    assert.notEqual(r.cmdqv.hwQueue[0], undefined);
    r.w(0x0, 0x0002_0082);
    assert.equal(r.cmdqv.hwQueue[0], undefined);
    assert.equal(r.r(0x8), 0);
    r.w(0x0, 0x0002_0083);
    assert.notEqual(r.cmdqv.hwQueue[0], undefined);
    r.w(0x1000, 0);
    assert.equal(r.cmdqv.hwQueue[0], undefined);
    assert.equal(r.cmdqv.page0Region, undefined, 'VINTF disabled: page0 trapped again');
    r.w(0x1000, 1);
    const id = r.cmdqv.hwQueue[0];
    assert.notEqual(id, undefined);
    r.w(0x1000, 1);
    assert.notEqual(r.cmdqv.hwQueue[0], id, 'rewrite with ENABLE=1 re-allocates');
    r.w64(0x20000, 0n);
    assert.notEqual(r.cmdqv.hwQueue[0], undefined, 'BASE=0 does not free');
    const frees = r.backend.calls.filter((c) => c.name === 'IOMMU_DESTROY').length;
    assert.ok(frees >= 4);
  });

  test('free_all is descending; queue 1 without queue 0 fails with INIT_ERR visible only through trapped reads', () => {
    const r = boot(rig());
    r.w(0x1000, 1);
    r.w(0x204, 1);
    r.w64(0x20080, BigInt(RAM_BASE + 0x20_0000) | 8n);
    const calls = hwq(r);
    assert.equal(calls.length, 1);
    assert.equal(calls[0]!.args.index, 1);
    assert.equal(calls[0]!.ret, -5, 'EIO: ascending order rule of the host');
    assert.equal(r.r(0x10090) & 4, 4, 'GERROR.CMDQ_INIT_ERR via the direct aperture');
    assert.equal(r.r(0x1008c) & 1, 0, 'EN_OK = 0');
    r.w(0x10088, 1);
    assert.equal(r.r(0x1008c) & 1, 0, 'CONFIG.EN in cache mode keeps EN_OK = 0 while INIT_ERR');
    assert.match(r.cmdqv.errors[0]!, /^IOMMU_HW_QUEUE_ALLOC failed: Input\/output error$/);
    assert.ok(r.log.count('guest_error', 'tegra241-cmdqv') >= 1, 'logged, no crash');
    // Now make queue 0 ready: both allocate; free_all later destroys 1 then 0.
    r.w(0x200, 1);
    r.w64(0x20000, BigInt(RAM_BASE + 0x10_0000) | 8n);
    r.w64(0x20080, BigInt(RAM_BASE + 0x20_0000) | 8n);
    assert.ok(r.cmdqv.hwQueue.every((x) => x !== undefined));
    const ids = [...r.cmdqv.hwQueue];
    const before = r.backend.calls.length;
    r.w(0x0, 0x0002_0082);
    const destroys = r.backend.calls.slice(before).filter((c) => c.name === 'IOMMU_DESTROY').map((c) => c.args.id);
    assert.deepEqual(destroys, [ids[1], ids[0]]);
  });

  test('C1 -> C0 keeps INIT_ERR cached; VINTF D -> D and E -> E transitions; CMDQV disable keeps page0 mapped', () => {
    const r = boot(rig());
    r.w(0x1000, 1);
    r.w(0x204, 1);
    r.w64(0x20080, BigInt(RAM_BASE + 0x20_0000) | 8n); // C1: index 1 before 0 -> EIO
    assert.equal(r.r(0x10090) & 4, 4);
    r.w(0x204, 0); // predicate false: C0, but no HW queue existed so the cache is not zeroed
    assert.equal(r.r(0x10090) & 4, 4, 'INIT_ERR persists in C0 (docs/reference/qemu-accel-smmuv3.md §5.5)');
    // VINTF D -> D: disable while disabled is a no-op pass.
    r.w(0x1000, 0);
    r.w(0x1000, 0);
    assert.equal(r.r(0x1004) & 1, 0);
    assert.equal(r.cmdqv.page0Region, undefined);
    // D -> E -> E (re-enable keeps the mapping) ; CMDQV EN=0 frees queues but keeps page0 mapped.
    r.w(0x1000, 1);
    const region = r.cmdqv.page0Region;
    r.w(0x1000, 1);
    assert.equal(r.cmdqv.page0Region, region);
    r.w(0x0, 0x0002_0082);
    assert.equal(r.cmdqv.page0Region, region, 'global disable does not unmap the VINTF page');
    assert.equal(r.r(0x8), 0);
  });

  test('cache-mode page0 values are pushed to HW on allocation (CONS, PROD, CONFIG; not GERRORN)', () => {
    const r = boot(rig());
    r.w(0x10000 + 0x8, 1);
    assert.equal(r.r(0x1000c), 1, 'cache EN_OK without a HW queue');
    r.w(0x10014, 1);
    pre.forEach(([, f]) => f(r));
    assert.equal(r.r(0x30000 + 0xc), 1, 'HW queue enabled by the pushed CONFIG');
    assert.equal(r.r(0x30000 + 0x14), 0, 'stale GERRORN not replayed');
  });

  test('reset from any state returns to C0/D with reset values and keeps SID tables', () => {
    const r = boot(rig());
    pre.forEach(([, f]) => f(r));
    r.w(0x1040, 0x21);
    r.w(0x1c, 1);
    r.cmdqv.reset();
    assert.deepEqual(r.cmdqv.hwQueue, [undefined, undefined]);
    assert.equal(r.cmdqv.page0Region, undefined);
    assert.equal(r.r(0x0), 0x0002_0083);
    assert.equal(r.r(0x1000), 0);
    assert.equal(r.r(0x200), 0);
    assert.equal(r.r(0x20000), 0);
    assert.equal(r.r(0x1c), 0);
    assert.equal(r.r(0x1040), 0x21, 'SID_MATCH survives reset (QEMU quirk Q4 kept)');
  });

  test('reset from every state (C0, C1, H; VINTF D/E; CMDQV off) restores the reset register file', () => {
    const states: [string, (r: ReturnType<typeof rig>) => void][] = [
      ['C0', () => {}],
      ['C1 (INIT_ERR cached)', (r) => {
        r.w(0x1000, 1);
        r.w(0x204, 1);
        r.w64(0x20080, BigInt(RAM_BASE + 0x20_0000) | 8n);
      }],
      ['H', (r) => pre.forEach(([, f]) => f(r))],
      ['VINTF enabled, no queue', (r) => r.w(0x1000, 1)],
      ['CMDQV disabled', (r) => r.w(0x0, 0x0002_0082)],
    ];
    for (const [name, enter] of states) {
      const r = boot(rig());
      enter(r);
      r.cmdqv.reset();
      const regs = [0x0, 0x4, 0x8, 0x14, 0x1c, 0x24, 0x200, 0x204, 0x1000, 0x1004, 0x10c0, 0x10000, 0x10008, 0x1000c, 0x10010, 0x10090, 0x20000, 0x20080];
      const want = [0x0002_0083, 0x4011, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
      assert.deepEqual(regs.map((o) => r.r(o)), want, name);
      assert.deepEqual(r.cmdqv.hwQueue, [undefined, undefined], name);
      assert.equal(r.cmdqv.page0Region, undefined, name);
      assert.equal(r.as.write(CMDQV_BASE + 0x30008, 4, 0).trapped, true, `${name}: page0 traps after reset`);
    }
  });

  test('IDR1.CMDQS cap from the RAM backing page size (docs/reference/qemu-accel-smmuv3.md §7.2)', () => {
    for (const [pg, want] of [[4096, 8], [2 ** 21, 17], [2 ** 30, 19]] as const) {
      const r = boot(rig({ ramBytes: 2 ** 22, hugepages: false, ramPage: pg }));
      assert.equal(r.cmdqs.value, want);
    }
  });
});

describe('error propagation (docs/reference/qemu-accel-smmuv3.md §11)', () => {
  function live() {
    const r = boot(rig());
    r.w(0x200, 1);
    r.w(0x1000, 1);
    r.w64(0x20000, BigInt(RAM_BASE + 0x10_0000) | 8n);
    r.w(0x30008, 1);
    return r;
  }
  function illegal(r: ReturnType<typeof rig>) {
    const mem = r.proc.mem;
    buildCommand(Op.CFGI_STE, { sid: 8 }).forEach((x, i) => mem.write32(r.ramVa + 0x10_0000 + i * 4, x));
    r.w(0x30004, 1);
  }

  test('a host queue error becomes error maps and one IRQ pulse after the main loop runs', () => {
    const r = live();
    illegal(r);
    assert.equal((r.r(0x30000) >>> 24) & 0x7f, 1, 'CONS.ERR = ILL, read directly from HW');
    assert.equal(r.cmdqv.irq.count, 0, 'nothing until the fd handler runs');
    r.clock.runUntilIdle();
    assert.equal(r.cmdqv.irq.count, 1);
    assert.equal(r.r(0x10c0), 1);
    assert.equal(r.r(0x24), 1);
    assert.equal(r.r(0x14), 1);
    assert.equal(r.cmdqv.irq.level, false, 'edge');
    // Guest acknowledges: GERRORN = GERROR via page0 (direct); maps stay until overwritten.
    r.w(0x30014, r.r(0x30010));
    assert.equal(r.r(0x14), 1, 'VI_ERR_MAP is sticky');
  });

  test('masked: registers updated, no IRQ; unmasking does not replay', () => {
    const r = live();
    r.w(0x1c, 1);
    illegal(r);
    r.clock.runUntilIdle();
    assert.equal(r.cmdqv.irq.count, 0);
    assert.equal(r.r(0x10c0), 1);
    r.w(0x1c, 0);
    r.clock.runUntilIdle();
    assert.equal(r.cmdqv.irq.count, 0);
  });

  test('vEVENT validation: lost events counted; empty map ignored; trace names the maps', () => {
    const r = boot(rig({ tracePattern: 'tegra241_cmdqv_err_map' }));
    r.cmdqv.propagate([0n, 0n]);
    assert.equal(r.cmdqv.stats.errorEvents, 0);
    r.cmdqv.propagate([2n, 0n]);
    assert.equal(r.r(0x10c0), 2);
    assert.equal(r.r(0x24), 2);
    assert.match(r.trace.lines.at(-1)!, /maps: 0000:0000:0000:0002$/);
    const q = r.cmdqv.veventq!;
    q.started = true;
    q.lastSeq = 5;
    assert.equal(q.type, U.iommu_veventq_type.IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV);
  });
});
