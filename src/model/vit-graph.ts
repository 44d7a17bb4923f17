// ViT forward graphs (docs/method.md sections 1-2) built with the Graph builder.
//
// The residual stream is kept 2-D, [B*T, D], so every linear layer is one Gemm reading timm's
// [out, in] weight with transB (no runtime transposes) and a fused bias. Attention reshapes to
// [B, H, T, hd] only around its two batched MatMuls; float32 inference graphs can instead keep
// the rows token-major, [T*B, D], and read the heads in place (ForwardOptions.stridedHeads).
// The patch embedding is a patchify (one Gather of P-float runs) followed by a Gemm, equal to
// timm's stride-P convolution.
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
// docs/method.md section 2 allows f_b > 0 only once a_b = 1, so every valid state has one graph; the
// split avoids computing attention twice. A schedule that moves a block from 'attn' to 'ffn'
// switches to the next graph.

import { numPatches, numTokens, type ViTConfig } from '../core/config.js';
import { validateJoin } from '../core/model.js';
import { Graph, type Dim, type Value } from '../graph/graph.js';
import { ATTENTION_FORMS, attentionForm, type AttentionContext } from './attention.js';

export type JoinPhase = 'attn' | 'ffn';

export type GraphStructure =
  | { kind: 'plain' } // plain and folded models
  | { kind: 'branched'; branches: number; phases: JoinPhase[] };

/**
 * Returns the graph value of a parameter (an initializer, or a slice of a flat input). With
 * `transposed`, a 2-D weight [out, in] is wanted as [in, out]: inference graphs bake weights
 * that way, because ONNX Runtime pre-packs a constant MatMul operand, which Gemm with transB
 * does not get (measured: docs/engine.md).
 */
export type ParamBinding = (name: string, shape: number[], transposed?: boolean) => Value;

export interface ForwardOptions {
  /**
   * A graph that will be differentiated (training steps, lossAndGradients): each LayerNorm's
   * affine is folded into the linear layer after it, GELU is computed as the erf gate, and
   * attention takes the per-head form whose gradients are simplest.
   */
  training?: boolean;
  /**
   * The head reads only the class token, so the last layer computes class-token rows alone:
   * its query, attention, projection and FFN. Training graphs project keys and values of every
   * token for that query; inference graphs reassociate the products so no key or value is
   * projected (classQueryAttention). Exact; inference: ~32% of a 3-layer DeiT-Tiny fold's
   * FLOPs, ~8% of a 12-layer model's. Default true; false computes every token (for tests).
   */
  clsOnlyLastLayer?: boolean;
  /** Queries arrive pre-scaled by 1/sqrt(hd) (folded into the q rows of qkv by the binding). */
  scaleInQuery?: boolean;
  /**
   * Emits the transformer's linear layers (qkv, proj, fc1, fc2) of inference graphs, e.g. as
   * int8 (deploy/export.ts). Patch embedding and head always use the float path.
   */
  linear?: LinearEmitter;
  /** Emits the per-head weight products of inference graphs (e.g. as int8); default float. */
  headProduct?: HeadProductEmitter;
  /**
   * Attention core as ONNX Runtime's fused com.microsoft MultiHeadAttention (q, k, v from
   * three linear layers, no head transposes) instead of MatMul/Softmax/MatMul. Inference
   * graphs; needs scaleInQuery.
   */
  fusedAttention?: boolean;
  /**
   * Inference graphs (float32): keep the residual stream token-major, [T*B, D] with rows
   * (token, image), so each head of q, k and v is a strided view [T, B*H, hd] that ONNX
   * Runtime's com.microsoft FusedMatMul reads in place (transBatchA/transBatchB): no head Split
   * or Transposes before the scores, one Transpose merging the heads. Same function; row order
   * only matters to the patch embedding, the class-token rows and attention.
   */
  stridedHeads?: boolean;
  /**
   * Called with the residual stream after every block but the last (a plain model: after
   * every layer but the last), as z [B*T, D] with rows (image, token) whatever the graph's
   * own row order: the hidden states that distillation can match (Distillation.hidden).
   */
  onBlockOutput?: (block: number, z: Value) => void;
}

/** A linear layer x [R, in] -> [R, rows[1] - rows[0]]: rows [r0, r1) of timm's weight [out, in]. */
export interface LinearSpec {
  prefix: string;
  out: number;
  inp: number;
  rows: [number, number];
}
export type LinearEmitter = (x: Value, spec: LinearSpec) => Value;

/**
 * A product with H per-head blocks of a linear layer's weight: rows [r0, r1) of timm's
 * [out, in], block h = W_h [hd, in]. to 'in': x [B, H, 1, hd] -> x W_h [B, H, 1, in];
 * to 'out': x [B, H, 1, in] -> x W_h^T [B, H, 1, hd]. (The class-query attention's q Wk_h and
 * (p X) Wv_h^T.)
 */
export interface HeadProductSpec extends LinearSpec {
  heads: number;
  to: 'in' | 'out';
}
export type HeadProductEmitter = (x: Value, spec: HeadProductSpec) => Value;

export interface ForwardInputs {
  x: Value; // [B, C, S, S]
  joinAttn?: Value; // [L]
  joinFfn?: Value; // [L]
  /** Drop-path keep factors [2*depth, B*T, 1]: row 2i scales layer i's attention, 2i+1 its FFN. */
  dropKeep?: Value;
}

/** The phase of each block for given coefficients; throws if a state is invalid. */
export function phasesFor(attn: number[], ffn: number[]): JoinPhase[] {
  validateJoin({ attn, ffn }, attn.length, 'join coefficients');
  return attn.map((a, b) => {
    return a === 1 && ffn[b] > 0 ? 'ffn' : 'attn';
  });
}

class VitBuilder implements AttentionContext {
  readonly T: number;
  private readonly training: boolean;

  constructor(
    readonly g: Graph,
    readonly cfg: ViTConfig,
    readonly param: ParamBinding,
    /** The batch dim: symbolic B (inference, export) or a number (training graphs). */
    readonly batch: Dim,
    private readonly dropKeep?: Value,
    readonly opts: ForwardOptions = {},
  ) {
    this.T = numTokens(cfg);
    this.training = opts.training ?? false;
  }

  /** A transformer linear layer (qkv, proj, fc1, fc2): the custom emitter's when one is given. */
  linear(x: Value, prefix: string, out: number, inp: number, rows: [number, number] = [0, out]): Value {
    if (this.opts.linear && !this.training) return this.opts.linear(x, { prefix, out, inp, rows });
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
    if (this.training) {
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
  normLinear(z: Value, norm: string, lin: string, out: number, scale = 1): Value {
    const g = this.g;
    if (!this.training) {
      if (scale !== 1) throw new Error('scaled normLinear is for training graphs');
      return this.linear(this.layerNorm(z, norm), lin, out, this.cfg.embed_dim);
    }
    const { xhat, w, b } = this.foldedNorm(z, norm, lin, out, scale);
    return g.linear(xhat, w, b);
  }

  /** Training graphs: normLinear's parts, xhat [R, D] and the folded weight [out, D] and bias [out]. */
  foldedNorm(z: Value, norm: string, lin: string, out: number, scale = 1): { xhat: Value; w: Value; b: Value } {
    const g = this.g;
    const { embed_dim: D, eps } = this.cfg;
    const gamma = this.p(norm + '.weight', [D]);
    const beta = this.p(norm + '.bias', [D]);
    const w = this.p(lin + '.weight', [out, D]);
    const wFolded = g.mul(w, scale === 1 ? gamma : g.mul(gamma, g.scalar(scale))); // [out, D]
    let bFolded = g.reshape(g.gemm(g.reshape(beta, [1, D]), w, this.p(lin + '.bias', [out]), { transB: true }), [out]); // [out]
    if (scale !== 1) bFolded = g.mul(bFolded, g.scalar(scale));
    return { xhat: g.normalize(z, eps).y, w: wFolded, b: bFolded };
  }

  /** timm's LayerNorm `norm` (one op): z [R, D] -> [R, D]. */
  layerNorm(z: Value, norm: string): Value {
    const D = this.cfg.embed_dim;
    return this.g.layerNorm(z, this.p(norm + '.weight', [D]), this.p(norm + '.bias', [D]), this.cfg.eps).y;
  }

  /** Whether this graph keeps the residual stream token-major (ForwardOptions.stridedHeads). */
  get tokenMajor(): boolean {
    return !!this.opts.stridedHeads && !this.training;
  }

  /** The class token's row of each image: z [B*T, C] -> [B, C] (token-major: the first B rows). */
  cls(z: Value): Value {
    const g = this.g;
    if (this.tokenMajor) return g.gather(g.reshape(z, [this.T, this.batch, z.shape[1]]), 0, 0);
    return g.gather(g.reshape(z, [this.batch, this.T, z.shape[1]]), 0, 1);
  }

  /** The residual stream z [B*T, D] with rows (image, token): token-major graphs transpose theirs. */
  imageMajor(z: Value): Value {
    if (!this.tokenMajor) return z;
    const g = this.g;
    const D = z.shape[1];
    return g.reshape(g.transpose(g.reshape(z, [this.T, this.batch, D]), [1, 0, 2]), [this.rows(this.T), D]); // [T, B, D] -> [B, T, D]
  }

  /** batch * n, e.g. the B*T rows of the residual stream. */
  rows(n: number): Dim {
    return typeof this.batch === 'number' ? this.batch * n : { b: this.batch.b * n };
  }

  p(name: string, shape: number[]): Value {
    return this.param(name, shape);
  }

  /** Patch embedding, class token, position embedding: x [B, C, S, S] -> z [B*T, D]. */
  embed(x: Value): Value {
    const g = this.g;
    const { in_chans: C, img_size: S, patch_size: P, embed_dim: D } = this.cfg;
    const G = S / P;
    const N = numPatches(this.cfg);
    return g.scope('patch_embed', () => {
      // Token-major graphs order the rows (patch, image) instead of (image, patch).
      const tm = this.tokenMajor;
      // Patchify: each image row is G runs of P pixels; one Gather picks the runs in patch order
      // (py, px, c, i), the same bits as the rank-6 Transpose it replaces but copied run by run,
      // which onnxruntime does faster (docs/engine.md).
      const runs: number[] = [];
      for (let py = 0; py < G; py++) for (let px = 0; px < G; px++) for (let c = 0; c < C; c++) for (let i = 0; i < P; i++) runs.push((c * S + py * P + i) * G + px);
      const gathered = g.reshape(g.gather(g.reshape(x, [this.batch, C * S * G, P]), runs, 1), [this.batch, N, C * P * P]); // [B, N, C*P*P]
      const patches = g.reshape(tm ? g.transpose(gathered, [1, 0, 2]) : gathered, [this.rows(N), C * P * P]); // [B*N, C*P*P] (token-major: [N*B, ...])
      const w = g.reshape(this.p('patch_embed.proj.weight', [D, C, P, P]), [D, C * P * P]);
      const tokens = g.reshape(g.linear(patches, w, this.p('patch_embed.proj.bias', [D])), tm ? [N, this.batch, D] : [this.batch, N, D]); // [B, N, D] or [N, B, D]
      const cls = this.expandBatch(this.p('cls_token', [1, 1, D]), x, tm ? [1, this.batch, D] : [this.batch, 1, D]); // [B, 1, D] or [1, B, D]
      const pos = this.p('pos_embed', [1, this.T, D]);
      const z = g.add(g.concat([cls, tokens], tm ? 0 : 1), tm ? g.reshape(pos, [this.T, 1, D]) : pos); // [B, T, D] or [T, B, D]
      return g.reshape(z, [this.rows(this.T), D]);
    });
  }

  /** Broadcasts v to `dims`: one B dim (at any position), taken from dim 0 of `batchRef`. */
  private expandBatch(v: Value, batchRef: Value, dims: Dim[]): Value {
    const g = this.g;
    let batch: Value | undefined; // [1] int64, made once where dims hold B
    const parts = dims.map((d) => (typeof d === 'number' ? g.ints([d]) : (batch ??= g.slice(g.shapeOf(batchRef), 0, 0, 1))));
    const shape = g.node('Concat', parts, { axis: 0 }, [{ dtype: 'int64', shape: [dims.length] }])[0];
    return g.node('Expand', [v, shape], {}, [{ dtype: v.dtype, shape: dims }])[0];
  }

  /** Scales layer output `row` of the drop-path keep factors: out [B*T, D], or [B, D] with clsOnly. */
  private dropPath(out: Value, row: number, clsOnly: boolean): Value {
    if (!this.dropKeep) return out;
    const g = this.g;
    const keep = g.gather(this.dropKeep, row, 0); // [B*T, 1]
    return g.mul(out, clsOnly ? this.cls(keep) : keep); // [B, 1] with clsOnly
  }

  /**
   * A_i(z) = Proj(MHSA(LN1(z))), z [B*T, D] -> [B*T, D]. With clsOnly, the class token's row
   * alone, [B, D]: the query from the class token against every token (exact where only class
   * tokens are read after this layer, e.g. the head after the last).
   */
  attention(i: number, z: Value, clsOnly = false): Value {
    const { embed_dim: D, num_heads: H, head_dim: hd } = this.cfg;
    const pre = `blocks.${i}.`;
    return this.g.scope(`blocks.${i}.${clsOnly ? 'cls_only' : 'attn'}`, () => {
      const form = attentionForm(this.training, this.tokenMajor, this.opts, clsOnly);
      const merged = ATTENTION_FORMS[form](this, i, z, clsOnly); // [B*n, H*hd], n = 1 with clsOnly, else T
      return this.dropPath(this.linear(merged, pre + 'attn.proj', D, H * hd), 2 * i, clsOnly);
    });
  }

  /** F_i(z) = fc2(GELU(fc1(LN2(z)))), z [R, D] -> [R, D]: R = B*T, or B with clsOnly (class tokens). */
  ffn(i: number, z: Value, clsOnly = false): Value {
    const g = this.g;
    const { embed_dim: D, mlp_hidden: M } = this.cfg;
    const pre = `blocks.${i}.`;
    return g.scope(`blocks.${i}.mlp`, () => {
      let out: Value;
      if (this.training) {
        // GELU(x) = erfGate(x / sqrt 2) / sqrt 2, the two scales folded into fc1 and fc2's weights
        const a = g.erfGate(this.normLinear(z, pre + 'norm2', pre + 'mlp.fc1', M, Math.SQRT1_2)); // [R, M]
        const w2 = g.mul(this.p(pre + 'mlp.fc2.weight', [D, M]), g.scalar(Math.SQRT1_2)); // [D, M]
        out = g.linear(a, w2, this.p(pre + 'mlp.fc2.bias', [D]));
      } else {
        out = this.linear(g.gelu(this.normLinear(z, pre + 'norm2', pre + 'mlp.fc1', M)), pre + 'mlp.fc2', D, M);
      }
      return this.dropPath(out, 2 * i + 1, clsOnly);
    });
  }

  /** Class token -> final LayerNorm -> head: z [B*T, D] (or the class tokens [B, D]) -> logits [B, K]. */
  head(z: Value, clsOnly = false): Value {
    const cls = clsOnly ? z : this.cls(z); // [B, D]
    if (this.training) return this.normLinear(cls, 'norm', 'head', this.cfg.num_classes);
    return this.floatLinear(this.layerNorm(cls, 'norm'), 'head', this.cfg.num_classes, this.cfg.embed_dim);
  }

  /**
   * Layer i of the plain model: z [B*T, D] -> [B*T, D]; with clsOnly, the class tokens' output
   * [B, D] (the query, projection and FFN of the class token alone).
   */
  plainLayer(i: number, z: Value, clsOnly: boolean): Value {
    const g = this.g;
    const r = g.add(clsOnly ? this.cls(z) : z, this.attention(i, z, clsOnly));
    return g.add(r, this.ffn(i, r, clsOnly));
  }

  /**
   * One block of docs/method.md section 2 in the given phase; x [B*T, D] is the block input. With clsOnly
   * it returns the class tokens' output [B, D], computing per-token work for them alone where
   * nothing else reads it: the last layer in phase 'attn'; every layer after the attentions
   * (which read only x) in phase 'ffn'.
   */
  branchedBlock(b: number, k: number, phase: JoinPhase, x: Value, joinAttn: Value, joinFfn: Value, clsOnly = false): Value {
    const g = this.g;
    const layers = Array.from({ length: k }, (_, j) => b * k + j);
    if (phase === 'attn') {
      const a = g.gather(joinAttn, b, 0); // scalar
      let r = x;
      layers.forEach((i, j) => {
        const last = clsOnly && j === k - 1;
        r = g.add(last ? this.cls(r) : r, this.attention(i, g.add(r, g.mul(a, g.sub(x, r))), last)); // A_j(a x + (1 - a) r)
        r = g.add(r, this.ffn(i, r, last));
      });
      return r;
    }
    const f = g.gather(joinFfn, b, 0);
    const attnOfX = layers.map((i) => this.attention(i, x, clsOnly)); // a = 1: every A_j reads x
    const x0 = clsOnly ? this.cls(x) : x;
    let y = x0;
    for (const a of attnOfX) y = g.add(y, a); // y = x + sum_j A_j(x)
    let r = x0;
    layers.forEach((i, j) => {
      r = g.add(r, attnOfX[j]);
      r = g.add(r, this.ffn(i, g.add(r, g.mul(f, g.sub(y, r))), clsOnly)); // F_j(f y + (1 - f) r)
    });
    return r;
  }
}

/** Builds the forward pass; returns logits [B, num_classes]. */
export function buildForward(g: Graph, cfg: ViTConfig, structure: GraphStructure, param: ParamBinding, inputs: ForwardInputs, opts: ForwardOptions = {}): Value {
  const vb = new VitBuilder(g, cfg, param, inputs.x.shape[0], inputs.dropKeep, opts);
  const clsOnly = opts.clsOnlyLastLayer ?? true;
  let z = vb.embed(inputs.x);
  const tap = (b: number, last: boolean) => {
    if (opts.onBlockOutput && !last) opts.onBlockOutput(b, vb.imageMajor(z));
  };
  if (structure.kind === 'plain') {
    for (let i = 0; i < cfg.depth; i++) {
      z = vb.plainLayer(i, z, clsOnly && i === cfg.depth - 1);
      tap(i, i === cfg.depth - 1);
    }
  } else {
    const { branches: k, phases } = structure;
    if (!inputs.joinAttn || !inputs.joinFfn) throw new Error('branched graphs need join_attn and join_ffn inputs');
    if (phases.length * k !== cfg.depth) throw new Error(`${phases.length} block phases for depth ${cfg.depth} / ${k}`);
    phases.forEach((phase, b) => {
      z = vb.branchedBlock(b, k, phase, z, inputs.joinAttn!, inputs.joinFfn!, clsOnly && b === phases.length - 1);
      tap(b, b === phases.length - 1);
    });
  }
  return vb.head(z, clsOnly);
}

/** Mean cross-entropy against soft targets [B, K] (one-hot, label-smoothed or mixed). */
export function crossEntropy(g: Graph, logits: Value, targets: Value): Value {
  const perSample = g.reduceSum(g.mul(targets, g.logSoftmax(logits, -1)), [1], false); // [B]
  return g.neg(g.reduceMean(perSample, [0], false));
}

/**
 * Knowledge distillation from a frozen teacher. Soft labels (Hinton et al.): the loss mixes the
 * label cross-entropy with the cross-entropy of the student's temperature-softened distribution
 * against the teacher's,
 *   (1 - alpha) CE(z, y) + alpha T^2 CE(z / T, softmax(z_teacher / T)).
 * T^2 keeps the soft term's gradient scale independent of T. CE against the teacher differs
 * from KL(teacher || student) by the teacher's entropy, a constant: same gradients.
 * With `hidden` = beta > 0, hidden-state matching adds
 *   beta / S * sum_s mean_i ||h_si - t_si||^2 / ||t_si||^2
 * over the S = L - 1 boundaries between the student's L blocks (ForwardOptions.onBlockOutput),
 * h_s and t_s [B*T, D] the student's and the teacher's residual streams there (the teacher's
 * after the layer that ends the same stretch of the network), i an image of the batch: a
 * relative squared error per image, so beta does not depend on the stream's scale.
 */
export interface Distillation {
  alpha: number;
  temperature: number;
  /** Weight beta of hidden-state matching (0 or absent: off). */
  hidden?: number;
}

/** The loss on the logits: cross-entropy against targets [B, K], plus distillation from teacherProbs [B, K]. */
export function trainingLoss(g: Graph, logits: Value, targets: Value, kd?: Distillation & { teacherProbs: Value }): Value {
  const ce = crossEntropy(g, logits, targets);
  if (!kd) return ce;
  const soft = crossEntropy(g, g.mul(logits, g.scalar(1 / kd.temperature)), kd.teacherProbs);
  return g.add(g.mul(ce, g.scalar(1 - kd.alpha)), g.mul(soft, g.scalar(kd.alpha * kd.temperature ** 2)));
}

/**
 * Hidden-state matching (Distillation.hidden): beta / S * sum_s mean_i ||h_si - t_si||^2 / ||t_si||^2
 * for the student's streams h_s [B*T, D] and the teacher's t [S, B*T, D], the norms over each
 * image i's T x D values. A per-image mean, so a batch split across processes averages to the
 * same loss.
 */
export function hiddenMatchingLoss(g: Graph, student: Value[], teacher: Value, beta: number, images: number): Value {
  const perImage = (v: Value) => g.reduceSum(g.reshape(g.mul(v, v), [images, -1]), [1], false); // [B]
  const rel = student.map((h, s) => {
    const t = g.gather(teacher, s, 0); // [B*T, D]
    return g.reduceMean(g.div(perImage(g.sub(h, t)), perImage(t)), [0], false); // scalar
  });
  return g.mul(rel.reduce((a, b) => g.add(a, b)), g.scalar(beta / student.length));
}

/**
 * The training loss of a batch (docs/training.md): the forward of a training graph, cross-entropy
 * against `targets` [B, K] and, with `distill`, the inputs teacher_probs [B, K] (the teacher's
 * softened probabilities) and, with distill.hidden, teacher_hidden [L - 1, B*T, D] (its
 * residual streams at the student's block boundaries).
 */
export function buildTrainingLoss(g: Graph, cfg: ViTConfig, structure: GraphStructure, param: ParamBinding, inputs: ForwardInputs, targets: Value, distill?: Distillation): Value {
  const batch = inputs.x.shape[0] as number;
  const studentHidden: Value[] = []; // [B*T, D] per boundary
  const matchHidden = !!distill?.hidden;
  const logits = buildForward(g, cfg, structure, param, inputs, { training: true, onBlockOutput: matchHidden ? (_, z) => studentHidden.push(z) : undefined });
  const teacherProbs = distill ? g.input('teacher_probs', g.dtype, [batch, cfg.num_classes]) : undefined;
  const loss = trainingLoss(g, logits, targets, distill && { ...distill, teacherProbs: teacherProbs! });
  if (!matchHidden) return loss;
  if (!studentHidden.length) throw new Error('hidden-state matching needs a student of at least 2 blocks');
  const teacherHidden = g.input('teacher_hidden', g.dtype, [studentHidden.length, batch * numTokens(cfg), cfg.embed_dim]);
  return g.add(loss, hiddenMatchingLoss(g, studentHidden, teacherHidden, distill!.hidden!, batch));
}
