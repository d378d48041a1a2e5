// A small client for QEMU's qtest protocol (`-accel qtest -qtest stdio`), and what the QEMU
// comparison tests read through it: PCI config space through ECAM, the fw_cfg file directory
// and files, and the ACPI tables QEMU hands firmware (docs/reference/qemu-machine.md).
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { QtestOps, reply } from '../qtest/qtest-ops.js';

/**
 * The QEMU 11.1 to compare with: `$CMDQV_QEMU` (what .ci/run sets), else the wrapper
 * `shared/peers/qemu-unstable.sh` leaves in its default cache dir. Undefined when neither runs.
 */
export function findQemu(): string | undefined {
  const candidates = [process.env.CMDQV_QEMU, join(homedir(), '.cache', 'qemu-unstable', 'qemu-system-aarch64')];
  for (const c of candidates) {
    if (!c || !existsSync(c)) continue;
    const r = spawnSync(c, ['--version'], { encoding: 'utf8', timeout: 10_000 });
    if (r.status === 0 && /QEMU emulator version 11\.1\./.test(r.stdout)) return c;
  }
  return undefined;
}

export const QEMU = findQemu();
/** `skip` reason for node:test when no QEMU 11.1 is at hand. */
export const NO_QEMU = QEMU === undefined
  ? 'QEMU 11.1 not found: set CMDQV_QEMU to a qemu-system-aarch64 11.1 (.ci/run installs one with shared/peers/qemu-unstable.sh)'
  : false;

/** What the qtest accelerator needs around a machine line: no display, no default devices, the protocol on stdio. */
export const QTEST_ARGS = ['-accel', 'qtest', '-qtest', 'stdio', '-qtest-log', '/dev/null', '-display', 'none', '-nodefaults'] as const;

/** QEMU refused the line: its exit status and what it printed on stderr. */
export class QemuExit extends Error {
  constructor(readonly status: number | null, readonly stderr: string) {
    super(`QEMU exited with status ${status}: ${stderr.trim()}`);
  }
}

/** Which machine started (`-M virt` as given) and how to reach it through qtest on stdio. */
export class QtestMachine extends QtestOps {
  private buf = '';
  private stderr = '';
  private readonly waiting: { resolve: (line: string) => void; reject: (e: Error) => void }[] = [];
  private exited: QemuExit | undefined;

  private constructor(private readonly proc: ChildProcessWithoutNullStreams) {
    super();
    proc.stdout.setEncoding('utf8');
    proc.stderr.setEncoding('utf8');
    proc.stdout.on('data', (s: string) => {
      this.buf += s;
      for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n')) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        // Asynchronous IRQ lines answer no request.
        if (!line.startsWith('IRQ ')) this.waiting.shift()?.resolve(line);
      }
    });
    proc.stderr.on('data', (s: string) => (this.stderr += s));
    proc.on('close', (status) => {
      this.exited = new QemuExit(status, this.stderr);
      for (const w of this.waiting.splice(0)) w.reject(this.exited);
    });
    proc.stdin.on('error', () => undefined);
  }

  /**
   * Start QEMU with `args` (the machine line) under qtest; resolves once the protocol answers,
   * rejects with {@link QemuExit} when QEMU refuses the line.
   */
  static async start(qemu: string, args: readonly string[]): Promise<QtestMachine> {
    const m = new QtestMachine(spawn(qemu, [...args, ...QTEST_ARGS], { stdio: 'pipe' }));
    try {
      await m.command('endianness');
    } catch (e) {
      m.close();
      throw e;
    }
    return m;
  }

  /** Send one protocol line; resolves with its reply line, rejects when QEMU exits. */
  override cmd(line: string): Promise<string> {
    if (this.exited) return Promise.reject(this.exited);
    return new Promise<string>((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.proc.stdin.write(`${line}\n`);
    });
  }

  /** Send one protocol line; resolves with the text after `OK`, rejects on `FAIL`, `ERR` or exit. */
  async command(line: string): Promise<string> {
    const ans = await this.cmd(line);
    try {
      return reply(ans);
    } catch {
      throw new Error(`qtest '${line.slice(0, 80)}': ${ans}`);
    }
  }

  /** What QEMU printed on stderr so far (warnings of an accepted line). */
  get stderrText(): string {
    return this.stderr;
  }

  /** Stop QEMU (qtest has no quit command; it keeps running after stdin closes). */
  close(): void {
    if (this.exited === undefined) this.proc.kill('SIGKILL');
  }
}

/**
 * Run QEMU on a line that is expected to fail: its exit status and stderr, or status 'started'
 * when it accepted the line (then it is stopped at once).
 */
export async function qemuOutcome(qemu: string, args: readonly string[]): Promise<{ status: number | null | 'started'; stderr: string }> {
  try {
    const m = await QtestMachine.start(qemu, args);
    m.close();
    return { status: 'started', stderr: '' };
  } catch (e) {
    if (e instanceof QemuExit) return { status: e.status, stderr: e.stderr };
    throw e;
  }
}

// ---- PCI config space through ECAM -------------------------------------------------------

/** The virt machine's ECAM windows (hw/arm/virt.c memmap): high (default) and low (`highmem-ecam=off`). */
export const VIRT_HIGH_PCIE_ECAM = 0x40_1000_0000n;
export const VIRT_PCIE_ECAM = 0x3f00_0000n;

const PCI_VENDOR_ID = 0x00;
const PCI_HEADER_TYPE = 0x0e;
const PCI_PRIMARY_BUS = 0x18;
const PCI_SECONDARY_BUS = 0x19;
const PCI_SUBORDINATE_BUS = 0x1a;
const HEADER_TYPE_MASK = 0x7f;
const HEADER_TYPE_BRIDGE = 1;
const HEADER_MULTI_FUNCTION = 0x80;

function ecamAddr(ecam: bigint, bus: number, devfn: number, reg: number): bigint {
  return ecam + (BigInt(bus) << 20n) + (BigInt(devfn) << 12n) + BigInt(reg);
}

/**
 * Number the buses behind every PCI-PCI bridge as firmware does: each root bus in turn
 * (`roots`: 0 and every pxb-pcie `bus_nr`, ascending), depth-first in devfn order, the next free
 * number to each bridge's secondary bus, the subordinate set once its subtree is numbered.
 * Returns the bridges programmed, as `bus:devfn -> [secondary, subordinate]`.
 */
export async function enumerateBridges(m: QtestMachine, roots: readonly number[], ecam = VIRT_HIGH_PCIE_ECAM): Promise<Map<string, [number, number]>> {
  const done = new Map<string, [number, number]>();
  const visit = async (bus: number, next: number): Promise<number> => {
    for (let devfn = 0; devfn < 256; devfn++) {
      const fn = devfn & 7;
      const vendor = Number(await m.readN(2, ecamAddr(ecam, bus, devfn, PCI_VENDOR_ID)));
      if (vendor === 0xffff) {
        if (fn === 0) devfn += 7;
        continue;
      }
      const header = Number(await m.readN(1, ecamAddr(ecam, bus, devfn, PCI_HEADER_TYPE)));
      if ((header & HEADER_TYPE_MASK) === HEADER_TYPE_BRIDGE) {
        const secondary = ++next;
        // Open the whole range below while the subtree is numbered, then close it.
        await m.writeN(1, ecamAddr(ecam, bus, devfn, PCI_PRIMARY_BUS), bus);
        await m.writeN(1, ecamAddr(ecam, bus, devfn, PCI_SECONDARY_BUS), secondary);
        await m.writeN(1, ecamAddr(ecam, bus, devfn, PCI_SUBORDINATE_BUS), 0xff);
        next = await visit(secondary, next);
        await m.writeN(1, ecamAddr(ecam, bus, devfn, PCI_SUBORDINATE_BUS), next);
        done.set(`${bus}:${devfn}`, [secondary, next]);
      }
      if (fn === 0 && (header & HEADER_MULTI_FUNCTION) === 0) devfn += 7;
    }
    return next;
  };
  for (const root of [...roots].sort((a, b) => a - b)) await visit(root, root);
  return done;
}

// ---- fw_cfg (docs/specs/fw_cfg.rst in QEMU) -----------------------------------------------

/** The virt machine's MMIO fw_cfg (VIRT_FW_CFG): data at +0, selector at +8, DMA address at +16. */
export const VIRT_FW_CFG = 0x0902_0000n;
const FW_CFG_DMA_REG = 16n;
const FW_CFG_FILE_DIR = 0x19;
const FW_CFG_DMA_CTL_ERROR = 0x01;
const FW_CFG_DMA_CTL_READ = 0x02;
const FW_CFG_DMA_CTL_SELECT = 0x08;
/** Guest RAM (VIRT_MEM) scratch for the DMA descriptor and the data it lands. */
const SCRATCH = 0x4000_0000n;
const SCRATCH_DATA = SCRATCH + 0x1000n;

/** Read `len` bytes of fw_cfg item `key` through the DMA interface (one descriptor, one doorbell). */
export async function fwCfgRead(m: QtestMachine, key: number, len: number): Promise<Uint8Array> {
  const desc = new DataView(new ArrayBuffer(16));
  desc.setUint32(0, (key << 16) | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ);
  desc.setUint32(4, len);
  desc.setBigUint64(8, SCRATCH_DATA);
  await m.write(SCRATCH, new Uint8Array(desc.buffer));
  const doorbell = new DataView(new ArrayBuffer(8));
  doorbell.setBigUint64(0, SCRATCH);
  // The register is big-endian: the bytes in memory order make the descriptor's address.
  await m.write(VIRT_FW_CFG + FW_CFG_DMA_REG, new Uint8Array(doorbell.buffer));
  const control = new DataView((await m.read(SCRATCH, 4)).buffer).getUint32(0);
  if (control & FW_CFG_DMA_CTL_ERROR) throw new Error(`fw_cfg DMA of key 0x${key.toString(16)} failed`);
  if (control !== 0) throw new Error(`fw_cfg DMA of key 0x${key.toString(16)} did not complete (control 0x${control.toString(16)})`);
  return len === 0 ? new Uint8Array(0) : m.read(SCRATCH_DATA, len);
}

/** The fw_cfg file directory: name -> { key, size }. */
export async function fwCfgFiles(m: QtestMachine): Promise<Map<string, { key: number; size: number }>> {
  const count = new DataView((await fwCfgRead(m, FW_CFG_FILE_DIR, 4)).buffer).getUint32(0);
  const dir = await fwCfgRead(m, FW_CFG_FILE_DIR, 4 + count * 64);
  const v = new DataView(dir.buffer, dir.byteOffset);
  const files = new Map<string, { key: number; size: number }>();
  for (let i = 0; i < count; i++) {
    const at = 4 + i * 64;
    const name = Buffer.from(dir.subarray(at + 8, at + 64)).toString('latin1').replace(/\0.*$/s, '');
    files.set(name, { key: v.getUint16(at + 4), size: v.getUint32(at) });
  }
  return files;
}

/** A named fw_cfg file's bytes. */
export async function fwCfgFile(m: QtestMachine, name: string): Promise<Uint8Array> {
  const f = (await fwCfgFiles(m)).get(name);
  if (!f) throw new Error(`fw_cfg has no file '${name}'`);
  return fwCfgRead(m, f.key, f.size);
}

// ---- ACPI tables out of etc/acpi/tables + etc/table-loader --------------------------------

const LOADER_ENTRY = 128;
const LOADER_FILE = 56;
const LOADER_ADD_CHECKSUM = 3;

/**
 * Split `etc/acpi/tables` into its tables by the loader's ADD_CHECKSUM commands (one per table:
 * where it starts, how long it is, where its checksum byte is) and compute each checksum as
 * firmware does. Pointer fields (XSDT, FADT) keep the blob's offsets: IORT and DSDT have none.
 * Returns signature -> table bytes (a repeated signature gets `.2`, `.3`...).
 */
export function splitAcpiTables(tables: Uint8Array, loader: Uint8Array): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  const lv = new DataView(loader.buffer, loader.byteOffset, loader.byteLength);
  for (let at = 0; at + LOADER_ENTRY <= loader.length; at += LOADER_ENTRY) {
    if (lv.getUint32(at, true) !== LOADER_ADD_CHECKSUM) continue;
    const file = Buffer.from(loader.subarray(at + 4, at + 4 + LOADER_FILE)).toString('latin1').replace(/\0.*$/s, '');
    if (file !== 'etc/acpi/tables') continue;
    const csum = lv.getUint32(at + 4 + LOADER_FILE, true);
    const start = lv.getUint32(at + 8 + LOADER_FILE, true);
    const len = lv.getUint32(at + 12 + LOADER_FILE, true);
    const t = Uint8Array.from(tables.subarray(start, start + len));
    t[csum - start] = 0;
    let sum = 0;
    for (const b of t) sum = (sum + b) & 0xff;
    t[csum - start] = (0x100 - sum) & 0xff;
    const sig = Buffer.from(t.subarray(0, 4)).toString('latin1');
    let name = sig;
    for (let n = 2; out.has(name); n++) name = `${sig}.${n}`;
    out.set(name, t);
  }
  return out;
}

/**
 * The ACPI tables QEMU builds for `args`: start it under qtest, number the bridges as firmware
 * would (QEMU rebuilds the tables on the first read of etc/acpi/tables, so the IORT's RID ranges
 * then follow the bridge registers), read the tables out through fw_cfg and split them.
 * `roots` are the root bus numbers (0 and each pxb-pcie's bus_nr).
 */
export async function qemuAcpiTables(qemu: string, args: readonly string[], roots: readonly number[]): Promise<Map<string, Uint8Array>> {
  const m = await QtestMachine.start(qemu, args);
  try {
    await enumerateBridges(m, roots);
    const files = await fwCfgFiles(m);
    const get = (name: string) => {
      const f = files.get(name);
      if (!f) throw new Error(`fw_cfg has no file '${name}'`);
      return fwCfgRead(m, f.key, f.size);
    };
    const tables = await get('etc/acpi/tables');
    return splitAcpiTables(tables, await get('etc/table-loader'));
  } finally {
    m.close();
  }
}

/** Run `jobs` with at most `limit` in flight; results in order. */
export async function inParallel<T>(jobs: readonly (() => Promise<T>)[], limit: number): Promise<T[]> {
  const results: T[] = new Array(jobs.length);
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const i = next++;
      results[i] = await jobs[i]!();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, worker));
  return results;
}

/** The root bus numbers of a line: 0 (pcie.0) and each `-device pxb-pcie,...,bus_nr=N`. */
export function rootBuses(args: readonly string[]): number[] {
  const roots = [0];
  for (let i = 0; i + 1 < args.length; i++) {
    if (args[i] !== '-device' || !args[i + 1]!.startsWith('pxb-pcie,')) continue;
    const m = /(?:^|,)bus_nr=(0x[0-9a-f]+|\d+)/i.exec(args[i + 1]!);
    roots.push(m ? Number(m[1]) : 0);
  }
  return roots;
}

/**
 * Every function the way firmware and Linux find them once the bridges are numbered: each
 * root bus ascending (repeated numbers once), devfn order, functions 1-7 only when function 0
 * says multi-function, descending into each bridge's secondary bus. `BB:DD.F vvvv:dddd` each.
 */
export async function scanFunctions(m: QtestMachine, roots: readonly number[], ecam = VIRT_HIGH_PCIE_ECAM): Promise<string[]> {
  const out: string[] = [];
  const h = (n: number, w: number) => n.toString(16).padStart(w, '0');
  const visit = async (bus: number, depth: number): Promise<void> => {
    for (let dev = 0; dev < 32 && depth < 32; dev++) {
      let fns = 1;
      for (let fn = 0; fn < fns; fn++) {
        const devfn = (dev << 3) | fn;
        const id = Number(await m.readN(4, ecamAddr(ecam, bus, devfn, PCI_VENDOR_ID)));
        if ((id & 0xffff) === 0xffff) continue;
        const header = Number(await m.readN(1, ecamAddr(ecam, bus, devfn, PCI_HEADER_TYPE)));
        if (fn === 0 && header & HEADER_MULTI_FUNCTION) fns = 8;
        out.push(`${h(bus, 2)}:${h(dev, 2)}.${fn} ${h(id & 0xffff, 4)}:${h(id >>> 16, 4)}`);
        if ((header & HEADER_TYPE_MASK) !== HEADER_TYPE_BRIDGE) continue;
        const secondary = Number(await m.readN(1, ecamAddr(ecam, bus, devfn, PCI_SECONDARY_BUS)));
        if (secondary > bus) await visit(secondary, depth + 1);
      }
    }
  };
  for (const r of [...new Set(roots)].sort((a, b) => a - b)) await visit(r, 0);
  return out;
}
