/**
 * "Same client, same script": QEMU's peer script (shared/peers/qemu_smmuv3_cmdq_bench.py, which
 * runs `qemu-system-aarch64` from PATH and times the emulated SMMUv3's command queue over qtest)
 * run unchanged, alternately against cmdqv's drop-in and against QEMU, through a directory put
 * first on PATH that holds a `qemu-system-aarch64` shim for each side.
 */

import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { si, type Row } from './harness.js';

/** Path of QEMU's peer script (shared/ beside the repository or one of its parents), if present. */
export function peerScript(from = process.cwd()): string | undefined {
  for (let d = from; ; d = dirname(d)) {
    const p = join(d, '..', 'shared', 'peers', 'qemu_smmuv3_cmdq_bench.py');
    if (existsSync(p)) return p;
    if (dirname(d) === d) return undefined;
  }
}

/** cmdqv's drop-in entry point (dist/src/cli/qemu-bin.js), found from this compiled file. */
export const CMDQV_QEMU_BIN = fileURLToPath(new URL('../src/cli/qemu-bin.js', import.meta.url));

/** A fresh directory holding an executable `qemu-system-aarch64` that execs `argv` with its arguments. */
export function shimDir(argv: readonly string[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'cmdqv-shim-'));
  const quoted = argv.map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ');
  const shim = join(dir, 'qemu-system-aarch64');
  writeFileSync(shim, `#!/bin/sh\nexec ${quoted} "$@"\n`);
  chmodSync(shim, 0o755);
  return dir;
}

/** Whether python3 runs. */
export function hasPython(): boolean {
  return spawnSync('python3', ['--version'], { encoding: 'utf8' }).status === 0;
}

/** One run of the peer script with `dir` first on PATH: its last line and the rate it printed. */
export interface PeerRun {
  readonly status: number | null;
  readonly lastLine: string;
  /** Commands per second, NaN when the script printed none. */
  readonly rate: number;
  readonly output: string;
}

export function runPeer(script: string, dir: string, log2: number): PeerRun {
  const p = spawnSync('python3', [script, String(log2)], {
    encoding: 'utf8',
    timeout: 600_000,
    env: { ...process.env, PATH: `${dir}${delimiter}${process.env.PATH ?? ''}` },
  });
  const output = `${p.stdout ?? ''}${p.stderr ?? ''}`;
  const lines = (p.stdout ?? '').trim().split('\n');
  const m = /-> ([\d.]+) M cmds\/s/.exec(p.stdout ?? '');
  return { status: p.status, lastLine: lines.at(-1) ?? '', rate: m ? Number(m[1]) * 1e6 : Number.NaN, output };
}

/**
 * The QEMU to compare with, first that runs: $CMDQV_QEMU, the qemu-unstable wrapper's cache,
 * then qemu-system-aarch64 on PATH. Its path and first version line, or why there is none.
 */
export function findPeerQemu(): { path: string; version: string } | { missing: string } {
  const onPath = spawnSync('sh', ['-c', 'command -v qemu-system-aarch64'], { encoding: 'utf8' }).stdout.trim();
  const candidates = [process.env.CMDQV_QEMU, join(homedir(), '.cache', 'qemu-unstable', 'qemu-system-aarch64'), onPath];
  for (const c of candidates) {
    if (!c || !existsSync(c)) continue;
    const v = spawnSync(c, ['--version'], { encoding: 'utf8', timeout: 10_000 });
    if (v.status === 0) return { path: c, version: v.stdout.split('\n')[0]!.replace(/^QEMU emulator version /, '') };
  }
  return { missing: 'no QEMU: CMDQV_QEMU unset, no ~/.cache/qemu-unstable/qemu-system-aarch64, no qemu-system-aarch64 on PATH' };
}

const ROW = '9. same client, same script: cmdqv vs QEMU';

/**
 * Row 9: the peer script alternately against cmdqv (drop-in through a shim) and QEMU, `pairs`
 * pairs, each pair's two rates and their ratio.
 */
export function benchSameScript(quick: boolean): Row[] {
  const script = peerScript();
  if (!script) return [{ name: ROW, value: Number.NaN, unit: '', note: 'peer script shared/peers/qemu_smmuv3_cmdq_bench.py not found' }];
  if (!hasPython()) return [{ name: ROW, value: Number.NaN, unit: '', note: 'python3 not installed' }];
  const qemu = findPeerQemu();
  if ('missing' in qemu) return [{ name: ROW, value: Number.NaN, unit: '', note: qemu.missing }];
  const log2 = quick ? 10 : 17;
  const pairs = quick ? 1 : 5;
  const cmdqvDir = shimDir([process.execPath, CMDQV_QEMU_BIN]);
  const qemuDir = shimDir([qemu.path]);
  const rows: Row[] = [];
  for (let k = 0; k < pairs; k++) {
    const c = runPeer(script, cmdqvDir, log2);
    const q = runPeer(script, qemuDir, log2);
    const bad = [c, q].find((r) => !r.lastLine.endsWith(' ok'));
    if (bad) return [...rows, { name: `${ROW}, pair ${k + 1}`, value: Number.NaN, unit: '', note: `peer failed: ${bad.output.trim().slice(-200)}` }];
    rows.push({
      name: `${ROW}, pair ${k + 1}`,
      value: c.rate,
      unit: 'cmd/s',
      note: `cmdqv ${si(c.rate)}cmd/s, QEMU ${si(q.rate)}cmd/s, cmdqv/QEMU = ${(c.rate / q.rate).toFixed(2)}x (2^${log2}-1 commands; QEMU ${qemu.version})`,
    });
  }
  return rows;
}
