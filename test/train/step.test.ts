// The training-step graph against a float64 TypeScript AdamW on gradients from
// lossAndGradients; clipping, decay mask, drop path and join-phase switching.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { toBranched, type Model } from '../../src/core/model.js';
import { randomInput } from '../../src/core/verify.js';
import { lossAndGradients, oneHotTargets, ParamLayout } from '../../src/model/engine.js';
import { buildTrainStepGraph, decayMask, DEFAULT_ADAMW, type AdamWConfig } from '../../src/train/step-graph.js';
import { toOnnxBytes } from '../../src/graph/onnx.js';
import { dropPathMasks, StepRunner } from '../../src/train/step-runner.js';
import { Rng } from '../../src/core/rng.js';
import { Graph } from '../../src/graph/graph.js';
import { Session } from '../../src/runtime/ort.js';
import { randomModel, smallConfig, tmpDir } from '../helpers.js';

/** torch.optim.AdamW (+ clip_grad_norm_) in float64. */
function adamwReference(p: Float64Array, m: Float64Array, v: Float64Array, grad: Float64Array, mask: Float64Array, lr: number, t: number, o: AdamWConfig) {
  let g = grad;
  const norm = Math.sqrt(grad.reduce((s, x) => s + x * x, 0));
  if (o.clipNorm !== null) {
    const scale = Math.min(1, o.clipNorm / (norm + 1e-6));
    g = grad.map((x) => x * scale);
  }
  const bc1 = 1 - o.beta1 ** t;
  const bc2 = 1 - o.beta2 ** t;
  for (let i = 0; i < p.length; i++) {
    p[i] *= 1 - lr * o.weightDecay * mask[i];
    m[i] = o.beta1 * m[i] + (1 - o.beta1) * g[i];
    v[i] = o.beta2 * v[i] + (1 - o.beta2) * g[i] * g[i];
    p[i] -= (lr / bc1) * (m[i] / (Math.sqrt(v[i]) / Math.sqrt(bc2) + o.eps));
  }
  return norm;
}

// float64: rounding of step-1 parameters, amplified by m / sqrt(v) for tiny gradients, stays
// below 1e-10 of the update size (observed ~2e-13; the key bias, whose gradient is 0, is left
// out of training graphs, so no rounding noise of it is amplified); a wrong bias correction or
// decay would be off by ~lr.
const F64_TOL = { value: 1e-12, param: 1e-10 };
const cfg = smallConfig();
const labels = [0, 3, 4, 1];

/** tol.value: relative error of loss and grad norm; tol.param: max parameter error as a fraction of lr (|update| <= ~lr). */
async function checkSteps(model: Model, dtype: 'float32' | 'float64', optim: Partial<AdamWConfig>, tol: { value: number; param: number }, join?: { attn: number[]; ffn: number[] }) {
  const o = { ...DEFAULT_ADAMW, ...optim };
  const layout = new ParamLayout(cfg);
  const mask = decayMask(cfg, layout);
  const runner = new StepRunner(model, { batch: 4, dtype, optim: o, threads: 1 });
  const p = Float64Array.from(layout.pack(model.params, 'float64'));
  const m = new Float64Array(layout.total);
  const v = new Float64Array(layout.total);
  const lrs = [1e-3, 5e-4];
  for (let t = 1; t <= 2; t++) {
    const x = randomInput(model, 4, t);
    const targets = oneHotTargets(labels, cfg.num_classes);
    // Gradients at the current parameters, in float64.
    const current = { ...model, params: layout.unpack(p) };
    const ref = await lossAndGradients(current, x, labels, { dtype: 'float64', join });
    const norm = adamwReference(p, m, v, layout.pack(ref.grads, 'float64') as Float64Array, mask, lrs[t - 1], t, o);
    const r = await runner.run(x, targets, lrs[t - 1], join);
    assert.ok(Math.abs(r.loss - ref.loss) <= tol.value * ref.loss, `step ${t}: loss ${r.loss} vs ${ref.loss}`);
    assert.ok(Math.abs(r.gradNorm - norm) <= tol.value * norm, `step ${t}: grad norm ${r.gradNorm} vs ${norm}`);
    let worst = 0;
    for (let i = 0; i < p.length; i++) worst = Math.max(worst, Math.abs(runner.params[i] - p[i]));
    assert.ok(worst <= tol.param * lrs[t - 1], `step ${t}: max param diff ${worst}`);
    assert.equal(runner.step, t);
  }
  await runner.release();
}

test('two AdamW steps (weight decay with timm mask) equal torch AdamW semantics in float64', async () => {
  await checkSteps(randomModel(cfg, 21), 'float64', { weightDecay: 0.05 }, F64_TOL);
});

test('gradient clipping (clip_grad_norm_ semantics) in float64', async () => {
  await checkSteps(randomModel(cfg, 22), 'float64', { clipNorm: 0.05, weightDecay: 0 }, F64_TOL);
});

test('float32 step: the update of fp32 gradients equals float64 AdamW to fp32 rounding', async () => {
  // Against float64 gradients the comparison would measure gradient rounding: at step 1 the
  // update is lr * g / (|g| + eps), which flips sign for elements whose g is within fp32 noise
  // of 0. So the reference update starts from the same fp32 gradients.
  const o = { ...DEFAULT_ADAMW, weightDecay: 0.05, clipNorm: 1 };
  const model = randomModel(cfg, 23);
  const layout = new ParamLayout(cfg);
  const x = randomInput(model, 4, 1);
  const fp32 = await lossAndGradients(model, x, labels, { dtype: 'float32' });
  const p = Float64Array.from(layout.pack(model.params, 'float32')); // the same fp32 start
  adamwReference(p, new Float64Array(p.length), new Float64Array(p.length), layout.pack(fp32.grads, 'float64') as Float64Array, decayMask(cfg, layout), 1e-3, 1, o);
  const runner = new StepRunner(model, { batch: 4, dtype: 'float32', optim: o, threads: 1 });
  const r = await runner.run(x, oneHotTargets(labels, cfg.num_classes), 1e-3);
  await runner.release();
  assert.ok(Math.abs(r.loss - fp32.loss) <= 1e-6 * fp32.loss);
  // fp32 rounding: of the update (size ~lr) and of p. An AdamW error would be of order lr.
  let worst = 0;
  for (let i = 0; i < p.length; i++) worst = Math.max(worst, Math.abs(runner.params[i] - p[i]) / (1e-5 * 1e-3 + 1e-7 * Math.abs(p[i])));
  assert.ok(worst <= 1, `param diff ${worst} x the fp32 bound`);
});

test('the step graph hands out params, m and v without copies (their producers write the outputs)', () => {
  const { onnx } = createRequire(import.meta.url)('onnx-proto');
  const bytes = toOnnxBytes(buildTrainStepGraph(cfg, { kind: 'plain' }, { batch: 2, optim: { weightDecay: 0.05 } }));
  const nodes = onnx.ModelProto.decode(bytes).graph.node as { opType: string; output: string[] }[];
  for (const name of ['params_out', 'm_out', 'v_out']) {
    const producer = nodes.find((n) => n.output.includes(name));
    assert.ok(producer && producer.opType !== 'Identity', `${name} is produced by ${producer?.opType}`);
  }
});

test('weight gradients are Gemms without transA, also in the graph ORT optimizes and runs; bias gradients sum the same dY^T', async () => {
  // MLAS copies a transA operand inside the Gemm, and that form ran 1.1-1.2x slower than a
  // Gemm fed dY^T by a separate Transpose (npm run bench:wgrad); ORT's GemmTransposeFusion
  // folds a 2-D Transpose back into transA, so the step graph's transposes must survive ORT's
  // optimizer.
  const { onnx } = createRequire(import.meta.url)('onnx-proto');
  type N = { opType: string; input: string[]; attribute: { name: string; i: number | { toNumber(): number } }[] };
  const transA = (n: N) => n.opType === 'Gemm' && n.attribute.some((a) => a.name === 'transA' && Number(a.i) === 1);
  const optimized = async (bytes: Uint8Array) => {
    const path = join(tmpDir(), 'optimized.onnx');
    const s = await Session.create(bytes, { threads: 1, optimization: 'extended', optimizedModelPath: path });
    await s.release();
    return onnx.ModelProto.decode(readFileSync(path)).graph.node as N[];
  };
  // The check sees the fusion where it happens: a plain 2-D Transpose into a Gemm becomes transA.
  const control = new Graph('control', { dtype: 'float32' });
  const d = control.input('d', 'float32', [64, 8]);
  control.output(control.gemm(control.transpose(d, [1, 0]), control.input('x', 'float32', [64, 4]), null), 'y');
  assert.equal((await optimized(toOnnxBytes(control))).filter(transA).length, 1);

  const g = buildTrainStepGraph(cfg, { kind: 'plain' }, { batch: 2, optim: { weightDecay: 0.05 } });
  const source = onnx.ModelProto.decode(toOnnxBytes(g)).graph.node as N[];
  const fromTransposeMatrix = (name: string) => {
    const t = g.producer.get(g.producer.get(name)?.op === 'Reshape' ? g.producer.get(name)!.inputs[0] : '');
    return t?.op === 'Transpose' && (t.attrs.perm as number[]).join() === '0,2,1';
  };
  const weightGrads = source.filter((n) => n.opType === 'Gemm' && fromTransposeMatrix(n.input[0]));
  // one per linear layer: the patch embedding, qkv / proj / fc1 / fc2 per block (the last
  // block, for the class token only, has q and k, v as two layers), the head
  assert.equal(weightGrads.length, 1 + 4 * cfg.depth + 1 + 1);
  // and each layer's bias gradient sums the rows of the same dY^T
  const biasGrads = source.filter((n) => n.opType === 'ReduceSum' && fromTransposeMatrix(n.input[0]));
  assert.deepEqual(biasGrads.map((n) => n.input[0]).sort(), weightGrads.map((n) => n.input[0]).sort());
  // transA is left only where A has one row (the folded LayerNorm shifts' weight gradients)
  for (const n of source.filter(transA)) assert.equal(g.values.get(n.input[0])!.shape[0], 1, `transA Gemm on ${n.input[0]}`);
  const run = await optimized(toOnnxBytes(g));
  assert.equal(run.filter(transA).length, source.filter(transA).length, 'ORT fused a weight-gradient Transpose back into transA');
  assert.ok(run.filter((n) => n.opType === 'Transpose').length >= weightGrads.length);
});

test('branched model: coefficients as inputs, one session per join phase', async () => {
  const model = toBranched(randomModel(cfg, 24), 3);
  await checkSteps(model, 'float64', {}, F64_TOL, { attn: [1, 0.5], ffn: [0.25, 0] });
});

test('drop path: keep = 1 changes nothing; keep = 0 removes exactly that sub-layer', async () => {
  const model = randomModel(cfg, 25);
  const x = randomInput(model, 4, 9);
  const targets = oneHotTargets(labels, cfg.num_classes);
  const T = (cfg.img_size / cfg.patch_size) ** 2 + 1;
  const rows = 4 * T;
  const lossWith = async (keep: Float64Array) => {
    const r = new StepRunner(model, { batch: 4, dtype: 'float64', dropPath: 0.1, threads: 1 });
    const out = await r.run(x, targets, 0, undefined, { dropKeep: keep });
    await r.release();
    return out.loss;
  };
  const base = (await lossAndGradients(model, x, labels, { dtype: 'float64' })).loss;
  assert.ok(Math.abs((await lossWith(new Float64Array(2 * cfg.depth * rows).fill(1))) - base) < 1e-13);
  // Drop layer 2's attention for every sample = a model whose layer-2 projection is zero.
  const keep = new Float64Array(2 * cfg.depth * rows).fill(1);
  keep.fill(0, 4 * rows, 5 * rows);
  const ablated = { ...model, params: new Map(model.params) };
  for (const n of ['blocks.2.attn.proj.weight', 'blocks.2.attn.proj.bias']) ablated.params.set(n, { shape: model.params.get(n)!.shape, data: new Float64Array(model.params.get(n)!.data.length) });
  const want = (await lossAndGradients(ablated, x, labels, { dtype: 'float64' })).loss;
  const got = await lossWith(keep);
  assert.ok(Math.abs(got - want) < 1e-12, `${got} vs ${want}`);
  assert.ok(Math.abs(got - base) > 1e-6, 'dropping a sub-layer must change the loss');
});

test('drop-path masks: timm rate per layer, per sample, scaled by 1 / (1 - rate)', () => {
  const depth = 5, batch = 2000, T = 3, rate = 0.2;
  const m = dropPathMasks(new Rng(1), depth, batch, T, rate);
  for (let l = 0; l < depth; l++) {
    const r = (rate * l) / (depth - 1);
    let dropped = 0;
    for (let b = 0; b < batch; b++) {
      const v = m[(2 * l) * batch * T + b * T];
      assert.ok(v === 0 || Math.abs(v - 1 / (1 - r)) < 1e-6);
      assert.equal(m[(2 * l) * batch * T + b * T + 2], v, 'same factor for all tokens of a sample');
      if (v === 0) dropped++;
    }
    assert.ok(Math.abs(dropped / batch - r) < 0.03, `layer ${l}: dropped ${dropped / batch}, rate ${r}`);
  }
  assert.deepEqual(dropPathMasks(new Rng(1), depth, batch, T, rate), m, 'same seed, same masks');
});
