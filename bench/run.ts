/**
 * `npm run bench [-- --quick]`: runs every benchmark, prints a table and writes
 * bench/results.json. Numbers are for comparison within one run and one machine.
 */

import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { table, type Row } from './harness.js';
import { benchVcmdq } from './vcmdq.bench.js';
import { benchIotlb } from './iotlb.bench.js';

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, out: { type: 'string', default: 'bench/results.json' } } });
  const quick = values.quick === true;
  const rows: Row[] = [];
  rows.push(...benchVcmdq(quick));
  rows.push(...(await benchIotlb({ quick })));
  process.stdout.write(`${table(rows)}\n`);
  writeFileSync(values.out!, `${JSON.stringify({ date: new Date().toISOString(), quick, node: process.version, rows }, null, 2)}\n`);
  process.stdout.write(`wrote ${values.out}\n`);
}

await main();
