// Image-folder datasets: ROOT/train/<class>/*.{jpg,jpeg,png,webp} and ROOT/val/<class>/...
// (class = sorted sub-folder names of train). Images are decoded once with sharp: the shorter
// side resized to img_size / crop_pct (bicubic) and the centre square kept, as bytes in memory.
// Training then takes a random resized crop of that square (scale 0.08-1, ratio 3/4-4/3,
// bilinear) and a random flip; evaluation its centre img_size crop (timm's eval transform).

import { existsSync, readdirSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import sharp from 'sharp';
import type { Rng } from '../core/rng.js';
import { DataError, type ImageSet } from './idx.js';

const IMAGE_EXT = new Set(['.jpg', '.jpeg', '.png', '.webp']);

function listClasses(dir: string): string[] {
  return readdirSync(dir)
    .filter((d) => statSync(join(dir, d)).isDirectory())
    .sort();
}

/** Decodes ROOT/<split>/<class>/* to squares of `stored` pixels with `channels` channels. */
export async function loadImageFolder(root: string, split: 'train' | 'val', stored: number, channels: number, classes?: string[]): Promise<ImageSet> {
  const dir = join(root, split);
  if (!existsSync(dir)) throw new DataError(`${root}: no '${split}' folder (expected ${root}/train/<class>/*.jpg and ${root}/val/<class>/*.jpg)`);
  const found = listClasses(dir);
  const names = classes ?? found;
  if (!names.length) throw new DataError(`${dir}: no class sub-folders`);
  const unknown = found.filter((c) => !names.includes(c));
  if (unknown.length) throw new DataError(`${dir}: classes ${unknown.join(', ')} are not in the training classes`);
  const files: { path: string; label: number }[] = [];
  names.forEach((c, label) => {
    if (!existsSync(join(dir, c))) return;
    for (const f of readdirSync(join(dir, c)).sort()) if (IMAGE_EXT.has(extname(f).toLowerCase())) files.push({ path: join(dir, c, f), label });
  });
  if (!files.length) throw new DataError(`${dir}: no images (.jpg, .jpeg, .png, .webp)`);
  if (split === 'train') {
    const empty = names.filter((_, label) => !files.some((f) => f.label === label));
    if (empty.length) throw new DataError(`${dir}: class folder${empty.length > 1 ? 's' : ''} ${empty.join(', ')} hold${empty.length > 1 ? '' : 's'} no images (.jpg, .jpeg, .png, .webp): remove ${empty.length > 1 ? 'them' : 'it'} or add images`);
  }
  const per = channels * stored * stored;
  const images = new Uint8Array(files.length * per);
  const labels = new Uint8Array(files.length);
  if (names.length > 256) throw new DataError(`${dir}: ${names.length} classes; at most 256 are supported`);
  // Decode a few at a time: sharp runs on libuv's thread pool.
  const parallel = 4;
  for (let i = 0; i < files.length; i += parallel) {
    await Promise.all(
      files.slice(i, i + parallel).map(async (f, k) => {
        let img = sharp(f.path, { failOn: 'error' }).removeAlpha();
        img = channels === 1 ? img.greyscale() : img.toColourspace('srgb');
        let raw: Buffer;
        try {
          raw = await img.resize({ width: stored, height: stored, fit: 'cover', position: 'centre', kernel: 'cubic' }).raw().toBuffer();
        } catch (e) {
          throw new DataError(`${f.path}: cannot decode image: ${(e as Error).message}`);
        }
        // HWC -> CHW
        const o = (i + k) * per;
        for (let p = 0; p < stored * stored; p++) for (let c = 0; c < channels; c++) images[o + c * stored * stored + p] = raw[p * channels + c];
        labels[i + k] = f.label;
      }),
    );
  }
  return { images, labels, count: files.length, channels, size: stored, classes: names };
}

/**
 * Fills out [C, S, S] (normalized) from a stored square image [C, R, R]: a random resized crop
 * + flip with `rng`, else the centre S x S crop.
 */
export function cropResize(
  img: Uint8Array,
  o: number,
  C: number,
  R: number,
  S: number,
  mean: number[],
  std: number[],
  rng: Rng | null,
  flipAllowed: boolean,
  out: Float32Array,
  oo: number,
): void {
  let x0 = (R - S) / 2;
  let y0 = (R - S) / 2;
  let w = S;
  let h = S;
  let flip = false;
  if (rng) {
    // torchvision RandomResizedCrop: area fraction in [0.08, 1], log-uniform aspect in [3/4, 4/3].
    w = R;
    h = R;
    x0 = 0;
    y0 = 0;
    for (let attempt = 0; attempt < 10; attempt++) {
      const area = R * R * (0.08 + 0.92 * rng.uniform());
      const ratio = Math.exp(Math.log(3 / 4) + rng.uniform() * (Math.log(4 / 3) - Math.log(3 / 4)));
      const cw = Math.round(Math.sqrt(area * ratio));
      const ch = Math.round(Math.sqrt(area / ratio));
      if (cw > 0 && ch > 0 && cw <= R && ch <= R) {
        w = cw;
        h = ch;
        x0 = rng.int(R - cw + 1);
        y0 = rng.int(R - ch + 1);
        break;
      }
    }
    flip = flipAllowed && rng.uniform() < 0.5;
  }
  // Bilinear sampling of the crop box onto S x S (pixel centres, align_corners=False).
  for (let c = 0; c < C; c++) {
    const base = o + c * R * R;
    for (let y = 0; y < S; y++) {
      const sy = Math.min(R - 1, Math.max(0, y0 + ((y + 0.5) * h) / S - 0.5));
      const iy = Math.floor(sy);
      const fy = sy - iy;
      const iy1 = Math.min(R - 1, iy + 1);
      for (let x = 0; x < S; x++) {
        const sx = Math.min(R - 1, Math.max(0, x0 + ((x + 0.5) * w) / S - 0.5));
        const ix = Math.floor(sx);
        const fx = sx - ix;
        const ix1 = Math.min(R - 1, ix + 1);
        const v =
          (1 - fy) * ((1 - fx) * img[base + iy * R + ix] + fx * img[base + iy * R + ix1]) + fy * ((1 - fx) * img[base + iy1 * R + ix] + fx * img[base + iy1 * R + ix1]);
        out[oo + c * S * S + y * S + (flip ? S - 1 - x : x)] = (v / 255 - mean[c]) / std[c];
      }
    }
  }
}
