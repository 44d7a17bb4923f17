// Verification of a fold (docs/method.md section 3): the fully joined branched model and its fold must
// give the same logits. Both run in the float64 reference.

import type { Model } from './model.js';
import type { Tensor } from './params.js';
import { referenceForward } from './reference.js';
import { Rng } from './rng.js';

/** compareLogits: max absolute error and max error relative to the largest reference logit. */
export interface LogitError {
  /** max_i |a_i - b_i| */
  maxAbs: number;
  /** maxAbs / max_i |a_i|: the error relative to the logits' scale (robust to logits near 0). */
  maxRel: number;
}

/**
 * Max absolute and max relative (to the largest reference logit) difference of two logit arrays.
 */
export function compareLogits(reference: Float64Array, other: Float64Array): LogitError {
  if (reference.length !== other.length) throw new Error(`logit counts differ: ${reference.length} vs ${other.length}`);
  let maxAbs = 0;
  let scale = 0;
  for (let i = 0; i < reference.length; i++) {
    const d = Math.abs(reference[i] - other[i]);
    if (!(d <= maxAbs)) maxAbs = d; // NaN propagates as NaN
    scale = Math.max(scale, Math.abs(reference[i]));
  }
  return { maxAbs, maxRel: scale > 0 ? maxAbs / scale : maxAbs };
}

/** Seeded standard-normal input [B, C, S, S] (what a normalized image batch looks like). */
export function randomInput(model: Model, batch: number, seed: number): Tensor {
  const { in_chans: C, img_size: S } = model.config;
  const rng = new Rng(seed);
  const data = new Float64Array(batch * C * S * S);
  for (let i = 0; i < data.length; i++) data[i] = rng.normal();
  return { shape: [batch, C, S, S], data };
}

/** checkFold's result: both logits and their error. */
export interface FoldCheck {
  branchedLogits: Tensor;
  foldedLogits: Tensor;
  error: LogitError;
}

/**
 * Runs a branched model and its fold in float64 on x and compares their logits (progress per
 * block).
 */
export function checkFold(branched: Model, folded: Model, x: Tensor, onProgress?: (what: string, done: number, total: number) => void): FoldCheck {
  // One scale for both passes: the branched model's blocks cost k folded layers' worth each.
  const branchedTotal = x.shape[0] * branched.config.depth;
  const total = branchedTotal + x.shape[0] * folded.config.depth;
  const k = branched.structure.kind === 'branched' ? branched.structure.branches : 1;
  const branchedLogits = referenceForward(branched, x, { onProgress: (d) => onProgress?.('branched', d * k, total) });
  const foldedLogits = referenceForward(folded, x, { onProgress: (d) => onProgress?.('folded', branchedTotal + d, total) });
  return { branchedLogits, foldedLogits, error: compareLogits(branchedLogits.data, foldedLogits.data) };
}
