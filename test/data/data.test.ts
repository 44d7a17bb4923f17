// Datasets and augmentations: mixup, cutmix, random erasing, CIFAR-10 batches, image folders.

import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Rng } from '../../src/core/rng.js';
import { mixBatch, mixedTargets, randomErase, sampleBeta } from '../../src/data/augment.js';
import { loadCifar10, parseCifarBatch } from '../../src/data/cifar.js';
import { train } from '../../src/train/trainer.js';
import { tmpDir } from '../helpers.js';

const B = 4, C = 2, S = 8, per = C * S * S;
const batch = () => Float32Array.from({ length: B * per }, (_, i) => Math.floor(i / per) + (i % per) / 1000);

test('Beta sampler has the right mean and stays in (0, 1)', () => {
  const rng = new Rng(1);
  for (const [a, b] of [[0.8, 0.8], [1, 1], [2, 5]]) {
    let m = 0;
    for (let i = 0; i < 20000; i++) {
      const v = sampleBeta(rng, a, b);
      assert.ok(v > 0 && v < 1);
      m += v / 20000;
    }
    assert.ok(Math.abs(m - a / (a + b)) < 0.01, `Beta(${a}, ${b}) mean ${m}`);
  }
});

test('mixup: x = lam x + (1 - lam) x[B-1-b]; targets mix the two labels', () => {
  const x = batch();
  const orig = Float32Array.from(x);
  const lam = mixBatch(x, B, C, S, { mixup: 0.8, cutmix: 0, prob: 1 }, new Rng(2));
  assert.ok(lam > 0 && lam < 1);
  for (let b = 0; b < B; b++)
    for (let i = 0; i < per; i++) assert.ok(Math.abs(x[b * per + i] - (lam * orig[b * per + i] + (1 - lam) * orig[(B - 1 - b) * per + i])) < 1e-5);
  const t = mixedTargets([0, 1, 2, 3], 5, 0.1, lam);
  for (let b = 0; b < B; b++) {
    const row = t.subarray(b * 5, b * 5 + 5);
    assert.ok(Math.abs(row.reduce((a, v) => a + v, 0) - 1) < 1e-6);
    assert.ok(Math.abs(row[b] - (0.02 + lam * 0.9)) < 1e-6 && Math.abs(row[3 - b] - (0.02 + (1 - lam) * 0.9)) < 1e-6);
  }
});

test('cutmix: a box comes from the partner; lam is the kept area', () => {
  const x = batch();
  const orig = Float32Array.from(x);
  const lam = mixBatch(x, B, C, S, { mixup: 0, cutmix: 1, prob: 1 }, new Rng(3));
  let fromPartner = 0;
  for (let i = 0; i < per; i++) {
    if (x[i] === orig[i]) continue;
    assert.equal(x[i], orig[(B - 1) * per + i]);
    fromPartner++;
  }
  assert.equal(fromPartner / C, (1 - lam) * S * S);
  assert.equal(mixBatch(batch(), B, C, S, { mixup: 0, cutmix: 0, prob: 1 }, new Rng(3)), 1, 'off: untouched');
});

test('random erasing changes one box of one image only', () => {
  const x = batch();
  const orig = Float32Array.from(x);
  assert.ok(randomErase(x, per, C, S, 1, new Rng(4)));
  let changed = 0;
  for (let i = 0; i < x.length; i++) if (x[i] !== orig[i]) {
    assert.ok(i >= per && i < 2 * per, 'outside the erased image');
    changed++;
  }
  assert.ok(changed > 0 && changed <= (C * S * S) / 3 + C);
  assert.equal(randomErase(x, 0, C, S, 0, new Rng(4)), false);
});

function cifarDir(nTrain: number, nTest: number): string {
  const dir = tmpDir();
  const rng = new Rng(7);
  const batchBytes = (n: number) => {
    const buf = new Uint8Array(n * 3073);
    for (let i = 0; i < n; i++) {
      const y = rng.int(10);
      buf[i * 3073] = y;
      buf.fill(20 * y + rng.int(30), i * 3073 + 1, (i + 1) * 3073); // class = brightness
    }
    return buf;
  };
  for (let k = 1; k <= 5; k++) writeFileSync(join(dir, `data_batch_${k}.bin`), batchBytes(nTrain / 5));
  writeFileSync(join(dir, 'test_batch.bin'), batchBytes(nTest));
  return dir;
}

test('CIFAR-10 binary batches load; bad files give clear errors', () => {
  const dir = cifarDir(20, 8);
  const s = loadCifar10(dir, 'train');
  assert.equal(s.count, 20);
  assert.equal(s.channels, 3);
  assert.equal(s.images.length, 20 * 3072);
  assert.throws(() => parseCifarBatch(new Uint8Array(3072), 'x.bin', 10), /x.bin: 3072 bytes is not a whole number of 3073-byte CIFAR-10 records/);
  const bad = new Uint8Array(3073);
  bad[0] = 11;
  assert.throws(() => parseCifarBatch(bad, 'y.bin', 10), /y.bin: record 0 has label 11, not one of 10 classes/);
  const partial = tmpDir();
  mkdirSync(partial, { recursive: true });
  assert.throws(() => loadCifar10(partial, 'test'), /CIFAR-10 test files missing: test_batch.bin/);
});

test('training on CIFAR-10 with mixup, cutmix and random erasing runs end to end', async () => {
  const dir = cifarDir(80, 16);
  const model = { img_size: 32, patch_size: 8, in_chans: 3, num_classes: 10, embed_dim: 16, depth: 2, num_heads: 2, head_dim: 8, mlp_hidden: 32, eps: 1e-6 };
  const r = await train(
    {
      model, branches: 2, join: { mode: 'together', shape: 'linear', start: 0, end: 0.5 }, epochs: 2, batch: 8, lr: 1e-3, minLr: 1e-5, warmupEpochs: 0, weightDecay: 0.05,
      clipNorm: 1, dropPath: 0, labelSmoothing: 0.1, augment: { cropPadding: 4, hflip: true, mixup: 0.8, cutmix: 1, mixProb: 1, erase: 0.25 },
      data: { kind: 'cifar10', dir }, normalization: { mean: [0.49, 0.48, 0.45], std: [0.25, 0.24, 0.26], crop_pct: 1 }, seed: 1, threads: 1, logEvery: 1,
      trainFolded: false, // stay branched, to check the per-epoch evaluation of the fold
    },
    tmpDir(),
  );
  assert.equal(r.stopped, 'done');
  assert.ok(r.epochs.every((e) => Number.isFinite(e.train_loss)));
  const last = r.epochs[1];
  assert.ok(last.folded_top1 !== undefined && last.folded_agreement === 1, `folded eval once joined: ${JSON.stringify(last)}`);
  assert.ok(r.folded && r.folded.verifyMaxRel < 1e-12);
});

test('image folders: decoded with sharp, random resized crops for training, centre crops for eval', async () => {
  const sharp = (await import('sharp')).default;
  const { loadImageFolder, cropResize } = await import('../../src/data/folder.js');
  const root = tmpDir();
  const colours = { red: { r: 220, g: 20, b: 20 }, blue: { r: 20, g: 20, b: 220 } };
  for (const split of ['train', 'val']) {
    for (const [name, c] of Object.entries(colours)) {
      mkdirSync(join(root, split, name), { recursive: true });
      for (let i = 0; i < (split === 'train' ? 12 : 4); i++) {
        await sharp({ create: { width: 30 + i, height: 24, channels: 3, background: { r: c.r + i, g: c.g, b: c.b } } }).png().toFile(join(root, split, name, `${i}.png`));
      }
    }
  }
  const set = await loadImageFolder(root, 'train', 18, 3);
  assert.deepEqual(set.classes, ['blue', 'red']);
  assert.equal(set.count, 24);
  assert.equal(set.images[0 * 3 * 18 * 18], 20, 'blue image 0, R channel');
  // Centre crop of a constant image is that constant, normalized.
  const out = new Float32Array(3 * 16 * 16);
  cropResize(set.images, 0, 3, 18, 16, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5], null, false, out, 0);
  assert.ok(out.subarray(0, 256).every((v) => Math.abs(v - (20 / 255 - 0.5) / 0.5) < 1e-6));
  await assert.rejects(loadImageFolder(join(root, 'nope'), 'train', 18, 3), /no 'train' folder/);
  // A corrupted image names the file.
  const broken = tmpDir();
  mkdirSync(join(broken, 'train', 'a'), { recursive: true });
  writeFileSync(join(broken, 'train', 'a', 'x.png'), 'not a png');
  await assert.rejects(loadImageFolder(broken, 'train', 18, 3), /train\/a\/x.png: cannot decode image/);
  // A validation class unknown to training is an error.
  mkdirSync(join(root, 'val', 'green'), { recursive: true });
  await assert.rejects(loadImageFolder(root, 'val', 18, 3, ['blue', 'red']), /classes green are not in the training classes/);
  const { rmSync } = await import('node:fs');
  rmSync(join(root, 'val', 'green'), { recursive: true });
  // Train a tiny model on it end to end (2 classes, 16 x 16).
  const model = { img_size: 16, patch_size: 8, in_chans: 3, num_classes: 2, embed_dim: 16, depth: 2, num_heads: 2, head_dim: 8, mlp_hidden: 32, eps: 1e-6 };
  const r = await train(
    {
      model, branches: 2, join: { mode: 'together', shape: 'linear', start: 0, end: 0.5 }, epochs: 2, batch: 8, lr: 3e-3, minLr: 1e-5, warmupEpochs: 0, weightDecay: 0.05,
      clipNorm: 1, dropPath: 0, labelSmoothing: 0, augment: { cropPadding: 0, hflip: true },
      data: { kind: 'folder', dir: root }, normalization: { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], crop_pct: 0.875 }, seed: 1, threads: 1, logEvery: 1,
    },
    tmpDir(),
  );
  assert.equal(r.stopped, 'done');
  assert.ok(r.folded && r.folded.agreement === 1);
});
