// The drop-in qemu-system-aarch64 (issue 12 §1-4): started exactly as libqtest starts QEMU
// (-qtest unix:SOCK, -chardev socket + -mon mode=control, -accel qtest), driven through both
// protocols, including IRQ interception, system_reset and quit. The CMDQV scenario is one QEMU
// itself cannot run without a Grace host: VINTF enable, VCMDQ allocation, direct doorbells, an
// illegal command and the CMDQV interrupt seen as `IRQ raise`.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { buildCommand, Op, SYNC_CS_IRQ, SYNC_CS_NONE } from '../../src/arch/smmuv3/commands.js';
import * as C from '../../src/arch/tegra241-cmdqv/registers.js';
import { instanceOffset } from '../../src/kit/registers.js';
import { DEFAULT_ARGS } from '../../src/platform/machine.js';
import { GIC_QOM_PATH } from '../../src/platform/controllers.js';
import { QtestClient } from './qtest-client.js';

const BIN = [process.execPath, fileURLToPath(new URL('../../src/cli/qemu-bin.js', import.meta.url))];
const CMDQV = 0x0c08_0000;
/** The CMDQV's GSIV 148 is GIC SPI 116. */
const CMDQV_SPI = 148 - 32;
const RING = 0x4800_0000;
const RING_LOG2 = 5;

function commandBytes(cmds: readonly Uint32Array[]): Uint8Array {
  const out = new Uint8Array(cmds.length * 16);
  const dv = new DataView(out.buffer);
  cmds.forEach((c, i) => c.forEach((w, k) => dv.setUint32(i * 16 + k * 4, w, true)));
  return out;
}

async function exits(c: QtestClient): Promise<number> {
  const r = (await c.qmpCall('x-query-cmdqv')) as { return: { 'vm-exits': number } };
  return r.return['vm-exits'];
}

describe('cmdqv-qemu-system-aarch64 as libqtest starts it', () => {
  test('a bad line: QEMU\'s error text and status 1', () => {
    const r = spawnSync(BIN[0]!, [BIN[1]!, '-M', 'virt', '-device', 'foo'], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.equal(r.stderr, "qemu-system-aarch64: -device foo: 'foo' is not a valid device model name\n");
    const v = spawnSync(BIN[0]!, [BIN[1]!, '--version'], { encoding: 'utf8' });
    assert.match(v.stdout, /^QEMU emulator version 11\.1\.0 \(cmdqv/);
  });

  test('a qtest socket nobody listens on: QEMU\'s two error lines, status 1', () => {
    const r = spawnSync(BIN[0]!, [BIN[1]!, '-M', 'virt', '-accel', 'qtest', '-qtest', 'unix:/nonexistent-dir/q.sock'], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.equal(r.stderr, "qemu-system-aarch64: Failed to connect to '/nonexistent-dir/q.sock': No such file or directory\nqemu-system-aarch64: Failed to initialize device for qtest: \"unix:/nonexistent-dir/q.sock\"\n");
  });

  test('CMDQV through qtest: direct doorbells without VM exits, an illegal command raises the CMDQV IRQ; QMP reset and quit', async () => {
    const c = await QtestClient.start(BIN, [...DEFAULT_ARGS, '-S', '-accel', 'qtest']);
    try {
      assert.deepEqual((await c.qmpCall('query-status')).return, { status: 'prelaunch', running: false });
      assert.equal(await c.cmd(`irq_intercept_in ${GIC_QOM_PATH}`), 'OK');
      // Global enable, VCMDQ0 to VINTF0's LVCMDQ0, VINTF0 enabled guest-owned.
      const param = await c.readl(CMDQV + C.PARAM.spec.offset);
      assert.equal(C.PARAM.f.CMDQV_NUM_CMDQ_LOG2.get(param), 1, 'the VMM exposes 2 VCMDQs');
      const cfg = await c.readl(CMDQV + C.CMDQV_ENABLE.config);
      await c.writel(CMDQV + C.CMDQV_ENABLE.config, C.CMDQV_ENABLE.enable.set(cfg, 1));
      await c.poll(CMDQV + C.CMDQV_ENABLE.status, (v) => C.CMDQV_ENABLE.enabled.get(v) === 1);
      await c.writel(CMDQV + C.allocMapOffset(0), C.allocMapValue(0, 0, true));
      const vintf = C.vintfEnable(0);
      await c.writel(CMDQV + vintf.config, vintf.enable.set(0, 1));
      await c.poll(CMDQV + vintf.status, (v) => vintf.enabled.get(v) === 1);
      const p0 = CMDQV + C.lvcmdqPage0Offset(0, 0);
      const p1 = CMDQV + C.lvcmdqPage1Offset(0, 0);
      await c.writeq(p1 + C.VCMDQ_BASE.spec.offset, C.vcmdqBaseValue(RING, RING_LOG2));
      const q = C.vcmdqEnable(p0 - CMDQV);
      await c.writel(CMDQV + q.config, q.enable.set(0, 1));
      await c.poll(CMDQV + q.status, (v) => q.enabled.get(v) === 1);
      const queue = ((await c.qmpCall('x-query-cmdqv')) as { return: { smmus: { cmdqv: { vcmdqs: { allocated: boolean }[] } }[] } }).return;
      assert.equal(queue.smmus[0]!.cmdqv.vcmdqs[0]!.allocated, true, 'the host HW queue was allocated');
      // Two legal commands through the direct doorbell: no VM exit.
      await c.write(RING, commandBytes([buildCommand(Op.TLBI_NH_ASID, { asid: 1 }), buildCommand(Op.SYNC, { cs: SYNC_CS_NONE })]));
      const before = await exits(c);
      await c.writel(p0 + C.VCMDQ_PROD.spec.offset, 2);
      const cons = await c.poll(p0 + C.VCMDQ_CONS.spec.offset, (v) => C.VCMDQ_CONS.f.RD.get(v) === 2);
      assert.equal(C.VCMDQ_CONS.f.ERR.get(cons), 0);
      assert.equal(await exits(c), before, 'doorbell and CONS reads went to the host directly');
      assert.deepEqual(c.irqs, []);
      // An illegal command (CFGI_STE is not a guest VCMDQ command): the host stops the queue,
      // the VMM reports it, and the CMDQV interrupt is pulsed.
      await c.write(RING + 2 * 16, commandBytes([buildCommand(Op.CFGI_STE, { sid: 0 })]));
      await c.writel(p0 + C.VCMDQ_PROD.spec.offset, 3);
      assert.equal(await c.readIrq(), `IRQ raise ${CMDQV_SPI}`);
      assert.equal(await c.readIrq(), `IRQ lower ${CMDQV_SPI}`);
      const errCons = await c.readl(p0 + C.VCMDQ_CONS.spec.offset);
      assert.notEqual(C.VCMDQ_CONS.f.ERR.get(errCons), 0, 'CONS.ERR names the error');
      const errMap = await c.readl(CMDQV + C.vintfBlockOffset(0) + instanceOffset(C.VINTF_LVCMDQ_ERR_MAP_64, 0));
      assert.equal(errMap & 1, 1, 'LVCMDQ 0 is flagged in the VINTF error map');
      // QMP: reset puts the CMDQV back to its reset state.
      assert.deepEqual((await c.qmpCall('system_reset')).return, {});
      assert.equal(c.events.at(-1)!.event, 'RESET');
      assert.equal(await c.readl(CMDQV + vintf.config), 0);
      assert.deepEqual((await c.qmpCall('quit')).return, {});
      assert.equal(await c.exit(), 0);
    } finally {
      await c.close();
    }
  });

  test('-qmp unix:PATH: QMP and qtest side by side, IRQ interception of the SMMU CMD_SYNC interrupt, system_reset', async () => {
    // An emulated SMMUv3 with an id: its sysbus-irq outputs are interceptable by QOM path.
    const c = await QtestClient.start(BIN, ['-M', 'virt', '-accel', 'qtest', '-m', '256', '-device', 'arm-smmuv3,primary-bus=pcie.0,id=smmu0'], 'qmp');
    try {
      assert.deepEqual((await c.qmpCall('query-status')).return, { status: 'running', running: true });
      assert.equal(await c.cmd('irq_intercept_out /machine/peripheral/smmu0 sysbus-irq'), 'OK');
      // A one-command queue holding CMD_SYNC with CS=IRQ, CMDQ enabled, PROD moved: the SMMU pulses IRQ 2.
      const SMMU = 0x0c00_0000;
      const Q = 0x4100_0000;
      await c.write(Q, commandBytes([buildCommand(Op.SYNC, { cs: SYNC_CS_IRQ })]));
      await c.writeq(SMMU + 0x90, BigInt(Q) | 4n);
      await c.writel(SMMU + 0x20, 0x8);
      await c.writel(SMMU + 0x98, 1);
      // QEMU 11.1 gives the same lines for the same requests (observed with -qtest stdio).
      assert.deepEqual(c.irqs, ['IRQ raise 2', 'IRQ lower 2'], 'the CMD_SYNC interrupt, seen before the reply of the write that caused it');
      assert.equal(await c.readl(SMMU + 0x9c), 1);
      assert.deepEqual((await c.qmpCall('system_reset')).return, {});
      assert.equal(await c.readl(SMMU + 0x20), 0, 'CR0 is back to its reset value');
    } finally {
      await c.close();
    }
  });

  test('closing the qtest connection ends the process cleanly', async () => {
    const c = await QtestClient.start(BIN, ['-M', 'virt', '-accel', 'qtest', '-m', '256']);
    assert.equal(await c.cmd('readl 0x40000000'), 'OK 0x0000000000000000');
    await c.close();
    assert.equal(c.proc.exitCode, 0);
  });
});

describe('qtest transports', () => {
  test('-chardev socket,server=on,wait=off + -qtest chardev:ID, -qtest-log FILE: a client connects and the log records the session', async () => {
    const { mkdtempSync, readFileSync, rmSync, existsSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { spawn } = await import('node:child_process');
    const { createConnection } = await import('node:net');
    const dir = mkdtempSync(join(tmpdir(), 'cmdqv-qtest-srv-'));
    const sock = join(dir, 'q.sock');
    const log = join(dir, 'qtest.log');
    const proc = spawn(BIN[0]!, [BIN[1]!, '-M', 'virt', '-accel', 'qtest', '-m', '256', '-chardev', `socket,id=q0,path=${sock},server=on,wait=off`, '-qtest', 'chardev:q0', '-qtest-log', log], { stdio: 'ignore' });
    try {
      for (let i = 0; i < 200 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 25));
      const s = createConnection(sock);
      const reply = await new Promise<string>((resolve) => {
        let buf = '';
        s.setEncoding('utf8');
        s.on('data', (d: string) => {
          buf += d;
          if (buf.includes('\n')) resolve(buf);
        });
        s.write('writel 0x40000000 0x5a\nreadb 0x40000000\n');
      });
      assert.equal(reply.split('\n')[0], 'OK');
      s.destroy();
      await new Promise((r) => setTimeout(r, 100));
      const text = readFileSync(log, 'utf8');
      assert.match(text, /\[R \+\d+\.\d{6}\] writel 0x40000000 0x5a\n\[S \+\d+\.\d{6}\] OK\n/);
    } finally {
      proc.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
