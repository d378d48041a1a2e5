// The CPU-profile summariser (issue 16): self and inclusive time by function, recursion counted
// once, the focus filter, on a fabricated profile. Nothing here is timed.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { formatSummary, summariseProfile, type CpuProfile } from '../../bench/profile-summary.js';

const frame = (functionName: string, lineNumber = 0) => ({ functionName, url: 'file:///x/dist/src/kit/f.js', lineNumber });

// root → main → batch → walk → walk (recursion); main → idle-ish work outside batch.
const profile: CpuProfile = {
  nodes: [
    { id: 1, callFrame: frame('(root)'), children: [2] },
    { id: 2, callFrame: frame('main', 9), children: [3, 6] },
    { id: 3, callFrame: frame('batch', 19), children: [4] },
    { id: 4, callFrame: frame('walk', 29), children: [5] },
    { id: 5, callFrame: frame('walk', 29) },
    { id: 6, callFrame: frame('load', 39) },
  ],
  // 10 samples over 10 ms: walk (deep) 4, walk (outer) 2, batch 1, load 3.
  samples: [5, 5, 5, 5, 4, 4, 3, 6, 6, 6],
  startTime: 0,
  endTime: 10_000,
};

describe('profile summary', () => {
  test('self time per function, recursive frames merged; inclusive counts a function once per sample', () => {
    const s = summariseProfile(profile);
    assert.equal(s.samples, 10);
    assert.equal(s.ms, 10);
    assert.deepEqual(
      s.self.map((l) => [l.fn, l.samples]),
      [['walk kit/f.js:30', 6], ['load kit/f.js:40', 3], ['batch kit/f.js:20', 1]],
    );
    const incl = new Map(s.inclusive.map((l) => [l.fn, l.samples]));
    assert.equal(incl.get('walk kit/f.js:30'), 6, 'the recursive walk is not counted twice');
    assert.equal(incl.get('batch kit/f.js:20'), 7);
    assert.equal(incl.get('main kit/f.js:10'), 10);
    assert.equal(s.self[0]!.percent, 60);
    assert.equal(s.self[0]!.ms, 6);
  });

  test('--focus keeps only the samples under that function; --top cuts the lists', () => {
    const s = summariseProfile(profile, { focus: 'batch', top: 2 });
    assert.equal(s.focused, 7);
    assert.equal(s.self.length, 2);
    assert.ok(!s.self.some((l) => l.fn.startsWith('load')));
    assert.match(formatSummary(s, 'batch'), /7 under batch/);
  });
});
