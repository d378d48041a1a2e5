// The IOTLB's hash table against a Map, through growth, backward-shift deletion and shrinking.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IdTable, NONE } from '../../../src/host/smmuv3/id-table.js';
import { mulberry32 } from '../../../src/kit/prng.js';

test('IdTable agrees with a Map over random inserts, replacements and deletions', () => {
  const table = new IdTable();
  const model = new Map<string, number>();
  const random = mulberry32(7);
  // Few distinct keys, so that probe runs collide and deletions shift neighbours. The high half
  // of a page number is never negative (-1 marks an empty slot); the low half may be.
  const key = () => [Math.floor(random() * 4), Math.floor(random() * 600) - 300] as const;
  for (let step = 0; step < 20_000; step++) {
    const [hi, lo] = key();
    const name = `${hi}:${lo}`;
    if (random() < 0.55) {
      table.set(hi, lo, step);
      model.set(name, step);
    } else if (model.has(name)) {
      table.delete(hi, lo);
      model.delete(name);
    }
    assert.equal(table.count, model.size);
  }
  for (let hi = 0; hi < 4; hi++) {
    for (let lo = -300; lo < 300; lo++) assert.equal(table.get(hi, lo), model.get(`${hi}:${lo}`) ?? NONE, `${hi}:${lo}`);
  }
  const ids: number[] = [];
  for (let i = 0; i < table.capacity; i++) if (table.idAt(i) !== NONE) ids.push(table.idAt(i));
  assert.deepEqual(ids.sort((a, b) => a - b), [...model.values()].sort((a, b) => a - b));
});

test('an emptied IdTable shrinks back', () => {
  const table = new IdTable();
  for (let lo = 0; lo < 1000; lo++) table.set(0, lo, lo);
  const grown = table.capacity;
  for (let lo = 0; lo < 1000; lo++) table.delete(0, lo);
  assert.equal(table.count, 0);
  assert.ok(table.capacity < grown / 8, `capacity ${table.capacity} after ${grown}`);
  assert.equal(table.get(0, 5), NONE);
});
