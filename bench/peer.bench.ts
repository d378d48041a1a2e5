/**
 * Row 6: QEMU's emulated SMMUv3 consuming its command queue (shared/peers/qemu_smmuv3_cmdq_bench.py),
 * each run paired with rows 1 and 2 run moments later.
 */

import { si, type Row } from './harness.js';
import { findPeerQemu, hasPython, peerScript, runPeer, shimDir } from './same-script.bench.js';
import { benchTrapped, benchVcmdq } from './vcmdq.bench.js';

/**
 * Row 6: QEMU's emulated SMMUv3 on row 1's workload, alternating with rows 1 and 2 so that each
 * ratio compares runs made moments apart (single runs vary by tens of percent on a shared VM).
 * The QEMU is the current one where it can be found (findPeerQemu: $CMDQV_QEMU, the
 * qemu-unstable cache, then PATH — Debian 12's 7.2); each row's note names its version.
 */
export function benchPeer(quick: boolean): Row[] {
  const name = '6. QEMU emulated SMMUv3 (peer)';
  const script = peerScript();
  if (!script) return [{ name, value: Number.NaN, unit: '', note: 'peer script shared/peers/qemu_smmuv3_cmdq_bench.py not found' }];
  if (!hasPython()) return [{ name, value: Number.NaN, unit: '', note: 'python3 not installed' }];
  const qemu = findPeerQemu();
  if ('missing' in qemu) return [{ name, value: Number.NaN, unit: '', note: qemu.missing }];
  const dir = shimDir([qemu.path]);
  const log2 = quick ? 14 : 19;
  const rows: Row[] = [];
  for (let k = 0; k < (quick ? 1 : 5); k++) {
    const peer = runPeer(script, dir, log2);
    if (!Number.isFinite(peer.rate) || !peer.lastLine.endsWith(' ok')) return [...rows, { name, value: Number.NaN, unit: '', note: `peer failed (QEMU ${qemu.version}): ${peer.output.trim().slice(-200)}` }];
    const vcmdq = benchVcmdq(quick).value;
    const trapped = benchTrapped(quick)[0]!.value;
    rows.push({
      name: `6. QEMU SMMUv3 CMDQ, pair ${k + 1}`,
      value: peer.rate,
      unit: 'cmd/s',
      note: `row 1/QEMU = ${(vcmdq / peer.rate).toFixed(2)}x, row 2/QEMU = ${(trapped / peer.rate).toFixed(2)}x (row 1 ${si(vcmdq)}cmd/s, row 2 ${si(trapped)}cmd/s; QEMU ${qemu.version})`,
    });
  }
  return rows;
}
