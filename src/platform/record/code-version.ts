/**
 * Which code made a recording: the package version and, when the program runs from a git
 * checkout, the commit (read from `.git` as files: nothing is spawned). Informational: replay
 * says when it runs other code than the recording's, and reproduces the run anyway.
 */

import { readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root: the nearest directory above this module with a package.json named cmdqv. */
function packageRoot(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string };
      if (pkg.name === 'cmdqv') return dir;
    } catch {
      // not here: go up
    }
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
  return undefined;
}

/** The commit HEAD names in the git directory `gitDir` (a worktree's `.git` file points to it). */
function gitCommit(root: string): string | undefined {
  try {
    let gitDir = join(root, '.git');
    if (statSync(gitDir).isFile()) gitDir = resolve(root, readFileSync(gitDir, 'utf8').replace(/^gitdir:\s*/, '').trim());
    const head = readFileSync(join(gitDir, 'HEAD'), 'utf8').trim();
    if (!head.startsWith('ref: ')) return head;
    const ref = head.slice(5);
    // A worktree keeps its HEAD but shares refs with the main repository (commondir).
    const dirs = [gitDir];
    try {
      dirs.push(resolve(gitDir, readFileSync(join(gitDir, 'commondir'), 'utf8').trim()));
    } catch {
      // not a worktree
    }
    for (const d of dirs) {
      try {
        return readFileSync(join(d, ref), 'utf8').trim();
      } catch {
        // try packed-refs below
      }
      try {
        const line = readFileSync(join(d, 'packed-refs'), 'utf8').split('\n').find((l) => l.endsWith(` ${ref}`));
        if (line) return line.split(' ')[0];
      } catch {
        // none
      }
    }
  } catch {
    // not a git checkout
  }
  return undefined;
}

let cached: { version: string; commit?: string } | undefined;

/** The running code's version (cached). */
export function codeVersion(): { version: string; commit?: string } {
  if (cached) return cached;
  const root = packageRoot();
  let version = 'unknown';
  if (root) {
    try {
      version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;
    } catch {
      // keep unknown
    }
  }
  const commit = root ? gitCommit(root) : undefined;
  cached = commit ? { version, commit } : { version };
  return cached;
}
