// Float64 reference forward of the plain ViT (docs/method.md section 1) and of the branched model with
// join coefficients (docs/method.md section 2). Simple over fast: it exists to verify folds and to test
// the ONNX engine against, so every step is written as docs/method.md states it, one image at a time.
//
// Bit-exactness that tests rely on: with a_b = f_b = 0 the branched block performs exactly the
// deep model's operations in the same order (the mixing step passes `r` through untouched), so
// its logits equal the deep model's bit for bit.

import { numPatches, numTokens, type ViTConfig } from './config.js';
import { gelu } from './erf.js';
import type { JoinCoefficients, Model } from './model.js';
import { ModelError, validateJoin } from './model.js';
import type { Params, Tensor } from './params.js';

/** Options of referenceForward: join coefficients that override the model's, and progress. */
export interface ForwardOptions {
  /** Overrides a branched model's join coefficients (one per block). */
  join?: JoinCoefficients;
  /**
   * Called after each block (a branched block, or one layer) of each image with (done, total)
   * in blocks, so that one large image shows progress too.
   */
  onProgress?: (done: number, total: number) => void;
}

interface LayerWeights {
  n1w: Float64Array;
  n1b: Float64Array;
  qkvW: Float64Array; // [3*H*hd, D]
  qkvB: Float64Array;
  projW: Float64Array; // [D, H*hd]
  projB: Float64Array;
  n2w: Float64Array;
  n2b: Float64Array;
  fc1W: Float64Array; // [M, D]
  fc1B: Float64Array;
  fc2W: Float64Array; // [D, M]
  fc2B: Float64Array;
}

function get(params: Params, name: string): Float64Array {
  const t = params.get(name);
  if (!t) throw new ModelError(`parameter '${name}' is missing`);
  return t.data;
}

function layerWeights(params: Params, i: number): LayerWeights {
  const p = `blocks.${i}.`;
  return {
    n1w: get(params, p + 'norm1.weight'),
    n1b: get(params, p + 'norm1.bias'),
    qkvW: get(params, p + 'attn.qkv.weight'),
    qkvB: get(params, p + 'attn.qkv.bias'),
    projW: get(params, p + 'attn.proj.weight'),
    projB: get(params, p + 'attn.proj.bias'),
    n2w: get(params, p + 'norm2.weight'),
    n2b: get(params, p + 'norm2.bias'),
    fc1W: get(params, p + 'mlp.fc1.weight'),
    fc1B: get(params, p + 'mlp.fc1.bias'),
    fc2W: get(params, p + 'mlp.fc2.weight'),
    fc2B: get(params, p + 'mlp.fc2.bias'),
  };
}

/** y[t, o] = b[o] + sum_i x[t, i] W[o, i]; x [T, I], W [O, I] -> y [T, O]. */
export function linear(x: Float64Array, T: number, I: number, W: Float64Array, b: Float64Array, O: number): Float64Array {
  const y = new Float64Array(T * O);
  for (let t = 0; t < T; t++) {
    const xo = t * I;
    for (let o = 0; o < O; o++) {
      const wo = o * I;
      let s = 0;
      for (let i = 0; i < I; i++) s += x[xo + i] * W[wo + i];
      y[t * O + o] = s + b[o];
    }
  }
  return y;
}

/** Row-wise LayerNorm of x [T, D] (biased variance, as torch.nn.LayerNorm). */
export function layerNorm(x: Float64Array, T: number, D: number, g: Float64Array, c: Float64Array, eps: number): Float64Array {
  const y = new Float64Array(T * D);
  for (let t = 0; t < T; t++) {
    const o = t * D;
    let mean = 0;
    for (let d = 0; d < D; d++) mean += x[o + d];
    mean /= D;
    let v = 0;
    for (let d = 0; d < D; d++) v += (x[o + d] - mean) ** 2;
    const inv = 1 / Math.sqrt(v / D + eps);
    for (let d = 0; d < D; d++) y[o + d] = (x[o + d] - mean) * inv * g[d] + c[d];
  }
  return y;
}

/** A_i(z) = Proj(MHSA(LN1(z))); z [T, D] -> [T, D]. */
function attention(cfg: ViTConfig, w: LayerWeights, z: Float64Array, T: number): Float64Array {
  const D = cfg.embed_dim;
  const H = cfg.num_heads;
  const hd = cfg.head_dim;
  const HD = H * hd;
  const h1 = layerNorm(z, T, D, w.n1w, w.n1b, cfg.eps);
  const qkv = linear(h1, T, D, w.qkvW, w.qkvB, 3 * HD); // [T, q | k | v], each [H, hd]
  const out = new Float64Array(T * HD); // heads concatenated
  const scale = 1 / Math.sqrt(hd);
  const p = new Float64Array(T);
  for (let h = 0; h < H; h++) {
    const qo = h * hd;
    const ko = HD + h * hd;
    const vo = 2 * HD + h * hd;
    for (let t = 0; t < T; t++) {
      let max = -Infinity;
      for (let s = 0; s < T; s++) {
        let dot = 0;
        for (let d = 0; d < hd; d++) dot += qkv[t * 3 * HD + qo + d] * qkv[s * 3 * HD + ko + d];
        p[s] = dot * scale;
        if (p[s] > max) max = p[s];
      }
      let sum = 0;
      for (let s = 0; s < T; s++) {
        p[s] = Math.exp(p[s] - max);
        sum += p[s];
      }
      for (let d = 0; d < hd; d++) {
        let acc = 0;
        for (let s = 0; s < T; s++) acc += p[s] * qkv[s * 3 * HD + vo + d];
        out[t * HD + qo + d] = acc / sum;
      }
    }
  }
  return linear(out, T, HD, w.projW, w.projB, D);
}

/** F_i(z) = fc2(GELU(fc1(LN2(z)))); z [T, D] -> [T, D]. */
function ffn(cfg: ViTConfig, w: LayerWeights, z: Float64Array, T: number): Float64Array {
  const D = cfg.embed_dim;
  const M = cfg.mlp_hidden;
  const h = linear(layerNorm(z, T, D, w.n2w, w.n2b, cfg.eps), T, D, w.fc1W, w.fc1B, M);
  for (let i = 0; i < h.length; i++) h[i] = gelu(h[i]);
  return linear(h, T, M, w.fc2W, w.fc2B, D);
}

function addInPlace(r: Float64Array, a: Float64Array): void {
  for (let i = 0; i < r.length; i++) r[i] += a[i];
}

/** c*x + (1-c)*r, passing an operand through untouched at c = 0 or 1 (exactness, speed). */
function mix(c: number, x: Float64Array, r: Float64Array): Float64Array {
  if (c === 0) return r;
  if (c === 1) return x;
  const out = new Float64Array(r.length);
  for (let i = 0; i < r.length; i++) out[i] = c * x[i] + (1 - c) * r[i];
  return out;
}

/** One branched block (docs/method.md section 2); x [T, D] is the block input. */
function branchedBlock(cfg: ViTConfig, ws: LayerWeights[], a: number, f: number, x: Float64Array, T: number): Float64Array {
  const k = ws.length;
  // With a = 1 each A_j reads x: compute once, use for y and for the stream.
  const attnOfX = a === 1 ? ws.map((w) => attention(cfg, w, x, T)) : null;
  let y: Float64Array | null = null;
  if (f > 0) {
    y = Float64Array.from(x);
    for (let j = 0; j < k; j++) addInPlace(y, attnOfX![j]); // f > 0 implies a = 1 (validated)
  }
  const r = Float64Array.from(x);
  for (let j = 0; j < k; j++) {
    addInPlace(r, attnOfX ? attnOfX[j] : attention(cfg, ws[j], mix(a, x, r), T));
    addInPlace(r, ffn(cfg, ws[j], y ? mix(f, y, r) : r, T));
  }
  return r;
}

/** Patch embedding + class token + position embedding for one image x [C, S, S] -> [T, D]. */
function embed(cfg: ViTConfig, params: Params, img: Float64Array, off: number): Float64Array {
  const { embed_dim: D, in_chans: C, img_size: S, patch_size: P } = cfg;
  const G = S / P;
  const T = numTokens(cfg);
  const W = get(params, 'patch_embed.proj.weight'); // [D, C, P, P]
  const b = get(params, 'patch_embed.proj.bias');
  const cls = get(params, 'cls_token');
  const pos = get(params, 'pos_embed');
  const z = new Float64Array(T * D);
  const patch = new Float64Array(C * P * P); // (c, i, j) order, as the conv weight
  for (let d = 0; d < D; d++) z[d] = cls[d] + pos[d];
  for (let gy = 0; gy < G; gy++) {
    for (let gx = 0; gx < G; gx++) {
      let q = 0;
      for (let c = 0; c < C; c++)
        for (let i = 0; i < P; i++)
          for (let j = 0; j < P; j++) patch[q++] = img[off + c * S * S + (gy * P + i) * S + gx * P + j];
      const t = 1 + gy * G + gx;
      for (let d = 0; d < D; d++) {
        let s = 0;
        const wo = d * C * P * P;
        for (let i = 0; i < q; i++) s += patch[i] * W[wo + i];
        z[t * D + d] = s + b[d] + pos[t * D + d];
      }
    }
  }
  return z;
}

/**
 * Logits [B, num_classes] for input x [B, C, S, S]. Plain and folded models run their layers in
 * sequence; branched models run docs/method.md section 2 with their join coefficients (or `opts.join`).
 */
export function referenceForward(model: Model, x: Tensor, opts: ForwardOptions = {}): Tensor {
  const cfg = model.config;
  const { embed_dim: D, in_chans: C, img_size: S, num_classes: K } = cfg;
  const expect = [x.shape[0], C, S, S];
  if (x.shape.length !== 4 || x.shape.some((d, i) => d !== expect[i])) {
    throw new ModelError(`input x has shape ${JSON.stringify(x.shape)}, expected [B, ${C}, ${S}, ${S}]`);
  }
  const B = x.shape[0];
  const T = numPatches(cfg) + 1;
  const layers = Array.from({ length: cfg.depth }, (_, i) => layerWeights(model.params, i));
  const s = model.structure;
  let join: JoinCoefficients | null = null;
  if (s.kind === 'branched') {
    join = validateJoin(opts.join ?? { attn: s.attn, ffn: s.ffn }, cfg.depth / s.branches, 'join coefficients');
  } else if (opts.join) {
    throw new ModelError(`join coefficients given, but the model is ${s.kind}, not branched`);
  }
  const headW = get(model.params, 'head.weight');
  const headB = get(model.params, 'head.bias');
  const normW = get(model.params, 'norm.weight');
  const normB = get(model.params, 'norm.bias');
  const logits = new Float64Array(B * K);
  const blocks = s.kind === 'branched' ? cfg.depth / s.branches : cfg.depth;
  const tick = (n: number, b: number) => opts.onProgress?.(n * blocks + b + 1, B * blocks);
  for (let n = 0; n < B; n++) {
    let z = embed(cfg, model.params, x.data, n * C * S * S); // [T, D]
    if (s.kind === 'branched') {
      const k = s.branches;
      for (let b = 0; b < cfg.depth / k; b++) {
        z = branchedBlock(cfg, layers.slice(b * k, (b + 1) * k), join!.attn[b], join!.ffn[b], z, T);
        tick(n, b);
      }
    } else {
      for (const [i, w] of layers.entries()) {
        addInPlace(z, attention(cfg, w, z, T));
        addInPlace(z, ffn(cfg, w, z, T));
        tick(n, i);
      }
    }
    const cls = layerNorm(z.subarray(0, D), 1, D, normW, normB, cfg.eps); // [1, D]: the head reads token 0
    logits.set(linear(cls, 1, D, headW, headB, K), n * K);
  }
  return { shape: [B, K], data: logits };
}
