/**
 * The stack picture: guest, VMM, host kernel, host SMMU and CMDQV silicon, with the counters of
 * each seam between them. The trapped path runs down the left column; the direct path (the
 * guest's accesses to the mapped VINTF page0, no VM exit) runs down the right one.
 */

import type { SeamCounters } from '../src/serve/api.js';
import { h, n } from './dom.js';

type Key = keyof SeamCounters;

/** A counter element (id `counter-KEY`, for the page's tests). */
function count(key: Key): HTMLElement {
  return h('span', { class: 'count', id: `counter-${key}` }, '0');
}

/** Build the picture in `el`. */
export function buildStack(el: HTMLElement): void {
  el.replaceChildren(
    h('div', { class: 'layer guest' }, 'guest', h('small', {}, 'vCPU: arm-smmu-v3 + tegra241-cmdqv driver model, map / DMA / unmap workload')),
    h('div', { class: 'seam' }, 'MMIO that traps — VM exits: ', count('vmExits')),
    h('div', { class: 'layer vmm' }, 'VMM (qemu-system-aarch64)', h('small', {}, 'accelerated SMMUv3 + Tegra241 CMDQV devices, iommufd backend')),
    h('div', { class: 'seam' }, 'iommufd uAPI — ioctls: ', count('ioctls'), ' (IOMMU_HWPT_INVALIDATE: ', count('invalidateIoctls'), ')'),
    h('div', { class: 'layer kernel' }, 'host kernel', h('small', {}, 'iommufd, arm-smmu-v3 and tegra241-cmdqv drivers')),
    h('div', { class: 'seam' }, 'host SMMU CMDQ — commands: ', count('hostCmdqCommands')),
    h('div', { class: 'layer smmu' }, 'host SMMUv3', h('small', {}, 'DMA translations: ', count('translations'))),
    h(
      'div',
      { class: 'bypass' },
      h('div', {}, 'VINTF page0, mapped into the guest: no VM exit'),
      h('div', {}, 'direct accesses: ', count('directAccesses')),
    ),
    h('div', { class: 'layer silicon', style: 'grid-column: 2; grid-row: 7' }, 'CMDQV silicon', h('small', {}, 'VCMDQ commands: ', count('vcmdqCommands'))),
    h('div', { class: 'hint', style: 'grid-column: 1 / -1; grid-row: 8; margin-top: 6px' }, 'modelled time since boot / reset: ', count('modelNs'), ' ns'),
  );
}

/**
 * Show `c`, marking the counters that changed since `prev`. The same state shown twice (an
 * action's answer, then its server-sent event) keeps the marks of the change.
 */
export function updateStack(c: SeamCounters, prev: SeamCounters | undefined): void {
  const keys = Object.keys(c) as Key[];
  const mark = prev !== undefined && keys.some((k) => prev[k] !== c[k]);
  for (const key of keys) {
    const el = document.getElementById(`counter-${key}`);
    if (!el) continue;
    el.textContent = n(c[key]);
    if (mark) el.classList.toggle('changed', prev[key] !== c[key]);
  }
}
