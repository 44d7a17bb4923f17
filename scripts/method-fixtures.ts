// fixtures/method/: one definition of the method for vitfold and vitfold_torch. vitfold computes
// here, with the code the library runs, the logits of a small model read as branched models at
// several join states (float64 reference), the join and learning-rate schedules at 50 progress
// points, the distillation loss (the training graph's loss op, float64 in onnxruntime) and
// hidden-state matching (the streams at the block boundaries of branched students and of the
// deep teacher, and the matching loss).
// test/api/method-fixtures.test.ts checks that vitfold still computes the committed values;
// python/tests check vitfold_torch against the same files, so the two cannot drift apart.
// `npm run fixtures:method` rewrites them.

import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { validateConfig } from '../src/core/config.js';
import { toBranched, type Model } from '../src/core/model.js';
import { initParams } from '../src/core/params.js';
import { referenceForward } from '../src/core/reference.js';
import { Rng } from '../src/core/rng.js';
import { randomInput } from '../src/core/verify.js';
import { Graph } from '../src/graph/graph.js';
import { toOnnxBytes } from '../src/graph/onnx.js';
import { saveModel, writeFloatTensors } from '../src/io.js';
import { boundaryLayers } from '../src/core/layers.js';
import { oneHotTargets, Predictor } from '../src/model/engine.js';
import { hiddenMatchingLoss, trainingLoss } from '../src/model/vit-graph.js';
import { Session } from '../src/runtime/ort.js';
import { softTargets } from '../src/train/distill.js';
import { joinCoefficients, learningRate, type JoinSchedule } from '../src/train/schedule.js';

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'method');

/** A small ViT with every part non-trivial: random LayerNorm gains, head_dim != embed_dim / heads. */
export function fixtureModel(): Model {
  const cfg = validateConfig({ img_size: 8, patch_size: 4, in_chans: 2, num_classes: 5, embed_dim: 12, depth: 6, num_heads: 2, head_dim: 5, mlp_hidden: 20, eps: 1e-6 });
  const params = initParams(cfg, 7);
  const rng = new Rng(1007);
  for (const [name, t] of params) {
    for (let i = 0; i < t.data.length; i++) t.data[i] = /norm\d?\.weight$/.test(name) ? 1 + 0.5 * rng.normal() : 0.3 * rng.normal();
  }
  return { config: cfg, structure: { kind: 'plain' }, params, dtype: 'F64', extraMetadata: {} };
}

/** Join states of the fixture model (depth 6): plain, and k = 2 (3 blocks) and 3 (2 blocks). */
export const FORWARD_CASES: { branches: number; attn: number[]; ffn: number[] }[] = [
  { branches: 1, attn: [], ffn: [] },
  { branches: 2, attn: [0, 0, 0], ffn: [0, 0, 0] },
  { branches: 2, attn: [1, 0.25, 0.7], ffn: [0.6, 0, 0] },
  { branches: 2, attn: [1, 1, 1], ffn: [1, 1, 1] },
  { branches: 3, attn: [0.5, 1], ffn: [0, 0.3] },
  { branches: 3, attn: [1, 1], ffn: [1, 1] },
];

export const JOIN_CASES: JoinSchedule[] = [
  { mode: 'together', shape: 'cosine', start: 0, end: 0.5 },
  { mode: 'together', shape: 'linear', start: 0.1, end: 0.9 },
  { mode: 'sequential', shape: 'cosine', start: 0.2, end: 0.8 },
  { mode: 'sequential', shape: 'linear', start: 0, end: 1 },
];

export const LR_CASES = [
  { peak: 2e-3, warmup: 10, total: 100, min: 1e-5 },
  { peak: 5e-4, warmup: 0, total: 37, min: 0 },
];

export const DISTILL_CASES = [
  { alpha: 0.9, temperature: 2, smoothing: 0.1 },
  { alpha: 0.5, temperature: 4, smoothing: 0 },
  { alpha: 0, temperature: 1, smoothing: 0.1 },
];

/** Shrink students of the fixture model at a join state, matched to the deep model's streams. */
export const HIDDEN_CASES = [
  { branches: 2, attn: [1, 0.25, 0.7], ffn: [0.6, 0, 0], beta: 1 },
  { branches: 3, attn: [0.5, 1], ffn: [0, 0.3], beta: 4 },
];

const POINTS = 50;

/** The streams [S, B*T, D] after the given blocks, in float64. */
async function streams(model: Model, x: { shape: number[]; data: Float64Array }, after: number[]): Promise<Float64Array> {
  const p = await Predictor.create(model, { dtype: 'float64', threads: 1, hiddenAfter: after });
  const { hidden } = await p.forward(x);
  await p.release();
  return hidden!.data as Float64Array;
}

/** The values vitfold computes for every case (JSON-ready). */
export async function methodValues(model: Model, x: { shape: number[]; data: Float64Array }) {
  const forward = FORWARD_CASES.map((c) => {
    const m = c.branches === 1 ? model : toBranched(model, c.branches, { attn: c.attn, ffn: c.ffn });
    return { ...c, logits: Array.from(referenceForward(m, x).data) };
  });
  const join = JOIN_CASES.map((s) => ({
    ...s,
    blocks: 3,
    points: Array.from({ length: POINTS }, (_, i) => {
      const p = i / (POINTS - 1);
      return { p, ...joinCoefficients(s, 3, p) };
    }),
  }));
  const lr = LR_CASES.map((s) => ({ ...s, values: Array.from({ length: POINTS }, (_, i) => { const step = Math.round((i * s.total) / (POINTS - 1)); return [step, learningRate(s, step)]; }) }));
  const B = 4;
  const K = 5;
  const distill = [];
  for (const [n, c] of DISTILL_CASES.entries()) {
    const rng = new Rng(31 + n);
    const logits = Array.from({ length: B * K }, () => 2 * rng.normal());
    const teacher = Array.from({ length: B * K }, () => 2 * rng.normal());
    const labels = Array.from({ length: B }, () => rng.int(K));
    // The teacher's soft targets as the trainer computes them, and the loss op of the training
    // graphs, in float64.
    const probs = softTargets({ shape: [B, K], data: Float64Array.from(teacher) }, c.temperature).data;
    const g = new Graph('kd', { dtype: 'float64' });
    const z = g.input('z', 'float64', [B, K]);
    const targets = g.constant(Array.from(oneHotTargets(labels, K, c.smoothing).data), [B, K]);
    g.output(trainingLoss(g, z, targets, { alpha: c.alpha, temperature: c.temperature, teacherProbs: g.constant(Array.from(probs), [B, K]) }), 'loss');
    const s = await Session.create(toOnnxBytes(g), { threads: 1 });
    const loss = (await s.run({ z: { shape: [B, K], data: Float64Array.from(logits) } })).loss.data[0] as number;
    await s.release();
    distill.push({ ...c, logits, teacher_logits: teacher, labels, classes: K, loss });
  }
  const hidden = [];
  for (const c of HIDDEN_CASES) {
    const L = model.config.depth / c.branches;
    const teacher = await streams(model, x, boundaryLayers(model.config.depth, L));
    const student = await streams(toBranched(model, c.branches, { attn: c.attn, ffn: c.ffn }), x, Array.from({ length: L - 1 }, (_, b) => b));
    const rows = teacher.length / ((L - 1) * model.config.embed_dim);
    const g = new Graph('hidden', { dtype: 'float64' });
    const D = model.config.embed_dim;
    const hs = Array.from({ length: L - 1 }, (_, b) => g.constant(Array.from(student.subarray(b * rows * D, (b + 1) * rows * D)), [rows, D]));
    g.output(hiddenMatchingLoss(g, hs, g.constant(Array.from(teacher), [L - 1, rows, D]), c.beta, x.shape[0]), 'loss');
    const s = await Session.create(toOnnxBytes(g), { threads: 1 });
    const loss = (await s.run({})).loss.data[0] as number;
    await s.release();
    hidden.push({ ...c, loss });
  }
  return { forward, join, lr, distill, hidden };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  mkdirSync(FIXTURES, { recursive: true });
  const model = fixtureModel();
  const x = randomInput(model, 3, 5);
  saveModel(join(FIXTURES, 'model.safetensors'), model, 'F64');
  writeFloatTensors(join(FIXTURES, 'input.safetensors'), { x }, 'F64');
  writeFileSync(join(FIXTURES, 'method.json'), JSON.stringify(await methodValues(model, x), null, 1) + '\n');
  console.log(`wrote ${FIXTURES}/{model.safetensors,input.safetensors,method.json}`);
}
