/**
 * The `cmdqv` command line.
 */

import { parseArgs } from 'node:util';
import { runUapiCommand } from './uapi-command.js';

const USAGE = `usage: cmdqv <command> [options]

commands:
  uapi [--json]   print every iommufd uAPI struct layout, ioctl number and enum value
  help            show this text
`;

/** A user error: printed without a stack trace, exit status 2. */
export class UsageError extends Error {}

/** Run the CLI with `argv` (without node and script); returns the exit status. */
export function main(argv: readonly string[], out: (s: string) => void, err: (s: string) => void): number {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'uapi': {
        const { values } = parseArgs({ args: [...rest], options: { json: { type: 'boolean', default: false } }, strict: true });
        out(runUapiCommand(values.json === true));
        return 0;
      }
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
    if (e instanceof UsageError || (e instanceof TypeError && 'code' in e && String(e.code).startsWith('ERR_PARSE_ARGS'))) {
      err(`cmdqv: ${e.message}\n${USAGE}`);
      return 2;
    }
    throw e;
  }
}
