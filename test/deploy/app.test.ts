// `vitfold app` end to end: the page in headless Chromium (Debian's chromium driven by
// playwright-core) loads two exports, classifies a bundled image, and must give the same
// probabilities as `vitfold predict` on the same file and image; and `--out` writes a site.
//
// The README's screenshot comes from this test: VITFOLD_APP_SCREENSHOT=path.png writes it, and
// VITFOLD_APP_MODELS="deep.onnx folded.onnx" shows those models instead of the test's own.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium as playwright } from 'playwright-core';
import { readFloatTensor } from '../../src/io.js';
import { softmaxRow } from '../../src/core/preprocess.js';
import { chromiumExecutable, BIN, REPO, runVitfold, tmpDir } from '../helpers.js';

const TEACHER = join(REPO, 'experiments', 'teachers', 'fm12', 'last.safetensors');
const SAMPLE = 'ankle-boot.png';
const requireChromium = process.env.VITFOLD_REQUIRE_CHROMIUM === '1';
const chromiumPath = await chromiumExecutable();

/** The shipped 12-layer model and its instant 3-layer fold, exported to fp32 ONNX. */
async function exportedPair(dir: string): Promise<string[]> {
  const fold = join(dir, 'fold.safetensors');
  const r = await runVitfold(['fold', TEACHER, '--branches', '4', '--assume-joined', '--out', fold]);
  assert.equal(r.code, 0, r.err);
  const out: string[] = [];
  for (const [src, name] of [[TEACHER, 'deep.onnx'], [fold, 'fold.onnx']]) {
    const e = await runVitfold(['export', src, '--out', join(dir, name)]);
    assert.equal(e.code, 0, e.err);
    out.push(join(dir, name));
  }
  return out;
}

/** Starts `vitfold app` on a free port; resolves with its URL once it serves. */
function startApp(models: string[]): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [BIN, 'app', '--models', ...models, '--port', '0']);
  let out = '';
  let err = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => (child.kill(), reject(new Error(`vitfold app did not start: ${out} ${err}`))), 60_000);
    child.stderr!.on('data', (d) => (err += d));
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /serving\s+(http:\/\/\S+)/.exec(out);
      if (m) (clearTimeout(timer), resolve({ url: m[1], child }));
    });
    child.on('exit', (code) => reject(new Error(`vitfold app exited (${code}): ${err}`)));
  });
}

test('vitfold app in headless Chromium: two models, a bundled image, the same top-1 and probabilities as vitfold predict, a latency per model', { skip: !chromiumPath && !requireChromium ? 'Chromium not installed (apt-get install chromium)' : false, timeout: 300_000 }, async () => {
  assert.ok(chromiumPath, 'VITFOLD_REQUIRE_CHROMIUM=1 but no chromium on PATH (apt-get install chromium)');
  const dir = tmpDir();
  const models = process.env.VITFOLD_APP_MODELS ? process.env.VITFOLD_APP_MODELS.split(/\s+/) : await exportedPair(dir);
  const { url, child } = await startApp(models);
  const browser = await playwright.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage({ viewport: { width: 1180, height: 760 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(url);
    await page.waitForSelector('body[data-ready="1"]', { timeout: 120_000 });
    assert.match((await page.textContent('#runtime')) ?? '', /WebAssembly, SIMD, \d+ threads?/);
    assert.doesNotMatch((await page.textContent('#runtime')) ?? '', /not cross-origin isolated/, 'the server sends the isolation headers');
    await page.click(`button[data-sample="${SAMPLE}"]`);
    await page.waitForFunction("document.body.dataset.state !== 'busy' && document.querySelector('.latency')?.textContent?.endsWith('ms')", null, { timeout: 120_000 });
    assert.equal(await page.getAttribute('body', 'data-state'), 'done', (await page.textContent('#status')) ?? '');
    const results = (await page.evaluate('window.vitfoldApp.last')) as { name: string; probs: number[]; top1: number; latencyMs: number }[];
    assert.equal(results.length, models.length);
    const latencies = await page.locator('.card .latency').allTextContents();
    assert.equal(latencies.length, models.length);
    for (const t of latencies) assert.match(t, /^\d+(\.\d+)? ms$/);
    assert.match((await page.locator('.card .speedup').allTextContents()).join('|'), /baseline\|\d+\.\d\dx the speed of 12 layers/);

    for (const [i, model] of models.entries()) {
      const logitsFile = join(dir, `logits-${i}.safetensors`);
      const r = await runVitfold(['predict', model, '--input', join(REPO, 'app', 'samples', SAMPLE), '--out', logitsFile]);
      assert.equal(r.code, 0, r.err);
      const logits = readFloatTensor(logitsFile, 'logits', 2).data;
      const expected = softmaxRow(logits);
      const got = results[i].probs;
      assert.equal(got.length, expected.length);
      const worst = Math.max(...expected.map((p, c) => Math.abs(p - got[c])));
      assert.ok(worst <= 1e-4, `${model}: page vs vitfold predict, max probability difference ${worst}`);
      assert.equal(results[i].top1, expected.indexOf(Math.max(...expected)), `${model}: top-1`);
      assert.ok(results[i].latencyMs > 0);
    }
    assert.deepEqual(errors, []);
    await page.screenshot({ path: process.env.VITFOLD_APP_SCREENSHOT ?? join(dir, 'app.png'), fullPage: true });
  } finally {
    await browser.close();
    child.kill('SIGINT');
  }
});

test('vitfold app --out writes a static site (page, onnxruntime-web, models, samples, isolation headers) and refuses a non-empty folder', async () => {
  const dir = tmpDir();
  const fold = join(dir, 'fold.safetensors');
  assert.equal((await runVitfold(['fold', TEACHER, '--branches', '4', '--assume-joined', '--out', fold])).code, 0);
  const site = join(dir, 'site');
  const r = await runVitfold(['app', '--models', TEACHER, fold, '--out', site]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /export\s+.*last\.safetensors: 12 layers, fp32/);
  for (const f of ['index.html', 'app.css', 'js/app/browser/page.js', 'js/core/preprocess.js', 'ort/ort.wasm.min.mjs', 'ort/ort-wasm-simd-threaded.wasm', 'models/0.onnx', 'models/1.onnx', 'samples/samples.json', '_headers']) {
    assert.ok(existsSync(join(site, f)), `${f} written`);
  }
  const entries = JSON.parse(readFileSync(join(site, 'models.json'), 'utf8')) as { file: string; name: string; bytes: number }[];
  assert.deepEqual(entries.map((e) => e.name), ['last.onnx', 'fold.onnx']);
  for (const e of entries) assert.equal(readFileSync(join(site, e.file)).length, e.bytes);
  const samples = JSON.parse(readFileSync(join(site, 'samples', 'samples.json'), 'utf8')) as { file: string }[];
  assert.equal(samples.length, 10);
  for (const s of samples) assert.ok(readdirSync(join(site, 'samples')).includes(s.file));
  assert.match(readFileSync(join(site, '_headers'), 'utf8'), /Cross-Origin-Embedder-Policy: require-corp/);

  const again = await runVitfold(['app', '--models', fold, '--out', site]);
  assert.equal(again.code, 2);
  assert.match(again.err, /--out .*site exists and is not an empty folder/);
});

test('vitfold app without --models and without a demo run: exit 2, saying to run the demo or name models', async () => {
  const r = await runVitfold(['app', '--demo', join(tmpDir(), 'no-demo')]);
  assert.equal(r.code, 2);
  assert.match(r.err, /no demo run in .*no-demo.*run `vitfold demo` first, or name the models/);
});

test('the app server serves only its site: isolation headers, 404 outside it (no path traversal), 400 for a malformed path, 405 for other methods', async () => {
  const { appSite, serveSite } = await import('../../src/deploy/app.js');
  const { url, server } = await serveSite(appSite([{ name: 'm.onnx', bytes: new Uint8Array([1, 2, 3]) }]), { port: 0 });
  try {
    const get = (path: string, init?: RequestInit) => fetch(url + path, init);
    const index = await get('');
    assert.equal(index.status, 200);
    assert.equal(index.headers.get('cross-origin-opener-policy'), 'same-origin');
    assert.equal(index.headers.get('cross-origin-embedder-policy'), 'require-corp');
    assert.deepEqual(new Uint8Array(await (await get('models/0.onnx')).arrayBuffer()), new Uint8Array([1, 2, 3]));
    assert.deepEqual(((await (await get('models.json')).json()) as { name: string }[]).map((m) => m.name), ['m.onnx']);
    for (const path of ['../package.json', '%2e%2e/package.json', 'js/../../package.json', 'src/cli/app.ts', 'nothing']) assert.equal((await get(path)).status, 404, path);
    assert.equal((await get('%E0%A4%A')).status, 400);
    assert.equal((await get('index.html', { method: 'POST' })).status, 405);
  } finally {
    server.close();
  }
});
