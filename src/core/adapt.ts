// Adapting a pretrained plain checkpoint to a new task (timm semantics), as a pure function:
//   - a new head (timm init: truncated normal std 0.02, zero bias) when the class count differs;
//   - position embeddings resized bicubically when the image size differs (timm
//     resample_abs_pos_embed: torch.nn.functional.interpolate, mode='bicubic',
//     align_corners=False, cubic coefficient A = -0.75; the class token's entry is kept).
//     Identical to timm when enlarging; when shrinking, timm also antialiases, this does not;
//   - patch weights summed over RGB for grey input (timm adapt_input_conv), or repeated / 3.
// Width, depth, heads, MLP and patch size must match: those are the pretrained network itself.

import { numTokens, validateConfig, type ViTConfig } from './config.js';
import { ModelError, type Model } from './model.js';
import { cloneParams } from './params.js';
import { Rng } from './rng.js';

function cubicWeights(t: number): [number, number, number, number] {
  const A = -0.75;
  const w = (x: number) => {
    const ax = Math.abs(x);
    if (ax <= 1) return (A + 2) * ax ** 3 - (A + 3) * ax ** 2 + 1;
    if (ax < 2) return A * ax ** 3 - 5 * A * ax ** 2 + 8 * A * ax - 4 * A;
    return 0;
  };
  return [w(t + 1), w(t), w(1 - t), w(2 - t)];
}

/** 1-D bicubic resampling matrix [out, in] (PyTorch align_corners=False, clamped borders). */
function bicubicMatrix(inSize: number, outSize: number): Float64Array {
  const m = new Float64Array(outSize * inSize);
  const scale = inSize / outSize;
  for (let o = 0; o < outSize; o++) {
    const src = (o + 0.5) * scale - 0.5;
    const x0 = Math.floor(src);
    const ws = cubicWeights(src - x0);
    for (let k = 0; k < 4; k++) {
      const i = Math.min(inSize - 1, Math.max(0, x0 - 1 + k));
      m[o * inSize + i] += ws[k];
    }
  }
  return m;
}

/** Resizes a grid of vectors [G, G, D] to [H, H, D] bicubically (separable: rows, then columns). */
export function resizeGrid(grid: Float64Array, G: number, H: number, D: number): Float64Array {
  if (G === H) return Float64Array.from(grid);
  const R = bicubicMatrix(G, H);
  const tmp = new Float64Array(H * G * D); // resize along y
  for (let y = 0; y < H; y++)
    for (let i = 0; i < G; i++) {
      const w = R[y * G + i];
      if (w === 0) continue;
      for (let x = 0; x < G; x++) for (let d = 0; d < D; d++) tmp[(y * G + x) * D + d] += w * grid[(i * G + x) * D + d];
    }
  const out = new Float64Array(H * H * D); // then along x
  for (let y = 0; y < H; y++)
    for (let x = 0; x < H; x++)
      for (let j = 0; j < G; j++) {
        const w = R[x * G + j];
        if (w === 0) continue;
        for (let d = 0; d < D; d++) out[(y * H + x) * D + d] += w * tmp[(y * G + j) * D + d];
      }
  return out;
}

/** A copy of `model` whose config is `target`, adapting head, position embedding and input channels. */
export function adaptModel(model: Model, target: ViTConfig, seed: number, where = 'checkpoint'): Model {
  validateConfig(target, 'target config');
  const src = model.config;
  if (model.structure.kind !== 'plain') throw new ModelError(`${where}: --init needs a plain (deep) checkpoint, this one is ${model.structure.kind}`);
  const fixed: (keyof ViTConfig)[] = ['embed_dim', 'depth', 'num_heads', 'head_dim', 'mlp_hidden', 'patch_size'];
  const diff = fixed.filter((k) => src[k] !== target[k]);
  if (diff.length) {
    throw new ModelError(
      `${where}: cannot initialize from it: ${diff.map((k) => `${k} ${src[k]} vs ${target[k]}`).join(', ')} ` +
        `(only the class count, image size and input channels can be adapted)`,
    );
  }
  const params = cloneParams(model.params);
  const D = src.embed_dim;
  const rng = new Rng(seed);
  if (target.num_classes !== src.num_classes) {
    const K = target.num_classes;
    params.set('head.weight', { shape: [K, D], data: Float64Array.from({ length: K * D }, () => rng.truncNormal(0.02)) });
    params.set('head.bias', { shape: [K], data: new Float64Array(K) });
  }
  if (target.img_size !== src.img_size) {
    const G = src.img_size / src.patch_size;
    const H = target.img_size / target.patch_size;
    const pos = params.get('pos_embed')!.data; // [1, 1 + G*G, D]
    const out = new Float64Array(numTokens(target) * D);
    out.set(pos.subarray(0, D)); // class token entry unchanged
    out.set(resizeGrid(pos.subarray(D), G, H, D), D);
    params.set('pos_embed', { shape: [1, numTokens(target), D], data: out });
  }
  if (target.in_chans !== src.in_chans) {
    const P2 = src.patch_size ** 2;
    const w = params.get('patch_embed.proj.weight')!.data; // [D, Cin, P, P]
    const Cin = src.in_chans;
    const Cout = target.in_chans;
    const out = new Float64Array(D * Cout * P2);
    for (let d = 0; d < D; d++) {
      for (let q = 0; q < P2; q++) {
        let sum = 0;
        for (let c = 0; c < Cin; c++) sum += w[(d * Cin + c) * P2 + q];
        // grey from RGB: the sum (a grey pixel is R = G = B); RGB from grey: repeated / Cout.
        for (let c = 0; c < Cout; c++) out[(d * Cout + c) * P2 + q] = Cout === 1 ? sum : sum / Cout;
      }
    }
    params.set('patch_embed.proj.weight', { shape: [D, Cout, src.patch_size, src.patch_size], data: out });
  }
  return { ...model, config: { ...target }, params, extraMetadata: {} };
}
