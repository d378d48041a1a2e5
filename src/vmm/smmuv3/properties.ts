/**
 * The `-device arm-smmuv3,...` properties of the accelerated SMMUv3 and their validation at
 * realize time, with QEMU's exact error texts (docs/reference/qemu-accel-smmuv3.md §15.2–15.3).
 */

/** QEMU's OnOffAuto. */
export type OnOffAuto = 'on' | 'off' | 'auto';

/** Largest SubstreamID size QEMU's `ssidsize` enum offers (SSID_SIZE_MODE_0..20). */
export const SSIDSIZE_MAX = 20;

/** The device properties, as given on the command line. */
export interface AccelSmmuV3Properties {
  /** QOM id, e.g. `smmuv3.0`. */
  readonly id: string;
  /** `identifier` (uint8): IORT node Identifier and CMDQV `_UID`. */
  readonly identifier: number;
  /** `primary-bus`: the PCIe root bus behind this SMMU. */
  readonly primaryBus: string;
  /** `accel`: nested, host-backed SMMUv3. */
  readonly accel: boolean;
  /** `cmdqv`: command-queue virtualization (Tegra241). */
  readonly cmdqv: OnOffAuto;
  /** `ats`: advertise ATS (IDR0.ATS). */
  readonly ats: OnOffAuto;
  /** `ril`: advertise range invalidation (IDR3.RIL). */
  readonly ril: OnOffAuto;
  /** `ssidsize`: IDR1.SSIDSIZE, or `auto` (from the host). */
  readonly ssidsize: 'auto' | number;
  /** `oas`: output address size in bits, or `auto` (from the host). */
  readonly oas: 'auto' | 44 | 48;
  /** `stage`: translation stages advertised ("1", "2", "nested"); default "1". */
  readonly stage?: string;
}

const ON_OFF_AUTO: readonly string[] = ['on', 'off', 'auto'];

/** QEMU's QAPI enum visitor text for a value an enum property does not have. */
function badEnum(name: string, value: unknown): Error {
  return new Error(`Parameter '${name}' does not accept value '${String(value)}'`);
}

/**
 * Check the properties as QEMU's realize does; throws an Error whose message is QEMU's text.
 * Enum-typed values are checked first (QEMU rejects them when the property is set), then the
 * cross-property rules of `smmu_validate_property`.
 */
export function validateProperties(p: AccelSmmuV3Properties): void {
  // Property setters (type level): what QEMU's qdev/QAPI visitors reject.
  if (!Number.isInteger(p.identifier) || p.identifier < 0 || p.identifier > 0xff) {
    throw new Error(`Parameter 'identifier' expects uint8_t`);
  }
  for (const [name, v] of [['cmdqv', p.cmdqv], ['ats', p.ats], ['ril', p.ril]] as const) {
    if (!ON_OFF_AUTO.includes(v)) throw badEnum(name, v);
  }
  if (p.ssidsize !== 'auto' && !(Number.isInteger(p.ssidsize) && p.ssidsize >= 0 && p.ssidsize <= SSIDSIZE_MAX)) {
    throw badEnum('ssidsize', p.ssidsize);
  }
  if (p.oas !== 'auto' && p.oas !== 44 && p.oas !== 48) throw badEnum('oas', p.oas);

  // smmu_validate_property (hw/arm/smmuv3.c, with the cmdqv property of fced8da6).
  if (!p.accel) {
    if (p.cmdqv === 'on') throw new Error('cmdqv can only be enabled if accel=on');
    if (p.ril === 'off') throw new Error('ril can only be disabled if accel=on');
    if (p.ats === 'on') throw new Error('ats can only be enabled if accel=on');
    if (p.oas === 48) throw new Error('oas must be 44 bits when accel=off');
    if (p.ssidsize !== 'auto' && p.ssidsize > 0) throw new Error('ssidsize can only be greater than 0 bits if accel=on');
    return;
  }
  if (p.stage !== undefined && p.stage !== '1') {
    throw new Error('Only stage1 is supported for SMMUv3 with accel=on');
  }
}

/** Whether any property is left to the host (QEMU's `auto_mode`). */
export function hasAutoProperty(p: AccelSmmuV3Properties): boolean {
  return p.ats === 'auto' || p.ril === 'auto' || p.ssidsize === 'auto' || p.oas === 'auto';
}
