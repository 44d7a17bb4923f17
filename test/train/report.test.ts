// The run report: rendered in headless Chromium (Debian's chromium, driven by playwright-core)
// from a small run's log; readable numbers only, round ticks on every chart, the fold marker at
// the epoch the log says; also for a run in progress and for a directory of runs.
//
// The README's screenshot comes from this test: VITFOLD_REPORT_SCREENSHOT=path.png writes it,
// and VITFOLD_REPORT_RUN=DIR renders that run (e.g. the demo's shrink) instead of the test's own.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium as playwright } from 'playwright-core';
import { chromiumExecutable, runVitfold, tmpDir, writeDataset } from '../helpers.js';

const requireChromium = process.env.VITFOLD_REQUIRE_CHROMIUM === '1';
const chromiumPath = await chromiumExecutable();

const logOf = (run: string) => readFileSync(join(run, 'log.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);

/** A 3-epoch, 2-branch run that joins over the first half and continues on the fold. */
async function smallRun(root: string): Promise<string> {
  writeDataset(join(root, 'data'), 320, 64, false);
  const run = join(root, 'run');
  const r = await runVitfold(['train', '--data', join(root, 'data'), '--depth', '4', '--embed-dim', '16', '--num-heads', '2', '--head-dim', '8', '--mlp-hidden', '32', '--branches', '2', '--epochs', '3', '--batch', '32', '--threads', '1', '--out', run]);
  assert.equal(r.code, 0, r.err);
  return run;
}

/** A tick step is 1, 2 or 5 times a power of ten, and every tick a whole multiple of it. */
function assertRoundTicks(values: number[], what: string): void {
  assert.ok(values.length >= 2, `${what}: ${values.length} ticks`);
  const step = values[1] - values[0];
  const mantissa = step / 10 ** Math.floor(Math.log10(step) + 1e-9);
  assert.ok([1, 2, 5].some((m) => Math.abs(mantissa - m) < 1e-6), `${what}: step ${step} of ticks ${values.join(', ')}`);
  values.forEach((v, i) => {
    assert.ok(Math.abs(v - values[0] - i * step) <= 1e-9 * Math.max(1, Math.abs(v)), `${what}: uneven ticks ${values.join(', ')}`);
    assert.ok(Math.abs(v / step - Math.round(v / step)) < 1e-6, `${what}: tick ${v} is not a multiple of ${step}`);
  });
}

test('the report of a run in headless Chromium: no NaN or undefined, round ticks on every chart, the fold marker at the logged epoch', { skip: !chromiumPath && !requireChromium ? 'Chromium not installed (apt-get install chromium)' : false, timeout: 300_000 }, async () => {
  assert.ok(chromiumPath, 'VITFOLD_REQUIRE_CHROMIUM=1 but no chromium on PATH (apt-get install chromium)');
  const run = process.env.VITFOLD_REPORT_RUN ?? (await smallRun(tmpDir()));
  const r = await runVitfold(['report', run]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /report\s+.*report\.html/);
  const foldedAt = logOf(run).find((e) => e.event === 'fold')!.folded_at_epoch as number;
  assert.ok(Number.isInteger(foldedAt) && foldedAt > 0, `the log says the run was folded at epoch ${foldedAt}`);

  const browser = await playwright.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    await page.goto(pathToFileURL(join(run, 'report.html')).href);
    const text = (await page.textContent('body')) ?? '';
    assert.doesNotMatch(text, /NaN|undefined|Infinity|\[object/, 'every figure on the page is a number or a dash');
    assert.match(text, /status\s*finished/);
    const charts = await page.locator('svg').count();
    assert.ok(charts >= 5, `${charts} charts`);
    for (let i = 0; i < charts; i++) {
      const svg = page.locator('svg').nth(i);
      const title = await svg.locator('text').first().textContent();
      for (const axis of ['x', 'y']) {
        const ticks = (await svg.locator(`text.tick-${axis}`).allTextContents()).map(Number);
        assert.ok(ticks.every(Number.isFinite), `${title}: ${axis} ticks ${ticks.join(', ')}`);
        assertRoundTicks(ticks, `${title} (${axis})`);
      }
      // The fold marker: at the epoch the log says, and drawn where that epoch's tick is.
      const marker = svg.locator('line.marker');
      assert.equal(await marker.count(), 1, `${title}: one fold marker`);
      assert.equal(Number(await marker.getAttribute('data-x')), foldedAt, `${title}: marker epoch`);
      const tickX = await svg.locator('text.tick-x').evaluateAll((ts, e) => ts.find((t) => Number(t.textContent) === e)?.getAttribute('x'), foldedAt);
      assert.equal(await marker.getAttribute('x1'), tickX, `${title}: marker drawn at the tick of epoch ${foldedAt}`);
    }
    await page.screenshot({ path: process.env.VITFOLD_REPORT_SCREENSHOT ?? join(tmpDir(), 'report.png'), fullPage: true });
  } finally {
    await browser.close();
  }
});

test('vitfold report: a run in progress (its log cut after epoch 1), a directory of runs, and a directory without runs (exit 2)', async () => {
  const root = tmpDir();
  const run = await smallRun(root);
  const partial = join(root, 'runs', 'partial');
  cpSync(run, partial, { recursive: true });
  const log = readFileSync(join(partial, 'log.jsonl'), 'utf8').split('\n');
  writeFileSync(join(partial, 'log.jsonl'), log.slice(0, log.findIndex((l) => l.includes('"event":"epoch"')) + 1).join('\n') + '\n');
  cpSync(run, join(root, 'runs', 'done'), { recursive: true });

  const r = await runVitfold(['report', join(root, 'runs')]);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out.match(/^report /gm)?.length, 2, r.out);
  const html = readFileSync(join(partial, 'report.html'), 'utf8');
  assert.match(html, /in progress: 1 of 3 epochs logged/);
  assert.match(html, /Not folded yet/);
  assert.doesNotMatch(html.replace(/<pre>[\s\S]*?<\/pre>/g, ''), /NaN|undefined/);
  assert.match(readFileSync(join(root, 'runs', 'done', 'report.html'), 'utf8'), /status<\/dt><dd>finished/);

  const none = await runVitfold(['report', join(root, 'data')]);
  assert.equal(none.code, 2);
  assert.match(none.err, /data: no vitfold run here/);
});
