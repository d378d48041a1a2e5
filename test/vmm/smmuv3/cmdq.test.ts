// The trapped command queue: every opcode class with the exact ioctls it causes, batching of
// forwarded invalidations, CMD_SYNC completion, CERROR_ILL / CERROR_ABT with GERROR and the
// GERRORN acknowledgement, and host refusals of forwarded commands.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildCommand, Op } from '../../../src/arch/smmuv3/commands.js';
import * as R from '../../../src/arch/smmuv3/registers.js';
import { SMMU_IRQ_CMD_SYNC, SMMU_IRQ_GERROR } from '../../../src/vmm/smmuv3/accel-smmuv3.js';
import { CommandBatch, flushCommands, MAX_BATCH } from '../../../src/vmm/smmuv3/cmdq.js';
import { DEFAULT_HOST } from '../../../src/host/config.js';
import { ABORT_STE, attachedTo, callsSince, Guest, GSID, hostVdevice, makeRig, type Rig } from './rig.js';

/** A rig with device 0 attached, stream table and command queue set up, SMMU enabled. */
function ready(opts: Parameters<typeof makeRig>[0] = {}, smmuen = true, cmdqLog2 = 8): { rig: Rig; g: Guest } {
  const rig = makeRig(opts);
  const g = new Guest(rig, cmdqLog2);
  rig.smmu.attachDevice(rig.devs[0]!);
  g.init({ smmuen, irqs: 0b001 });
  return { rig, g };
}

/** Names of the ioctls issued by `fn`. */
function ioctlsOf(rig: Rig, fn: () => void): { name: string; args: Record<string, unknown>; ret: number }[] {
  const from = rig.backend.calls.length;
  fn();
  return callsSince(rig, from);
}

/** The 16-byte entries an IOMMU_HWPT_INVALIDATE carried, as opcodes (read back from VMM memory). */
function invalidated(rig: Rig, call: { args: Record<string, unknown> }): number[] {
  const n = call.args.entry_num as number;
  const bytes = rig.proc.mem.copyFromUser(Number(call.args.data_uptr as bigint), n * 16);
  return Array.from({ length: n }, (_, i) => bytes[i * 16]!);
}

describe('trapped command queue', () => {
  test('no-ops and unhandled commands complete without ioctls or errors', () => {
    const { rig, g } = ready();
    const cmds = [
      buildCommand(Op.PREFETCH_CFG, { sid: GSID[0] }),
      buildCommand(Op.PREFETCH_ADDR),
      buildCommand(Op.TLBI_EL2_ALL),
      buildCommand(Op.TLBI_EL2_ASID),
      buildCommand(Op.TLBI_EL2_VA),
      buildCommand(Op.TLBI_EL2_VAA),
      buildCommand(Op.TLBI_EL3_ALL),
      buildCommand(Op.TLBI_EL3_VA),
      buildCommand(Op.TLBI_S12_VMALL),
      buildCommand(Op.TLBI_S2_IPA),
      buildCommand(Op.PRI_RESP),
      buildCommand(Op.RESUME),
      buildCommand(Op.STALL_TERM),
      g.sync(),
    ];
    const calls = ioctlsOf(rig, () => g.submit(...cmds));
    assert.deepEqual(calls, []);
    assert.equal(g.cons(), cmds.length);
    assert.equal(g.gerror(), 0);
    assert.equal(rig.traces.named('smmuv3_unhandled_cmd').length, 11);
    assert.equal(rig.smmu.stats.commands, cmds.length);
  });

  test('invalidations are batched into one IOMMU_HWPT_INVALIDATE on the vIOMMU, flushed by CMD_SYNC', () => {
    const { rig, g } = ready();
    const calls = ioctlsOf(rig, () =>
      g.submit(
        buildCommand(Op.TLBI_NH_ASID, { asid: 3 }),
        buildCommand(Op.TLBI_NH_VA, { asid: 3, addr: 0x1000, leaf: true }),
        buildCommand(Op.TLBI_NH_VAA, { addr: 0x2000 }),
        buildCommand(Op.TLBI_NH_ALL),
        buildCommand(Op.TLBI_NSNH_ALL),
        g.sync(),
      ),
    );
    assert.deepEqual(calls.map((c) => c.name), ['IOMMU_HWPT_INVALIDATE']);
    const c = calls[0]!;
    assert.equal(c.ret, 0);
    assert.equal(c.args.hwpt_id, rig.smmu.viommuId);
    assert.equal(c.args.data_type, 1, 'IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3');
    assert.equal(c.args.entry_len, 16);
    assert.deepEqual(invalidated(rig, c), [Op.TLBI_NH_ASID, Op.TLBI_NH_VA, Op.TLBI_NH_VAA, Op.TLBI_NH_ALL, Op.TLBI_NSNH_ALL]);
    assert.equal(g.cons(), 6);
    assert.equal(rig.smmu.stats.forwarded, 5);
    assert.equal(rig.smmu.stats.invalidateCalls, 1);
    assert.equal(rig.kernel.stats.invalidatedCommands, 5, 'the host executed them');
  });

  test('a batch is flushed before a command that is not forwarded (ordering), and at the end of the queue', () => {
    const { rig, g } = ready({}, false);
    g.writeSte(GSID[0], ABORT_STE);
    const calls = ioctlsOf(rig, () =>
      g.submit(
        buildCommand(Op.TLBI_NH_ASID, { asid: 1 }),
        buildCommand(Op.CFGI_STE, { sid: GSID[0] }),
        buildCommand(Op.TLBI_NH_ASID, { asid: 2 }),
      ),
    );
    assert.deepEqual(calls.map((c) => c.name), [
      'IOMMU_HWPT_INVALIDATE', // flushed before the CFGI_STE
      'IOMMU_VDEVICE_ALLOC',
      'VFIO_DEVICE_ATTACH_IOMMUFD_PT',
      'IOMMU_HWPT_INVALIDATE', // flushed when the queue ran empty (no CMD_SYNC)
    ]);
    assert.equal(g.cons(), 3);
  });

  test(`a full batch is sent at ${MAX_BATCH} commands`, () => {
    const { rig, g } = ready({}, true, 13);
    const cmds = Array.from({ length: MAX_BATCH + 36 }, (_, i) => buildCommand(Op.TLBI_NH_ASID, { asid: i & 0xffff }));
    const calls = ioctlsOf(rig, () => g.submit(...cmds, g.sync()));
    assert.deepEqual(calls.map((c) => c.args.entry_num), [MAX_BATCH, 36]);
    assert.equal(g.cons(), MAX_BATCH + 37);
    assert.equal(rig.kernel.stats.invalidatedCommands, MAX_BATCH + 36, 'the host executed every one');
  });

  for (const pageSize of [4096, 16384, 65536] as const) {
    test(`batches of any size go in one ioctl each on a host with ${pageSize / 1024} KiB pages`, () => {
      const rig = makeRig({ host: { ...DEFAULT_HOST, pageSize } });
      const g = new Guest(rig, 12);
      rig.smmu.attachDevice(rig.devs[0]!);
      g.init({ smmuen: true, irqs: 0b001 });
      const tlbis = (n: number) => Array.from({ length: n }, (_, i) => buildCommand(Op.TLBI_NH_ASID, { asid: i }));
      // 300, then 1000 (the user buffer grows past twice its size), then 3.
      const calls = ioctlsOf(rig, () => {
        g.submit(...tlbis(300), g.sync());
        g.submit(...tlbis(1000), g.sync());
        g.submit(...tlbis(3), g.sync());
      });
      assert.deepEqual(calls.map((c) => [c.name, c.args.entry_num, c.ret]), [
        ['IOMMU_HWPT_INVALIDATE', 300, 0],
        ['IOMMU_HWPT_INVALIDATE', 1000, 0],
        ['IOMMU_HWPT_INVALIDATE', 3, 0],
      ]);
      assert.equal(g.cons(), 1306, 'no command error');
      assert.equal(rig.kernel.stats.invalidatedCommands, 1303);
    });
  }

  test('CFGI_CD / CFGI_CD_ALL / ATC_INV are forwarded only for a device with a vDEVICE', () => {
    const { rig, g } = ready({}, false);
    const sidCmds = () => [
      buildCommand(Op.CFGI_CD, { sid: GSID[0], ssid: 0, leaf: true }),
      buildCommand(Op.CFGI_CD_ALL, { sid: GSID[0] }),
      buildCommand(Op.ATC_INV, { sid: GSID[0], size: 52 }),
      buildCommand(Op.CFGI_CD, { sid: 0x77 }), // no such device: no-op
      g.sync(),
    ];
    assert.deepEqual(ioctlsOf(rig, () => g.submit(...sidCmds())), [], 'no vDEVICE yet');
    // A CFGI_STE creates the vDEVICE (virt_id = guest SID).
    g.writeSte(GSID[0], ABORT_STE);
    g.submit(buildCommand(Op.CFGI_STE, { sid: GSID[0] }), g.sync());
    assert.deepEqual(hostVdevice(rig, 0)?.virtId, GSID[0]);
    const calls = ioctlsOf(rig, () => g.submit(...sidCmds()));
    assert.equal(calls.length, 1);
    assert.deepEqual(invalidated(rig, calls[0]!), [Op.CFGI_CD, Op.CFGI_CD_ALL, Op.ATC_INV]);
    assert.equal(calls[0]!.ret, 0, 'the host translated the vSID');
    assert.equal(g.gerror(), 0);
  });

  test('ATC_INV is unhandled when ATS is not advertised', () => {
    const { rig, g } = ready({ props: { ats: 'off' } });
    g.writeSte(GSID[0], ABORT_STE);
    g.submit(buildCommand(Op.CFGI_STE, { sid: GSID[0] }));
    const calls = ioctlsOf(rig, () => g.submit(buildCommand(Op.ATC_INV, { sid: GSID[0] }), g.sync()));
    assert.deepEqual(calls, []);
    assert.deepEqual(rig.traces.named('smmuv3_unhandled_cmd').at(-1), [Op.ATC_INV]);
  });

  test('without a vIOMMU (no device attached yet) invalidations and STE installs are no-ops', () => {
    const rig = makeRig();
    const g = new Guest(rig);
    g.init({ smmuen: true });
    const calls = ioctlsOf(rig, () =>
      g.submit(buildCommand(Op.TLBI_NH_ALL), buildCommand(Op.CFGI_STE_RANGE, { range: 31 }), buildCommand(Op.CFGI_STE, { sid: 8 }), g.sync()),
    );
    assert.deepEqual(calls, []);
    assert.equal(g.cons(), 4);
  });

  test('CMD_SYNC with CS=IRQ pulses the CMD_SYNC interrupt; CS=SEV and CS=NONE do not', () => {
    const { rig, g } = ready();
    const irq = rig.smmu.irqs[SMMU_IRQ_CMD_SYNC];
    g.submit(g.sync(0), g.sync(2));
    assert.equal(irq.count, 0);
    g.submit(g.sync(1));
    assert.equal(irq.count, 1);
    assert.equal(irq.level, false, 'a pulse');
  });

  test('commands are not processed while CMDQEN is clear; enabling the queue processes them', () => {
    const rig = makeRig();
    const g = new Guest(rig);
    rig.smmu.attachDevice(rig.devs[0]!);
    g.init({ smmuen: true });
    g.w32(R.CR0.spec.offset, 0b0001); // CMDQEN off
    g.submit(buildCommand(Op.TLBI_NH_ALL));
    assert.equal(g.cons(), 0);
    const calls = ioctlsOf(rig, () => g.w32(R.CR0.spec.offset, 0b1001));
    assert.equal(g.cons(), 1);
    assert.deepEqual(calls.map((c) => c.name), ['IOMMU_HWPT_INVALIDATE']);
  });

  test('an illegal opcode stops the queue with CERROR_ILL until GERRORN acknowledges it', () => {
    const { rig, g } = ready();
    const gerrIrq = rig.smmu.irqs[SMMU_IRQ_GERROR];
    g.submit(buildCommand(Op.TLBI_NH_ASID, { asid: 1 }), buildCommand(0x7f), buildCommand(Op.TLBI_NH_ASID, { asid: 2 }), g.sync());
    const cons = g.cons();
    assert.equal(cons & 0xfffff, 1, 'CONS at the bad command');
    assert.equal((cons >>> 24) & 0x7f, 1, 'CERROR_ILL');
    assert.equal(g.gerror() & 1, 1, 'GERROR.CMDQ_ERR toggled');
    assert.equal(gerrIrq.count, 1, 'GERROR interrupt');
    assert.equal(rig.kernel.stats.invalidatedCommands, 1, 'the command before it was forwarded');
    assert.match(rig.log.entries().at(-1)!.message, /Illegal command type: 127/);
    // More PROD writes do nothing while the error is pending.
    g.submit(g.sync());
    assert.equal(g.cons() & 0xfffff, 1);
    // The guest's skip routine: replace the bad slot with CMD_SYNC, then acknowledge.
    g.writeSlot(1, g.sync());
    g.ack();
    assert.equal(g.cons() & 0xfffff, 5, 'resumed and drained');
    assert.equal(rig.kernel.stats.invalidatedCommands, 2);
    assert.equal(gerrIrq.count, 1);
    assert.equal(rig.smmu.stats.cmdqErrors, 1);
    // A second error toggles GERROR back.
    g.submit(buildCommand(0x00));
    assert.equal(g.gerror() & 1, 0);
    assert.equal(g.r32(R.GERRORN.spec.offset) & 1, 1, 'pending = GERROR ^ GERRORN');
    assert.equal(gerrIrq.count, 2);
  });

  test('GERRORN toggling bits that are not pending is a guest error', () => {
    const { rig, g } = ready();
    g.w32(R.GERRORN.spec.offset, 1 << 2);
    assert.match(rig.log.last()!.message, /guest toggles non pending errors = 0x00000004/);
  });

  test('SSec set on CFGI_STE / CFGI_STE_RANGE / CFGI_CD is illegal', () => {
    for (const op of [Op.CFGI_STE, Op.CFGI_STE_RANGE, Op.CFGI_CD]) {
      const { g } = ready();
      const c = buildCommand(op, { sid: GSID[0] });
      c[0] = (c[0]! | (1 << 10)) >>> 0;
      g.submit(c);
      assert.equal((g.cons() >>> 24) & 0x7f, 1, `opcode 0x${op.toString(16)}`);
    }
  });

  test('a command fetch outside guest RAM stops the queue with CERROR_ABT', () => {
    const { rig, g } = ready();
    g.w64(R.CMDQ_BASE.spec.offset, BigInt(2 ** 31) | 4n);
    g.w32(R.CMDQ_PROD.spec.offset, 1);
    assert.equal((g.cons() >>> 24) & 0x7f, 2);
    assert.equal(g.gerror() & 1, 1);
    assert.ok(rig.log.count('guest_error') >= 1);
  });

  test('a forwarded command the host refuses stops the queue at that command (CERROR_ILL)', () => {
    const { rig, g } = ready();
    g.writeSte(GSID[0], ABORT_STE);
    g.submit(buildCommand(Op.CFGI_STE, { sid: GSID[0] }), g.sync());
    // Destroy the vDEVICE behind the SMMU's back: the host can no longer translate the vSID.
    rig.backend.freeId(rig.smmu.deviceState(GSID[0])!.vdevId!, () => {});
    const calls = ioctlsOf(rig, () =>
      g.submit(
        buildCommand(Op.TLBI_NH_ASID, { asid: 1 }),
        buildCommand(Op.CFGI_CD, { sid: GSID[0] }),
        buildCommand(Op.TLBI_NH_ASID, { asid: 2 }),
        g.sync(),
      ),
    );
    // The batch fails with entry_num 1 (the kernel handled the first command), so only the
    // second is re-issued on its own: it is the one refused.
    assert.deepEqual(calls.map((c) => [c.name, c.args.entry_num, c.ret]), [
      ['IOMMU_HWPT_INVALIDATE', 3, -5],
      ['IOMMU_HWPT_INVALIDATE', 1, -5],
    ]);
    assert.equal(g.cons() & 0xfffff, 3, 'CONS at the CFGI_CD (after the CFGI_STE and its sync)');
    assert.equal((g.cons() >>> 24) & 0x7f, 1);
    assert.match(rig.smmu.hostErrors.at(-1)!, /^IOMMU_HWPT_INVALIDATE failed: Input\/output error/);
  });

  test('the command queue size is capped at IDR1.CMDQS', () => {
    const rig = makeRig({
      props: { cmdqv: 'on' },
      cmdqvFactory: (host) => ({
        probe: () => {},
        init: () => {},
        allocViommu: (dev, s2) => host.backend.allocViommu(dev.devId, 1, s2).viommuId,
        freeViommu: () => {},
        getType: () => 1,
        reset: () => host.setCmdqs(2),
      }),
    });
    const g = new Guest(rig, 2);
    rig.smmu.attachDevice(rig.devs[0]!);
    rig.smmu.reset();
    assert.equal((g.r32(R.IDR1.spec.offset) >>> 21) & 0x1f, 2);
    // The guest programs LOG2SIZE = 8 but the queue wraps at 4 entries.
    g.w64(R.CMDQ_BASE.spec.offset, BigInt(0x20_0000) | 8n);
    g.w32(R.CR0.spec.offset, 0b1001);
    g.submit(g.sync(), g.sync(), g.sync(), g.sync(), g.sync());
    assert.equal(g.cons(), 5, 'wrap bit is bit 2: index 1 of the next lap');
    assert.equal(attachedTo(rig, 0), rig.smmu.bypassHwptId);
  });

  test('stats count commands and every ioctl this device made', () => {
    const { rig, g } = ready();
    const before = { ...rig.smmu.stats };
    const from = rig.backend.calls.length;
    g.writeSte(GSID[0], ABORT_STE);
    g.submit(buildCommand(Op.CFGI_STE, { sid: GSID[0] }), buildCommand(Op.TLBI_NH_ALL), g.sync());
    assert.equal(rig.smmu.stats.commands - before.commands, 3);
    assert.equal(rig.smmu.stats.ioctls - before.ioctls, rig.backend.calls.length - from);
    assert.equal(rig.smmu.stats.ioctls - before.ioctls, 2, 'attach + invalidate (the vDEVICE exists since SMMUEN)');
  });
});

describe('trapped command queue: the fast path (RAM mapped directly, tracing off)', () => {
  /**
   * Run one scenario on a rig and record every IOMMU_HWPT_INVALIDATE's entries as words (the
   * backend's array buffer is reused, so they are copied as they are sent), plus the final CONS.
   */
  function scenario(fastRam: boolean, log2: number, script: (g: Guest) => void, smallPages = false): { sent: number[][]; cons: number; commands: number; forwarded: number } {
    const rig = makeRig({ fastRam, smallPages });
    const g = new Guest(rig, log2);
    rig.smmu.attachDevice(rig.devs[0]!);
    g.init({ smmuen: true, irqs: 0b001 });
    const sent: number[][] = [];
    const be = rig.backend;
    const issue = be.invalidateCache.bind(be);
    be.invalidateCache = (id, type, entries, len) => {
      sent.push(Array.from(new Uint32Array(entries.slice().buffer)));
      return issue(id, type, entries, len);
    };
    script(g);
    return { sent, cons: g.cons(), commands: rig.smmu.stats.commands, forwarded: rig.smmu.stats.forwarded };
  }
  const noops = (n: number) => Array.from({ length: n }, () => buildCommand(Op.PREFETCH_ADDR));
  const tlbis = (op: number, first: number, n: number) => Array.from({ length: n }, (_, i) => buildCommand(op, { asid: first + i, addr: (first + i) * 4096 }));
  const asidsOf = (sent: number[][]) => sent.map((words) => Array.from({ length: words.length / 4 }, (_, i) => words[i * 4 + 1]! >>> 16));

  test('runs of TLBIs across a memory chunk and the ring end are forwarded whole, in order, as on the general path', () => {
    // 8192 slots: the ring spans two 64 KiB memory chunks. Slots 0..4090, then a run across the
    // chunk boundary at slot 4096 cut by a PREFETCH (any command that is not forwarded sends the
    // batch first), then a CFGI_STE (the same), then a run across the ring's end (slot 8191 → 0,
    // the wrap bit toggles; the ring ends where the chunk does).
    const script = (g: Guest) => {
      g.submit(...noops(4090), g.sync());
      g.submit(...tlbis(Op.TLBI_NH_VA, 1, 6), buildCommand(Op.PREFETCH_ADDR), ...tlbis(Op.TLBI_NH_ASID, 7, 6),
        buildCommand(Op.CFGI_STE, { sid: 0x50 }), ...tlbis(Op.TLBI_NH_VAA, 13, 2), g.sync());
      g.submit(...noops(8187 - 4108));
      g.submit(...tlbis(Op.TLBI_NH_VA, 15, 10), g.sync());
    };
    const fast = scenario(true, 13, script);
    const general = scenario(false, 13, script);
    assert.deepEqual(fast, general, 'same ioctls, entries, CONS and counts either way');
    assert.deepEqual(scenario(true, 13, script, true), general, 'and with RAM on scattered 4 KiB pages (a window per page)');
    assert.deepEqual(asidsOf(fast.sent), [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12], [13, 14], [15, 16, 17, 18, 19, 20, 21, 22, 23, 24]]);
    assert.equal(fast.cons, (1 << 13) | 6, 'CONS wrapped past the end, after the last CMD_SYNC');
    assert.equal(fast.forwarded, 24);
    assert.equal(fast.commands, 4091 + 17 + (8187 - 4108) + 11);
  });

  test('a run of TLBIs across the end of a ring that ends inside a memory chunk wraps to the ring start', () => {
    // 256 slots (4 KiB) at the start of a chunk: the memory after the last slot is still mapped
    // (and here holds TLBIs of ASID 99 that must not be taken), but the ring continues at its base.
    const script = (g: Guest) => {
      for (let i = 0; i < 8; i++) g.writeSlot(256 + i, buildCommand(Op.TLBI_NH_VA, { asid: 99 }));
      g.submit(...noops(251));
      g.submit(...tlbis(Op.TLBI_NH_VA, 1, 10), g.sync());
    };
    const fast = scenario(true, 8, script);
    assert.deepEqual(fast, scenario(false, 8, script));
    assert.deepEqual(asidsOf(fast.sent), [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]);
    assert.equal(fast.cons, (1 << 8) | 6);
  });
  test('a run longer than a batch is sent in full batches, as on the general path', () => {
    const script = (g: Guest) => g.submit(...tlbis(Op.TLBI_NH_VA, 0, MAX_BATCH + 36), g.sync());
    const fast = scenario(true, 13, script);
    assert.deepEqual(fast, scenario(false, 13, script));
    assert.deepEqual(fast.sent.map((w) => w.length / 4), [MAX_BATCH, 36]);
    assert.equal(fast.cons, MAX_BATCH + 37);
  });
});

test('a batch the host refuses whose commands each pass alone is not lost, and its failure is reported', () => {
  const batch = new CommandBatch();
  for (let i = 0; i < 3; i++) batch.push(buildCommand(Op.TLBI_NH_ASID, { asid: i }), i);
  const sent: number[] = [];
  let first = true;
  const result = flushCommands(batch, (entries) => {
    sent.push(entries.length / 16);
    if (first) {
      first = false;
      throw Object.assign(new Error('IOMMU_HWPT_INVALIDATE failed: Device or resource busy'), { entryNum: 1 });
    }
  });
  assert.equal(result.failedAt, undefined);
  assert.deepEqual(sent, [3, 1, 1], 'the batch, then the commands from the kernel entry_num one by one');
  assert.match(String((result.batchError as Error).message), /Device or resource busy/);
});
