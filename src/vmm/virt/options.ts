/**
 * QEMU-style command line for the virt machine: `-machine virt`, `-m`, `-object iommufd`,
 * `-device pxb-pcie|arm-smmuv3|vfio-pci`, `-trace`. Values follow QEMU's key=value rules (the
 * first item may be the implied driver/type, `,,` escapes a comma, a bare key means `on`), and
 * errors use QEMU's wording with the option that caused them.
 */

/** A user error in the command line (printed without a stack trace, exit status 1). */
export class OptionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OptionError';
  }
}

/** Guest physical address bits of the virt machine model (its system address space). */
export const PHYS_ADDR_BITS = 44;
/** Guest RAM starts at 1 GiB (VIRT_MEM) and must end inside the guest physical space. */
export const MAX_RAM_BYTES = 2 ** PHYS_ADDR_BITS - 2 ** 30;

type OnOffAuto = 'on' | 'off' | 'auto';

/** `-device arm-smmuv3,...`. */
export interface SmmuOpts {
  id: string | undefined;
  primaryBus: string;
  accel: boolean;
  cmdqv: OnOffAuto;
  identifier: number;
  ats: OnOffAuto;
  ril: OnOffAuto;
  ssidsize: 'auto' | number;
  oas: 'auto' | 44 | 48;
  stage: string;
}

/** `-device pxb-pcie,...`. */
export interface PxbOpts {
  id: string;
  busNr: number;
  bus: string;
  bypassIommu: boolean;
}

/** `-device vfio-pci,...`. */
export interface VfioOpts {
  id: string | undefined;
  host: string;
  iommufd: string | undefined;
  bus: string;
}

/** The parsed command line. */
export interface VirtOptions {
  machine: string;
  memBytes: number;
  iommufds: string[];
  pxbs: PxbOpts[];
  smmus: SmmuOpts[];
  vfios: VfioOpts[];
  trace: string[];
}

/** Split a QEMU option string into [implied-or-undefined, pairs]. */
export function parseKeyval(s: string, implied: string | undefined): Map<string, string> {
  const items: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (ch === ',') {
      if (s[i + 1] === ',') {
        cur += ',';
        i++;
        continue;
      }
      items.push(cur);
      cur = '';
    } else cur += ch;
  }
  items.push(cur);
  const out = new Map<string, string>();
  items.forEach((item, idx) => {
    if (item === '') {
      if (idx === items.length - 1 && idx > 0) return;
      throw new OptionError('Invalid parameter \'\'');
    }
    const eq = item.indexOf('=');
    if (eq < 0) {
      if (idx === 0 && implied) out.set(implied, item);
      else out.set(item, 'on');
      return;
    }
    const k = item.slice(0, eq);
    if (out.has(k)) throw new OptionError(`Parameter '${k}' specified more than once`);
    out.set(k, item.slice(eq + 1));
  });
  return out;
}

/** Sizes are uint64 in QEMU: anything at or above 2^64 bytes is refused. */
const SIZE_LIMIT = 2n ** 64n;
const SIZE_ERROR = "Parameter 'size' expects a non-negative number below 2^64";

/**
 * Parse a size with QEMU suffixes (k, M, G, T; a `B` suffix alone means bytes; plain numbers use
 * `defaultUnit`, MiB for -m). Exact: the check against 2^64 is done on integers, so a huge
 * number never rounds into range.
 * @throws OptionError when the text is not a size or the size is 2^64 bytes or more
 */
export function parseSize(v: string, defaultUnit = 1): number {
  const m = /^(\d+)(?:\.(\d+))?([kKmMgGtT]?)([bB]?)$/.exec(v.trim());
  if (!m) throw new OptionError(SIZE_ERROR);
  const suffix = m[3]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't';
  const unit = suffix === '' ? (m[4] ? 1 : defaultUnit) : { k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[suffix];
  const frac = m[2] ?? '';
  const scale = 10n ** BigInt(frac.length);
  // bytes = (int.frac) * unit, rounded to the nearest byte, in integers.
  const bytes = (BigInt(m[1]! + frac) * BigInt(unit) + scale / 2n) / scale;
  if (bytes >= SIZE_LIMIT) throw new OptionError(SIZE_ERROR);
  return Number(bytes);
}

function bool(v: string, key: string): boolean {
  if (['on', 'yes', 'true', 'y'].includes(v)) return true;
  if (['off', 'no', 'false', 'n'].includes(v)) return false;
  throw new OptionError(`Parameter '${key}' expects 'on' or 'off'`);
}

function onOffAuto(v: string, key: string): OnOffAuto {
  if (v === 'on' || v === 'off' || v === 'auto') return v;
  throw new OptionError(`Parameter '${key}' does not accept value '${v}'`);
}

function uint(v: string, driver: string, key: string, max: number): number {
  const n = /^0x[0-9a-f]+$/i.test(v) ? Number.parseInt(v, 16) : /^\d+$/.test(v) ? Number(v) : Number.NaN;
  if (!Number.isInteger(n) || n < 0 || n > max) {
    throw new OptionError(`Property '${driver}.${key}' expects ${max === 255 ? 'uint8' : max === 0xffff ? 'uint16' : 'uint32'}`);
  }
  return n;
}

/** Properties a device accepts; anything else is "Property 'drv.key' not found". */
const DEVICE_PROPS: Record<string, readonly string[]> = {
  'arm-smmuv3': ['driver', 'id', 'primary-bus', 'accel', 'cmdqv', 'identifier', 'ats', 'ril', 'ssidsize', 'oas', 'stage', 'bus'],
  'pxb-pcie': ['driver', 'id', 'bus_nr', 'bus', 'bypass_iommu', 'numa_node'],
  'vfio-pci': ['driver', 'id', 'host', 'iommufd', 'bus', 'addr'],
};

/** Parse a QEMU-style argument list. */
export function parseVirtArgs(argv: readonly string[]): VirtOptions {
  const o: VirtOptions = { machine: 'virt', memBytes: 4 * 2 ** 30, iommufds: [], pxbs: [], smmus: [], vfios: [], trace: [] };
  const ids = new Set<string>();
  const claim = (id: string | undefined, ctx: string) => {
    if (id === undefined) return;
    if (ids.has(id)) throw new OptionError(`${ctx}: Duplicate ID '${id}' for device`);
    ids.add(id);
  };
  for (let i = 0; i < argv.length; i++) {
    const opt = argv[i]!;
    const needArg = () => {
      const v = argv[++i];
      if (v === undefined) throw new OptionError(`${opt}: requires an argument`);
      return v;
    };
    switch (opt) {
      case '-machine':
      case '-M': {
        const arg = needArg();
        const kv = parseKeyval(arg, 'type');
        const type = kv.get('type') ?? 'virt';
        if (type !== 'virt') throw new OptionError(`${opt} ${arg}: unsupported machine type '${type}' (only 'virt')`);
        for (const k of kv.keys()) {
          if (!['type', 'accel', 'kernel-irqchip', 'gic-version', 'its', 'iommu'].includes(k)) {
            throw new OptionError(`${opt} ${arg}: Property 'virt-machine.${k}' not found`);
          }
        }
        o.machine = type;
        break;
      }
      case '-m': {
        const arg = needArg();
        const kv = parseKeyval(arg, 'size');
        try {
          o.memBytes = parseSize(kv.get('size') ?? '', 2 ** 20);
        } catch {
          throw new OptionError(`-m ${arg}: ${SIZE_ERROR}`);
        }
        if (o.memBytes < 2 ** 27) throw new OptionError(`-m ${arg}: at least 128 MiB of RAM is needed`);
        if (o.memBytes > MAX_RAM_BYTES) {
          throw new OptionError(`-m ${arg}: more RAM than the virt machine can address (at most ${MAX_RAM_BYTES / 2 ** 30} GiB: RAM at 1 GiB in a ${PHYS_ADDR_BITS}-bit guest physical space)`);
        }
        // QEMU rounds the RAM size up to 8 KiB (set_memory_options).
        o.memBytes = Math.ceil(o.memBytes / 8192) * 8192;
        break;
      }
      case '-object': {
        const arg = needArg();
        const kv = parseKeyval(arg, 'qom-type');
        const t = kv.get('qom-type');
        if (t !== 'iommufd') throw new OptionError(`-object ${arg}: invalid object type: ${t}`);
        const id = kv.get('id');
        if (!id) throw new OptionError(`-object ${arg}: Parameter 'id' is missing`);
        for (const k of kv.keys()) if (!['qom-type', 'id', 'fd'].includes(k)) throw new OptionError(`-object ${arg}: Property 'iommufd.${k}' not found`);
        claim(id, `-object ${arg}`);
        o.iommufds.push(id);
        break;
      }
      case '-device':
        parseDevice(needArg(), o, claim);
        break;
      case '-trace': {
        const arg = needArg();
        const kv = parseKeyval(arg, 'enable');
        const pat = kv.get('enable');
        if (!pat) throw new OptionError(`-trace ${arg}: Parameter 'enable' is missing`);
        o.trace.push(pat);
        break;
      }
      default:
        throw new OptionError(`${opt}: invalid option`);
    }
  }
  return o;
}

function parseDevice(arg: string, o: VirtOptions, claim: (id: string | undefined, ctx: string) => void): void {
  const ctx = `-device ${arg}`;
  const kv = parseKeyval(arg, 'driver');
  const drv = kv.get('driver') ?? '';
  const props = DEVICE_PROPS[drv];
  if (!props) throw new OptionError(`${ctx}: '${drv}' is not a valid device model name`);
  for (const k of kv.keys()) if (!props.includes(k)) throw new OptionError(`${ctx}: Property '${drv}.${k}' not found`);
  const id = kv.get('id');
  try {
    claim(id, ctx);
    if (drv === 'pxb-pcie') {
      if (!id) throw new OptionError(`${ctx}: pxb-pcie needs an id (it names the new bus)`);
      o.pxbs.push({
        id,
        busNr: uint(kv.get('bus_nr') ?? '0', drv, 'bus_nr', 255),
        bus: kv.get('bus') ?? 'pcie.0',
        bypassIommu: kv.has('bypass_iommu') ? bool(kv.get('bypass_iommu')!, 'bypass_iommu') : false,
      });
    } else if (drv === 'arm-smmuv3') {
      const primaryBus = kv.get('primary-bus');
      if (!primaryBus) throw new OptionError(`${ctx}: SMMU is not attached to any PCI bus!`);
      const ssid = kv.get('ssidsize') ?? 'auto';
      const oas = kv.get('oas') ?? 'auto';
      if (oas !== 'auto' && oas !== '44' && oas !== '48') throw new OptionError(`${ctx}: Parameter 'oas' does not accept value '${oas}'`);
      o.smmus.push({
        id,
        primaryBus,
        accel: kv.has('accel') ? bool(kv.get('accel')!, 'accel') : false,
        cmdqv: onOffAuto(kv.get('cmdqv') ?? 'auto', 'cmdqv'),
        identifier: uint(kv.get('identifier') ?? '0', drv, 'identifier', 255),
        ats: onOffAuto(kv.get('ats') ?? 'auto', 'ats'),
        ril: onOffAuto(kv.get('ril') ?? 'auto', 'ril'),
        ssidsize: ssid === 'auto' ? 'auto' : uint(ssid, drv, 'ssidsize', 20),
        oas: oas === 'auto' ? 'auto' : (Number(oas) as 44 | 48),
        stage: kv.get('stage') ?? '1',
      });
    } else {
      const host = kv.get('host');
      if (!host) throw new OptionError(`${ctx}: No provided host device - Use -device vfio-pci,host=DDDD:BB:DD.F`);
      o.vfios.push({ id, host, iommufd: kv.get('iommufd'), bus: kv.get('bus') ?? 'pcie.0' });
    }
  } catch (e) {
    if (e instanceof OptionError && !e.message.startsWith('-device')) throw new OptionError(`${ctx}: ${e.message}`);
    throw e;
  }
}
