/**
 * The accelerated SMMUv3's register frame: the register file (declared in
 * `arch/smmuv3/registers.ts`) behind the two 64 KiB MMIO pages, with QEMU's MMIO trace points,
 * the reset values, the decoded fields the device model acts on, and the interrupt outputs
 * with GERROR's toggle protocol. Behaviour on register writes (CR0, GBPA, ...) belongs to the
 * device and is hooked on {@link SmmuRegisterFrame.bank}.
 */

import { CERROR_ILL, opName } from '../../arch/smmuv3/commands.js';
import * as R from '../../arch/smmuv3/registers.js';
import { hex } from '../../kit/bits.js';
import { IrqLine } from '../../kit/irq.js';
import type { ModelLog } from '../../kit/log.js';
import { MemoryRegion, type RegionOps } from '../../kit/memory-region.js';
import { RegisterBank } from '../../kit/register-bank.js';
import type { Field } from '../../kit/bits.js';
import type { RegisterFile, RegisterInfo } from '../../kit/registers.js';
import type { Tracer } from '../../kit/trace.js';
import { SMMU_AIDR, SMMU_CMDQS, SMMU_EVENTQS, type Idr } from './idr.js';
import * as T from './trace-events.js';

/** Interrupt outputs, in sysbus order (QEMU's SMMUIrq). */
export const SMMU_IRQ_EVTQ = 0;
export const SMMU_IRQ_PRIQ = 1;
export const SMMU_IRQ_CMD_SYNC = 2;
export const SMMU_IRQ_GERROR = 3;

/** GERROR.CMDQ_ERR as a toggle mask. */
const CMDQ_ERR = R.GERROR.f.CMDQ_ERR.set(0, 1);


/** Register file, MMIO region and interrupt lines of one accelerated SMMUv3. */
export class SmmuRegisterFrame {
  /** Register file and MMIO dispatch. */
  readonly bank: RegisterBank;
  readonly regs: R.Smmuv3Registers;
  /** The 0x20000-byte register frame (sysbus MMIO 0). */
  readonly mmio: MemoryRegion;
  /** EVENTQ, PRIQ, CMD_SYNC, GERROR (sysbus IRQs 0–3). */
  readonly irqs: readonly [IrqLine, IrqLine, IrqLine, IrqLine];

  constructor(
    /** QOM id of the SMMU (names the region and the lines). */
    id: string,
    /** Log source of the SMMU's guest errors. */
    readonly logSource: string,
    private readonly log: ModelLog,
    private readonly tracer: Tracer,
  ) {
    const layout = R.smmuv3Layout();
    this.bank = new RegisterBank(logSource, layout, log);
    this.regs = R.smmuv3Registers();
    this.bank.onWrite(R.IRQ_CTRL, () => this.file.set32(this.regs.irqCtrlAck, this.file.get32(this.regs.irqCtrl)));
    this.mmio = MemoryRegion.mmio(`arm-smmuv3:${id}`, R.SMMUV3_MMIO_SIZE, this.tracedOps());
    this.irqs = [new IrqLine(`${id}.eventq`), new IrqLine(`${id}.priq`), new IrqLine(`${id}.cmd-sync`), new IrqLine(`${id}.gerror`)];
  }

  get file(): RegisterFile {
    return this.bank.file;
  }

  /** Register reset: declared reset values, then the ID registers and queue sizes. */
  reset(idr: Idr): void {
    this.bank.reset();
    this.syncIdr(idr, true);
    this.file.set32(this.regs.iidr, 0);
    this.file.set32(this.regs.aidr, SMMU_AIDR);
    // QEMU resets the queues' LOG2SIZE to the maximum (CMDQS / EVENTQS = 19).
    this.file.setField(this.regs.cmdqBase, R.CMDQ_BASE.f.LOG2SIZE, SMMU_CMDQS);
    this.file.setField(this.regs.eventqBase, R.EVENTQ_BASE.f.LOG2SIZE, SMMU_EVENTQS);
  }

  /** Copy the derived ID registers into the register file; CMDQS keeps its cap unless resetting. */
  syncIdr(idr: Idr, resetCmdqs: boolean): void {
    const cmdqs = this.cmdqs;
    idr.forEach((value, i) => this.file.set32(this.regs.idr[i]!, value));
    if (!resetCmdqs) this.cmdqs = cmdqs;
  }

  /** IDR1.CMDQS as advertised (a CMDQV may cap it). */
  get cmdqs(): number {
    return this.file.field(this.regs.idr[1]!, R.IDR1.f.CMDQS);
  }
  set cmdqs(cmdqs: number) {
    this.file.setField(this.regs.idr[1]!, R.IDR1.f.CMDQS, cmdqs);
  }

  /** Byte address held in an address field of a 64-bit register (the field's lsb is its unit). */
  address(reg: RegisterInfo, field: Field): number {
    return this.file.address(reg, field);
  }

  get smmuEnabled(): boolean {
    return R.CR0.f.SMMUEN.get(this.file.get32(this.regs.cr0)) === 1;
  }

  get cmdqEnabled(): boolean {
    return R.CR0.f.CMDQEN.get(this.file.get32(this.regs.cr0)) === 1;
  }

  get eventqEnabled(): boolean {
    return R.CR0.f.EVENTQEN.get(this.file.get32(this.regs.cr0)) === 1;
  }

  /** IDR0.S1P: stage-1 translation advertised. */
  get stage1(): boolean {
    return R.IDR0.f.S1P.get(this.file.get32(this.regs.idr[0]!)) === 1;
  }

  /** IDR0.S2P: stage-2 translation advertised. */
  get stage2(): boolean {
    return R.IDR0.f.S2P.get(this.file.get32(this.regs.idr[0]!)) === 1;
  }

  /** IDR0.ATS: ATS advertised. */
  get ats(): boolean {
    return R.IDR0.f.ATS.get(this.file.get32(this.regs.idr[0]!)) === 1;
  }

  /** log2 entries of the command queue: CMDQ_BASE.LOG2SIZE capped at IDR1.CMDQS. */
  cmdqLog2(): number {
    return Math.min(this.file.field(this.regs.cmdqBase, R.CMDQ_BASE.f.LOG2SIZE), this.cmdqs);
  }

  /** log2 entries of the event queue: EVENTQ_BASE.LOG2SIZE capped at the derived IDR1.EVENTQS. */
  eventqLog2(idr: Idr): number {
    return Math.min(this.file.field(this.regs.eventqBase, R.EVENTQ_BASE.f.LOG2SIZE), R.IDR1.f.EVENTQS.get(idr[1]));
  }

  /** Whether GERROR.CMDQ_ERR is raised and not yet acknowledged through GERRORN. */
  cmdqErrPending(): boolean {
    return R.GERROR.f.CMDQ_ERR.get((this.file.get32(this.regs.gerror) ^ this.file.get32(this.regs.gerrorn)) >>> 0) === 1;
  }

  /**
   * A GBPA write (its new value already in the file, `prevLo` the old one): ignored without
   * UPDATE (the only behaviour allowed from SMMUv3.2), else complete at once (UPDATE reads 0).
   * Returns whether GBPA changed.
   */
  updateGbpa(prevLo: number): boolean {
    const { file, regs } = this;
    if (!R.GBPA.f.UPDATE.get(file.get32(regs.gbpa))) {
      file.set32(regs.gbpa, prevLo);
      return false;
    }
    file.setField(regs.gbpa, R.GBPA.f.UPDATE, 0);
    return true;
  }

  /** A GERRORN write (`prev` the old value): toggling a bit that is not pending is a guest error. */
  acknowledgeGerrorn(prev: number): void {
    const { file, regs } = this;
    const gerror = file.get32(regs.gerror);
    const now = file.get32(regs.gerrorn);
    const pending = (gerror ^ prev) >>> 0;
    const toggled = (prev ^ now) >>> 0;
    if (toggled & ~pending) this.log.guestError(this.logSource, `guest toggles non pending errors = ${hex((toggled & ~pending) >>> 0)}`);
    this.tracer.emit(T.T_WRITE_GERRORN, (toggled & pending) >>> 0, now);
  }

  /**
   * Stop the command queue at `cons` (the failing command) with CERROR `error` for opcode `op`:
   * CONS.ERR, GERROR.CMDQ_ERR and its interrupt (QEMU's smmu_write_cmdq_err).
   */
  stopCmdq(cons: number, error: number, op: number): void {
    if (error === CERROR_ILL) this.log.guestError(this.logSource, `Illegal command type: ${op}`);
    this.tracer.emit(T.T_CMDQ_CONSUME_ERROR, opName(op), error);
    this.file.set32(this.regs.cmdqCons, R.CMDQ_CONS.f.ERR.set(cons, error));
    this.triggerIrq(SMMU_IRQ_GERROR, CMDQ_ERR);
  }

  /** Pulse an interrupt if enabled; for GERROR, toggle the newly raised (not pending) errors. */
  triggerIrq(irq: number, gerrorMask = 0): void {
    let pulse = false;
    const ctrl = this.file.get32(this.regs.irqCtrl);
    switch (irq) {
      case SMMU_IRQ_EVTQ:
        pulse = R.IRQ_CTRL.f.EVENTQ_IRQEN.get(ctrl) === 1;
        break;
      case SMMU_IRQ_PRIQ:
        this.log.unimp(this.logSource, 'PRI not yet supported');
        break;
      case SMMU_IRQ_CMD_SYNC:
        pulse = true;
        break;
      case SMMU_IRQ_GERROR: {
        const gerror = this.file.get32(this.regs.gerror);
        const pending = gerror ^ this.file.get32(this.regs.gerrorn);
        const raised = (~pending & gerrorMask) >>> 0;
        if (!raised) return; // already pending: nothing new to signal
        const next = (gerror ^ raised) >>> 0;
        this.file.set32(this.regs.gerror, next);
        this.tracer.emit(T.T_WRITE_GERROR, raised, next);
        pulse = R.IRQ_CTRL.f.GERROR_IRQEN.get(ctrl) === 1;
        break;
      }
      default:
        return;
    }
    if (pulse) {
      this.tracer.emit(T.T_TRIGGER_IRQ, irq);
      this.irqs[irq]!.pulse();
    }
  }

  /** MMIO ops: the register bank, with QEMU's read/write trace points. */
  private tracedOps(): RegionOps {
    const bank = this.bank;
    const tracer = this.tracer;
    return {
      read: (offset, size) => {
        const value = bank.read(offset, size);
        tracer.emit(T.T_READ_MMIO, offset, value, size, 0);
        return value;
      },
      write: (offset, size, value) => {
        bank.write(offset, size, value);
        tracer.emit(T.T_WRITE_MMIO, offset, value, size, 0);
      },
      read64: (offset) => {
        const value = bank.read64(offset);
        tracer.emit(T.T_READ_MMIO, offset, value, 8, 0);
        return value;
      },
      write64: (offset, value) => {
        bank.write64(offset, value);
        tracer.emit(T.T_WRITE_MMIO, offset, value, 8, 0);
      },
    };
  }
}
