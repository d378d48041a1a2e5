// Every bad user input gets one line naming the problem and exit status 1 (usage errors 2),
// never a stack trace (issue 14 #11). Each case runs through main().
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { main } from '../../src/cli/main.js';

function run(argv: string[]) {
  let out = '';
  let err = '';
  const code = main(argv, (s) => (out += `${s}\n`), (s) => (err += `${s}\n`));
  return { code, out, err };
}

const ACCEL = ['-object', 'iommufd,id=iommufd0', '-device', 'arm-smmuv3,primary-bus=pcie.0,accel=on,cmdqv=on,identifier=1', '-device', 'vfio-pci,host=0009:01:00.0,iommufd=iommufd0'];

function seventeenSmmus(): string[] {
  const a = ['-object', 'iommufd,id=iommufd0'];
  for (let i = 1; i <= 17; i++) a.push('-device', `pxb-pcie,id=pcie.${i},bus_nr=${i * 8},bus=pcie.0`, '-device', `arm-smmuv3,primary-bus=pcie.${i},accel=on,identifier=${i}`);
  return a;
}

/** QEMU's prefix for errors in the QEMU line; cmdqv's own for its own options and the workload. */
const QEMU_LINE = /^qemu-system-aarch64: /;
const CMDQV_OWN = /^cmdqv: /;

function oneLine(r: { code: number; err: string }, code: number, prefix: RegExp, re: RegExp): void {
  assert.equal(r.code, code, r.err);
  const lines = r.err.trim().split('\n');
  assert.equal(lines.length, 1, `one line: ${r.err}`);
  assert.match(lines[0]!, prefix);
  assert.match(lines[0]!, re);
  assert.doesNotMatch(r.err, /\n\s+at /, 'no stack trace');
}

describe('bad input: one line and exit 1', () => {
  const cases: [string, string[], RegExp][] = [
    ['-m 100000000T', ['run', '--', '-m', '100000000T', ...ACCEL], /^qemu-system-aarch64: -m 100000000T: Value '100000000T' is out of range for parameter 'size'$/],
    ['-m 99999999999999999999999', ['run', '--', '-m', '99999999999999999999999', ...ACCEL], /Value '99999999999999999999999' is out of range for parameter 'size'$/],
    ['-m 18446744073709551615 (MiB)', ['run', '--', '-m', '18446744073709551615', ...ACCEL], /^qemu-system-aarch64: Parameter 'memory\.size' expects size$/],
    ['-m beyond the guest physical address space', ['run', '--', '-m', '32T', ...ACCEL], /-m 32T: .*more RAM than the virt machine can address/],
    ['-m beyond the host', ['run', '--', '-m', '1T', ...ACCEL], /-m: cannot allocate .* guest RAM/],
    ['17 SMMUs', ['run', '--', ...seventeenSmmus()], /Platform Bus: no free IRQ/i],
    ['acpi with 17 SMMUs', ['acpi', '--', ...seventeenSmmus()], /Platform Bus: no free IRQ/i],
    ['guest buffers beyond guest memory', ['run', '--ops', '4096', '--batch', '4096', '--pages', '512'], /batch 4096 × pages 512: .*MiB of guest memory, the guest has \d+ MiB free/],
    ['a guest too small to boot', ['run', '--', '-m', '128M', ...ACCEL], /the guest cannot boot its IOMMU drivers in 128 MiB of RAM/],
    ['--trace-out at an unusable path', ['run', '--ops', '8', '--trace-out', '/dev/null/trace.json'], /--trace-out \/dev\/null\/trace\.json: .*not a directory/i],
    ['acpi --out at an unusable path', ['acpi', '--out', '/dev/null/tables'], /--out \/dev\/null\/tables: .*not a directory/i],
    // QEMU 11.1's texts for an emulated (accel=off) SMMUv3 (docs/reference/qemu-smmuv3.md §8).
    ['cmdqv=on without accel', ['run', '--', '-device', 'arm-smmuv3,primary-bus=pcie.0,cmdqv=on'], /^qemu-system-aarch64: -device arm-smmuv3,primary-bus=pcie\.0,cmdqv=on: cmdqv can only be enabled if accel=on$/],
    ['oas=48 without accel', ['run', '--', '-device', 'arm-smmuv3,primary-bus=pcie.0,oas=48'], /: oas must be 44 bits when accel=off$/],
    ['ssidsize without accel', ['acpi', '--', '-device', 'arm-smmuv3,primary-bus=pcie.0,ssidsize=8'], /: ssidsize can only be greater than 0 bits if accel=on$/],
    ['an SMMU next to iommu=smmuv3', ['run', '--', '-M', 'virt,iommu=smmuv3', '-device', 'arm-smmuv3,primary-bus=pcie.0'], /: virt machine already has iommu=smmuv3 set\. Doesn't support incompatible iommus$/],
    [
      'vfio-pci behind an emulated SMMUv3',
      ['run', '--', '-object', 'iommufd,id=iommufd0', '-device', 'arm-smmuv3,primary-bus=pcie.0', '-device', 'vfio-pci,host=0009:01:00.0,iommufd=iommufd0'],
      /-device vfio-pci,host=0009:01:00\.0: vfio 0009:01:00\.0: memory listener initialization failed: Region smmuv3-iommu-memory-region-0-\d+: device 00\.0\d\.0 requires iommu MAP notifier which is not currently supported$/,
    ],
    [
      'vfio-pci behind the machine-wide SMMUv3',
      ['run', '--', '-M', 'virt,iommu=smmuv3', '-object', 'iommufd,id=iommufd0', '-device', 'vfio-pci,host=0009:01:00.0,iommufd=iommufd0'],
      /requires iommu MAP notifier which is not currently supported$/,
    ],
  ];
  const own = /^(guest buffers|a guest too small|--trace-out|acpi --out)/;
  for (const [name, argv, re] of cases) test(name, () => oneLine(run(argv), 1, own.test(name) ? CMDQV_OWN : QEMU_LINE, re));
});

describe('workload sizes that fit run', () => {
  test('--batch 4096 --pages 512 with the default 256 ops: only the buffers in use are allocated', () => {
    const r = run(['run', '--batch', '4096', '--pages', '512', '--no-error']);
    assert.equal(r.code, 0, r.err);
    // 256 DMAs landed + every 8th of the 256 unmapped buffers checked (--verify-every default 8).
    assert.match(r.out, /DMA checks: 288 passed, 0 failed/);
  });

  for (const pages of [257, 300, 512]) {
    test(`--pages ${pages} with --batch 2 (buffers larger than 1 MiB get their own IOVA slots)`, () => {
      const r = run(['run', '--ops', '8', '--batch', '2', '--pages', String(pages), '--no-error']);
      assert.equal(r.code, 0, r.err);
      assert.match(r.out, /DMA checks: 9 passed, 0 failed/);
    });
  }
});

describe('usage errors: one line plus usage, exit 2', () => {
  test('--batch 0', () => {
    const r = run(['run', '--batch', '0']);
    assert.equal(r.code, 2);
    assert.match(r.err.split('\n')[0]!, /^cmdqv: --batch must be an integer in 1\.\.4096, got '0'$/);
  });
});
