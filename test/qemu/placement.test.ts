// Accepted placement lines: QEMU 11.1 puts every PCI function where test/qemu/placement-lines.ts
// says (read through ECAM after firmware-style bridge numbering), and prints the same warnings;
// test/vmm/virt/pci-placement.test.ts holds cmdqv to the same table. Skips without QEMU 11.1.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PLACEMENT_LINES } from './placement-lines.js';
import { enumerateBridges, NO_QEMU, QEMU, QtestMachine, rootBuses, scanFunctions } from './qtest-client.js';

describe('accepted placement lines: QEMU 11.1 puts each function where the table says', { skip: NO_QEMU }, () => {
  for (const { line, functions, warnings } of PLACEMENT_LINES) {
    test(line, async () => {
      const args = ['-M', 'virt', ...line.split(' ')];
      const m = await QtestMachine.start(QEMU!, args);
      try {
        const roots = rootBuses(args);
        await enumerateBridges(m, [...new Set(roots)]);
        assert.deepEqual(await scanFunctions(m, roots), functions);
      } finally {
        m.close();
      }
      const stderr = m.stderrText.trim();
      assert.deepEqual(stderr === '' ? [] : stderr.split('\n'), (warnings ?? []).map((w) => `qemu-system-aarch64: ${w}`));
    });
  }
});
