// The comparison and shrinking of `cmdqv difftest`, on scripted answers (no QEMU needed): the
// generator is deterministic, a difference is found at its step, the allow-list skips what it
// documents, and a divergent sequence shrinks to the steps the divergence needs.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { compareAnswers, runSeed, type Answer, type DifftestTargets, type RunTranscript } from '../../src/platform/difftest/compare.js';
import { generateSequence, type Step } from '../../src/platform/difftest/generator.js';

const echo: RunTranscript = async (lines) => lines.map((l) => ({ reply: `OK ${l.length}`, irqs: [] }));

describe('cmdqv difftest: comparison and shrinking', () => {
  test('the same seed gives the same sequence; another seed another one', () => {
    assert.deepEqual(generateSequence(5, 40), generateSequence(5, 40));
    assert.notDeepEqual(generateSequence(5, 40).steps, generateSequence(6, 40).steps);
  });

  test('an extra IRQ line is a divergence at its step; equal answers are none', () => {
    const steps: Step[] = [{ what: 'a', lines: ['readl 0x10'] }, { what: 'b', lines: ['readl 0x20', 'readl 0x24'] }];
    const same: Answer[] = [{ reply: 'OK 0x1', irqs: [] }, { reply: 'OK 0x2', irqs: [] }, { reply: 'OK 0x3', irqs: [] }];
    assert.equal(compareAnswers([], steps, same, same).divergence, undefined);
    const other = same.map((a, i) => (i === 2 ? { reply: a.reply, irqs: ['IRQ raise 74'] } : a));
    const d = compareAnswers([], steps, same, other).divergence;
    assert.deepEqual(d, { step: 1, request: 'readl 0x24', qemu: 'OK 0x3', cmdqv: 'OK 0x3 [IRQ raise 74]' });
  });

  test('the allow-list: reserved bits of an SMMU register (CR2) are not a divergence, other bits are', () => {
    const steps: Step[] = [{ what: 'r', lines: ['readl 0x905002c'] }];
    const q: Answer[] = [{ reply: 'OK 0x00000000c7305757', irqs: [] }];
    const masked = compareAnswers([], steps, q, [{ reply: 'OK 0x0000000000000007', irqs: [] }]);
    assert.equal(masked.divergence, undefined);
    assert.equal(masked.allowed.get('smmu-reserved-bits'), 1);
    assert.ok(compareAnswers([], steps, q, [{ reply: 'OK 0x0000000000000006', irqs: [] }]).divergence);
  });

  test('a divergence shrinks to the steps it needs and is reported at its step', async () => {
    const seq = generateSequence(3, 30);
    const trigger = seq.steps[20]!.lines[0]!;
    // "cmdqv" differs on the trigger's request only after step 4's first request was sent.
    const needs = seq.steps[4]!.lines[0]!;
    const cmdqv: RunTranscript = async (lines) => {
      const armed = lines.indexOf(needs);
      return lines.map((l, i) => ({ reply: armed >= 0 && i > armed && l === trigger ? 'OK different' : `OK ${l.length}`, irqs: [] }));
    };
    const targets: DifftestTargets = { qemu: echo, cmdqv };
    const r = await runSeed(targets, 3, 30, 100);
    assert.ok(r.finding, 'found');
    assert.ok(r.finding.steps.length <= 3, `shrunk to ${r.finding.steps.length} steps`);
    assert.equal(r.finding.divergence.request, trigger);
    assert.ok(r.finding.steps.some((s) => s.lines.includes(needs)), 'the step it needs is kept');
  });
});
