/**
 * A subcommand's arguments as `[own options] [-- QEMU options]`: what every command that builds a
 * machine takes.
 */

import { DEFAULT_ARGS } from '../platform/machine.js';

/** The two halves of a subcommand's arguments. */
export interface CommandLine {
  /** The subcommand's own options (before `--`). */
  readonly own: readonly string[];
  /** The QEMU options after `--`, or the embedded default machine's when there is no `--`. */
  readonly qemu: string[];
  /** Whether a `--` QEMU line was given (even an empty one). */
  readonly qemuGiven: boolean;
}

/** Split `argv` at its first `--`. */
export function splitCommandLine(argv: readonly string[]): CommandLine {
  const split = argv.indexOf('--');
  if (split < 0) return { own: argv, qemu: [...DEFAULT_ARGS], qemuGiven: false };
  return { own: argv.slice(0, split), qemu: argv.slice(split + 1), qemuGiven: true };
}
