// Batches of a dataset as the model sees them: normalized [B, C, S, S] floats, with the
// training-time crop and flip (rng given) or the evaluation view (rng null), plus the epoch
// order and dataset limits.

import type { Normalization } from '../core/preprocess.js';
import type { Rng } from '../core/rng.js';
import { cropResize } from './folder.js';
import type { ImageSet } from './idx.js';

/** What a batch needs to know: the model's input size, normalization and crop/flip settings. */
export interface BatchSpec {
  size: number;
  normalization: Normalization;
  /** Random crop from the image zero-padded by this many pixels (training only; 0: off). */
  cropPadding: number;
  hflip: boolean;
}

/**
 * Fills x [B, C, S, S] and labels with the images `idx` of `set`: a random crop with zero
 * padding and a random flip when `rng` is given (training), the plain image otherwise; image
 * folders (stored larger than S) get a random resized crop or the centre crop instead.
 */
export function fillBatch(set: ImageSet, idx: ArrayLike<number>, spec: BatchSpec, rng: Rng | null, x: Float32Array, labels: number[]): void {
  const S = spec.size;
  const C = set.channels;
  const { mean, std } = spec.normalization;
  if (set.size !== S) {
    // Image folders: stored larger than the model input; random resized crop or centre crop.
    const R = set.size;
    for (let b = 0; b < idx.length; b++) {
      labels[b] = set.labels[idx[b]];
      cropResize(set.images, idx[b] * C * R * R, C, R, S, mean, std, rng, spec.hflip, x, b * C * S * S);
    }
    return;
  }
  const pad = rng ? spec.cropPadding : 0;
  for (let b = 0; b < idx.length; b++) {
    const i = idx[b];
    labels[b] = set.labels[i];
    // Random crop from the zero-padded image = shift by (dy, dx) in [-pad, pad]; flip with p 0.5.
    const dy = pad ? rng!.int(2 * pad + 1) - pad : 0;
    const dx = pad ? rng!.int(2 * pad + 1) - pad : 0;
    const flip = rng !== null && spec.hflip && rng.uniform() < 0.5;
    for (let c = 0; c < C; c++) {
      const zero = (0 - mean[c]) / std[c];
      const src = (i * C + c) * S * S;
      const dst = (b * C + c) * S * S;
      for (let y = 0; y < S; y++) {
        const sy = y + dy;
        for (let xx = 0; xx < S; xx++) {
          const sx0 = xx + dx;
          const sx = flip ? S - 1 - sx0 : sx0;
          x[dst + y * S + xx] = sy < 0 || sy >= S || sx0 < 0 || sx0 >= S ? zero : (set.images[src + sy * S + sx] / 255 - mean[c]) / std[c];
        }
      }
    }
  }
}

/** A random permutation of 0..n-1 (Fisher-Yates). */
export function shuffled(n: number, rng: Rng): Uint32Array {
  const a = new Uint32Array(n);
  for (let i = 0; i < n; i++) a[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
  return a;
}

/** The first n images of a set (all when n is absent or larger). */
export function limit(set: ImageSet, n: number | undefined): ImageSet {
  if (!n || n >= set.count) return set;
  const per = set.channels * set.size * set.size;
  return { ...set, images: set.images.subarray(0, n * per), labels: set.labels.subarray(0, n), count: n };
}
