// Decoding image files (PNG, JPEG, WebP, ...) into normalized model input with sharp.

import { VitfoldError } from '../core/errors.js';
import sharp, { type OutputInfo } from 'sharp';
import type { ViTConfig } from '../core/config.js';
import { normalizePixels, type Normalization } from '../core/preprocess.js';

export class ImageError extends VitfoldError {
  override name = 'ImageError';
}

/** One image -> [C, S, S] float64, timm eval transform (see src/core/preprocess.ts). */
export async function loadImage(path: string, cfg: ViTConfig, norm: Normalization): Promise<Float64Array> {
  const C = cfg.in_chans;
  if (C !== 1 && C !== 3) throw new ImageError(`${path}: image input needs a 1- or 3-channel model (this one has ${C})`);
  const R = Math.round(cfg.img_size / norm.crop_pct);
  let img = sharp(path, { failOn: 'error' }).removeAlpha();
  img = C === 1 ? img.greyscale() : img.toColourspace('srgb');
  let raw: { data: Buffer; info: OutputInfo };
  try {
    raw = await img.resize({ width: R, height: R, fit: 'outside', kernel: 'cubic' }).raw().toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new ImageError(`${path}: cannot decode image: ${(e as Error).message}`);
  }
  return normalizePixels(raw.data, raw.info.width, raw.info.height, raw.info.channels, cfg, norm);
}
