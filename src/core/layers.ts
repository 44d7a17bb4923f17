// Layer dropping: the standard way to shorten a pretrained transformer (keep some of its
// layers, fine-tune). vitfold's comparison point for the fold.

import { ModelError, type Model } from './model.js';
import type { Params } from './params.js';

/** `keep` evenly spaced layers of `depth`, first and last included: round(i (depth - 1) / (keep - 1)). */
export function evenlySpacedLayers(depth: number, keep: number): number[] {
  if (!Number.isInteger(keep) || keep < 1 || keep > depth) throw new ModelError(`cannot keep ${keep} of ${depth} layers (expected an integer in [1, ${depth}])`);
  if (keep === 1) return [depth - 1];
  return Array.from({ length: keep }, (_, i) => Math.round((i * (depth - 1)) / (keep - 1)));
}

/**
 * For hidden-state matching in a shrink: the deep model's layer whose output corresponds to
 * each of the L - 1 boundaries between the shallow model's L blocks. Joined branches: the last
 * layer of each group of depth / L (where the two streams are equal at the start); kept
 * layers: each kept layer but the last.
 */
export function boundaryLayers(depth: number, blocks: number, kept?: number[]): number[] {
  if (kept) return kept.slice(0, -1);
  const k = depth / blocks;
  return Array.from({ length: blocks - 1 }, (_, b) => (b + 1) * k - 1);
}

/**
 * A new plain model made of the given layers of a plain model, in order, renumbered 0..n-1;
 * patch embedding, tokens, final norm and head unchanged. The input is not modified.
 */
export function keepLayers(model: Model, layers: number[], where = 'model'): Model {
  if (model.structure.kind === 'branched') throw new ModelError(`${where}: is branched; keep layers of a plain or folded model`);
  const depth = model.config.depth;
  layers.forEach((l, i) => {
    if (!Number.isInteger(l) || l < 0 || l >= depth || (i > 0 && l <= layers[i - 1])) {
      throw new ModelError(`${where}: layers to keep must be increasing integers in [0, ${depth}), got [${layers.join(', ')}]`);
    }
  });
  const index = new Map(layers.map((l, i) => [l, i]));
  const params: Params = new Map();
  for (const [name, t] of model.params) {
    const m = /^blocks\.(\d+)\.(.*)$/.exec(name);
    const copy = { shape: [...t.shape], data: Float64Array.from(t.data) };
    if (!m) params.set(name, copy);
    else if (index.has(Number(m[1]))) params.set(`blocks.${index.get(Number(m[1]))}.${m[2]}`, copy);
  }
  return { ...model, config: { ...model.config, depth: layers.length }, structure: { kind: 'plain' }, params, extraMetadata: { ...model.extraMetadata } };
}
