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

import type { HostConfig } from '../../host/config.js';
import { HostKernel } from '../../host/kernel/host-kernel.js';
import type { PlainValue } from '../../kit/persist.js';
import { parseVirtArgs } from '../../vmm/virt/options.js';
import { Machine, type MachineCreateOptions } from '../machine.js';
import { ByteReader, decodePlain } from './codec.js';
import { SnapshotError } from './errors.js';
import { loadRam, type RamSource } from './guest-ram.js';
import { readImage } from './image.js';
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
}

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
  const meta = decodePlain(need(SECTION.meta), `snapshot section '${SECTION.meta}'`) as unknown as ImageMeta;
  if (!meta || !Array.isArray(meta.argv) || typeof meta.ramBytes !== 'number') throw new SnapshotError(`snapshot section '${SECTION.meta}' does not describe a machine`);
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

/** The RAM section's blocks, each inside guest RAM. */
function checkRam(data: Uint8Array, ramBytes: number): void {
  forEachRamBlock(data, (offset, bytes) => {
    if (offset + bytes.length > ramBytes) throw new SnapshotError(`snapshot RAM block at offset 0x${offset.toString(16)} lies outside the VM's ${ramBytes} bytes of RAM`);
  });
}

function forEachRamBlock(data: Uint8Array, fn: (offset: number, bytes: Uint8Array) => void): void {
  const r = new ByteReader(data, `snapshot section '${SECTION.ram}'`);
  const n = r.u32();
  for (let i = 0; i < n; i++) {
    const offset = r.u64();
    const len = r.u32();
    fn(offset, r.bytes(len));
  }
  if (r.left !== 0) throw new SnapshotError(`snapshot section '${SECTION.ram}': ${r.left} bytes follow its blocks`);
}

/**
 * Whether the destination can run the image's VM as it was: its command line parses, the host
 * has each passthrough device behind an SMMU (and CMDQV) like the source's, and guest RAM gets
 * the same backing page size (IDR1.CMDQS and the HW queue sizes depend on it).
 */
function checkTopology(meta: ImageMeta, host: HostKernel | HostConfig): void {
  try {
    parseVirtArgs(meta.argv);
  } catch (e) {
    throw new SnapshotError(`snapshot image's command line does not parse: ${(e as Error).message}`);
  }
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
  const checked = checkImage(image, opts.ram);
  const host = opts.host ?? new HostKernel();
  checkTopology(checked.meta, host);
  const m = Machine.create(checked.meta.argv, { ...opts.create, host, firmware: false });
  try {
    load(m, checked, opts.ram);
  } catch (e) {
    m.close();
    const msg = e instanceof Error ? e.message : String(e);
    throw new SnapshotError(`restore failed, the machine was closed: ${msg}`);
  }
  return m;
}

function load(m: Machine, img: CheckedImage, ram: RamSource | undefined): void {
  const { vmm } = img;
  if (img.ram) forEachRamBlock(img.ram, (offset, bytes) => loadRam(m, offset, bytes));
  ram?.forEachChunk((offset, bytes) => loadRam(m, offset, bytes.subarray(0, Math.min(bytes.length, m.ramBytes - offset))));
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
