/**
 * A fuzzing worker thread: runs the cases the campaign sends and answers with each result.
 * Message in: `{ seed, ops, argv, shrink }`; out: `{ seed, ops, ms, finding? }`.
 */

import { parentPort } from 'node:worker_threads';
import { runCase, type CaseKind, type Finding } from './case.js';
import { runIsolationCase } from './isolation.js';
import { runUapiCase } from './uapi.js';

/** A case request. */
export interface CaseRequest {
  readonly kind: CaseKind;
  readonly seed: number;
  readonly ops: number;
  readonly argv: readonly string[];
  readonly shrink: boolean;
}

/** A case result. */
export interface CaseResult {
  readonly kind: CaseKind;
  readonly seed: number;
  readonly ops: number;
  readonly ms: number;
  readonly finding?: Finding;
}

/** Run one request (also used in-thread when the campaign has no workers). */
export function serve(request: CaseRequest): CaseResult {
  const start = performance.now();
  const finding =
    request.kind === 'uapi'
      ? runUapiCase(request.seed, request.ops)
      : request.kind === 'isolation'
        ? runIsolationCase(request.seed, request.ops)
        : runCase(request.seed, request.ops, { argv: request.argv, shrink: request.shrink });
  return { kind: request.kind, seed: request.seed, ops: request.ops, ms: performance.now() - start, ...(finding ? { finding } : {}) };
}

parentPort?.on('message', (request: CaseRequest) => parentPort!.postMessage(serve(request)));
