// The web view in a real browser (Debian's chromium through playwright-core; nothing is
// downloaded): the page loads without console errors, a workload run updates the seam counters
// and the VCMDQ table, the injected illegal command shows its error and recovery, the timeline
// draws lanes for both paths, and the register inspector decodes a register. The screenshots of
// the main views go to docs/img/ (the README shows web-view.png).
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { parseServeOptions } from '../../src/cli/serve-command.js';
import type { TimelineSummary } from '../../src/serve/api.js';
import { startServer, type WebServer } from '../../src/serve/server.js';
import { Session } from '../../src/serve/session.js';

const CHROMIUM = process.env.CMDQV_CHROMIUM ?? '/usr/bin/chromium';
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const IMG = join(ROOT, 'docs', 'img');
const skip = existsSync(CHROMIUM) ? false : `no chromium at ${CHROMIUM} (apt-get install chromium, or set CMDQV_CHROMIUM)`;

let web: WebServer;
let browser: Browser;
let page: Page;
/** Console errors and uncaught page errors, checked at the end. */
const problems: string[] = [];

before(async () => {
  if (skip) return;
  web = await startServer(new Session(parseServeOptions(['--ops', '128', '--batch', '16']).run), 0);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  mkdirSync(IMG, { recursive: true });
});

after(async () => {
  await browser?.close();
  await web?.close();
});

async function counter(key: string): Promise<number> {
  return Number((await page.textContent(`#counter-${key}`))!.replace(/,/g, ''));
}

/**
 * Screenshot of one panel into docs/img, clipped to whole pixels of the page (an element
 * screenshot at a fractional offset antialiases its edges differently from run to run).
 */
async function shot(selector: string, file: string): Promise<void> {
  await page.evaluate('window.scrollTo(0, 0)');
  const b = (await page.locator(selector).boundingBox())!;
  const clip = { x: Math.floor(b.x), y: Math.floor(b.y), width: Math.ceil(b.x + b.width) - Math.floor(b.x), height: Math.ceil(b.y + b.height) - Math.floor(b.y) };
  await page.screenshot({ path: join(IMG, file), fullPage: true, clip, animations: 'disabled' });
}

async function idle(): Promise<void> {
  await page.waitForSelector('body[data-ready]:not([data-busy])', { timeout: 30_000 });
}

test('the page loads the machine', { skip }, async () => {
  await page.goto(web.url);
  await idle();
  assert.equal(await page.title(), 'cmdqv: Tegra241 CMDQV on an accelerated SMMUv3');
  assert.equal(await page.inputValue('#ops'), '128');
  assert.match((await page.textContent('#qemu'))!, /arm-smmuv3,primary-bus=pcie\.0,id=smmuv3\.0,accel=on,cmdqv=on/);
  assert.equal(await page.locator('#vcmdq-table tr').count(), 3, 'a header and VCMDQ0, VCMDQ1');
  assert.ok(await page.locator('#save').isEnabled());
  assert.ok(await page.locator('#restore').isDisabled(), 'nothing saved yet');
  assert.equal(await page.locator('#snapshot-list option').count(), 0);
});

test('running a workload updates the seam counters, the VCMDQ table, the compare table and the timeline', { skip }, async () => {
  const before = { exits: await counter('vmExits'), vcmdq: await counter('vcmdqCommands'), direct: await counter('directAccesses') };
  await page.click('#run');
  await page.waitForSelector('body[data-runs="1"]');
  await idle();
  assert.match((await page.textContent('#status'))!, /ran 128 operations \(batch 16\): 128 commands via VCMDQ, 0 trapped/);
  assert.ok((await counter('vcmdqCommands')) >= before.vcmdq + 128 + 8, 'the silicon consumed the batches and their CMD_SYNCs');
  assert.ok((await counter('directAccesses')) > before.direct);
  assert.ok((await counter('vmExits')) > before.exits);
  assert.ok(await page.locator('#counter-vcmdqCommands.changed').count(), 'a changed counter is marked');
  // VCMDQ0 carried the run: PROD = CONS past the 128 commands + 8 syncs, nothing waiting.
  const row = await page.locator('#vcmdq-table tr').nth(1).locator('td').allTextContents();
  assert.equal(row[0], 'smmuv3.0 VCMDQ0');
  assert.match(row[1]!, /^\d+$/, 'a host HW queue backs it');
  assert.equal(row[2], 'yes');
  assert.ok(Number(row[3]) >= 136 && row[3] === row[4], `PROD ${row[3]} CONS ${row[4]}`);
  assert.equal(row[5], '0 / 4096');
  assert.equal(row[7], 'none');
  const exits = await page.locator('#compare-table tr', { hasText: 'VM exits for invalidations' }).locator('td').allTextContents();
  assert.deepEqual(exits.slice(1), ['16', '16', '0']);

  // The timeline: both paths' lanes, the trapped one through the host kernel and the SMMU CMDQ,
  // the VCMDQ one through the silicon; the trapped workload is longer on the shared scale.
  const summary = JSON.parse((await page.getAttribute('#timeline canvas', 'data-summary'))!) as TimelineSummary[];
  assert.deepEqual(summary.map((s) => s.key), ['trapped', 'cmdqv']);
  const [trapped, cmdqv] = summary as [TimelineSummary, TimelineSummary];
  const lane = (s: TimelineSummary, re: RegExp) => s.lanes.find((l) => re.test(l.name));
  assert.ok(lane(trapped, /^host kernel › /)?.slices, 'trapped: ioctls on the host kernel lane');
  assert.ok(lane(trapped, /^host SMMU.* › .*CMDQ$/)?.slices, 'trapped: batches on the host SMMU CMDQ');
  assert.equal(lane(trapped, /^CMDQV silicon/), undefined);
  assert.ok(lane(cmdqv, /^CMDQV silicon.* › .*VCMDQ\d+$/)?.slices, 'cmdqv: batches on a VCMDQ lane');
  assert.equal(lane(cmdqv, /^host SMMU.* › .*CMDQ$/), undefined, 'cmdqv: no trapped batch in the workload');
  assert.ok(trapped.windowUs > cmdqv.windowUs, `trapped ${trapped.windowUs} µs vs VCMDQ ${cmdqv.windowUs} µs`);
  assert.deepEqual(await page.locator('#trace-links a').evaluateAll((as) => as.map((a) => a.getAttribute('href'))), [
    '/api/trace?path=trapped&ops=128&batch=16',
    '/api/trace?path=cmdqv&ops=128&batch=16',
  ]);
  const box = (await page.locator('#timeline canvas').boundingBox())!;
  assert.ok(box.height > 150 && box.width > 600, `canvas ${box.width}x${box.height}`);
  await page.screenshot({ path: join(IMG, 'web-view.png'), fullPage: true, animations: 'disabled' });
  await shot('#timeline-panel', 'web-timeline.png');
});

test('an injected illegal command shows the error and its recovery', { skip }, async () => {
  await page.click('#inject');
  await page.waitForSelector('#inject-recovery');
  await idle();
  const error = (await page.textContent('#inject-error'))!;
  // The guest that ran the workload submits it: the queue stops one past where the run left it.
  assert.match(error, /tegra241_cmdqv_hw_queue_error vcmdq \d+ \(vintf \d+ lvcmdq 0\) stopped at cons=0x[0-9a-f]+ cerror=1 on CMD_CFGI_STE/);
  assert.match(error, /tegra241_cmdqv_err_map hw irq received/);
  const recovery = (await page.textContent('#inject-recovery'))!;
  assert.match(recovery, /1 error interrupt\(s\), 1 queue error\(s\) handled/);
  assert.match(recovery, /smmuv3\.0 VCMDQ0: enabled, PROD (0x[0-9a-f]+) CONS \1 \(the commands after the bad one consumed\), no error outstanding/);
  const row = await page.locator('#vcmdq-table tr').nth(1).locator('td').allTextContents();
  assert.deepEqual([row[2], row[6], row[7]], ['yes', '1', 'none'], 'enabled, CONS.ERR keeps CERROR_ILL, no error outstanding');
  assert.match((await page.textContent('#events'))!, /tegra241_cmdqv_err_map/);
  await shot('#vcmdq-panel', 'web-inject.png');
});

test('the register inspector decodes a register from its table', { skip }, async () => {
  await page.selectOption('#reg-block', 'smmuv3.0.vintf0.vcmdq0.page0');
  await page.selectOption('#reg-name', 'CONS_INDX');
  await page.click('#reg-read');
  await page.locator('#reg-value', { hasText: /^CONS_INDX/ }).waitFor();
  // CONS as the VCMDQ table shows it, and the error code the injection left (CERROR_ILL = 1).
  const cons = (await page.locator('#vcmdq-table tr').nth(1).locator('td').allTextContents())[4]!;
  assert.match((await page.textContent('#reg-value'))!, new RegExp(`^CONS_INDX @ 0xc0b0000 \\(32-bit, RW\\) = 0x1${Number(cons).toString(16).padStart(6, '0')}$`));
  const fields = await page.locator('#reg-fields tr').allTextContents();
  assert.deepEqual(fields, ['fieldbitsvalueaccess', 'ERR[30:24]0x1RO', `RD[19:0]${cons}RW`]);
  await shot('#registers-panel', 'web-registers.png');
});

/** What the page shows of the machine: the seam counters, the VCMDQ table (less the host's HW queue ids) and the inspector's read. */
async function shown(): Promise<{ counters: string[]; table: string[][]; register: string }> {
  const rows = await page.locator('#vcmdq-table tr').all();
  const table: string[][] = [];
  for (const r of rows.slice(1)) table.push((await r.locator('td').allTextContents()).filter((_, i) => i !== 1));
  return { counters: await page.locator('[id^="counter-"]').allTextContents(), table, register: (await page.textContent('#reg-value'))! };
}

test('Save, run on, Restore: the counters, the VCMDQ table and the inspector go back to the moment of saving', { skip }, async () => {
  await page.click('#save');
  await page.locator('#status', { hasText: /^saved snapshot 1: \d+ bytes at [\d.]+ µs of modelled time$/ }).waitFor();
  await idle();
  assert.match((await page.textContent('#snapshot-list option'))!, /^#1: \d+ KiB, [\d.]+ µs, 1 run\(s\)$/);
  assert.ok(await page.locator('#restore').isEnabled());
  assert.equal(await page.getAttribute('#snapshot-download', 'href'), '/api/snapshot-image?id=1');
  const saved = await shown();
  assert.match(saved.register, /^CONS_INDX @ 0xc0b0000/);

  await page.click('#run');
  await page.waitForSelector('body[data-runs="2"]');
  await idle();
  const ran = await shown();
  assert.notDeepEqual(ran.counters, saved.counters);
  assert.notDeepEqual(ran.table, saved.table);
  assert.notEqual(ran.register, saved.register, 'the run moved CONS on');

  await page.click('#restore');
  await page.locator('#status', { hasText: /^restored snapshot 1 on a fresh host$/ }).waitFor();
  await idle();
  assert.deepEqual(await shown(), saved);
  assert.match((await page.textContent('#events'))!, /snapshot 1 restored on a fresh host/);
});

test('reset returns the counters to zero; no console errors on the way', { skip }, async () => {
  await page.click('#reset');
  await page.locator('#status', { hasText: /^system reset$/ }).waitFor();
  assert.equal(await counter('vmExits'), 0);
  assert.equal(await counter('vcmdqCommands'), 0);
  assert.equal((await page.locator('#vcmdq-table tr').nth(1).locator('td').allTextContents())[2], 'no');
  assert.deepEqual(problems, []);
});
