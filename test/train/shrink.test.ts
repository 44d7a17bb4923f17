// Shrink: the distillation loss and its gradients, the frozen teacher, the student equal to the
// teacher at every coefficient 0, layer dropping, and `vitfold shrink` end to end.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { evenlySpacedLayers, keepLayers } from '../../src/core/layers.js';
import { toBranched } from '../../src/core/model.js';
import { referenceForward } from '../../src/core/reference.js';
import { Rng } from '../../src/core/rng.js';
import { randomInput } from '../../src/core/verify.js';
import { Graph } from '../../src/graph/graph.js';
import { toOnnxBytes } from '../../src/graph/onnx.js';
import { loadModel, saveModel } from '../../src/io.js';
import { lossAndGradients, oneHotTargets, Predictor } from '../../src/model/engine.js';
import { trainingLoss } from '../../src/model/vit-graph.js';
import { Session } from '../../src/runtime/ort.js';
import { softTargets, Teacher } from '../../src/train/distill.js';
import { planShrink, shrinkStart } from '../../src/train/shrink.js';
import { StepRunner } from '../../src/train/step-runner.js';
import { checkGradients } from '../graph-helpers.js';
import { maxAbsDiff, randomModel, REPO, smallConfig, tmpDir, writeDataset } from '../helpers.js';

const cfg = smallConfig(); // depth 6: k = 2, 3 or 6

/** (1 - a) CE(z, y) + a T^2 CE(z / T, p), batch mean, in float64 TypeScript. */
function kdLossReference(z: Float64Array, y: Float64Array, p: Float64Array, B: number, K: number, alpha: number, T: number): number {
  const ce = (logits: number[], t: ArrayLike<number>) => {
    const m = Math.max(...logits);
    const lse = m + Math.log(logits.reduce((s, v) => s + Math.exp(v - m), 0));
    return -logits.reduce((s, v, k) => s + t[k] * (v - lse), 0);
  };
  let total = 0;
  for (let b = 0; b < B; b++) {
    const row = Array.from(z.subarray(b * K, (b + 1) * K));
    total += (1 - alpha) * ce(row, y.subarray(b * K, (b + 1) * K)) + alpha * T * T * ce(row.map((v) => v / T), p.subarray(b * K, (b + 1) * K));
  }
  return total / B;
}

describe('distillation loss', () => {
  const B = 3, K = 5;
  for (const [alpha, T] of [[0.5, 2], [0.9, 4], [1, 1]] as const) {
    test(`alpha ${alpha}, T ${T}: value equals the float64 formula; gradients match finite differences`, async () => {
      const rng = new Rng(11);
      const z = Float64Array.from({ length: B * K }, () => 2 * rng.normal());
      const y = oneHotTargets([0, 3, 4], K, 0.1).data;
      const p = softTargets({ shape: [B, K], data: Float64Array.from({ length: B * K }, () => rng.normal()) }, T).data;
      const g = new Graph('kd', { dtype: 'float64' });
      const zi = g.input('z', 'float64', [B, K]);
      const loss = trainingLoss(g, zi, g.constant(Array.from(y), [B, K]), { alpha, temperature: T, teacherProbs: g.constant(Array.from(p), [B, K]) });
      g.output(loss, 'loss');
      const s = await Session.create(toOnnxBytes(g), { threads: 1 });
      const got = (await s.run({ z: { shape: [B, K], data: z } })).loss.data[0] as number;
      await s.release();
      const want = kdLossReference(z, y, p, B, K, alpha, T);
      assert.ok(Math.abs(got - want) <= 1e-12 * Math.abs(want), `loss ${got} vs ${want}`);
      // Gradients wrt the logits (and the teacher's probabilities) against central differences.
      const err = await checkGradients([{ shape: [B, K] }, { shape: [B, K], domain: 'positive' }], (gg, [zz, pp]) =>
        gg.reshape(trainingLoss(gg, zz, gg.constant(Array.from(y), [B, K]), { alpha, temperature: T, teacherProbs: pp }), [1]),
      );
      assert.ok(err < 1e-6, `finite-difference error ${err}`);
    });
  }
  test('alpha 0 is the label loss alone', async () => {
    const rng = new Rng(2);
    const z = Float64Array.from({ length: B * K }, () => rng.normal());
    const y = oneHotTargets([1, 1, 2], K).data;
    assert.equal(kdLossReference(z, y, y, B, K, 0, 3), kdLossReference(z, y, Float64Array.from(y).reverse(), B, K, 0, 3));
  });
});

describe('shrink start', () => {
  for (const k of [2, 3, 6]) {
    test(`k = ${k}: at every coefficient 0 the student is the teacher, and the distillation gradient vanishes`, async () => {
      const teacher = randomModel(cfg, 40 + k);
      const { plan, branches } = planShrink(teacher, 'teacher', 'join', cfg.depth / k);
      assert.equal(branches, k);
      const student = toBranched(shrinkStart(teacher, plan), branches);
      const x = randomInput(teacher, 3, 1);
      assert.equal(maxAbsDiff(referenceForward(student, x).data, referenceForward(teacher, x).data), 0, 'float64 reference: identical logits');
      // In the float64 engine: soft targets from the teacher, alpha 1 -> no gradient at all.
      const tp = await Predictor.create(teacher, { dtype: 'float64', threads: 1 });
      const probs = softTargets(await tp.predict(x), 2);
      await tp.release();
      const labels = [0, 2, 4];
      const kd = await lossAndGradients(student, x, labels, { dtype: 'float64', threads: 1, distill: { alpha: 1, temperature: 2, teacherProbs: probs } });
      const ce = await lossAndGradients(student, x, labels, { dtype: 'float64', threads: 1 });
      const maxOf = (gs: typeof kd.grads) => Math.max(...[...gs.values()].flatMap((t) => Array.from(t.data, Math.abs)));
      assert.ok(maxOf(kd.grads) < 1e-12 * maxOf(ce.grads), `distillation gradient at the start ${maxOf(kd.grads)} (label gradient ${maxOf(ce.grads)})`);
    });
  }

  test('the teacher stays frozen: its weights and outputs are bit-identical after distilled steps', async () => {
    const teacher = randomModel(cfg, 50);
    const before = new Map([...teacher.params].map(([n, t]) => [n, Float64Array.from(t.data)]));
    const t = await Teacher.create(teacher, 2, 1);
    const x = randomInput(teacher, 4, 3);
    const xf = { shape: x.shape, data: Float32Array.from(x.data) };
    const p0 = await t.probabilities(xf);
    const { plan } = planShrink(teacher, 'teacher', 'join', 3);
    const runner = new StepRunner(toBranched(shrinkStart(teacher, plan), 2, { attn: 0.5, ffn: 0 }), { batch: 4, threads: 1, distill: { alpha: 0.5, temperature: 2 } });
    const start = Float32Array.from(runner.params);
    const targets = oneHotTargets([0, 1, 2, 3], cfg.num_classes, 0.1);
    for (let i = 0; i < 2; i++) await runner.run(xf, targets, 1e-2, { attn: [0.5, 0.5, 0.5], ffn: [0, 0, 0] }, { teacherProbs: await t.probabilities(xf) });
    assert.ok(maxAbsDiff(runner.params, start) > 0, 'the student trained');
    await runner.release();
    for (const [n, data] of before) assert.deepEqual(teacher.params.get(n)!.data, data, `teacher ${n} changed`);
    assert.deepEqual((await t.probabilities(xf)).data, p0.data);
    await t.release();
    await assert.rejects(
      new StepRunner(teacher, { batch: 4, threads: 1, distill: { alpha: 0.5, temperature: 2 } }).run(xf, targets, 0),
      /needs the teacher's probabilities/,
    );
  });
});

describe('layer dropping', () => {
  test('evenly spaced layers include the first and the last', () => {
    assert.deepEqual(evenlySpacedLayers(12, 3), [0, 6, 11]);
    assert.deepEqual(evenlySpacedLayers(12, 4), [0, 4, 7, 11]);
    assert.deepEqual(evenlySpacedLayers(12, 6), [0, 2, 4, 7, 9, 11]);
    assert.deepEqual(evenlySpacedLayers(12, 12), [...Array(12).keys()]);
    assert.throws(() => evenlySpacedLayers(12, 13), /cannot keep 13 of 12 layers/);
  });
  test('keepLayers keeps exactly those layers, renumbered; all layers give the same model', () => {
    const m = randomModel(cfg, 60);
    const kept = keepLayers(m, [1, 4]);
    assert.equal(kept.config.depth, 2);
    assert.deepEqual(kept.params.get('blocks.1.mlp.fc2.weight')!.data, m.params.get('blocks.4.mlp.fc2.weight')!.data);
    assert.ok(!kept.params.has('blocks.2.norm1.weight'));
    const x = randomInput(m, 2, 0);
    assert.equal(maxAbsDiff(referenceForward(keepLayers(m, [0, 1, 2, 3, 4, 5]), x).data, referenceForward(m, x).data), 0);
    assert.throws(() => keepLayers(m, [3, 1]), /increasing integers in \[0, 6\)/);
  });
  test('plans: join needs L to divide the depth; drop takes any L; a branched teacher is refused', () => {
    const m = randomModel(cfg, 61);
    assert.throws(() => planShrink(m, 't.safetensors', 'join', 4), /--depth 4 does not divide the model's 6 layers .*L in 1, 2, 3/);
    assert.deepEqual(planShrink(m, 't.safetensors', 'drop', 4).plan.layers, [0, 2, 3, 5]);
    assert.throws(() => planShrink(m, 't.safetensors', 'join', 6), /--depth must be an integer in \[1, 5\]/);
    assert.throws(() => planShrink(toBranched(m, 2), 't.safetensors', 'join', 3), /is a branched model/);
  });
});

describe('vitfold shrink', () => {
  const BIN = join(REPO, 'dist', 'cli', 'main.js');
  const vitfold = (...args: string[]) => {
    const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
    return { code: r.status, out: r.stdout, err: r.stderr };
  };
  // A 4-layer teacher for 28x28 grey images, 10 classes.
  const tcfg = smallConfig({ img_size: 28, patch_size: 7, in_chans: 1, num_classes: 10, depth: 4 });

  test('join: trains, folds, verifies, evaluates and exports; the file records the recipe', () => {
    const dir = tmpDir();
    writeDataset(join(dir, 'data'), 128, 48, false);
    const teacherPath = join(dir, 'teacher.safetensors');
    saveModel(teacherPath, randomModel(tcfg, 70));
    const run = join(dir, 'run');
    const r = vitfold('shrink', teacherPath, '--depth', '2', '--data', join(dir, 'data'), '--epochs', '2', '--batch', '32', '--threads', '1', '--out', run);
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.out, /instant  the 4-layer model folded to 2 layers as it is \(no training\): top-1/);
    assert.match(r.out, /shrunk   .*shrunk.safetensors: 2 layers, top-1/);
    const m = loadModel(join(run, 'shrunk.safetensors'));
    assert.deepEqual(m.structure, { kind: 'folded', branches: 2, source_depth: 4 });
    const recipe = JSON.parse(m.extraMetadata.shrink);
    assert.equal(recipe.method, 'join');
    assert.deepEqual(recipe.distill, { alpha: 0.9, temperature: 2 });
    assert.ok(recipe.verify_max_rel < 1e-9, `fold error ${recipe.verify_max_rel}`);
    assert.ok(existsSync(join(run, 'shrunk.onnx')), 'exported');
    const log = readFileSync(join(run, 'log.jsonl'), 'utf8');
    assert.match(log, /"event":"shrunk"/);
    assert.match(log, /"teacher_ms"/);
  });

  test('drop and the instant fold; bad input exits 2 with the reason', () => {
    const dir = tmpDir();
    writeDataset(join(dir, 'data'), 64, 32, false);
    const teacherPath = join(dir, 'teacher.safetensors');
    saveModel(teacherPath, randomModel(tcfg, 71));
    const drop = vitfold('shrink', teacherPath, '--depth', '3', '--method', 'drop', '--data', join(dir, 'data'), '--epochs', '1', '--batch', '32', '--threads', '1', '--no-export', '--out', join(dir, 'drop'));
    assert.equal(drop.code, 0, drop.out + drop.err);
    assert.match(drop.out, /layers 0, 2, 3 kept/);
    assert.equal(loadModel(join(dir, 'drop', 'shrunk.safetensors')).config.depth, 3);
    const instant = vitfold('shrink', teacherPath, '--depth', '2', '--epochs', '0', '--data', join(dir, 'data'), '--no-export', '--out', join(dir, 'instant'));
    assert.equal(instant.code, 0, instant.out + instant.err);
    assert.equal(JSON.parse(loadModel(join(dir, 'instant', 'shrunk.safetensors')).extraMetadata.shrink).epochs, 0);
    const bad = vitfold('shrink', teacherPath, '--depth', '3', '--data', join(dir, 'data'), '--out', join(dir, 'bad'));
    assert.equal(bad.code, 2);
    assert.match(bad.err, /--depth 3 does not divide the model's 4 layers/);
    const onto = vitfold('shrink', teacherPath, '--depth', '2', '--data', join(dir, 'data'), '--out', dir);
    assert.equal(onto.code, 2);
    assert.match(onto.err, /holds the input .*choose another --out/);
    const none = vitfold('shrink', teacherPath, '--data', join(dir, 'data'));
    assert.equal(none.code, 2);
    assert.match(none.err, /give exactly one of --depth L or --branches k/);
  });
});
