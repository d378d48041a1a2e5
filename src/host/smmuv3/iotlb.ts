/** Moved to the shared SMMUv3 engine (docs/design.md, "Shared SMMUv3 engine"); re-exported for the host's importers. */
export * from '../../arch/smmuv3/iotlb.js';
