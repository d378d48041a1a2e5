/**
 * The web view's entry point (bundled to dist/web/app.js): loads the machine's state, wires the
 * buttons to the API and keeps the panels current from the server's `state` events.
 */

import { TIMELINE_PATHS, WORKLOAD_HEADER, type CompareTable, type InjectSummary, type MachineState, type RunRequest, type RunSummary, type SeamCounters, type SnapshotInfo, type SnapshotSaved } from '../src/serve/api.js';
import { getJson, getWithHeaders, postJson } from './api.js';
import { byId, h } from './dom.js';
import { RegisterInspector, renderCompare, renderInject, renderVcmdqs } from './panels.js';
import { buildStack, updateStack } from './stack.js';
import { renderLegend, renderTimeline, type TimelineSection } from './timeline.js';
import { parseTrace } from './trace-model.js';

const TITLES: Record<(typeof TIMELINE_PATHS)[number], string> = {
  trapped: 'accel SMMUv3, trapped (cmdqv=off)',
  cmdqv: 'accel SMMUv3 + CMDQV (VCMDQ)',
};

/** Operations the side-by-side runs (compare, timeline) take at most. */
const SIDE_OPS = 4096;

let counters: SeamCounters | undefined;
const inspector = new RegisterInspector();

function status(text: string, error = false): void {
  const el = byId('status');
  el.textContent = text;
  el.classList.toggle('error', error);
}

/** Show a machine state (from an action's answer or a server-sent event). */
function show(s: MachineState): void {
  updateStack(s.counters, counters);
  counters = s.counters;
  renderVcmdqs(s.vcmdqs);
  byId('events').textContent = s.events.join('\n');
  byId('qemu').textContent = `qemu-system-aarch64 ${s.qemu.join(' ')}`;
}

function request(): RunRequest {
  return { ops: Number(byId<HTMLInputElement>('ops').value), batch: Number(byId<HTMLInputElement>('batch').value) };
}

/** Run `action` with the buttons disabled; errors go to the status line. */
async function busy(what: string, action: () => Promise<void>): Promise<void> {
  const buttons = ['run', 'inject', 'reset', 'save', 'restore'].map((id) => byId<HTMLButtonElement>(id));
  for (const b of buttons) b.disabled = true;
  document.body.dataset.busy = '1';
  status(`${what}…`);
  try {
    await action();
  } catch (e) {
    status(`${what}: ${(e as Error).message}`, true);
  } finally {
    for (const b of buttons) b.disabled = false;
    byId<HTMLButtonElement>('restore').disabled = byId<HTMLSelectElement>('snapshot-list').value === '';
    delete document.body.dataset.busy;
  }
}

async function drawTimeline(req: RunRequest): Promise<void> {
  const q = `ops=${req.ops}&batch=${req.batch}`;
  const sections: TimelineSection[] = [];
  for (const path of TIMELINE_PATHS) {
    const { body, headers } = await getWithHeaders(`/api/trace?path=${path}&${q}`);
    const [t0, t1] = (headers.get(WORKLOAD_HEADER) ?? '0,0').split(',').map(Number) as [number, number];
    sections.push({ key: path, title: TITLES[path], model: parseTrace(body), window: [t0, t1] });
  }
  renderTimeline(byId('timeline'), sections);
  // The same files, for ui.perfetto.dev or chrome://tracing.
  byId('trace-links').replaceChildren(
    'Open in Perfetto: ',
    ...TIMELINE_PATHS.flatMap((path, i) => [i ? ', ' : '', h('a', { href: `/api/trace?path=${path}&${q}`, download: `cmdqv-${path}.json` }, `${path}.json`)]),
  );
}

async function run(): Promise<void> {
  const req = request();
  const r = await postJson<RunSummary>('/api/run', req);
  show(r.state);
  status(`ran ${r.ops} operations (batch ${r.batch}): ${r.vcmdq.commands} commands via VCMDQ, ${r.smmuCmdq.commands} trapped; ${r.exits} VM exits; DMA checks ${r.dmaPassed} passed, ${r.dmaFailed} failed; ${(r.modelNs / 1000).toFixed(1)} µs of modelled time`);
  // The side-by-side runs (three for --compare, two traced) each redo the workload on a fresh
  // machine: past SIDE_OPS operations they would take far longer than the run itself.
  const side = { ops: Math.min(req.ops, SIDE_OPS), batch: req.batch };
  byId('side-note').textContent = side.ops < req.ops ? `The side-by-side runs and the timeline use the first ${side.ops} operations.` : '';
  renderCompare(await getJson<CompareTable>(`/api/compare?ops=${side.ops}&batch=${side.batch}`));
  await drawTimeline(side);
  await inspector.read();
  document.body.dataset.runs = String(r.state.runs);
}

async function inject(): Promise<void> {
  const r = await postJson<InjectSummary>('/api/inject');
  show(r.state);
  renderInject(r);
  await inspector.read();
  status(r.injected ? 'illegal command injected: see the VCMDQ panel for the error and the recovery' : 'nothing injected (no CMDQV)', !r.injected);
}

async function reset(): Promise<void> {
  show(await postJson<MachineState>('/api/reset'));
  byId('inject-result').replaceChildren();
  await inspector.read();
  status('system reset');
}

/** The snapshot list: id, image size and the modelled time each was saved at; the newest chosen. */
function showSnapshots(list: readonly SnapshotInfo[], chosen?: number): void {
  const select = byId<HTMLSelectElement>('snapshot-list');
  const kib = (n: number) => `${(n / 1024).toFixed(0)} KiB`;
  select.replaceChildren(...list.map((s) => h('option', { value: String(s.id) }, `#${s.id}: ${kib(s.bytes)}, ${(s.modelNs / 1000).toFixed(1)} µs, ${s.runs} run(s)`)));
  if (list.length) select.value = String(chosen ?? list[list.length - 1]!.id);
  select.onchange = () => showDownload();
  showDownload();
}

/** The chosen snapshot's image, for `cmdqv run --restore FILE`-style tools. */
function showDownload(): void {
  const id = byId<HTMLSelectElement>('snapshot-list').value;
  const a = byId<HTMLAnchorElement>('snapshot-download');
  a.hidden = id === '';
  if (id !== '') {
    a.href = `/api/snapshot-image?id=${id}`;
    a.download = `cmdqv-snapshot-${id}.img`;
  }
}

async function save(): Promise<void> {
  const r = await postJson<SnapshotSaved>('/api/snapshot');
  show(r.state);
  showSnapshots(r.snapshots, r.saved.id);
  status(`saved snapshot ${r.saved.id}: ${r.saved.bytes} bytes at ${(r.saved.modelNs / 1000).toFixed(1)} µs of modelled time`);
}

async function restore(): Promise<void> {
  const id = Number(byId<HTMLSelectElement>('snapshot-list').value);
  show(await postJson<MachineState>('/api/restore', { id }));
  byId('inject-result').replaceChildren();
  // The same machine line, so the same register blocks: the inspector rereads its register.
  await inspector.read();
  status(`restored snapshot ${id} on a fresh host`);
}

async function start(): Promise<void> {
  buildStack(byId('stack'));
  renderLegend(byId('timeline-legend'));
  const s = await getJson<MachineState>('/api/state');
  byId<HTMLInputElement>('ops').value = String(s.defaults.ops);
  byId<HTMLInputElement>('batch').value = String(s.defaults.batch);
  show(s);
  await inspector.load();
  await inspector.read();
  byId('run').onclick = () => void busy('running the workload', run);
  byId('inject').onclick = () => void busy('injecting', inject);
  byId('reset').onclick = () => void busy('resetting', reset);
  byId('save').onclick = () => void busy('saving', save);
  byId('restore').onclick = () => void busy('restoring', restore);
  showSnapshots(await getJson<SnapshotInfo[]>('/api/snapshots'));
  byId<HTMLButtonElement>('restore').disabled = byId<HTMLSelectElement>('snapshot-list').value === '';
  // Other pages' actions arrive as server-sent events.
  const events = new EventSource('/api/events');
  events.addEventListener('state', (e) => show(JSON.parse((e as MessageEvent<string>).data) as MachineState));
  status('ready');
  document.body.dataset.ready = '1';
}

start().catch((e: unknown) => status(`could not load the machine: ${(e as Error).message}`, true));
