/**
 * `cmdqv replay FILE [--context N] [-- QEMU options]`: rebuild the machine a recording was made
 * on and reproduce the run from the recording alone (no guest driver model), comparing every
 * value the machine returns. Exit status 0 when the run is reproduced bit for bit, 1 at the
 * first divergence (reported with the records before it) or for a file that is not a valid
 * recording.
 */

import { parseArgs } from 'node:util';
import { FaultSpecError } from '../platform/fault-injection.js';
import { OptionError } from '../platform/machine.js';
import { RecordingFormatError } from '../platform/record/format.js';
import { replayRecording, versionNote, type ReplayResult } from '../platform/record/replayer.js';
import { CliError } from './output-file.js';
import { UsageError } from './usage-error.js';
import { splitCommandLine } from './command-line.js';

export const REPLAY_USAGE = `usage: cmdqv replay FILE [--context N] [-- QEMU options]

Rebuilds the machine recorded by \`cmdqv run --record FILE\` and reproduces the run without the
guest driver: every recorded access is re-issued in order and every value the machine returns
(loads, DMA outcomes, interrupt level changes, modelled time, final counters) is compared with
the recording. Exit status 0: reproduced bit for bit (one summary line). Exit status 1: the first
divergence — record index, modelled time, access, address and register, recorded vs replayed
value, and the --context N records before it (default 8) — or a file that is not a recording.
-- QEMU options replays on another machine instead of the recorded one (does the run hold there?).`;

/** Run `cmdqv replay`; the text to print and the exit status. */
export function replayCommand(argv: readonly string[]): { text: string; status: number } {
  const { own, qemu, qemuGiven } = splitCommandLine(argv);
  const { values, positionals } = parseArgs({ args: [...own], options: { context: { type: 'string' } }, allowPositionals: true, strict: true });
  if (positionals.length !== 1) throw new UsageError(`replay takes one recording file, got ${positionals.length}`);
  const file = positionals[0]!;
  const context = values.context === undefined ? 8 : Number(values.context);
  if (!Number.isInteger(context) || context < 0 || context > 1000) throw new UsageError(`--context must be an integer in 0..1000, got '${values.context}'`);
  let result: ReplayResult;
  try {
    result = replayRecording(file, { context, ...(qemuGiven ? { argv: qemu } : {}) });
  } catch (e) {
    if (e instanceof RecordingFormatError) throw new CliError(`replay ${file}: ${e.message}`);
    // A machine this code cannot build from the recorded (or given) options.
    if (!qemuGiven && (e instanceof OptionError || e instanceof FaultSpecError)) throw new CliError(`replay ${file}: the recorded machine cannot be built: ${e.message}`);
    throw e;
  }
  return formatReplay(result);
}

/** The replay's outcome as the CLI prints it. */
export function formatReplay(r: ReplayResult): { text: string; status: number } {
  const note = versionNote(r.description);
  const c = r.counts;
  const d = r.divergence;
  if (!d) {
    const what = `${r.records} records (${c.accesses} accesses, ${c.advances} clock advances, ${c.irqLevels} interrupt level changes, ${c.handlers} handler runs, ${c.dmas} DMAs, ${c.counters} counters)`;
    const failed = r.failure ? `; the run stopped as recorded: ${r.failure}` : '';
    return { text: `cmdqv replay: ${r.file}: reproduced bit for bit: ${what}, ${(r.modelNs / 1e6).toFixed(3)} ms modelled${failed}${note ? ` (${note})` : ''}`, status: 0 };
  }
  const L = [`cmdqv replay: ${r.file}: divergence at record ${d.index} (modelled time ${d.timeNs} ns)`];
  L.push(`  ${d.kind}${d.address !== undefined ? ` 0x${d.address.toString(16)}${d.where ? ` (${d.where})` : ''}` : ''}`);
  L.push(`  recorded: ${d.expected}`);
  L.push(`  replayed: ${d.got}`);
  if (d.before.length) {
    L.push(`  the ${d.before.length} records before it:`);
    for (const line of d.before) L.push(`    ${line}`);
  }
  if (note) L.push(`  (${note})`);
  return { text: L.join('\n'), status: 1 };
}

