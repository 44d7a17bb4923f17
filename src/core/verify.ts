// Verification of a fold (docs/method.md section 3): the fully joined branched model and its fold must
// give the same logits. Both run in the float64 reference.

import type { Model } from './model.js';
import type { Tensor } from './params.js';
import { referenceForward } from './reference.js';
import { Rng } from './rng.js';

export interface LogitError {
  /** max_i |a_i - b_i| */
  maxAbs: number;
  /** maxAbs / max_i |a_i|: the error relative to the logits' scale (robust to logits near 0). */
  maxRel: number;
}

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

export interface FoldCheck {
  branchedLogits: Tensor;
  foldedLogits: Tensor;
  error: LogitError;
}

export function checkFold(branched: Model, folded: Model, x: Tensor, onImage?: (what: string, done: number, total: number) => void): FoldCheck {
  const branchedLogits = referenceForward(branched, x, { onImage: (d, t) => onImage?.('branched', d, t) });
  const foldedLogits = referenceForward(folded, x, { onImage: (d, t) => onImage?.('folded', d, t) });
  return { branchedLogits, foldedLogits, error: compareLogits(branchedLogits.data, foldedLogits.data) };
}
