/**
 * Register tables as data.
 *
 * A device declares its registers once — name, offset, width, fields, reset value, access —
 * and this module turns the table into (a) a shared, immutable {@link RegisterLayout} with the
 * decode index and per-word masks, and (b) per-instance {@link RegisterFile} state. The
 * {@link RegisterBank} in `register-bank.ts` generates MMIO read/write dispatch from the same
 * table, so a device model only adds the side effects.
 */

import { Field, hex, joinU64, splitU64 } from './bits.js';

/**
 * Access rule of a register or a field.
 * - `RW`: read/write.
 * - `RO`: writes ignored (a write to a wholly read-only register is a guest error).
 * - `WO`: reads return 0 (a read of a wholly write-only register is a guest error).
 * - `W1C`: reads the state; writing 1 to a bit clears it.
 * - `RAZ/WI`: reads as zero, writes ignored (reserved / "forced to 0" bits).
 */
export type Access = 'RW' | 'RO' | 'WO' | 'W1C' | 'RAZ/WI';

/** A field declaration: bits [lsb + width - 1 : lsb], optionally with its own access rule. */
export interface FieldSpec {
  readonly lsb: number;
  readonly width: number;
  /** Defaults to the register's access. */
  readonly access?: Access;
  readonly doc?: string;
}

/** A register declaration. */
export interface RegisterSpec<F extends string = string> {
  readonly name: string;
  /** Byte offset in the register block. */
  readonly offset: number;
  readonly width: 32 | 64;
  /**
   * Fields by name. When fields are declared, bits outside every field are reserved and
   * behave as RAZ/WI; without fields the whole register follows `access`.
   */
  readonly fields?: { readonly [K in F]: FieldSpec };
  /** Reset value (default 0). */
  readonly reset?: number | bigint;
  /** Default access (default `RW`). */
  readonly access?: Access;
  /**
   * Bits outside every declared field: `raz` (default) reads as zero and ignores writes;
   * `stored` keeps what is written, following `access` (models that store reserved bits).
   */
  readonly reserved?: 'raz' | 'stored';
  /**
   * Replicate the register `count` times, `stride` bytes apart; instance `i` is named
   * `name` with `{i}` replaced by `i` (or suffixed with `i` when there is no `{i}`).
   */
  readonly repeat?: { readonly count: number; readonly stride: number };
  readonly doc?: string;
}

/** A declared register with its typed fields (see {@link defineRegister}). */
export interface RegisterDef<F extends string = string> {
  readonly spec: RegisterSpec<F>;
  /** Typed field accessors, e.g. `CONFIG.f.CMDQV_EN.get(value)`. */
  readonly f: { readonly [K in F]: Field };
}

/** Declare a register; the returned definition carries typed {@link Field}s. */
export function defineRegister<const F extends string>(spec: RegisterSpec<F>): RegisterDef<F> {
  const f = {} as Record<F, Field>;
  if (spec.fields) {
    for (const name of Object.keys(spec.fields) as F[]) {
      const fs = spec.fields[name];
      const field = new Field(name, fs.lsb, fs.width);
      if (field.msb >= spec.width) {
        throw new RangeError(`register ${spec.name}: field ${name} exceeds ${spec.width} bits`);
      }
      f[name] = field;
    }
  }
  return { spec, f };
}

/** What {@link variant} may change in a register declaration; fields keep their positions. */
export interface RegisterOverrides<F extends string = string> {
  readonly name?: string;
  readonly offset?: number;
  /** A different width for a register without fields (e.g. a 32-bit view of a 64-bit map). */
  readonly width?: 32 | 64;
  readonly reset?: number | bigint;
  readonly access?: Access;
  readonly reserved?: 'raz' | 'stored';
  /** A different replication (`count`, `stride`). */
  readonly repeat?: { readonly count: number; readonly stride: number };
  /** Per-field access rules replacing the declared ones (e.g. a bit a model forces to zero). */
  readonly fieldAccess?: { readonly [K in F]?: Access };
}

/**
 * Derive a register from a declared one: same fields at the same positions, with a different
 * name, offset, reset value, access rules or replication. A model whose view of a register
 * differs from the architecture's (a VMM's emulation) declares only the differences, so the
 * architecture table stays the one place offsets and field positions are written.
 */
export function variant<const F extends string>(def: RegisterDef<F>, overrides: RegisterOverrides<F>): RegisterDef<F> {
  const { fieldAccess, ...rest } = overrides;
  const base = def.spec;
  let fields = base.fields;
  if (fields && fieldAccess) {
    const changed = {} as Record<F, FieldSpec>;
    for (const name of Object.keys(fields) as F[]) {
      const access = fieldAccess[name];
      changed[name] = access === undefined ? fields[name] : { ...fields[name], access };
    }
    fields = changed;
  }
  for (const name of Object.keys(fieldAccess ?? {})) {
    if (!fields || !(name in fields)) throw new Error(`register ${base.name}: no field ${name} to override`);
  }
  return defineRegister<F>({ ...base, ...rest, ...(fields ? { fields } : {}) });
}

/** Byte offset of instance `instance` of a (possibly repeated) register. */
export function instanceOffset(def: RegisterDef, instance = 0): number {
  const count = def.spec.repeat?.count ?? 1;
  if (!Number.isInteger(instance) || instance < 0 || instance >= count) {
    throw new RangeError(`register ${def.spec.name}: no instance ${instance} (of ${count})`);
  }
  return def.spec.offset + instance * (def.spec.repeat?.stride ?? 0);
}

/** Byte range [start, end) covered by every instance of a register. */
export function registerSpan(def: RegisterDef): { readonly start: number; readonly end: number } {
  const count = def.spec.repeat?.count ?? 1;
  return { start: def.spec.offset, end: instanceOffset(def, count - 1) + def.spec.width / 8 };
}

/** One register instance in a layout (a repeated declaration yields several). */
export interface RegisterInfo {
  /** Index in {@link RegisterLayout.registers}. */
  readonly index: number;
  readonly name: string;
  readonly offset: number;
  readonly width: 32 | 64;
  /** Instance number for repeated registers, 0 otherwise. */
  readonly instance: number;
  /** The declaration this instance comes from. */
  readonly def: RegisterDef;
  /** First word slot in the register file (64-bit registers use `slot` and `slot + 1`). */
  readonly slot: number;
  /** Whole register is read-only (writes are guest errors). */
  readonly readOnly: boolean;
  /** Whole register is write-only (reads are guest errors). */
  readonly writeOnly: boolean;
}

function instanceName(name: string, i: number, count: number): string {
  if (count === 1) return name;
  return name.includes('{i}') ? name.replace('{i}', String(i)) : `${name}${i}`;
}

/** Per-bit masks of one 32-bit word of a register, from its access rules. */
interface WordMasks {
  rw: number;
  w1c: number;
  readable: number;
}

function wordMasks(def: RegisterDef, half: 0 | 1): WordMasks {
  const spec = def.spec;
  const regAccess = spec.access ?? 'RW';
  const masks: WordMasks = { rw: 0, w1c: 0, readable: 0 };
  const apply = (access: Access, bits: number) => {
    if (access === 'RW' || access === 'WO') masks.rw |= bits;
    if (access === 'W1C') masks.w1c |= bits;
    if (access === 'RW' || access === 'RO' || access === 'W1C') masks.readable |= bits;
  };
  const fieldNames = spec.fields ? Object.keys(spec.fields) : [];
  if (fieldNames.length === 0) {
    apply(regAccess, 0xffff_ffff);
  } else {
    if (spec.reserved === 'stored') {
      let declared = 0;
      for (const name of fieldNames) declared |= def.f[name]!.wordMask(half);
      apply(regAccess, ~declared >>> 0);
    }
    for (const name of fieldNames) {
      const fs = spec.fields![name]!;
      apply(fs.access ?? regAccess, def.f[name]!.wordMask(half));
    }
  }
  masks.rw >>>= 0;
  masks.w1c >>>= 0;
  masks.readable >>>= 0;
  return masks;
}

/**
 * The immutable part of a register block: decode index from offset to word slot, per-slot
 * masks and reset values. Built once per device type and shared by all instances.
 */
export class RegisterLayout {
  /** Every register instance, in offset order. */
  readonly registers: readonly RegisterInfo[];
  /** Number of 32-bit word slots. */
  readonly slotCount: number;
  /** Byte size covered by the decode index. */
  readonly size: number;
  /** slot → register index. */
  readonly slotReg: Int32Array;
  /** slot → 0 for the low word, 1 for the high word of a 64-bit register. */
  readonly slotHalf: Uint8Array;
  readonly rwMask: Uint32Array;
  readonly w1cMask: Uint32Array;
  readonly readMask: Uint32Array;
  readonly resetWords: Uint32Array;
  private readonly wordToSlot: Int32Array;
  private readonly byName = new Map<string, RegisterInfo>();

  constructor(
    readonly name: string,
    size: number,
    defs: readonly RegisterDef[],
  ) {
    if (size % 4 !== 0) throw new RangeError(`${name}: block size must be a multiple of 4`);
    this.size = size;
    const insts: Omit<RegisterInfo, 'index' | 'slot'>[] = [];
    for (const def of defs) {
      const { spec } = def;
      const count = spec.repeat?.count ?? 1;
      const stride = spec.repeat?.stride ?? 0;
      for (let i = 0; i < count; i++) {
        const m0 = wordMasks(def, 0);
        const m1 = spec.width === 64 ? wordMasks(def, 1) : m0;
        const writable = (m0.rw | m0.w1c | m1.rw | m1.w1c) !== 0;
        const readable = (m0.readable | m1.readable) !== 0;
        const access = spec.access ?? 'RW';
        insts.push({
          name: instanceName(spec.name, i, count),
          offset: spec.offset + i * stride,
          width: spec.width,
          instance: i,
          def,
          readOnly: !writable && access !== 'RAZ/WI',
          writeOnly: !readable && writable,
        });
      }
    }
    insts.sort((a, b) => a.offset - b.offset);
    this.wordToSlot = new Int32Array(size / 4).fill(-1);
    let slots = 0;
    for (const r of insts) slots += r.width / 32;
    this.slotCount = slots;
    this.slotReg = new Int32Array(slots);
    this.slotHalf = new Uint8Array(slots);
    this.rwMask = new Uint32Array(slots);
    this.w1cMask = new Uint32Array(slots);
    this.readMask = new Uint32Array(slots);
    this.resetWords = new Uint32Array(slots);
    const regs: RegisterInfo[] = [];
    let slot = 0;
    for (const r of insts) {
      const align = r.width / 8;
      if (r.offset % align !== 0 || r.offset + align > size) {
        throw new RangeError(`${name}: register ${r.name} at ${hex(r.offset, 4)} is misaligned or outside the block`);
      }
      const info: RegisterInfo = { ...r, index: regs.length, slot };
      regs.push(info);
      if (this.byName.has(r.name)) throw new Error(`${name}: duplicate register name ${r.name}`);
      this.byName.set(r.name, info);
      const reset = BigInt(r.def.spec.reset ?? 0);
      const [rlo, rhi] = splitU64(reset);
      const words = r.width / 32;
      for (let h = 0; h < words; h++) {
        const w = r.offset / 4 + h;
        if (this.wordToSlot[w] !== -1) {
          throw new Error(`${name}: register ${r.name} overlaps another at ${hex(w * 4, 4)}`);
        }
        this.wordToSlot[w] = slot;
        const m = wordMasks(r.def, h as 0 | 1);
        this.slotReg[slot] = info.index;
        this.slotHalf[slot] = h;
        this.rwMask[slot] = m.rw;
        this.w1cMask[slot] = m.w1c;
        this.readMask[slot] = m.readable;
        this.resetWords[slot] = (h === 0 ? rlo : rhi) & (m.readable | m.rw | m.w1c);
        slot++;
      }
    }
    this.registers = regs;
  }

  /** Word slot of the register word at byte `offset`, or -1 when no register is there. */
  slotAt(offset: number): number {
    const w = offset >>> 2;
    return offset >= 0 && offset < this.size ? this.wordToSlot[w]! : -1;
  }

  /** Register instance at byte `offset` (start of the register), if any. */
  registerAt(offset: number): RegisterInfo | undefined {
    const s = this.slotAt(offset);
    return s < 0 ? undefined : this.registers[this.slotReg[s]!];
  }

  /** Register instance by name, e.g. `VCMDQ3_PROD`. Throws if absent (a model bug). */
  get(name: string): RegisterInfo {
    const r = this.byName.get(name);
    if (!r) throw new Error(`${this.name}: no register named ${name}`);
    return r;
  }

  /** Every instance of `def` in this layout, by instance number. Throws if `def` is absent. */
  instancesOf(def: RegisterDef): readonly RegisterInfo[] {
    const found = this.registers.filter((r) => r.def === def).sort((a, b) => a.instance - b.instance);
    if (found.length === 0) throw new Error(`${this.name}: register ${def.spec.name} is not in this layout`);
    return found;
  }

  /** Instance `instance` of `def` in this layout. Throws if absent (a model bug). */
  of(def: RegisterDef, instance = 0): RegisterInfo {
    const r = this.instancesOf(def)[instance];
    if (!r) throw new Error(`${this.name}: register ${def.spec.name} has no instance ${instance}`);
    return r;
  }

  /** Register instance by name, or undefined. */
  find(name: string): RegisterInfo | undefined {
    return this.byName.get(name);
  }
}

/**
 * The mutable state of one register block: one uint32 per word slot. `reset()` restores
 * exactly the declared reset values.
 */
export class RegisterFile {
  readonly words: Uint32Array;

  constructor(readonly layout: RegisterLayout) {
    this.words = new Uint32Array(layout.slotCount);
    this.reset();
  }

  /** Restore every register to its reset value. */
  reset(): void {
    this.words.set(this.layout.resetWords);
  }

  /** Current value of a 32-bit register (or the low word of a 64-bit one). */
  get32(reg: RegisterInfo): number {
    return this.words[reg.slot]!;
  }

  /** Set a register's stored value (device side: no access rules applied). */
  set32(reg: RegisterInfo, value: number): void {
    this.words[reg.slot] = value >>> 0;
  }

  /** Current value of a register as bigint (64-bit registers join both words). */
  get64(reg: RegisterInfo): bigint {
    const lo = this.words[reg.slot]!;
    return reg.width === 64 ? joinU64(lo, this.words[reg.slot + 1]!) : BigInt(lo);
  }

  /** Set a register's stored value from a bigint (device side: no access rules applied). */
  set64(reg: RegisterInfo, value: bigint): void {
    const [lo, hi] = splitU64(value);
    this.words[reg.slot] = lo;
    if (reg.width === 64) this.words[reg.slot + 1] = hi;
  }

  /** Read a field of a register (fields up to 53 bits come back as numbers). */
  field(reg: RegisterInfo, field: Field): number {
    const lo = this.words[reg.slot]!;
    return reg.width === 64 ? field.getWords(lo, this.words[reg.slot + 1]!) : field.get(lo);
  }

  /** An address field of a register, in place: the field's bits with the bits below it zero. */
  address(reg: RegisterInfo, field: Field): number {
    const lo = this.words[reg.slot]!;
    return reg.width === 64 ? field.addressWords(lo, this.words[reg.slot + 1]!) : field.addressWords(lo, 0);
  }

  /** Write a field of a register (device side: no access rules applied). */
  setField(reg: RegisterInfo, field: Field, value: number): void {
    if (reg.width === 64) field.setWords(this.words, reg.slot, value);
    else this.words[reg.slot] = field.set(this.words[reg.slot]!, value);
  }

  /**
   * Apply a guest write of `value` to word `slot` under the access rules; returns the new word.
   * RW bits take the value, W1C bits clear where 1 is written, everything else keeps its state.
   */
  applyWrite(slot: number, value: number): number {
    const L = this.layout;
    const rw = L.rwMask[slot]!;
    const w1c = L.w1cMask[slot]!;
    const old = this.words[slot]!;
    const next = ((old & ~rw & ~w1c) | (value & rw) | (old & w1c & ~value)) >>> 0;
    this.words[slot] = next;
    return next;
  }

  /** Guest-visible value of word `slot` (write-only and reserved bits read as zero). */
  readWord(slot: number): number {
    return (this.words[slot]! & this.layout.readMask[slot]!) >>> 0;
  }

  /** Pretty-print a register: `CONFIG=0x00020083 {CMDQV_EN=1, ...}`. */
  format(reg: RegisterInfo): string {
    const value = this.get64(reg);
    const digits = reg.width / 4;
    const fields = Object.entries(reg.def.f as Record<string, Field>);
    if (fields.length === 0) return `${reg.name}=${hex(value, digits)}`;
    const parts = fields
      .sort((a, b) => a[1].lsb - b[1].lsb)
      .map(([n, f]) => {
        const v = f.getBig(value);
        return `${n}=${f.width > 4 ? `0x${v.toString(16)}` : v.toString()}`;
      });
    return `${reg.name}=${hex(value, digits)} {${parts.join(', ')}}`;
  }

  /** Pretty-print every register of the block, one per line. */
  dump(): string {
    return this.layout.registers.map((r) => this.format(r)).join('\n');
  }
}
