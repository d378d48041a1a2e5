// Real qemu-system-aarch64 -machine virt lines (issue 11 §1): every option accepted and parsed
// as QEMU does, what cmdqv does not model listed, bad values with QEMU's error text.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OptionError, parseVirtArgs, isHugetlbfsPath } from '../../../src/vmm/virt/options.js';
import { placePciDevices } from '../../../src/vmm/virt/pci-topology.js';
import { DEFAULT_HOST, Machine } from '../../../src/platform/machine.js';
import { main } from '../../../src/cli/main.js';

/** A Grace passthrough line as published: hugepage backend, pxb-pcie, accel SMMU, root port. */
const GRACE = [
  '-machine', 'virt,accel=kvm,gic-version=3,highmem-mmio-size=512G,memory-backend=mem0,kernel-irqchip=on',
  '-cpu', 'host', '-smp', 'cpus=4,sockets=1,cores=4,threads=1', '-m', 'size=4G,slots=2,maxmem=8G',
  '-object', 'memory-backend-file,id=mem0,mem-path=/dev/hugepages,size=4G,prealloc=on,share=on',
  '-object', 'iommufd,id=iommufd0', '-numa', 'node,memdev=mem0', '-name', 'grace-vm', '-uuid', '12345678-1234-1234-1234-123456789abc',
  '-nodefaults', '-nographic', '-serial', 'mon:stdio', '-no-reboot', '-S', '-bios', '/usr/share/AAVMF/AAVMF_CODE.fd',
  '-kernel', '/boot/Image', '-initrd', '/boot/initrd.img', '-append', 'console=ttyAMA0 iommu.passthrough=0',
  '-drive', 'file=disk.qcow2,if=none,id=d0', '-device', 'virtio-blk-pci,drive=d0,id=vblk0',
  '-netdev', 'user,id=net0', '-device', 'virtio-net-pci,netdev=net0,id=net0', '-qmp', 'unix:/tmp/q.sock,server=on,wait=off',
  '-global', 'arm-smmuv3.ril=off', '-D', '/tmp/qemu.log', '-d', 'guest_errors,trace:tegra241_cmdqv_*',
  '-device', 'pxb-pcie,id=pcie.1,bus_nr=1,bus=pcie.0',
  '-device', 'arm-smmuv3,primary-bus=pcie.1,id=smmuv3.1,accel=on,cmdqv=on,identifier=1',
  '-device', 'pcie-root-port,id=pcie.port1,bus=pcie.1,chassis=1,slot=1,port=1',
  '-device', 'vfio-pci,host=0009:01:00.0,bus=pcie.port1,iommufd=iommufd0,id=hostdev0',
];

test('a Grace passthrough line is accepted and parsed as QEMU does (issue 11 §1)', () => {
  const o = parseVirtArgs(GRACE);
  assert.equal(o.accel, 'kvm');
  assert.equal(o.gicVersion, 3);
  assert.equal(o.memBytes, 4 * 2 ** 30);
  assert.deepEqual(o.memBackend && [o.memBackend.type, o.memBackend.memPath, o.memBackend.hugepages, o.memBackend.prealloc, o.memBackend.share],
    ['memory-backend-file', '/dev/hugepages', true, true, true]);
  assert.equal(o.smmus[0]!.ril, 'off', '-global arm-smmuv3.ril=off is a default');
  assert.deepEqual(o.rootPorts, [{ id: 'pcie.port1', bus: 'pcie.1', chassis: 1, slot: 1, port: 1 }]);
  assert.deepEqual(o.trace, ['tegra241_cmdqv_*']);
  assert.deepEqual(o.notModelled, [
    '-numa node,memdev=mem0', '-nographic', '-serial mon:stdio', '-no-reboot', '-S', '-bios AAVMF_CODE.fd', '-kernel Image', '-initrd initrd.img',
    '-append console=ttyAMA0 iommu.passthrough=0', '-drive file=disk.qcow2,if=none,id=d0', 'virtio-blk-pci vblk0', '-netdev user,id=net0',
    'virtio-net-pci net0', '-D qemu.log', '-d guest_errors',
  ]);
  assert.deepEqual(o.monitors.qmp, [{ kind: 'unix', path: '/tmp/q.sock', server: true, wait: false }], '-qmp is served (cmdqv qemu), not listed');
});

test('cmdqv run boots the Grace line: device behind the root port gets its secondary bus, report lists what is not modelled', () => {
  let out = '';
  let err = '';
  const code = main(['run', '--ops', '8', '--', ...GRACE], (s) => (out += s), (s) => (err += s));
  assert.equal(code, 0, err);
  // pxb bus 1 (slot 0: the root port), the port's secondary bus 2, device 02:00.0.
  assert.match(out, /vfio-pci 0009:01:00\.0 -> guest SID 0x200 behind/);
  assert.match(out, /not modelled: -numa node,memdev=mem0, .*-kernel Image, .*virtio-net-pci net0/);
  assert.match(out, /DMA checks: \d+ passed, 0 failed/);
});

test('a hugetlbfs memory backend means hugepage RAM; a plain one means normal pages, whatever the host has', () => {
  assert.ok(isHugetlbfsPath('/dev/hugepages'));
  assert.ok(isHugetlbfsPath('/dev/hugepages1G'));
  assert.ok(!isHugetlbfsPath('/tmp/guest-ram'));
  const base = ['-object', 'iommufd,id=i0', '-device', 'arm-smmuv3,primary-bus=pcie.0,accel=on,cmdqv=on,identifier=1', '-device', 'vfio-pci,host=0009:01:00.0,iommufd=i0'];
  const huge = Machine.create(['-m', '1G', '-object', 'memory-backend-file,id=m,mem-path=/dev/hugepages,size=1G', '-machine', 'virt,memory-backend=m', ...base]);
  assert.equal(huge.ramPageSize, DEFAULT_HOST.hugepageSize);
  huge.close();
  const plain = Machine.create(['-m', '1G', '-object', 'memory-backend-ram,id=m,size=1G', '-machine', 'virt,memory-backend=m', ...base]);
  assert.equal(plain.ramPageSize, DEFAULT_HOST.pageSize);
  plain.close();
  assert.throws(() => Machine.create(['-object', 'memory-backend-file,id=m,mem-path=/dev/hugepages,size=1G', '-machine', 'virt,memory-backend=m', ...base],
    { host: { ...DEFAULT_HOST, hugepages: false } }), /can't open backing store \/dev\/hugepages/);
});

test('-smp, -m and -trace in all their forms', () => {
  for (const smp of ['4', 'cpus=4', '4,sockets=1,cores=4', 'sockets=1,clusters=2,cores=2,threads=2', 'cpus=2,maxcpus=4']) parseVirtArgs(['-smp', smp]);
  assert.equal(parseVirtArgs(['-m', '2048']).memBytes, 2 * 2 ** 30);
  assert.equal(parseVirtArgs(['-m', 'size=2G']).memBytes, 2 * 2 ** 30);
  assert.equal(parseVirtArgs(['-m', '2G,slots=4,maxmem=16G']).memBytes, 2 * 2 ** 30);
  const t = parseVirtArgs(['-trace', 'smmuv3_*', '-trace', 'enable=tegra241_*', '-trace', 'file=/tmp/t.log', '--trace', 'events=/dev/null']);
  assert.deepEqual(t.trace, ['smmuv3_*', 'tegra241_*']);
  assert.deepEqual(t.traceEventFiles, ['/dev/null']);
  assert.deepEqual(t.notModelled, ['-trace file=/tmp/t.log']);
});

test('the accelerator and the GIC decide the ITS as QEMU does', () => {
  const its = (argv: string[]) => {
    const m = Machine.create(['-m', '1G', ...argv]);
    m.close();
    return m.hasIts;
  };
  assert.equal(its([]), true, 'no accelerator named: KVM on a GICv3 host');
  assert.equal(its(['-accel', 'tcg']), false, 'TCG: GICv2 by default');
  assert.equal(its(['-accel', 'tcg', '-M', 'gic-version=3']), true);
  assert.equal(its(['-M', 'virt,accel=kvm,its=off']), false);
  assert.equal(parseVirtArgs(['-accel', 'tcg', '-accel', 'qtest']).accel, 'tcg', 'the first accelerator that starts');
});

test('bad lines fail with QEMU\'s error text', () => {
  const bad: [string[], RegExp][] = [
    [['-device', 'foo'], /^-device foo: 'foo' is not a valid device model name$/],
    [['-bogus'], /^-bogus: invalid option$/],
    [['-cpu', 'pentium'], /^unable to find CPU model 'pentium'$/],
    [['-accel', 'nope'], /^-accel nope: invalid accelerator nope$/],
    [['-M', 'virt,gic-version=5'], /Invalid gic-version value/],
    [['-M', 'virt,iommu=intel'], /Invalid iommu value/],
    [['-M', 'virt,frobnicate=on'], /^Property 'virt-11\.1-machine\.frobnicate' not found$/],
    [['-m', '2G,maxmem=1G'], /invalid value of maxmem: maximum memory size \(0x40000000\) must be at least the initial memory size \(0x80000000\)/],
    [['-smp', 'sockets=2,cores=2,threads=1,maxcpus=8'], /Invalid CPU topology: product of the hierarchy must match maxcpus/],
    [['-uuid', 'xyz'], /^-uuid xyz: failed to parse UUID string: wrong format$/],
    [['-object', 'memory-backend-ram,id=m'], /^-object memory-backend-ram,id=m: Parameter 'size' is missing$/],
    [['-object', 'memory-backend-file,id=m,size=1G'], /mem-path property not set/],
    [['-M', 'virt,memory-backend=nope'], /Memory backend 'nope' not found/],
    [['-m', '2G', '-object', 'memory-backend-ram,id=m,size=1G', '-M', 'virt,memory-backend=m'], /Machine memory size does not match the size of the memory backend/],
    [['-device', 'pcie-root-port,id=a,chassis=1', '-device', 'pcie-root-port,id=b,chassis=1'], /Can't add chassis slot, error -16/],
    [['-device', 'vfio-pci,host=0009:01:00.0,addr=0x40'], /Property 'vfio-pci\.addr' doesn't take value '0x40'/],
    [['-M', 'iommu=smmuv3', '-device', 'arm-smmuv3,primary-bus=pcie.0'], /^-device arm-smmuv3,primary-bus=pcie\.0: virt machine already has iommu=smmuv3 set\. Doesn't support incompatible iommus$/],
  ];
  for (const [argv, re] of bad) {
    assert.throws(() => parseVirtArgs(argv), (e: unknown) => e instanceof OptionError && re.test(e.message), argv.join(' '));
  }
});

test('PCI placement: QEMU\'s slots, firmware\'s bus numbers behind root ports', () => {
  const p = placePciDevices([
    { driver: 'pcie-root-port', id: 'rp1', bus: 'pcie.0', devfn: undefined, opens: { kind: 'port' } },
    { driver: 'pxb-pcie', id: 'pcie.1', bus: 'pcie.0', devfn: undefined, opens: { kind: 'root', busNr: 0x10 } },
    { driver: 'pcie-root-port', id: 'rp0', bus: 'pcie.0', devfn: undefined, opens: { kind: 'port' } },
    { driver: 'pcie-root-port', id: 'rp10', bus: 'pcie.1', devfn: 5 << 3, opens: { kind: 'port' } },
    { driver: 'vfio-pci', id: 'd', bus: 'rp10', devfn: undefined },
  ]);
  // pcie.0: gpex-root at 00.0, rp1 01.0, pxb 02.0, rp0 03.0; buses 1, 2 behind pcie.0 in devfn order.
  assert.deepEqual(p.devices.map((d) => [d.bus, d.devfn]), [['pcie.0', 8], ['pcie.0', 16], ['pcie.0', 24], ['pcie.1', 40], ['rp10', 0]]);
  assert.deepEqual(p.buses.map((b) => [b.id, b.busNr, b.subordinate]), [['pcie.0', 0, 2], ['rp1', 1, 1], ['pcie.1', 0x10, 0x11], ['rp0', 2, 2], ['rp10', 0x11, 0x11]]);
  assert.throws(() => placePciDevices([
    { driver: 'pcie-root-port', id: 'rp', bus: 'pcie.0', devfn: 8, opens: { kind: 'port' } },
    { driver: 'vfio-pci', id: 'x', bus: 'pcie.0', devfn: 8 },
  ]), /PCI: slot 1 function 0 not available for vfio-pci, in use by pcie-root-port,id=rp/);
  // QEMU 11.1 only warns about a PCIe function at slot 1 behind a root port.
  assert.deepEqual(placePciDevices([
    { driver: 'pcie-root-port', id: 'rp', bus: 'pcie.0', devfn: undefined, opens: { kind: 'port' } },
    { arg: 'vfio-pci,bus=rp,addr=1', driver: 'vfio-pci', id: 'x', bus: 'rp', devfn: 1 << 3, express: true },
  ]).warnings, ['-device vfio-pci,bus=rp,addr=1: warning: PCI: slot 1 is not valid for vfio-pci, parent device only allows plugging into slot 0.']);
});

test('emulated SMMUv3s: cmdqv run builds them (MMIO and IRQs mapped), cmdqv acpi describes them', () => {
  for (const [line, base, gsiv] of [[['-M', 'virt,iommu=smmuv3'], 0x905_0000, 106], [['-device', 'arm-smmuv3,primary-bus=pcie.0,id=emu0'], 0xc00_0000, 144]] as const) {
    const m = Machine.create([...line]);
    assert.equal(m.emulatedSmmus.length, 1);
    assert.deepEqual([m.emulatedSmmus[0]!.base, m.emulatedSmmus[0]!.irqBaseGsiv], [base, gsiv]);
    assert.equal(Number(m.read(base + 0x1c, 4).value), 1, 'AIDR through the machine\'s address space');
    assert.equal(m.irqs.get(gsiv), m.emulatedSmmus[0]!.device.irqs[0]);
    assert.ok(m.emulatedSmmuFor('pcie.0'));
    m.close();
    let out = '';
    assert.equal(main(['acpi', '--', ...line], (s) => (out += s), () => {}), 0);
    assert.match(out, /SMMUv3 .*at 0x(9050000|c000000)/);
  }
});

test('an emulated SMMUv3 gets QEMU 11.1\'s IORT counter as Identifier, whatever identifier= says', () => {
  const m = Machine.create(['-M', 'gic-version=3', '-device', 'arm-smmuv3,primary-bus=pcie.0,identifier=7']);
  m.close();
  assert.equal(m.acpiTopology().smmus[0]!.identifier, 1, 'after the ITS node');
  const n = Machine.create(['-M', 'gic-version=2', '-device', 'arm-smmuv3,primary-bus=pcie.0,identifier=7']);
  n.close();
  assert.equal(n.acpiTopology().smmus[0]!.identifier, 0, 'no ITS');
});
