/**
 * The guest side of cmdqv's ACPI: decoders for the IORT and DSDT the VMM builds, used by the
 * guest driver model to discover SMMUs, their RID routing and their CMDQV companions the way
 * Linux does (docs/reference/acpi.md §2.3, §3.4).
 *
 * The IORT decoder handles every node type QEMU emits (ITS group, SMMUv3, root complex, RMR)
 * and skips others by Length. The AML walker understands the constructs cmdqv's DSDT uses
 * (Scope, Device, Name with integer/string/buffer/package data, Method skipped whole) and
 * reports anything else as an error with its offset rather than guessing.
 */
import { AmlOp, ResTag } from '../arch/acpi/aml-opcodes.js';
import { CMDQV_HID, PCIE_ROOT_HID } from '../arch/acpi/ids.js';
import { IortNodeType, IortSize } from '../arch/acpi/iort-format.js';
import { ACPI_HEADER_SIZE, AcpiError, parseTableHeader, type AcpiTableHeader } from '../arch/acpi/table.js';

// ---------------------------------------------------------------------------------------------
// IORT

/** One ID mapping entry. */
export interface IortIdMapping {
  inputBase: number;
  /** Number of IDs in the range (the table's field + 1). */
  idCount: number;
  outputBase: number;
  /** Offset of the target node from the start of the table. */
  outputRef: number;
  flags: number;
}

/** Fields every decoded IORT node has. */
export interface IortNodeBase {
  /** Offset of the node from the start of the table. */
  offset: number;
  revision: number;
  identifier: number;
  mappings: IortIdMapping[];
}

/** An ITS group node. */
export interface IortItsGroup extends IortNodeBase {
  kind: 'its';
  itsIds: number[];
}

/** An SMMUv3 node. */
export interface IortSmmuV3 extends IortNodeBase {
  kind: 'smmuv3';
  base: number;
  flags: number;
  /** 0 generic, 1 HiSilicon Hi161x, 2 Cavium CN99xx. */
  model: number;
  gsiv: { event: number; pri: number; gerr: number; sync: number };
  proximityDomain: number;
  deviceIdMappingIndex: number;
}

/** A PCI root-complex node. */
export interface IortRootComplex extends IortNodeBase {
  kind: 'rc';
  cacheCoherent: number;
  memoryAccessFlags: number;
  ats: number;
  segment: number;
  addressSizeLimit: number;
}

/** A reserved-memory-range node. */
export interface IortRmr extends IortNodeBase {
  kind: 'rmr';
  flags: number;
  ranges: { base: number; length: number }[];
}

/** A node of a type this decoder does not interpret. */
export interface IortOtherNode extends IortNodeBase {
  kind: 'other';
  type: number;
}

/** Any decoded IORT node. */
export type IortNode = IortItsGroup | IortSmmuV3 | IortRootComplex | IortRmr | IortOtherNode;

/** A decoded IORT. */
export interface ParsedIort {
  header: AcpiTableHeader;
  /** All nodes in table order. */
  nodes: IortNode[];
  itsGroups: IortItsGroup[];
  smmus: IortSmmuV3[];
  rootComplexes: IortRootComplex[];
  rmrs: IortRmr[];
}

function u64Number(dv: DataView, at: number, what: string): number {
  const v = dv.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new AcpiError(`IORT: ${what} 0x${v.toString(16)} exceeds 53 bits`);
  return Number(v);
}

/**
 * Decodes an IORT: verifies signature, length and checksum, walks the nodes by Length, and
 * checks that every node, mapping array and output reference stays inside the table and that
 * references point at the start of a node.
 */
export function parseIort(bytes: Uint8Array): ParsedIort {
  const header = parseTableHeader(bytes, 'IORT');
  const len = header.length;
  if (len < IortSize.Header) throw new AcpiError(`IORT: length ${len} is shorter than the ${IortSize.Header}-byte IORT header`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, len);
  const count = dv.getUint32(36, true);
  let at = dv.getUint32(40, true);
  const nodes: IortNode[] = [];
  for (let i = 0; i < count; i++) {
    const where = `IORT node ${i} at 0x${at.toString(16)}`;
    if (at + IortSize.NodeHeader > len) throw new AcpiError(`${where}: node header runs past the table end (${len})`);
    const type = dv.getUint8(at);
    const nodeLen = dv.getUint16(at + 1, true);
    if (nodeLen < IortSize.NodeHeader || at + nodeLen > len) throw new AcpiError(`${where}: node length ${nodeLen} is invalid`);
    const nMap = dv.getUint32(at + 8, true);
    const mapOff = dv.getUint32(at + 12, true);
    if (nMap > 0 && (mapOff < IortSize.NodeHeader || mapOff + nMap * IortSize.IdMapping > nodeLen)) {
      throw new AcpiError(`${where}: ${nMap} ID mappings at +${mapOff} do not fit the ${nodeLen}-byte node`);
    }
    const mappings: IortIdMapping[] = [];
    for (let m = 0; m < nMap; m++) {
      const e = at + mapOff + m * IortSize.IdMapping;
      mappings.push({
        inputBase: dv.getUint32(e, true),
        idCount: dv.getUint32(e + 4, true) + 1,
        outputBase: dv.getUint32(e + 8, true),
        outputRef: dv.getUint32(e + 12, true),
        flags: dv.getUint32(e + 16, true),
      });
    }
    const common: IortNodeBase = { offset: at, revision: dv.getUint8(at + 3), identifier: dv.getUint32(at + 4, true), mappings };
    const need = (n: number): void => {
      if (nodeLen < n) throw new AcpiError(`${where}: type ${type} node needs ${n} bytes, has ${nodeLen}`);
    };
    switch (type) {
      case IortNodeType.ItsGroup: {
        need(20);
        const n = dv.getUint32(at + 16, true);
        need(20 + 4 * n);
        const itsIds = Array.from({ length: n }, (_, k) => dv.getUint32(at + 20 + 4 * k, true));
        nodes.push({ kind: 'its', ...common, itsIds });
        break;
      }
      case IortNodeType.SmmuV3:
        need(60);
        nodes.push({
          kind: 'smmuv3',
          ...common,
          base: u64Number(dv, at + 16, `${where}: base address`),
          flags: dv.getUint32(at + 24, true),
          model: dv.getUint32(at + 40, true),
          gsiv: {
            event: dv.getUint32(at + 44, true),
            pri: dv.getUint32(at + 48, true),
            gerr: dv.getUint32(at + 52, true),
            sync: dv.getUint32(at + 56, true),
          },
          proximityDomain: nodeLen >= 64 ? dv.getUint32(at + 60, true) : 0,
          deviceIdMappingIndex: nodeLen >= 68 ? dv.getUint32(at + 64, true) : 0,
        });
        break;
      case IortNodeType.RootComplex:
        need(33);
        nodes.push({
          kind: 'rc',
          ...common,
          cacheCoherent: dv.getUint32(at + 16, true),
          memoryAccessFlags: dv.getUint8(at + 23),
          ats: dv.getUint32(at + 24, true),
          segment: dv.getUint32(at + 28, true),
          addressSizeLimit: dv.getUint8(at + 32),
        });
        break;
      case IortNodeType.Rmr: {
        need(IortSize.RmrHeader);
        const nDesc = dv.getUint32(at + 20, true);
        const descOff = dv.getUint32(at + 24, true);
        if (descOff + nDesc * IortSize.MemoryRangeDescriptor > nodeLen) {
          throw new AcpiError(`${where}: ${nDesc} memory range descriptors at +${descOff} do not fit the node`);
        }
        const ranges = Array.from({ length: nDesc }, (_, k) => {
          const d = at + descOff + k * IortSize.MemoryRangeDescriptor;
          return { base: u64Number(dv, d, `${where}: RMR base`), length: u64Number(dv, d + 8, `${where}: RMR length`) };
        });
        nodes.push({ kind: 'rmr', ...common, flags: dv.getUint32(at + 16, true), ranges });
        break;
      }
      default:
        nodes.push({ kind: 'other', type, ...common });
    }
    at += nodeLen;
  }
  const starts = new Set(nodes.map((n) => n.offset));
  for (const n of nodes) {
    for (const m of n.mappings) {
      if (!starts.has(m.outputRef)) {
        throw new AcpiError(`IORT node at 0x${n.offset.toString(16)}: ID mapping output reference 0x${m.outputRef.toString(16)} is not a node`);
      }
    }
  }
  return {
    header,
    nodes,
    itsGroups: nodes.filter((n): n is IortItsGroup => n.kind === 'its'),
    smmus: nodes.filter((n): n is IortSmmuV3 => n.kind === 'smmuv3'),
    rootComplexes: nodes.filter((n): n is IortRootComplex => n.kind === 'rc'),
    rmrs: nodes.filter((n): n is IortRmr => n.kind === 'rmr'),
  };
}

/** Where a PCI requester ID ends up after the IORT's root-complex mapping. */
export interface RidRoute {
  /** The node the RC maps the RID to (an SMMUv3 or the ITS group). */
  node: IortNode;
  /** The output ID (StreamID at an SMMU, DeviceID at the ITS). */
  id: number;
}

/**
 * Translates a RID through the root-complex node of `segment` as Linux's `iort_id_map`
 * does: the first mapping whose inclusive range holds the RID wins, except that a match on
 * the last ID of a range yields to a later range starting there (Linux's tolerance of the
 * off-by-one firmware bug). Returns undefined when no mapping covers the RID.
 */
export function iortRouteRid(iort: ParsedIort, rid: number, segment = 0): RidRoute | undefined {
  const rc = iort.rootComplexes.find((n) => n.segment === segment);
  if (rc === undefined) return undefined;
  let found: IortIdMapping | undefined;
  for (const m of rc.mappings) {
    const last = m.inputBase + m.idCount - 1;
    if (rid < m.inputBase || rid > last) continue;
    found = m;
    // A hit on the last ID is kept only until a later range claims the same ID.
    if (rid !== last) break;
  }
  if (found === undefined) return undefined;
  const hit = found;
  const node = iort.nodes.find((n) => n.offset === hit.outputRef)!;
  const single = (hit.flags & 1) !== 0;
  return { node, id: single ? hit.outputBase : hit.outputBase + (rid - hit.inputBase) };
}

// ---------------------------------------------------------------------------------------------
// DSDT (AML)

/** A decoded AML data object. */
export type AmlValue =
  | { kind: 'integer'; value: bigint }
  | { kind: 'string'; value: string }
  | { kind: 'buffer'; bytes: Uint8Array }
  | { kind: 'package'; elements: AmlValue[] }
  | { kind: 'name'; path: string };

/** A Device found in the AML, with the Name objects declared directly inside it. */
export interface AmlDeviceInfo {
  /** Absolute path, segments padded to 4 characters, e.g. `\_SB_.CV01`. */
  path: string;
  /** Offset of the DeviceOp in the table. */
  offset: number;
  names: Map<string, AmlValue>;
  /** Names of the Methods declared directly inside it (their bodies are not decoded). */
  methods: string[];
}

class AmlReader {
  constructor(
    readonly bytes: Uint8Array,
    public at: number,
  ) {}

  fail(msg: string, at = this.at): never {
    throw new AcpiError(`DSDT AML at 0x${at.toString(16)}: ${msg}`);
  }

  u8(): number {
    if (this.at >= this.bytes.length) this.fail('unexpected end of AML');
    return this.bytes[this.at++]!;
  }

  le(n: number): bigint {
    let v = 0n;
    for (let i = 0; i < n; i++) v |= BigInt(this.u8()) << BigInt(8 * i);
    return v;
  }

  /** Reads a PkgLength and returns the end offset of the package it measures. */
  pkgEnd(): number {
    const start = this.at;
    const lead = this.u8();
    const follow = lead >> 6;
    let len = follow === 0 ? lead & 0x3f : lead & 0x0f;
    for (let i = 0; i < follow; i++) len |= this.u8() << (4 + 8 * i);
    const end = start + len;
    if (end > this.bytes.length || end < this.at) this.fail(`PkgLength ${len} runs past the end of its scope`, start);
    return end;
  }

  seg(): string {
    let s = '';
    for (let i = 0; i < 4; i++) {
      const c = this.u8();
      if (!((c >= 0x41 && c <= 0x5a) || c === 0x5f || (i > 0 && c >= 0x30 && c <= 0x39))) this.fail(`invalid NameSeg byte 0x${c.toString(16)}`, this.at - 1);
      s += String.fromCharCode(c);
    }
    return s;
  }

  /** Reads a NameString, returning its text form (`\`, `^` prefixes, dot-joined segments). */
  nameString(): string {
    let prefix = '';
    if (this.bytes[this.at] === AmlOp.RootChar) {
      this.at++;
      prefix = '\\';
    } else {
      while (this.bytes[this.at] === AmlOp.ParentPrefix) {
        this.at++;
        prefix += '^';
      }
    }
    const lead = this.u8();
    let n: number;
    if (lead === 0x00) return prefix;
    if (lead === AmlOp.DualNamePrefix) n = 2;
    else if (lead === AmlOp.MultiNamePrefix) n = this.u8();
    else {
      this.at--;
      n = 1;
    }
    const segs: string[] = [];
    for (let i = 0; i < n; i++) segs.push(this.seg());
    return prefix + segs.join('.');
  }
}

function isNameLead(c: number | undefined): boolean {
  return c !== undefined && ((c >= 0x41 && c <= 0x5a) || c === 0x5f || c === AmlOp.RootChar || c === AmlOp.ParentPrefix || c === AmlOp.DualNamePrefix || c === AmlOp.MultiNamePrefix);
}

function readData(r: AmlReader): AmlValue {
  const at = r.at;
  const op = r.u8();
  switch (op) {
    case AmlOp.Zero:
      return { kind: 'integer', value: 0n };
    case AmlOp.One:
      return { kind: 'integer', value: 1n };
    case AmlOp.Ones:
      return { kind: 'integer', value: 0xffff_ffff_ffff_ffffn };
    case AmlOp.BytePrefix:
      return { kind: 'integer', value: r.le(1) };
    case AmlOp.WordPrefix:
      return { kind: 'integer', value: r.le(2) };
    case AmlOp.DWordPrefix:
      return { kind: 'integer', value: r.le(4) };
    case AmlOp.QWordPrefix:
      return { kind: 'integer', value: r.le(8) };
    case AmlOp.StringPrefix: {
      let s = '';
      for (let c = r.u8(); c !== 0; c = r.u8()) s += String.fromCharCode(c);
      return { kind: 'string', value: s };
    }
    case AmlOp.Buffer: {
      const end = r.pkgEnd();
      const size = readData(r);
      if (size.kind !== 'integer') r.fail('Buffer size is not an integer constant', at);
      const init = r.bytes.subarray(r.at, end);
      if (BigInt(init.length) > size.value) r.fail(`Buffer initializer (${init.length} bytes) exceeds its size ${size.value}`, at);
      const bytes = new Uint8Array(Number(size.value));
      bytes.set(init);
      r.at = end;
      return { kind: 'buffer', bytes };
    }
    case AmlOp.Package:
    case AmlOp.VarPackage: {
      const end = r.pkgEnd();
      let n: number;
      if (op === AmlOp.Package) n = r.u8();
      else {
        const c = readData(r);
        if (c.kind !== 'integer') r.fail('VarPackage count is not an integer constant', at);
        n = Number(c.value);
      }
      const elements: AmlValue[] = [];
      while (r.at < end) elements.push(isNameLead(r.bytes[r.at]) ? { kind: 'name', path: r.nameString() } : readData(r));
      if (r.at !== end) r.fail('Package elements overrun the package', at);
      if (elements.length > n) r.fail(`Package declares ${n} elements but holds ${elements.length}`, at);
      return { kind: 'package', elements };
    }
    default:
      return r.fail(`unsupported data object opcode 0x${op.toString(16).padStart(2, '0')}`, at);
  }
}

function joinPath(scope: string, name: string): string {
  if (name.startsWith('\\')) return name === '\\' ? '\\' : name;
  let base = scope;
  let rest = name;
  while (rest.startsWith('^')) {
    const cut = base.lastIndexOf('.');
    base = cut < 0 ? '\\' : base.slice(0, cut);
    rest = rest.slice(1);
  }
  if (rest === '') return base;
  return base === '\\' ? `\\${rest}` : `${base}.${rest}`;
}

function walkTerms(r: AmlReader, end: number, scope: string, device: AmlDeviceInfo | undefined, out: AmlDeviceInfo[]): void {
  while (r.at < end) {
    const at = r.at;
    const op = r.u8();
    if (op === AmlOp.Scope) {
      const pkgEnd = r.pkgEnd();
      walkTerms(r, pkgEnd, joinPath(scope, r.nameString()), undefined, out);
    } else if (op === AmlOp.ExtOpPrefix && r.bytes[r.at] === AmlOp.Device) {
      r.at++;
      const pkgEnd = r.pkgEnd();
      const info: AmlDeviceInfo = { path: joinPath(scope, r.nameString()), offset: at, names: new Map(), methods: [] };
      out.push(info);
      walkTerms(r, pkgEnd, info.path, info, out);
    } else if (op === AmlOp.Name) {
      const name = r.nameString();
      const value = readData(r);
      device?.names.set(name, value);
    } else if (op === AmlOp.Method) {
      const pkgEnd = r.pkgEnd();
      device?.methods.push(r.nameString());
      r.at = pkgEnd;
    } else {
      r.fail(`unsupported term opcode 0x${op.toString(16).padStart(2, '0')}`, at);
    }
    if (r.at > end) r.fail('object overruns its enclosing scope', at);
  }
}

/** Walks a DSDT (after verifying its header and checksum) and lists every Device in it. */
export function parseDsdtDevices(bytes: Uint8Array): AmlDeviceInfo[] {
  const header = parseTableHeader(bytes, 'DSDT');
  const r = new AmlReader(bytes.subarray(0, header.length), ACPI_HEADER_SIZE);
  const out: AmlDeviceInfo[] = [];
  walkTerms(r, header.length, '\\', undefined, out);
  return out;
}

/** A decoded resource descriptor of a resource template. */
export type AcpiResource =
  | { kind: 'memory'; base: number; length: number; writable: boolean }
  | { kind: 'bus'; min: number; max: number }
  | { kind: 'interrupt'; gsivs: number[]; edge: boolean; activeLow: boolean; shared: boolean; consumer: boolean }
  | { kind: 'other'; tag: number };

/** Decodes a resource template buffer up to its End Tag. */
function parseResourceTemplate(buf: Uint8Array): AcpiResource[] {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: AcpiResource[] = [];
  let at = 0;
  const fail = (msg: string): never => {
    throw new AcpiError(`resource template at +${at}: ${msg}`);
  };
  const num = (v: bigint): number => (v > BigInt(Number.MAX_SAFE_INTEGER) ? fail(`value 0x${v.toString(16)} exceeds 53 bits`) : Number(v));
  while (at < buf.length) {
    const tag = buf[at]!;
    if ((tag & 0x80) === 0) {
      const len = tag & 0x07;
      if (tag >> 3 === ResTag.EndTag >> 3) return out;
      out.push({ kind: 'other', tag });
      at += 1 + len;
      continue;
    }
    if (at + 3 > buf.length) fail('truncated large descriptor');
    const len = dv.getUint16(at + 1, true);
    if (at + 3 + len > buf.length) fail(`descriptor length ${len} runs past the buffer`);
    const p = at + 3;
    switch (tag) {
      case ResTag.Memory32Fixed:
        out.push({ kind: 'memory', base: dv.getUint32(p + 1, true), length: dv.getUint32(p + 5, true), writable: (buf[p]! & 1) !== 0 });
        break;
      case ResTag.QWordAddress:
      case ResTag.DWordAddress:
      case ResTag.WordAddress: {
        const w = tag === ResTag.QWordAddress ? 8 : tag === ResTag.DWordAddress ? 4 : 2;
        const field = (k: number): bigint => {
          let v = 0n;
          for (let i = 0; i < w; i++) v |= BigInt(buf[p + 3 + k * w + i]!) << BigInt(8 * i);
          return v;
        };
        const type = buf[p]!;
        if (type === 0) out.push({ kind: 'memory', base: num(field(1)), length: num(field(4)), writable: (buf[p + 2]! & 1) !== 0 });
        else if (type === 2) out.push({ kind: 'bus', min: num(field(1)), max: num(field(2)) });
        else out.push({ kind: 'other', tag });
        break;
      }
      case ResTag.ExtendedInterrupt: {
        const flags = buf[p]!;
        const n = buf[p + 1]!;
        if (2 + 4 * n > len) fail(`${n} interrupts do not fit a ${len}-byte descriptor`);
        const gsivs = Array.from({ length: n }, (_, k) => dv.getUint32(p + 2 + 4 * k, true));
        out.push({ kind: 'interrupt', gsivs, consumer: (flags & 1) !== 0, edge: (flags & 2) !== 0, activeLow: (flags & 4) !== 0, shared: (flags & 8) !== 0 });
        break;
      }
      default:
        out.push({ kind: 'other', tag });
    }
    at = p + len;
  }
  return fail('no End Tag');
}

function integerOf(dev: AmlDeviceInfo, name: string): number | undefined {
  const v = dev.names.get(name);
  if (v === undefined) return undefined;
  if (v.kind === 'integer' && v.value <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(v.value);
  // ACPICA compares an integer _UID as its decimal string; accept that spelling too.
  if (v.kind === 'string' && /^\d+$/.test(v.value)) return Number(v.value);
  throw new AcpiError(`${dev.path}.${name}: expected an integer`);
}

function hidOf(dev: AmlDeviceInfo): string | undefined {
  const v = dev.names.get('_HID');
  return v?.kind === 'string' ? v.value : undefined;
}

function resourcesOf(dev: AmlDeviceInfo): AcpiResource[] {
  const crs = dev.names.get('_CRS');
  if (crs === undefined) return [];
  if (crs.kind !== 'buffer') throw new AcpiError(`${dev.path}._CRS: expected a resource template buffer`);
  return parseResourceTemplate(crs.bytes);
}

/** A Tegra241 CMDQV companion device found in the DSDT. */
export interface DsdtCmdqvDevice {
  path: string;
  hid: string;
  /** `_UID`: matched against the IORT SMMUv3 node Identifier. */
  uid: number;
  /** First memory resource: the register window. */
  memBase: number;
  memLength: number;
  /** First interrupt (the error IRQ); undefined if none, which Linux tolerates. */
  gsiv: number | undefined;
}

/**
 * Lists the `NVDA200C` devices of a DSDT with what Linux takes from them: `_UID`, the first
 * memory resource and the first interrupt.
 */
export function parseDsdtCmdqvDevices(bytes: Uint8Array): DsdtCmdqvDevice[] {
  const out: DsdtCmdqvDevice[] = [];
  for (const dev of parseDsdtDevices(bytes)) {
    const hid = hidOf(dev);
    if (hid !== CMDQV_HID) continue;
    const uid = integerOf(dev, '_UID');
    if (uid === undefined) throw new AcpiError(`${dev.path}: ${CMDQV_HID} device without _UID`);
    const res = resourcesOf(dev);
    const mem = res.find((x) => x.kind === 'memory');
    if (mem === undefined) throw new AcpiError(`${dev.path}: ${CMDQV_HID} device without a memory resource`);
    const irq = res.find((x) => x.kind === 'interrupt');
    out.push({ path: dev.path, hid, uid, memBase: mem.base, memLength: mem.length, gsiv: irq?.gsivs[0] });
  }
  return out;
}

/** A PCIe root bridge found in the DSDT. */
export interface DsdtPciRootBridge {
  path: string;
  segment: number;
  /** `_BBN`. */
  busNr: number;
  uid: number;
  /** Bus-number window from `_CRS` (`_BBN`..`_BBN` when it has none). */
  busMin: number;
  busMax: number;
}

/** Lists the PCIe root bridges (`_HID` PNP0A08) of a DSDT. */
export function parseDsdtPciRootBridges(bytes: Uint8Array): DsdtPciRootBridge[] {
  const out: DsdtPciRootBridge[] = [];
  for (const dev of parseDsdtDevices(bytes)) {
    if (hidOf(dev) !== PCIE_ROOT_HID) continue;
    const busNr = integerOf(dev, '_BBN') ?? 0;
    const bus = resourcesOf(dev).find((x) => x.kind === 'bus');
    out.push({
      path: dev.path,
      segment: integerOf(dev, '_SEG') ?? 0,
      busNr,
      uid: integerOf(dev, '_UID') ?? 0,
      busMin: bus?.min ?? busNr,
      busMax: bus?.max ?? busNr,
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// MCFG

/** One MCFG allocation: an ECAM window for buses start..end of a segment. */
export interface McfgAllocation {
  base: number;
  segment: number;
  startBus: number;
  endBus: number;
}

/** MCFG allocation entries start after the header and 8 reserved bytes; each is 16 bytes. */
const MCFG_ENTRIES = ACPI_HEADER_SIZE + 8;
const MCFG_ENTRY_SIZE = 16;

/**
 * Decode the MCFG (what Linux's pci_mcfg_init reads): every ECAM allocation.
 * @throws AcpiError on a bad header or a length that is not a whole number of entries
 */
export function parseMcfg(bytes: Uint8Array): McfgAllocation[] {
  const h = parseTableHeader(bytes, 'MCFG');
  if (h.length < MCFG_ENTRIES || (h.length - MCFG_ENTRIES) % MCFG_ENTRY_SIZE !== 0) {
    throw new AcpiError(`MCFG: Length ${h.length} is not the header plus whole 16-byte allocations`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: McfgAllocation[] = [];
  for (let at = MCFG_ENTRIES; at < h.length; at += MCFG_ENTRY_SIZE) {
    out.push({ base: Number(dv.getBigUint64(at, true)), segment: dv.getUint16(at + 8, true), startBus: bytes[at + 10]!, endBus: bytes[at + 11]! });
  }
  return out;
}
