/**
 * The tegra241-cmdqv extension of the arm-smmu-v3 iommufd operations (docs/reference/tegra241-cmdqv.md
 * §5; docs/reference/iommufd-uapi.md §4–8): its IOMMU_GET_HW_INFO type, a vIOMMU type backed by a user VINTF whose
 * page0 the VMM mmaps, logical VCMDQs as HW queues, SID match/replace pairs for vDEVICEs, and
 * VINTF queue errors reported on its own vEVENTQ type. Everything else is the SMMUv3's.
 */

import { CMDQV_PAGE_SIZE } from '../../arch/tegra241-cmdqv/registers.js';
import { Errno, ErrnoError } from '../../uapi/errno.js';
import * as U from '../../uapi/iommufd.js';
import type { IommuPagingDomain, UserData, ViommuCore, ViommuOps } from '../iommufd/driver.js';
import type { PhysicalMemory } from '../memory/physical-memory.js';
import type { HostSmmu } from '../smmuv3/smmu.js';
import type { SmmuDriver } from './arm-smmu-v3.js';
import { ArmSmmuV3Iommufd, ArmSmmuV3Viommu, s2Domain, type Smmuv3S2Domain } from './arm-smmu-v3-iommufd.js';
import type { HostDevice } from './host-device.js';
import type { CmdqvDriver, UserVintf } from './tegra241-cmdqv-driver.js';

/** Largest vSID a VINTF's SID_MATCH takes from user space (UINT_MAX). */
const MAX_VSID = 0xffff_ffffn;
/** What a VMM maps of a VINTF: its page0 (the VCMDQ control registers). */
const VINTF_MMAP_LENGTH = CMDQV_PAGE_SIZE;

/** A TEGRA241_CMDQV vIOMMU: an SMMUv3 vIOMMU plus a user VINTF. */
export class Tegra241CmdqvViommu extends ArmSmmuV3Viommu {
  /** Guest StreamID → SID match/replace pair of each vDEVICE. */
  private readonly sidSlots = new Map<bigint, number>();

  constructor(
    driver: SmmuDriver,
    parent: Smmuv3S2Domain,
    private readonly cmdqv: CmdqvDriver,
    readonly vintf: UserVintf,
  ) {
    super(driver, parent);
  }

  override init(core: ViommuCore, data: UserData): void {
    const offset = core.allocMmap(VINTF_MMAP_LENGTH, this.cmdqv.hw.vintfPage0Ops(this.vintf.index));
    this.vintf.onError = (map) => {
      core.reportEvent(U.iommu_veventq_type.IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV, U.iommu_vevent_tegra241_cmdqv.encode({ lvcmdq_err_map: map }));
    };
    // Reported last: a failure here (a user buffer longer than the struct) undoes the VINTF and mmap.
    const layout = U.iommu_viommu_tegra241_cmdqv;
    data.copyStructOut(layout.encode({ out_vintf_mmap_offset: BigInt(offset), out_vintf_mmap_length: BigInt(VINTF_MMAP_LENGTH) }), layout.size);
  }

  override destroy(): void {
    this.cmdqv.freeVintf(this.vintf);
  }

  override vdeviceInit(virtId: bigint, dev: HostDevice): void {
    // tegra241_vintf_init_vsid takes a u32 vSID (docs/reference/iommufd-uapi.md §6).
    if (virtId > MAX_VSID) throw new ErrnoError(Errno.EINVAL, `virt_id 0x${virtId.toString(16)} above UINT_MAX`);
    this.sidSlots.set(virtId, this.cmdqv.allocSid(this.vintf, Number(virtId), dev.sid));
    super.vdeviceInit(virtId, dev);
  }

  override vdeviceDestroy(virtId: bigint): void {
    const slot = this.sidSlots.get(virtId);
    if (slot !== undefined) this.cmdqv.freeSid(this.vintf, slot);
    this.sidSlots.delete(virtId);
    super.vdeviceDestroy(virtId);
  }

  override supportsHwQueue(type: number): boolean {
    return type === U.iommu_hw_queue_type.IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV;
  }

  override hwQueueInit(index: number, pa: number, length: number): void {
    this.cmdqv.allocQueue(this.vintf, index, pa, length, this.driver.cmdqs);
  }

  override hwQueueDestroy(index: number): void {
    this.cmdqv.freeQueue(this.vintf, index);
  }

  hwQueueLoadState(index: number, page0: Uint32Array): void {
    this.cmdqv.loadQueueState(this.vintf, index, page0);
  }
}

/** The iommufd operations of an SMMU with a Tegra241 CMDQV. */
export class Tegra241CmdqvIommufd extends ArmSmmuV3Iommufd {
  constructor(instance: string, hw: HostSmmu, driver: SmmuDriver, phys: PhysicalMemory, private readonly cmdqv: CmdqvDriver) {
    super(instance, hw, driver, phys);
  }

  override hwInfo(type: number): { type: number; data: Uint8Array } {
    if (type !== U.iommu_hw_info_type.IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV) return super.hwInfo(type);
    const cmdqv = this.cmdqv;
    const data = U.iommu_hw_info_tegra241_cmdqv.encode({
      version: cmdqv.version,
      log2vcmdqs: Math.log2(cmdqv.perVintf),
      log2vsids: Math.log2(cmdqv.sidsPerVintf),
    });
    return { type, data };
  }

  override supportsViommu(type: number): boolean {
    return type === U.iommu_viommu_type.IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV || super.supportsViommu(type);
  }

  override allocViommu(type: number, parent: IommuPagingDomain, data: UserData): ViommuOps {
    if (type !== U.iommu_viommu_type.IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV) return super.allocViommu(type, parent, data);
    // copy_struct_from_user rules (docs/reference/iommufd-uapi.md §5): every field is in the first version.
    const layout = U.iommu_viommu_tegra241_cmdqv;
    data.copyStruct(layout.size, layout.size);
    const domain = s2Domain(parent);
    return new Tegra241CmdqvViommu(this.driver, domain, this.cmdqv, this.cmdqv.allocVintf(domain.vmid));
  }
}
