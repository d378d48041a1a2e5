/**
 * The description of a simulated host: RAM and page size, physical SMMUv3 instances (with or
 * without a Tegra241 CMDQV), and assignable PCI devices. The default matches a Grace system.
 */

/** One Tegra241 CMDQV attached to an SMMU (docs/reference/tegra241-cmdqv.md §3.1 PARAM). */
export interface CmdqvConfig {
  /** PARAM.CMDQV_VER. */
  readonly version: number;
  /** log2 of the number of global VCMDQs (PARAM[7:4]); 7 = 128. */
  readonly log2Vcmdqs: number;
  /** log2 of the number of VINTFs (PARAM[11:8]); 6 = 64. */
  readonly log2Vintfs: number;
  /** log2 of SID match/replace pairs per VINTF (PARAM[15:12]); 4 = 16. */
  readonly log2SidsPerVintf: number;
}

/** One physical SMMUv3. */
export interface SmmuConfig {
  readonly name: string;
  /** SMMU_IDR0..5 as the hardware reports them. */
  readonly idr: readonly [number, number, number, number, number, number];
  readonly iidr: number;
  readonly aidr: number;
  /** Present when the SMMU has a companion Tegra241 CMDQV. */
  readonly cmdqv?: CmdqvConfig;
}

/** One assignable PCI device (VFIO). */
export interface DeviceConfig {
  /** PCI address, e.g. `0009:01:00.0`. */
  readonly bdf: string;
  /** Physical StreamID. */
  readonly sid: number;
  /** Name of the SMMU it sits behind. */
  readonly smmu: string;
  /**
   * The device has a PCIe ATS capability. Default true, as Grace's passthrough devices do; with
   * false IOMMU_GET_HW_INFO reports IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED.
   */
  readonly ats?: boolean;
  /** PCI vendor ID (default 0x10de, NVIDIA). */
  readonly vendor?: number;
  /** PCI device ID (default 0x2342, a GH100 as on Grace Hopper). */
  readonly device?: number;
  /** 24-bit class code (default 0x030200, 3D controller). */
  readonly classCode?: number;
  /** Memory BARs (default {@link GRACE_DEVICE_BARS}). */
  readonly bars?: readonly HostBarConfig[];
}

/** One memory BAR of a host device: its index, size (power of two >= 16), width and prefetchability. */
export interface HostBarConfig {
  readonly index: number;
  readonly size: number;
  readonly is64: boolean;
  readonly prefetch: boolean;
}

/** Default identity of a host device: an NVIDIA GH100 3D controller, revision a1. */
export const GRACE_DEVICE_IDS = { vendor: 0x10de, device: 0x2342, classCode: 0x03_02_00, revision: 0xa1 } as const;

/**
 * Default BARs: a 16 MiB 32-bit register BAR0 and a 32 MiB 64-bit prefetchable BAR2 (a real
 * GH100's BAR2 is far larger; this size keeps guest placement small).
 */
export const GRACE_DEVICE_BARS: readonly HostBarConfig[] = [
  { index: 0, size: 0x100_0000, is64: false, prefetch: false },
  { index: 2, size: 0x200_0000, is64: true, prefetch: true },
];

/** A host machine. */
export interface HostConfig {
  readonly ramBytes: number;
  /** Base page size of the host kernel. */
  readonly pageSize: 4096 | 16384 | 65536;
  /** Whether anonymous VMM memory can be backed by hugepages. */
  readonly hugepages: boolean;
  /** Hugepage size when `hugepages` is on. */
  readonly hugepageSize: number;
  readonly smmus: readonly SmmuConfig[];
  readonly devices: readonly DeviceConfig[];
}

/**
 * Grace-like SMMUv3 ID registers: 2-level stream table, S1+S2, ASID16/VMID16, AArch64 tables,
 * coherent, 16-bit SIDs, 20-bit SSIDs, CMDQS = 19, EVTQS = 19, RIL, 48-bit OAS, all granules.
 */
export const GRACE_SMMU_IDR: SmmuConfig['idr'] = [
  // IDR0: S1P[1] S2P[0] TTF=AArch64(2)[3:2] COHACC[4] ASID16[12] ATS[10] VMID16[18] ST_LEVEL=2lvl(1)[28:27] TTENDIAN=LE(2)[22:21] STALL_MODEL=0
  (1 << 0) | (1 << 1) | (2 << 2) | (1 << 4) | (1 << 10) | (1 << 12) | (1 << 18) | (2 << 21) | (1 << 27),
  // IDR1: SIDSIZE=16[5:0] SSIDSIZE=20[10:6] PRIQS=19[15:11] EVTQS=19[20:16] CMDQS=19[25:21]
  16 | (20 << 6) | (19 << 11) | (19 << 16) | (19 << 21),
  0,
  // IDR3: RIL[10] BBML=2[12:11]
  (1 << 10) | (2 << 11),
  0,
  // IDR5: OAS=48 bits(5)[2:0] GRAN4K[4] GRAN16K[5] GRAN64K[6] VAX=0
  5 | (1 << 4) | (1 << 5) | (1 << 6),
];

/** The Grace CMDQV: version 1, 128 VCMDQs, 64 VINTFs, 16 SIDs per VINTF. */
export const GRACE_CMDQV: CmdqvConfig = { version: 1, log2Vcmdqs: 7, log2Vintfs: 6, log2SidsPerVintf: 4 };

/** Default host: 64 GiB, 4 KiB pages with 1 GiB hugepages, one SMMU with CMDQV, two devices. */
export const DEFAULT_HOST: HostConfig = {
  ramBytes: 64 * 2 ** 30,
  pageSize: 4096,
  hugepages: true,
  hugepageSize: 2 ** 30,
  smmus: [{ name: 'smmu0', idr: GRACE_SMMU_IDR, iidr: 0x0001_043b, aidr: 0x2, cmdqv: GRACE_CMDQV }],
  devices: [
    { bdf: '0009:01:00.0', sid: 0x0100, smmu: 'smmu0' },
    { bdf: '0009:01:00.1', sid: 0x0101, smmu: 'smmu0' },
  ],
};

/** Check a host description; returns the list of problems (empty when valid). */
export function validateHostConfig(c: HostConfig): string[] {
  const errs: string[] = [];
  if (![4096, 16384, 65536].includes(c.pageSize)) errs.push(`pageSize ${c.pageSize} is not 4K, 16K or 64K`);
  if (!Number.isSafeInteger(c.ramBytes) || c.ramBytes < 2 ** 30 || c.ramBytes % c.pageSize !== 0) {
    errs.push(`ramBytes ${c.ramBytes} must be at least 1 GiB and a multiple of the page size`);
  }
  if (c.hugepages && (c.hugepageSize & (c.hugepageSize - 1)) !== 0 && !Number.isInteger(Math.log2(c.hugepageSize))) {
    errs.push(`hugepageSize ${c.hugepageSize} is not a power of two`);
  }
  if (c.hugepages && c.hugepageSize < c.pageSize) errs.push('hugepageSize is smaller than the page size');
  const names = new Set<string>();
  for (const s of c.smmus) {
    if (names.has(s.name)) errs.push(`duplicate SMMU name ${s.name}`);
    names.add(s.name);
    if (s.cmdqv) {
      const q = s.cmdqv;
      if (q.log2Vcmdqs > 7 || q.log2Vintfs > 6 || q.log2SidsPerVintf > 4 || q.log2Vintfs > q.log2Vcmdqs) {
        errs.push(`SMMU ${s.name}: CMDQV PARAM out of range (max 128 VCMDQs, 64 VINTFs, 16 SIDs, VINTFs <= VCMDQs)`);
      }
    }
  }
  const sids = new Set<string>();
  for (const d of c.devices) {
    const smmu = c.smmus.find((s) => s.name === d.smmu);
    if (!smmu) errs.push(`device ${d.bdf}: no SMMU named ${d.smmu}`);
    else if (d.sid >= 2 ** (smmu.idr[1] & 0x3f)) errs.push(`device ${d.bdf}: StreamID 0x${d.sid.toString(16)} exceeds the SMMU's SIDSIZE`);
    const key = `${d.smmu}:${d.sid}`;
    if (sids.has(key)) errs.push(`device ${d.bdf}: StreamID 0x${d.sid.toString(16)} already used on ${d.smmu}`);
    sids.add(key);
    for (const b of d.bars ?? []) {
      if (b.index < 0 || b.index > (b.is64 ? 4 : 5) || b.size < 16 || !Number.isInteger(Math.log2(b.size)) || (!b.is64 && b.size > 2 ** 31)) {
        errs.push(`device ${d.bdf}: BAR${b.index} of ${b.size} bytes is not a valid memory BAR`);
      }
    }
  }
  return errs;
}
