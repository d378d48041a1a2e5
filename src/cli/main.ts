/**
 * The `cmdqv` command line.
 */

import { parseArgs } from 'node:util';
import { OptionError } from '../platform/machine.js';
import { WorkloadError } from '../platform/workload.js';
import { CliError } from './output-file.js';
import { ACPI_USAGE, acpiCommand } from './acpi-command.js';
import { DIFFTEST_USAGE, difftestCommand } from './difftest-command.js';
import { FUZZ_USAGE, fuzzCommand } from './fuzz-command.js';
import { MIGRATE_USAGE, migrateCommand } from './migrate-command.js';
import { QEMU_USAGE, qemuCommand } from './qemu-command.js';
import { RUN_USAGE, runCommand } from './run-command.js';
import { REPLAY_USAGE, replayCommand } from './replay-command.js';
import { SERVE_USAGE, serveCommand } from './serve-command.js';
import { runUapiCommand, UAPI_USAGE } from './uapi-command.js';
import { UsageError } from './usage-error.js';

export { UsageError };

/** The program name QEMU prefixes its errors with. */
const QEMU_PROGRAM = 'qemu-system-aarch64';

const USAGE = `usage: cmdqv <command> [options]

commands:
  run [options] [-- QEMU options]
                  boot the machine, run the guest workload and report (the main job)
  replay FILE [--context N]
                  reproduce a run recorded with \`run --record FILE\`; report the first divergence
  acpi [--out DIR] [-- QEMU options]
                  write the machine's IORT.dat and DSDT.dat (for iasl -d)
  uapi [--json]   print every iommufd uAPI struct layout, ioctl number and enum value
  fuzz [options] [-- QEMU options]
                  a seeded campaign of hostile guest operations and uAPI calls; --replay FILE
  difftest [--seeds N] [--seed S] [--steps K] [--qemu PATH]
                  compare the emulated SMMUv3 with QEMU 11.1's on seeded qtest sequences
  serve [--port N] [run options] [-- QEMU options]
                  a web view of the machine on http://127.0.0.1:PORT/ (Ctrl-C stops it)
  qemu [QEMU options]
                  a drop-in qemu-system-aarch64: serves qtest (-qtest) and QMP (-qmp)
  migrate [options] [-- QEMU options]
                  migrate the running VM live to a second host: rounds, downtime, re-created objects
  help            show this text

Every command answers --help.

${RUN_USAGE}
`;

/** Each subcommand's own usage text (`cmdqv <command> --help`). */
const COMMAND_USAGE: Readonly<Record<string, string>> = { run: RUN_USAGE, replay: REPLAY_USAGE, acpi: ACPI_USAGE, uapi: UAPI_USAGE, fuzz: FUZZ_USAGE, migrate: MIGRATE_USAGE, difftest: DIFFTEST_USAGE, serve: SERVE_USAGE, qemu: QEMU_USAGE, help: USAGE };

/** Whether the subcommand's own options (before any `--`) ask for help. */
function wantsHelp(args: readonly string[]): boolean {
  const split = args.indexOf('--');
  return (split >= 0 ? args.slice(0, split) : args).some((a) => a === '--help' || a === '-h');
}

/**
 * Run the CLI, including the commands that run asynchronously (`fuzz` uses worker threads);
 * returns the exit status.
 */
export async function runCli(argv: readonly string[], out: (s: string) => void, err: (s: string) => void): Promise<number> {
  const [command, ...rest] = argv;
  // The drop-in takes QEMU's options as they are: every argument is QEMU's.
  if (command === 'qemu') return qemuCommand(rest, out, err);
  if ((command !== 'fuzz' && command !== 'difftest' && command !== 'serve') || wantsHelp(rest)) return main(argv, out, err);
  try {
    if (command === 'serve') return await serveCommand(rest, out, err);
    const result = command === 'fuzz' ? await fuzzCommand(rest, err) : await difftestCommand(rest, err);
    out(result.text);
    return result.status;
  } catch (e) {
    return reportError(e, err);
  }
}

/** Run the CLI with `argv` (without node and script); returns the exit status. */
export function main(argv: readonly string[], out: (s: string) => void, err: (s: string) => void): number {
  const [command, ...rest] = argv;
  const usage = command === undefined ? undefined : COMMAND_USAGE[command];
  if (usage !== undefined && wantsHelp(rest)) {
    out(usage);
    return 0;
  }
  try {
    switch (command) {
      case 'run':
        out(runCommand(rest, err));
        return 0;
      case 'replay': {
        const r = replayCommand(rest);
        out(r.text);
        return r.status;
      }
      case 'acpi':
        out(acpiCommand(rest, err));
        return 0;
      case 'migrate': {
        const r = migrateCommand(rest);
        out(r.text);
        return r.status;
      }
      case 'uapi': {
        const { values } = parseArgs({ args: [...rest], options: { json: { type: 'boolean', default: false } }, strict: true });
        out(runUapiCommand(values.json === true));
        return 0;
      }
      case 'fuzz':
      case 'difftest':
      case 'serve':
      case 'qemu':
        throw new UsageError(`${command} runs asynchronously: call runCli (the cmdqv binary does)`);
      case 'help':
      case '--help':
      case '-h':
        out(USAGE);
        return 0;
      case undefined:
        err(USAGE);
        return 2;
      default:
        throw new UsageError(`unknown command '${command}'`);
    }
  } catch (e) {
    return reportError(e, err);
  }
}

/** One line naming the problem and the exit status: 1 for bad input, 2 for bad usage. */
function reportError(e: unknown, err: (s: string) => void): number {
  if (e instanceof OptionError) {
    // An error in the QEMU command line reads as QEMU prints it: its program name, the option
    // (where QEMU names one) and the problem; exit status 1 (docs/reference/qemu-machine.md §5).
    err(`${QEMU_PROGRAM}: ${e.message}`);
    return 1;
  }
  if (e instanceof CliError) {
    err(`cmdqv: ${e.message}`);
    return 1;
  }
  if (e instanceof WorkloadError) {
    err(`cmdqv: workload: ${e.message}`);
    return 1;
  }
  if (e instanceof UsageError || (e instanceof TypeError && 'code' in e && String(e.code).startsWith('ERR_PARSE_ARGS'))) {
    err(`cmdqv: ${e.message}\n${USAGE}`);
    return 2;
  }
  throw e;
}
