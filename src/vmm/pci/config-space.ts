/**
 * A PCI function's configuration space as data: registers declared once (offset, size, reset
 * value, writable bits, write-1-to-clear bits), stored as QEMU stores them — the bytes plus a
 * write mask and a W1C mask per byte — so a config write is one masked merge per byte and
 * `reset()` restores the declared image exactly (docs/reference/pci.md §2).
 */
import { PCI_CONFIG_SIZE, PCIE_CONFIG_SIZE } from '../../arch/pci/config.js';

/** One declared config register (or a run of bytes of one rule). */
export interface ConfigRegister {
  readonly name: string;
  readonly offset: number;
  readonly size: 1 | 2 | 4;
  /** Reset value (default 0). */
  readonly reset?: number;
  /** Bits software may write (default none: read-only). */
  readonly wmask?: number;
  /** Bits a written 1 clears (default none). */
  readonly w1c?: number;
}

/** The config space of one function. */
export class PciConfigSpace {
  readonly bytes: Uint8Array;
  private readonly wmask: Uint8Array;
  private readonly w1cmask: Uint8Array;
  private readonly resetImage: Uint8Array;
  /** Registers by name, as declared. */
  private readonly byName = new Map<string, ConfigRegister>();

  /** `express`: 4 KiB (extended space); otherwise 256 bytes, and the extended space reads as all-ones. */
  constructor(
    readonly express: boolean,
    registers: readonly ConfigRegister[],
  ) {
    const n = express ? PCIE_CONFIG_SIZE : PCI_CONFIG_SIZE;
    this.bytes = new Uint8Array(n);
    this.wmask = new Uint8Array(n);
    this.w1cmask = new Uint8Array(n);
    for (const r of registers) this.declare(r);
    this.resetImage = this.bytes.slice();
  }

  /** Size of the space in bytes (256 or 4096). */
  get size(): number {
    return this.bytes.length;
  }

  private declare(r: ConfigRegister): void {
    if (r.offset < 0 || r.offset + r.size > this.bytes.length) throw new RangeError(`config register ${r.name} at 0x${r.offset.toString(16)} outside the space`);
    if (this.byName.has(r.name)) throw new Error(`config register ${r.name} declared twice`);
    this.byName.set(r.name, r);
    for (let i = 0; i < r.size; i++) {
      const sh = 8 * i;
      this.bytes[r.offset + i] = ((r.reset ?? 0) >>> sh) & 0xff;
      this.wmask[r.offset + i] = ((r.wmask ?? 0) >>> sh) & 0xff;
      this.w1cmask[r.offset + i] = ((r.w1c ?? 0) >>> sh) & 0xff;
    }
  }

  /** The declaration of register `name`. */
  register(name: string): ConfigRegister {
    const r = this.byName.get(name);
    if (!r) throw new Error(`no config register ${name}`);
    return r;
  }

  /** Little-endian load of `size` bytes (the caller checked the range). */
  read(offset: number, size: 1 | 2 | 4): number {
    const b = this.bytes;
    if (size === 1) return b[offset]!;
    if (size === 2) return b[offset]! | (b[offset + 1]! << 8);
    return (b[offset]! | (b[offset + 1]! << 8) | (b[offset + 2]! << 16) | (b[offset + 3]! << 24)) >>> 0;
  }

  /** A software store: writable bits take the value, W1C bits written 1 clear, the rest stay. */
  write(offset: number, size: 1 | 2 | 4, value: number): void {
    for (let i = 0; i < size; i++) {
      const at = offset + i;
      const v = (value >>> (8 * i)) & 0xff;
      const wm = this.wmask[at]!;
      let b = (this.bytes[at]! & ~wm) | (v & wm);
      b &= ~(v & this.w1cmask[at]!);
      this.bytes[at] = b & 0xff;
    }
  }

  /**
   * The first byte of `image` (a saved space) whose read-only bits (neither writable nor W1C)
   * differ from this space's, or -1: a snapshot restore loads only spaces the function can have.
   */
  readOnlyMismatch(image: Uint8Array): number {
    for (let at = 0; at < this.bytes.length; at++) {
      const fixed = ~(this.wmask[at]! | this.w1cmask[at]!) & 0xff;
      if (((image[at]! ^ this.bytes[at]!) & fixed) !== 0) return at;
    }
    return -1;
  }

  /** A device-side store (the model setting a status bit): no masks. */
  set(offset: number, size: 1 | 2 | 4, value: number): void {
    for (let i = 0; i < size; i++) this.bytes[offset + i] = (value >>> (8 * i)) & 0xff;
  }

  /** Change which bits of a register software may write (a BAR's size decides its mask). */
  setWmask(offset: number, size: 1 | 2 | 4, mask: number): void {
    for (let i = 0; i < size; i++) this.wmask[offset + i] = (mask >>> (8 * i)) & 0xff;
  }

  /** Take the current bytes as the reset image (a function's BAR type bits, set after declaration). */
  captureReset(): void {
    this.resetImage.set(this.bytes);
  }

  /** The declared reset image back (QEMU's pci_device_reset of this function's registers). */
  reset(): void {
    this.bytes.set(this.resetImage);
  }
}
