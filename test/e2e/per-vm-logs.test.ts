// Two VMs on one host (issue 14 #13): logs, traces and address-space epochs are per VM. The
// host keeps its own log (dmesg) and trace; what A's guest causes in the host is attributed to
// A's process and never reaches B's log or trace, even when B's Machine created the host.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Machine } from '../../src/platform/machine.js';
import { runWorkload } from '../../src/platform/workload.js';

const CMDQV = 0x0c08_0000;
const PAGE0 = CMDQV + 0x30000;
const W = { ops: 16, batch: 4, pages: 1, injectError: true, skipInvalidation: false };

function vm(bdf: string, ...trace: string[]): string[] {
  return [
    '-m', '1G', '-object', 'iommufd,id=iommufd0',
    '-device', 'arm-smmuv3,primary-bus=pcie.0,accel=on,cmdqv=on,identifier=1',
    '-device', `vfio-pci,host=${bdf},iommufd=iommufd0`,
    ...trace.flatMap((t) => ['-trace', t]),
  ];
}

describe('two VMs on a host B created', () => {
  test('A\'s guest errors in the host land in the host log and A\'s, never in B\'s', () => {
    const b = Machine.create(vm('0009:01:00.0'));
    const a = Machine.create(vm('0009:01:00.1'), { host: b.host });
    runWorkload(b, W);
    runWorkload(a, W);
    const bLog = b.log.entries().map((e) => `${e.source}: ${e.message}`);
    const hostBefore = b.host.log.count('guest_error');
    const bHw = b.log.count('guest_error', 'tegra241-cmdqv-hw');
    const aHw = a.log.count('guest_error', 'tegra241-cmdqv-hw');
    for (let i = 0; i < 2000; i++) a.write(PAGE0 + 0x8000, 4, i); // page0 offsets past the VCMDQs are unmapped
    assert.equal(a.read(PAGE0 + 0x8000, 4).trapped, false, 'the access went to the host page directly');
    assert.equal(b.host.log.count('guest_error'), hostBefore + 2000, 'the host logged each');
    assert.ok(b.host.log.entries().slice(-2000).every((e) => e.pid === a.proc.pid), 'attributed to A\'s process');
    assert.deepEqual(b.log.entries().map((e) => `${e.source}: ${e.message}`), bLog, 'B\'s log unchanged (not flushed)');
    assert.equal(b.log.count('guest_error', 'tegra241-cmdqv-hw'), bHw);
    assert.equal(a.log.count('guest_error', 'tegra241-cmdqv-hw'), aHw + 2000, 'A sees what it caused');
    // B's own host-side errors still reach B.
    b.write(PAGE0 + 0x8000, 4, 1);
    assert.equal(b.log.count('guest_error', 'tegra241-cmdqv-hw'), bHw + 1);
    assert.equal(a.log.count('guest_error', 'tegra241-cmdqv-hw'), aHw + 2000);
    a.close();
    b.close();
  });

  test('A\'s VCMDQ activity and ioctls appear in A\'s trace and the host trace, never in B\'s', () => {
    const pattern = ['tegra241_cmdqv_hw_*', 'iommufd_ioctl'];
    const b = Machine.create(vm('0009:01:00.0', ...pattern));
    const a = Machine.create(vm('0009:01:00.1', ...pattern), { host: b.host });
    runWorkload(b, W);
    const bLines = b.traceText.lines.length;
    assert.ok(b.traceText.lines.some((l) => /tegra241_cmdqv_hw_consume/.test(l)), 'B sees its own host events');
    assert.ok(b.traceText.lines.some((l) => /iommufd_ioctl/.test(l)), 'B sees its own ioctls');
    runWorkload(a, W);
    assert.equal(b.traceText.lines.length, bLines, 'nothing of A in B\'s trace');
    assert.ok(a.traceText.lines.some((l) => /tegra241_cmdqv_hw_consume/.test(l)), 'A sees its own VCMDQ activity');
    assert.ok(a.traceText.lines.some((l) => /iommufd_ioctl IOMMU_HW_QUEUE_ALLOC/.test(l)), 'A sees its own ioctls');
    assert.ok(a.traceChrome.events.every((e) => e.pid === a.proc.pid || e.pid === 1), 'records carry A\'s pid');
    a.close();
    b.close();
  });

  test('the host trace has both VMs\' events, each with its pid', () => {
    const b = Machine.create(vm('0009:01:00.0'));
    const a = Machine.create(vm('0009:01:00.1'), { host: b.host });
    const pids = new Set<number>();
    b.host.tracer.addSink({ record: (_ev, _t, _v, pid) => void pids.add(pid) });
    b.host.tracer.enable('tegra241_cmdqv_hw_consume');
    runWorkload(b, W);
    runWorkload(a, W);
    assert.deepEqual([...pids].sort(), [a.proc.pid, b.proc.pid].sort());
  });

  test('A toggling its VINTF0 does not make B\'s address space re-flatten (topology epochs are per tree)', () => {
    const b = Machine.create(vm('0009:01:00.0'));
    const a = Machine.create(vm('0009:01:00.1'), { host: b.host });
    b.write(CMDQV, 4, 1); // CMDQV_EN
    a.write(CMDQV, 4, 1);
    const view = b.as.flatView();
    for (let i = 0; i < 10; i++) {
      a.write(CMDQV + 0x1000, 4, 1); // VINTF0 CONFIG.ENABLE: maps page0 in A
      a.write(CMDQV + 0x1000, 4, 0);
    }
    assert.notEqual(a.as.flatView(), view);
    assert.equal(b.as.flatView(), view, 'B\'s flat view is the same object: never rebuilt');
  });
});
