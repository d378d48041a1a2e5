/** The page's tables: the VCMDQ table, the injection's outcome, the compare table, the register inspector. */

import type { CompareTable, InjectSummary, RegisterBlock, RegisterReadout, VcmdqRow } from '../src/serve/api.js';
import { getJson } from './api.js';
import { byId, fillTable, h } from './dom.js';

/** The VINTF0 VCMDQ table. */
export function renderVcmdqs(rows: readonly VcmdqRow[]): void {
  const table = byId<HTMLTableElement>('vcmdq-table');
  if (rows.length === 0) {
    fillTable(table, [['no CMDQV on this machine: every invalidation goes through the trapped SMMU command queue']], false);
    return;
  }
  const hex = (v: number) => `0x${v.toString(16)}`;
  fillTable(table, [
    ['queue', 'host HW queue id', 'enabled', 'PROD', 'CONS', 'occupancy', 'CONS.ERR', 'errors'],
    ...rows.map((r) => {
      const errors = h('span', {}, r.errors.length ? r.errors.join(' | ') : 'none');
      return [`${r.smmu} VCMDQ${r.lvcmdq}`, r.hwQueueId === undefined ? 'not allocated' : String(r.hwQueueId), r.enabled ? 'yes' : 'no', hex(r.prod), hex(r.cons), `${r.occupancy} / ${r.entries}`, String(r.consErr), errors];
    }),
  ]);
  // Mark the cells that show an error.
  rows.forEach((r, i) => {
    const tr = table.rows[i + 1];
    if (tr && r.errors.length) tr.cells[7]!.classList.add('err');
  });
}

/** The last injection: the error each layer reported, then the recovery. */
export function renderInject(r: InjectSummary): void {
  byId('inject-result').replaceChildren(
    h('strong', {}, 'Injected: a CFGI_STE (not a guest command) between two TLBIs on VCMDQ0'),
    h('div', { class: 'error', id: 'inject-error' }, h('strong', {}, 'error'), ...r.error.map((l) => h('div', { class: 'mono' }, l))),
    h('div', { class: 'recovery', id: 'inject-recovery' }, h('strong', {}, 'recovery'), ...r.recovery.map((l) => h('div', { class: 'mono' }, l))),
  );
}

/** The `--compare` table. */
export function renderCompare(t: CompareTable): void {
  fillTable(byId<HTMLTableElement>('compare-table'), [t.head, ...t.rows]);
}

/** The register inspector: pick a block and a register; Read decodes it by its table. */
export class RegisterInspector {
  private blocks: readonly RegisterBlock[] = [];
  private readonly block = byId<HTMLSelectElement>('reg-block');
  private readonly name = byId<HTMLSelectElement>('reg-name');

  async load(): Promise<void> {
    this.blocks = await getJson<RegisterBlock[]>('/api/registers');
    this.block.replaceChildren(...this.blocks.map((b) => h('option', { value: b.id }, `${b.title} @ 0x${b.base.toString(16)}`)));
    this.block.onchange = () => this.fillNames();
    this.fillNames();
    byId('reg-read').onclick = () => void this.read();
  }

  private fillNames(): void {
    const b = this.blocks.find((x) => x.id === this.block.value);
    this.name.replaceChildren(...(b?.registers ?? []).map((r) => h('option', { value: r.name }, `${r.name} (+0x${r.offset.toString(16)}, ${r.width}-bit)`)));
  }

  /** Select block `id`'s register `name` and read it. */
  async show(id: string, name: string): Promise<void> {
    this.block.value = id;
    this.fillNames();
    this.name.value = name;
    await this.read();
  }

  async read(): Promise<void> {
    const q = new URLSearchParams({ block: this.block.value, name: this.name.value });
    const r = await getJson<RegisterReadout>(`/api/register?${q}`);
    byId('reg-value').textContent = `${r.name} @ ${r.address} (${r.width}-bit, ${r.access}) = ${r.value}`;
    fillTable(byId<HTMLTableElement>('reg-fields'), [
      ['field', 'bits', 'value', 'access'],
      ...r.fields.map((f) => [h('span', f.doc ? { title: f.doc } : {}, f.name), h('span', { class: 'bits' }, f.msb === f.lsb ? `[${f.lsb}]` : `[${f.msb}:${f.lsb}]`), f.value, f.access]),
    ]);
  }
}
