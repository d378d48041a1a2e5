/**
 * `Machine.save()`: the whole VM between two guest accesses, as an image (image.ts). Nothing is
 * changed on the machine: the host state the guest can see (HW queue registers, pending
 * vEVENTs) is read, not drained, so the VM runs on exactly as if no save had happened.
 */

import { assertPlainState, type PlainValue } from '../../kit/persist.js';
import type { Machine } from '../machine.js';
import { encodePlain } from './codec.js';
import { forEachTouchedRam } from './guest-ram.js';
import { writeImage, type ImageSection } from './image.js';
import { ramSection, type RamBlock } from './ram-section.js';
import { SECTION, type HostUnitMeta, type ImageMeta, type SavedAccelSmmu, type SavedDispatch, type VmmImage } from './state.js';

/** Options of {@link saveMachine}. */
export interface SaveOptions {
  /** Include guest RAM (default true). A migration sends RAM itself and saves with false. */
  readonly ram?: boolean;
}

/** The image of `m` (see `Machine.save`). */
export function saveMachine(m: Machine, opts: SaveOptions = {}): Uint8Array {
  const withRam = opts.ram !== false;
  const meta: ImageMeta = {
    argv: [...m.argv],
    ramBytes: m.ramBytes,
    ramPageSize: m.ramPageSize,
    hugepages: m.ramPageSize > m.host.config.pageSize,
    hostUnits: hostUnits(m),
    withRam,
  };
  const vmm = saveVmm(m);
  const sections: ImageSection[] = [
    { name: SECTION.meta, data: encodePlain(meta as unknown as PlainValue) },
    { name: SECTION.vmm, data: encodePlain(vmm as unknown as PlainValue) },
  ];
  if (m.guestSoftware) {
    const guest = m.guestSoftware.saveGuest();
    assertPlainState(guest, 'guest');
    sections.push({ name: SECTION.guest, data: encodePlain(guest) });
  }
  if (withRam) sections.push(ramOf(m));
  return writeImage(sections);
}

/** The host features the guest saw through each passthrough device. */
export function hostUnits(m: Machine): HostUnitMeta[] {
  return m.devices.map((d) => {
    const dev = m.host.config.devices.find((x) => x.bdf === d.opts.host);
    const smmu = m.host.config.smmus.find((s) => s.name === dev?.smmu);
    return { bdf: d.opts.host, smmuIdr: smmu ? [...smmu.idr] : [], cmdqv: smmu?.cmdqv ? JSON.stringify(smmu.cmdqv) : '' };
  });
}

/** The guest RAM that holds data, as the `ram` section (ram-section.ts): one copy, straight into the image. */
function ramOf(m: Machine): ImageSection {
  const blocks: RamBlock[] = [];
  forEachTouchedRam(m, (offset, bytes) => blocks.push({ offset, bytes }));
  return ramSection(blocks);
}

/** The VMM's devices, the guest-visible host state, IRQs, clock and pending main-loop work. */
function saveVmm(m: Machine): VmmImage {
  const fdTargets = new Map<number, { smmu: number; queue: 'smmuv3' | 'cmdqv' }>();
  const smmus: SavedAccelSmmu[] = m.smmus.map((s, i) => {
    const accel = s.dev.save();
    const cmdqv = s.cmdqv?.save();
    const ctx = iommufdContext(m, i);
    const smmuQ = s.dev.veventq;
    const cmdqvQ = s.cmdqv?.veventq;
    if (smmuQ) fdTargets.set(smmuQ.fd, { smmu: i, queue: 'smmuv3' });
    if (cmdqvQ) fdTargets.set(cmdqvQ.fd, { smmu: i, queue: 'cmdqv' });
    return {
      id: s.dev.props.id,
      accel,
      cmdqv,
      vevents: {
        smmuv3: smmuQ && ctx ? ctx.pendingVevents(smmuQ.id) : [],
        cmdqv: cmdqvQ && ctx ? ctx.pendingVevents(cmdqvQ.id) : [],
      },
    };
  });
  const dispatches: SavedDispatch[] = m.mainLoop.pendingDispatches().map((p) => {
    const t = fdTargets.get(p.fd);
    if (!t) throw new Error(`save: a main-loop dispatch is pending for fd ${p.fd}, which is no vEVENTQ of the machine`);
    return { ...t, at: p.at };
  });
  return {
    clockNs: m.clock.now,
    dispatches,
    irqs: [...m.irqs].map(([gsiv, line]) => ({ gsiv, ...line.save() })),
    pci: m.pci.save(),
    smmus,
    emulated: m.emulatedSmmus.map((e) => e.device.save()),
  };
}

/** The host's iommufd context behind accelerated SMMU `i` (its devices' backend). */
export function iommufdContext(m: Machine, i: number) {
  const s = m.smmus[i]!;
  const dev = m.devices.find((d) => d.smmu === s);
  const backend = dev?.opts.iommufd ? m.backends.get(dev.opts.iommufd) : undefined;
  return backend ? m.proc.iommufdOf(backend.fd) : undefined;
}
