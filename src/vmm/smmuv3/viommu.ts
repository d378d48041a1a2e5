/**
 * The host objects behind the accelerated SMMUv3 (QEMU's smmuv3-accel.c): the iommufd vIOMMU
 * with its abort and bypass nested HWPTs, each device's vDEVICE, and the installation of the
 * guest's STEs as nested stage-1 HWPTs (docs/reference/qemu-accel-smmuv3.md §4.4–4.5, §10). The guest's stream
 * table is read from guest memory here; the decoding is `ste-install.ts`.
 */

import * as R from '../../arch/smmuv3/registers.js';
import type { Tracer } from '../../kit/trace.js';
import { iommu_hwpt_data_type, iommu_viommu_type } from '../../uapi/iommufd.js';
import type { AccelDeviceState, AccelSmmuStats, AccelSmmuV3State } from './accel-state.js';
import type { AccelHostDevice, CmdqvOps } from './cmdqv-ops.js';
import { messageOf, type HostCalls } from './host-calls.js';
import type { SmmuRegisterFrame } from './register-frame.js';
import { ABORT_STE_DATA, BYPASS_STE_DATA, classifySte, findSte, nestedSteData, STRTAB_FMT_2LVL, type GuestMemory, type SteLookup } from './ste-install.js';
import type { EventPath } from './events.js';
import * as T from './trace-events.js';

/** What the vIOMMU part works with. */
export interface ViommuDeps {
  readonly state: AccelSmmuV3State;
  readonly frame: SmmuRegisterFrame;
  readonly host: HostCalls;
  readonly events: EventPath;
  readonly stats: AccelSmmuStats;
  readonly guestMemory: GuestMemory;
  readonly tracer: Tracer;
}

/** The vIOMMU, its HWPTs and the devices' STE installs. */
export class AccelViommu {
  constructor(private readonly deps: ViommuDeps) {}

  /** The device with guest StreamID `sid`, if attached. */
  findDevice(sid: number): AccelDeviceState | undefined {
    return this.deps.state.devices.find((device) => device.hostDevice.guestSid === sid);
  }

  /** The HWPT GBPA selects: abort or bypass. */
  gbpaHwpt(): number {
    const viommu = this.deps.state.viommu!;
    const { file, regs } = this.deps.frame;
    return R.GBPA.f.ABORT.get(file.get32(regs.gbpa)) ? viommu.abortHwpt : viommu.bypassHwpt;
  }

  /**
   * Install the guest STE of a device on the host (QEMU's smmuv3_accel_install_ste, docs/reference/qemu-accel-smmuv3.md §10):
   * the vDEVICE first (it programs the host's SID mapping even for abort/bypass), then the
   * abort, bypass or a new nested stage-1 HWPT, and the previous stage-1 HWPT is freed.
   * Throws with QEMU's message on failure.
   */
  installSte(device: AccelDeviceState): void {
    const { state, host, tracer } = this.deps;
    const viommu = state.viommu;
    if (!viommu || !host.backend) return;
    const { devId, guestSid: sid, vfioFd } = device.hostDevice;
    if (device.vdevId === undefined) device.vdevId = host.run((backend) => backend.allocVdev(devId, viommu.id, sid));
    const ste = this.lookupSte(sid);
    if (!ste.ok) return; // no STE to install (bad StreamID or fetch abort)
    let hwpt: number | undefined;
    let s1Hwpt: number | undefined;
    let s1Data: Uint8Array | undefined;
    if (!this.deps.frame.smmuEnabled) {
      hwpt = this.gbpaHwpt();
    } else {
      switch (classifySte(ste.words)) {
        case 'abort':
          hwpt = viommu.abortHwpt;
          break;
        case 'bypass':
          hwpt = viommu.bypassHwpt;
          break;
        case 'translate': {
          const nested = nestedSteData(ste.words);
          s1Data = nested.data.slice();
          s1Hwpt = host.run((backend) => backend.allocHwpt(devId, viommu.id, 0, iommu_hwpt_data_type.IOMMU_HWPT_DATA_ARM_SMMUV3, nested.data));
          tracer.emit(T.T_ACCEL_TRANSLATE_STE, sid, s1Hwpt, nested.ste1, nested.ste0);
          hwpt = s1Hwpt;
          break;
        }
        case 'invalid':
          break;
      }
    }
    if (hwpt === undefined) throw new Error(`Invalid STE config for sid 0x${sid.toString(16)}`);
    const target = hwpt;
    try {
      host.run((backend) => backend.attachDevice(vfioFd, target));
    } catch (e) {
      if (s1Hwpt !== undefined) host.freeId(s1Hwpt);
      throw e;
    }
    if (device.s1Hwpt !== undefined) host.freeId(device.s1Hwpt);
    device.s1Hwpt = s1Hwpt;
    device.s1Data = s1Hwpt === undefined ? undefined : s1Data;
    device.hwpt = target;
    const type = hwpt === viommu.abortHwpt ? 'abort' : hwpt === viommu.bypassHwpt ? 'bypass' : 'translate';
    this.deps.stats.steInstalls++;
    tracer.emit(T.T_ACCEL_INSTALL_STE, sid, type, hwpt);
  }

  /** Install a device's STE; a failure is reported (QEMU's per-device message), not thrown. */
  installSteReporting(device: AccelDeviceState): boolean {
    try {
      this.installSte(device);
      return true;
    } catch (e) {
      this.deps.host.report(`${messageOf(e)}\nDevice 0x${device.hostDevice.guestSid.toString(16)}: Failed to install STE`);
      return false;
    }
  }

  /** The SMMU was enabled: install every device's STE. */
  installAll(): void {
    for (const device of this.deps.state.devices) this.installSteReporting(device);
  }

  /** Attach the GBPA-selected HWPT to every device (QEMU's smmuv3_accel_attach_gbpa_hwpt). */
  attachGbpaHwptAll(): void {
    const { state, host } = this.deps;
    if (!state.viommu) return;
    const hwpt = this.gbpaHwpt();
    let ok = true;
    for (const device of state.devices) {
      try {
        host.run((backend) => backend.attachDevice(device.hostDevice.vfioFd, hwpt));
        device.hwpt = hwpt;
      } catch (e) {
        host.report(`${messageOf(e)}\nFailed to attach GBPA hwpt ${hwpt} for hiodi devid ${device.hostDevice.devId}`);
        ok = false;
      }
    }
    if (!ok) host.report('Failed to attach all GBPA based HWPTs properly');
  }

  /**
   * Allocate the vIOMMU (through the CMDQV when selected, else plain ARM_SMMUV3), the abort and
   * bypass HWPTs, the vEVENTQ if the guest already enabled its event queue, and attach the
   * GBPA-selected HWPT (docs/reference/qemu-accel-smmuv3.md §4.4–4.5). Failures unwind in reverse order.
   */
  allocViommu(dev: AccelHostDevice, ops: CmdqvOps | undefined): void {
    const { state, host, frame, events } = this.deps;
    const hint = (e: unknown) => new Error(`${messageOf(e)}\nUnable to alloc vIOMMU: hiodi devid 0x${dev.devId.toString(16)}: `);
    const s2Hwpt = state.s2Hwpt;
    if (s2Hwpt === undefined) throw hint(new Error('no nesting-parent HWPT (setS2Hwpt was not called)'));
    const undo: (() => void)[] = [];
    try {
      const id = ops
        ? host.run(() => ops.allocViommu(dev, s2Hwpt))
        : host.run((backend) => backend.allocViommu(dev.devId, iommu_viommu_type.IOMMU_VIOMMU_TYPE_ARM_SMMUV3, s2Hwpt).viommuId);
      undo.push(() => (ops ? host.run(() => ops.freeViommu()) : host.freeId(id)));
      const nested = iommu_hwpt_data_type.IOMMU_HWPT_DATA_ARM_SMMUV3;
      const abortHwpt = host.run((backend) => backend.allocHwpt(dev.devId, id, 0, nested, ABORT_STE_DATA()));
      undo.push(() => host.freeId(abortHwpt));
      const bypassHwpt = host.run((backend) => backend.allocHwpt(dev.devId, id, 0, nested, BYPASS_STE_DATA()));
      undo.push(() => host.freeId(bypassHwpt));
      state.viommu = { id, s2Hwpt, abortHwpt, bypassHwpt };
      undo.push(() => {
        state.viommu = undefined;
      });
      events.allocVeventq();
      undo.push(() => events.freeVeventq());
      // GBPA while the SMMU is off (cold plug); abort until the STE is installed when it is on.
      host.run((backend) => backend.attachDevice(dev.vfioFd, frame.smmuEnabled ? abortHwpt : this.gbpaHwpt()));
    } catch (e) {
      for (const step of undo.reverse()) step();
      throw hint(e);
    }
  }

  /** The generic vIOMMU free (last device gone): vEVENTQ, bypass, abort, vIOMMU. */
  freeViommu(): void {
    const { state, host, events } = this.deps;
    const viommu = state.viommu;
    if (!viommu) return;
    events.freeVeventq();
    host.freeId(viommu.bypassHwpt);
    host.freeId(viommu.abortHwpt);
    host.freeId(viommu.id);
    state.viommu = undefined;
  }

  /** The guest STE of `sid` from the stream table in guest memory. */
  private lookupSte(sid: number): SteLookup {
    const { frame, tracer } = this.deps;
    const { file, regs } = frame;
    const cfg = file.get32(regs.strtabCfg);
    const fmt = R.STRTAB_BASE_CFG.f.FMT.get(cfg);
    const split = R.STRTAB_BASE_CFG.f.SPLIT.get(cfg);
    tracer.emit(T.T_FIND_STE, sid, fmt === STRTAB_FMT_2LVL ? 1 : 0, split);
    return findSte(
      this.deps.guestMemory,
      {
        base: frame.address(regs.strtabBase, R.STRTAB_BASE.f.ADDR),
        log2size: R.STRTAB_BASE_CFG.f.LOG2SIZE.get(cfg),
        split,
        fmt,
        sidSize: R.IDR1.f.SIDSIZE.get(file.get32(regs.idr[1]!)),
      },
      sid,
      this.steWalkTrace,
    );
  }

  /** The stream-table walk's trace points: one object for the device's life. */
  private readonly steWalkTrace = {
    twoLevel: (strtabBase: number, l1ptr: number, l1Off: number, l2ptr: number, l2Off: number, maxL2: number) =>
      this.deps.tracer.emit(T.T_FIND_STE_2LVL, strtabBase, l1ptr, l1Off, l2ptr, l2Off, maxL2),
    fetch: (addr: number) => this.deps.tracer.emit(T.T_GET_STE, addr),
  };
}
