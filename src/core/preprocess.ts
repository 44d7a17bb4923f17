// Image preprocessing settings (timm's eval transform): resize the shorter side to
// img_size / crop_pct (bicubic), center-crop img_size, scale to [0, 1], normalize per channel.
// Stored in a checkpoint's `__metadata__.normalization` so a file says how to feed it.

import type { ViTConfig } from './config.js';
import { ModelError } from './model.js';

export interface Normalization {
  mean: number[];
  std: number[];
  /** Fraction of the resized image kept by the center crop (timm DeiT: 0.875). */
  crop_pct: number;
}

export const IMAGENET_NORMALIZATION: Normalization = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], crop_pct: 0.875 };

/** timm's ImageNet defaults for RGB models; 0.5/0.5 and no crop margin for grey or small images. */
export function defaultNormalization(cfg: ViTConfig): Normalization {
  if (cfg.in_chans === 3 && cfg.img_size >= 160) return { ...IMAGENET_NORMALIZATION };
  const c = cfg.in_chans;
  return { mean: new Array(c).fill(0.5), std: new Array(c).fill(0.5), crop_pct: 1 };
}

export function parseNormalization(text: string | undefined, cfg: ViTConfig, where: string): Normalization | null {
  if (text === undefined) return null;
  let o: Partial<Normalization>;
  try {
    o = JSON.parse(text);
  } catch (e) {
    throw new ModelError(`${where}: __metadata__.normalization is not valid JSON: ${(e as Error).message}`);
  }
  const ok = (a: unknown) => Array.isArray(a) && a.length === cfg.in_chans && a.every((v) => typeof v === 'number' && Number.isFinite(v));
  if (!ok(o.mean) || !ok(o.std) || o.std!.some((s) => s <= 0)) {
    throw new ModelError(`${where}: __metadata__.normalization needs mean and std with ${cfg.in_chans} numbers (std > 0), got ${text}`);
  }
  const crop = o.crop_pct ?? 1;
  // Below 0.5 the decoded image would be resized to more than twice the model's size per side.
  if (!(crop >= 0.5 && crop <= 1)) throw new ModelError(`${where}: __metadata__.normalization.crop_pct must be in [0.5, 1], got ${crop}`);
  return { mean: o.mean!, std: o.std!, crop_pct: crop };
}

/** Numerically stable softmax of one row. */
export function softmaxRow(row: ArrayLike<number>): number[] {
  let mx = -Infinity;
  for (let i = 0; i < row.length; i++) mx = Math.max(mx, row[i]);
  const e = Array.from(row, (v) => Math.exp(v - mx));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

/** The k largest entries of a row as [index, value], largest first. */
export function topK(row: ArrayLike<number>, k: number): [number, number][] {
  return Array.from(row, (v, i) => [i, v] as [number, number])
    .sort((a, b) => b[1] - a[1])
    .slice(0, k);
}
