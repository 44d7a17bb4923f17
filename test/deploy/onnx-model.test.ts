// Exported .onnx files describe themselves (metadata_props: config, origin, precision,
// normalization, classes, version), and info, predict and eval read them as they read
// .safetensors models.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import { toBranched } from '../../src/core/model.js';
import { fold } from '../../src/core/fold.js';
import { saveModel } from '../../src/io.js';
import { FASHION_MNIST_CLASSES } from '../../src/data/idx.js';
import { randomModel, REPO, smallConfig, tmpDir, writeDataset } from '../helpers.js';

const BIN = join(REPO, 'dist', 'cli', 'main.js');
const vitfold = (...args: string[]) => {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

test('exports carry their metadata; info, predict and eval take .onnx and agree with the .safetensors model', async () => {
  const dir = tmpDir();
  // A folded 28x28 grey model with Fashion-MNIST's normalization and class names.
  const cfg = smallConfig({ img_size: 28, patch_size: 7, in_chans: 1, num_classes: 10, depth: 6 });
  const folded = fold(toBranched(randomModel(cfg, 5), 3, { attn: 1, ffn: 1 }));
  const meta = { normalization: JSON.stringify({ mean: [0.286], std: [0.353], crop_pct: 1 }), classes: JSON.stringify(FASHION_MNIST_CLASSES) };
  const model = join(dir, 'm.safetensors');
  saveModel(model, { ...folded, extraMetadata: meta });
  for (const precision of ['fp32', 'int8']) assert.equal(vitfold('export', model, '--precision', precision, '--out', join(dir, `m-${precision}.onnx`)).code, 0);

  const info = JSON.parse(vitfold('info', join(dir, 'm-int8.onnx'), '--json').out);
  assert.deepEqual(info.config, folded.config); // depth 2, 3x the heads and MLP
  assert.equal(info.metadata.origin, 'folded from a 6-layer model, 3 branches per block');
  assert.equal(info.metadata.precision, 'int8 (paired weights)');
  assert.equal(info.metadata.normalization, meta.normalization);
  assert.deepEqual(JSON.parse(info.metadata.classes), FASHION_MNIST_CLASSES);
  assert.equal(info.metadata.vitfold_version, '0.1.0');

  // predict: the same image through the .safetensors model and its fp32 export.
  const img = join(dir, 'shoe.png');
  await sharp({ create: { width: 40, height: 30, channels: 3, background: '#c08040' } }).png().toFile(img);
  const probs = (out: string) => Object.fromEntries(out.trim().split(': ')[1].split(', ').map((s) => { const m = /^(.*) ([0-9.]+)%$/.exec(s)!; return [m[1], Number(m[2])]; }));
  const a = vitfold('predict', model, '--input', img, '--top', '10');
  const b = vitfold('predict', join(dir, 'm-fp32.onnx'), '--input', img, '--top', '10');
  assert.equal(a.code, 0, a.err);
  assert.equal(b.code, 0, b.err);
  const [pa, pb] = [probs(a.out), probs(b.out)];
  assert.deepEqual(Object.keys(pb).sort(), [...FASHION_MNIST_CLASSES].sort());
  for (const c of FASHION_MNIST_CLASSES) assert.ok(Math.abs(pa[c] - pb[c]) <= 0.1, `${c}: ${pa[c]}% vs ${pb[c]}% (printed to 0.1%)`);

  // eval: top-1 of the .safetensors model, its fp32 export and its int8 export on one test set.
  const data = join(dir, 'data');
  writeDataset(data, 16, 200, false);
  const top1 = (m: string) => {
    const r = vitfold('eval', m, '--data', data);
    assert.equal(r.code, 0, r.err);
    return Number(/top-1 ([0-9.]+)%/.exec(r.out)![1]);
  };
  const [t, t32, t8] = [top1(model), top1(join(dir, 'm-fp32.onnx')), top1(join(dir, 'm-int8.onnx'))];
  assert.ok(Math.abs(t - t32) <= 0.5, `fp32 export ${t32}% vs model ${t}% (200 images: 0.5% is one image)`);
  assert.ok(Math.abs(t - t8) <= 5, `int8 export ${t8}% vs model ${t}%`);

  // Options that make no sense for an export, files that are not vitfold exports.
  const bad = vitfold('predict', join(dir, 'm-fp32.onnx'), '--input', img, '--branches', '2');
  assert.equal(bad.code, 2);
  assert.match(bad.err, /--branches apply to .safetensors models/);
  writeFileSync(join(dir, 'junk.onnx'), 'not a model');
  const junk = vitfold('info', join(dir, 'junk.onnx'));
  assert.equal(junk.code, 2);
  assert.match(junk.err, /junk.onnx: not an ONNX model/);
});

test('vitfold/web reads an export\'s metadata without a protobuf library, as onnx-proto decodes it', async () => {
  const { exportModel } = await import('../../src/deploy/export.js');
  const { onnxModelInfo } = await import('../../src/graph/onnx.js');
  const { describeOnnxExport, readOnnxMetadata } = await import('vitfold/web');
  const cfg = smallConfig({ img_size: 28, patch_size: 7, in_chans: 1, num_classes: 10 });
  const m = { ...randomModel(cfg, 2), extraMetadata: { classes: JSON.stringify(FASHION_MNIST_CLASSES) } };
  for (const precision of ['fp32', 'int8'] as const) {
    const { bytes } = await exportModel(m, { precision });
    assert.deepEqual(readOnnxMetadata(bytes), onnxModelInfo(bytes).metadata);
    const d = describeOnnxExport(bytes);
    assert.deepEqual(d.config, cfg);
    assert.deepEqual(d.classes, FASHION_MNIST_CLASSES);
    assert.deepEqual(d.normalization, { mean: [0.5], std: [0.5], crop_pct: 1 }); // the default, written explicitly
    assert.throws(() => readOnnxMetadata(bytes.subarray(0, bytes.length - 3)), /truncated/);
  }
});
