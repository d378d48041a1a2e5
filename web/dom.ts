/** Small DOM helpers (no framework). */

type Child = Node | string | number | undefined;

/** An element with attributes (`class`, `id`, `title`, data-*) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) if (c !== undefined) el.append(typeof c === 'number' ? String(c) : c);
  return el;
}

/** The element with id `id` (the page declares every one this code uses). */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`page has no #${id}`);
  return el as T;
}

/** A table's rows from cells (the first row as the header). */
export function fillTable(table: HTMLTableElement, rows: readonly (readonly Child[])[], header = true): void {
  table.replaceChildren(...rows.map((r, i) => h('tr', {}, ...r.map((c) => h(header && i === 0 ? 'th' : 'td', {}, c)))));
}

/** Format a count with thousands separators. */
export function n(v: number): string {
  return v.toLocaleString('en-US');
}
