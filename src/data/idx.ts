// IDX files (MNIST, Fashion-MNIST): magic 0x0000 0x08 (unsigned byte) ndim, big-endian u32
// dims, then the data. Gzip or not. Every malformed file is an error that names it.

import { VitfoldError } from '../core/errors.js';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';

export class DataError extends VitfoldError {
  override name = 'DataError';
}

export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

export function parseIdx(raw: Uint8Array, where: string): IdxArray {
  let buf = raw;
  if (buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) {
    try {
      buf = new Uint8Array(gunzipSync(buf));
    } catch (e) {
      throw new DataError(`${where}: corrupt gzip data: ${(e as Error).message}`);
    }
  }
  if (buf.length < 4) throw new DataError(`${where}: ${buf.length} bytes, too short for an IDX header`);
  if (buf[0] !== 0 || buf[1] !== 0) throw new DataError(`${where}: not an IDX file (magic bytes ${buf[0]}, ${buf[1]}, expected 0, 0)`);
  if (buf[2] !== 0x08) throw new DataError(`${where}: IDX element type 0x${buf[2].toString(16)} is not supported (expected 0x08, unsigned byte)`);
  const ndim = buf[3];
  if (ndim < 1 || ndim > 4) throw new DataError(`${where}: IDX rank ${ndim} is not supported`);
  if (buf.length < 4 + 4 * ndim) throw new DataError(`${where}: truncated IDX header`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const dims = Array.from({ length: ndim }, (_, i) => dv.getUint32(4 + 4 * i, false));
  const n = dims.reduce((a, b) => a * b, 1);
  const off = 4 + 4 * ndim;
  if (buf.length - off !== n) {
    throw new DataError(`${where}: dims ${JSON.stringify(dims)} need ${n} data bytes, file has ${buf.length - off} (truncated or corrupted)`);
  }
  return { dims, data: buf.subarray(off) };
}

export function readIdx(path: string): IdxArray {
  let raw: Buffer;
  try {
    raw = readFileSync(path);
  } catch (e) {
    throw new DataError(`${path}: cannot read: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  return parseIdx(new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength), path);
}

/** A labelled image set in memory: images [N, C, H, W] as bytes. */
export interface ImageSet {
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
  channels: number;
  size: number;
  classes: string[];
}

export const FASHION_MNIST_CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];
export const DEBIAN_FASHION_MNIST = '/usr/share/datasets/fashion-mnist';

function findFile(dir: string, base: string): string | null {
  for (const name of [base, `${base}.gz`]) if (existsSync(join(dir, name))) return join(dir, name);
  return null;
}

/** Fashion-MNIST (or MNIST) train/test split from a directory of IDX files (.gz or not). */
export function loadMnistLike(dir: string | undefined, split: 'train' | 't10k', classes = FASHION_MNIST_CLASSES): ImageSet {
  const root = dir ?? DEBIAN_FASHION_MNIST;
  const imgPath = findFile(root, `${split}-images-idx3-ubyte`);
  const lblPath = findFile(root, `${split}-labels-idx1-ubyte`);
  if (!imgPath || !lblPath) {
    throw new DataError(
      `Fashion-MNIST ${split} files not found in ${root} (need ${split}-images-idx3-ubyte[.gz] and ${split}-labels-idx1-ubyte[.gz]).\n` +
        (dir ? 'Point --data at the folder holding them, ' : '') +
        `Install Debian's copy with: apt-get install dataset-fashion-mnist (files go to ${DEBIAN_FASHION_MNIST})`,
    );
  }
  const img = readIdx(imgPath);
  const lbl = readIdx(lblPath);
  if (img.dims.length !== 3 || img.dims[1] !== img.dims[2]) throw new DataError(`${imgPath}: expected images [N, S, S], got ${JSON.stringify(img.dims)}`);
  if (lbl.dims.length !== 1) throw new DataError(`${lblPath}: expected labels [N], got ${JSON.stringify(lbl.dims)}`);
  if (lbl.dims[0] !== img.dims[0]) throw new DataError(`${lblPath}: ${lbl.dims[0]} labels for ${img.dims[0]} images in ${imgPath}`);
  const bad = lbl.data.findIndex((y) => y >= classes.length);
  if (bad >= 0) throw new DataError(`${lblPath}: label ${lbl.data[bad]} at index ${bad} is not one of ${classes.length} classes`);
  return { images: img.data, labels: lbl.data, count: img.dims[0], channels: 1, size: img.dims[1], classes };
}
