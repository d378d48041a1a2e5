/**
 * MMIO dispatch generated from a register table: a {@link RegisterBank} is the {@link RegionOps}
 * of a device's register block. It applies the declared access rules, logs guest errors for
 * accesses the hardware does not allow, and calls the device's per-register hooks for side
 * effects. A device model is then its table plus its hooks.
 */

import { hex, joinU64, splitU64 } from './bits.js';
import type { LogKind, ModelLog } from './log.js';
import type { RegionOps } from './memory-region.js';
import { RegisterFile, type RegisterDef, type RegisterInfo, type RegisterLayout } from './registers.js';

/**
 * Called after a guest write updated `reg`; `prevLo`/`prevHi` are the stored words before it,
 * `written` the word the guest wrote before the register's write mask (the low word of a
 * 64-bit write), for devices that keep bits the table declares read-only.
 */
export type WriteHook = (reg: RegisterInfo, prevLo: number, prevHi: number, written: number) => void;
/** Called before a guest read of `reg`, to refresh its stored value from live state. */
export type ReadHook = (reg: RegisterInfo) => void;

/** Register-table-driven MMIO ops with per-register hooks. */
export class RegisterBank implements RegionOps {
  readonly file: RegisterFile;
  private readonly writeHooks: (WriteHook | undefined)[];
  private readonly readHooks: (ReadHook | undefined)[];
  /** Handles offsets with no register (default: logged, RAZ/WI). */
  fallback: RegionOps | undefined;
  /** How disallowed accesses are logged (QEMU devices differ: guest error or unimplemented). */
  logKind: LogKind = 'guest_error';

  constructor(
    /** Log source name, e.g. `tegra241-cmdqv`. */
    readonly source: string,
    readonly layout: RegisterLayout,
    private readonly log: ModelLog,
  ) {
    this.file = new RegisterFile(layout);
    this.writeHooks = new Array<WriteHook | undefined>(layout.registers.length);
    this.readHooks = new Array<ReadHook | undefined>(layout.registers.length);
  }

  /** Run `hook` after guest writes to every instance of `def`. */
  onWrite(def: RegisterDef, hook: WriteHook): this {
    for (const r of this.layout.registers) if (r.def === def) this.writeHooks[r.index] = hook;
    return this;
  }

  /** Run `hook` before guest reads of every instance of `def`. */
  onRead(def: RegisterDef, hook: ReadHook): this {
    for (const r of this.layout.registers) if (r.def === def) this.readHooks[r.index] = hook;
    return this;
  }

  /** Restore reset values. */
  reset(): void {
    this.file.reset();
  }

  read(offset: number, size: 1 | 2 | 4): number {
    const slot = this.layout.slotAt(offset);
    if (slot < 0 || size !== 4) return this.miss(offset, size, false, 0);
    const reg = this.layout.registers[this.layout.slotReg[slot]!]!;
    if (reg.writeOnly) {
      this.report(`read of write-only register ${reg.name} (offset ${hex(offset, 5)})`);
      return 0;
    }
    this.readHooks[reg.index]?.(reg);
    return this.file.readWord(slot);
  }

  write(offset: number, size: 1 | 2 | 4, value: number): void {
    const slot = this.layout.slotAt(offset);
    if (slot < 0 || size !== 4) {
      this.miss(offset, size, true, value);
      return;
    }
    const reg = this.layout.registers[this.layout.slotReg[slot]!]!;
    if (reg.readOnly) {
      this.report(`write of ${hex(value)} to read-only register ${reg.name} (ignored)`);
      return;
    }
    const words = this.file.words;
    const prevLo = words[reg.slot]!;
    const prevHi = reg.width === 64 ? words[reg.slot + 1]! : 0;
    this.file.applyWrite(slot, value);
    this.writeHooks[reg.index]?.(reg, prevLo, prevHi, value);
  }

  read64(offset: number): bigint {
    const reg = this.layout.registerAt(offset);
    if (!reg || reg.width !== 64 || reg.offset !== offset) {
      if (this.fallback && !reg) return this.fallback.read64(offset);
      this.report(`unexpected 64-bit read at offset ${hex(offset, 5)} (RAZ)`);
      return 0n;
    }
    if (reg.writeOnly) {
      this.report(`read of write-only register ${reg.name} (offset ${hex(offset, 5)})`);
      return 0n;
    }
    this.readHooks[reg.index]?.(reg);
    return joinU64(this.file.readWord(reg.slot), this.file.readWord(reg.slot + 1));
  }

  write64(offset: number, value: bigint): void {
    const reg = this.layout.registerAt(offset);
    if (!reg || reg.width !== 64 || reg.offset !== offset) {
      if (this.fallback && !reg) {
        this.fallback.write64(offset, value);
        return;
      }
      this.report(`unexpected 64-bit write at offset ${hex(offset, 5)} (WI)`);
      return;
    }
    if (reg.readOnly) {
      this.report(`write of ${hex(value, 16)} to read-only register ${reg.name} (ignored)`);
      return;
    }
    const words = this.file.words;
    const prevLo = words[reg.slot]!;
    const prevHi = words[reg.slot + 1]!;
    const [lo, hi] = splitU64(value);
    this.file.applyWrite(reg.slot, lo);
    this.file.applyWrite(reg.slot + 1, hi);
    this.writeHooks[reg.index]?.(reg, prevLo, prevHi, lo);
  }

  private report(message: string): void {
    if (this.logKind === 'unimp') this.log.unimp(this.source, message);
    else this.log.guestError(this.source, message);
  }

  private miss(offset: number, size: number, write: boolean, value: number): number {
    if (this.fallback) {
      if (write) {
        this.fallback.write(offset, size as 1 | 2 | 4, value);
        return 0;
      }
      return this.fallback.read(offset, size as 1 | 2 | 4);
    }
    this.report(
      write
        ? `write of ${hex(value)} (size ${size}) to offset ${hex(offset, 5)} with no register (WI)`
        : `read (size ${size}) of offset ${hex(offset, 5)} with no register (RAZ)`,
    );
    return 0;
  }
}
