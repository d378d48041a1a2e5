/** IORT layout constants (Arm DEN0049; docs/reference/acpi.md §2): shared by the VMM's builder and the guest's parser. */

/** IORT table revision QEMU writes (E.d, the first with usable RMR nodes). */
export const IORT_REVISION = 5;

/** IORT node types. */
export const IortNodeType = {
  ItsGroup: 0,
  NamedComponent: 1,
  RootComplex: 2,
  SmmuV1V2: 3,
  SmmuV3: 4,
  Pmcg: 5,
  Rmr: 6,
} as const;

/** Node revisions QEMU writes. */
export const IortNodeRevision = { ItsGroup: 1, SmmuV3: 4, RootComplex: 3, Rmr: 3 } as const;

/** Byte sizes of the IORT structures. */
export const IortSize = {
  /** ACPI header + node count + node array offset + reserved. */
  Header: 48,
  NodeHeader: 16,
  IdMapping: 20,
  /** ITS group node with one ITS. */
  ItsGroup: 24,
  /** SMMUv3 node without its ID mappings. */
  SmmuV3: 68,
  /** Root-complex node (revision 3) without its ID mappings. */
  RootComplex: 36,
  /** RMR node header up to its ID-mapping array. */
  RmrHeader: 28,
  MemoryRangeDescriptor: 20,
} as const;

/** SMMUv3 node flag: COHACC override (the SMMU's table walks are coherent). */
export const SMMUV3_FLAG_COHACC = 1;
/** ID mapping flag: single mapping. */
export const ID_MAPPING_SINGLE = 1;
