// Image preprocessing: the pure-TS steps the browser app runs (resizedSize, rgbaToInput) against
// what `vitfold predict` computes with libvips (loadImage), on images written here.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import sharp from 'sharp';
import { validateConfig } from '../../src/core/config.js';
import { resizedSize, rgbaToInput, normalizePixels } from '../../src/core/preprocess.js';
import { loadImage } from '../../src/data/image.js';
import { Rng } from '../../src/core/rng.js';
import { tmpDir } from '../helpers.js';

const cfg = (in_chans: number, img_size: number) => validateConfig({ img_size, patch_size: 4, in_chans, num_classes: 3, embed_dim: 8, depth: 1, num_heads: 2, head_dim: 4, mlp_hidden: 8, eps: 1e-6 });

function randomRgb(w: number, h: number, seed: number, grey: boolean): Buffer {
  const rng = new Rng(seed);
  const px = Buffer.alloc(w * h * 3);
  for (let i = 0; i < w * h; i++) {
    const v = rng.int(256);
    for (let c = 0; c < 3; c++) px[3 * i + c] = grey ? v : rng.int(256);
  }
  return px;
}

test('resizedSize equals the size libvips resizes to before the center crop (shorter side img_size / crop_pct)', async () => {
  for (const [w, h, S, crop] of [[640, 480, 224, 0.875], [480, 640, 224, 0.875], [333, 500, 32, 0.9], [28, 28, 28, 1], [100, 37, 28, 1], [37, 100, 28, 0.5]] as const) {
    const c = cfg(3, S);
    const norm = { mean: [0, 0, 0], std: [1, 1, 1], crop_pct: crop };
    const R = Math.round(S / crop);
    const { info } = await sharp(randomRgb(w, h, 1, false), { raw: { width: w, height: h, channels: 3 } }).resize({ width: R, height: R, fit: 'outside', kernel: 'cubic' }).raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual(resizedSize(w, h, c, norm), [info.width, info.height], `${w}x${h} -> S ${S}, crop ${crop}`);
  }
});

test('rgbaToInput on an image at the model size equals loadImage (libvips) exactly for RGB and grey models, within one grey level for colour into grey', async () => {
  const dir = tmpDir();
  for (const [C, greyImage] of [[3, false], [1, true], [1, false]] as const) {
    const S = 16;
    const c = cfg(C, S);
    const norm = C === 3 ? { mean: [0.4, 0.5, 0.6], std: [0.2, 0.3, 0.25], crop_pct: 1 } : { mean: [0.3], std: [0.35], crop_pct: 1 };
    const rgb = randomRgb(S, S, 7 + C, greyImage);
    const file = join(dir, `img-${C}-${greyImage}.png`);
    await sharp(rgb, { raw: { width: S, height: S, channels: 3 } }).png().toFile(file);
    const rgba = new Uint8Array(S * S * 4);
    for (let i = 0; i < S * S; i++) rgba.set([rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2], 255], 4 * i);
    const page = rgbaToInput(rgba, S, S, c, norm);
    const vips = await loadImage(file, c, norm);
    const levels = Math.max(...Array.from(page, (v, i) => (Math.abs(v - vips[i]) * norm.std[0]) * 255));
    if (C === 3 || greyImage) assert.equal(levels, 0, `C ${C}, grey image ${greyImage}: identical`);
    else assert.ok(levels <= 1 + 1e-9, `colour into grey: ${levels} levels apart`);
  }
});

test('normalizePixels center-crops (top-left offset floor((H - S) / 2)) and refuses pixels smaller than the model', () => {
  const c = cfg(1, 4);
  const norm = { mean: [0], std: [1], crop_pct: 1 };
  const px = Uint8Array.from({ length: 7 * 6 }, (_, i) => i); // 7 wide, 6 high, 1 channel
  // offset: top floor((6 - 4) / 2) = 1, left floor((7 - 4) / 2) = 1
  assert.deepEqual(Array.from(normalizePixels(px, 7, 6, 1, c, norm), (v) => Math.round(v * 255)), [8, 9, 10, 11, 15, 16, 17, 18, 22, 23, 24, 25, 29, 30, 31, 32]);
  assert.throws(() => normalizePixels(px, 3, 14, 1, c, norm), /3x14x1 pixels cannot feed a 4x4x1 model/);
});
