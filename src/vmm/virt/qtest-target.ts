/**
 * The virt machine as the qtest protocol sees it: CPU loads and stores over the system
 * address space, the virtual clock, and interrupt lines named by QOM path
 * (docs/reference/qtest-qmp.md §1.3):
 * - `/machine/unattached/device[1]`: the GIC, as QEMU's virt creates it (CPU 0 is device[0]);
 *   its unnamed inputs are the SPIs, input n being GSIV 32 + n.
 * - `/machine/peripheral/ID`: a `-device ...,id=ID`; an SMMUv3's `sysbus-irq` outputs are
 *   0 event queue, 1 PRI queue, 2 CMD_SYNC, 3 GERROR and, with a Tegra241 CMDQV, 4 the CMDQV's.
 */

import { IrqLine } from '../../kit/irq.js';
import type { QtestMachine } from '../qtest/qtest-server.js';
import { VIRT_RAM_BASE, type VirtMachine } from './machine.js';

/** QOM path of the virt machine's GIC. */
export const GIC_QOM_PATH = '/machine/unattached/device[1]';
/** GSIV of SPI 0. */
const SPI_BASE = 32;
/** SPIs of the virt machine's GIC (NUM_IRQS). */
const NUM_SPIS = 256;

/** The qtest view of `m`. */
export function qtestTarget(m: VirtMachine): QtestMachine {
  // Inputs nothing drives still exist on a GIC: unconnected lines keep the list dense.
  const spis = Array.from({ length: NUM_SPIS }, (_, n) => m.irqs.get(SPI_BASE + n) ?? new IrqLine(`spi${n}`));
  const devices = new Map<string, readonly IrqLine[]>();
  m.smmus.forEach((s, i) => {
    const id = m.options.smmus[i]?.id;
    if (id === undefined) return;
    const lines = [0, 1, 2, 3].map((k) => m.irqs.get(s.irqBaseGsiv + k)!);
    if (s.cmdqvGsiv !== undefined) lines.push(m.irqs.get(s.cmdqvGsiv)!);
    devices.set(`/machine/peripheral/${id}`, lines);
  });
  for (const e of m.emulatedSmmus) {
    if (e.opts?.id !== undefined) devices.set(`/machine/peripheral/${e.opts.id}`, [0, 1, 2, 3].map((k) => m.irqs.get(e.irqBaseGsiv + k)!));
  }
  const ramEnd = VIRT_RAM_BASE + m.ramBytes;
  const inRam = (a: number, n: number) => a >= VIRT_RAM_BASE && a + n <= ramEnd;
  /** The widest naturally aligned access (8, 4, 2, 1) that starts at `a` and fits in `left` bytes. */
  const step = (a: number, left: number): 1 | 2 | 4 | 8 => {
    for (const s of [8, 4, 2] as const) if (left >= s && a % s === 0) return s;
    return 1;
  };
  return {
    clock: m.clock,
    load: (addr, size) => m.as.read(addr, size).value,
    store: (addr, size, value) => {
      m.as.write(addr, size, value);
    },
    readBytes: (addr, len) => {
      if (inRam(addr, len)) return m.readRam(addr, len);
      const out = new Uint8Array(len);
      for (let off = 0; off < len; ) {
        const s = step(addr + off, len - off);
        let v = m.as.read(addr + off, s).value;
        for (let k = 0; k < s; k++, v >>= 8n) out[off + k] = Number(v & 0xffn);
        off += s;
      }
      return out;
    },
    writeBytes: (addr, data) => {
      if (inRam(addr, data.length)) {
        m.writeRam(addr, data);
        return;
      }
      for (let off = 0; off < data.length; ) {
        const s = step(addr + off, data.length - off);
        let v = 0n;
        for (let k = s - 1; k >= 0; k--) v = (v << 8n) | BigInt(data[off + k]!);
        m.as.write(addr + off, s, v);
        off += s;
      }
    },
    gpio: (path, dir, name) => {
      if (path === GIC_QOM_PATH) return dir === 'in' && name === undefined ? spis : [];
      const lines = devices.get(path);
      if (lines) return dir === 'out' && name === 'sysbus-irq' ? lines : [];
      return path === '/machine' ? [] : undefined;
    },
    idle: () => m.runMainLoop(),
    gpioIn: (path, name, num) => (path === GIC_QOM_PATH && name === undefined ? spis[num] : undefined),
  };
}
