// ViT forward graphs (SPEC sections 1-2) built with the Graph builder.
//
// The residual stream is kept 2-D, [B*T, D], so every linear layer is one Gemm reading timm's
// [out, in] weight with transB (no runtime transposes) and a fused bias. Attention reshapes to
// [B, H, T, hd] only around its two batched MatMuls. The patch embedding is a patchify
// (Reshape/Transpose) followed by a Gemm, equal to timm's stride-P convolution.
//
// Training graphs (the ones autodiff differentiates) compute the same function with fewer
// passes over the activations: each LayerNorm's affine is folded into the linear layer after it
// (normLinear), and GELU is the erf gate u (1 + erf u) with its 1/sqrt 2 scales folded into the
// fc1 and fc2 weights. Inference graphs keep timm's form (single-op LayerNorm and Gelu).
//
// Branched graphs take the join coefficients as inputs `join_attn` [L] and `join_ffn` [L], so
// a schedule changes them without rebuilding. Each block is built in one of two phases:
//   'attn'  f_b = 0, a_b in [0, 1]: A_j reads r + a (x - r); F_j reads r.
//   'ffn'   a_b = 1, f_b in [0, 1]: every A_j reads x, computed once (they feed both y and the
//           stream); F_j reads r + f (y - r).
// SPEC section 2 allows f_b > 0 only once a_b = 1, so every valid state has one graph; the
// split avoids computing attention twice. A schedule that moves a block from 'attn' to 'ffn'
// switches to the next graph.

import { numPatches, numTokens, type ViTConfig } from '../core/config.js';
import { Graph, type Dim, type Value } from '../graph/graph.js';

export type JoinPhase = 'attn' | 'ffn';

export type GraphStructure =
  | { kind: 'plain' } // plain and folded models
  | { kind: 'branched'; branches: number; phases: JoinPhase[] };

/**
 * Returns the graph value of a parameter (an initializer, or a slice of a flat input). With
 * `transposed`, a 2-D weight [out, in] is wanted as [in, out]: inference graphs bake weights
 * that way, because ONNX Runtime pre-packs a constant MatMul operand, which Gemm with transB
 * does not get (DeiT-Tiny: linear layers 16.0 ms vs 18.3 ms).
 */
export type ParamBinding = (name: string, shape: number[], transposed?: boolean) => Value;

export interface ForwardOptions {
  /**
   * The head reads only the class token: the last layer needs keys and values of every token,
   * but queries, attention, projection and FFN of the class token alone (exact; ~28% of a
   * 3-layer DeiT-Tiny fold's FLOPs). Inference graphs only.
   */
  clsOnlyLastLayer?: boolean;
  /** Queries arrive pre-scaled by 1/sqrt(hd) (folded into the q rows of qkv by the binding). */
  scaleInQuery?: boolean;
  /**
   * Emits the transformer's linear layers (qkv, proj, fc1, fc2) of inference graphs, e.g. as
   * int8 (deploy/export.ts). Patch embedding and head always use the float path.
   */
  linear?: LinearEmitter;
  /**
   * Attention core as ONNX Runtime's fused com.microsoft MultiHeadAttention (q, k, v from
   * three linear layers, no head transposes) instead of MatMul/Softmax/MatMul. Inference
   * graphs; needs scaleInQuery.
   */
  fusedAttention?: boolean;
}

/** A linear layer x [R, in] -> [R, rows[1] - rows[0]]: rows [r0, r1) of timm's weight [out, in]. */
export interface LinearSpec {
  prefix: string;
  out: number;
  inp: number;
  rows: [number, number];
}
export type LinearEmitter = (x: Value, spec: LinearSpec) => Value;

export interface ForwardInputs {
  x: Value; // [B, C, S, S]
  joinAttn?: Value; // [L]
  joinFfn?: Value; // [L]
  /** Drop-path keep factors [2*depth, B*T, 1]: row 2i scales layer i's attention, 2i+1 its FFN. */
  dropKeep?: Value;
}

/** The phase of each block for given coefficients; throws if a state is invalid. */
export function phasesFor(attn: number[], ffn: number[]): JoinPhase[] {
  return attn.map((a, b) => {
    if (ffn[b] > 0 && a !== 1) throw new Error(`block ${b}: ffn coefficient ${ffn[b]} > 0 needs attn coefficient 1 (got ${a})`);
    return a === 1 && ffn[b] > 0 ? 'ffn' : 'attn';
  });
}

class VitBuilder {
  private readonly T: number;

  constructor(
    private readonly g: Graph,
    private readonly cfg: ViTConfig,
    private readonly param: ParamBinding,
    /** The batch dim: symbolic B (inference, export) or a number (training graphs). */
    private readonly batch: Dim,
    private readonly dropKeep?: Value,
    private readonly opts: ForwardOptions = {},
  ) {
    this.T = numTokens(cfg);
  }

  /** A transformer linear layer (qkv, proj, fc1, fc2): the custom emitter's when one is given. */
  private linear(x: Value, prefix: string, out: number, inp: number, rows: [number, number] = [0, out]): Value {
    if (this.opts.linear && !this.g.training) return this.opts.linear(x, { prefix, out, inp, rows });
    return this.floatLinear(x, prefix, out, inp, rows);
  }

  /**
   * x [R, in] -> [R, out] with timm's weight [out, in]. Training graphs: one Gemm (transB, fused
   * bias) on the flat parameter slice. Inference graphs: MatMul with the weight baked as
   * [in, out] (pre-packed by ORT) and an Add.
   */
  private floatLinear(x: Value, prefix: string, out: number, inp: number, rows: [number, number] = [0, out]): Value {
    const g = this.g;
    const whole = rows[0] === 0 && rows[1] === out;
    if (g.training) {
      if (!whole) throw new Error('row slices of linear layers are for inference graphs');
      return g.linear(x, this.p(prefix + '.weight', [out, inp]), this.p(prefix + '.bias', [out]));
    }
    let wT = this.param(prefix + '.weight', [out, inp], true); // [in, out]
    let b = this.p(prefix + '.bias', [out]);
    if (!whole) {
      // constant slices: ORT folds them at load time
      wT = g.slice(wT, 1, rows[0], rows[1]);
      b = g.slice(b, 0, rows[0], rows[1]);
    }
    return g.add(g.matmul(x, wT), b); // ORT fuses this into a Gemm on the pre-packed weight
  }

  /**
   * LayerNorm `norm` then linear layer `lin`, times `scale`: z [R, D] -> [R, out]. Training
   * graphs fold the norm's affine (and the scale) into the layer,
   *   LN(z) W^T + b = xhat (W diag(gamma))^T + (W beta + b),
   * so the [R, D] activations pass through one unit-affine LayerNormalization whose output the
   * backward reuses as xhat, and the gamma/beta gradients come from weight-sized ops ([out, D])
   * instead of four more passes over [R, D].
   */
  private normLinear(z: Value, norm: string, lin: string, out: number, scale = 1): Value {
    const g = this.g;
    const { embed_dim: D, eps } = this.cfg;
    const gamma = this.p(norm + '.weight', [D]);
    const beta = this.p(norm + '.bias', [D]);
    if (!g.training) {
      if (scale !== 1) throw new Error('scaled normLinear is for training graphs');
      return this.linear(g.layerNorm(z, gamma, beta, eps).y, lin, out, D);
    }
    const w = this.p(lin + '.weight', [out, D]);
    const wFolded = g.mul(w, scale === 1 ? gamma : g.mul(gamma, g.scalar(scale))); // [out, D]
    let bFolded = g.reshape(g.gemm(g.reshape(beta, [1, D]), w, this.p(lin + '.bias', [out]), { transB: true }), [out]); // [out]
    if (scale !== 1) bFolded = g.mul(bFolded, g.scalar(scale));
    return g.linear(g.normalize(z, eps).y, wFolded, bFolded);
  }

  /** batch * n, e.g. the B*T rows of the residual stream. */
  private rows(n: number): Dim {
    return typeof this.batch === 'number' ? this.batch * n : { b: this.batch.b * n };
  }

  private p(name: string, shape: number[]): Value {
    return this.param(name, shape);
  }

  /** Patch embedding, class token, position embedding: x [B, C, S, S] -> z [B*T, D]. */
  embed(x: Value): Value {
    const g = this.g;
    const { in_chans: C, img_size: S, patch_size: P, embed_dim: D } = this.cfg;
    const G = S / P;
    const N = numPatches(this.cfg);
    return g.scope('patch_embed', () => {
      const patches = g.reshape(g.transpose(g.reshape(x, [this.batch, C, G, P, G, P]), [0, 2, 4, 1, 3, 5]), [this.rows(N), C * P * P]); // [B*N, C*P*P]
      const w = g.reshape(this.p('patch_embed.proj.weight', [D, C, P, P]), [D, C * P * P]);
      const tokens = g.reshape(g.linear(patches, w, this.p('patch_embed.proj.bias', [D])), [this.batch, N, D]); // [B, N, D]
      const cls = this.expandBatch(this.p('cls_token', [1, 1, D]), tokens, [this.batch, 1, D]); // [B, 1, D]
      const z = g.add(g.concat([cls, tokens], 1), this.p('pos_embed', [1, this.T, D])); // [B, T, D]
      return g.reshape(z, [this.rows(this.T), D]);
    });
  }

  /** Broadcasts v to `dims` (one B dim, taken from dim 0 of `batchRef`). */
  private expandBatch(v: Value, batchRef: Value, dims: Dim[]): Value {
    const g = this.g;
    const batch = g.slice(g.shapeOf(batchRef), 0, 0, 1); // [1] int64
    const rest = dims.slice(1) as number[];
    const shape = g.node('Concat', [batch, g.ints(rest)], { axis: 0 }, [{ dtype: 'int64', shape: [dims.length] }])[0];
    return g.node('Expand', [v, shape], {}, [{ dtype: v.dtype, shape: dims }])[0];
  }

  private dropPath(out: Value, row: number): Value {
    if (!this.dropKeep) return out;
    return this.g.mul(out, this.g.gather(this.dropKeep, row, 0)); // [B*T, D] * [B*T, 1]
  }

  /** Inference graphs: [B*T, n*H*hd] (e.g. q|k|v) -> n tensors [B, H, T, hd], heads batched. */
  private splitHeads(x: Value, n: number): Value[] {
    const g = this.g;
    const { num_heads: H, head_dim: hd } = this.cfg;
    const heads = g.transpose(g.reshape(x, [this.batch, this.T, n, H, hd]), [2, 0, 3, 1, 4]); // [n, B, H, T, hd]
    return g.split(heads, 0, new Array(n).fill(1)).map((t) => g.reshape(t, [this.batch, H, this.T, hd]));
  }

  /** Inference graphs: part j (0 q, 1 k, 2 v) of layer i's qkv for x [B*n, D], as [B, n, H*hd]. */
  private qkvPart(x: Value, i: number, j: number, n: number): Value {
    const { embed_dim: D, num_heads: H, head_dim: hd } = this.cfg;
    const HD = H * hd;
    return this.g.reshape(this.linear(x, `blocks.${i}.attn.qkv`, 3 * HD, D, [j * HD, (j + 1) * HD]), [this.batch, n, HD]);
  }

  /** com.microsoft MultiHeadAttention: q [B, Tq, H*hd], k, v [B, T, H*hd] -> [B, Tq, H*hd]. */
  private mha(q: Value, k: Value, v: Value): Value {
    if (!this.opts.scaleInQuery) throw new Error('fused attention expects the query scale folded into the weights');
    const { num_heads: H } = this.cfg;
    return this.g.node('MultiHeadAttention', [q, k, v], { num_heads: H, scale: { float: 1 } }, [{ dtype: q.dtype, shape: q.shape }], 'com.microsoft')[0];
  }

  /** A_i(z) = Proj(MHSA(LN1(z))), z [B*T, D] -> [B*T, D]. */
  attention(i: number, z: Value): Value {
    const g = this.g;
    const { embed_dim: D, num_heads: H, head_dim: hd, eps } = this.cfg;
    const T = this.T;
    const pre = `blocks.${i}.`;
    return g.scope(`blocks.${i}.attn`, () => {
      if (this.opts.fusedAttention && !g.training) {
        const h = g.layerNorm(z, this.p(pre + 'norm1.weight', [D]), this.p(pre + 'norm1.bias', [D]), eps).y; // [B*T, D]
        const [q, k, v] = [0, 1, 2].map((j) => this.qkvPart(h, i, j, T)); // [B, T, H*hd]
        return this.linear(g.reshape(this.mha(q, k, v), [this.rows(T), H * hd]), pre + 'attn.proj', D, H * hd);
      }
      const qkv = this.normLinear(z, pre + 'norm1', pre + 'attn.qkv', 3 * H * hd); // [B*T, 3*H*hd]
      // Training graphs: one Split gives every head's q, k, v as [B, T, hd]; per-head batched
      // MatMuls need no 5-D transposes (ORT: 2.6 ms vs 4.7 ms for this core at batch 64) and
      // the gradients are one Concat / Split. Inference graphs: heads batched as [B, H, T, hd]
      // (fewer nodes; the two layouts measured the same at batch 1).
      let merged: Value;
      if (g.training) {
        const parts = g.split(g.reshape(qkv, [this.batch, T, 3 * H * hd]), 2, new Array(3 * H).fill(hd)); // 3H x [B, T, hd]
        const outs: Value[] = [];
        for (let h = 0; h < H; h++) {
          const q = g.mul(parts[h], g.scalar(1 / Math.sqrt(hd)));
          const scores = g.matmul(q, g.transpose(parts[H + h], [0, 2, 1])); // [B, T, T]
          outs.push(g.matmul(g.softmax(scores, -1), parts[2 * H + h])); // [B, T, hd]
        }
        merged = g.reshape(H === 1 ? outs[0] : g.concat(outs, 2), [this.rows(T), H * hd]); // [B*T, H*hd]
      } else {
        const [q, k, v] = this.splitHeads(qkv, 3); // [B, H, T, hd]
        const qs = this.opts.scaleInQuery ? q : g.mul(q, g.scalar(1 / Math.sqrt(hd)));
        const scores = g.matmul(qs, g.transpose(k, [0, 1, 3, 2])); // [B, H, T, T]
        const out = g.matmul(g.softmax(scores, -1), v); // [B, H, T, hd]
        merged = g.reshape(g.transpose(out, [0, 2, 1, 3]), [this.rows(T), H * hd]); // [B*T, H*hd]
      }
      return this.dropPath(this.linear(merged, pre + 'attn.proj', D, H * hd), 2 * i);
    });
  }

  /**
   * Layer i for the class token only: z [B*T, D] -> the class token's output [B, D]. Keys and
   * values come from every token, the query from the class token.
   */
  lastLayerClsOnly(i: number, z: Value): Value {
    const g = this.g;
    const { embed_dim: D, num_heads: H, head_dim: hd, eps } = this.cfg;
    const T = this.T;
    const pre = `blocks.${i}.`;
    return g.scope(`blocks.${i}.cls_only`, () => {
      const h = g.layerNorm(z, this.p(pre + 'norm1.weight', [D]), this.p(pre + 'norm1.bias', [D]), eps).y; // [B*T, D]
      const HD = H * hd;
      const zCls = g.gather(g.reshape(z, [this.batch, T, D]), 0, 1); // [B, D]
      const hCls = g.gather(g.reshape(h, [this.batch, T, D]), 0, 1); // [B, D]
      let att: Value;
      if (this.opts.fusedAttention) {
        att = this.mha(this.qkvPart(hCls, i, 0, 1), this.qkvPart(h, i, 1, T), this.qkvPart(h, i, 2, T)); // [B, 1, H*hd]
      } else {
        const kv = this.linear(h, pre + 'attn.qkv', 3 * HD, D, [HD, 3 * HD]); // [B*T, 2*H*hd]
        const [k, v] = this.splitHeads(kv, 2); // [B, H, T, hd]
        let q = g.reshape(this.linear(hCls, pre + 'attn.qkv', 3 * HD, D, [0, HD]), [this.batch, H, 1, hd]); // [B, H, 1, hd]
        if (!this.opts.scaleInQuery) q = g.mul(q, g.scalar(1 / Math.sqrt(hd)));
        att = g.matmul(g.softmax(g.matmul(q, g.transpose(k, [0, 1, 3, 2])), -1), v); // [B, H, 1, hd]
      }
      let r = g.add(zCls, this.linear(g.reshape(att, [this.batch, H * hd]), pre + 'attn.proj', D, H * hd)); // [B, D]
      r = g.add(r, this.ffn(i, r));
      return r;
    });
  }

  /** F_i(z) = fc2(GELU(fc1(LN2(z)))), z [B*T, D] -> [B*T, D]. */
  ffn(i: number, z: Value): Value {
    const g = this.g;
    const { embed_dim: D, mlp_hidden: M } = this.cfg;
    const pre = `blocks.${i}.`;
    return g.scope(`blocks.${i}.mlp`, () => {
      let out: Value;
      if (g.training) {
        // GELU(x) = erfGate(x / sqrt 2) / sqrt 2, the two scales folded into fc1 and fc2's weights
        const a = g.erfGate(this.normLinear(z, pre + 'norm2', pre + 'mlp.fc1', M, Math.SQRT1_2)); // [B*T, M]
        const w2 = g.mul(this.p(pre + 'mlp.fc2.weight', [D, M]), g.scalar(Math.SQRT1_2)); // [D, M]
        out = g.linear(a, w2, this.p(pre + 'mlp.fc2.bias', [D]));
      } else {
        out = this.linear(g.gelu(this.normLinear(z, pre + 'norm2', pre + 'mlp.fc1', M)), pre + 'mlp.fc2', D, M);
      }
      return this.dropPath(out, 2 * i + 1);
    });
  }

  /** Class token -> final LayerNorm -> head: z [B*T, D] (or the class token [B, D]) -> logits [B, K]. */
  head(z: Value, clsOnly = false): Value {
    const g = this.g;
    const { embed_dim: D, num_classes: K, eps } = this.cfg;
    const cls = clsOnly ? z : g.gather(g.reshape(z, [this.batch, this.T, D]), 0, 1); // [B, D]
    if (g.training) return this.normLinear(cls, 'norm', 'head', K);
    return this.floatLinear(g.layerNorm(cls, this.p('norm.weight', [D]), this.p('norm.bias', [D]), eps).y, 'head', K, D);
  }

  /** One block of SPEC section 2 in the given phase; x [B*T, D] is the block input. */
  branchedBlock(b: number, k: number, phase: JoinPhase, x: Value, joinAttn: Value, joinFfn: Value): Value {
    const g = this.g;
    const layers = Array.from({ length: k }, (_, j) => b * k + j);
    if (phase === 'attn') {
      const a = g.gather(joinAttn, b, 0); // scalar
      let r = x;
      for (const i of layers) {
        r = g.add(r, this.attention(i, g.add(r, g.mul(a, g.sub(x, r))))); // A_j(a x + (1 - a) r)
        r = g.add(r, this.ffn(i, r));
      }
      return r;
    }
    const f = g.gather(joinFfn, b, 0);
    const attnOfX = layers.map((i) => this.attention(i, x)); // a = 1: every A_j reads x
    let y = x;
    for (const a of attnOfX) y = g.add(y, a); // y = x + sum_j A_j(x)
    let r = x;
    layers.forEach((i, j) => {
      r = g.add(r, attnOfX[j]);
      r = g.add(r, this.ffn(i, g.add(r, g.mul(f, g.sub(y, r))))); // F_j(f y + (1 - f) r)
    });
    return r;
  }
}

/** Builds the forward pass; returns logits [B, num_classes]. */
export function buildForward(g: Graph, cfg: ViTConfig, structure: GraphStructure, param: ParamBinding, inputs: ForwardInputs, opts: ForwardOptions = {}): Value {
  const vb = new VitBuilder(g, cfg, param, inputs.x.shape[0], inputs.dropKeep, opts);
  let z = vb.embed(inputs.x);
  if (structure.kind === 'plain') {
    const clsOnly = opts.clsOnlyLastLayer === true;
    if (clsOnly && g.training) throw new Error('the class-token-only last layer is for inference graphs');
    for (let i = 0; i < cfg.depth; i++) {
      if (clsOnly && i === cfg.depth - 1) return vb.head(vb.lastLayerClsOnly(i, z), true);
      z = g.add(z, vb.attention(i, z));
      z = g.add(z, vb.ffn(i, z));
    }
  } else {
    const { branches: k, phases } = structure;
    if (!inputs.joinAttn || !inputs.joinFfn) throw new Error('branched graphs need join_attn and join_ffn inputs');
    if (phases.length * k !== cfg.depth) throw new Error(`${phases.length} block phases for depth ${cfg.depth} / ${k}`);
    phases.forEach((phase, b) => {
      z = vb.branchedBlock(b, k, phase, z, inputs.joinAttn!, inputs.joinFfn!);
    });
  }
  return vb.head(z);
}

/** Mean cross-entropy against soft targets [B, K] (one-hot, label-smoothed or mixed). */
export function crossEntropy(g: Graph, logits: Value, targets: Value): Value {
  const perSample = g.reduceSum(g.mul(targets, g.logSoftmax(logits, -1)), [1], false); // [B]
  return g.neg(g.reduceMean(perSample, [0], false));
}
