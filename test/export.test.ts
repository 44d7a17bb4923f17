// vitfold export (fp32): logits of the exported graph against the golden fixtures and the
// float64 reference; class-token-only last layer; symbolic batch; refusal of unjoined models.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { preset } from '../src/core/config.js';
import { fold } from '../src/core/fold.js';
import { toBranched, type Model } from '../src/core/model.js';
import { initParams } from '../src/core/params.js';
import { compareLogits, randomInput } from '../src/core/verify.js';
import { buildExportGraph, exportableModel, exportModel } from '../src/deploy/export.js';
import { toOnnxBytes } from '../src/graph/onnx.js';
import { loadModel, readFloatTensor } from '../src/io.js';
import { Session } from '../src/runtime/ort.js';
import { GOLDEN, randomModel, smallConfig } from './helpers.js';

const expected = JSON.parse(readFileSync(join(GOLDEN, 'expected.json'), 'utf8')).cases as { model: string; logits: number[][] }[];
const x = readFloatTensor(join(GOLDEN, 'input.safetensors'), 'x', 4);

async function run(bytes: Uint8Array, input: { shape: number[]; data: Float64Array }): Promise<Float64Array> {
  const s = await Session.create(bytes, { threads: 1 });
  const out = await s.run({ x: { shape: input.shape, data: Float32Array.from(input.data) } });
  await s.release();
  return Float64Array.from(out.logits.data as Float32Array);
}

test('exported golden models reproduce expected.json within 1e-4 (class-token-only and full last layer)', async () => {
  for (const name of ['deep', 'folded-k2', 'folded-k3', 'folded-k4', 'folded-k6']) {
    const model = loadModel(join(GOLDEN, `${name}.safetensors`));
    const want = Float64Array.from(expected.find((c) => c.model === name)!.logits.flat());
    for (const clsOnly of [true, false]) {
      const got = await run(toOnnxBytes(buildExportGraph(model, { clsOnly })), x);
      assert.ok(compareLogits(want, got).maxRel < 1e-4, `${name} clsOnly=${clsOnly}: ${compareLogits(want, got).maxRel}`);
    }
  }
});

test('export of a folded DeiT-Tiny-shaped model validates against the float64 reference', async () => {
  const cfg = preset('deit-tiny');
  const deep: Model = { config: cfg, structure: { kind: 'plain' }, params: initParams(cfg, 3), dtype: 'F32', extraMetadata: {} };
  const folded = fold(toBranched(deep, 4, { attn: 1, ffn: 1 }));
  const r = await exportModel(folded, { validateBatch: 1 });
  assert.ok(r.error.maxRel < 1e-4, `max rel ${r.error.maxRel}`);
  assert.ok(r.error.maxAbs > 0, 'the comparison ran');
});

test('symbolic batch; the class-token-only graph equals the full one; export refuses unjoined models', async () => {
  const m = fold(toBranched(randomModel(smallConfig(), 4), 3, { attn: 1, ffn: 1 }));
  const a = toOnnxBytes(buildExportGraph(m, { clsOnly: true }));
  const b = toOnnxBytes(buildExportGraph(m, { clsOnly: false }));
  for (const batch of [1, 3]) {
    const xi = randomInput(m, batch, batch);
    const ya = await run(a, xi);
    assert.equal(ya.length, batch * 5);
    assert.ok(compareLogits(await run(b, xi), ya).maxRel < 1e-5);
  }
  const unjoined = toBranched(randomModel(smallConfig(), 4), 3, { attn: [1, 1], ffn: [1, 0.5] });
  assert.throws(() => exportableModel(unjoined, 'run/last.safetensors'), /run\/last.safetensors: is a branched model that is not fully joined.*\n {2}block 1: ffn join coefficient f_1 = 0.5\nFinish training .*vitfold fold run\/last.safetensors/s);
  const joined = toBranched(randomModel(smallConfig(), 4), 3, { attn: 1, ffn: 1 });
  const e = exportableModel(joined, 'j.safetensors');
  assert.equal(e.model.structure.kind, 'folded');
  assert.match(e.note!, /fully joined; exporting its fold \(2 layers\)/);
});
