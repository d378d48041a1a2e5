#!/usr/bin/env node
// Entry point of `cmdqv-qemu-system-aarch64`: `cmdqv qemu` under QEMU's binary name, so a
// harness that runs $QTEST_QEMU_BINARY or qemu-system-aarch64 gets cmdqv unchanged.
import { qemuCommand } from './qemu-command.js';

process.exitCode = await qemuCommand(
  process.argv.slice(2),
  (s) => process.stdout.write(`${s}\n`),
  (s) => process.stderr.write(`${s}\n`),
);
