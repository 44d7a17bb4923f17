// Shrink: the distillation loss and its gradients, the frozen teacher, the student equal to the
// teacher at every coefficient 0, layer dropping, and `vitfold shrink` end to end.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { numTokens } from '../../src/core/config.js';
import { boundaryLayers, evenlySpacedLayers, keepLayers } from '../../src/core/layers.js';
import { toBranched } from '../../src/core/model.js';
import { referenceForward } from '../../src/core/reference.js';
import { Rng } from '../../src/core/rng.js';
import { randomInput } from '../../src/core/verify.js';
import { Graph } from '../../src/graph/graph.js';
import { toOnnxBytes } from '../../src/graph/onnx.js';
import { loadModel, saveModel } from '../../src/io.js';
import { lossAndGradients, oneHotTargets, Predictor } from '../../src/model/engine.js';
import { hiddenMatchingLoss, trainingLoss } from '../../src/model/vit-graph.js';
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
  test('hidden-state matching: value equals the float64 formula (per image); gradients match finite differences', async () => {
    const S = 2, B = 2, R = 4, D = 3, beta = 0.7; // R = B * T rows, T = 2 tokens
    const rng = new Rng(12);
    const h = Array.from({ length: S }, () => Float64Array.from({ length: R * D }, () => rng.normal()));
    const t = Float64Array.from({ length: S * R * D }, () => rng.normal());
    const per = (R / B) * D; // values per image
    let want = 0;
    for (let s = 0; s < S; s++) {
      for (let b = 0; b < B; b++) {
        let num = 0, den = 0;
        for (let i = b * per; i < (b + 1) * per; i++) {
          num += (h[s][i] - t[s * R * D + i]) ** 2;
          den += t[s * R * D + i] ** 2;
        }
        want += (beta / S) * (num / den) / B;
      }
    }
    const g = new Graph('hidden', { dtype: 'float64' });
    const hs = h.map((_, s) => g.input(`h${s}`, 'float64', [R, D]));
    g.output(hiddenMatchingLoss(g, hs, g.constant(Array.from(t), [S, R, D]), beta, B), 'loss');
    const session = await Session.create(toOnnxBytes(g), { threads: 1 });
    const got = (await session.run(Object.fromEntries(h.map((d, s) => [`h${s}`, { shape: [R, D], data: d }])))).loss.data[0] as number;
    await session.release();
    assert.ok(Math.abs(got - want) <= 1e-12 * want, `loss ${got} vs ${want}`);
    // Gradients wrt the student's streams and the teacher's (its norm is in the denominator).
    const err = await checkGradients([{ shape: [R, D] }, { shape: [R, D] }, { shape: [S, R, D], domain: 'nonzero' }], (gg, [h0, h1, tt]) => gg.reshape(hiddenMatchingLoss(gg, [h0, h1], tt, beta, B), [1]));
    assert.ok(err < 1e-6, `finite-difference error ${err}`);
  });

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

  for (const k of [2, 3]) {
    test(`k = ${k}, hidden-state matching: the streams coincide at every coefficient 0 (no gradient), and pull once joining starts`, async () => {
      const teacher = randomModel(cfg, 60 + k);
      const L = cfg.depth / k;
      const { plan, branches } = planShrink(teacher, 'teacher', 'join', L);
      const student = toBranched(shrinkStart(teacher, plan), branches);
      const x = randomInput(teacher, 3, 2);
      const tp = await Predictor.create(teacher, { dtype: 'float64', threads: 1, hiddenAfter: boundaryLayers(cfg.depth, L) });
      const { logits, hidden } = await tp.forward(x);
      await tp.release();
      assert.deepEqual(hidden!.shape, [L - 1, 3 * numTokens(cfg), cfg.embed_dim]);
      const teacherHidden = { shape: hidden!.shape, data: Float64Array.from(hidden!.data as Float64Array) };
      const distill = { alpha: 1, temperature: 2, teacherProbs: softTargets(logits, 2) };
      const opts = { dtype: 'float64' as const, threads: 1 };
      const labels = [0, 2, 4];
      const plain = await lossAndGradients(student, x, labels, { ...opts, distill });
      const matched = await lossAndGradients(student, x, labels, { ...opts, distill: { ...distill, hidden: 5, teacherHidden } });
      const ce = await lossAndGradients(student, x, labels, opts);
      const maxOf = (gs: typeof ce.grads) => Math.max(...[...gs.values()].flatMap((t) => Array.from(t.data, Math.abs)));
      assert.ok(Math.abs(matched.loss - plain.loss) < 1e-12, `hidden term at the start ${matched.loss - plain.loss}`);
      assert.ok(maxOf(matched.grads) < 1e-12 * maxOf(ce.grads), `gradient at the start ${maxOf(matched.grads)}`);
      // Halfway joined, the streams differ: the term is positive and has a gradient.
      const join = { attn: Array(L).fill(0.5), ffn: Array(L).fill(0) };
      const mid = await lossAndGradients(student, x, labels, { ...opts, join, distill: { ...distill, hidden: 5, teacherHidden } });
      const midPlain = await lossAndGradients(student, x, labels, { ...opts, join, distill });
      assert.ok(mid.loss - midPlain.loss > 1e-6, `hidden term halfway ${mid.loss - midPlain.loss}`);
      assert.ok(maxAbsDiff(mid.grads.get('blocks.0.attn.qkv.weight')!.data, midPlain.grads.get('blocks.0.attn.qkv.weight')!.data) > 1e-8);
    });
  }

  test('the teacher\'s hidden states: float32 inference graphs (token-major rows) give the float64 image-major values', async () => {
    const teacher = randomModel(cfg, 64);
    const x = randomInput(teacher, 3, 4);
    const after = boundaryLayers(cfg.depth, 3);
    const f64 = await Predictor.create(teacher, { dtype: 'float64', threads: 1, hiddenAfter: after });
    const f32 = await Predictor.create(teacher, { dtype: 'float32', threads: 1, hiddenAfter: after });
    const [a, b] = [(await f64.forward(x)).hidden!, (await f32.forward(x)).hidden!];
    await f64.release();
    await f32.release();
    assert.ok(b.data instanceof Float32Array);
    assert.deepEqual(a.shape, b.shape);
    const scale = Math.max(...Array.from(a.data as Float64Array, Math.abs));
    assert.ok(maxAbsDiff(a.data as Float64Array, b.data as Float32Array) < 1e-5 * scale, `float32 vs float64 hidden states differ by ${maxAbsDiff(a.data as Float64Array, b.data as Float32Array)}`);
  });

  test('boundary layers: the last layer of each group (join), each kept layer but the last (drop)', () => {
    assert.deepEqual(boundaryLayers(12, 3), [3, 7]);
    assert.deepEqual(boundaryLayers(12, 4), [2, 5, 8]);
    assert.deepEqual(boundaryLayers(12, 1), []);
    assert.deepEqual(boundaryLayers(12, 3, evenlySpacedLayers(12, 3)), [0, 6]);
  });

  test('the teacher stays frozen: its weights and outputs are bit-identical after distilled steps', async () => {
    const teacher = randomModel(cfg, 50);
    const before = new Map([...teacher.params].map(([n, t]) => [n, Float64Array.from(t.data)]));
    const t = await Teacher.create(teacher, 2, 1, boundaryLayers(cfg.depth, 3));
    const x = randomInput(teacher, 4, 3);
    const xf = { shape: x.shape, data: Float32Array.from(x.data) };
    const t0 = await t.targets(xf);
    const { plan } = planShrink(teacher, 'teacher', 'join', 3);
    const distill = { alpha: 0.5, temperature: 2, hidden: 1 };
    const runner = new StepRunner(toBranched(shrinkStart(teacher, plan), 2, { attn: 0.5, ffn: 0 }), { batch: 4, threads: 1, distill });
    const start = Float32Array.from(runner.params);
    const targets = oneHotTargets([0, 1, 2, 3], cfg.num_classes, 0.1);
    for (let i = 0; i < 2; i++) {
      const tt = await t.targets(xf);
      await runner.run(xf, targets, 1e-2, { attn: [0.5, 0.5, 0.5], ffn: [0, 0, 0] }, { teacherProbs: tt.probs, teacherHidden: tt.hidden });
    }
    assert.ok(maxAbsDiff(runner.params, start) > 0, 'the student trained');
    await runner.release();
    for (const [n, data] of before) assert.deepEqual(teacher.params.get(n)!.data, data, `teacher ${n} changed`);
    const t1 = await t.targets(xf);
    assert.deepEqual(t1.probs.data, t0.probs.data);
    assert.deepEqual(t1.hidden!.data, t0.hidden!.data);
    await t.release();
    await assert.rejects(new StepRunner(teacher, { batch: 4, threads: 1, distill }).run(xf, targets, 0), /needs the teacher's probabilities/);
    await assert.rejects(new StepRunner(toBranched(shrinkStart(teacher, plan), 2), { batch: 4, threads: 1, distill }).run(xf, targets, 0, { attn: [0, 0, 0], ffn: [0, 0, 0] }, { teacherProbs: t0.probs }), /needs the teacher's hidden states/);
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
    assert.deepEqual(recipe.distill, { alpha: 0.9, temperature: 2, hidden: 4 }, 'joining matches hidden states by default');
    assert.ok(recipe.verify_max_rel < 1e-9, `fold error ${recipe.verify_max_rel}`);
    assert.ok(existsSync(join(run, 'shrunk.onnx')), 'exported');
    const log = readFileSync(join(run, 'log.jsonl'), 'utf8');
    assert.match(log, /"event":"shrunk"/);
    assert.match(log, /"teacher_ms"/);
  });

  test('--kd-hidden: joined (through the switch to the folded graph) and dropped layers; recorded in the file; bad uses exit 2', () => {
    const dir = tmpDir();
    writeDataset(join(dir, 'data'), 64, 32, false);
    const teacherPath = join(dir, 'teacher.safetensors');
    saveModel(teacherPath, randomModel(tcfg, 72));
    const common = ['--data', join(dir, 'data'), '--epochs', '2', '--batch', '32', '--threads', '1', '--no-export', '--kd-hidden', '0.5'];
    for (const method of ['join', 'drop']) {
      const r = vitfold('shrink', teacherPath, '--depth', '2', '--method', method, ...common, '--out', join(dir, method));
      assert.equal(r.code, 0, r.out + r.err);
      assert.match(r.out, /distilled from the deep model \(alpha 0\.9, T 2, hidden-state matching beta 0\.5\)/);
      const recipe = JSON.parse(loadModel(join(dir, method, 'shrunk.safetensors')).extraMetadata.shrink);
      assert.deepEqual(recipe.distill, { alpha: 0.9, temperature: 2, hidden: 0.5 });
      const epochs = readFileSync(join(dir, method, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((e) => e.event === 'epoch');
      assert.equal(epochs.length, 2);
      assert.ok(epochs.every((e) => Number.isFinite(e.train_loss)));
    }
    const noDistill = vitfold('shrink', teacherPath, '--depth', '2', '--no-distill', ...common, '--out', join(dir, 'bad1'));
    assert.equal(noDistill.code, 2);
    assert.match(noDistill.err, /--kd-hidden is part of the distillation/);
    const oneLayer = vitfold('shrink', teacherPath, '--depth', '1', ...common, '--out', join(dir, 'bad2'));
    assert.equal(oneLayer.code, 2);
    assert.match(oneLayer.err, /--kd-hidden .* needs --depth 2 or more/);
    const negative = vitfold('shrink', teacherPath, '--depth', '2', ...common, '--kd-hidden', '-1', '--out', join(dir, 'bad3'));
    assert.equal(negative.code, 2);
  });

  test('drop and the instant fold; bad input exits 2 with the reason', () => {
    const dir = tmpDir();
    writeDataset(join(dir, 'data'), 64, 32, false);
    const teacherPath = join(dir, 'teacher.safetensors');
    saveModel(teacherPath, randomModel(tcfg, 71));
    const drop = vitfold('shrink', teacherPath, '--depth', '3', '--method', 'drop', '--data', join(dir, 'data'), '--epochs', '1', '--batch', '32', '--threads', '1', '--no-export', '--out', join(dir, 'drop'));
    assert.equal(drop.code, 0, drop.out + drop.err);
    assert.match(drop.out, /layers 0, 2, 3 kept/);
    assert.match(drop.out, /distilled from the deep model \(alpha 0\.9, T 2\)/, 'kept layers: no hidden-state matching by default');
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
