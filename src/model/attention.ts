// Multi-head self-attention of a ViT graph, in the five forms a graph can take (ATTENTION_FORMS):
// one table, one function per form, all computing softmax(q k^T / sqrt(hd)) v per head from
// LN1(z) and timm's qkv weights. Which form a graph uses is attentionForm's choice; the layers
// around it (LayerNorm, linear layers, int8 emitters) come from the ViT builder through
// AttentionContext.

import type { ViTConfig } from '../core/config.js';
import type { Dim, Graph, Value } from '../graph/graph.js';
import type { ForwardOptions, HeadProductSpec, ParamBinding } from './vit-graph.js';

export type AttentionForm = 'class-query' | 'strided' | 'fused' | 'per-head' | 'batched';

/** What the attention forms use of the ViT builder (model/vit-graph.ts). */
export interface AttentionContext {
  readonly g: Graph;
  readonly cfg: ViTConfig;
  /** Tokens per image. */
  readonly T: number;
  /** The batch dim: symbolic B (inference, export) or a number (training graphs). */
  readonly batch: Dim;
  readonly opts: ForwardOptions;
  readonly param: ParamBinding;
  /** Rows ordered (token, image): ForwardOptions.stridedHeads. */
  readonly tokenMajor: boolean;
  p(name: string, shape: number[]): Value;
  linear(x: Value, prefix: string, out: number, inp: number, rows?: [number, number]): Value;
  layerNorm(z: Value, norm: string): Value;
  normLinear(z: Value, norm: string, lin: string, out: number, scale?: number): Value;
  foldedNorm(z: Value, norm: string, lin: string, out: number, scale?: number): { xhat: Value; w: Value; b: Value };
  cls(z: Value): Value;
  rows(n: number): Dim;
}

/**
 * The forms, each mapping layer i's input z [B*T, D] (token-major: [T*B, D]) to the merged heads
 * before the projection, [B*n, H*hd] (n = 1 with clsOnly, else T):
 * - class-query: the last layer of inference graphs, the class token's query alone, with the
 *   key and value products reassociated so no key or value is projected;
 * - strided: float32 exports, heads read in place from token-major rows by FusedMatMul;
 * - fused: onnxruntime's com.microsoft MultiHeadAttention;
 * - per-head: training graphs, one Split and per-head MatMuls (the simplest gradients);
 * - batched: other inference graphs, heads batched as [B, H, T, hd].
 */
export const ATTENTION_FORMS: Record<AttentionForm, (c: AttentionContext, i: number, z: Value, clsOnly: boolean) => Value> = {
  'class-query': (c, i, z) => classQueryAttention(c, i, c.layerNorm(z, `blocks.${i}.norm1`)),
  strided: (c, i, z) => stridedAttention(c, `blocks.${i}.`, z),
  fused: (c, i, z) => fusedAttention(c, i, `blocks.${i}.`, z),
  'per-head': (c, i, z, clsOnly) => perHeadAttention(c, `blocks.${i}.`, z, clsOnly),
  batched: (c, i, z) => batchedAttention(c, `blocks.${i}.`, z),
};

/**
 * How a graph computes attention: training graphs per head; inference graphs the
 * class-token-only form for the last layer, else strided heads (float32 exports),
 * onnxruntime's fused MultiHeadAttention, or heads batched as [B, H, T, hd].
 */
export function attentionForm(training: boolean, tokenMajor: boolean, opts: ForwardOptions, clsOnly: boolean): AttentionForm {
  if (training) return 'per-head';
  if (clsOnly) return 'class-query';
  if (tokenMajor) return 'strided';
  if (opts.fusedAttention) return 'fused';
  return 'batched';
}

/** Inference graphs: [B*T, n*H*hd] (e.g. q|k|v) -> n tensors [B, H, T, hd], heads batched. */
function splitHeads(c: AttentionContext, x: Value, n: number): Value[] {
  const g = c.g;
  const { num_heads: H, head_dim: hd } = c.cfg;
  const heads = g.transpose(g.reshape(x, [c.batch, c.T, n, H, hd]), [2, 0, 3, 1, 4]); // [n, B, H, T, hd]
  return g.split(heads, 0, new Array(n).fill(1)).map((t) => g.reshape(t, [c.batch, H, c.T, hd]));
}

/** Inference graphs: part j (0 q, 1 k, 2 v) of layer i's qkv for x [B*T, D], as [B, T, H*hd]. */
function qkvPart(c: AttentionContext, x: Value, i: number, j: number): Value {
  const { embed_dim: D, num_heads: H, head_dim: hd } = c.cfg;
  const HD = H * hd;
  return c.g.reshape(c.linear(x, `blocks.${i}.attn.qkv`, 3 * HD, D, [j * HD, (j + 1) * HD]), [c.batch, c.T, HD]);
}

/** com.microsoft MultiHeadAttention: q [B, Tq, H*hd], k, v [B, T, H*hd] -> [B, Tq, H*hd]. */
function mha(c: AttentionContext, q: Value, k: Value, v: Value): Value {
  if (!c.opts.scaleInQuery) throw new Error('fused attention expects the query scale folded into the weights');
  const { num_heads: H } = c.cfg;
  return c.g.node('MultiHeadAttention', [q, k, v], { num_heads: H, scale: { float: 1 } }, [{ dtype: q.dtype, shape: q.shape }], 'com.microsoft')[0];
}

/**
 * Inference graphs: the class token's attention output (before proj) in layer i, from
 * h = LN1(z) [B*T, D] (or [T*B, D] token-major): [B, H*hd]. With one query per image, keys and
 * values need not be projected for every token (2*T*D*2*H*hd FLOPs); the products are
 * reassociated instead, per head h:
 *   scores = q_h (X Wk_h^T + bk_h)^T = (q_h Wk_h) X^T + const   (softmax cancels q_h . bk_h)
 *   out    = p (X Wv_h^T + bv_h)     = (p X) Wv_h^T + bv_h       (p sums to 1)
 * with Wk_h, Wv_h [hd, D] timm's rows of qkv and X = h, the normed tokens. That costs
 * 4*H*T*D + 4*H*hd*D FLOPs per image instead of projecting every key and value (exact in real
 * arithmetic).
 */
function classQueryAttention(c: AttentionContext, i: number, h: Value): Value {
  const g = c.g;
  const { embed_dim: D, num_heads: H, head_dim: hd } = c.cfg;
  const HD = H * hd;
  const T = c.T;
  const lin = `blocks.${i}.attn.qkv`;
  const q = g.reshape(c.linear(c.cls(h), lin, 3 * HD, D, [0, HD]), [c.batch, H, 1, hd]); // [B, H, 1, hd]
  const headProduct = (x: Value, j: number, to: 'in' | 'out') => {
    const spec: HeadProductSpec = { prefix: lin, out: 3 * HD, inp: D, rows: [j * HD, (j + 1) * HD], heads: H, to };
    return c.opts.headProduct ? c.opts.headProduct(x, spec) : floatHeadProduct(c, x, spec);
  };
  const u = g.reshape(headProduct(q, 1, 'in'), [c.batch, H, D]); // [B, H, D]: q_h Wk_h
  const alpha = c.opts.scaleInQuery ? 1 : 1 / Math.sqrt(hd);
  let scores: Value; // [B, H, T]
  let mixed: Value; // [B, H, D]: p X
  if (c.tokenMajor) {
    // The rows of image b are the strided view [T, B, D][:, b]: FusedMatMul reads it in place.
    const x = g.reshape(h, [T, c.batch, D]);
    scores = fusedMatMul(c, u, x, { transB: 1, transBatchB: 1, alpha: { float: alpha } }, [c.batch, H, T]);
    mixed = fusedMatMul(c, g.softmax(scores, -1), x, { transBatchB: 1 }, [c.batch, H, D]);
  } else {
    const x = g.reshape(h, [c.batch, T, D]);
    scores = g.matmul(u, g.transpose(x, [0, 2, 1]));
    if (alpha !== 1) scores = g.mul(scores, g.scalar(alpha));
    mixed = g.matmul(g.softmax(scores, -1), x);
  }
  const out = headProduct(g.reshape(mixed, [c.batch, H, 1, D]), 2, 'out'); // [B, H, 1, hd]
  return g.add(g.reshape(out, [c.batch, HD]), g.slice(c.p(lin + '.bias', [3 * HD]), 0, 2 * HD, 3 * HD)); // [B, H*hd]
}

/** ORT's com.microsoft FusedMatMul: a batched MatMul that reads transposed batches in place (transBatchA/B). */
function fusedMatMul(c: AttentionContext, a: Value, b: Value, attrs: Record<string, number | { float: number }>, shape: Dim[]): Value {
  return c.g.node('FusedMatMul', [a, b], attrs, [{ dtype: a.dtype, shape }], 'com.microsoft')[0];
}

/**
 * HeadProductSpec in float, from the [in, out] initializer the layer's other rows use (one copy
 * in the file; ORT folds the Slice/Reshape/Transpose at load).
 */
function floatHeadProduct(c: AttentionContext, x: Value, { prefix, out, inp, rows, heads: H, to }: HeadProductSpec): Value {
  const g = c.g;
  const w = g.reshape(g.slice(c.param(prefix + '.weight', [out, inp], true), 1, rows[0], rows[1]), [inp, H, -1]); // [in, H, hd]
  return g.matmul(x, g.transpose(w, to === 'in' ? [1, 2, 0] : [1, 0, 2])); // W_h [H, hd, in] or W_h^T [H, in, hd]
}

function stridedAttention(c: AttentionContext, pre: string, z: Value): Value {
  const g = c.g;
  const { embed_dim: D, num_heads: H, head_dim: hd } = c.cfg;
  const T = c.T;
  const HD = H * hd;
  // Heads as strided views [T, B*H, hd] of the token-major q, k, v (FusedMatMul's
  // transBatch reads them in place): [T, B, 3, H*hd] -> three [T, B, 1, H*hd] -> [T, B*H, hd].
  const h = c.layerNorm(z, pre + 'norm1'); // [T*B, D]
  const [q, k, v] = [0, 1, 2].map((j) => g.reshape(c.linear(h, pre + 'attn.qkv', 3 * HD, D, [j * HD, (j + 1) * HD]), [T, { b: H }, hd])); // [T, B*H, hd]
  const alpha = c.opts.scaleInQuery ? 1 : 1 / Math.sqrt(hd);
  const p = g.softmax(fusedMatMul(c, q, k, { transB: 1, transBatchA: 1, transBatchB: 1, alpha: { float: alpha } }, [{ b: H }, T, T]), -1); // [B*H, T, T]
  const out = fusedMatMul(c, p, v, { transBatchB: 1 }, [{ b: H }, T, hd]); // [B*H, T, hd]
  return g.reshape(g.transpose(g.reshape(out, [c.batch, H, T, hd]), [2, 0, 1, 3]), [c.rows(T), HD]); // [T*B, H*hd]
}

function fusedAttention(c: AttentionContext, i: number, pre: string, z: Value): Value {
  const { num_heads: H, head_dim: hd } = c.cfg;
  const h = c.layerNorm(z, pre + 'norm1'); // [B*T, D]
  return c.g.reshape(mha(c, qkvPart(c, h, i, 0), qkvPart(c, h, i, 1), qkvPart(c, h, i, 2)), [c.rows(c.T), H * hd]);
}

function perHeadAttention(c: AttentionContext, pre: string, z: Value, clsOnly: boolean): Value {
  const g = c.g;
  const { num_heads: H, head_dim: hd } = c.cfg;
  const T = c.T;
  const HD = H * hd;
  const n = clsOnly ? 1 : T; // query tokens per image
  // Training graphs: one Split gives every head's q, k, v as [B, T, hd]; per-head batched
  // MatMuls need no 5-D transposes (faster in ORT: docs/engine.md) and the gradients are
  // one Concat / Split.
  let q: Value[]; // H x [B, n, hd]
  let kv: Value[]; // 2H x [B, T, hd]: k heads, then v heads
  const { xhat, w, b: bAll } = c.foldedNorm(z, pre + 'norm1', pre + 'attn.qkv', 3 * HD);
  // The key bias shifts each query's scores by one constant, which softmax cancels: the
  // graph leaves it out, so its gradient is exactly 0 rather than rounding noise (which
  // AdamW, dividing by sqrt(v) + eps, would turn into updates).
  const b = g.mul(bAll, g.constant(Array.from({ length: 3 * HD }, (_, r) => (r >= HD && r < 2 * HD ? 0 : 1)), [3 * HD]));
  if (clsOnly) {
    const kvAll = g.linear(xhat, g.slice(w, 0, HD, 3 * HD), g.slice(b, 0, HD, 3 * HD)); // [B*T, 2*H*hd]
    kv = g.split(g.reshape(kvAll, [c.batch, T, 2 * HD]), 2, new Array(2 * H).fill(hd));
    const qCls = g.linear(c.cls(xhat), g.slice(w, 0, 0, HD), g.slice(b, 0, 0, HD)); // [B, H*hd]
    q = H === 1 ? [g.reshape(qCls, [c.batch, 1, hd])] : g.split(g.reshape(qCls, [c.batch, 1, HD]), 2, new Array(H).fill(hd));
  } else {
    const parts = g.split(g.reshape(g.linear(xhat, w, b), [c.batch, T, 3 * HD]), 2, new Array(3 * H).fill(hd));
    q = parts.slice(0, H);
    kv = parts.slice(H);
  }
  const outs: Value[] = [];
  for (let h = 0; h < H; h++) {
    const scores = g.matmul(g.mul(q[h], g.scalar(1 / Math.sqrt(hd))), g.transpose(kv[h], [0, 2, 1])); // [B, n, T]
    outs.push(g.matmul(g.softmax(scores, -1), kv[H + h])); // [B, n, hd]
  }
  return g.reshape(H === 1 ? outs[0] : g.concat(outs, 2), [c.rows(n), HD]);
}

function batchedAttention(c: AttentionContext, pre: string, z: Value): Value {
  const g = c.g;
  const { num_heads: H, head_dim: hd } = c.cfg;
  const T = c.T;
  const HD = H * hd;
  // Heads batched as [B, H, T, hd] (fewer nodes; per-head and batched layouts measured the
  // same at batch 1).
  let [q, k, v] = splitHeads(c, c.normLinear(z, pre + 'norm1', pre + 'attn.qkv', 3 * HD), 3); // [B, H, T, hd]
  if (!c.opts.scaleInQuery) q = g.mul(q, g.scalar(1 / Math.sqrt(hd)));
  const out = g.matmul(g.softmax(g.matmul(q, g.transpose(k, [0, 1, 3, 2])), -1), v); // [B, H, T, hd]
  return g.reshape(g.transpose(out, [0, 2, 1, 3]), [c.rows(T), HD]);
}
