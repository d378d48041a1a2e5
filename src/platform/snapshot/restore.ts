/**
 * `Machine.restore()`: re-create a saved VM on a host through the calls its VMM makes at start
 * (the same command line: VFIO bind, IOAS, stage-2 HWPT, vIOMMU with its VINTF, page0 mmap,
 * vEVENTQ), then the objects the guest's configuration had made (vDEVICEs, the SMMUv3 vEVENTQ,
 * HW queues, nested HWPTs), then load the device state. The host may run other VMs: its VINTF
 * index, HW queue ids and VMIDs then differ from the image's, which the guest never sees.
 *
 * The image is checked whole before anything is created; a failure after creation closes the
 * machine, so the host gets every object, queue and page back.
 */

import { DEFAULT_HOST, type HostConfig } from '../../host/config.js';
import { HostKernel } from '../../host/kernel/host-kernel.js';
import type { PlainValue } from '../../kit/persist.js';
import { parseVirtArgs } from '../../vmm/virt/options.js';
import { Machine, type MachineCreateOptions } from '../machine.js';
import { decodePlain } from './codec.js';
import { SnapshotError } from './errors.js';
import { array, bad, bool, int, MAX_ID, optInt, record, str, time, typed, u32s } from './check.js';
import { adoptRam, loadRam, type RamSource } from './guest-ram.js';
import { readImage } from './image.js';
import { forEachRamBlock } from './ram-section.js';
import { iommufdContext } from './save.js';
import { SECTION, type HostUnitMeta, type ImageMeta, type VmmImage } from './state.js';

/** Options of {@link restoreMachine}. */
export interface RestoreOptions {
  /** The host to run on: a description (a new host) or a running one (default: the default host). */
  readonly host?: HostKernel | HostConfig;
  /** Guest RAM from elsewhere (a migration's page store), laid over the image's RAM if it has any. */
  readonly ram?: RamSource;
  /** Passed to `Machine.create` (cost model, trace). */
  readonly create?: Pick<MachineCreateOptions, 'costModel' | 'trace'>;
  /**
   * Hand the image's buffer (and the chunks of `ram`) over to the restored VM instead of
   * copying guest RAM out of them (default false: copy). Each 64 KiB RAM block that is one
   * whole host chunk becomes that chunk (`SparseMemory.adoptChunk`), so the VM's RAM stores
   * write into the caller's buffer and closing the VM zeroes those bytes: for a caller that
   * owns a fresh buffer and is done with it (`cmdqv run --restore` with the file it read, a
   * migration's destination with the pages it received). An image buffer a block was taken
   * from is refused by every later restore (in either mode): a second VM on it would share
   * the first one's memory. Blocks that are not one host chunk (RAM on 4 KiB pages) are
   * copied.
   */
  readonly adopt?: boolean;
}

/** The image buffers an `adopt` restore has handed to a VM: restoring one again would alias its RAM. */
const adopted = new WeakSet<ArrayBufferLike>();

/** The image's sections, decoded and checked. */
interface CheckedImage {
  readonly meta: ImageMeta;
  readonly vmm: VmmImage;
  readonly guest: PlainValue;
  readonly ram: Uint8Array | undefined;
}

/** Decode and check every section (nothing is created). */
function checkImage(image: Uint8Array, ram: RamSource | undefined): CheckedImage {
  const sections = readImage(image);
  const need = (name: string) => {
    const s = sections.get(name);
    if (!s) throw new SnapshotError(`snapshot image has no '${name}' section`);
    return s;
  };
  const meta = checkMeta(decodePlain(need(SECTION.meta), `snapshot section '${SECTION.meta}'`));
  const vmm = decodePlain(need(SECTION.vmm), `snapshot section '${SECTION.vmm}'`) as unknown as VmmImage;
  if (!vmm || !Array.isArray(vmm.smmus) || !Array.isArray(vmm.pci)) throw new SnapshotError(`snapshot section '${SECTION.vmm}' does not describe the VMM's devices`);
  const guestBytes = sections.get(SECTION.guest);
  const guest = guestBytes ? decodePlain(guestBytes, `snapshot section '${SECTION.guest}'`) : undefined;
  const ramBytes = sections.get(SECTION.ram);
  if (meta.withRam && !ramBytes) throw new SnapshotError(`snapshot image has no '${SECTION.ram}' section`);
  if (!ramBytes && !ram) throw new SnapshotError('snapshot image holds no guest RAM (saved with ram: false): give the RAM to restore');
  if (ram && ram.size !== meta.ramBytes) throw new SnapshotError(`the RAM given to restore is ${ram.size} bytes, the image's VM has ${meta.ramBytes}`);
  if (ramBytes) checkRam(ramBytes, meta.ramBytes);
  return { meta, vmm, guest, ram: ramBytes };
}

/** The `meta` section's shape; its command line parses and agrees with the RAM and devices it lists. */
function checkMeta(v: PlainValue): ImageMeta {
  if (v === null || typeof v !== 'object' || !('argv' in v)) throw new SnapshotError(`snapshot section '${SECTION.meta}' does not describe a machine`);
  const o = record(v, 'meta', ['argv', 'ramBytes', 'ramPageSize', 'hugepages', 'hostUnits', 'withRam']);
  const argv = array(o.argv, 'meta.argv', 4096).map((a, i) => str(a, `meta.argv[${i}]`));
  const units = array(o.hostUnits, 'meta.hostUnits', 256).map((u, i) => {
    const r = record(u, `meta.hostUnits[${i}]`, ['bdf', 'smmuIdr', 'cmdqv']);
    return { bdf: str(r.bdf, `meta.hostUnits[${i}].bdf`, 64), smmuIdr: array(r.smmuIdr, `meta.hostUnits[${i}].smmuIdr`, 16).map((x, j) => int(x, `meta.hostUnits[${i}].smmuIdr[${j}]`, 0, 0xffff_ffff)), cmdqv: str(r.cmdqv, `meta.hostUnits[${i}].cmdqv`) };
  });
  const meta: ImageMeta = {
    argv,
    ramBytes: int(o.ramBytes, 'meta.ramBytes', 1, Number.MAX_SAFE_INTEGER),
    ramPageSize: int(o.ramPageSize, 'meta.ramPageSize', 1, 2 ** 40),
    hugepages: bool(o.hugepages, 'meta.hugepages'),
    hostUnits: units,
    withRam: bool(o.withRam, 'meta.withRam'),
  };
  let parsed: ReturnType<typeof parseVirtArgs>;
  try {
    parsed = parseVirtArgs(argv);
  } catch (e) {
    throw new SnapshotError(`snapshot image's command line does not parse: ${(e as Error).message}`);
  }
  // The command line is what the destination builds: the facts the image states about it must be its own.
  if (parsed.memBytes !== meta.ramBytes) bad('meta.ramBytes', `is ${meta.ramBytes}, the image's command line gives the VM ${parsed.memBytes} bytes of RAM`);
  const bdfs = parsed.vfios.map((d) => d.host);
  if (bdfs.join(',') !== units.map((u) => u.bdf).join(',')) bad('meta.hostUnits', `lists host devices ${units.map((u) => u.bdf).join(', ') || 'none'}, the image's command line uses ${bdfs.join(', ') || 'none'}`);
  // An image must not make the destination read host files (an -trace events=FILE names one).
  if (parsed.traceEventFiles.length) bad('meta.argv', `names a trace events file (${parsed.traceEventFiles[0]}); a restore reads no files an image names`);
  return meta;
}

/** The RAM section's blocks, each inside guest RAM. */
function checkRam(data: Uint8Array, ramBytes: number): void {
  forEachRamBlock(data, (offset, bytes) => {
    if (offset + bytes.length > ramBytes) throw new SnapshotError(`snapshot RAM block at offset 0x${offset.toString(16)} lies outside the VM's ${ramBytes} bytes of RAM`);
  });
}

/**
 * Whether the destination can run the image's VM as it was: its command line parses, the host
 * has each passthrough device behind an SMMU (and CMDQV) like the source's, and guest RAM gets
 * the same backing page size (IDR1.CMDQS and the HW queue sizes depend on it).
 */
function checkTopology(meta: ImageMeta, host: HostKernel | HostConfig): void {
  const config = host instanceof HostKernel ? host.config : host;
  for (const u of meta.hostUnits as readonly HostUnitMeta[]) {
    const dev = config.devices.find((d) => d.bdf === u.bdf);
    if (!dev) throw new SnapshotError(`snapshot image's VM uses host device ${u.bdf}, which the destination host does not have (it has ${config.devices.map((d) => d.bdf).join(', ') || 'none'})`);
    const smmu = config.smmus.find((s) => s.name === dev.smmu);
    if (!smmu || smmu.idr.join(',') !== u.smmuIdr.join(',')) throw new SnapshotError(`host device ${u.bdf}: the destination's SMMU ${dev.smmu} differs from the source's (IDRs)`);
    if ((smmu.cmdqv ? JSON.stringify(smmu.cmdqv) : '') !== u.cmdqv) throw new SnapshotError(`host device ${u.bdf}: the destination's CMDQV behind ${dev.smmu} differs from the source's`);
    if (host instanceof HostKernel && host.device(u.bdf)?.binding) throw new SnapshotError(`host device ${u.bdf} is in use on the destination host (bound to another iommufd)`);
  }
  const page = meta.hugepages ? (config.hugepages ? config.hugepageSize : 0) : config.pageSize;
  if (page !== meta.ramPageSize) {
    throw new SnapshotError(`snapshot image's guest RAM is backed by ${meta.ramPageSize}-byte pages; the destination host gives ${page ? `${page}-byte pages` : 'no hugepages'}`);
  }
}

/** See `Machine.restore`. */
export function restoreMachine(image: Uint8Array, opts: RestoreOptions = {}): Machine {
  if (image instanceof Uint8Array && adopted.has(image.buffer)) throw new SnapshotError('snapshot image: its buffer was handed over to a VM restored from it (adopt) and may hold that VM\'s RAM now; restore from a copy of the image');
  const checked = checkImage(image, opts.ram);
  // No host given: a new default host, made by Machine.create on the VM's clock (as a boot's).
  const host = opts.host;
  checkTopology(checked.meta, host ?? DEFAULT_HOST);
  let m: Machine;
  try {
    m = Machine.create(checked.meta.argv, { ...opts.create, ...(host ? { host } : {}), firmware: false });
  } catch (e) {
    throw new SnapshotError(`snapshot image's VM cannot be created on the destination: ${e instanceof Error ? e.message : String(e)}`);
  }
  try {
    checkVmm(m, checked.vmm);
    load(m, checked, opts.ram, opts.adopt === true);
  } catch (e) {
    m.close();
    const msg = e instanceof Error ? e.message : String(e);
    throw new SnapshotError(`restore failed, the machine was closed: ${msg}`);
  }
  return m;
}

function load(m: Machine, img: CheckedImage, ram: RamSource | undefined, adopt: boolean): void {
  const { vmm } = img;
  /** Load a block (adopting it where asked and possible); whether it was adopted. */
  const put = (offset: number, bytes: Uint8Array): boolean => {
    if (adopt && adoptRam(m, offset, bytes)) return true;
    loadRam(m, offset, bytes);
    return false;
  };
  // The image's buffer is marked as soon as a block of it is taken (a later failure closes the
  // VM, which zeroes what it took); a buffer nothing was taken from stays the caller's.
  if (img.ram) {
    forEachRamBlock(img.ram, (offset, bytes) => {
      if (put(offset, bytes)) adopted.add(bytes.buffer);
    });
  }
  ram?.forEachChunk((offset, bytes) => put(offset, bytes.subarray(0, Math.min(bytes.length, m.ramBytes - offset))));
  // PCI first: bus numbers (the devices' StreamIDs) and BARs come from the bridges' registers.
  m.pci.restore(vmm.pci);
  if (vmm.emulated.length !== m.emulatedSmmus.length) throw new Error(`the image has ${vmm.emulated.length} emulated SMMUv3s, the machine ${m.emulatedSmmus.length}`);
  vmm.emulated.forEach((s, i) => m.emulatedSmmus[i]!.device.restore(s));
  if (vmm.smmus.length !== m.smmus.length) throw new Error(`the image has ${vmm.smmus.length} accelerated SMMUv3s, the machine ${m.smmus.length}`);
  // Every SMMU's vDEVICEs, vEVENTQ and HW queues, then every SMMU's nested HWPTs (the guest's order).
  const attach = vmm.smmus.map((saved, i) => {
    const s = m.smmus[i]!;
    if (saved.cmdqv && !s.cmdqv) throw new Error(`${saved.id}: the image has a CMDQV, the machine none`);
    const ctx = iommufdContext(m, i);
    return s.dev.restoreOnHost(saved.accel, () => {
      if (!saved.cmdqv) return;
      s.cmdqv!.restore(saved.cmdqv, (_index, hwQueueId, page0) => {
        if (!ctx) throw new Error(`${saved.id}: no iommufd for its HW queues`);
        ctx.loadHwQueueState(hwQueueId, page0);
      });
    });
  });
  for (const step of attach) step();
  vmm.smmus.forEach((saved, i) => {
    const s = m.smmus[i]!;
    const ctx = iommufdContext(m, i);
    // Events the source's host held for the VM wait in the new vEVENTQs.
    const smmuQ = s.dev.veventq;
    const cmdqvQ = s.cmdqv?.veventq;
    if (ctx && smmuQ && saved.vevents.smmuv3.length) ctx.injectVevents(smmuQ.id, saved.vevents.smmuv3);
    if (ctx && cmdqvQ && saved.vevents.cmdqv.length) ctx.injectVevents(cmdqvQ.id, saved.vevents.cmdqv);
  });
  for (const irq of vmm.irqs) {
    const line = m.irqs.get(irq.gsiv);
    if (!line) throw new Error(`the image has an interrupt at GSIV ${irq.gsiv}, the machine none`);
    line.restore(irq);
  }
  // The clock last: re-creating the objects charged modelled time, and the injected events
  // scheduled dispatches; both are replaced by the saved time and the saved dispatches.
  m.clock.cancelAll();
  m.clock.restoreTime(vmm.clockNs);
  m.mainLoop.restoreDispatches(
    vmm.dispatches.map((d) => {
      const s = m.smmus[d.smmu];
      const q = d.queue === 'smmuv3' ? s?.dev.veventq : s?.cmdqv?.veventq;
      if (!q) throw new Error(`a dispatch is pending for the ${d.queue} vEVENTQ of SMMU ${d.smmu}, which the machine does not have`);
      return { fd: q.fd, at: d.at };
    }),
  );
  m.restoredGuest = img.guest;
}

/** Most vEVENTs a queue holds in an image, and the largest payload (an SMMUv3 event record is 32 bytes). */
const MAX_VEVENTS = 4096;
const MAX_VEVENT_BYTES = 256;

/**
 * The `vmm` section against the machine its command line built (before any state is loaded or
 * any object beyond the command line's is made): every device's state has the machine's shape
 * (the same register files, functions, interrupt lines), ids and counts are in range, the ID
 * registers are the ones this machine derives from its properties and host, and read-only PCI
 * configuration bytes are the functions' own.
 */
function checkVmm(m: Machine, v: VmmImage): void {
  const o = record(v, 'vmm', ['clockNs', 'dispatches', 'irqs', 'pci', 'smmus', 'emulated']);
  time(o.clockNs, 'vmm.clockNs');
  if ((o.clockNs as number) > Number.MAX_SAFE_INTEGER) bad('vmm.clockNs', 'is past the clock\'s range');
  const smmus = array(o.smmus, 'vmm.smmus', m.smmus.length, true);
  array(o.dispatches, 'vmm.dispatches', 2 * m.smmus.length).forEach((d, i) => {
    const r = record(d, `vmm.dispatches[${i}]`, ['smmu', 'queue', 'at']);
    int(r.smmu, `vmm.dispatches[${i}].smmu`, 0, m.smmus.length - 1);
    if (r.queue !== 'smmuv3' && r.queue !== 'cmdqv') bad(`vmm.dispatches[${i}].queue`, `is ${String(r.queue)}, not smmuv3 or cmdqv`);
    time(r.at, `vmm.dispatches[${i}].at`);
  });
  const gsivs = new Set<number>();
  array(o.irqs, 'vmm.irqs', m.irqs.size).forEach((x, i) => {
    const r = record(x, `vmm.irqs[${i}]`, ['gsiv', 'level', 'count']);
    const gsiv = int(r.gsiv, `vmm.irqs[${i}].gsiv`, 0, 0xffff);
    if (!m.irqs.has(gsiv)) bad(`vmm.irqs[${i}].gsiv`, `is ${gsiv}, an interrupt the machine does not have`);
    if (gsivs.has(gsiv)) bad(`vmm.irqs[${i}].gsiv`, `${gsiv} is listed twice`);
    gsivs.add(gsiv);
    bool(r.level, `vmm.irqs[${i}].level`);
    int(r.count, `vmm.irqs[${i}].count`, 0, Number.MAX_SAFE_INTEGER);
  });
  const fresh = m.pci.save();
  array(o.pci, 'vmm.pci', fresh.length, true).forEach((x, i) => {
    const r = record(x, `vmm.pci[${i}]`, ['config', 'device']);
    const config = typed(r.config, `vmm.pci[${i}].config`, Uint8Array, fresh[i]!.config.length);
    const at = m.pci.functionAt(i).config.readOnlyMismatch(config);
    if (at >= 0) bad(`vmm.pci[${i}].config`, `byte 0x${at.toString(16)} is read-only, the function's is 0x${fresh[i]!.config[at]!.toString(16)}, the image's 0x${config[at]!.toString(16)}`);
    checkPciDevice(r.device, fresh[i]!.device, `vmm.pci[${i}].device`);
  });
  const emulated = array(o.emulated, 'vmm.emulated', m.emulatedSmmus.length, true);
  emulated.forEach((x, i) => {
    const own = m.emulatedSmmus[i]!.device.save();
    const r = record(x, `vmm.emulated[${i}]`, ['registers', 'idr']);
    typed(r.registers, `vmm.emulated[${i}].registers`, Uint32Array, own.registers.length);
    sameIdr(r.idr, own.idr, `vmm.emulated[${i}].idr`);
  });
  smmus.forEach((x, i) => checkAccel(m, i, x, `vmm.smmus[${i}]`));
}

function sameIdr(v: PlainValue, own: readonly number[], path: string): void {
  const idr = u32s(v, path, own.length);
  const k = idr.findIndex((w, j) => w !== own[j]);
  if (k >= 0) bad(`${path}[${k}]`, `is 0x${idr[k]!.toString(16)}, this machine's SMMU derives 0x${own[k]!.toString(16)} from its properties and host`);
}

/** A PCI function's own state: the same shape as the machine's (none, or its register words). */
function checkPciDevice(v: PlainValue, own: PlainValue, path: string): void {
  if (own === undefined) {
    if (v !== undefined) bad(path, 'holds state, the function has none');
    return;
  }
  const o = own as { registers: Uint32Array; armed: boolean };
  const r = record(v, path, ['registers', 'armed']);
  typed(r.registers, `${path}.registers`, Uint32Array, o.registers.length);
  bool(r.armed, `${path}.armed`);
}

function checkAccel(m: Machine, i: number, v: PlainValue, path: string): void {
  const s = m.smmus[i]!;
  const own = s.dev.save();
  const o = record(v, path, ['id', 'accel', 'cmdqv', 'vevents']);
  if (o.id !== s.dev.props.id) bad(`${path}.id`, `is ${String(o.id).slice(0, 40)}, the machine's SMMU ${i} is ${s.dev.props.id}`);
  const a = record(o.accel, `${path}.accel`, ['registers', 'idr', 'autoFinalised', 's2Hwpt', 'viommu', 'veventq', 'devices']);
  typed(a.registers, `${path}.accel.registers`, Uint32Array, own.registers.length);
  sameIdr(a.idr, own.idr, `${path}.accel.idr`);
  bool(a.autoFinalised, `${path}.accel.autoFinalised`);
  optInt(a.s2Hwpt, `${path}.accel.s2Hwpt`, 0, MAX_ID);
  if (a.viommu !== undefined) {
    const vi = record(a.viommu, `${path}.accel.viommu`, ['id', 's2Hwpt', 'abortHwpt', 'bypassHwpt']);
    for (const k of ['id', 's2Hwpt', 'abortHwpt', 'bypassHwpt']) int(vi[k], `${path}.accel.viommu.${k}`, 0, MAX_ID);
  }
  if (a.veventq !== undefined) {
    const q = record(a.veventq, `${path}.accel.veventq`, ['id', 'fd', 'type', 'lastSeq', 'started']);
    for (const k of ['id', 'fd', 'type']) int(q[k], `${path}.accel.veventq.${k}`, 0, MAX_ID);
    int(q.lastSeq, `${path}.accel.veventq.lastSeq`, -1, 0xffff_ffff);
    bool(q.started, `${path}.accel.veventq.started`);
  }
  // Devices: at most the machine's passthrough functions behind this SMMU, each once, by guest SID.
  const mine = m.devices.filter((d) => d.smmu === s);
  const seen = new Set<number>();
  array(a.devices, `${path}.accel.devices`, mine.length).forEach((x, j) => {
    const p = `${path}.accel.devices[${j}]`;
    const d = record(x, p, ['hostDevice', 'vdevId', 's1Hwpt', 'blocker'], ['hwpt', 's1Data']);
    const h = record(d.hostDevice, `${p}.hostDevice`, ['host', 'devId', 'vfioFd', 'guestSid']);
    str(h.host, `${p}.hostDevice.host`, 64);
    int(h.devId, `${p}.hostDevice.devId`, 0, MAX_ID);
    int(h.vfioFd, `${p}.hostDevice.vfioFd`, 0, MAX_ID);
    const sid = int(h.guestSid, `${p}.hostDevice.guestSid`, 0, 0xffff);
    // Which of this SMMU's devices it is shows once PCI is loaded (bus numbers): restoreOnHost finds it.
    if (seen.has(sid)) bad(`${p}.hostDevice.guestSid`, `0x${sid.toString(16)} is listed twice`);
    seen.add(sid);
    for (const k of ['vdevId', 's1Hwpt', 'hwpt']) optInt(d[k], `${p}.${k}`, 0, MAX_ID);
    if (d.blocker !== undefined) str(d.blocker, `${p}.blocker`);
    if (d.s1Data !== undefined) typed(d.s1Data, `${p}.s1Data`, Uint8Array, undefined, 256);
    if (d.s1Hwpt !== undefined && d.s1Data === undefined) bad(`${p}.s1Data`, 'is missing: the device has a nested HWPT');
  });
  if (o.cmdqv !== undefined) {
    if (!s.cmdqv) bad(`${path}.cmdqv`, 'is present, the machine\'s SMMU has no CMDQV');
    const ownCmdqv = s.cmdqv.save();
    const c = record(o.cmdqv, `${path}.cmdqv`, ['config', 'page0', 'page1']);
    typed(c.config, `${path}.cmdqv.config`, Uint32Array, ownCmdqv.config.length);
    for (const page of ['page0', 'page1'] as const) {
      const own = ownCmdqv[page];
      array(c[page], `${path}.cmdqv.${page}`, own.length, true).forEach((w, q) => typed(w, `${path}.cmdqv.${page}[${q}]`, Uint32Array, own[q]!.length));
    }
  }
  const ev = record(o.vevents, `${path}.vevents`, ['smmuv3', 'cmdqv']);
  for (const k of ['smmuv3', 'cmdqv'] as const) {
    array(ev[k], `${path}.vevents.${k}`, MAX_VEVENTS).forEach((p, j) => typed(p, `${path}.vevents.${k}[${j}]`, Uint8Array, undefined, MAX_VEVENT_BYTES));
  }
}
