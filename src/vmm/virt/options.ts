import { parsePciAddr, type PciDeviceSpec } from './pci-topology.js';
import { parseMonitorOptions, type MonitorOptions } from './monitor-options.js';
import { NOT_MODELLED_DEVICES, NOT_MODELLED_OPTIONS, notModelledEntry } from './unmodelled.js';

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
  /** The `-device` argument as written (QEMU's errors name it). */
  arg: string;
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
  /** `bus=`; undefined: placed by QEMU's rule (pci-topology.ts). */
  bus: string | undefined;
  bypassIommu: boolean;
}

/** `-device vfio-pci,...`. */
export interface VfioOpts {
  id: string | undefined;
  host: string;
  iommufd: string | undefined;
  /** `bus=`; undefined: placed by QEMU's rule (pci-topology.ts). */
  bus: string | undefined;
}

/** `-device iommu-testdev,...` (QEMU's test DMA device; only the generic PCI properties). */
export interface TestdevOpts {
  id: string | undefined;
  /** `bus=`; undefined: placed by QEMU's rule (pci-topology.ts). */
  bus: string | undefined;
}

/** `-device pcie-root-port,...`. */
export interface RootPortOpts {
  id: string;
  /** `bus=`; undefined: placed by QEMU's rule (pci-topology.ts). */
  bus: string | undefined;
  chassis: number;
  slot: number;
  port: number;
}

/** A memory backend (`-object memory-backend-ram|memory-backend-file`). */
export interface MemoryBackendOpts {
  id: string;
  type: 'memory-backend-ram' | 'memory-backend-file';
  sizeBytes: number;
  /** `mem-path` (memory-backend-file). */
  memPath: string | undefined;
  /** A hugetlbfs mount as `mem-path`: guest RAM is hugepage-backed. */
  hugepages: boolean;
  prealloc: boolean;
  share: boolean;
}

/** The accelerator QEMU ends up with (the first of `-accel`/`accel=` that exists). */
export type Accelerator = 'kvm' | 'tcg' | 'qtest';

/** The parsed command line. */
export interface VirtOptions {
  machine: string;
  /**
   * The accelerator. A line that names none gets `kvm`: cmdqv models a KVM host (QEMU would
   * default to TCG; docs/design.md "Command lines").
   */
  accel: Accelerator;
  /** `gic-version` (default: the host's with KVM, 2 with TCG/qtest). */
  gicVersion: 2 | 3 | 4 | 'host' | 'max' | undefined;
  /** `its` machine property (default on). */
  itsProp: boolean;
  /** `-machine virt,iommu=smmuv3`: the machine-wide (legacy) emulated SMMUv3. */
  legacySmmu: boolean;
  /** `default-bus-bypass-iommu`: pcie.0 bypasses the IOMMU, as `bypass_iommu=on` does for a pxb-pcie. */
  defaultBusBypassIommu: boolean;
  memBytes: number;
  /** The backend behind guest RAM (`memory-backend=` or a `-numa node,memdev=`), if any. */
  memBackend: MemoryBackendOpts | undefined;
  iommufds: string[];
  pxbs: PxbOpts[];
  rootPorts: RootPortOpts[];
  smmus: SmmuOpts[];
  vfios: VfioOpts[];
  testdevs: TestdevOpts[];
  /** `highmem` and `highmem-ecam` (both default on): ECAM at 0x40_1000_0000 for 256 buses, else 0x3f000000 for 16. */
  highmemEcam: boolean;
  /** Every PCI device in creation order, for placement (pci-topology.ts). */
  pciDevices: PciDeviceSpec[];
  trace: string[];
  /** `-trace events=FILE`: files of trace patterns, one a line. */
  traceEventFiles: string[];
  /** What the line asks for that cmdqv does not model, once each ("-kernel Image", "virtio-net-pci net0"). */
  notModelled: string[];
  /** The controllers (`-qtest`, `-qmp`, `-chardev`, `-mon`): monitor-options.ts. */
  monitors: MonitorOptions;
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
const SIZE_ERROR = "Parameter 'size' expects a non-negative number below 2^64\nOptional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.";

/**
 * Parse a size with QEMU suffixes (k, M, G, T; a `B` suffix alone means bytes; plain numbers use
 * `defaultUnit`, MiB for -m). Exact: the check against 2^64 is done on integers, so a huge
 * number never rounds into range.
 * @throws OptionError when the text is not a size or the size is 2^64 bytes or more
 */
export function parseSize(v: string, defaultUnit = 1): number {
  const m = /^(\d+)(?:\.(\d+))?([kKmMgGtTpPeE]?)([bB]?)$/.exec(v.trim());
  if (!m) throw new OptionError(SIZE_ERROR);
  const suffix = m[3]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't' | 'p' | 'e';
  const unit = suffix === '' ? (m[4] ? 1 : defaultUnit) : { k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50, e: 2 ** 60 }[suffix];
  const frac = m[2] ?? '';
  const scale = 10n ** BigInt(frac.length);
  // bytes = (int.frac) * unit, rounded to the nearest byte, in integers.
  const bytes = (BigInt(m[1]! + frac) * BigInt(unit) + scale / 2n) / scale;
  if (bytes >= SIZE_LIMIT) throw new OptionError(`Value '${v}' is out of range for parameter 'size'`);
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

/** An unsigned device property; QEMU's texts for a non-number and for a number out of the type's range. */
function uint(v: string, key: string, max: number): number {
  const n = /^0x[0-9a-f]+$/i.test(v) ? Number.parseInt(v, 16) : /^\d+$/.test(v) ? Number(v) : Number.NaN;
  if (Number.isNaN(n)) throw new OptionError(`Parameter '${key}' expects integer`);
  if (n > max) throw new OptionError(`Parameter '${key}' expects ${max === 255 ? 'uint8_t' : max === 0xffff ? 'uint16_t' : 'uint32_t'}`);
  return n;
}

/** Properties a modelled device accepts; anything else is "Property 'drv.key' not found". */
const DEVICE_PROPS: Record<string, readonly string[]> = {
  'arm-smmuv3': ['driver', 'id', 'primary-bus', 'accel', 'cmdqv', 'identifier', 'ats', 'ril', 'ssidsize', 'oas', 'stage', 'bus'],
  'pxb-pcie': ['driver', 'id', 'bus_nr', 'bus', 'bypass_iommu', 'numa_node', 'addr'],
  'vfio-pci': ['driver', 'id', 'host', 'iommufd', 'bus', 'addr', 'rombar', 'x-pci-sub-device-id', 'x-pci-vendor-id', 'bootindex', 'multifunction'],
  'iommu-testdev': ['driver', 'id', 'bus', 'addr', 'multifunction', 'rombar', 'romfile', 'romsize', 'acpi-index', 'failover_pair_id', 'x-max-bounce-buffer-size'],
  'pcie-root-port': ['driver', 'id', 'bus', 'addr', 'chassis', 'slot', 'port', 'multifunction', 'io-reserve', 'mem-reserve', 'pref64-reserve', 'pref32-reserve', 'bus-reserve', 'hotplug'],
};

/** `-machine virt` properties cmdqv reads or accepts (the rest of QEMU's are refused). */
const MACHINE_PROPS = [
  'type', 'accel', 'kernel-irqchip', 'gic-version', 'its', 'iommu', 'highmem', 'highmem-ecam', 'highmem-mmio',
  'highmem-redists', 'highmem-mmio-size', 'acpi', 'memory-backend', 'virtualization', 'secure', 'ras', 'mte', 'dump-guest-core',
  'mem-merge', 'usb', 'graphics', 'default-bus-bypass-iommu', 'x-oem-id', 'x-oem-table-id', 'dtb-randomness', 'compact-highmem',
] as const;

/** The QOM type of `-machine virt` in QEMU 11.1 (the newest versioned virt machine). */
const VIRT_MACHINE_TYPE = 'virt-11.1-machine';

/** The values of QEMU's OasMode enum; the SMMUv3 model implements 44 and 48 of them. */
const OAS_MODES: readonly string[] = ['32', '36', '40', '42', '44', '48', '52', '56'];

const ACCELERATORS = ['kvm', 'tcg', 'qtest', 'hvf', 'xen', 'whpx', 'nvmm'] as const;

/** CPU models of qemu-system-aarch64 cmdqv accepts (any `+feat`/`-feat`/`prop=` suffix too). */
const CPU_MODELS = new Set([
  'host', 'max', 'cortex-a35', 'cortex-a53', 'cortex-a55', 'cortex-a57', 'cortex-a72', 'cortex-a76', 'cortex-a710',
  'neoverse-n1', 'neoverse-n2', 'neoverse-v1', 'a64fx',
]);

/** A hugetlbfs mount (the usual mount points): memory-backend-file there is hugepage-backed. */
export function isHugetlbfsPath(path: string): boolean {
  return /^\/(dev\/hugepages|hugetlbfs|mnt\/huge)(\d*|[-_/].*)?$/.test(path) || /hugepages?-?\d*[kKmMgG]?/.test(path);
}

/** Options that take an argument (`-opt ARG`) and that cmdqv accepts without modelling. */
const TAKES_ARG = new Set(NOT_MODELLED_OPTIONS.filter((o) => o.arg).map((o) => o.name));
const NO_ARG = new Set(NOT_MODELLED_OPTIONS.filter((o) => !o.arg).map((o) => o.name));

/** QEMU accepts `--opt` for `-opt`. */
function canonical(opt: string): string {
  return opt.startsWith('--') ? opt.slice(1) : opt;
}

/** Parse a QEMU-style argument list. */
export function parseVirtArgs(argv: readonly string[]): VirtOptions {
  const o: VirtOptions = {
    machine: 'virt', accel: 'kvm', gicVersion: undefined, itsProp: true, legacySmmu: false, defaultBusBypassIommu: false, memBytes: 4 * 2 ** 30,
    memBackend: undefined, iommufds: [], pxbs: [], rootPorts: [], smmus: [], vfios: [], testdevs: [], highmemEcam: true, pciDevices: [], trace: [],
    traceEventFiles: [], notModelled: [], monitors: { qtest: undefined, qtestLog: undefined, qmp: [], hmp: [] },
  };
  const ids = new Set<string>();
  const claim = (id: string | undefined, ctx: string) => {
    if (id === undefined) return;
    if (ids.has(id)) throw new OptionError(`${ctx}: Duplicate ID '${id}' for device`);
    ids.add(id);
  };
  const note = (entry: string) => {
    if (!o.notModelled.includes(entry)) o.notModelled.push(entry);
  };
  const accels: string[] = [];
  const backends = new Map<string, MemoryBackendOpts>();
  let memBackendId: string | undefined;
  let memGiven = false;
  const globals = new Map<string, Map<string, string>>();
  // -global applies whatever its position (QEMU sets them as defaults before devices are made).
  for (let i = 0; i < argv.length - 1; i++) {
    if (canonical(argv[i]!) === '-global') {
      const arg = argv[i + 1]!;
      const m = /^([^.=]+)\.([^=]+)=(.*)$/.exec(arg);
      if (!m) throw new OptionError(`-global ${arg}: Invalid parameter '${arg}'`);
      const g = globals.get(m[1]!) ?? new Map<string, string>();
      g.set(m[2]!, m[3]!);
      globals.set(m[1]!, g);
    }
  }
  for (let i = 0; i < argv.length; i++) {
    const opt = canonical(argv[i]!);
    const needArg = () => {
      const v = argv[++i];
      if (v === undefined) throw new OptionError(`${argv[i - 1]}: requires an argument`);
      return v;
    };
    switch (opt) {
      case '-machine':
      case '-M': {
        const arg = needArg();
        const kv = parseKeyval(arg, 'type');
        const type = kv.get('type');
        if (type !== undefined && type !== 'virt' && !/^virt-\d+\.\d+$/.test(type)) {
          if (type === 'help' || type === '?') throw new OptionError(`${opt} ${arg}: Supported machines are: virt`);
          throw new OptionError(`unsupported machine type: "${type}"\nUse -machine help to list supported machines`);
        }
        // QEMU applies machine properties after parsing the line: its errors name no option.
        for (const [k, v] of kv) {
          if (!(MACHINE_PROPS as readonly string[]).includes(k)) throw new OptionError(`Property '${VIRT_MACHINE_TYPE}.${k}' not found`);
          machineProp(o, k, v, accels, (id) => (memBackendId = id));
        }
        break;
      }
      case '-accel': {
        const arg = needArg();
        const kv = parseKeyval(arg, 'accel');
        const a = kv.get('accel') ?? '';
        if (!(ACCELERATORS as readonly string[]).includes(a)) throw new OptionError(`-accel ${arg}: invalid accelerator ${a}`);
        accels.push(a);
        break;
      }
      case '-enable-kvm':
        accels.push('kvm');
        break;
      case '-cpu': {
        const arg = needArg();
        const model = arg.split(',')[0]!;
        if (!CPU_MODELS.has(model)) throw new OptionError(`unable to find CPU model '${model}'`);
        break;
      }
      case '-smp':
        parseSmp(needArg());
        break;
      case '-m': {
        const arg = needArg();
        const kv = parseKeyval(arg, 'size');
        for (const k of kv.keys()) if (!['size', 'slots', 'maxmem'].includes(k)) throw new OptionError(`-m ${arg}: Invalid parameter '${k}'`);
        if (kv.has('size')) {
          try {
            o.memBytes = parseSize(kv.get('size')!, 2 ** 20);
          } catch (e) {
            // A plain number of MiB that fits in 64 bits but whose byte count does not fails
            // later in QEMU (when the machine's memory size is set), naming no option.
            const v = kv.get('size')!;
            if (/^\d+$/.test(v) && BigInt(v) < SIZE_LIMIT) throw new OptionError("Parameter 'memory.size' expects size");
            throw e instanceof OptionError ? new OptionError(`-m ${arg}: ${e.message}`) : e;
          }
          memGiven = true;
        }
        checkRamSize(o.memBytes, `-m ${arg}`);
        if (kv.has('maxmem')) {
          let max: number;
          try {
            max = parseSize(kv.get('maxmem')!, 1);
          } catch {
            throw new OptionError(`-m ${arg}: Parameter 'maxmem' expects a size`);
          }
          if (max < o.memBytes) {
            throw new OptionError(`invalid value of maxmem: maximum memory size (0x${max.toString(16)}) must be at least the initial memory size (0x${o.memBytes.toString(16)})`);
          }
        }
        if (kv.has('slots') && !/^\d+$/.test(kv.get('slots')!)) throw new OptionError(`-m ${arg}: Parameter 'slots' expects a number`);
        // QEMU rounds the RAM size up to 8 KiB (set_memory_options).
        o.memBytes = Math.ceil(o.memBytes / 8192) * 8192;
        break;
      }
      case '-object': {
        const arg = needArg();
        const kv = parseKeyval(arg, 'qom-type');
        const t = kv.get('qom-type');
        const id = kv.get('id');
        if (t !== 'iommufd' && t !== 'memory-backend-ram' && t !== 'memory-backend-file') {
          throw new OptionError(`-object ${arg}: Parameter 'qom-type' does not accept value '${t}'`);
        }
        if (!id) throw new OptionError(`-object ${arg}: Parameter 'id' is missing`);
        claim(id, `-object ${arg}`);
        if (t === 'iommufd') {
          for (const k of kv.keys()) if (!['qom-type', 'id', 'fd'].includes(k)) throw new OptionError(`-object ${arg}: Property 'iommufd.${k}' not found`);
          o.iommufds.push(id);
        } else {
          backends.set(id, parseMemoryBackend(t, id, kv, arg));
        }
        break;
      }
      case '-numa': {
        const arg = needArg();
        const kv = parseKeyval(arg, 'type');
        const memdev = kv.get('memdev');
        if (kv.get('type') === 'node' && memdev !== undefined) memBackendId ??= memdev;
        note(`-numa ${arg}`);
        break;
      }
      case '-global':
        needArg();
        break;
      case '-device':
        parseDevice(needArg(), o, claim, globals, note);
        break;
      case '-trace': {
        const arg = needArg();
        const kv = parseKeyval(arg, 'enable');
        for (const k of kv.keys()) if (!['enable', 'events', 'file'].includes(k)) throw new OptionError(`-trace ${arg}: Invalid parameter '${k}'`);
        if (kv.has('enable')) o.trace.push(kv.get('enable')!);
        if (kv.has('events')) o.traceEventFiles.push(kv.get('events')!);
        if (kv.has('file')) note(`-trace file=${kv.get('file')!}`);
        break;
      }
      case '-d': {
        const arg = needArg();
        // `-d trace:PATTERN` enables trace events; the other log items are TCG's.
        for (const item of arg.split(',')) {
          if (item.startsWith('trace:')) o.trace.push(item.slice('trace:'.length));
          else note(`-d ${item}`);
        }
        break;
      }
      case '-qtest':
      case '-qtest-log':
      case '-qmp':
      case '-qmp-pretty':
      case '-chardev':
      case '-mon':
        needArg(); // parsed together by parseMonitorOptions (a -mon may name a later -chardev)
        break;
      case '-uuid': {
        const arg = needArg();
        if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(arg)) throw new OptionError(`-uuid ${arg}: failed to parse UUID string: wrong format`);
        break;
      }
      default:
        if (TAKES_ARG.has(opt)) {
          const arg = needArg();
          const entry = notModelledEntry(opt, arg);
          if (entry) note(entry);
        } else if (NO_ARG.has(opt)) {
          const entry = notModelledEntry(opt, undefined);
          if (entry) note(entry);
        } else {
          throw new OptionError(`${argv[i]}: invalid option`);
        }
    }
  }
  o.accel = resolveAccel(accels);
  o.monitors = parseMonitorOptions(argv);
  for (const h of o.monitors.hmp) note(h);
  if (o.legacySmmu && o.smmus.length) {
    // QEMU keeps one kind: the machine-wide SMMU or user-created ones.
    throw new OptionError(`-device ${o.smmus[0]!.arg}: virt machine already has iommu=smmuv3 set. Doesn't support incompatible iommus`);
  }
  if (memBackendId !== undefined) {
    const b = backends.get(memBackendId);
    if (!b) throw new OptionError(`Memory backend '${memBackendId}' not found`);
    if (memGiven && b.sizeBytes !== o.memBytes) throw new OptionError('Machine memory size does not match the size of the memory backend');
    o.memBytes = b.sizeBytes;
    o.memBackend = b;
  }
  return o;
}

function checkRamSize(bytes: number, ctx: string): void {
  // No lower bound: QEMU starts with `-m 1M`; a guest with too little RAM fails in the workload.
  if (bytes > MAX_RAM_BYTES) {
    throw new OptionError(`${ctx}: more RAM than the virt machine can address (at most ${MAX_RAM_BYTES / 2 ** 30} GiB: RAM at 1 GiB in a ${PHYS_ADDR_BITS}-bit guest physical space)`);
  }
}

/** The first accelerator QEMU can start, in the order given; none given: KVM (see {@link VirtOptions.accel}). */
function resolveAccel(accels: readonly string[]): Accelerator {
  for (const a of accels.flatMap((x) => x.split(':'))) if (a === 'kvm' || a === 'tcg' || a === 'qtest') return a;
  if (accels.length) throw new OptionError(`-accel ${accels[0]}: accelerator ${accels[0]} is not available on this host`);
  return 'kvm';
}

function machineProp(o: VirtOptions, k: string, v: string, accels: string[], memBackend: (id: string) => void): void {
  switch (k) {
    case 'accel':
      for (const a of v.split(':')) if (!(ACCELERATORS as readonly string[]).includes(a)) throw new OptionError(`invalid accelerator ${a}`);
      accels.push(v);
      break;
    case 'gic-version':
      if (v === '2' || v === '3' || v === '4') o.gicVersion = Number(v) as 2 | 3 | 4;
      else if (v === 'host' || v === 'max') o.gicVersion = v;
      else throw new OptionError(`Invalid gic-version value\nValid values are 2, 3, 4, x-5, host, and max.`);
      break;
    case 'its':
      o.itsProp = bool(v, k);
      break;
    case 'default-bus-bypass-iommu':
      o.defaultBusBypassIommu = bool(v, k);
      break;
    case 'iommu':
      if (v === 'smmuv3') o.legacySmmu = true;
      else if (v !== 'none') throw new OptionError(`Invalid iommu value\nValid values are none, smmuv3.`);
      break;
    case 'memory-backend':
      memBackend(v);
      break;
    case 'kernel-irqchip':
      if (!['on', 'off', 'split'].includes(v)) throw new OptionError(`Parameter 'kernel-irqchip' does not accept value '${v}'`);
      break;
    case 'highmem':
    case 'highmem-ecam':
      // highmem=off also takes the high ECAM away (virt.c).
      if (!bool(v, k)) o.highmemEcam = false;
      break;
    case 'highmem-mmio-size':
      parseSize(v);
      break;
    case 'type':
    case 'x-oem-id':
    case 'x-oem-table-id':
      break;
    default:
      bool(v, k);
  }
}

/** `-smp [cpus=]n[,maxcpus=][,sockets=][,dies=][,clusters=][,cores=][,threads=]`: values checked as QEMU does. */
function parseSmp(arg: string): void {
  const kv = parseKeyval(arg, 'cpus');
  const keys = ['cpus', 'maxcpus', 'sockets', 'dies', 'clusters', 'cores', 'threads', 'books', 'drawers', 'modules'];
  const n: Record<string, number> = {};
  for (const [k, v] of kv) {
    // QEMU checks -smp when the machine is set up: its errors name no option.
    if (!keys.includes(k)) throw new OptionError(`Parameter 'smp.${k}' is unexpected`);
    if (!/^\d+$/.test(v)) throw new OptionError(`Parameter 'smp.${k}' expects integer`);
    n[k] = Number(v);
    if (n[k] === 0 && k !== 'cpus' && k !== 'maxcpus') throw new OptionError('Invalid CPU topology: CPU topology parameters must be greater than zero');
  }
  const parts = ['sockets', 'dies', 'clusters', 'cores', 'threads'].filter((k) => n[k] !== undefined);
  if (parts.length === 5 || (n.sockets !== undefined && n.cores !== undefined && n.threads !== undefined)) {
    const product = ['sockets', 'dies', 'clusters', 'cores', 'threads'].reduce((p, k) => p * (n[k] ?? 1), 1);
    const max = n.maxcpus ?? n.cpus ?? product;
    if (product !== max) {
      throw new OptionError(`Invalid CPU topology: product of the hierarchy must match maxcpus: sockets (${n.sockets ?? 1}) * clusters (${n.clusters ?? 1}) * cores (${n.cores ?? 1}) * threads (${n.threads ?? 1}) != maxcpus (${max})`);
    }
  }
  if (n.cpus !== undefined && n.maxcpus !== undefined && n.maxcpus < n.cpus) {
    throw new OptionError(`Invalid CPU topology: maxcpus must be equal to or greater than smp: sockets (${n.sockets ?? 1}) * clusters (${n.clusters ?? 1}) * cores (${n.cores ?? 1}) * threads (${n.threads ?? 1}) == maxcpus (${n.maxcpus}) < smp_cpus (${n.cpus})`);
  }
}

function parseMemoryBackend(t: 'memory-backend-ram' | 'memory-backend-file', id: string, kv: Map<string, string>, arg: string): MemoryBackendOpts {
  const allowed = ['qom-type', 'id', 'size', 'prealloc', 'share', 'merge', 'dump', 'host-nodes', 'policy', 'reserve', 'prealloc-threads', 'x-use-canonical-path-for-ramblock-id']
    .concat(t === 'memory-backend-file' ? ['mem-path', 'align', 'discard-data', 'pmem', 'readonly', 'offset', 'rom'] : []);
  for (const k of kv.keys()) if (!allowed.includes(k)) throw new OptionError(`-object ${arg}: Property '${t}.${k}' not found`);
  const size = kv.get('size');
  if (size === undefined) throw new OptionError(`-object ${arg}: Parameter 'size' is missing`);
  let sizeBytes: number;
  try {
    sizeBytes = parseSize(size, 1);
  } catch (e) {
    throw e instanceof OptionError ? new OptionError(`-object ${arg}: ${e.message}`) : e;
  }
  if (sizeBytes === 0) throw new OptionError(`-object ${arg}: can't create backend with size 0`);
  const memPath = kv.get('mem-path');
  if (t === 'memory-backend-file' && memPath === undefined) throw new OptionError(`-object ${arg}: mem-path property not set`);
  return {
    id,
    type: t,
    sizeBytes,
    memPath,
    hugepages: memPath !== undefined && isHugetlbfsPath(memPath),
    prealloc: kv.has('prealloc') ? bool(kv.get('prealloc')!, 'prealloc') : false,
    share: kv.has('share') ? bool(kv.get('share')!, 'share') : false,
  };
}

/** A PCI device's `multifunction` property (default off). */
function multifunction(kv: ReadonlyMap<string, string>): boolean {
  return kv.has('multifunction') ? bool(kv.get('multifunction')!, 'multifunction') : false;
}

function parseDevice(
  arg: string,
  o: VirtOptions,
  claim: (id: string | undefined, ctx: string) => void,
  globals: ReadonlyMap<string, ReadonlyMap<string, string>>,
  note: (entry: string) => void,
): void {
  const ctx = `-device ${arg}`;
  const kv = parseKeyval(arg, 'driver');
  const drv = kv.get('driver') ?? '';
  for (const [k, v] of globals.get(drv) ?? []) if (!kv.has(k)) kv.set(k, v);
  const id = kv.get('id');
  try {
    const unmodelled = NOT_MODELLED_DEVICES.get(drv);
    if (unmodelled !== undefined) {
      claim(id, ctx);
      note(`${drv}${id ? ` ${id}` : ''}`);
      if (unmodelled === 'pci') {
        o.pciDevices.push({ arg, driver: drv, id, bus: kv.get('bus'), devfn: kv.has('addr') ? parsePciAddr(kv.get('addr')!, drv) : undefined, multifunction: multifunction(kv) });
      }
      return;
    }
    const props = DEVICE_PROPS[drv];
    if (!props) throw new OptionError(`'${drv}' is not a valid device model name`);
    for (const k of kv.keys()) if (!props.includes(k)) throw new OptionError(`Property '${drv}.${k}' not found`);
    claim(id, ctx);
    const devfn = kv.has('addr') ? parsePciAddr(kv.get('addr')!, drv) : undefined;
    if (drv === 'pxb-pcie') {
      if (!id) throw new OptionError('pxb-pcie needs an id (it names the new bus)');
      const pxb = {
        id,
        busNr: uint(kv.get('bus_nr') ?? '0', 'bus_nr', 255),
        bus: kv.get('bus'),
        bypassIommu: kv.has('bypass_iommu') ? bool(kv.get('bypass_iommu')!, 'bypass_iommu') : false,
      };
      o.pxbs.push(pxb);
      o.pciDevices.push({ arg, driver: drv, id, bus: pxb.bus, devfn, opens: { kind: 'root', busNr: pxb.busNr } });
    } else if (drv === 'pcie-root-port') {
      if (!id) throw new OptionError('pcie-root-port needs an id (it names the bus behind it)');
      for (const k of ['io-reserve', 'mem-reserve', 'pref64-reserve', 'pref32-reserve']) if (kv.has(k)) parseSize(kv.get(k)!);
      if (kv.has('hotplug')) bool(kv.get('hotplug')!, 'hotplug');
      const port = {
        id,
        bus: kv.get('bus'),
        chassis: uint(kv.get('chassis') ?? '0', 'chassis', 255),
        slot: uint(kv.get('slot') ?? '0', 'slot', 0xffff),
        port: uint(kv.get('port') ?? '0', 'port', 255),
      };
      // QEMU: two ports with one chassis/slot pair clash (pcie_chassis_add_slot).
      const clash = o.rootPorts.find((r) => r.chassis === port.chassis && r.slot === port.slot);
      if (clash) throw new OptionError(`Can't add chassis slot, error -16`);
      o.rootPorts.push(port);
      o.pciDevices.push({ arg, driver: drv, id, bus: port.bus, devfn, multifunction: multifunction(kv), express: true, opens: { kind: 'port' } });
    } else if (drv === 'arm-smmuv3') {
      const primaryBus = kv.get('primary-bus');
      if (!primaryBus) throw new OptionError('SMMU is not attached to any PCI bus!');
      const ssid = kv.get('ssidsize') ?? 'auto';
      const oas = kv.get('oas') ?? 'auto';
      if (oas !== 'auto' && !OAS_MODES.includes(oas)) throw new OptionError(`Parameter 'oas' does not accept value '${oas}'`);
      if (oas !== 'auto' && oas !== '44' && oas !== '48') {
        throw new OptionError('QEMU SMMUv3 model only implements auto, 44 bit, or 48 bit OAS. Other OasMode values are not supported.');
      }
      o.smmus.push({
        arg,
        id,
        primaryBus,
        accel: kv.has('accel') ? bool(kv.get('accel')!, 'accel') : false,
        cmdqv: onOffAuto(kv.get('cmdqv') ?? 'auto', 'cmdqv'),
        identifier: uint(kv.get('identifier') ?? '0', 'identifier', 255),
        ats: onOffAuto(kv.get('ats') ?? 'auto', 'ats'),
        ril: onOffAuto(kv.get('ril') ?? 'auto', 'ril'),
        ssidsize: ssid === 'auto' ? 'auto' : uint(ssid, 'ssidsize', 20),
        oas: oas === 'auto' ? 'auto' : (Number(oas) as 44 | 48),
        stage: kv.get('stage') ?? '1',
      });
    } else if (drv === 'iommu-testdev') {
      const bus = kv.get('bus');
      o.testdevs.push({ id, bus });
      o.pciDevices.push({ arg, driver: drv, id, bus, devfn, multifunction: multifunction(kv) });
    } else {
      const host = kv.get('host');
      if (!host) throw new OptionError('No provided host device - Use -device vfio-pci,host=DDDD:BB:DD.F');
      const bus = kv.get('bus');
      o.vfios.push({ id, host, iommufd: kv.get('iommufd'), bus });
      // On a PCIe bus QEMU's vfio-pci is a PCI Express function.
      o.pciDevices.push({ arg, driver: drv, id, bus, devfn, multifunction: multifunction(kv), express: true });
    }
  } catch (e) {
    if (e instanceof OptionError && !e.message.startsWith('-device')) throw new OptionError(`${ctx}: ${e.message}`);
    throw e;
  }
}
