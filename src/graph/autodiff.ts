// Reverse-mode automatic differentiation over the Graph builder's ops.
//
// `gradients(g, loss, wrt)` appends the backward nodes to `g` and returns d loss / d w for each
// w in `wrt` (a scalar loss). Nodes are visited in reverse creation order, which is a reverse
// topological order because a node can only read values that exist when it is created.
// Only nodes on a path from `wrt` to the loss are differentiated.
//
// Gradients are written compactly with the ops ONNX Runtime runs fast, because on a small ViT
// most of a training step outside the Gemms is element-wise passes over activations, each
// costing about the same (memory-bound): LayerNormalization's backward reuses the saved mean
// and inverse std (and, for a unit-affine norm, its output as xhat); the erf gate's (GELU in
// training graphs, Graph.erfGate) reuses the saved 1 + erf(u). Softmax's is y (dy - sum(dy y)),
// where attention's o = y v gives sum(dy y) as sum(do o), over hd columns instead of T.

import {
  dimEq,
  float,
  Graph,
  GraphError,
  isStatic,
  shapeEq,
  shapeStr,
  type GraphNode,
  type Value,
} from './graph.js';

interface RuleContext {
  g: Graph;
  node: GraphNode;
  x: Value[]; // inputs ('' inputs are null)
  y: Value[]; // outputs
  dy: (Value | null)[]; // gradient of each output (null: none flows back)
  need: boolean[]; // which inputs need a gradient
  /** The forward nodes that read a value. */
  readers: (name: string) => GraphNode[];
  /** The full gradient of a forward value all of whose readers are already differentiated. */
  gradOf: (name: string) => Value | null;
}

type Rule = (c: RuleContext) => (Value | null)[];

/**
 * Column sums of a 2-D tensor with a static row count, as MatMul(ones [1, R], x): ORT's
 * ReduceSum over the strided row axis is several times slower than MLAS (bias and LayerNorm
 * affine gradients sum over all B*T rows), and MatMul's M = 1 path is faster than Gemm's.
 */
function sumRows(g: Graph, x: Value): Value | null {
  const R = x.shape[0];
  if (x.shape.length !== 2 || typeof R !== 'number') return null;
  return g.reshape(g.matmul(g.ones([1, R]), x), [x.shape[1]]);
}

/** Sums `grad` over the axes along which `target` was broadcast, to target's shape. */
export function unbroadcast(g: Graph, grad: Value, target: Value): Value {
  if (shapeEq(grad.shape, target.shape)) return grad;
  const r = grad.shape.length;
  const lead = r - target.shape.length;
  const axes: number[] = [];
  for (let i = 0; i < r; i++) {
    if (i < lead) axes.push(i);
    else if (target.shape[i - lead] === 1 && grad.shape[i] !== 1) axes.push(i);
    else if (!dimEq(target.shape[i - lead], grad.shape[i])) {
      throw new GraphError(`cannot unbroadcast ${shapeStr(grad.shape)} to ${shapeStr(target.shape)}`);
    }
  }
  const onlyLeading = axes.every((a) => a < lead);
  if (onlyLeading) return (r === 2 && lead === 1 ? sumRows(g, grad) : null) ?? g.reduceSum(grad, axes, false);
  const summed = g.reduceSum(grad, axes, true);
  return g.reshapeLike(summed, target);
}

function zerosLike(g: Graph, v: Value): Value {
  return g.expand(g.constant([0], [], v.dtype), v);
}

function constantValue(g: Graph, v: Value): number | null {
  const init = g.initializers.find((i) => i.name === v.name);
  if (!init || init.data.length !== 1) return null;
  return Number(init.data[0]);
}

function lastTwoSwapped(rank: number): number[] {
  const p = [...Array(rank).keys()];
  [p[rank - 2], p[rank - 1]] = [p[rank - 1], p[rank - 2]];
  return p;
}

/** d/dx erf(x) = 2/sqrt(pi) exp(-x^2). */
function erfGrad(g: Graph, x: Value, dy: Value): Value {
  return g.mul(dy, g.mul(g.exp(g.neg(g.mul(x, x))), g.scalar(2 / Math.sqrt(Math.PI))));
}

/** d/dx x Phi(x) = Phi(x) + x phi(x), Phi the normal CDF, phi its density. */
function geluGrad(g: Graph, x: Value, dy: Value): Value {
  const Phi = g.mul(g.add(g.erf(g.mul(x, g.scalar(Math.SQRT1_2))), g.scalar(1)), g.scalar(0.5));
  // x phi(x) = x exp(-x^2 / 2) / sqrt(2 pi)
  const xpdf = g.mul(g.mul(x, g.scalar(1 / Math.sqrt(2 * Math.PI))), g.exp(g.mul(g.mul(x, x), g.scalar(-0.5))));
  return g.mul(dy, g.add(Phi, xpdf));
}

/**
 * d/du u (1 + erf(u)) = (1 + erf(u)) + (2 / sqrt pi) u exp(-u^2), from the saved 1 + erf(u):
 * six passes over the activations.
 */
function erfGateGrad(g: Graph, u: Value, onePlusErf: Value, dy: Value): Value {
  const ue = g.div(u, g.exp(g.mul(u, u))); // u exp(-u^2); where exp overflows, 0, the limit
  return g.mul(dy, g.add(onePlusErf, g.mul(ue, g.scalar(2 / Math.sqrt(Math.PI)))));
}

const RULES: Record<string, Rule> = {
  Identity: ({ dy }) => [dy[0]],
  Add: ({ g, x, dy, need }) => [need[0] ? unbroadcast(g, dy[0]!, x[0]) : null, need[1] ? unbroadcast(g, dy[0]!, x[1]) : null],
  Sub: ({ g, x, dy, need }) => [need[0] ? unbroadcast(g, dy[0]!, x[0]) : null, need[1] ? unbroadcast(g, g.neg(dy[0]!), x[1]) : null],
  Mul: ({ g, x, dy, need }) => [
    need[0] ? unbroadcast(g, g.mul(dy[0]!, x[1]), x[0]) : null,
    need[1] ? unbroadcast(g, g.mul(dy[0]!, x[0]), x[1]) : null,
  ],
  Div: ({ g, x, y, dy, need }) => [
    need[0] ? unbroadcast(g, g.div(dy[0]!, x[1]), x[0]) : null,
    need[1] ? unbroadcast(g, g.neg(g.div(g.mul(dy[0]!, y[0]), x[1])), x[1]) : null,
  ],
  Neg: ({ g, dy }) => [g.neg(dy[0]!)],
  Exp: ({ g, y, dy }) => [g.mul(dy[0]!, y[0])],
  Sqrt: ({ g, y, dy }) => [g.div(g.mul(dy[0]!, g.scalar(0.5)), y[0])],
  Tanh: ({ g, y, dy }) => [g.mul(dy[0]!, g.sub(g.scalar(1), g.mul(y[0], y[0])))],
  Abs: ({ g, x, dy }) => [g.mul(dy[0]!, g.node('Sign', [x[0]], {}, [{ dtype: x[0].dtype, shape: x[0].shape }])[0])],
  Pow: ({ g, x, dy, need }) => {
    if (need[1]) throw new GraphError('Pow: gradient with respect to the exponent is not supported');
    const p = constantValue(g, x[1]);
    if (p === null) throw new GraphError('Pow: the exponent must be a scalar constant to differentiate');
    return [g.mul(dy[0]!, g.mul(g.pow(x[0], p - 1), g.scalar(p))), null];
  },
  Erf: ({ g, x, dy }) => [erfGrad(g, x[0], dy[0]!)],
  Gelu: ({ g, x, dy }) => [geluGrad(g, x[0], dy[0]!)],
  ErfGate: ({ g, x, y, dy }) => [erfGateGrad(g, x[0], y[1], dy[0]!)],
  Where: ({ g, x, dy, need }) => {
    const zero = g.constant([0], [], dy[0]!.dtype);
    return [
      null,
      need[1] ? unbroadcast(g, g.where(x[0], dy[0]!, zero), x[1]) : null,
      need[2] ? unbroadcast(g, g.where(x[0], zero, dy[0]!), x[2]) : null,
    ];
  },
  Expand: ({ g, x, dy }) => [unbroadcast(g, dy[0]!, x[0]), null],
  Reshape: ({ g, x, dy }) => [g.reshapeLike(dy[0]!, x[0]), null],
  Transpose: ({ g, node, dy }) => {
    const perm = node.attrs.perm as number[];
    const inv = new Array<number>(perm.length);
    perm.forEach((p, i) => (inv[p] = i));
    return [g.transpose(dy[0]!, inv)];
  },
  Concat: ({ g, node, x, dy }) => {
    const axis = node.attrs.axis as number;
    const sizes = x.map((v) => v.shape[axis]);
    if (!sizes.every((s) => typeof s === 'number')) throw new GraphError('Concat gradient: the concat axis must be numeric');
    return g.split(dy[0]!, axis, sizes as number[]);
  },
  Split: ({ g, node, y, dy }) => [g.concat(dy.map((d, i) => d ?? zerosLike(g, y[i])), node.attrs.axis as number), null],
  Slice: ({ g, x, y, dy }) => {
    // Static single-axis slice (Graph.slice): pad the gradient back with zeros.
    const axes = Number(g.initializers.find((i) => i.name === x[3].name)!.data[0]);
    const start = Number(g.initializers.find((i) => i.name === x[1].name)!.data[0]);
    const full = x[0].shape[axes] as number;
    const len = y[0].shape[axes] as number;
    return [g.pad(dy[0]!, x[0].shape.map((_, i) => (i === axes ? [start, full - start - len] : [0, 0]) as [number, number])), null, null, null];
  },
  Gather: ({ g, node, x, dy }) => {
    const axis = node.attrs.axis as number;
    const idx = g.initializers.find((i) => i.name === x[1].name);
    if (!idx) throw new GraphError('Gather gradient: indices must be constant');
    const ids = Array.from(idx.data as BigInt64Array, Number);
    const n = x[0].shape[axis];
    if (typeof n !== 'number') throw new GraphError('Gather gradient: the gathered axis must be numeric');
    let grad = dy[0]!;
    if (idx.dims.length === 0) {
      // Scalar index: the axis was dropped; restore it with size 1.
      grad = g.node('Unsqueeze', [grad, g.ints([axis])], {}, [{ dtype: grad.dtype, shape: [...grad.shape.slice(0, axis), 1, ...grad.shape.slice(axis)] }])[0];
    } else if (!ids.every((v, i) => v === ids[0] + i)) {
      throw new GraphError('Gather gradient: only a scalar index or a contiguous index range is supported');
    }
    return [g.pad(grad, x[0].shape.map((_, i) => (i === axis ? [ids[0], n - ids[0] - Math.max(ids.length, 1)] : [0, 0]) as [number, number])), null];
  },
  ReduceSum: ({ g, node, x, dy }) => [reduceGrad(g, node, x[0], dy[0]!, 1), null],
  ReduceMean: ({ g, node, x, dy }) => {
    const axes = Array.from(g.initializers.find((i) => i.name === node.inputs[1])!.data as BigInt64Array, Number);
    let count = 1;
    for (const a of axes) {
      const d = x[0].shape[a];
      if (typeof d !== 'number') throw new GraphError('ReduceMean gradient over the batch axis needs a static batch');
      count *= d;
    }
    return [reduceGrad(g, node, x[0], dy[0]!, 1 / count), null];
  },
  Softmax: ({ g, node, y, dy, readers, gradOf }) => {
    const axis = node.attrs.axis as number;
    const p = y[0];
    // dx = p (dy - sum(dy p)), the sum over the softmax axis.
    let s: Value | null = null;
    const r = readers(p.name);
    if ((axis === -1 || axis === p.shape.length - 1) && r.length === 1 && r[0].op === 'MatMul' && r[0].inputs[0] === p.name && r[0].inputs[1] !== p.name) {
      // Attention, o = p v [.., n, hd]: dy = do v^T, so sum_t dy p = sum_j do o, one pass over
      // o instead of two over p [.., n, T] (softmax backward as in FlashAttention).
      const o = g.values.get(r[0].outputs[0])!;
      const dO = gradOf(o.name);
      if (dO && shapeEq(o.shape.slice(0, -1), p.shape.slice(0, -1))) s = g.reduceSum(g.mul(dO, o), [-1], true); // [.., n, 1]
    }
    s ??= g.reduceSum(g.mul(dy[0]!, p), [axis], true);
    return [g.mul(p, g.sub(dy[0]!, s))];
  },
  LogSoftmax: ({ g, node, y, dy }) => {
    const axis = node.attrs.axis as number;
    return [g.sub(dy[0]!, g.mul(g.exp(y[0]), g.reduceSum(dy[0]!, [axis], true)))];
  },
  MatMul: ({ g, x, dy, need }) => {
    const [a, b] = x;
    const swap = (v: Value) => g.transpose(v, lastTwoSwapped(v.shape.length));
    // dB = A^T dY. Where B is itself a transposed value K^T (attention's q k^T), emit
    // (dY^T A)^T: the Transpose rule's transpose of it then cancels in the builder, so dK =
    // dY^T A needs no Transpose node (ORT fuses the operand transposes into FusedMatMul but not
    // a transpose of the product).
    const bSrc = g.producer.get(b.name);
    const bIsTransposed = bSrc?.op === 'Transpose' && shapeEq(bSrc.attrs.perm as number[], lastTwoSwapped(b.shape.length));
    return [
      need[0] ? unbroadcast(g, g.matmul(dy[0]!, swap(b)), a) : null,
      need[1] ? unbroadcast(g, bIsTransposed && a.shape.length === b.shape.length ? swap(g.matmul(swap(dy[0]!), a)) : g.matmul(swap(a), dy[0]!), b) : null,
    ];
  },
  Gemm: ({ g, node, x, dy, need }) => {
    const tA = node.attrs.transA === 1;
    const tB = node.attrs.transB === 1;
    const [a, b, c] = x;
    const d = dy[0]!;
    // Y = op(A) op(B) + C.  d op(A) = dY op(B)^T,  d op(B) = op(A)^T dY.
    const gA = !need[0] ? null : tA ? g.gemm(b, d, null, { transA: tB, transB: true }) : g.gemm(d, b, null, { transB: !tB });
    // A linear layer's weight gradient dW = dY^T X contracts over its R rows. MLAS runs it faster
    // with dY^T copied out by a Transpose first than with transA, whose copy of A runs inside the
    // Gemm (npm run bench:wgrad, R = 3200, Transpose included: 0.82-0.92x the transA time for
    // fc1, fc2 and qkv; the training step 0.95x). transposeMatrix keeps ORT from fusing that
    // Transpose back into transA. One-row products (the folded LayerNorm shift) and float64
    // reference graphs keep transA.
    const rowsContracted = tB && !tA && a.dtype === 'float32' && !dimEq(d.shape[0], 1);
    const dT = rowsContracted && need[1] ? g.transposeMatrix(d) : null; // [out, R]
    const gB = !need[1] ? null : dT ? g.gemm(dT, a, null) : tB ? g.gemm(d, a, null, { transA: true, transB: tA }) : g.gemm(a, d, null, { transA: !tA });
    // With dY^T at hand, a bias [out] gets its gradient as row sums of it (contiguous rows, read
    // while the Transpose's output is fresh) instead of a ones-row MatMul over dY (a third of
    // the kernel time in a profile of the vit-28 step).
    const gC = !c || !need[2] ? null : dT && c.shape.length === 1 ? g.reduceSum(dT, [1], false) : unbroadcast(g, d, c);
    return [gA, gB, gC];
  },
  LayerNormalization: ({ g, x, y, dy, need }) => {
    if (dy[1] || dy[2]) throw new GraphError('LayerNormalization: gradients through mean/invStd outputs are not supported');
    const [xin, gamma] = x;
    const beta = x[2] ?? null;
    const [out, mean, invStd] = y;
    const d = dy[0]!;
    // A unit-affine norm (Graph.normalize) outputs xhat itself: no recomputation, no scaling.
    const unit = g.isOnes(gamma) && beta === null;
    const xhat = unit ? out : g.mul(g.sub(xin, mean), invStd); // [..., D]
    const lead = [...Array(xin.shape.length - 1).keys()];
    const rowSum = (v: Value) => sumRows(g, v) ?? g.reduceSum(v, lead, false);
    const dBeta = need[2] ? rowSum(d) : null;
    const dGamma = need[1] ? rowSum(g.mul(d, xhat)) : null;
    let dx: Value | null = null;
    if (need[0]) {
      // dx = invStd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)), means over the last axis.
      // mean(dxhat xhat) = mean(c xhat) for the centred c = dxhat - mean(dxhat), as xhat has
      // zero mean.
      const centred = unit ? centredProduct(g, d) : null;
      if (centred) {
        dx = g.mul(invStd, g.sub(centred, g.mul(xhat, g.reduceMean(g.mul(centred, xhat), [-1], true))));
      } else {
        const dxhat = unit ? d : g.mul(d, gamma);
        const m1 = g.reduceMean(dxhat, [-1], true);
        const m2 = g.reduceMean(g.mul(dxhat, xhat), [-1], true);
        dx = g.mul(invStd, g.sub(g.sub(dxhat, m1), g.mul(xhat, m2)));
      }
    }
    return [dx, dGamma, dBeta];
  },
};

/**
 * Where `d` [R, D] is Gemm(dY [R, O], W [O, D]) (the input gradient of a linear layer that
 * reads a unit-affine norm's output, e.g. qkv or fc1 after the folded LayerNorm), returns
 * d - mean(d) over the last axis as Gemm(dY, W - mean(W)) with W's rows centred: two ops on
 * the small [O, D] weight instead of two passes over the [R, D] activations. The original
 * Gemm is then unread, and toOnnxBytes drops it. Null where d is anything else (e.g. the sum
 * of several consumers' gradients).
 */
function centredProduct(g: Graph, d: Value): Value | null {
  const n = g.producer.get(d.name);
  if (n?.op !== 'Gemm' || n.attrs.transA === 1 || n.attrs.transB === 1 || (n.inputs[2] ?? '') !== '') return null;
  if ('alpha' in n.attrs || d.shape.length !== 2) return null;
  const w = g.values.get(n.inputs[1])!;
  if (!isStatic(w.shape) || w.shape.length !== 2) return null;
  return g.gemm(g.values.get(n.inputs[0])!, g.sub(w, g.reduceMean(w, [1], true)), null);
}

function reduceGrad(g: Graph, node: GraphNode, x: Value, dy: Value, scale: number): Value {
  const axes = Array.from(g.initializers.find((i) => i.name === node.inputs[1])!.data as BigInt64Array, Number);
  let grad = dy;
  if (node.attrs.keepdims === 0) {
    const kept = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
    grad = isStatic(kept) ? g.reshape(grad, kept) : g.node('Unsqueeze', [grad, g.ints(axes)], {}, [{ dtype: grad.dtype, shape: kept }])[0];
  }
  if (scale !== 1) grad = g.mul(grad, g.scalar(scale));
  return g.expand(grad, x);
}

export const DIFFERENTIABLE_OPS = Object.keys(RULES);

/**
 * Appends the backward pass to `g`: returns d loss / d w for each w in `wrt` (null where the
 * loss does not depend on w). `loss` must be a scalar.
 */
export function gradients(g: Graph, loss: Value, wrt: Value[]): (Value | null)[] {
  if (loss.shape.length !== 0) throw new GraphError(`gradients: loss ${loss.name} must be a scalar, got ${shapeStr(loss.shape)}`);
  // Forward pass: which values depend on wrt.
  const active = new Set(wrt.map((w) => w.name));
  const forwardNodes = [...g.nodes];
  for (const n of forwardNodes) if (n.inputs.some((i) => active.has(i))) n.outputs.forEach((o) => active.add(o));
  if (!active.has(loss.name)) return wrt.map(() => null);

  const readerMap = new Map<string, GraphNode[]>();
  for (const n of forwardNodes) {
    for (const i of n.inputs) {
      if (!i) continue;
      const list = readerMap.get(i);
      if (list) list.push(n);
      else readerMap.set(i, [n]);
    }
  }
  const readers = (name: string) => readerMap.get(name) ?? [];

  const contributions = new Map<string, Value[]>();
  const addGrad = (name: string, v: Value) => {
    const list = contributions.get(name);
    if (list) list.push(v);
    else contributions.set(name, [v]);
  };
  const gradOf = (name: string): Value | null => {
    const list = contributions.get(name);
    if (!list || list.length === 0) return null;
    let acc = list[0];
    for (let i = 1; i < list.length; i++) acc = g.add(acc, list[i]);
    contributions.set(name, [acc]);
    return acc;
  };
  addGrad(loss.name, g.constant([1], [], loss.dtype));

  for (let i = forwardNodes.length - 1; i >= 0; i--) {
    const node = forwardNodes[i];
    if (!node.outputs.some((o) => active.has(o) && contributions.has(o))) continue;
    // A decomposed op (float64 erf / GELU): one rule from its output straight to its input.
    const comp = node.outputs.length === 1 ? g.composites.get(node.outputs[0]) : undefined;
    if (comp) {
      const dy = comp.outputs.map((o, k) => (k === 0 ? gradOf(o.name) : null));
      const need = comp.inputs.map((v) => active.has(v.name));
      const grads = RULES[comp.op]({ g, node, x: comp.inputs, y: comp.outputs, dy, need, readers, gradOf });
      grads.forEach((gv, k) => {
        if (gv && need[k]) addGrad(comp.inputs[k].name, gv);
      });
      continue;
    }
    const rule = RULES[node.op];
    if (!rule) throw new GraphError(`no gradient rule for ${node.op} (node ${node.name}); differentiable ops: ${DIFFERENTIABLE_OPS.join(', ')}`);
    const x = node.inputs.map((n) => (n ? g.values.get(n)! : (null as unknown as Value)));
    const y = node.outputs.map((n) => g.values.get(n)!);
    const dy = node.outputs.map((o) => gradOf(o));
    const need = node.inputs.map((n) => n !== '' && active.has(n));
    const grads = rule({ g, node, x, y, dy, need, readers, gradOf });
    grads.forEach((gv, k) => {
      if (gv && need[k]) addGrad(node.inputs[k], gv);
    });
  }
  return wrt.map((w) => gradOf(w.name));
}

export { float };
