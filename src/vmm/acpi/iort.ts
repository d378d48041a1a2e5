/**
 * The IO Remapping Table of QEMU's `virt` machine (docs/reference/acpi.md §2): ITS group, SMMUv3
 * nodes, one PCI root-complex node with the RID-space split between SMMUs and the ITS, and
 * an RMR node per accelerated SMMU. Node order, revisions, identifiers and mapping order
 * are QEMU's, so the non-accelerated topologies reproduce QEMU's bios-tables-test blobs
 * byte for byte.
 */
import { ByteWriter, beginTable, finishTable, QEMU_OEM } from '../../arch/acpi/table.js';
import { MSI_IOVA_BASE, MSI_IOVA_LENGTH, planIort, type AcpiTopology, type RidRange } from './topology.js';

export { IORT_REVISION, IortNodeType, IortNodeRevision, IortSize, SMMUV3_FLAG_COHACC, ID_MAPPING_SINGLE } from '../../arch/acpi/iort-format.js';
import { IORT_REVISION, IortNodeType, IortNodeRevision, IortSize, SMMUV3_FLAG_COHACC, ID_MAPPING_SINGLE } from '../../arch/acpi/iort-format.js';

function idMapping(w: ByteWriter, r: RidRange, outputRef: number, flags = 0): void {
  // QEMU maps identically (output base = input base); the count field is "number of IDs − 1".
  w.u32(r.start).u32(r.count - 1).u32(r.start).u32(outputRef).u32(flags);
}

function nodeHeader(w: ByteWriter, type: number, length: number, revision: number, identifier: number, mappings: number, mappingOffset: number): void {
  w.u8(type).u16(length).u8(revision).u32(identifier).u32(mappings).u32(mappingOffset);
}

/**
 * Builds the IORT for a topology.
 *
 * Node order: ITS group (if the ITS is the MSI controller), SMMUv3s sorted by their first
 * RID, the root complex, then one RMR per accelerated SMMU in the same order. Identifiers:
 * SMMUv3 nodes carry their `identifier`; the ITS group, root complex and RMRs take a running
 * counter that every node (SMMUs included) advances, as QEMU's does.
 */
export function buildIort(topo: AcpiTopology): Uint8Array {
  const plan = planIort(topo);
  const hasSmmu = plan.smmus.length > 0;
  const rmrs = plan.smmus.filter((s) => s.accel);
  const nodeCount = (plan.its ? 1 : 0) + plan.smmus.length + 1 + rmrs.length;

  const w = new ByteWriter();
  beginTable(w, 'IORT', IORT_REVISION, topo.oem ?? QEMU_OEM);
  w.u32(nodeCount).u32(IortSize.Header).u32(0);

  let id = 0;
  let itsOffset = 0;
  if (plan.its) {
    itsOffset = w.length;
    nodeHeader(w, IortNodeType.ItsGroup, IortSize.ItsGroup, IortNodeRevision.ItsGroup, id++, 0, 0);
    // One ITS, whose identifier is the MADT GIC ITS translation ID 0.
    w.u32(1).u32(0);
  }

  const smmuOffset = new Map<number, number>();
  for (const p of plan.smmus) {
    const s = p.smmu;
    const m = plan.its ? 1 : 0;
    smmuOffset.set(p.index, w.length);
    nodeHeader(w, IortNodeType.SmmuV3, IortSize.SmmuV3 + IortSize.IdMapping * m, IortNodeRevision.SmmuV3, s.identifier, m, m > 0 ? IortSize.SmmuV3 : 0);
    id++;
    w.u64(s.base).u32(SMMUV3_FLAG_COHACC).u32(0).u64(0).u32(0 /* generic model */);
    // Sysbus IRQ order is EVTQ, PRIQ, CMD_SYNC, GERROR, while the node lists GERR before Sync.
    w.u32(s.irqBaseGsiv).u32(s.irqBaseGsiv + 1).u32(s.irqBaseGsiv + 3).u32(s.irqBaseGsiv + 2);
    w.u32(0 /* proximity domain */).u32(0 /* DeviceID mapping index: all GSIVs are wired */);
    if (m > 0) idMapping(w, { start: 0, count: 0x1_0000 }, itsOffset);
  }

  let rcMappings: { range: RidRange; ref: number }[];
  if (hasSmmu) {
    rcMappings = plan.smmus.flatMap((p) => p.ranges.map((range) => ({ range, ref: smmuOffset.get(p.index)! })));
    rcMappings.push(...plan.itsRanges.map((range) => ({ range, ref: itsOffset })));
  } else {
    rcMappings = plan.its ? [{ range: { start: 0, count: 0x1_0000 }, ref: itsOffset }] : [];
  }
  nodeHeader(w, IortNodeType.RootComplex, IortSize.RootComplex + IortSize.IdMapping * rcMappings.length, IortNodeRevision.RootComplex, id++, rcMappings.length, IortSize.RootComplex);
  // Fully coherent; no allocation hints; memory access flags CPM|DACS.
  w.u32(1).u8(0).u16(0).u8(0x03);
  w.u32(plan.ats ? 1 : 0).u32(0 /* PCI segment */).u8(64 /* address size limit */).u16(0 /* PASID caps */).u8(0);
  for (const m of rcMappings) idMapping(w, m.range, m.ref);

  for (const p of rmrs) {
    const descOffset = IortSize.RmrHeader + IortSize.IdMapping;
    nodeHeader(w, IortNodeType.Rmr, descOffset + IortSize.MemoryRangeDescriptor, IortNodeRevision.Rmr, id++, 1, IortSize.RmrHeader);
    w.u32(0 /* no remapping, Device-nGnRnE */).u32(1).u32(descOffset);
    // QEMU describes the SMMU's first RID range; a user-created SMMU has exactly one.
    idMapping(w, p.ranges[0]!, smmuOffset.get(p.index)!, ID_MAPPING_SINGLE);
    w.u64(MSI_IOVA_BASE).u64(MSI_IOVA_LENGTH).u32(0);
  }
  return finishTable(w);
}
