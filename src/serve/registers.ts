/**
 * The register inspector's tables: every register block the guest sees (each SMMUv3 frame, and
 * for a CMDQV its config page, VINTF0's block and VINTF0's VCMDQ page0/page1 slots), built from
 * the architecture's register declarations (src/arch/…/registers.ts, src/kit/registers.ts), and
 * the decode of a value by those declarations' fields.
 */

import { smmuv3Layout } from '../arch/smmuv3/registers.js';
import * as C from '../arch/tegra241-cmdqv/registers.js';
import { RegisterLayout, type RegisterInfo } from '../kit/registers.js';
import type { FieldReadout, RegisterBlock } from './api.js';

/** A block with its layout (the page gets {@link RegisterBlock}, the server keeps the layout to decode). */
export interface InspectorBlock extends RegisterBlock {
  readonly layout: RegisterLayout;
}

/** What the inspector needs of an SMMU: its id, frame and CMDQV aperture, and the guest's VCMDQ count. */
export interface InspectedSmmu {
  readonly id: string;
  readonly base: number;
  readonly cmdqvBase: number | undefined;
  readonly vcmdqs: number;
}

let cmdqvLayouts: { global: RegisterLayout; vintf: RegisterLayout; page0: RegisterLayout; page1: RegisterLayout } | undefined;

/** The CMDQV's register blocks as layouts (made once). */
function cmdqv() {
  cmdqvLayouts ??= {
    global: new RegisterLayout('cmdqv-config', C.VINTF_BLOCK, [C.CONFIG, C.PARAM, C.STATUS, C.VI_ERR_MAP, C.VI_INT_MASK, C.CMDQ_ERR_MAP, C.CMDQ_ALLOC_MAP]),
    vintf: new RegisterLayout('cmdqv-vintf', C.VINTF_BLOCK_STRIDE, [C.VINTF_CONFIG, C.VINTF_STATUS, C.VINTF_SID_MATCH, C.VINTF_SID_REPLACE, C.VINTF_LVCMDQ_ERR_MAP_64]),
    page0: new RegisterLayout('vcmdq-page0', C.VCMDQ_SLOT, [C.VCMDQ_CONS, C.VCMDQ_PROD, C.VCMDQ_CONFIG, C.VCMDQ_STATUS, C.VCMDQ_GERROR, C.VCMDQ_GERRORN]),
    page1: new RegisterLayout('vcmdq-page1', C.VCMDQ_SLOT, [C.VCMDQ_BASE, C.VCMDQ_CONS_INDX_BASE]),
  };
  return cmdqvLayouts;
}

function block(id: string, title: string, base: number, layout: RegisterLayout): InspectorBlock {
  return { id, title, base, layout, registers: layout.registers.map((r) => ({ name: r.name, offset: r.offset, width: r.width })) };
}

/** Every block of the machine's SMMUs, in address order per SMMU. */
export function inspectorBlocks(smmus: readonly InspectedSmmu[]): InspectorBlock[] {
  const out: InspectorBlock[] = [];
  for (const s of smmus) {
    out.push(block(s.id, `${s.id} SMMUv3 registers`, s.base, smmuv3Layout()));
    if (s.cmdqvBase === undefined) continue;
    const L = cmdqv();
    out.push(block(`${s.id}.cmdqv`, `${s.id} CMDQV config page`, s.cmdqvBase, L.global));
    out.push(block(`${s.id}.vintf0`, `${s.id} CMDQV VINTF0`, s.cmdqvBase + C.vintfBlockOffset(0), L.vintf));
    for (let q = 0; q < s.vcmdqs; q++) {
      out.push(block(`${s.id}.vintf0.vcmdq${q}.page0`, `${s.id} VINTF0 VCMDQ${q} page0 (mapped: no VM exit)`, s.cmdqvBase + C.lvcmdqPage0Offset(0, q), L.page0));
      out.push(block(`${s.id}.vintf0.vcmdq${q}.page1`, `${s.id} VINTF0 VCMDQ${q} page1`, s.cmdqvBase + C.lvcmdqPage1Offset(0, q), L.page1));
    }
  }
  return out;
}

/** `value` decoded by the fields `info`'s declaration names (none: the whole register as one). */
export function decodeFields(info: RegisterInfo, value: bigint): FieldReadout[] {
  const spec = info.def.spec;
  const regAccess = spec.access ?? 'RW';
  const fields = spec.fields ? Object.entries(spec.fields) : [];
  if (fields.length === 0) return [{ name: info.name, msb: info.width - 1, lsb: 0, value: hex(value), access: regAccess, doc: spec.doc }];
  return fields
    .map(([name, fs]) => {
      const v = (value >> BigInt(fs.lsb)) & ((1n << BigInt(fs.width)) - 1n);
      return { name, msb: fs.lsb + fs.width - 1, lsb: fs.lsb, value: hex(v), access: fs.access ?? regAccess, doc: fs.doc };
    })
    .sort((a, b) => b.lsb - a.lsb);
}

export function hex(v: bigint | number): string {
  return `0x${v.toString(16)}`;
}
