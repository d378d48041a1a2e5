/**
 * Recording a run (`cmdqv run --record FILE`): the run's description for the header, and the
 * wrapper that finishes the file whether the run ends normally or with an exception.
 */

import { unlinkSync } from 'node:fs';
import type { HostConfig } from '../../host/config.js';
import type { CostModel } from '../cost-model.js';
import type { Machine } from '../machine.js';
import { codeVersion } from './code-version.js';
import type { RunDescription } from './format.js';
import { Recorder, type RecordingSummary } from './recorder.js';

/** What a recorded run is made of (the header's {@link RunDescription}). */
export interface RunToRecord {
  readonly argv: readonly string[];
  readonly host: HostConfig;
  readonly inject: readonly string[];
  readonly costModel: CostModel;
  readonly workload: Readonly<Record<string, unknown>>;
}

/**
 * Create the recording file for `run` (header written); attach it with `Machine.create(..., { attach })`.
 * @param deflate compress the chunks (default)
 */
export function startRecording(file: string, run: RunToRecord, deflate = true): Recorder {
  const desc: RunDescription = {
    format: 'cmdqv-record',
    cmdqv: codeVersion(),
    argv: [...run.argv],
    host: run.host,
    inject: [...run.inject],
    costModel: { ...run.costModel },
    workload: run.workload,
    seeds: [],
    node: process.version,
  };
  return new Recorder(file, desc, deflate);
}

/**
 * Run `body` on `m` while `rec` records, and finish the recording: normally, or marked as
 * stopped by the exception (which is rethrown), so a crash still leaves a file to replay.
 */
export function recordRun<T>(rec: Recorder, m: Machine, body: () => T): { result: T; summary: RecordingSummary } {
  let result: T;
  try {
    result = body();
  } catch (e) {
    rec.finish(m, true);
    throw e;
  }
  return { result, summary: rec.finish(m) };
}

/** The machine could not be built: no run, no recording. */
export function abandonRecording(rec: Recorder): void {
  rec.abandon();
  try {
    unlinkSync(rec.file);
  } catch {
    // already gone
  }
}
