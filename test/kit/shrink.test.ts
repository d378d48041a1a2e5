import assert from 'node:assert/strict';
import { test } from 'node:test';
import { shrinkList } from '../../src/kit/shrink.js';

test('shrinkList finds the small failing core of a list', () => {
  const items = Array.from({ length: 200 }, (_, i) => i);
  // Fails when it holds 17 and 150, in that order (like a bug needing a setup step then a trigger).
  const fails = (xs: readonly number[]) => xs.indexOf(17) >= 0 && xs.indexOf(150) > xs.indexOf(17);
  assert.deepEqual(shrinkList(items, fails), [17, 150]);
});

test('shrinkList respects its budget and never returns a passing list', () => {
  let calls = 0;
  const fails = (xs: readonly number[]) => {
    calls++;
    return xs.includes(3);
  };
  const out = shrinkList([1, 2, 3, 4, 5, 6, 7, 8], fails, 3);
  assert.ok(calls <= 3);
  assert.ok(out.includes(3));
});
