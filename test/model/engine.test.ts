// The ONNX engine against the golden fixtures: fp32 logits for every expected case, gradients
// of every parameter (fp32 and float64 graphs), batch-symbolic inference graphs.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { toBranched, type Model } from '../../src/core/model.js';
import { decodeFloat } from '../../src/core/safetensors.js';
import { compareLogits, randomInput } from '../../src/core/verify.js';
import { referenceForward } from '../../src/core/reference.js';
import { fold } from '../../src/core/fold.js';
import { lossAndGradients, Predictor } from '../../src/model/engine.js';
import { loadModel, readFloatTensor, readIntTensor, readSafetensors } from '../../src/io.js';
import { GOLDEN, randomModel, smallConfig } from '../helpers.js';

const expected = JSON.parse(readFileSync(join(GOLDEN, 'expected.json'), 'utf8')) as {
  cases: { model: string; k: number; lam_attn?: number[]; lam_ffn?: number[]; logits: number[][] }[];
};
const gradCases = JSON.parse(readFileSync(join(GOLDEN, 'gradients.json'), 'utf8')) as {
  cases: { name: string; k: number; lam_attn: number[] | null; lam_ffn: number[] | null; loss: number; file: string }[];
};
const deep = loadModel(join(GOLDEN, 'deep.safetensors'));
const x = readFloatTensor(join(GOLDEN, 'input.safetensors'), 'x', 4);
const labels = readIntTensor(join(GOLDEN, 'labels.safetensors'), 'labels').data;

describe('fp32 ONNX forward reproduces expected.json within 1e-4', () => {
  for (const c of expected.cases) {
    const name = c.model === 'branched' ? `branched k=${c.k} a=${JSON.stringify(c.lam_attn)} f=${JSON.stringify(c.lam_ffn)}` : c.model;
    test(name, async () => {
      const model: Model =
        c.model === 'deep' ? deep : c.model === 'branched' ? toBranched(deep, c.k, { attn: c.lam_attn!, ffn: c.lam_ffn! }) : loadModel(join(GOLDEN, `${c.model}.safetensors`));
      const p = await Predictor.create(model, { threads: 1 });
      const y = await p.predict(x);
      await p.release();
      assert.deepEqual(y.shape, [2, 10]);
      const err = compareLogits(Float64Array.from(c.logits.flat()), y.data);
      assert.ok(err.maxRel < 1e-4, `max rel ${err.maxRel}`);
    });
  }
});

describe('gradients of every parameter match grads-*.safetensors', () => {
  // fp32: within 1e-4 of each tensor's max magnitude (the bound). float64 graph: the
  // files store F32, so they can only be matched to F32 rounding (~6e-8); the loss, a float64
  // number in the metadata, matches to 1e-12.
  for (const c of gradCases.cases) {
    for (const [dtype, tol, lossTol] of [['float32', 1e-4, 1e-6], ['float64', 2e-7, 1e-12]] as const) {
      test(`${c.name} (${dtype})`, async () => {
        const model = c.k === 1 ? deep : toBranched(deep, c.k, { attn: c.lam_attn!, ffn: c.lam_ffn! });
        const r = await lossAndGradients(model, x, labels, { dtype, threads: 2 });
        assert.ok(Math.abs(r.loss - c.loss) / c.loss < lossTol, `loss ${r.loss} vs ${c.loss}`);
        const ref = readSafetensors(join(GOLDEN, c.file));
        assert.equal(r.grads.size, ref.tensors.size);
        for (const [name, raw] of ref.tensors) {
          const want = decodeFloat(raw, name);
          const got = r.grads.get(name)!.data;
          let scale = 0;
          let diff = 0;
          for (let i = 0; i < want.length; i++) {
            scale = Math.max(scale, Math.abs(want[i]));
            diff = Math.max(diff, Math.abs(want[i] - got[i]));
          }
          assert.ok(diff <= tol * scale, `${name}: max diff ${diff} vs scale ${scale}`);
        }
      });
    }
  }
});

test('the key bias gradient is exactly 0 (softmax cancels it), as PyTorch computes it up to rounding', async () => {
  const c = gradCases.cases[0];
  const ref = readSafetensors(join(GOLDEN, c.file));
  const r = await lossAndGradients(deep, x, labels, { dtype: 'float32', threads: 1 });
  const HD = deep.config.num_heads * deep.config.head_dim;
  for (let i = 0; i < deep.config.depth; i++) {
    const name = `blocks.${i}.attn.qkv.bias`;
    const got = r.grads.get(name)!.data;
    const want = decodeFloat(ref.tensors.get(name)!, name);
    const scale = Math.max(...Array.from(want, Math.abs));
    assert.ok(got.slice(0, HD).some((v) => v !== 0) && got.slice(2 * HD).some((v) => v !== 0), `${name}: q and v parts have gradients`);
    assert.ok(got.slice(HD, 2 * HD).every((v) => v === 0), `${name}: key part ${Array.from(got.slice(HD, 2 * HD))}`);
    assert.ok(want.slice(HD, 2 * HD).every((v) => Math.abs(v) <= 1e-5 * scale), `${name}: PyTorch's key part is not rounding-small`);
  }
});

test('inference graphs have a symbolic batch; folded = plain graph with wider shapes', async () => {
  const m = toBranched(randomModel(smallConfig(), 11), 3, { attn: 1, ffn: 1 });
  const p = await Predictor.create(m, { threads: 1 });
  const pf = await Predictor.create(fold(m), { threads: 1 });
  for (const batch of [1, 5]) {
    const xi = randomInput(m, batch, batch);
    const want = referenceForward(m, xi).data;
    const y = await p.predict(xi);
    assert.deepEqual(y.shape, [batch, 5]);
    assert.ok(compareLogits(want, y.data).maxRel < 1e-5);
    assert.ok(compareLogits(want, (await pf.predict(xi)).data).maxRel < 1e-5);
  }
  await p.release();
  await pf.release();
});

test('label smoothing: loss = (1 - e) CE + e * mean over classes of -log p', async () => {
  const m = randomModel(smallConfig(), 12);
  const xi = randomInput(m, 3, 1);
  const lbl = [0, 4, 2];
  const plain = await lossAndGradients(m, xi, lbl, { dtype: 'float64' });
  const smooth = await lossAndGradients(m, xi, lbl, { dtype: 'float64', labelSmoothing: 0.1 });
  const logits = referenceForward(m, xi).data;
  let uniform = 0;
  for (let b = 0; b < 3; b++) {
    const row = logits.subarray(b * 5, b * 5 + 5);
    const mx = Math.max(...row);
    const lse = mx + Math.log(row.reduce((s, v) => s + Math.exp(v - mx), 0));
    for (const v of row) uniform += (lse - v) / 5 / 3;
  }
  assert.ok(Math.abs(smooth.loss - (0.9 * plain.loss + 0.1 * uniform)) < 1e-12, `${smooth.loss}`);
});

test('float64 engine equals the float64 reference within 1e-12 (plain, branched, folded)', async () => {
  // Random models with large activations: GELU inputs reach erf's |x| > 4 branch, and ORT's
  // extended fusions (float32 LayerNorm statistics) would show up here at ~1e-8.
  const base = randomModel(smallConfig(), 1);
  for (const m of [base, toBranched(base, 2, { attn: [1, 0.3, 0], ffn: [0.6, 0, 0] }), fold(toBranched(base, 3, { attn: 1, ffn: 1 }))]) {
    const xi = randomInput(m, 2, 4);
    const p = await Predictor.create(m, { dtype: 'float64', threads: 1 });
    const err = compareLogits(referenceForward(m, xi).data, (await p.predict(xi)).data);
    await p.release();
    assert.ok(err.maxRel < 1e-12, `${m.structure.kind}: ${err.maxRel}`);
  }
});
