// `cmdqv difftest` against QEMU 11.1: a few seeds of generated qtest sequences for the emulated
// SMMUv3 and the iommu-testdev run on QEMU and on cmdqv's drop-in (both spawned), every reply and
// IRQ line compared; no divergence outside the documented allow-list. Skips without QEMU 11.1.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { difftestTargets } from '../../src/cli/difftest-command.js';
import { describeFinding, runSeed } from '../../src/platform/difftest/compare.js';
import { NO_QEMU, QEMU } from './qtest-client.js';

/** Seeds that found real differences while the campaign was built (now fixed), and a few more. */
const SEEDS = [2, 7, 13, 21, 28, 96, 109, 150];

describe('cmdqv difftest: the emulated SMMUv3 + iommu-testdev against QEMU 11.1', { skip: NO_QEMU }, () => {
  test(`seeds ${SEEDS.join(', ')}: no divergence`, { timeout: 300_000 }, async () => {
    const targets = difftestTargets(QEMU!);
    const results = await Promise.all(SEEDS.map((s) => runSeed(targets, s, 60, 10)));
    const findings = results.filter((r) => r.finding).map(describeFinding);
    assert.deepEqual(findings, []);
    assert.ok(results.every((r) => r.requests > 60), 'every sequence ran past its setup');
  });
});
