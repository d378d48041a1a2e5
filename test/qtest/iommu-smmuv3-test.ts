// QEMU's iommu-smmuv3-test scenario (issue 12 §4), as a qtest client: a virt machine with the
// machine-wide SMMUv3 and one iommu-testdev, no firmware and no guest. The client does what
// libqos does for that test (docs/reference/qtest-qmp.md §4.1): finds the testdev on bus 0 through
// ECAM, sizes and places its BAR0 in the PCIe MMIO window, enables it; builds an STE (and a CD)
// and 4-level page tables in guest RAM whose walks all end at one page, programs the SMMU's
// registers, and has the testdev DMA through the SMMU: stage 1 only, stage 2 only and nested.
// The same client runs against cmdqv's drop-in and against QEMU 11.1 (CMDQV_QEMU).
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import {
  DMA_ATTRS,
  DMA_DBELL,
  DMA_GPA_HI,
  DMA_GPA_LO,
  DMA_GVA_HI,
  DMA_GVA_LO,
  DMA_LEN,
  DMA_RESULT,
  DMA_TRIGGERING,
  ITD_ATTRS_SPACE_NONSECURE,
  ITD_DMA_DBELL_ARM,
  ITD_DMA_ERR_TX_FAIL,
  ITD_DMA_RESULT_BUSY,
  ITD_DMA_WRITE_VAL,
} from '../../src/arch/iommu-testdev/registers.js';
import * as R from '../../src/arch/smmuv3/registers.js';
import { CD, CD_WORDS, STE, STE_BYTES, STE_CFG_NESTED, STE_CFG_S1, STE_CFG_S2, STE_WORDS } from '../../src/arch/smmuv3/structures.js';
import { NO_QEMU, QEMU } from '../qemu/qtest-client.js';
import { QtestClient } from './qtest-client.js';

const CMDQV_BIN = [process.execPath, fileURLToPath(new URL('../../src/cli/qemu-bin.js', import.meta.url))];
/** The test's machine line (QEMU's tests/qtest/iommu-smmuv3-test.c), under the qtest accelerator. */
export const SMMUV3_TEST_ARGS = ['-machine', 'virt,acpi=off,gic-version=3,iommu=smmuv3', '-smp', '1', '-m', '512', '-cpu', 'max', '-net', 'none', '-device', 'iommu-testdev', '-accel', 'qtest'];

// ---- the generic PCIe host as libqos sees it on virt -------------------------------------
const ECAM = 0x40_1000_0000;
/** Where libqos starts placing memory BARs: the virt machine's 32-bit PCIe MMIO window. */
const MMIO_WINDOW = 0x1000_0000;
const PCI_VENDOR_ID = 0x00;
const PCI_DEVICE_ID = 0x02;
const PCI_COMMAND = 0x04;
const PCI_BAR0 = 0x10;
const PCI_COMMAND_IO = 0x1;
const PCI_COMMAND_MEMORY = 0x2;
const PCI_COMMAND_MASTER = 0x4;
const BAR_IO_SPACE = 0x1;
const BAR_MEM_TYPE_MASK = 0x6;
const BAR_MEM_TYPE_64 = 0x4;
const BAR_MEM_ADDR_MASK = 0xffff_fff0;
const ITD_VENDOR = 0x1b36;
const ITD_DEVICE = 0x0005;

const ecam = (devfn: number, reg: number) => ECAM + (devfn << 12) + reg;

/** The testdev on bus 0 with its BAR0 placed and decoding enabled: its devfn and BAR0 address. */
async function setUpTestdev(c: QtestClient): Promise<{ devfn: number; bar0: number }> {
  let devfn = -1;
  for (let d = 0; d < 256 && devfn < 0; d++) {
    if (Number(await c.readN(2, ecam(d, PCI_VENDOR_ID))) !== ITD_VENDOR) continue;
    if (Number(await c.readN(2, ecam(d, PCI_DEVICE_ID))) === ITD_DEVICE) devfn = d;
  }
  assert.ok(devfn >= 0, 'an iommu-testdev on bus 0');
  // Enable first, map second: libqos's order.
  const cmd = Number(await c.readN(2, ecam(devfn, PCI_COMMAND)));
  const want = PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
  await c.writeN(2, ecam(devfn, PCI_COMMAND), cmd | want);
  assert.equal(Number(await c.readN(2, ecam(devfn, PCI_COMMAND))) & want, want, 'COMMAND.IO/MEMORY/MASTER stick');
  // Size BAR0 by writing all ones, then place it at the window's first aligned address.
  await c.writeN(4, ecam(devfn, PCI_BAR0), 0xffff_ffff);
  const probe = Number(await c.readN(4, ecam(devfn, PCI_BAR0)));
  assert.equal(probe & BAR_IO_SPACE, 0, 'BAR0 is a memory BAR');
  assert.notEqual(probe & BAR_MEM_TYPE_MASK, BAR_MEM_TYPE_64, 'BAR0 is 32-bit');
  const size = (~(probe & BAR_MEM_ADDR_MASK) >>> 0) + 1;
  const bar0 = Math.ceil(MMIO_WINDOW / size) * size;
  await c.writeN(4, ecam(devfn, PCI_BAR0), bar0);
  return { devfn, bar0 };
}

// ---- the translation libqos's qos-smmuv3 builds --------------------------------------------
/** The machine-wide SMMUv3's register frame (VIRT_SMMU). */
const SMMU = 0x0905_0000;
/** Non-secure copies of the test's structures sit at RAM base + the constants below. */
const NS = 0x4000_0000;
const IOVA = 0x80_8060_4567;
const VTTB = NS + 0x0e4d_0000;
const STRTAB = NS + 0x0e17_9000;
const CD_ADDR = STRTAB - 0x40;
const CMDQ = NS + 0x0e16_b000;
const EVENTQ = NS + 0x0e17_0000;
/** Queue base low bits: LOG2SIZE 10. */
const QUEUE_LOG2 = 0x0a;
/** Table pages of the walk (levels 1-3) and the page every walk ends at. */
const L1_TABLE = NS + 0x0e4d_1000;
const L2_TABLE = NS + 0x0e4d_2000;
const L3_TABLE = NS + 0x0e4d_3000;
const PAGE = NS + 0x0ecb_a000;
/** Descriptor attribute bits: a table (valid, table, NSTable), and two page forms (AF, inner shareable, read/write access). */
const TABLE_DESC = 0x8000_0000_0000_0003n;
const PAGE_RW_S1 = 0x0400_0000_0000_0763n;
const PAGE_RW_S2 = 0x0400_0000_0000_07e3n;
const OA_MASK = 0x0000_ffff_ffff_f000n;
const ASID = 0x1e20;
const DMA_LEN_BYTES = 4;
/** Where the DMA's data lands: the page plus the IOVA's page offset. */
const EXPECTED_GPA = PAGE + (IOVA & 0xfff);

type Mode = 's1' | 's2' | 'nested';
const STE_CONFIG: Record<Mode, number> = { s1: STE_CFG_S1, s2: STE_CFG_S2, nested: STE_CFG_NESTED };

const index = (a: bigint, level: number) => Number((a >> BigInt(39 - 9 * level)) & 0x1ffn);
const entry = (table: bigint, a: bigint, level: number) => Number(table & OA_MASK) + 8 * index(a, level);

/**
 * The stage-2 walk for `ipa` through the shared tables: levels 0-2 point at the next table page,
 * level 3 maps the page holding `ipa` to itself with `leaf` attributes.
 */
async function s2Walk(c: QtestClient, ipa: bigint, leaf: bigint): Promise<void> {
  const tables = [BigInt(VTTB), BigInt(L1_TABLE) | TABLE_DESC, BigInt(L2_TABLE) | TABLE_DESC, BigInt(L3_TABLE) | TABLE_DESC];
  for (let level = 0; level < 3; level++) await c.writeN(8, entry(tables[level]!, ipa, level), tables[level + 1]!);
  await c.writeN(8, entry(tables[3]!, ipa, 3), (ipa & OA_MASK) | leaf);
}

/**
 * Page tables for IOVA: a stage-1 walk from VTTB whose every table address also gets a stage-2
 * identity mapping (so the same tables serve stage 1, stage 2 and nested), the stage-1 leaf at
 * PAGE, and a final stage-2 walk for the leaf's output. Nested also maps the CD's page at stage 2.
 */
async function buildTables(c: QtestClient, mode: Mode): Promise<void> {
  const iova = BigInt(IOVA);
  const next = [BigInt(L1_TABLE) | TABLE_DESC, BigInt(L2_TABLE) | TABLE_DESC, BigInt(L3_TABLE) | TABLE_DESC, BigInt(PAGE) | (mode === 's2' ? PAGE_RW_S2 : PAGE_RW_S1)];
  let table = BigInt(VTTB);
  for (let level = 0; level < 4; level++) {
    const at = entry(table, iova, level);
    await s2Walk(c, BigInt(at), PAGE_RW_S1);
    await c.writeN(8, at, next[level]!);
    table = next[level]!;
  }
  await s2Walk(c, next[3]!, PAGE_RW_S2);
  if (mode === 'nested') await s2Walk(c, BigInt(CD_ADDR) | TABLE_DESC, PAGE_RW_S1);
}

/** The STE for `sid` (stage-2 fields always filled, Config chooses) and, with stage 1, the CD. */
async function buildSteCd(c: QtestClient, mode: Mode, sid: number): Promise<void> {
  const ste = new Uint32Array(STE_WORDS);
  STE.V.setWords(ste, 0, 1);
  STE.CFG.setWords(ste, 0, STE_CONFIG[mode]);
  STE.S1CTXPTR.setWords(ste, 0, CD_ADDR / 2 ** STE.S1CTXPTR.lsb);
  STE.S2T0SZ.setWords(ste, 4, 0x14);
  STE.S2SL0.setWords(ste, 4, 2);
  STE.S2PS.setWords(ste, 4, 5);
  STE.S2AA64.setWords(ste, 4, 1);
  STE.S2TTB.setWords(ste, 6, VTTB / 2 ** STE.S2TTB.lsb);
  for (let i = 0; i < STE_WORDS; i++) await c.writeN(4, STRTAB + sid * STE_BYTES + 4 * i, ste[i]!);
  if (mode === 's2') return;
  const cd = new Uint32Array(CD_WORDS);
  CD.T0SZ.setWords(cd, 0, 0x10);
  CD.EPD1.setWords(cd, 0, 1);
  CD.V.setWords(cd, 0, 1);
  CD.IPS.setWords(cd, 0, 4);
  CD.AA64.setWords(cd, 0, 1);
  CD.R.setWords(cd, 0, 1);
  CD.A.setWords(cd, 0, 1);
  CD.ASID.setWords(cd, 0, ASID);
  // NSCFG0/NSCFG1 (bit 0 of TTB0's and TTB1's words): non-secure table walks.
  cd[2] = 1;
  cd[4] = 1;
  CD.TTB0.setWords(cd, 2, VTTB / 2 ** CD.TTB0.lsb);
  for (let i = 0; i < CD_WORDS; i++) {
    await c.writeN(4, CD_ADDR + 4 * i, cd[i]!);
    assert.equal(Number(await c.readN(4, CD_ADDR + 4 * i)), cd[i], `CD word ${i} reads back`);
  }
}

/** The register sequence of libqos's bank programming: bypass update, disable, queues, linear table, enable. */
async function programSmmu(c: QtestClient): Promise<void> {
  const w = (reg: { spec: { offset: number } }, v: number, size: 4 | 8 = 4) => c.writeN(size, SMMU + reg.spec.offset, v);
  await w(R.GBPA, 0x8000_0000);
  await w(R.CR0, 0);
  await w(R.CR1, 0x0d75);
  await w(R.CMDQ_BASE, CMDQ | QUEUE_LOG2, 8);
  await w(R.CMDQ_CONS, 0);
  await w(R.CMDQ_PROD, 0);
  await w(R.EVENTQ_BASE, EVENTQ | QUEUE_LOG2, 8);
  await w(R.EVENTQ_PROD, 0);
  await w(R.EVENTQ_CONS, 0);
  await w(R.STRTAB_BASE_CFG, 5);
  await w(R.STRTAB_BASE, STRTAB, 8);
  await w(R.CR0, 0xd);
}

/** Describe the DMA in BAR0, arm, trigger, and poll DMA_RESULT until the device is no longer busy. */
async function runDma(c: QtestClient, bar0: number): Promise<number> {
  const w = (reg: { spec: { offset: number } }, v: number) => c.writeN(4, bar0 + reg.spec.offset, v);
  await w(DMA_GVA_LO, IOVA % 2 ** 32);
  await w(DMA_GVA_HI, Math.floor(IOVA / 2 ** 32));
  await w(DMA_GPA_LO, EXPECTED_GPA % 2 ** 32);
  await w(DMA_GPA_HI, Math.floor(EXPECTED_GPA / 2 ** 32));
  await w(DMA_LEN, DMA_LEN_BYTES);
  let attrs = DMA_ATTRS.f.SECURE.set(0, 0);
  attrs = DMA_ATTRS.f.SPACE.set(attrs, ITD_ATTRS_SPACE_NONSECURE);
  attrs = DMA_ATTRS.f.SPACE_VALID.set(attrs, 1);
  await w(DMA_ATTRS, attrs);
  await w(DMA_DBELL, ITD_DMA_DBELL_ARM);
  await c.readN(4, bar0 + DMA_TRIGGERING.spec.offset);
  for (let i = 0; i < 1000; i++) {
    const r = Number(await c.readN(4, bar0 + DMA_RESULT.spec.offset));
    if (r !== ITD_DMA_RESULT_BUSY) return r;
  }
  return ITD_DMA_ERR_TX_FAIL;
}

/**
 * One translation case, start to finish, on a fresh machine from `binary`, checked as QEMU's
 * test checks it. Returns what a client reads afterwards (SMMU register page 0, the testdev's
 * config header and BAR0 registers) for comparing two machines.
 */
export async function runTranslationCase(binary: readonly string[], mode: Mode): Promise<Map<string, string>> {
  const seen = new Map<string, string>();
  const c = await QtestClient.start(binary, SMMUV3_TEST_ARGS);
  try {
    const { devfn, bar0 } = await setUpTestdev(c);
    await c.memset(EXPECTED_GPA, DMA_LEN_BYTES, 0);
    // The StreamID is the requester ID: bus 0, so the devfn.
    await buildSteCd(c, mode, devfn);
    await buildTables(c, mode);
    await programSmmu(c);
    assert.equal(await runDma(c, bar0), 0, `the ${mode} DMA succeeds`);
    const data = await c.read(EXPECTED_GPA, DMA_LEN_BYTES);
    for (let i = 0; i < DMA_LEN_BYTES; i++) assert.equal(data[i], (ITD_DMA_WRITE_VAL >>> (8 * (i % 4))) & 0xff, `byte ${i} at the translated address`);
    // Beyond QEMU's checks: the SMMU acknowledged the enable, and saw no error and no event.
    assert.equal(Number(await c.readN(4, SMMU + R.CR0ACK.spec.offset)), 0xd, 'CR0ACK');
    assert.equal(Number(await c.readN(4, SMMU + R.GERROR.spec.offset)), 0, 'GERROR');
    assert.equal(Number(await c.readN(4, SMMU + R.EVENTQ_PROD.spec.offset)), 0, 'EVENTQ_PROD');
    for (let off = 0; off < 0x100; off += 4) seen.set(`smmu+0x${off.toString(16)}`, (await c.readN(4, SMMU + off)).toString(16));
    for (let off = 0; off < 0x40; off += 4) seen.set(`cfg+0x${off.toString(16)}`, (await c.readN(4, ecam(devfn, off))).toString(16));
    for (let off = 0; off < 0x24; off += 4) seen.set(`bar0+0x${off.toString(16)}`, (await c.readN(4, bar0 + off)).toString(16));
    return seen;
  } finally {
    await c.quit();
  }
}

const MODES: readonly Mode[] = ['s1', 's2', 'nested'];
const NAME: Record<Mode, string> = { s1: 'ns-s1-only', s2: 'ns-s2-only', nested: 'ns-nested' };

describe('QEMU iommu-smmuv3-test scenario on cmdqv-qemu-system-aarch64', () => {
  for (const mode of MODES) {
    test(`/iommu-testdev/translation/${NAME[mode]}`, async () => {
      await runTranslationCase(CMDQV_BIN, mode);
    });
  }
});

describe('QEMU iommu-smmuv3-test scenario on QEMU 11.1, and cmdqv reads the same', { skip: NO_QEMU }, () => {
  for (const mode of MODES) {
    test(`/iommu-testdev/translation/${NAME[mode]}: SMMU page 0, testdev config header and BAR0 after the DMA`, async () => {
      const qemu = await runTranslationCase([QEMU!], mode);
      const cmdqv = await runTranslationCase(CMDQV_BIN, mode);
      assert.deepEqual(Object.fromEntries(cmdqv), Object.fromEntries(qemu));
    });
  }
});
