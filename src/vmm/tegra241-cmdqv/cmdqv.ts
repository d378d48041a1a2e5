/**
 * The VMM's Tegra241 CMDQV device (QEMU "Tegra241 CMDQV support for accelerated SMMUv3",
 * spec qemu-cmdqv.md §2–4): the 0x50000 MMIO block with the config page and VINTF0 registers,
 * VCMDQ page0/page1 in the direct (0x10000/0x20000) and VINTF (0x30000/0x40000) apertures with
 * the hw/cache backing rule, HW-queue allocation as soon as BASE, ALLOC, CMDQV_EN and VINTF
 * ENABLE all hold ("any order"), the VINTF page0 RAM-device subregion (direct guest access,
 * no VM exit) while VINTF0 is enabled, error propagation from the vEVENTQ, reset, and the
 * IDR1.CMDQS cap. It implements the accelerated SMMU's {@link CmdqvOps}.
 */

import { hex } from '../../kit/bits.js';
import { IrqLine } from '../../kit/irq.js';
import type { ModelLog } from '../../kit/log.js';
import { MemoryRegion, type RegionOps } from '../../kit/memory-region.js';
import { RegisterBank } from '../../kit/register-bank.js';
import { RegisterFile } from '../../kit/registers.js';
import { defineTrace, type Tracer } from '../../kit/trace.js';
import * as U from '../../uapi/iommufd.js';
import { BackendError, type Veventq } from '../backends/iommufd.js';
import { SMMUV3_CMDQV_TEGRA241, type AccelHostDevice, type CmdqvHost, type CmdqvOps } from '../smmuv3/cmdqv-ops.js';
import * as R from './registers.js';

const T_READ = defineTrace('tegra241_cmdqv_read_mmio', [{ name: 'offset', type: 'u64' }, { name: 'val', type: 'u64' }, { name: 'size', type: 'u32' }], 'offset: 0x%x val: 0x%x size: 0x%x');
const T_WRITE = defineTrace('tegra241_cmdqv_write_mmio', [{ name: 'offset', type: 'u64' }, { name: 'val', type: 'u64' }, { name: 'size', type: 'u32' }], 'offset: 0x%x val: 0x%x size: 0x%x');
const P0_ARGS = [
  { name: 'index', type: 'i32' }, { name: 'aperture', type: 'str' }, { name: 'backing', type: 'str' },
  { name: 'offset0', type: 'u64' }, { name: 'val', type: 'u64' },
] as const;
const T_P0_READ = defineTrace('tegra241_cmdqv_read_vcmdq_page0', P0_ARGS, 'vcmdq %d (%s, %s) offset 0x%x val 0x%x');
const T_P0_WRITE = defineTrace('tegra241_cmdqv_write_vcmdq_page0', P0_ARGS, 'vcmdq %d (%s, %s) offset 0x%x val 0x%x');
const P1_ARGS = [{ name: 'index', type: 'i32' }, { name: 'aperture', type: 'str' }, { name: 'offset0', type: 'u64' }, { name: 'val', type: 'u64' }] as const;
const T_P1_READ = defineTrace('tegra241_cmdqv_read_vcmdq_page1', P1_ARGS, 'vcmdq %d (%s) offset 0x%x val 0x%x');
const T_P1_WRITE = defineTrace('tegra241_cmdqv_write_vcmdq_page1', P1_ARGS, 'vcmdq %d (%s) offset 0x%x val 0x%x');
const T_ERR_MAP = defineTrace(
  'tegra241_cmdqv_err_map',
  [{ name: 'map3', type: 'u32' }, { name: 'map2', type: 'u32' }, { name: 'map1', type: 'u32' }, { name: 'map0', type: 'u32' }],
  'hw irq received. error (hex) maps: %04X:%04X:%04X:%04X',
);
const T_INIT = defineTrace('tegra241_cmdqv_init_regs', [{ name: 'param', type: 'u32' }], 'register init, param=0x%08X');

const SRC = 'tegra241-cmdqv';
const PAGE = 0x10000;
/** vEVENTQ depth: 1 << SMMU_EVENTQS. */
const VEVENTQ_DEPTH = 1 << 19;
const INIT_ERR = 1 << 2;

/** Options of the device. */
export interface CmdqvDeviceDeps {
  readonly host: CmdqvHost;
  readonly log: ModelLog;
  readonly tracer: Tracer;
  /** Schedules the vEVENTQ handler on the VMM's main loop (run it later, not re-entrantly). */
  readonly defer: (fn: () => void) => void;
}

/** Counters. */
export interface CmdqvDeviceStats {
  hwQueueAllocs: number;
  hwQueueFrees: number;
  allocFailures: number;
  errorEvents: number;
  irqs: number;
}

/** The emulated Tegra241 CMDQV. */
export class Tegra241Cmdqv implements CmdqvOps, RegionOps {
  /** The 0x50000 "tegra241-cmdqv" block (sysbus MMIO index 1); present after init(). */
  mmio: MemoryRegion | undefined;
  /** The error interrupt (sysbus IRQ index 4). */
  readonly irq = new IrqLine('tegra241-cmdqv');
  readonly cfg: RegisterBank;
  readonly page0: RegisterFile[] = [];
  readonly page1: RegisterFile[] = [];
  readonly stats: CmdqvDeviceStats = { hwQueueAllocs: 0, hwQueueFrees: 0, allocFailures: 0, errorEvents: 0, irqs: 0 };
  /** Errors printed with error_report (stderr in QEMU). */
  readonly errors: string[] = [];

  /** HW queue id per VCMDQ (HW mode), or undefined (cache mode). */
  readonly hwQueue: (number | undefined)[] = [undefined, undefined];
  viommuId: number | undefined;
  /** VMM address of the mmap'd host VINTF page0. */
  page0Va: number | undefined;
  /** The RAM-device subregion at 0x30000, present while VINTF0 is enabled. */
  page0Region: MemoryRegion | undefined;
  veventq: Veventq | undefined;
  private page0Ops: RegionOps | undefined;
  private readonly warned = new Set<string>();
  private readonly r;

  constructor(private readonly deps: CmdqvDeviceDeps) {
    this.cfg = new RegisterBank(SRC, R.CONFIG_PAGE, deps.log);
    this.cfg.logKind = 'unimp';
    for (let i = 0; i < R.VCMDQS; i++) {
      this.page0.push(new RegisterFile(R.PAGE0));
      this.page1.push(new RegisterFile(R.PAGE1));
    }
    const L = R.CONFIG_PAGE;
    this.r = {
      config: L.get('CONFIG'),
      status: L.get('STATUS'),
      viErr0: L.get('VI_ERR_MAP_0'),
      viMask0: L.get('VI_INT_MASK_0'),
      cmdqErr: [0, 1, 2, 3].map((i) => L.get(`CMDQ_ERR_MAP_${i}`)),
      alloc: [0, 1].map((i) => L.get(`CMDQ_ALLOC_MAP_${i}`)),
      vintfConfig: L.get('VINTF0_CONFIG'),
      vintfStatus: L.get('VINTF0_STATUS'),
      lvErr: [0, 1, 2, 3].map((i) => L.get(`VINTF0_LVCMDQ_ERR_MAP_${i}`)),
      sids: L.registers.filter((x) => x.name.startsWith('VINTF0_SID_')),
      p0: { cons: R.PAGE0.get('CONS_INDX'), prod: R.PAGE0.get('PROD_INDX'), config: R.PAGE0.get('CONFIG'), status: R.PAGE0.get('STATUS'), gerror: R.PAGE0.get('GERROR'), gerrorn: R.PAGE0.get('GERRORN') },
      base: R.PAGE1.get('BASE'),
      dram: R.PAGE1.get('CONS_INDX_BASE_DRAM'),
    };
    this.cfg.onWrite(R.CONFIG, () => this.configWritten());
    this.cfg.onWrite(R.CMDQ_ALLOC_MAP, (reg, prev) => this.allocMapWritten(reg.instance, prev));
    this.cfg.onWrite(R.VINTF0_CONFIG, () => this.vintfConfigWritten());
  }

  // ------------------------------------------------------------------------------------------
  // CmdqvOps

  getType(): number {
    return SMMUV3_CMDQV_TEGRA241;
  }

  /** Probe the host (spec §3.2): hw_info of type TEGRA241_CMDQV with the required minimums. */
  probe(dev: AccelHostDevice): void {
    const T = U.iommu_hw_info_type.IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV;
    const info = this.deps.host.backend.getDeviceInfo(dev.devId, T, U.iommu_hw_info_tegra241_cmdqv.size);
    if (info.type !== T) throw new Error(`Host CMDQV: unexpected data type ${info.type} (expected ${T})`);
    const d = U.iommu_hw_info_tegra241_cmdqv.decode(info.data);
    if (d.version !== 1) throw new Error(`Host CMDQV: unsupported version ${d.version} (expected 1)`);
    if (d.log2vcmdqs < 1) throw new Error(`Host CMDQV: insufficient vCMDQs log2=${d.log2vcmdqs} (need >= 1)`);
    if (d.log2vsids < 4) throw new Error(`Host CMDQV: insufficient SIDs log2=${d.log2vsids} (need >= 4)`);
  }

  /** Create the MMIO block and IRQ; registers read zero until the first reset (spec §3.3). */
  init(): void {
    this.mmio = MemoryRegion.mmio(SRC, R.CMDQV_IO_LEN, this);
    this.cfg.file.words.fill(0);
    for (const f of [...this.page0, ...this.page1]) f.words.fill(0);
  }

  /** vIOMMU of type TEGRA241_CMDQV, page0 mmap, CMDQV vEVENTQ (spec §3.4.1). */
  allocViommu(dev: AccelHostDevice, s2HwptId: number): number {
    const be = this.deps.host.backend;
    const { viommuId, data } = be.allocViommu(dev.devId, U.iommu_viommu_type.IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV, s2HwptId, new Uint8Array(16));
    const out = U.iommu_viommu_tegra241_cmdqv.decode(data!);
    let va: number;
    try {
      va = be.viommuMmap(viommuId, PAGE, Number(out.out_vintf_mmap_offset));
    } catch (e) {
      be.freeId(viommuId, (m) => this.errors.push(m));
      throw new Error(`${(e as Error).message}: Tegra241 CMDQV: failed to mmap VINTF page0`);
    }
    let q: Veventq;
    try {
      q = be.allocVeventq(viommuId, U.iommu_veventq_type.IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV, VEVENTQ_DEPTH);
    } catch (e) {
      be.munmap(va, PAGE);
      be.freeId(viommuId, (m) => this.errors.push(m));
      throw new Error(`${(e as Error).message}: Tegra241 CMDQV: failed to alloc veventq`);
    }
    this.viommuId = viommuId;
    this.page0Va = va;
    this.veventq = q;
    this.page0Ops = be.mappedDevice(va);
    be.sys.watchFd(q.fd, () => this.deps.defer(() => this.pollEvents()));
    return viommuId;
  }

  /** Error-unwind release (spec §3.4.3). */
  freeViommu(): void {
    if (this.viommuId === undefined) return;
    const be = this.deps.host.backend;
    const report = (m: string) => this.errors.push(m);
    if (this.veventq) {
      be.sys.watchFd(this.veventq.fd, undefined);
      be.closeFd(this.veventq.fd);
      be.freeId(this.veventq.id, report);
      this.veventq = undefined;
    }
    if (this.page0Va !== undefined) be.munmap(this.page0Va, PAGE);
    this.page0Va = undefined;
    this.page0Ops = undefined;
    be.freeId(this.viommuId, report);
    this.viommuId = undefined;
  }

  /** Device reset (spec §3.9): unmap page0, free queues, re-init registers, cap CMDQS. */
  reset(): void {
    this.unmapPage0();
    this.freeAll();
    // VINTF0 SID tables survive reset in QEMU (quirk Q4, kept: they are stored only).
    const sids = this.r.sids.map((reg) => this.cfg.file.get32(reg));
    this.cfg.reset();
    this.r.sids.forEach((reg, i) => this.cfg.file.set32(reg, sids[i]!));
    for (const f of [...this.page0, ...this.page1]) f.reset();
    this.deps.tracer.emit(T_INIT, R.PARAM_VALUE);
    const pg = this.deps.host.minRamPageSize();
    const cap = Math.min(Math.log2(pg) - 4, this.deps.host.getCmdqs());
    this.deps.host.setCmdqs(cap);
  }

  // ------------------------------------------------------------------------------------------
  // Register side effects

  private get cmdqvEnabled(): boolean {
    return (this.cfg.file.get32(this.r.status) & 1) === 1;
  }

  private get vintfEnabled(): boolean {
    return (this.cfg.file.get32(this.r.vintfStatus) & 1) === 1;
  }

  private configWritten(): void {
    if (this.cfg.file.get32(this.r.config) & 1) {
      this.cfg.file.set32(this.r.status, 1);
      this.setupAll();
    } else {
      this.freeAll();
      this.cfg.file.set32(this.r.status, 0);
    }
  }

  private allocMapWritten(i: number, prev: number): void {
    const now = this.cfg.file.get32(this.r.alloc[i]!) & 1;
    if (now && !(prev & 1)) this.setup(i);
    else if (!now && prev & 1) this.free(i);
  }

  private vintfConfigWritten(): void {
    if (this.cfg.file.get32(this.r.vintfConfig) & 1) {
      this.cfg.file.setField(this.r.vintfStatus, R.VINTF0_STATUS.f.ENABLE_OK, 1);
      this.setupAll();
      this.mapPage0();
    } else {
      this.unmapPage0();
      this.freeAll();
      this.cfg.file.setField(this.r.vintfStatus, R.VINTF0_STATUS.f.ENABLE_OK, 0);
    }
  }

  private mapPage0(): void {
    if (this.page0Region || !this.mmio || !this.page0Ops) return;
    this.page0Region = MemoryRegion.ramDevice(`${SRC} vintf-page0`, PAGE, this.page0Ops, {
      skipIommuMap: true,
      rules: { sizes: [4, 8], unaligned: false },
    });
    this.mmio.addSubregion(0x30000, this.page0Region, 1);
  }

  private unmapPage0(): void {
    if (!this.page0Region || !this.mmio) return;
    this.mmio.removeSubregion(this.page0Region);
    this.page0Region = undefined;
  }

  // ------------------------------------------------------------------------------------------
  // HW queues (spec §3.5)

  /** Whether VCMDQ i may be allocated: BASE ≠ 0, ALLOC, CMDQV enabled, VINTF0 enabled. */
  ready(i: number): boolean {
    return (
      this.page1[i]!.get64(this.r.base) !== 0n &&
      (this.cfg.file.get32(this.r.alloc[i]!) & 1) === 1 &&
      this.cmdqvEnabled &&
      this.vintfEnabled
    );
  }

  /** Allocate (or re-allocate) VCMDQ i's HW queue when ready; returns false on failure. */
  setup(i: number): boolean {
    if (!this.ready(i) || this.viommuId === undefined) return true;
    const base = this.page1[i]!.get64(this.r.base);
    const addr = Number(base & 0x0000_ffff_ffff_ffe0n);
    const size = 2 ** (Number(base & 0x1fn) + 4);
    this.free(i);
    const p0 = this.page0[i]!;
    try {
      this.hwQueue[i] = this.deps.host.backend.allocHwQueue(this.viommuId, U.iommu_hw_queue_type.IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV, i, addr, size);
    } catch (e) {
      if (!(e instanceof BackendError)) throw e;
      p0.set32(this.r.p0.gerror, p0.get32(this.r.p0.gerror) | INIT_ERR);
      p0.set32(this.r.p0.status, 0);
      this.stats.allocFailures++;
      this.errors.push(e.message);
      this.deps.log.guestError(SRC, `vcmdq${i}: ${e.message}`);
      return false;
    }
    this.stats.hwQueueAllocs++;
    p0.set32(this.r.p0.gerror, p0.get32(this.r.p0.gerror) & ~INIT_ERR);
    p0.set32(this.r.p0.status, 1);
    // Push the cache to HW. GERRORN is not replayed (quirk Q3: a stale GERRORN could stall the queue).
    const hw = this.hostSlot(i);
    hw.write(0x0, 4, p0.get32(this.r.p0.cons));
    hw.write(0x4, 4, p0.get32(this.r.p0.prod));
    hw.write(0x8, 4, p0.get32(this.r.p0.config));
    return true;
  }

  private setupAll(): void {
    for (let i = 0; i < R.VCMDQS; i++) if (!this.setup(i)) return;
  }

  /** Free VCMDQ i's HW queue (if any) and zero its page0 cache. */
  free(i: number): void {
    const id = this.hwQueue[i];
    if (id === undefined) return;
    this.deps.host.backend.freeId(id, (m) => this.errors.push(m));
    this.hwQueue[i] = undefined;
    this.stats.hwQueueFrees++;
    this.page0[i]!.words.fill(0);
  }

  /** Free in descending order (the uAPI requires it). */
  private freeAll(): void {
    for (let i = R.VCMDQS - 1; i >= 0; i--) this.free(i);
  }

  /** Ops of logical queue i's slot in the host VINTF page0. */
  private hostSlot(i: number): { read(o: number, s: 4): number; write(o: number, s: 4, v: number): void } {
    const ops = this.page0Ops!;
    return { read: (o, s) => ops.read(0x80 * i + o, s), write: (o, s, v) => ops.write(0x80 * i + o, s, v) };
  }

  private hwMode(i: number): boolean {
    return this.hwQueue[i] !== undefined && this.page0Ops !== undefined;
  }

  // ------------------------------------------------------------------------------------------
  // MMIO decode (spec §2.1–2.2)

  read(offset: number, size: 1 | 2 | 4): number {
    return Number(this.readAny(offset, size));
  }

  read64(offset: number): bigint {
    return this.readAny(offset, 8);
  }

  write(offset: number, size: 1 | 2 | 4, value: number): void {
    if (size !== 4) {
      this.deps.log.guestError(SRC, `tegra241_cmdqv_write bad write size ${size} at ${hex(offset, 5)}`);
      return;
    }
    this.write32(offset, value >>> 0);
    this.deps.tracer.emit(T_WRITE, offset, value >>> 0, 4);
  }

  write64(offset: number, value: bigint): void {
    const p1 = this.page1Decode(offset);
    if (p1 && (p1.reg === 0x0 || p1.reg === 0x8)) {
      this.page1Write(p1.index, p1.aperture, p1.reg, value, 8);
    } else {
      this.deps.log.unimp(SRC, `tegra241_cmdqv_write unhandled 64-bit write at ${hex(offset, 5)} (WI)`);
    }
    this.deps.tracer.emit(T_WRITE, offset, value, 8);
  }

  private readAny(offset: number, size: number): bigint {
    if (offset >= R.CMDQV_IO_LEN) {
      this.deps.log.unimp(SRC, `tegra241_cmdqv_read offset ${hex(offset, 5)} off limit (0x50000)`);
      this.deps.tracer.emit(T_READ, offset, 0n, size);
      return 0n;
    }
    const p0 = this.page0Decode(offset);
    if (p0) return BigInt(this.page0Read(p0.index, p0.aperture, p0.reg));
    const p1 = this.page1Decode(offset);
    if (p1) return this.page1Read(p1.index, p1.aperture, p1.reg, size);
    let v = 0;
    if (this.isConfigOffset(offset)) v = this.cfg.read(offset, 4);
    else this.deps.log.unimp(SRC, `tegra241_cmdqv_read unhandled read access at ${hex(offset, 5)}`);
    this.deps.tracer.emit(T_READ, offset, v, size);
    return BigInt(v);
  }

  private write32(offset: number, value: number): void {
    if (offset >= R.CMDQV_IO_LEN) {
      this.deps.log.unimp(SRC, `tegra241_cmdqv_write offset ${hex(offset, 5)} off limit (0x50000)`);
      return;
    }
    const p0 = this.page0Decode(offset);
    if (p0) return this.page0Write(p0.index, p0.aperture, p0.reg, value);
    const p1 = this.page1Decode(offset);
    if (p1) return this.page1Write(p1.index, p1.aperture, p1.reg, BigInt(value), 4);
    if (this.isConfigOffset(offset)) this.cfg.write(offset, 4, value);
    else this.deps.log.unimp(SRC, `tegra241_cmdqv_write unhandled write access at ${hex(offset, 5)}`);
  }

  /** Config-page offsets the decoder hands to the register table (others are unhandled). */
  private isConfigOffset(o: number): boolean {
    return o <= 0x8 || (o >= 0x14 && o <= 0x30) || (o >= 0x200 && o <= 0x204) || (o >= 0x1000 && o <= 0x10cc);
  }

  /** Page0 decode: direct 0x10000–0x10094, VINTF 0x30000–0x30094 (alias by −0x20000). */
  private page0Decode(off: number): { index: number; aperture: 'direct' | 'vi'; reg: number } | undefined {
    let aperture: 'direct' | 'vi' = 'direct';
    let o = off;
    if (o >= 0x30000 && o <= 0x30094) {
      o -= 0x20000;
      aperture = 'vi';
    }
    if (o < 0x10000 || o > 0x10094) return undefined;
    const index = (o - 0x10000) >>> 7;
    return { index, aperture, reg: o - 0x10000 - index * 0x80 };
  }

  /** Page1 decode: direct 0x20000–0x2008C, VINTF 0x40000–0x4008C. */
  private page1Decode(off: number): { index: number; aperture: 'direct' | 'vi'; reg: number } | undefined {
    let aperture: 'direct' | 'vi' = 'direct';
    let o = off;
    if (o >= 0x40000 && o <= 0x4008c) {
      o -= 0x20000;
      aperture = 'vi';
    }
    if (o < 0x20000 || o > 0x2008c) return undefined;
    const index = (o - 0x20000) >>> 7;
    return { index, aperture, reg: o - 0x20000 - index * 0x80 };
  }

  private page0Read(i: number, ap: string, reg: number): number {
    let v: number;
    let backing = 'cache';
    if (this.hwMode(i)) {
      backing = 'hw';
      v = this.hostSlot(i).read(reg, 4);
    } else if (reg <= 0x14) {
      v = this.page0[i]!.get32(R.PAGE0.registerAt(reg)!);
    } else {
      this.deps.log.unimp(SRC, `tegra241_cmdqv_read_vcmdq_page0 unhandled read access at ${hex(0x10000 + reg, 5)}`);
      v = 0;
    }
    this.deps.tracer.emit(T_P0_READ, i, ap, backing, 0x10000 + reg, v);
    return v;
  }

  private page0Write(i: number, ap: string, reg: number, value: number): void {
    const hwReg = reg === 0x0 || reg === 0x4 || reg === 0x8 || reg === 0x14;
    if (this.hwMode(i) && hwReg) {
      this.hostSlot(i).write(reg, 4, value);
      this.deps.tracer.emit(T_P0_WRITE, i, ap, 'hw', 0x10000 + reg, value);
      return;
    }
    const p0 = this.page0[i]!;
    switch (reg) {
      case 0x0:
        p0.set32(this.r.p0.cons, value);
        break;
      case 0x4:
        p0.set32(this.r.p0.prod, value);
        break;
      case 0x8:
        if (value & 1) {
          if (!(p0.get32(this.r.p0.gerror) & INIT_ERR)) p0.set32(this.r.p0.status, 1);
        } else {
          p0.set32(this.r.p0.status, 0);
        }
        p0.set32(this.r.p0.config, value);
        break;
      case 0x14:
        p0.set32(this.r.p0.gerrorn, value);
        break;
      default:
        this.deps.log.unimp(SRC, `tegra241_cmdqv_write_vcmdq_page0 unhandled write access at ${hex(0x10000 + reg, 5)}`);
    }
    this.deps.tracer.emit(T_P0_WRITE, i, ap, 'cache', 0x10000 + reg, value);
  }

  private page1Read(i: number, ap: string, reg: number, size: number): bigint {
    const f = this.page1[i]!;
    const base = f.get64(this.r.base);
    const dram = f.get64(this.r.dram);
    let v: bigint;
    switch (reg) {
      case 0x0:
        v = size === 8 ? base : base & 0xffff_ffffn;
        break;
      case 0x4:
        v = base >> 32n;
        break;
      case 0x8:
        v = size === 8 ? dram : dram & 0xffff_ffffn;
        break;
      case 0xc:
        v = dram >> 32n;
        break;
      default:
        this.deps.log.unimp(SRC, `tegra241_cmdqv_read_vcmdq_page1 unhandled read access at ${hex(0x20000 + reg, 5)}`);
        v = 0n;
    }
    this.deps.tracer.emit(T_P1_READ, i, ap, 0x20000 + reg, v);
    return v;
  }

  private page1Write(i: number, ap: string, reg: number, value: bigint, size: number): void {
    const f = this.page1[i]!;
    const isBase = reg === 0x0 || reg === 0x4;
    const r = isBase ? this.r.base : this.r.dram;
    const old = f.get64(r);
    let handled = true;
    if (size === 8 && (reg === 0x0 || reg === 0x8)) f.set64(r, value);
    else if (size === 4 && (reg === 0x0 || reg === 0x8)) f.set64(r, (old & 0xffff_ffff_0000_0000n) | (value & 0xffff_ffffn));
    else if (size === 4 && (reg === 0x4 || reg === 0xc)) f.set64(r, (old & 0xffff_ffffn) | ((value & 0xffff_ffffn) << 32n));
    else handled = false;
    this.deps.tracer.emit(T_P1_WRITE, i, ap, 0x20000 + reg, value);
    if (!handled) {
      this.deps.log.unimp(SRC, `tegra241_cmdqv_write_vcmdq_page1 unhandled ${size === 8 ? '64-bit ' : ''}write at ${hex(0x20000 + reg, 5)}`);
      return;
    }
    if (isBase) {
      const ok = this.setup(i);
      if (!ok) this.deps.log.guestError(SRC, `vcmdq${i}: HW queue allocation failed after BASE write`);
    }
  }

  // ------------------------------------------------------------------------------------------
  // Error path (spec §4)

  /** The vEVENTQ fd handler: read records, validate, propagate into registers and the IRQ. */
  pollEvents(): void {
    const q = this.veventq;
    if (!q) return;
    for (;;) {
      const r = this.deps.host.backend.readVevent(q, U.iommu_vevent_tegra241_cmdqv.size);
      if (r.kind === 'none') return;
      if (r.kind === 'error') {
        this.warnOnce(r.message);
        continue;
      }
      if (r.lost) this.deps.log.guestError(SRC, `vEVENTQ(type ${q.type} id ${q.id}): lost ${r.lost} event(s)`);
      this.propagate(U.iommu_vevent_tegra241_cmdqv.decode(r.payload).lvcmdq_err_map);
    }
  }

  private warnOnce(msg: string): void {
    const key = msg.replace(/\d+/g, '#');
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.errors.push(msg);
    this.deps.log.guestError(SRC, msg);
  }

  /** Copy the host's LVCMDQ error map into the VINTF0/global maps and pulse the IRQ if unmasked. */
  propagate(map: readonly bigint[]): void {
    const m0 = map[0]!;
    const m1 = map[1]!;
    if (m0 === 0n && m1 === 0n) return;
    const words = [m0 & 0xffff_ffffn, m0 >> 32n, m1 & 0xffff_ffffn, m1 >> 32n].map(Number);
    const f = this.cfg.file;
    words.forEach((w, k) => {
      f.set32(this.r.lvErr[k]!, w);
      f.set32(this.r.cmdqErr[k]!, w);
    });
    f.set32(this.r.viErr0, f.get32(this.r.viErr0) | 1);
    this.stats.errorEvents++;
    if (!(f.get32(this.r.viMask0) & 1)) {
      this.stats.irqs++;
      this.irq.pulse();
    }
    this.deps.tracer.emit(T_ERR_MAP, words[3]!, words[2]!, words[1]!, words[0]!);
  }
}
