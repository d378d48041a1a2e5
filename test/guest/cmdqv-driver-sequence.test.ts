// The MMIO sequence of the guest tegra241-cmdqv driver model against current Linux
// (docs/reference/tegra241-cmdqv.md §4.4, §4.5): reset writes CMDQ_ALLOC_MAP without ALLOC, LVCMDQs
// are mapped (ALLOC) one by one in ascending order only after VINTF0 is enabled, and the
// teardown disables and flushes each queue (a CMD_SYNC on the SMMU's own CMDQ), unmaps the
// queues in descending order, disables the VINTF and clears every SID_MATCH/SID_REPLACE
// (issue 14 #7.2).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { D0, Op } from '../../src/arch/smmuv3/commands.js';
import * as C from '../../src/arch/tegra241-cmdqv/registers.js';
import { GuestCmdqv } from '../../src/guest/tegra241-cmdqv.js';
import { boot, CMDQV_BASE, CMDQV_GSIV, guestPlatform, guestSmmuStub, rig } from '../vmm/cmdqv-rig.js';

const VINTF0_CONFIG = C.vintfEnable(0).config;
const SID_MATCH_0 = C.vintfBlockOffset(0) + C.VINTF_SID_MATCH.spec.offset;
const SID_REPLACE_0 = C.vintfBlockOffset(0) + C.VINTF_SID_REPLACE.spec.offset;
const ALLOC_0 = C.allocMapOffset(0);
const ALLOC_END = C.allocMapOffset(127) + 4;

/** One guest write to the CMDQV window, or the flushing CMD_SYNC it put on the SMMU CMDQ. */
type Step = string;

function name(off: number, v: bigint | number): Step {
  const val = `=${v.toString(16)}`;
  if (off === VINTF0_CONFIG) return `VINTF0.CONFIG${val}`;
  if (off >= ALLOC_0 && off < ALLOC_END) return `ALLOC_MAP${(off - ALLOC_0) / 4}.ALLOC=${C.CMDQ_ALLOC_MAP.f.ALLOC.get(Number(v))}`;
  if (off >= SID_MATCH_0 && off < SID_MATCH_0 + 64) return `SID_MATCH${(off - SID_MATCH_0) / 4}${val}`;
  if (off >= SID_REPLACE_0 && off < SID_REPLACE_0 + 64) return `SID_REPLACE${(off - SID_REPLACE_0) / 4}${val}`;
  for (let l = 0; l < 2; l++) {
    const p0 = C.lvcmdqPage0Offset(0, l);
    const p1 = C.lvcmdqPage1Offset(0, l);
    if (off === p0 + C.VCMDQ_CONFIG.spec.offset) return `Q${l}.CONFIG${val}`;
    if (off === p0 + C.VCMDQ_PROD.spec.offset) return `Q${l}.PROD${val}`;
    if (off === p0 + C.VCMDQ_CONS.spec.offset) return `Q${l}.CONS${val}`;
    if (off === p1 + C.VCMDQ_BASE.spec.offset) return `Q${l}.BASE${v === 0n ? '=0' : ''}`;
    if (off === p1 + C.VCMDQ_CONS_INDX_BASE.spec.offset) return `Q${l}.CONS_INDX_BASE${val}`;
  }
  return `0x${off.toString(16)}${val}`;
}

function guest() {
  const r = boot(rig());
  const steps: Step[] = [];
  const inWindow = (a: number) => a >= CMDQV_BASE && a < CMDQV_BASE + 0x5_0000;
  const p = guestPlatform(r, (a, v) => {
    if (inWindow(a)) steps.push(name(a - CMDQV_BASE, v));
  });
  const smmu = guestSmmuStub((cmds) => {
    for (const c of cmds) steps.push(D0.OPCODE.get(c[0]!) === Op.SYNC ? `SMMU CMDQ: CMD_SYNC cs=${D0.SYNC_CS.get(c[0]!)}` : 'SMMU CMDQ: other');
  });
  const g = new GuestCmdqv(p, CMDQV_BASE, smmu, CMDQV_GSIV);
  return { r, g, steps };
}

const SIDS = 16;
function teardown(): Step[] {
  const out: Step[] = [];
  for (const l of [1, 0]) {
    out.push(`Q${l}.CONFIG=0`, 'SMMU CMDQ: CMD_SYNC cs=0', `Q${l}.PROD=0`, `Q${l}.CONS=0`, `Q${l}.BASE=0`, `Q${l}.CONS_INDX_BASE=0`, `ALLOC_MAP${l}.ALLOC=0`);
  }
  out.push('VINTF0.CONFIG=0');
  for (let s = 0; s < SIDS; s++) out.push(`SID_MATCH${s}=0`, `SID_REPLACE${s}=0`);
  return out;
}

test('reset: ALLOC_MAP written unallocated, VINTF0 deinit, then enabled, then each LVCMDQ mapped and initialised in ascending order', () => {
  const { g, steps } = guest();
  const reset = steps.slice(steps.indexOf(`ALLOC_MAP0.ALLOC=0`));
  const vintfOn = reset.findIndex((s) => /^VINTF0\.CONFIG=[0-9a-f]*[13579bdf]$/.test(s));
  assert.ok(vintfOn > 0, 'VINTF0 enabled');
  assert.deepEqual(reset.slice(0, 2), ['ALLOC_MAP0.ALLOC=0', 'ALLOC_MAP1.ALLOC=0']);
  // Between the CMDQV reset and the enable: the full VINTF teardown.
  assert.deepEqual(reset.slice(2, vintfOn - 1), teardown());
  assert.equal(reset[vintfOn - 1], 'VINTF0.CONFIG=20000', 'HYP_OWN requested first');
  const init: Step[] = [];
  for (const l of [0, 1]) {
    init.push(`ALLOC_MAP${l}.ALLOC=1`, `Q${l}.CONFIG=0`, 'SMMU CMDQ: CMD_SYNC cs=0', `Q${l}.PROD=0`, `Q${l}.CONS=0`, `Q${l}.BASE=0`, `Q${l}.CONS_INDX_BASE=0`, `Q${l}.BASE`, `Q${l}.CONFIG=1`);
  }
  assert.deepEqual(reset.slice(vintfOn + 1), init);
  assert.equal(g.queues.every((q) => q.enabled), true);
});

test('remove: queues disabled and flushed, unmapped in descending order, VINTF0 disabled, SID_MATCH/SID_REPLACE cleared; the VMM frees its HW queues', () => {
  const { r, g, steps } = guest();
  const before = steps.length;
  const frees = r.backend.calls.length;
  g.remove();
  assert.deepEqual(steps.slice(before), teardown());
  assert.equal(g.queues.some((q) => q.enabled), false);
  assert.deepEqual(r.backend.calls.slice(frees).map((c) => c.name), ['IOMMU_DESTROY', 'IOMMU_DESTROY'], 'one HW queue freed per unmapped LVCMDQ');
  assert.throws(() => g.submit([]), /not enabled/);
});
