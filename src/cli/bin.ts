#!/usr/bin/env node
// Entry point of the `cmdqv` binary; the logic lives in main.ts so tests can call it.
import { runCli } from './main.js';

process.exitCode = await runCli(
  process.argv.slice(2),
  (s) => process.stdout.write(`${s}\n`),
  (s) => process.stderr.write(`${s}\n`),
);
