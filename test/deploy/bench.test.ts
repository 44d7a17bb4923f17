// vitfold bench (deploy/bench.ts): rows for every depth x precision x runtime, ratios against the
// baseline, memory per model, JSON and SVG; the CLI writes both files and rejects bad lists.
// Timings are only checked for being measured (positive, ordered min <= median <= max), never
// for speed: benchmarks are not tests.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { preset } from '../../src/core/config.js';
import { exportFlopsPerImage, flopsPerImage } from '../../src/core/flops.js';
import { foldedConfig } from '../../src/core/fold.js';
import { buildExportGraph, EXPORT_ATTENTION } from '../../src/deploy/export.js';
import type { Graph } from '../../src/graph/graph.js';
import { modelsAtDepths, peakGraph, runBench, runNodeScript, QUIET_SLICE_MS, timeInterleaved } from '../../src/deploy/bench.js';
import { benchSvg, formatBench } from '../../src/deploy/bench-report.js';
import { Session } from '../../src/runtime/ort.js';
import { findChromium } from '../../src/deploy/bench-browser.js';
import { randomModel, REPO, smallConfig, tmpDir } from '../helpers.js';

test('runBench: every depth x precision on node and web, ratios vs the deep fp32 export, memory, JSON, SVG', async () => {
  const deep = randomModel(smallConfig(), 2);
  const r = await runBench({ deep, depths: [6, 3, 2], batches: [1, 2], threads: [1], precisions: ['fp32', 'int8'], runtimes: ['node', 'web'], runs: 2, rounds: 1, warmup: 1, peers: false, memory: true, spin: true, log: () => {} });
  assert.equal(r.baseline, 'vitfold export 6L fp32');
  assert.match(r.notes.join('\n'), /PyTorch baselines skipped: not requested/);
  for (const runtime of ['node', 'web'] as const) {
    for (const batch of [1, 2]) {
      const rows = r.rows.filter((x) => x.runtime === runtime && x.batch === batch);
      assert.deepEqual(rows.map((x) => `${x.depth}${x.precision}`), ['6fp32', '6int8', '3fp32', '3int8', '2fp32', '2int8'], `${runtime} batch ${batch}`);
      for (const x of rows) {
        assert.ok(x.minMs > 0 && x.minMs <= x.medianMs && x.medianMs <= x.maxMs, JSON.stringify(x));
        assert.ok(Math.abs(x.imagesPerSec - (1000 * batch) / x.medianMs) < 1e-9);
        assert.ok(x.ratio! > 0);
      }
      assert.equal(rows[0].ratio, 1);
    }
  }
  const node = r.rows.filter((x) => x.runtime === 'node');
  assert.ok(node.every((x) => x.peakRssMiB! >= r.rssFloorMiB! * 0.9), 'each model process at least as large as the floor');
  assert.ok(r.peakGflops['1'] > 0);
  assert.ok(node.every((x) => x.peakFraction! > 0));
  assert.deepEqual(JSON.parse(JSON.stringify(r)).rows.length, r.rows.length);
  const svg = benchSvg(r);
  assert.match(svg, /^<svg /);
  assert.equal((svg.match(/<rect x="250"/g) ?? []).length, r.rows.length, 'one bar per row');
  assert.match(formatBench(r), /vitfold export 2L\s+int8 paired\s+2\s+1/);
  assert.match(formatBench(r), /\ncpu x64 .*; onnxruntime int8 pair sums (exact|saturate at int16 \(no VNNI\))\n/);
  assert.equal(typeof r.machine.int8PairsSaturate, 'boolean');
  assert.ok(r.rows.filter((x) => x.precision === 'int8').every((x) => x.int8Weights === 'paired'), 'int8 rows name their weight mode');
  assert.match(formatBench(r), /fp32 matmul peak \(ORT, 1024\^3 MatMul, fastest of the same rounds\): \d+\.\d GFLOP\/s at 1 thread\n/);
  assert.equal(r.spin, true);
  assert.match(formatBench(r), /onnxruntime-node: spin-waiting on \(ORT's default\), idle until the process is quiet after each session's runs\n/);
  assert.match(formatBench({ ...r, spin: false }), /onnxruntime-node: spin-waiting off \(--no-spin\)\n/);
});

test('timeInterleaved waits until the process is quiet after each session\'s block', async () => {
  const s = await Session.create(peakGraph(8), { threads: 1, spinning: true });
  const feeds = { x: { shape: [8, 8], data: new Float32Array(64) } };
  const t0 = performance.now();
  const times = await timeInterleaved([{ session: s, feeds }, { session: s, feeds }], { rounds: 2, runs: 3, warmup: 1, quiet: true });
  const elapsed = performance.now() - t0;
  await s.release();
  assert.deepEqual(times.map((t) => t.length), [6, 6]);
  // 4 blocks, each followed by at least one quiet slice; the 16 runs of an 8x8 MatMul take well under a millisecond each
  assert.ok(elapsed >= 4 * QUIET_SLICE_MS - 5, `elapsed ${elapsed.toFixed(1)} ms`);
});

test('after a run, a spin-waiting session burns CPU until waitUntilQuiet returns, one without spinning does not; both are quiet afterwards', () => {
  // In a child process that does nothing else. How long a pool spins depends on the CPU (a
  // fixed count of pause instructions), so the bounds are relational, not a duration.
  const r = runNodeScript<Record<'on' | 'off', { during: number; waited: number; after: number }>>(join(REPO, 'test', 'deploy', 'spin-probe.ts'), [], 'spin probe');
  const show = (m: 'on' | 'off') => `${r[m].during.toFixed(1)} ms of CPU in the ${r[m].waited.toFixed(0)} ms waited`;
  assert.ok(r.on.during > r.off.during + 1, `spinning: ${show('on')}; not spinning: ${show('off')}`);
  assert.ok(r.off.during < 0.2 * r.off.waited + 1, `not spinning: ${show('off')}`);
  for (const m of ['on', 'off'] as const) assert.ok(r[m].after < 5, `spinning ${m}: ${r[m].after.toFixed(1)} ms of CPU in the 50 ms after waitUntilQuiet`);
});

// The browser runtime needs Chromium (CI installs Debian's chromium and sets
// VITFOLD_REQUIRE_CHROMIUM=1, so the test cannot be skipped there).
const requireChromium = process.env.VITFOLD_REQUIRE_CHROMIUM === '1';
const chromium = findChromium();
test('runBench in headless Chromium: onnxruntime-web rows for every depth, ratios, the browser named', { skip: !chromium && !requireChromium ? 'Chromium not installed (apt-get install chromium)' : false }, async () => {
  assert.ok(chromium, 'VITFOLD_REQUIRE_CHROMIUM=1 but no chromium on PATH (apt-get install chromium)');
  const deep = randomModel(smallConfig(), 2);
  const r = await runBench({ deep, depths: [6, 3], batches: [1], threads: [2], precisions: ['fp32', 'int8'], runtimes: ['browser'], runs: 2, rounds: 2, warmup: 1, peers: false, memory: false, spin: true, log: () => {} });
  const rows = r.rows.filter((x) => x.runtime === 'browser');
  assert.deepEqual(rows.map((x) => `${x.depth}${x.precision}`), ['6fp32', '6int8', '3fp32', '3int8']);
  for (const x of rows) assert.ok(x.minMs > 0 && x.minMs <= x.medianMs && x.medianMs <= x.maxMs, JSON.stringify(x));
  assert.equal(rows[0].ratio, 1);
  assert.match(r.notes.join('\n'), /browser: .*HeadlessChrome\/\d+/);
  assert.match(formatBench(r), /browser\s+vitfold export 3L\s+int8/);
  assert.doesNotMatch(formatBench(r), /matmul peak/, 'no peak line without the node runtime');
  assert.doesNotMatch(formatBench(r), /spin-waiting/, 'no onnxruntime-node line without the node runtime');
});

test('the browser runtime is skipped with a note when Chromium cannot be found', async () => {
  const saved = process.env.VITFOLD_CHROMIUM;
  process.env.VITFOLD_CHROMIUM = '/nonexistent/chromium';
  try {
    assert.equal(findChromium(), undefined);
    const r = await runBench({ deep: randomModel(smallConfig(), 2), depths: [6], batches: [1], threads: [1], precisions: ['fp32'], runtimes: ['browser'], runs: 1, rounds: 1, warmup: 1, peers: false, memory: false, spin: true, log: () => {} });
    assert.equal(r.rows.length, 0);
    assert.match(r.notes.join('\n'), /browser runtime skipped: Chromium not found \(apt-get install chromium, or set VITFOLD_CHROMIUM\)/);
  } finally {
    if (saved === undefined) delete process.env.VITFOLD_CHROMIUM;
    else process.env.VITFOLD_CHROMIUM = saved;
  }
});

test('modelsAtDepths folds with k = L / d and refuses depths that do not divide L', () => {
  const deep = randomModel(smallConfig(), 1);
  const m = modelsAtDepths(deep, [6, 2]);
  assert.equal(m[0].model, deep);
  assert.deepEqual(m[1].model.structure, { kind: 'folded', branches: 3, source_depth: 6 });
  assert.throws(() => modelsAtDepths(deep, [4]), /4 does not divide the model's 6 layers/);
});

test('export FLOPs: the class-token-only last layer saves ~32% of a 3-layer DeiT-Tiny fold and ~8% of the 12-layer model', () => {
  const cfg = preset('deit-tiny');
  const deep = exportFlopsPerImage(cfg) / flopsPerImage(cfg).total;
  const f3 = foldedConfig(cfg, 4);
  const fold3 = exportFlopsPerImage(f3) / flopsPerImage(f3).total;
  assert.ok(deep > 0.91 && deep < 0.925, `12-layer: ${deep}`); // 0.919
  assert.ok(fold3 > 0.67 && fold3 < 0.685, `3-layer fold: ${fold3}`); // 0.677
  assert.equal(exportFlopsPerImage(cfg, false), flopsPerImage(cfg).total);
});

/** Matrix-product FLOPs of a graph at batch 1: MatMul/Gemm/FusedMatMul/MatMulInteger and MultiHeadAttention's two products. */
function graphMatrixFlops(g: Graph): number {
  const dims = (name: string) => g.values.get(name)!.shape.map((d) => (typeof d === 'number' ? d : d.b)); // B = 1
  const volume = (xs: number[]) => xs.reduce((a, b) => a * b, 1);
  let flops = 0;
  for (const n of g.nodes) {
    const a = dims(n.inputs[0]);
    if (n.op === 'MatMul' || n.op === 'MatMulInteger' || n.op === 'FusedMatMul') flops += 2 * volume(dims(n.outputs[0])) * a[a.length - (n.attrs.transA ? 2 : 1)];
    else if (n.op === 'Gemm') flops += 2 * volume(dims(n.outputs[0])) * a[n.attrs.transA ? 0 : 1];
    else if (n.op === 'MultiHeadAttention') flops += 2 * 2 * volume(a) * dims(n.inputs[1])[1]; // q [1, n, H*hd] against T keys, twice
  }
  return flops;
}

test('export FLOPs (the %peak numerator) equal the matrix products the export graphs perform, every attention form and tail', () => {
  const deep = randomModel(smallConfig(), 5);
  for (const { model } of modelsAtDepths(deep, [6, 2])) {
    for (const attention of EXPORT_ATTENTION) {
      for (const clsOnly of [true, false]) {
        const counted = graphMatrixFlops(buildExportGraph(model, { attention, clsOnly }));
        assert.equal(counted, exportFlopsPerImage(model.config, clsOnly), `${model.config.depth} layers, ${attention}, clsOnly=${clsOnly}`);
      }
    }
  }
});

test('CLI: vitfold bench writes bench.json and bench.svg; bad lists are usage errors', () => {
  const BIN = join(REPO, 'dist', 'cli', 'main.js');
  const dir = tmpDir();
  const r = spawnSync(process.execPath, [BIN, 'bench', '--preset', 'vit-28', '--depths', '12,3', '--runs', '1', '--rounds', '1', '--warmup', '1', '--no-peers', '--no-memory', '--out', dir], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /vitfold export 3L\s+int8/);
  assert.ok(existsSync(join(dir, 'bench.svg')));
  const json = JSON.parse(readFileSync(join(dir, 'bench.json'), 'utf8'));
  assert.equal(json.rows.length, 4);
  assert.equal(json.spin, true, 'spin-waiting by default');
  const noSpin = spawnSync(process.execPath, [BIN, 'bench', '--preset', 'vit-28', '--depths', '3', '--precision', 'fp32', '--runs', '1', '--rounds', '1', '--warmup', '1', '--no-peers', '--no-memory', '--no-spin', '--out', dir], { encoding: 'utf8' });
  assert.equal(noSpin.status, 0, noSpin.stderr);
  assert.match(noSpin.stdout, /onnxruntime-node: spin-waiting off \(--no-spin\)/);
  assert.equal(JSON.parse(readFileSync(join(dir, 'bench.json'), 'utf8')).spin, false);
  const bad = spawnSync(process.execPath, [BIN, 'bench', '--preset', 'vit-28', '--depths', '5', '--out', dir], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--depths 5: does not divide the model's 12 layers/);
  const badP = spawnSync(process.execPath, [BIN, 'bench', '--precision', 'fp32,int4'], { encoding: 'utf8' });
  assert.notEqual(badP.status, 0);
  assert.match(badP.stderr, /--precision: 'int4' not one of fp32, fp16, int8/);
});
