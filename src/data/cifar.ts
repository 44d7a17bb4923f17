// CIFAR-10 binary format: records of 1 label byte + 3072 image bytes (R, G, B planes of 32x32),
// in data_batch_1.bin ... data_batch_5.bin (train) and test_batch.bin (test).

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DataError, type ImageSet } from './idx.js';

export const CIFAR10_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];
const RECORD = 1 + 3 * 32 * 32;

export function parseCifarBatch(buf: Uint8Array, where: string, classes: number): { images: Uint8Array; labels: Uint8Array } {
  if (buf.length === 0 || buf.length % RECORD !== 0) {
    throw new DataError(`${where}: ${buf.length} bytes is not a whole number of ${RECORD}-byte CIFAR-10 records (truncated or not a CIFAR-10 binary batch)`);
  }
  const n = buf.length / RECORD;
  const images = new Uint8Array(n * (RECORD - 1));
  const labels = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const y = buf[i * RECORD];
    if (y >= classes) throw new DataError(`${where}: record ${i} has label ${y}, not one of ${classes} classes`);
    labels[i] = y;
    images.set(buf.subarray(i * RECORD + 1, (i + 1) * RECORD), i * (RECORD - 1));
  }
  return { images, labels };
}

/** CIFAR-10 train (data_batch_1..5.bin) or test (test_batch.bin) split from `dir`. */
export function loadCifar10(dir: string | undefined, split: 'train' | 'test'): ImageSet {
  if (!dir) throw new DataError('CIFAR-10 needs --data DIR (the folder holding data_batch_1.bin ... test_batch.bin)');
  const names = split === 'train' ? [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`) : ['test_batch.bin'];
  const missing = names.filter((f) => !existsSync(join(dir, f)));
  if (missing.length) throw new DataError(`${dir}: CIFAR-10 ${split} files missing: ${missing.join(', ')} (binary version, cifar-10-batches-bin)`);
  let classes = CIFAR10_CLASSES;
  const meta = join(dir, 'batches.meta.txt');
  if (existsSync(meta)) {
    const lines = readFileSync(meta, 'utf8').split('\n').map((l) => l.trim()).filter(Boolean);
    if (lines.length) classes = lines;
  }
  const parts = names.map((f) => parseCifarBatch(new Uint8Array(readFileSync(join(dir, f))), join(dir, f), classes.length));
  const count = parts.reduce((a, p) => a + p.labels.length, 0);
  const images = new Uint8Array(count * (RECORD - 1));
  const labels = new Uint8Array(count);
  let o = 0;
  for (const p of parts) {
    images.set(p.images, o * (RECORD - 1));
    labels.set(p.labels, o);
    o += p.labels.length;
  }
  return { images, labels, count, channels: 3, size: 32, classes };
}
