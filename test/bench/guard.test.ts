// The quick bench's regression guard (issue 16): the comparison logic on fabricated rows — which
// rows count, which way is slower, the 3x limit and per-row allowances, a second run's better
// result, the baseline a refresh writes, and the table. Nothing here is timed.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { bestOf, bestRows, compareRows, DEFAULT_FACTOR, direction, formatVerdicts, makeBaseline, type Baseline } from '../../bench/guard.js';
import type { Row } from '../../bench/harness.js';

const rate = (name: string, value: number, max?: number): Row => ({ name, value, unit: 'op/s', ...(max !== undefined ? { min: value / 2, max } : {}) });
const time = (name: string, value: number, min?: number): Row => ({ name, value, unit: 'ns', ...(min !== undefined ? { min, max: value * 2 } : {}) });

function baseline(rows: Row[], allowances: Record<string, number> = {}): Baseline {
  return { machine: 'test CPU x2', date: '2026-01-01', how: '', factor: DEFAULT_FACTOR, allowances, rows };
}

describe('bench guard: comparing rows with the quick baseline', () => {
  test('rates: lower is slower; times: higher is slower; counts and ratios are not compared', () => {
    assert.equal(direction('cmd/s'), 1);
    assert.equal(direction('op/s'), 1);
    assert.equal(direction('ns'), -1);
    for (const u of ['', 'x', '% less']) assert.equal(direction(u), 0);
    const base = baseline([rate('a', 1000), time('t', 100), { name: 'n', value: 5, unit: 'x' }]);
    const v = compareRows([rate('a', 250), time('t', 400), { name: 'n', value: 500, unit: 'x' }], base);
    assert.deepEqual(v.map((x) => [x.name, x.slower, x.regressed]), [['a', 4, true], ['t', 4, true]]);
  });

  test('the limit is 3x: 2.9x slower passes, 3.1x fails, faster passes', () => {
    const base = baseline([rate('a', 3000), rate('b', 3000), rate('c', 3000), time('t', 100)]);
    const v = compareRows([rate('a', 3000 / 2.9), rate('b', 3000 / 3.1), rate('c', 9000), time('t', 290)], base);
    assert.deepEqual(v.map((x) => x.regressed), [false, true, false, false]);
    assert.ok(v[2]!.slower < 1);
  });

  test('a row\'s best run is compared (max of a rate, min of a time), not its median', () => {
    assert.equal(bestOf(rate('a', 100, 900)), 900);
    assert.equal(bestOf(time('t', 100, 40)), 40);
    const base = baseline([rate('a', 1000, 1000)]);
    // Median 200 (5x slower) but the best run 800: not a cliff.
    assert.equal(compareRows([rate('a', 200, 800)], base)[0]!.regressed, false);
    assert.equal(compareRows([rate('a', 200, 300)], base)[0]!.regressed, true);
  });

  test('per-row allowances: a wider limit, or 0 to leave a row out', () => {
    const base = baseline([rate('noisy', 1000), rate('peer', 1000), rate('plain', 1000)], { noisy: 6, peer: 0 });
    const v = compareRows([rate('noisy', 200), rate('peer', 1), rate('plain', 200)], base);
    assert.deepEqual(v.map((x) => [x.name, x.factor, x.regressed]), [['noisy', 6, false], ['plain', 3, true]]);
  });

  test('rows missing on either side, with another unit, or not finite are left out', () => {
    const base = baseline([rate('a', 1000), rate('b', 1000), rate('c', Number.NaN), { name: 'd', value: 1000, unit: 'cmd/s' }]);
    const v = compareRows([rate('a', 100), rate('new', 1), rate('c', 5), rate('d', 1), rate('b', Number.NaN)], base);
    assert.deepEqual(v.map((x) => x.name), ['a']);
  });

  test('a second run: each row keeps its better result, so one noisy run does not fail', () => {
    const first = [rate('a', 100), rate('b', 900), time('t', 500), { name: 'n', value: 1, unit: 'x' }];
    const second = [rate('a', 800), rate('b', 300), time('t', 120), { name: 'n', value: 9, unit: 'x' }, rate('extra', 5)];
    const best = bestRows(first, second);
    assert.deepEqual(best.map((r) => [r.name, r.value]), [['a', 800], ['b', 900], ['t', 120], ['n', 1], ['extra', 5]]);
    const base = baseline([rate('a', 1000), rate('b', 1000), time('t', 100)]);
    assert.equal(compareRows(first, base).filter((v) => v.regressed).length, 2);
    assert.equal(compareRows(best, base).filter((v) => v.regressed).length, 0);
  });

  test('a refreshed baseline: each row\'s median run, only speed rows, the machine kind, kept and automatic allowances', () => {
    const prev = baseline([], { noisy: 5 });
    const runs = [
      { rows: [rate('a', 100), time('t', 300), rate('noisy', 10), rate('wild', 1), { name: 'n', value: 1, unit: '' }] },
      { rows: [rate('a', 400), time('t', 200), rate('noisy', 100), rate('wild', 50)] },
      { rows: [rate('a', 300), time('t', 250), rate('noisy', 50), rate('wild', 2)] },
    ];
    const b = makeBaseline(runs, prev, 'X x2', 'today');
    assert.equal(b.machine, 'X x2');
    assert.deepEqual(b.rows.map((r) => [r.name, r.value]), [['a', 300], ['t', 250], ['noisy', 50], ['wild', 2]]);
    // The slowest 'a' is 3x below the median: 1.5 x 3 = 4.5 → 5; 'wild' 2x → 3, not above the
    // factor; 'noisy' keeps the hand-written 5.
    assert.deepEqual(b.allowances, { a: 5, noisy: 5 });
    assert.match(b.allowanceNotes!.a!, /slowest of the 3 baseline runs was 3\.0x slower than their median/);
    const wild = makeBaseline([{ rows: [rate('w', 1)] }, { rows: [rate('w', 100)] }, { rows: [rate('w', 200)] }], undefined, 'X x2', 'today');
    assert.deepEqual(wild.allowances, { w: 10 }, 'capped');
    // Two runs: the slower one.
    assert.equal(makeBaseline(runs.slice(0, 2), undefined, 'X x2', 'today').rows[0]!.value, 100);
  });

  test('the table names each row, both figures, how much slower, the limit and the verdict', () => {
    const v = compareRows([rate('3. guest loop', 100), time('4. iotlb', 50)], baseline([rate('3. guest loop', 1000), time('4. iotlb', 100)]));
    const t = formatVerdicts(v).split('\n');
    assert.match(t[0]!, /row\s+baseline\s+now\s+slower\s+limit\s+verdict/);
    assert.match(t[1]!, /^3\. guest loop\s+1\.00 kop\/s\s+100\.00op\/s\s+10\.00x\s+3x\s+REGRESSED$/);
    assert.match(t[2]!, /^4\. iotlb\s+100\.00ns\s+50\.00ns\s+0\.50x\s+3x\s+ok$/);
  });
});
