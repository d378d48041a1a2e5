/**
 * Files the CLI writes (trace JSON, ACPI tables): a path that cannot be written is the user's
 * error, reported as one line naming the option, the path and the system's reason.
 */

import { closeSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';

/** A user error that is not a usage error: printed as one line, exit status 1. */
export class CliError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CliError';
  }
}

/** Run a file-system operation; a system error becomes a {@link CliError} naming `option path`. */
function fsCall<T>(option: string, path: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof Error && 'code' in e) throw new CliError(`${option} ${path}: ${e.message}`);
    throw e;
  }
}

/** Create (or truncate) `path` now, so an unusable path fails before any work is done. */
export function checkWritable(option: string, path: string): void {
  fsCall(option, path, () => closeSync(openSync(path, 'w')));
}

/** Write `data` to `path`. */
export function writeOutput(option: string, path: string, data: string | Uint8Array): void {
  fsCall(option, path, () => writeFileSync(path, data));
}

/** Create directory `path` (and its parents). */
export function makeDir(option: string, path: string): void {
  fsCall(option, path, () => mkdirSync(path, { recursive: true }));
}

/** A file written incrementally (a streamed trace): `write` appends, `close` ends it. */
export interface StreamedOutput {
  write(chunk: string): void;
  close(): void;
}

/** Open `path` for incremental writing (created or truncated now). */
export function openStreamedOutput(option: string, path: string): StreamedOutput {
  const fd = fsCall(option, path, () => openSync(path, 'w'));
  return {
    write: (chunk) => fsCall(option, path, () => void writeSync(fd, chunk)),
    close: () => fsCall(option, path, () => closeSync(fd)),
  };
}
