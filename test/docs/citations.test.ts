// Every "docs/reference/<page>.md §x" a comment or doc cites names a page and a numbered
// heading that exist, so citations cannot silently rot when the reference pages change.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const REFERENCE = join(ROOT, 'docs', 'reference');

function walk(dir: string, ext: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, ext, out);
    else if (p.endsWith(ext)) out.push(p);
  }
  return out;
}

/** Numbered headings of each reference page: "3.2" for "### 3.2 VCMDQ page0". */
function headings(): Map<string, Set<string>> {
  const pages = new Map<string, Set<string>>();
  for (const file of walk(REFERENCE, '.md')) {
    const numbers = new Set<string>();
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const m = /^#+\s+(\d+(?:\.\d+)*)\.?\s/.exec(line);
      if (m) numbers.add(m[1]!);
    }
    pages.set(relative(REFERENCE, file), numbers);
  }
  return pages;
}

test('every docs/reference citation in src, test, bench and docs names an existing section', () => {
  const pages = headings();
  assert.ok(pages.size >= 5, 'the reference pages are present');
  const sources = [
    ...walk(join(ROOT, 'src'), '.ts'),
    ...walk(join(ROOT, 'test'), '.ts'),
    ...walk(join(ROOT, 'bench'), '.ts'),
    ...walk(join(ROOT, 'docs'), '.md'),
  ];
  const broken: string[] = [];
  let cited = 0;
  for (const file of sources) {
    readFileSync(file, 'utf8').split('\n').forEach((line, i) => {
      for (const m of line.matchAll(/(?:docs\/reference\/)?([a-z0-9-]+\.md) (§[\d.–, §]+)/g)) {
        const numbers = pages.get(m[1]!);
        if (!numbers) continue; // another document (design.md, a spec outside the project)
        for (const section of m[2]!.match(/\d+(?:\.\d+)*/g) ?? []) {
          cited++;
          if (!numbers.has(section)) broken.push(`${relative(ROOT, file)}:${i + 1}: ${m[1]} §${section}`);
        }
      }
    });
  }
  assert.ok(cited > 50, `citations found (${cited})`);
  assert.deepEqual(broken, []);
});
