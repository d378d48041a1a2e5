// The qtest protocol server line by line (docs/reference/qtest-qmp.md §1): replies as QEMU 11.1
// gives them (observed with -accel qtest -qtest stdio), malformed requests answered FAIL where
// QEMU would abort, and IRQ lines from interception.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GIC_QOM_PATH, qtestSession } from '../../../src/platform/controllers.js';
import { Machine } from '../../../src/platform/machine.js';

function rig(argv: readonly string[] = ['-M', 'virt', '-accel', 'qtest', '-m', '512']) {
  const m = Machine.create(argv);
  const out: string[] = [];
  const log: string[] = [];
  const s = qtestSession(m, (t) => out.push(t), (t) => log.push(t));
  const ask = (line: string): string[] => {
    out.length = 0;
    s.receive(`${line}\n`);
    return out.map((t) => t.replace(/\n$/, ''));
  };
  return { m, s, ask, log };
}

describe('qtest protocol', () => {
  test('memory reads and writes reply as QEMU does', () => {
    const { ask } = rig();
    assert.deepEqual(ask('writel 0x40000000 0x12345678'), ['OK']);
    assert.deepEqual(ask('readl 0x40000000'), ['OK 0x0000000012345678']);
    assert.deepEqual(ask('readb 0x40000001'), ['OK 0x0000000000000056']);
    assert.deepEqual(ask('read 0x40000000 6'), ['OK 0x785634120000']);
    assert.deepEqual(ask('b64read 0x40000000 6'), ['OK eFY0EgAA']);
    assert.deepEqual(ask('write 0x40000010 4 0xaabb'), ['OK'], 'short data is zero-filled');
    assert.deepEqual(ask('readq 0x40000010'), ['OK 0x000000000000bbaa']);
    assert.deepEqual(ask('memset 0x40000020 3 0x41'), ['OK']);
    assert.deepEqual(ask('read 0x40000020 4'), ['OK 0x41414100']);
    assert.deepEqual(ask('b64write 0x40000000 2 QUJD'), ['OK'], 'SIZE bytes are written, the rest of the data dropped');
    assert.deepEqual(ask('read 0x40000000 3'), ['OK 0x414234']);
    assert.deepEqual(ask('writeq 0x40000100 0x1122334455667788'), ['OK']);
    assert.deepEqual(ask('readw 0x40000106'), ['OK 0x0000000000001122']);
    assert.deepEqual(ask('write 0x40000000 1 0x'), ['ERR invalid argument size']);
    assert.deepEqual(ask('endianness'), ['OK little']);
  });

  test('unassigned MMIO reads 0; a CPU store to MMIO reaches the device', () => {
    const { ask } = rig(['-M', 'virt', '-accel', 'qtest', '-m', '512', ...['-object', 'iommufd,id=iommufd0', '-device', 'arm-smmuv3,primary-bus=pcie.0,accel=on,cmdqv=on,identifier=1', '-device', 'vfio-pci,host=0009:01:00.0,iommufd=iommufd0']]);
    assert.deepEqual(ask('readl 0x08ff0000'), ['OK 0x0000000000000000']);
    // The accelerated SMMUv3's IDR0 at the first platform-bus slot.
    assert.match(ask('readl 0x0c000000')[0]!, /^OK 0x00000000[0-9a-f]{8}$/);
    assert.notDeepEqual(ask('readl 0x0c000000'), ['OK 0x0000000000000000']);
  });

  test('the clock: step by NS, step to the next deadline, set', () => {
    const { m, ask } = rig();
    assert.deepEqual(ask('clock_step'), ['FAIL cannot advance clock to the next deadline because there is no pending deadline']);
    assert.deepEqual(ask('clock_step 1000'), ['OK 1000']);
    assert.deepEqual(ask('clock_set 500'), ['FAIL 1000']);
    assert.deepEqual(ask('clock_set 5000'), ['OK 5000']);
    let fired = false;
    m.clock.schedule(250, () => (fired = true));
    assert.deepEqual(ask('clock_step'), ['OK 5250']);
    assert.ok(fired);
    assert.deepEqual(ask('clock_step 0'), ['FAIL could not advance time']);
  });

  test('malformed requests get FAIL with a reason, never a crash (QEMU aborts on them)', () => {
    const { ask } = rig();
    assert.deepEqual(ask('foo bar'), ["FAIL Unknown command 'foo'"]);
    assert.deepEqual(ask('readl'), ['FAIL missing address']);
    assert.deepEqual(ask('readl zz'), ["FAIL bad address 'zz'"]);
    assert.deepEqual(ask('writel 0x40000000'), ['FAIL missing value']);
    assert.deepEqual(ask('read 0x40000000 0'), ['FAIL read of 0 bytes']);
    assert.deepEqual(ask('read 0x40000000 0x100000000'), [`FAIL size 4294967296 above this server's limit of ${64 * 2 ** 20} bytes`]);
    assert.deepEqual(ask('readq 0x1ffffffffffffffff'), ["FAIL bad address '0x1ffffffffffffffff'"]);
    assert.deepEqual(ask('write 0x40000000 2 0xzz11'), ['FAIL bad hex data at byte 0']);
    assert.deepEqual(ask('b64write 0x40000000 2 !!!!'), ['FAIL bad base64 data']);
    assert.deepEqual(ask('outb 0x10000 1'), ['FAIL port 0x10000 beyond 0xffff']);
    assert.deepEqual(ask(''), ["FAIL Unknown command ''"]);
    assert.deepEqual(ask('readl 0x40000000'), ['OK 0x0000000000000000'], 'the session goes on');
  });

  test('requests split across chunks and several in one chunk', () => {
    const { m } = rig();
    const out: string[] = [];
    const s = qtestSession(m, (t) => out.push(t));
    s.receive('writel 0x400');
    s.receive('00000 7\nreadl 0x40000000\nreadb 0x40000000\n');
    assert.deepEqual(out, ['OK\n', 'OK 0x0000000000000007\n', 'OK 0x0000000000000007\n']);
  });

  test('irq_intercept_in on the GIC reports raise and lower by SPI number; one device per session', () => {
    const { m, ask } = rig();
    void m;
    assert.deepEqual(ask('irq_intercept_in /machine/nothing'), ['FAIL Unknown device']);
    assert.deepEqual(ask(`irq_intercept_in ${GIC_QOM_PATH} named`), ['FAIL Interception of named in-GPIOs not yet supported']);
    assert.deepEqual(ask(`irq_intercept_in ${GIC_QOM_PATH}`), ['OK']);
    assert.deepEqual(ask(`irq_intercept_in ${GIC_QOM_PATH}`), ['OK']);
    assert.deepEqual(ask('irq_intercept_out /machine'), ['FAIL IRQ intercept already enabled']);
    // set_irq_in drives a GIC input as a device would: the interception sees it.
    assert.deepEqual(ask(`set_irq_in ${GIC_QOM_PATH} unnamed-gpio-in 116 1`), ['IRQ raise 116', 'OK']);
    assert.deepEqual(ask(`set_irq_in ${GIC_QOM_PATH} unnamed-gpio-in 116 1`), ['OK'], 'no change, no line');
    assert.deepEqual(ask(`set_irq_in ${GIC_QOM_PATH} unnamed-gpio-in 116 0`), ['IRQ lower 116', 'OK']);
  });

  test('the log records requests and replies with timestamps', () => {
    const { ask, log } = rig();
    ask('readl 0x40000000');
    assert.match(log[0]!, /^\[R \+0\.000000\] readl 0x40000000\n$/);
    assert.match(log[1]!, /^\[S \+0\.000000\] OK 0x0000000000000000\n$/);
  });
});
