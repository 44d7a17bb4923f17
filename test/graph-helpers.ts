// Finite-difference gradient checking of Graph ops, run by ONNX Runtime in float64.

import assert from 'node:assert/strict';
import { gradients } from '../src/graph/autodiff.js';
import { Graph, type Value } from '../src/graph/graph.js';
import { toOnnxBytes } from '../src/graph/onnx.js';
import { Rng } from '../src/core/rng.js';
import { Session } from '../src/runtime/ort.js';

export interface InputSpec {
  shape: number[];
  /** Value domain: any real, positive (for sqrt/log/div), or away from 0 (abs kinks). */
  domain?: 'any' | 'positive' | 'nonzero';
}

/**
 * Builds loss = sum(op(inputs) * R) for a random fixed R, differentiates it with `gradients`,
 * and compares every input's gradient with central differences (h = 1e-6) at every element.
 * Returns the largest error relative to the gradient's max magnitude.
 */
export async function checkGradients(inputs: InputSpec[], build: (g: Graph, xs: Value[]) => Value, seed = 1): Promise<number> {
  const rng = new Rng(seed);
  const g = new Graph('fd', { dtype: 'float64' });
  const xs = inputs.map((s, i) => g.input(`x${i}`, 'float64', s.shape));
  const y = build(g, xs);
  const shape = y.shape as number[];
  const n = shape.reduce((a, b) => a * b, 1);
  const R = g.constant(Array.from({ length: n }, () => rng.normal()), shape);
  const loss = g.reduceSum(g.mul(y, R), [...shape.keys()], false);
  g.output(loss, 'loss');
  const grads = gradients(g, loss, xs);
  grads.forEach((gv, i) => {
    assert.ok(gv, `no gradient for input ${i}`);
    g.output(gv!, `grad${i}`);
  });
  // 'basic': ORT's extended fusions would swap float64 LayerNorm statistics for float32 ones.
  const session = await Session.create(toOnnxBytes(g), { threads: 1, optimization: 'basic' });
  const values = inputs.map((s) =>
    Float64Array.from({ length: s.shape.reduce((a, b) => a * b, 1) }, () => {
      const v = rng.normal();
      if (s.domain === 'positive') return 0.5 + Math.abs(v);
      if (s.domain === 'nonzero') return Math.sign(v || 1) * (0.2 + Math.abs(v));
      return v;
    }),
  );
  const feeds = () => Object.fromEntries(values.map((v, i) => [`x${i}`, { shape: inputs[i].shape, data: v }]));
  const out = await session.run(feeds());
  const lossAt = async () => (await session.run(feeds(), ['loss'])).loss.data[0] as number;
  let worst = 0;
  const h = 1e-6;
  for (let i = 0; i < inputs.length; i++) {
    const an = out[`grad${i}`].data as Float64Array;
    assert.deepEqual(out[`grad${i}`].shape, inputs[i].shape, `gradient ${i} shape`);
    const scale = Math.max(1e-3, ...Array.from(an, Math.abs));
    for (let k = 0; k < values[i].length; k++) {
      const orig = values[i][k];
      values[i][k] = orig + h;
      const up = await lossAt();
      values[i][k] = orig - h;
      const down = await lossAt();
      values[i][k] = orig;
      const fd = (up - down) / (2 * h);
      worst = Math.max(worst, Math.abs(fd - an[k]) / scale);
    }
  }
  await session.release();
  return worst;
}
