// The layer rules are enforced by the linter: a planted cross-layer import in each folder fails
// `npm run lint`, and the imports each layer is allowed pass.
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';

/** Repository root (this file runs from dist/test/lint). */
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** [file the import is planted in, import specifier, whether the rules must refuse it]. */
const CASES: readonly (readonly [string, string, boolean])[] = [
  ['src/vmm/virt/planted.ts', '../../host/kernel/process.js', true],
  ['src/vmm/backends/planted.ts', '../../guest/kernel.js', true],
  ['src/vmm/planted.ts', '../platform/machine.js', true],
  ['src/vmm/virt/planted.ts', '../../uapi/syscalls.js', false],
  ['src/vmm/virt/planted.ts', '../../arch/smmuv3/commands.js', false],
  ['src/guest/planted.ts', '../host/config.js', true],
  ['src/guest/planted.ts', '../uapi/iommufd.js', true],
  ['src/guest/planted.ts', '../vmm/virt/machine.js', true],
  ['src/guest/planted.ts', '../kit/guest-seam.js', false],
  ['src/host/kernel/planted.ts', '../../vmm/backends/iommufd.js', true],
  ['src/host/kernel/planted.ts', '../../guest/kernel.js', true],
  ['src/host/kernel/planted.ts', '../../uapi/syscalls.js', false],
  ['src/uapi/planted.ts', '../host/kernel/process.js', true],
  ['src/uapi/planted.ts', '../vmm/main-loop.js', true],
  ['src/uapi/planted.ts', '../kit/memory-region.js', false],
  ['src/arch/smmuv3/planted.ts', '../../uapi/errno.js', true],
  ['src/arch/smmuv3/planted.ts', '../../host/config.js', true],
  ['src/arch/smmuv3/planted.ts', '../../kit/registers.js', false],
  ['src/kit/planted.ts', '../arch/smmuv3/commands.js', true],
  ['src/kit/planted.ts', '../uapi/errno.js', true],
  ['src/kit/planted.ts', './registers.js', false],
  ['src/cli/planted.ts', '../host/config.js', true],
  ['src/cli/planted.ts', '../vmm/virt/options.js', true],
  ['src/cli/planted.ts', '../platform/machine.js', false],
  ['src/serve/planted.ts', '../host/config.js', true],
  ['src/serve/planted.ts', '../vmm/virt/machine.js', true],
  ['src/serve/planted.ts', '../cli/run-command.js', true],
  ['src/serve/planted.ts', '../platform/machine.js', false],
  ['src/serve/planted.ts', '../arch/smmuv3/registers.js', false],
  ['src/guest/planted.ts', '../serve/session.js', true],
  ['web/planted.ts', '../src/platform/machine.js', true],
  ['web/planted.ts', '../src/serve/session.js', true],
  ['web/planted.ts', 'node:fs', true],
  ['web/planted.ts', '../src/serve/api.js', false],
  ['web/planted.ts', './dom.js', false],
  ['src/platform/planted.ts', '../host/config.js', false],
  ['src/platform/planted.ts', '../vmm/virt/machine.js', false],
];

test('a planted cross-layer import fails lint; allowed imports pass', async () => {
  const eslint = new ESLint({ cwd: ROOT });
  for (const [file, spec, refused] of CASES) {
    const [result] = await eslint.lintText(`import * as planted from '${spec}';\nexport const probe = planted;\n`, { filePath: join(ROOT, file) });
    const layerErrors = result!.messages.filter((m) => m.ruleId === 'no-restricted-imports');
    assert.equal(layerErrors.length, refused ? 1 : 0, `${file} importing ${spec}: ${refused ? 'must be refused' : 'must be allowed'}`);
    if (refused) assert.match(layerErrors[0]!.message, /may not import|imports only src\/kit/);
  }
});

test('the tree as committed passes the layer rules', async () => {
  const eslint = new ESLint({ cwd: ROOT });
  const results = await eslint.lintFiles(['src/**/*.ts', 'web/**/*.ts']);
  const violations = results.flatMap((r) => r.messages.filter((m) => m.ruleId === 'no-restricted-imports').map((m) => `${r.filePath}:${m.line}: ${m.message}`));
  assert.deepEqual(violations, []);
});
