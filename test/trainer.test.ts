// Trainer: schedules, IDX data, exact resume, atomic checkpoints, fold at the end, NaN stop.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { ViTConfig } from '../src/core/config.js';
import { initParams } from '../src/core/params.js';
import { DataError, loadMnistLike, parseIdx } from '../src/data/idx.js';
import { loadModel, saveModel } from '../src/io.js';
import { joinCoefficients, learningRate, validateJoinSchedule, type JoinSchedule } from '../src/train/schedule.js';
import { train, type TrainConfig } from '../src/train/trainer.js';
import { idx, REPO, tmpDir, writeDataset } from './helpers.js';

describe('join schedule', () => {
  const schedules: JoinSchedule[] = [
    { mode: 'together', shape: 'cosine', start: 0, end: 0.5 },
    { mode: 'together', shape: 'linear', start: 0.2, end: 0.9 },
    { mode: 'sequential', shape: 'linear', start: 0, end: 0.6 },
    { mode: 'sequential', shape: 'cosine', start: 0.1, end: 1 },
  ];
  for (const s of schedules) {
    test(`${s.mode} ${s.shape} [${s.start}, ${s.end}]: monotone, attention before FFN, ends at exactly 1`, () => {
      const L = 4;
      let prev = joinCoefficients(s, L, 0);
      assert.ok([...prev.attn, ...prev.ffn].every((c) => c === 0), 'starts as the deep model');
      for (let i = 1; i <= 1000; i++) {
        const p = i / 1000;
        const c = joinCoefficients(s, L, p);
        for (let b = 0; b < L; b++) {
          assert.ok(c.attn[b] >= prev.attn[b] && c.ffn[b] >= prev.ffn[b], `monotone at p=${p}`);
          assert.ok(c.attn[b] >= 0 && c.attn[b] <= 1 && c.ffn[b] >= 0 && c.ffn[b] <= 1);
          if (c.ffn[b] > 0) assert.equal(c.attn[b], 1, `block ${b}: ffn ${c.ffn[b]} before attn reached 1 (p=${p})`);
          if (p >= s.end) assert.ok(c.attn[b] === 1 && c.ffn[b] === 1, `not joined at p=${p}`);
        }
        prev = c;
      }
      if (s.mode === 'sequential') {
        const mid = joinCoefficients(s, L, s.start + (s.end - s.start) * 0.3); // inside block 1's slot
        assert.ok(mid.ffn[0] === 1 && mid.attn[2] === 0, 'block by block');
      }
    });
  }
  test('none keeps every coefficient 0; invalid windows are rejected', () => {
    const c = joinCoefficients({ mode: 'none', shape: 'linear', start: 0, end: 1 }, 3, 0.7);
    assert.deepEqual(c, { attn: [0, 0, 0], ffn: [0, 0, 0] });
    assert.throws(() => validateJoinSchedule({ mode: 'together', shape: 'linear', start: 0.6, end: 0.5 }), /0 <= start < end <= 1/);
  });
  test('learning rate: linear warm-up, cosine to the minimum', () => {
    const s = { peak: 1e-3, min: 1e-5, warmup: 10, total: 110 };
    assert.equal(learningRate(s, 0), 1e-4);
    assert.equal(learningRate(s, 9), 1e-3);
    assert.ok(Math.abs(learningRate(s, 60) - (1e-5 + 0.5 * (1e-3 - 1e-5))) < 1e-12);
    assert.ok(Math.abs(learningRate(s, 110) - 1e-5) < 1e-15);
    for (let i = 10; i < 110; i++) assert.ok(learningRate(s, i + 1) <= learningRate(s, i));
  });
});

describe('IDX data', () => {
  test('gzip and raw files load', () => {
    for (const gz of [true, false]) {
      const dir = tmpDir();
      writeDataset(dir, 20, 10, gz);
      const s = loadMnistLike(dir, 'train');
      assert.equal(s.count, 20);
      assert.equal(s.size, 28);
      assert.equal(s.images.length, 20 * 784);
    }
  });
  test('corrupted files give clear errors', () => {
    const good = idx([2, 2, 2], new Uint8Array(8));
    assert.throws(() => parseIdx(good.subarray(0, 10), 'a.idx'), /a.idx: truncated IDX header/);
    assert.throws(() => parseIdx(good.subarray(0, 18), 'a.idx'), /a.idx: dims \[2,2,2\] need 8 data bytes, file has 2 \(truncated or corrupted\)/);
    const badMagic = Uint8Array.from(good);
    badMagic[0] = 0x50;
    assert.throws(() => parseIdx(badMagic, 'b.idx'), /b.idx: not an IDX file \(magic bytes 80, 0/);
    const floats = Uint8Array.from(good);
    floats[2] = 0x0d;
    assert.throws(() => parseIdx(floats, 'c.idx'), /c.idx: IDX element type 0xd is not supported/);
    assert.throws(() => parseIdx(Uint8Array.from([0x1f, 0x8b, 1, 2, 3]), 'd.gz'), /d.gz: corrupt gzip data/);
  });
  test('mismatched or out-of-range labels, missing files', () => {
    const dir = tmpDir();
    writeDataset(dir, 4, 4, false);
    writeFileSync(join(dir, 'train-labels-idx1-ubyte'), idx([3], Uint8Array.from([1, 2, 3])));
    assert.throws(() => loadMnistLike(dir, 'train'), /3 labels for 4 images/);
    writeFileSync(join(dir, 'train-labels-idx1-ubyte'), idx([4], Uint8Array.from([1, 2, 12, 3])));
    assert.throws(() => loadMnistLike(dir, 'train'), /label 12 at index 2 is not one of 10 classes/);
    assert.throws(() => loadMnistLike(join(dir, 'nope'), 'train'), (e: Error) => e instanceof DataError && /not found in .*nope.*apt-get install dataset-fashion-mnist/s.test(e.message));
  });
});

const tiny: ViTConfig = { img_size: 28, patch_size: 7, in_chans: 1, num_classes: 10, embed_dim: 16, depth: 4, num_heads: 2, head_dim: 8, mlp_hidden: 32, eps: 1e-6 };

function tinyConfig(dataDir: string, over: Partial<TrainConfig> = {}): TrainConfig {
  return {
    model: tiny,
    branches: 2,
    join: { mode: 'together', shape: 'cosine', start: 0, end: 0.5 },
    epochs: 2,
    batch: 16,
    lr: 3e-3,
    minLr: 1e-5,
    warmupEpochs: 0.5,
    weightDecay: 0.05,
    clipNorm: 1,
    dropPath: 0.1,
    labelSmoothing: 0.1,
    augment: { cropPadding: 2, hflip: true },
    data: { kind: 'fashion-mnist', dir: dataDir },
    normalization: { mean: [0.286], std: [0.353], crop_pct: 1 },
    seed: 3,
    threads: 1,
    logEvery: 1,
    ...over,
  };
}

const stepLosses = (dir: string) =>
  readFileSync(join(dir, 'log.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
    .filter((r) => r.step !== undefined)
    .map((r) => [r.step, r.loss]);

test('an interrupted and resumed run gives the same losses as an uninterrupted one (1 thread)', async () => {
  const data = tmpDir();
  writeDataset(data, 160, 48, true);
  const cfg = tinyConfig(data, { emaDecay: 0.9 });
  const a = tmpDir();
  const full = await train(cfg, a);
  assert.equal(full.stopped, 'done');
  const b = tmpDir();
  const cut = await train(cfg, b, { events: { shouldStop: (step) => step === 16 } }); // mid epoch 2 (10 steps per epoch)
  assert.equal(cut.stopped, 'interrupted');
  const resumed = await train(cfg, b, { resume: true });
  assert.equal(resumed.stopped, 'done');
  // Resume cut the log back to the epoch-1 commit, so steps 11..16 are logged once, as in run a.
  assert.equal(stepLosses(a).length, 20);
  assert.deepEqual(stepLosses(b), stepLosses(a));
  // Same final weights, bit for bit.
  const wa = loadModel(join(a, 'last.safetensors'));
  const wb = loadModel(join(b, 'last.safetensors'));
  for (const [name, t] of wa.params) assert.deepEqual(wb.params.get(name)!.data, t.data, name);
  // ...and the same EMA weights, which were restored from state.safetensors.
  const ea = loadModel(join(a, 'ema.safetensors'));
  const eb = loadModel(join(b, 'ema.safetensors'));
  for (const [name, t] of ea.params) assert.deepEqual(eb.params.get(name)!.data, t.data, `ema ${name}`);
  assert.ok(full.epochs.every((e) => e.ema_top1 !== undefined));
  // Fold at the end: exact in float64, same predictions as the joined model.
  assert.ok(full.folded && full.folded.verifyMaxRel < 1e-12, `verify ${full.folded?.verifyMaxRel}`);
  assert.ok(full.folded.agreement > 0.99, `agreement ${full.folded.agreement}`);
  const joined = loadModel(join(a, 'last.safetensors'));
  assert.deepEqual(joined.structure, { kind: 'branched', branches: 2, attn: [1, 1], ffn: [1, 1] });
  assert.match(joined.extraMetadata.classes, /Ankle boot/);
  assert.equal(loadModel(full.folded.path).config.depth, 2);
});

test('training moves to the folded graph once joined; resume across the switch is exact', async () => {
  const data = tmpDir();
  writeDataset(data, 160, 48, false);
  const cfg = tinyConfig(data, { dropPath: 0, epochs: 3, emaDecay: 0.9 }); // joined by the end of epoch 1.5 -> switch at epoch 2
  const a = tmpDir();
  const full = await train(cfg, a);
  const log = readFileSync(join(a, 'log.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const sw = log.find((r) => r.event === 'switch');
  assert.ok(sw && sw.epoch === 2, `switch record ${JSON.stringify(sw)}`);
  assert.ok(sw.verifyMaxRel < 1e-12 && sw.agreement === 1);
  assert.equal(loadModel(join(a, 'last.safetensors')).structure.kind, 'folded');
  assert.deepEqual(loadModel(join(a, 'joined.safetensors')).structure, { kind: 'branched', branches: 2, attn: [1, 1], ffn: [1, 1] });
  assert.equal(full.folded!.verifyMaxRel, sw.verifyMaxRel);
  const b = tmpDir();
  await train(cfg, b, { events: { shouldStop: (step) => step === 25 } }); // in epoch 3, after the switch
  await train(cfg, b, { resume: true });
  const la = stepLosses(a);
  const lb = new Map(stepLosses(b).map(([s, l]) => [s, l])); // later entries (after resuming) win
  for (const [s, l] of la) assert.equal(lb.get(s), l, `step ${s}`);
  const wa = loadModel(join(a, 'folded.safetensors'));
  const wb = loadModel(join(b, 'folded.safetensors'));
  for (const [name, t] of wa.params) assert.deepEqual(wb.params.get(name)!.data, t.data, name);
});

test('the model learns while it is joined, and the fold keeps its accuracy', async () => {
  const data = tmpDir();
  writeDataset(data, 640, 160, false);
  const r = await train(tinyConfig(data, { epochs: 3, dropPath: 0, threads: 2 }), tmpDir());
  const [first, , last] = r.epochs;
  // Chance is 0.1; measured: 0.22 -> 0.53 over 3 epochs of 40 steps.
  assert.ok(last.top1 >= 0.45 && last.top1 >= first.top1 + 0.2, `top-1 ${first.top1} -> ${last.top1}`);
  assert.ok(last.train_loss < first.train_loss - 0.3, `loss ${first.train_loss} -> ${last.train_loss}`);
  assert.ok(Math.abs(r.folded!.top1 - last.top1) <= 1 / 160, `folded ${r.folded!.top1} vs joined ${last.top1}`);
});

test('NaN loss stops the run with a clear message and keeps the last good checkpoint', async () => {
  const data = tmpDir();
  writeDataset(data, 64, 16, false);
  const dir = tmpDir();
  await assert.rejects(train(tinyConfig(data, { lr: 1e30, warmupEpochs: 0, clipNorm: null, epochs: 3 }), dir), /loss is (NaN|Infinity|-Infinity) at epoch \d+, step \d+ .*training stopped/);
});

test('atomic checkpoints: a writer killed mid-write leaves the previous file loadable', async () => {
  const dir = tmpDir();
  const path = join(dir, 'ckpt.safetensors');
  const cfg = { ...tiny, embed_dim: 256, mlp_hidden: 1024, num_heads: 4, head_dim: 64, depth: 8 }; // ~6M params, ~25 MB
  saveModel(path, { config: cfg, structure: { kind: 'plain' }, params: initParams(cfg, 1), dtype: 'F32', extraMetadata: {} });
  const script = join(dir, 'writer.mts');
  writeFileSync(
    script,
    `import { saveModel } from '${join(REPO, 'src/io.ts')}';\nimport { initParams } from '${join(REPO, 'src/core/params.ts')}';\n` +
      `const cfg = ${JSON.stringify(cfg)};\nconst m = { config: cfg, structure: { kind: 'plain' }, params: initParams(cfg, 2), dtype: 'F32', extraMetadata: {} };\n` +
      `process.stdout.write('ready\\n');\nfor (;;) saveModel(${JSON.stringify(path)}, m);\n`,
  );
  for (const delay of [30, 120, 260]) {
    const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((res) => child.stdout!.once('data', () => res()));
    await new Promise((res) => setTimeout(res, delay));
    child.kill('SIGKILL');
    await new Promise((res) => child.once('exit', res));
    const m = loadModel(path); // never torn: the old or the new complete file
    assert.equal(m.config.depth, 8);
  }
});
