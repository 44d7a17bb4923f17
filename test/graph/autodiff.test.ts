// Every differentiable op's gradient against float64 central finite differences.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createRequire } from 'node:module';
import { DIFFERENTIABLE_OPS, gradients } from '../../src/graph/autodiff.js';
import { Graph, type Value } from '../../src/graph/graph.js';
import { toOnnxBytes } from '../../src/graph/onnx.js';
import { Session } from '../../src/runtime/ort.js';
import { checkGradients, type InputSpec } from '../graph-helpers.js';

const TOL = 1e-7;
type Case = [string, InputSpec[], (g: Graph, x: Value[]) => Value];

const S = (...shape: number[]): InputSpec => ({ shape });
const P = (...shape: number[]): InputSpec => ({ shape, domain: 'positive' });

const cases: Case[] = [
  ['Add (broadcast [2,3] + [3])', [S(2, 3), S(3)], (g, [a, b]) => g.add(a, b)],
  ['Sub (broadcast [2,3] - [2,1])', [S(2, 3), S(2, 1)], (g, [a, b]) => g.sub(a, b)],
  ['Mul (broadcast [2,3,4] * [4])', [S(2, 3, 4), S(4)], (g, [a, b]) => g.mul(a, b)],
  ['Div', [S(2, 3), P(2, 3)], (g, [a, b]) => g.div(a, b)],
  ['Div (broadcast scalar denominator)', [S(2, 3), P(1)], (g, [a, b]) => g.div(a, b)],
  ['Neg', [S(5)], (g, [a]) => g.neg(a)],
  ['Exp', [S(2, 3)], (g, [a]) => g.exp(a)],
  ['Sqrt', [P(2, 3)], (g, [a]) => g.sqrt(a)],
  ['Tanh', [S(2, 3)], (g, [a]) => g.tanh(a)],
  ['Abs', [{ shape: [6], domain: 'nonzero' }], (g, [a]) => g.abs(a)],
  ['Pow (x^3)', [S(2, 3)], (g, [a]) => g.pow(a, 3)],
  ['Pow (x^-0.5)', [P(4)], (g, [a]) => g.pow(a, -0.5)],
  ['Erf', [S(3, 4)], (g, [a]) => g.erf(a)],
  ['Gelu', [S(3, 4)], (g, [a]) => g.gelu(a)],
  ['ErfGate', [S(3, 4)], (g, [a]) => g.erfGate(a)],
  ['ErfGate (large |u|: exp(u^2) overflows)', [{ shape: [4], domain: 'nonzero' }], (g, [a]) => g.erfGate(g.mul(a, g.scalar(30)))],
  ['Identity', [S(3)], (g, [a]) => g.identity(a)],
  ['Where (min via Less)', [S(2, 3), S(3)], (g, [a, b]) => g.where(g.less(a, b), a, b)],
  ['Expand', [S(3), S(2, 3)], (g, [a, like]) => g.add(g.expand(a, like), g.mul(like, g.scalar(0)))],
  ['Reshape', [S(2, 6)], (g, [a]) => g.reshape(a, [3, -1])],
  ['Transpose', [S(2, 3, 4)], (g, [a]) => g.transpose(a, [2, 0, 1])],
  ['Concat', [S(2, 3), S(2, 1)], (g, [a, b]) => g.concat([a, b], 1)],
  ['Split', [S(2, 5)], (g, [a]) => { const [p, q] = g.split(a, 1, [2, 3]); return g.concat([q, g.mul(p, p)], 1); }],
  ['Split (one part unused)', [S(4, 2)], (g, [a]) => g.split(a, 0, [1, 3])[1]],
  ['Slice', [S(3, 5)], (g, [a]) => g.slice(a, 1, 1, 4)],
  ['Gather (scalar index)', [S(2, 4, 3)], (g, [a]) => g.gather(a, 1, 1)],
  ['Gather (index range)', [S(5, 2)], (g, [a]) => g.gather(a, [1, 2, 3], 0)],
  ['ReduceSum (keepdims)', [S(2, 3, 4)], (g, [a]) => g.reduceSum(a, [1], true)],
  ['ReduceSum (drop dims)', [S(2, 3, 4)], (g, [a]) => g.reduceSum(a, [0, 2], false)],
  ['ReduceMean', [S(2, 3, 4)], (g, [a]) => g.reduceMean(a, [-1], true)],
  ['Softmax', [S(2, 5)], (g, [a]) => g.softmax(a, -1)],
  ['LogSoftmax', [S(2, 5)], (g, [a]) => g.logSoftmax(a, -1)],
  ['MatMul (batched, broadcast right)', [S(2, 3, 4), S(4, 5)], (g, [a, b]) => g.matmul(a, b)],
  ['MatMul (4-D attention shape)', [S(2, 2, 3, 4), S(2, 2, 4, 3)], (g, [a, b]) => g.matmul(a, b)],
  ['Gemm', [S(3, 4), S(4, 5), S(5)], (g, [a, b, c]) => g.gemm(a, b, c)],
  ['Gemm (transB, as linear)', [S(3, 4), S(5, 4), S(5)], (g, [a, b, c]) => g.gemm(a, b, c, { transB: true })],
  ['Gemm (transA)', [S(4, 3), S(4, 5)], (g, [a, b]) => g.gemm(a, b, null, { transA: true })],
  ['Gemm (transA, transB)', [S(4, 3), S(5, 4), S(3, 1)], (g, [a, b, c]) => g.gemm(a, b, c, { transA: true, transB: true })],
  ['LayerNormalization', [S(3, 6), S(6), S(6)], (g, [x, w, b]) => g.layerNorm(x, w, b, 1e-6).y],
  ['LayerNormalization (3-D)', [S(2, 3, 5), S(5), S(5)], (g, [x, w, b]) => g.layerNorm(x, w, b, 1e-5).y],
  ['LayerNormalization (unit affine: output reused as xhat)', [S(3, 6)], (g, [x]) => g.normalize(x, 1e-6).y],
  ['LayerNormalization (no bias)', [S(3, 6), S(6)], (g, [x, w]) => g.layerNorm(x, w, null, 1e-6).y],
  ['composition (softmax attention)', [S(2, 3, 4), S(2, 3, 4), S(2, 3, 4)], (g, [q, k, v]) => g.matmul(g.softmax(g.mul(g.matmul(q, g.transpose(k, [0, 2, 1])), g.scalar(0.5))), v)],
];

describe('gradients match float64 finite differences', () => {
  for (const [name, inputs, build] of cases) {
    test(name, async () => {
      const err = await checkGradients(inputs, build);
      assert.ok(err < TOL, `${name}: max error ${err} (relative to the gradient's scale)`);
    });
  }
  test('Gemm bias and LayerNorm affine gradients summed by a ones-row Gemm (static rows)', async () => {
    const err = await checkGradients([S(7, 4), S(3, 4), S(3), S(3), S(3)], (g, [x, w, b, gam, bet]) => g.layerNorm(g.linear(x, w, b), gam, bet, 1e-6).y, 2);
    assert.ok(err < TOL, `max error ${err}`);
  });
  test('q k^T: dk needs no Transpose node (the builder cancels transposes of transposes; dead nodes are not serialized)', async () => {
    const build = (g: Graph, [q, k]: Value[]) => g.matmul(q, g.transpose(k, [0, 2, 1]));
    const err = await checkGradients([S(2, 3, 4), S(2, 5, 4)], build);
    assert.ok(err < TOL, `max error ${err}`);
    const g = new Graph('qk', { dtype: 'float64' });
    const [q, k] = [g.input('q', 'float64', [2, 3, 4]), g.input('k', 'float64', [2, 5, 4])];
    const y = build(g, [q, k]);
    const [dq, dk] = gradients(g, g.reduceSum(g.mul(y, y), [0, 1, 2], false), [q, k]);
    g.output(dq!, 'dq');
    g.output(dk!, 'dk');
    const { onnx } = createRequire(import.meta.url)('onnx-proto');
    const ops = (onnx.ModelProto.decode(toOnnxBytes(g)).graph.node as { opType: string }[]).map((n) => n.opType);
    // k^T (forward) and dS^T (an operand of dk = dS^T q, which ORT fuses into its MatMul); dq = dS k
    // transposes nothing, and no product is transposed (naively 4: also (k^T)^T and (q^T dS)^T)
    assert.equal(ops.filter((o) => o === 'Transpose').length, 2, `ops: ${ops.join(' ')}`);
    assert.ok(g.nodes.length > ops.length, 'the cancelled transpose is built but not serialized');
  });
  test('an output that is also read inside the graph is written by its producer, not copied by an Identity', async () => {
    const g = new Graph('out', { dtype: 'float32' });
    const [a, b] = [g.input('a', 'float32', [3]), g.input('b', 'float32', [3])];
    const s = g.add(a, b); // an output, and read by the product below
    g.output(s, 'sum');
    g.output(g.mul(s, b), 'prod');
    g.output(s, 'sum_again'); // a second name for the same value keeps its Identity
    g.output(a, 'a_copy'); // a graph input keeps its Identity
    const { onnx } = createRequire(import.meta.url)('onnx-proto');
    const bytes = toOnnxBytes(g);
    const nodes = onnx.ModelProto.decode(bytes).graph.node as { opType: string; input: string[]; output: string[] }[];
    assert.deepEqual(nodes.find((n) => n.opType === 'Add')!.output, ['sum']);
    assert.deepEqual(nodes.find((n) => n.opType === 'Mul')!.input, ['sum', 'b']);
    assert.deepEqual(nodes.filter((n) => n.opType === 'Identity').map((n) => `${n.input[0]}->${n.output[0]}`), ['sum->sum_again', 'a->a_copy']);
    const out = await (await Session.create(bytes, { threads: 1 })).run({ a: { shape: [3], data: Float32Array.of(1, 2, 3) }, b: { shape: [3], data: Float32Array.of(4, 5, 6) } });
    assert.deepEqual(Array.from(out.sum.data as Float32Array), [5, 7, 9]);
    assert.deepEqual(Array.from(out.prod.data as Float32Array), [20, 35, 54]);
    assert.deepEqual(Array.from(out.sum_again.data as Float32Array), [5, 7, 9]);
    assert.deepEqual(Array.from(out.a_copy.data as Float32Array), [1, 2, 3]);
  });
  test('unit-affine LayerNorm into a linear layer: input gradient through the centred weight, one mean pass over [R, D]', async () => {
    const build = (g: Graph, [x, w, b]: Value[]) => g.linear(g.normalize(x, 1e-6).y, w, b);
    const err = await checkGradients([S(5, 6), S(4, 6), S(4)], build, 3);
    assert.ok(err < TOL, `max error ${err}`);
    // float32: LayerNormalization is one op (float64 graphs decompose it into ReduceMeans)
    const g = new Graph('nl', { dtype: 'float32' });
    const [x, w, b] = [g.input('x', 'float32', [5, 6]), g.input('w', 'float32', [4, 6]), g.input('b', 'float32', [4])];
    const y = build(g, [x, w, b]);
    g.output(gradients(g, g.reduceSum(g.mul(y, y), [0, 1], false), [x])[0]!, 'dx');
    const { onnx } = createRequire(import.meta.url)('onnx-proto');
    const model = onnx.ModelProto.decode(toOnnxBytes(g));
    const means = (model.graph.node as { opType: string; input: string[] }[]).filter((n) => n.opType === 'ReduceMean').map((n) => n.input[0]);
    // m2 = mean(c xhat) over the activations and the weight's row means; not mean(dxhat)
    assert.equal(means.length, 2, `ReduceMean inputs: ${means.join(', ')}`);
    assert.ok(means.includes('w'), `ReduceMean inputs: ${means.join(', ')}`);
  });
  test('LayerNorm output read by two linear layers: summed input gradient, general formula', async () => {
    const err = await checkGradients([S(5, 6), S(4, 6), S(3, 6)], (g, [x, w, v]) => {
      const h = g.normalize(x, 1e-6).y;
      return g.concat([g.linear(h, w, null), g.linear(h, v, null)], 1);
    }, 4);
    assert.ok(err < TOL, `max error ${err}`);
  });
  test('softmax read only by attention p v: backward sums do o over hd, not over p; other readers keep the general form', async () => {
    const attn = (g: Graph, [q, k, v]: Value[]) => g.matmul(g.softmax(g.matmul(q, g.transpose(k, [0, 2, 1])), -1), v); // [2, 3, 2]
    const pv = (g: Graph, [a, v]: Value[]) => g.matmul(g.softmax(a, -1), v); // v [5, 2] broadcast over the batch
    const twice = (g: Graph, [a, v]: Value[]) => { const p = g.softmax(a, -1); return g.add(g.matmul(p, v), g.reduceSum(g.mul(p, p), [-1], true)); };
    const pBroadcast = (g: Graph, [a, v]: Value[]) => g.matmul(g.softmax(a, -1), v); // p [3, 5] shared by a batch of v
    for (const [name, inputs, build] of [['attention', [S(2, 3, 2), S(2, 5, 2), S(2, 5, 2)], attn], ['v broadcast', [S(2, 3, 5), S(5, 2)], pv], ['p read twice', [S(2, 3, 5), S(2, 5, 2)], twice], ['p broadcast', [S(3, 5), S(2, 5, 2)], pBroadcast]] as const) {
      const err = await checkGradients(inputs as unknown as InputSpec[], build);
      assert.ok(err < TOL, `${name}: max error ${err}`);
    }
    // which tensor the softmax backward reduces: [.., 3, 2] (o, hd = 2) or [.., 3, 5] (p, T = 5)
    const reduced = (inputs: number[][], build: (g: Graph, x: Value[]) => Value) => {
      const g = new Graph('sm', { dtype: 'float32' });
      const xs = inputs.map((shape, i) => g.input(`x${i}`, 'float32', shape));
      const y = build(g, xs);
      const grads = gradients(g, g.reduceSum(g.mul(y, y), [...y.shape.keys()], false), xs);
      grads.forEach((d, i) => d && g.output(d, `d${i}`));
      return g.nodes.filter((n) => n.op === 'ReduceSum' && n.attrs.keepdims === 1).map((n) => g.values.get(n.inputs[0])!.shape.join('x'));
    };
    assert.deepEqual(reduced([[2, 3, 2], [2, 5, 2], [2, 5, 2]], attn), ['2x3x2']);
    assert.deepEqual(reduced([[2, 3, 5], [5, 2]], pv), ['2x3x2']);
    assert.ok(reduced([[2, 3, 5], [2, 5, 2]], twice).includes('2x3x5'));
    assert.ok(reduced([[3, 5], [2, 5, 2]], pBroadcast).includes('3x5'));
  });
  test('every op with a gradient rule is covered above', () => {
    const covered = new Set(cases.map(([n]) => n.split(' ')[0]));
    for (const op of DIFFERENTIABLE_OPS) assert.ok(covered.has(op), `${op} has no finite-difference case`);
  });
});
