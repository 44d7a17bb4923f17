// ORT profiles (deploy/profile.ts, used by `npm run bench:profile`): parsing both runtimes' trace
// text, per-run means over the last runs only, and the two adapters' profiles of a real export.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildExportGraph } from '../../src/deploy/export.js';
import { parseTrace, summarizeTrace, type TraceEvent } from '../../src/deploy/profile.js';
import { toOnnxBytes } from '../../src/graph/onnx.js';
import { Session } from '../../src/runtime/ort.js';
import { profileModelWeb } from '../../src/runtime/ort-web.js';
import { randomModel, smallConfig, tmpDir } from '../helpers.js';

const run = (ts: number, dur: number): TraceEvent => ({ cat: 'Session', name: 'model_run', ts, dur });
const node = (ts: number, op: string, dur: number): TraceEvent => ({ cat: 'Node', name: `n_${ts}_kernel_time`, ts, dur, args: { op_name: op } });

test('summarizeTrace: means per run over the last runs only, matrix ops summed, op types ordered', () => {
  const events = [
    run(0, 9000), node(10, 'Gemm', 5000), node(20, 'Gelu', 4000), // warm-up run: left out
    run(10000, 3000), node(10010, 'Gemm', 1000), node(10020, 'FusedMatMul', 500), node(10030, 'Gelu', 600), { cat: 'Node', name: 'n_fence_before', ts: 10040, dur: 50 },
    run(20000, 5000), node(20010, 'Gemm', 3000), node(20020, 'MatMul', 500), node(20030, 'LayerNormalization', 1000),
  ];
  const s = summarizeTrace(events, 2);
  assert.equal(s.runs, 2);
  assert.equal(s.runMs, 4); // (3000 + 5000) / 2 us
  assert.equal(s.kernelMs, 3.3); // (1000 + 500 + 600 + 3000 + 500 + 1000) / 2 us
  assert.equal(s.matrixMs, 2.5); // Gemm, FusedMatMul, MatMul
  assert.deepEqual(s.byOp, [['Gemm', 2], ['LayerNormalization', 0.5], ['Gelu', 0.3], ['FusedMatMul', 0.25], ['MatMul', 0.25]]);
  assert.throws(() => summarizeTrace(events, 4), /3 model runs, fewer than the 4/);
});

test('parseTrace: a JSON array file and onnxruntime-web stdout (trailing comma before the bracket)', () => {
  const events = [run(0, 10), node(1, 'Gemm', 5)];
  assert.deepEqual(parseTrace(JSON.stringify(events)), events);
  assert.deepEqual(parseTrace(`[\n${events.map((e) => JSON.stringify(e) + ',').join('\n')}\n]\n`), events);
});

test('profiles of a real export in onnxruntime-node and onnxruntime-web: every run, matrix products found', async () => {
  const cfg = smallConfig();
  const bytes = toOnnxBytes(buildExportGraph(randomModel(cfg, 3)));
  const shape = [1, cfg.in_chans, cfg.img_size, cfg.img_size];
  const dir = tmpDir();
  const s = await Session.create(bytes, { threads: 1, profile: join(dir, 'ort') });
  const x = { shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.5) };
  for (let i = 0; i < 4; i++) await s.run({ x });
  await s.endProfiling();
  await s.release();
  const files = readdirSync(dir);
  assert.equal(files.length, 1);
  const web = await profileModelWeb(bytes, { threads: 1, shape, runs: 3, warmup: 1 });
  for (const [what, text] of [['node', readFileSync(join(dir, files[0]), 'utf8')], ['web', web]] as const) {
    const events = parseTrace(text);
    assert.equal(events.filter((e) => e.name === 'model_run').length, 4, what);
    const sum = summarizeTrace(events, 3);
    assert.ok(sum.matrixMs > 0 && sum.matrixMs < sum.kernelMs, `${what}: matrix ${sum.matrixMs} of ${sum.kernelMs} ms`);
    assert.ok(sum.kernelMs <= sum.runMs, `${what}: kernels ${sum.kernelMs} within the run ${sum.runMs} ms`);
    assert.ok(sum.byOp.some(([op]) => op === 'LayerNormalization'), `${what}: ${sum.byOp.map(([op]) => op).join(', ')}`);
  }
});
