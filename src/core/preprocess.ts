// Image preprocessing settings (timm's eval transform): resize the shorter side to
// img_size / crop_pct (bicubic), center-crop img_size, scale to [0, 1], normalize per channel.
// Stored in a checkpoint's `__metadata__.normalization` so a file says how to feed it.

import type { ViTConfig } from './config.js';
import { ModelError } from './model.js';

/** How a model's input images are prepared: per-channel mean and std (of [0, 1] pixels) and the crop fraction. */
export interface Normalization {
  mean: number[];
  std: number[];
  /** Fraction of the resized image kept by the center crop (timm DeiT: 0.875). */
  crop_pct: number;
}

/** timm's ImageNet eval transform (DeiT): ImageNet mean and std, crop 0.875. */
export const IMAGENET_NORMALIZATION: Normalization = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], crop_pct: 0.875 };

/** timm's ImageNet defaults for RGB models; 0.5/0.5 and no crop margin for grey or small images. */
export function defaultNormalization(cfg: ViTConfig): Normalization {
  if (cfg.in_chans === 3 && cfg.img_size >= 160) return { ...IMAGENET_NORMALIZATION };
  const c = cfg.in_chans;
  return { mean: new Array(c).fill(0.5), std: new Array(c).fill(0.5), crop_pct: 1 };
}

/** A file's normalization metadata (JSON) checked against the config; null when absent. `where` names the file in errors. */
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

/**
 * The size an image of width x height is resized to before the center crop: the shorter side
 * becomes round(img_size / crop_pct), the aspect ratio is kept (libvips' "fit outside").
 */
export function resizedSize(width: number, height: number, cfg: ViTConfig, norm: Normalization): [number, number] {
  const R = Math.round(cfg.img_size / norm.crop_pct);
  return width <= height ? [R, Math.max(R, Math.round((height * R) / width))] : [Math.max(R, Math.round((width * R) / height)), R];
}

/**
 * Decoded pixels (bytes, `channels` per pixel, row-major, already at resizedSize) -> the model
 * input [C, S, S] in float64: center crop, scale to [0, 1], normalize per channel. The first C
 * channels are used (an alpha channel after them is ignored). `vitfold predict` and the browser
 * app both end here, so they agree on any image that reaches this point with the same pixels.
 */
export function normalizePixels(pixels: ArrayLike<number>, width: number, height: number, channels: number, cfg: ViTConfig, norm: Normalization): Float64Array {
  const S = cfg.img_size;
  const C = cfg.in_chans;
  if (channels < C || width < S || height < S || pixels.length < width * height * channels) {
    throw new ModelError(`normalizePixels: ${width}x${height}x${channels} pixels cannot feed a ${S}x${S}x${C} model`);
  }
  const top = Math.floor((height - S) / 2);
  const left = Math.floor((width - S) / 2);
  const out = new Float64Array(C * S * S); // [C, S, S]
  for (let c = 0; c < C; c++) {
    for (let y = 0; y < S; y++) {
      for (let x = 0; x < S; x++) {
        const v = pixels[((top + y) * width + (left + x)) * channels + c] / 255;
        out[c * S * S + y * S + x] = (v - norm.mean[c]) / norm.std[c];
      }
    }
  }
  return out;
}

/**
 * RGBA pixels (a canvas's getImageData, at resizedSize) -> the model input [C, S, S]: RGB for a
 * 3-channel model; for a 1-channel model the grey level libvips computes (luminance in linear
 * light; a pixel with R = G = B stays exactly that level), then normalizePixels.
 */
export function rgbaToInput(rgba: ArrayLike<number>, width: number, height: number, cfg: ViTConfig, norm: Normalization): Float64Array {
  if (cfg.in_chans === 3) return normalizePixels(rgba, width, height, 4, cfg, norm);
  if (cfg.in_chans !== 1) throw new ModelError(`rgbaToInput: image input needs a 1- or 3-channel model (this one has ${cfg.in_chans})`);
  const grey = new Uint8Array(width * height);
  const lin = (v: number) => ((v /= 255) <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
  for (let i = 0; i < grey.length; i++) {
    const [r, g, b] = [rgba[4 * i], rgba[4 * i + 1], rgba[4 * i + 2]];
    if (r === g && g === b) grey[i] = r;
    else {
      const y = 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
      grey[i] = Math.round(255 * (y <= 0.0031308 ? 12.92 * y : 1.055 * y ** (1 / 2.4) - 0.055));
    }
  }
  return normalizePixels(grey, width, height, 1, cfg, norm);
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
