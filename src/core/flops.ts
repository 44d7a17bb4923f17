// FLOPs per image of the plain ViT forward (docs/method.md section 1), counting a multiply-add as 2 FLOPs
// and only the matrix products (element-wise work is a few percent and runtime dependent).
// A branched model performs the same products as its deep model at any join state, and its
// fold performs the same products again (k*H heads, k*M hidden): folding trades depth for
// width, not FLOPs.

import { numPatches, numTokens, type ViTConfig } from './config.js';

/** FLOPs per image by part: patch embedding, attention, MLP, head, total. */
export interface FlopsBreakdown {
  patchEmbed: number;
  attention: number; // qkv + scores + weighted sum + proj, all layers
  mlp: number; // fc1 + fc2, all layers
  head: number;
  total: number;
}

/** Matrix-product FLOPs per image (multiply-add = 2) of a config, by part. */
export function flopsPerImage(cfg: ViTConfig): FlopsBreakdown {
  const T = numTokens(cfg);
  const D = cfg.embed_dim;
  const HD = cfg.num_heads * cfg.head_dim;
  const patchEmbed = 2 * numPatches(cfg) * D * cfg.in_chans * cfg.patch_size ** 2;
  const perLayerAttn =
    2 * T * D * 3 * HD + // qkv
    2 * 2 * cfg.num_heads * T * T * cfg.head_dim + // q k^T and p v
    2 * T * HD * D; // proj
  const perLayerMlp = 2 * 2 * T * D * cfg.mlp_hidden;
  const head = 2 * D * cfg.num_classes;
  const attention = cfg.depth * perLayerAttn;
  const mlp = cfg.depth * perLayerMlp;
  return { patchEmbed, attention, mlp, head, total: patchEmbed + attention + mlp + head };
}

/** A count in k/M/G form (905.1 k). */
export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} k`;
  return `${n}`;
}

/**
 * FLOPs per image of an exported inference graph: with `clsOnlyLastLayer`, the last layer
 * computes the class token alone, its attention reassociated so no keys or values are projected
 * (scores (q Wk) X^T, output (p X) Wv^T: model/vit-graph.ts classQueryAttention).
 */
export function exportFlopsPerImage(cfg: ViTConfig, clsOnlyLastLayer = true): number {
  const full = flopsPerImage(cfg).total;
  if (!clsOnlyLastLayer) return full;
  const T = numTokens(cfg);
  const D = cfg.embed_dim;
  const HD = cfg.num_heads * cfg.head_dim;
  const lastFull = flopsPerImage({ ...cfg, depth: 1 });
  const lastClsOnly =
    2 * D * HD + // one query
    2 * 2 * HD * D + // q_h Wk_h and (p X) Wv_h^T, every head
    2 * 2 * cfg.num_heads * T * D + // its scores against, and weighted sum of, the normed tokens X
    2 * HD * D + // proj
    2 * 2 * D * cfg.mlp_hidden; // FFN
  return full - (lastFull.attention + lastFull.mlp) + lastClsOnly;
}
