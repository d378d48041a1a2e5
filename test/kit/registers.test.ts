import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ModelLog } from '../../src/kit/log.js';
import { RegisterBank } from '../../src/kit/register-bank.js';
import { defineRegister, instanceOffset, RegisterFile, RegisterLayout, registerSpan, variant } from '../../src/kit/registers.js';

// A small block in the style of the CMDQV config page (docs/reference/tegra241-cmdqv.md §3.1).
const CONFIG = defineRegister({
  name: 'CONFIG',
  offset: 0x0,
  width: 32,
  reset: 0x0002_0082,
  fields: {
    CMDQV_EN: { lsb: 0, width: 1 },
    CMDQV_PER_CMD_OFFSET: { lsb: 1, width: 3 },
    CMDQ_MAX_CLK_BATCH: { lsb: 4, width: 8 },
    CMDQ_MAX_CMD_BATCH: { lsb: 12, width: 8 },
    CONS_DRAM_EN: { lsb: 20, width: 1 },
  },
});
const STATUS = defineRegister({ name: 'STATUS', offset: 0x4, width: 32, access: 'RO', fields: { CMDQV_ENABLED: { lsb: 0, width: 1 } } });
const ERR = defineRegister({ name: 'ERR_MAP', offset: 0x8, width: 32, access: 'W1C' });
const KEY = defineRegister({ name: 'KEY', offset: 0xc, width: 32, access: 'WO' });
const MIXED = defineRegister({
  name: 'MIXED',
  offset: 0x10,
  width: 32,
  fields: { EN: { lsb: 0, width: 1 }, HYP_OWN: { lsb: 17, width: 1, access: 'RAZ/WI' }, STS: { lsb: 8, width: 4, access: 'RO' } },
});
const BASE = defineRegister({
  name: 'VCMDQ{i}_BASE',
  offset: 0x80,
  width: 64,
  repeat: { count: 4, stride: 0x10 },
  fields: { LOG2SIZE: { lsb: 0, width: 5 }, ADDR: { lsb: 5, width: 47 } },
});
const RSVD = defineRegister({ name: 'RSVD', offset: 0x14, width: 32, access: 'RAZ/WI', reset: 0xffff });

const layout = new RegisterLayout('test-block', 0x100, [CONFIG, STATUS, ERR, KEY, MIXED, BASE, RSVD]);

function bank() {
  const log = new ModelLog();
  return { log, bank: new RegisterBank('dev', layout, log) };
}

test('layout decodes offsets, expands repeats and names instances', () => {
  assert.equal(layout.registerAt(0x0)?.name, 'CONFIG');
  assert.equal(layout.registerAt(0xa0)?.name, 'VCMDQ2_BASE');
  assert.equal(layout.registerAt(0xa4)?.name, 'VCMDQ2_BASE', 'high word of a 64-bit register');
  assert.equal(layout.registerAt(0x18), undefined);
  assert.equal(layout.get('VCMDQ3_BASE').offset, 0xb0);
  assert.equal(layout.get('VCMDQ3_BASE').instance, 3);
  assert.throws(() => new RegisterLayout('bad', 0x10, [CONFIG, defineRegister({ name: 'X', offset: 0, width: 32 })]), /overlaps/);
  assert.throws(() => defineRegister({ name: 'Y', offset: 0, width: 32, fields: { F: { lsb: 30, width: 4 } } }), /exceeds/);
});

test('reset values and pretty-printing come from the table', () => {
  const f = new RegisterFile(layout);
  const cfg = layout.get('CONFIG');
  assert.equal(f.get32(cfg), 0x0002_0082);
  assert.equal(
    f.format(cfg),
    'CONFIG=0x00020082 {CMDQV_EN=0, CMDQV_PER_CMD_OFFSET=1, CMDQ_MAX_CLK_BATCH=0x8, CMDQ_MAX_CMD_BATCH=0x20, CONS_DRAM_EN=0}',
  );
  assert.equal(f.field(cfg, CONFIG.f.CMDQ_MAX_CMD_BATCH), 0x20);
  f.set32(cfg, 0xffff_ffff);
  f.reset();
  assert.equal(f.get32(cfg), 0x0002_0082);
  assert.equal(f.get32(layout.get('RSVD')), 0, 'RAZ/WI reset is forced to 0');
});

test('RW with reserved bits, RO fields and forced-zero fields', () => {
  const { bank: b, log } = bank();
  b.write(0x10, 4, 0xffff_ffff);
  assert.equal(b.read(0x10, 4), 0x1, 'only EN is writable: STS is RO, HYP_OWN is forced to 0, the rest reserved');
  assert.equal(log.count('guest_error'), 0, 'partially writable register: no guest error');
  b.file.setField(layout.get('MIXED'), MIXED.f.STS, 0xa);
  b.write(0x10, 4, 0);
  assert.equal(b.read(0x10, 4), 0xa00, 'RO field keeps device state across guest writes');
  b.write(0x0, 4, 0xffff_ffff);
  assert.equal(b.read(0x0, 4), 0x001f_ffff, 'bits above CONS_DRAM_EN are reserved');
});

test('RO register: write ignored and logged; WO register reads as zero and is logged', () => {
  const { bank: b, log } = bank();
  b.file.set32(layout.get('STATUS'), 1);
  b.write(0x4, 4, 0);
  assert.equal(b.read(0x4, 4), 1);
  assert.equal(log.count('guest_error', 'dev'), 1);
  assert.match(log.last()!.message, /read-only register STATUS/);
  b.write(0xc, 4, 0x1234);
  assert.equal(b.file.get32(layout.get('KEY')), 0x1234, 'WO register stores the write');
  assert.equal(b.read(0xc, 4), 0);
  assert.equal(log.count('guest_error'), 2);
});

test('W1C clears only the bits written as 1', () => {
  const { bank: b } = bank();
  b.file.set32(layout.get('ERR_MAP'), 0b1011);
  b.write(0x8, 4, 0b0010);
  assert.equal(b.read(0x8, 4), 0b1001);
  b.write(0x8, 4, 0);
  assert.equal(b.read(0x8, 4), 0b1001);
  b.write(0x8, 4, 0xffff_ffff);
  assert.equal(b.read(0x8, 4), 0);
});

test('RAZ/WI register: silent', () => {
  const { bank: b, log } = bank();
  b.write(0x14, 4, 0xffff_ffff);
  assert.equal(b.read(0x14, 4), 0);
  assert.equal(log.count('guest_error'), 0);
});

test('64-bit register: 8-byte and 32-bit half accesses, hooks see previous words', () => {
  const { bank: b, log } = bank();
  const seen: string[] = [];
  b.onWrite(BASE, (reg, prevLo, prevHi) => seen.push(`${reg.name} ${prevLo.toString(16)}:${prevHi.toString(16)}`));
  b.write64(0x90, 0x0000_0008_1234_5673n);
  assert.equal(b.read64(0x90), 0x0000_0008_1234_5673n);
  b.write(0x94, 4, 0x9);
  assert.equal(b.read64(0x90), 0x0000_0009_1234_5673n);
  assert.equal(b.read(0x94, 4), 0x9);
  assert.deepEqual(seen, ['VCMDQ1_BASE 0:0', 'VCMDQ1_BASE 12345673:8']);
  b.write64(0x90, 0xfff0_0000_0000_0000n);
  assert.equal(b.read64(0x90), 0n, 'bits [63:52] are reserved');
  assert.equal(b.file.field(layout.get('VCMDQ1_BASE'), BASE.f.LOG2SIZE), 0);
  b.write64(0x0, 1n);
  assert.match(log.last()!.message, /unexpected 64-bit write/);
  assert.equal(b.read(0x0, 4), 0x0002_0082, '64-bit write to a 32-bit register is ignored');
});

test('read hooks refresh state; undefined offsets are RAZ/WI guest errors', () => {
  const { bank: b, log } = bank();
  let live = 0;
  b.onRead(STATUS, (reg) => b.file.set32(reg, live));
  live = 1;
  assert.equal(b.read(0x4, 4), 1);
  assert.equal(b.read(0x18, 4), 0);
  b.write(0x18, 4, 5);
  assert.equal(log.count('guest_error'), 2);
});

test('variant derives a register with other rules and keeps field positions', () => {
  // A model's view of MIXED: placed elsewhere, EN reset to 1, STS writable, reserved bits stored.
  const view = variant(MIXED, { name: 'VIEW', offset: 0x20, reset: 1, reserved: 'stored', fieldAccess: { STS: 'RW' } });
  assert.equal(view.spec.name, 'VIEW');
  assert.equal(view.f.STS.lsb, MIXED.f.STS.lsb);
  assert.equal(MIXED.spec.fields!.STS.access, 'RO', 'the declaration itself is unchanged');
  const L = new RegisterLayout('view', 0x40, [view]);
  const b = new RegisterBank('dev', L, new ModelLog());
  assert.equal(b.read(0x20, 4), 1, 'reset override');
  b.write(0x20, 4, 0xffff_ffff);
  assert.equal(b.read(0x20, 4), 0xfffd_ffff, 'STS and reserved bits now stored; HYP_OWN still forced to 0');
  // A 32-bit view of a 64-bit register without fields, with a different replication.
  const words = variant(defineRegister({ name: 'MAP64_{i}', offset: 0x0, width: 64, access: 'RO', repeat: { count: 2, stride: 8 } }), {
    name: 'MAP_{i}', width: 32, repeat: { count: 4, stride: 4 },
  });
  assert.deepEqual(new RegisterLayout('w', 0x10, [words]).registers.map((r) => [r.name, r.offset, r.width]), [
    ['MAP_0', 0x0, 32], ['MAP_1', 0x4, 32], ['MAP_2', 0x8, 32], ['MAP_3', 0xc, 32],
  ]);
  assert.throws(() => variant(MIXED, { fieldAccess: { NOPE: 'RW' } as never }), /no field NOPE/);
});

test('instance offsets, spans and lookups by declaration', () => {
  assert.equal(instanceOffset(BASE, 2), 0xa0);
  assert.equal(instanceOffset(CONFIG), 0x0);
  assert.throws(() => instanceOffset(BASE, 4), /no instance 4/);
  assert.deepEqual(registerSpan(BASE), { start: 0x80, end: 0xb8 });
  assert.deepEqual(registerSpan(STATUS), { start: 0x4, end: 0x8 });
  assert.deepEqual(layout.instancesOf(BASE).map((r) => r.name), ['VCMDQ0_BASE', 'VCMDQ1_BASE', 'VCMDQ2_BASE', 'VCMDQ3_BASE']);
  assert.equal(layout.of(BASE, 3), layout.get('VCMDQ3_BASE'));
  assert.equal(layout.of(CONFIG), layout.get('CONFIG'));
  assert.throws(() => layout.of(BASE, 4), /no instance 4/);
  assert.throws(() => layout.instancesOf(defineRegister({ name: 'Z', offset: 0, width: 32 })), /not in this layout/);
});

test('RegisterFile.address reads an address field in place, bits below it zero', () => {
  const BASE = defineRegister({ name: 'BASE', offset: 0, width: 64, fields: { LOG2SIZE: { lsb: 0, width: 5 }, ADDR: { lsb: 5, width: 43 } } });
  const file = new RegisterFile(new RegisterLayout('t', 0x10, [BASE]));
  const reg = file.layout.get('BASE');
  file.set64(reg, 0x0000_1234_5678_9ab3n);
  assert.equal(file.address(reg, BASE.f.ADDR), 0x1234_5678_9aa0);
});
