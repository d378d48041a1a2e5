// The peer script shared/peers/qemu_smmuv3_cmdq_bench.py, written for QEMU's qtest, run
// unchanged against cmdqv (issue 12 §4): it starts `qemu-system-aarch64` from PATH with
// `-qtest stdio`, fills a command queue in guest RAM, enables CMDQ, writes CMDQ_PROD once, reads
// CMDQ_CONS and kills the process; its last line ends in `ok` when CONS caught up without error.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { describe, test } from 'node:test';
import { CMDQV_QEMU_BIN, hasPython, peerScript, runPeer, shimDir } from '../../bench/same-script.bench.js';
import { NO_QEMU, QEMU } from '../qemu/qtest-client.js';

const SCRIPT = peerScript();
const SKIP = !SCRIPT ? 'shared/peers/qemu_smmuv3_cmdq_bench.py not found beside the repository' : !hasPython() ? 'python3 not installed' : false;
const LOG2 = 10;
/** 2^10 - 1 commands consumed: CONS index 0x3ff, no wrap, no CERROR. */
const DONE = /cons=0x3ff ok$/;

describe('the peer script, unchanged', { skip: SKIP }, () => {
  test('against cmdqv through a qemu-system-aarch64 shim first on PATH: the queue drains, "ok"', () => {
    const dir = shimDir([process.execPath, CMDQV_QEMU_BIN]);
    try {
      const r = runPeer(SCRIPT!, dir, LOG2);
      assert.equal(r.status, 0, r.output);
      assert.match(r.lastLine, /^qemu smmuv3 cmdq: 1023 cmds opcode=0x12 in /);
      assert.match(r.lastLine, DONE, r.output);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('against QEMU 11.1 the same way: the same last words', { skip: NO_QEMU }, () => {
    const dir = shimDir([QEMU!]);
    try {
      const r = runPeer(SCRIPT!, dir, LOG2);
      assert.match(r.lastLine, DONE, r.output);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
