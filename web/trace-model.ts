/**
 * A Chrome/Perfetto JSON trace (what `cmdqv run --trace-out` writes) as lanes of slices: one
 * lane per (process, thread), B/E pairs matched per lane, nesting depth kept, flows as pairs of
 * points. Pure data: the timeline panel draws it.
 */

/** One duration slice, µs. */
export interface Slice {
  readonly name: string;
  readonly start: number;
  end: number;
  readonly depth: number;
}

/** One track of the trace. */
export interface Lane {
  readonly pid: number;
  readonly tid: number;
  process: string;
  thread: string;
  readonly slices: Slice[];
}

/** A flow arrow from one lane to another (e.g. a doorbell to the VCMDQ that consumed it). */
export interface Flow {
  readonly name: string;
  readonly from: { lane: Lane; ts: number };
  readonly to: { lane: Lane; ts: number };
}

export interface TraceModel {
  readonly lanes: Lane[];
  readonly flows: Flow[];
}

interface TraceEventJson {
  readonly ph?: string;
  readonly name?: string;
  readonly ts?: number;
  readonly pid?: number;
  readonly tid?: number;
  readonly id?: number;
  readonly args?: { readonly name?: string };
}

/** Parse a trace document (`{ traceEvents: [...] }` or a bare array). */
export function parseTrace(doc: unknown): TraceModel {
  const events = (Array.isArray(doc) ? doc : ((doc as { traceEvents?: unknown }).traceEvents ?? [])) as TraceEventJson[];
  const lanes = new Map<string, Lane>();
  const processes = new Map<number, string>();
  const open = new Map<Lane, Slice[]>();
  const flowStart = new Map<number, { lane: Lane; ts: number; name: string }>();
  const flows: Flow[] = [];
  const lane = (pid: number, tid: number): Lane => {
    const key = `${pid}/${tid}`;
    let l = lanes.get(key);
    if (!l) {
      l = { pid, tid, process: `pid ${pid}`, thread: `tid ${tid}`, slices: [] };
      lanes.set(key, l);
    }
    return l;
  };
  for (const e of events) {
    const pid = e.pid ?? 0;
    const tid = e.tid ?? 0;
    switch (e.ph) {
      case 'M':
        if (e.name === 'process_name') processes.set(pid, e.args?.name ?? `pid ${pid}`);
        else if (e.name === 'thread_name') lane(pid, tid).thread = e.args?.name ?? `tid ${tid}`;
        break;
      case 'B': {
        const l = lane(pid, tid);
        const stack = open.get(l) ?? [];
        const s: Slice = { name: e.name ?? '', start: e.ts ?? 0, end: e.ts ?? 0, depth: stack.length };
        stack.push(s);
        open.set(l, stack);
        l.slices.push(s);
        break;
      }
      case 'E': {
        const s = open.get(lane(pid, tid))?.pop();
        if (s) s.end = e.ts ?? s.start;
        break;
      }
      case 's':
        if (e.id !== undefined) flowStart.set(e.id, { lane: lane(pid, tid), ts: e.ts ?? 0, name: e.name ?? '' });
        break;
      case 't':
      case 'f': {
        const from = e.id === undefined ? undefined : flowStart.get(e.id);
        if (!from) break;
        const to = { lane: lane(pid, tid), ts: e.ts ?? 0 };
        flows.push({ name: from.name, from: { lane: from.lane, ts: from.ts }, to });
        // A step continues the flow from where it is now.
        if (e.ph === 't') flowStart.set(e.id!, { ...to, name: from.name });
        else flowStart.delete(e.id!);
        break;
      }
      default:
        break;
    }
  }
  for (const l of lanes.values()) l.process = processes.get(l.pid) ?? l.process;
  const sorted = [...lanes.values()].filter((l) => l.slices.length > 0).sort((a, b) => a.pid - b.pid || a.tid - b.tid);
  return { lanes: sorted, flows };
}
