// Fault injection at the syscall seam: the named call fails with the errno, before the kernel
// sees it (nothing changes on the host); every other call passes through.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HostKernel } from '../../src/host/kernel/host-kernel.js';
import { FaultInjectingSyscalls, FaultSpecError, parseFaultSpecs } from '../../src/platform/fault-injection.js';
import { Errno } from '../../src/uapi/errno.js';
import { IommufdBackend } from '../../src/vmm/backends/iommufd.js';
import { Tracer } from '../../src/kit/trace.js';

test('inject specs parse, and bad ones name the problem', () => {
  assert.deepEqual(parseFaultSpecs('ioctl=IOMMU_HW_QUEUE_ALLOC:ENOMEM:2, mmap=ENODEV'), [
    { call: 'ioctl', ioctl: 'IOMMU_HW_QUEUE_ALLOC', errno: Errno.ENOMEM, nth: 2 },
    { call: 'mmap', errno: Errno.ENODEV, nth: 1 },
  ]);
  assert.deepEqual(parseFaultSpecs('open=/dev/iommu:EPERM'), [{ call: 'open', path: '/dev/iommu', errno: Errno.EPERM, nth: 1 }]);
  assert.throws(() => parseFaultSpecs('ioctl=IOMMU_NOPE:ENOMEM'), (e: Error) => e instanceof FaultSpecError && /unknown ioctl 'IOMMU_NOPE'/.test(e.message));
  assert.throws(() => parseFaultSpecs('ioctl=IOMMU_IOAS_ALLOC:EWHAT'), /unknown errno 'EWHAT'/);
  assert.throws(() => parseFaultSpecs('ioctl=IOMMU_IOAS_ALLOC:ENOMEM:0'), /positive integer/);
  assert.throws(() => parseFaultSpecs('write=EIO'), /unknown call 'write'/);
});

test('the N-th ioctl of a kind fails with the errno and leaves the host unchanged', () => {
  const kernel = new HostKernel();
  const sys = new FaultInjectingSyscalls(kernel.createProcess(), parseFaultSpecs('ioctl=IOMMU_IOAS_ALLOC:ENOMEM:2'));
  const backend = new IommufdBackend('iommufd0', sys, new Tracer());
  const first = backend.allocIoas();
  assert.throws(() => backend.allocIoas(), (e: Error & { errno?: number }) => e.errno === Errno.ENOMEM);
  const third = backend.allocIoas();
  assert.equal(third, first + 1, 'the refused call allocated no object id');
  assert.deepEqual(sys.injected, [{ spec: 'ioctl=IOMMU_IOAS_ALLOC:ENOMEM:2', call: 'IOMMU_IOAS_ALLOC', nth: 2, errno: 'ENOMEM' }]);
});

test('an injected open or file mmap fails; anonymous mmaps are never counted', () => {
  const kernel = new HostKernel();
  const sys = new FaultInjectingSyscalls(kernel.createProcess(), parseFaultSpecs('open=/dev/iommu:EPERM,mmap=ENOMEM'));
  assert.throws(() => new IommufdBackend('iommufd0', sys, new Tracer()), /Operation not permitted/);
  const backend = new IommufdBackend('iommufd0', sys, new Tracer()); // 2nd open passes; its scratch mmap is anonymous
  assert.ok(backend.fd >= 0);
  assert.equal(sys.mmap(0, 0x10000, 3, 1, backend.fd, 0), -Errno.ENOMEM);
  assert.equal(sys.injected.length, 2);
});
