// Machine.close(): a VM ends the way its VMM process exits — every mapping, fd and host object
// goes back to the host (issue 14 section 3, and #14: a dropped machine kept its VINTF).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HostKernel } from '../../src/host/kernel/host-kernel.js';
import { Machine } from '../../src/platform/machine.js';
import { runWorkload } from '../../src/platform/workload.js';
import { OptionError } from '../../src/vmm/virt/options.js';
import { argsFor, hostResources, hostWith } from '../faults/host-balance.js';

describe('Machine.close', () => {
  test('100 create/run/close cycles on one host give back every VINTF, HW queue, VMID, page and fd', () => {
    const host = new HostKernel(hostWith(2));
    const before = hostResources(host);
    for (let i = 0; i < 100; i++) {
      const m = Machine.create(argsFor('0009:01:00.0'), { host });
      if (i % 10 === 0) runWorkload(m, { ops: 8, batch: 4, pages: 1, injectError: true, skipInvalidation: false });
      const proc = m.proc;
      m.close();
      for (let fd = 0; fd < 32; fd++) assert.ok(proc.poll(fd) < 0, `fd ${fd} closed after exit`);
    }
    assert.deepEqual(hostResources(host), before);
  });

  test('a host with 64 VINTFs runs 63 guest VMs (VINTF0 is the host\'s); one more is ENOSPC until one closes', () => {
    const host = new HostKernel(hostWith(65));
    const vms: Machine[] = [];
    for (let i = 0; i < 63; i++) vms.push(Machine.create(argsFor(host.devices[i]!.bdf, '128M'), { host }));
    assert.throws(
      () => Machine.create(argsFor(host.devices[63]!.bdf, '128M'), { host }),
      (e: unknown) => e instanceof OptionError && /No space left on device/.test(e.message),
    );
    vms.shift()!.close();
    const late = Machine.create(argsFor(host.devices[64]!.bdf, '128M'), { host });
    assert.ok(late.smmus[0]!.cmdqv, 'the late VM got a VINTF');
    for (const m of [...vms, late]) m.close();
    assert.equal(hostResources(host).vintfs, 0);
  });

  test('calls on a closed machine are refused with a clear error; close twice is harmless', () => {
    const m = Machine.create(argsFor('0009:01:00.0'));
    const guest = m.guestPlatform();
    m.close();
    m.close();
    const closed = /machine is closed/;
    assert.throws(() => m.read(0x0c08_0000, 4), closed);
    assert.throws(() => m.write(0x0c08_0000, 4, 0), closed);
    assert.throws(() => m.readRam(0x4000_0000, 4), closed);
    assert.throws(() => m.writeRam(0x4000_0000, new Uint8Array(4)), closed);
    assert.throws(() => m.reset(), closed);
    assert.throws(() => m.runMainLoop(), closed);
    assert.throws(() => m.guestPlatform(), closed);
    assert.throws(() => guest.bus.read32(0x0c08_0000), closed);
  });

  test('a machine that failed to build leaves nothing behind on the host', () => {
    const host = new HostKernel(hostWith(2));
    const before = hostResources(host);
    // Fails after guest RAM, the iommufd and its buffers exist (an unknown host device).
    assert.throws(() => Machine.create(['-m', '1G', '-object', 'iommufd,id=i0', '-device', 'pxb-pcie,id=pcie.1,bus_nr=0x10', '-device', 'arm-smmuv3,primary-bus=pcie.1,accel=on,identifier=1', '-device', 'pcie-root-port,id=rp1,bus=pcie.1,chassis=1', '-device', 'vfio-pci,host=0009:99:00.0,iommufd=i0,bus=rp1'], { host }), /no such host device/);
    // Fails after the device was bound and the vIOMMU built: cmdqv=on on a second SMMU without devices.
    assert.throws(() => Machine.create([...argsFor('0009:01:00.0'), '-device', 'pxb-pcie,id=pcie.1,bus_nr=0x10', '-device', 'arm-smmuv3,primary-bus=pcie.1,accel=on,cmdqv=on,identifier=2'], { host }), /cmdqv=on requires/);
    assert.deepEqual(hostResources(host), before);
    Machine.create(argsFor('0009:01:00.0'), { host }).close();
  });
});
