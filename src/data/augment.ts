// Batch augmentations of the DeiT recipe (timm semantics), on normalized float batches:
//   mixup   x = lam x + (1 - lam) x[flip], lam ~ Beta(a, a)
//   cutmix  a box of area (1 - lam) pasted from x[flip]; lam recomputed from the clipped box
//   (one of the two per batch, chosen with probability 0.5 when both are on; "batch" mode:
//   sample b is mixed with sample B-1-b, as timm's Mixup(mode='batch'))
//   random erasing  per sample with probability p, a box (2%-33% of the area, aspect 0.3-3.3)
//   filled with standard-normal noise (timm RandomErasing mode='pixel').
// Targets become soft: lam * smooth(y) + (1 - lam) * smooth(y[flip]).

import type { Rng } from '../core/rng.js';

/** Gamma(shape, 1) by Marsaglia-Tsang (shape < 1 via the boost U^(1/shape)). */
export function sampleGamma(rng: Rng, shape: number): number {
  if (shape < 1) return sampleGamma(rng, shape + 1) * Math.pow(rng.uniform() || Number.MIN_VALUE, 1 / shape);
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = rng.normal();
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = rng.uniform();
    if (u < 1 - 0.0331 * x ** 4 || Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
  }
}

export function sampleBeta(rng: Rng, a: number, b: number): number {
  const x = sampleGamma(rng, a);
  const y = sampleGamma(rng, b);
  return x / (x + y);
}

export interface MixConfig {
  /** Beta alpha of mixup (0: off). */
  mixup: number;
  /** Beta alpha of cutmix (0: off). */
  cutmix: number;
  /** Probability that a batch is mixed at all. */
  prob: number;
}

/**
 * Mixes a batch x [B, C, S, S] in place; returns lam (1 when the batch was left alone). The
 * partner of sample b is sample B-1-b.
 */
export function mixBatch(x: Float32Array, batch: number, channels: number, size: number, cfg: MixConfig, rng: Rng): number {
  if ((cfg.mixup <= 0 && cfg.cutmix <= 0) || rng.uniform() >= cfg.prob) return 1;
  const useCutmix = cfg.cutmix > 0 && (cfg.mixup <= 0 || rng.uniform() < 0.5);
  const per = channels * size * size;
  const src = Float32Array.from(x); // partners read the unmixed images
  if (!useCutmix) {
    const lam = sampleBeta(rng, cfg.mixup, cfg.mixup);
    for (let b = 0; b < batch; b++) {
      const o = b * per;
      const p = (batch - 1 - b) * per;
      for (let i = 0; i < per; i++) x[o + i] = lam * src[o + i] + (1 - lam) * src[p + i];
    }
    return lam;
  }
  const lam0 = sampleBeta(rng, cfg.cutmix, cfg.cutmix);
  const cut = Math.sqrt(1 - lam0);
  const h = Math.round(size * cut);
  const w = Math.round(size * cut);
  const cy = rng.int(size);
  const cx = rng.int(size);
  const y0 = Math.max(0, cy - (h >> 1));
  const y1 = Math.min(size, cy + (h >> 1));
  const x0 = Math.max(0, cx - (w >> 1));
  const x1 = Math.min(size, cx + (w >> 1));
  for (let b = 0; b < batch; b++) {
    const pb = batch - 1 - b;
    for (let c = 0; c < channels; c++) {
      for (let yy = y0; yy < y1; yy++) {
        const row = c * size * size + yy * size;
        for (let xx = x0; xx < x1; xx++) x[b * per + row + xx] = src[pb * per + row + xx];
      }
    }
  }
  return 1 - ((y1 - y0) * (x1 - x0)) / (size * size);
}

/** Soft targets [B, K] for labels mixed with their partners (B-1-b) at weight lam. */
export function mixedTargets(labels: ArrayLike<number>, classes: number, smoothing: number, lam: number): Float32Array {
  const B = labels.length;
  const t = new Float32Array(B * classes).fill(smoothing / classes);
  for (let b = 0; b < B; b++) {
    t[b * classes + labels[b]] += lam * (1 - smoothing);
    t[b * classes + labels[B - 1 - b]] += (1 - lam) * (1 - smoothing);
  }
  return t;
}

/** timm RandomErasing(mode='pixel') on one normalized image [C, S, S] at offset `o`. */
export function randomErase(x: Float32Array, o: number, channels: number, size: number, prob: number, rng: Rng): boolean {
  if (prob <= 0 || rng.uniform() >= prob) return false;
  const area = size * size;
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * (0.02 + rng.uniform() * (1 / 3 - 0.02));
    const aspect = Math.exp(Math.log(0.3) + rng.uniform() * (Math.log(1 / 0.3) - Math.log(0.3)));
    const h = Math.round(Math.sqrt(target * aspect));
    const w = Math.round(Math.sqrt(target / aspect));
    if (h < size && w < size && h > 0 && w > 0) {
      const top = rng.int(size - h + 1);
      const left = rng.int(size - w + 1);
      for (let c = 0; c < channels; c++)
        for (let yy = top; yy < top + h; yy++)
          for (let xx = left; xx < left + w; xx++) x[o + c * area + yy * size + xx] = rng.normal();
      return true;
    }
  }
  return false;
}
