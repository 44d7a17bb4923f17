// The CLI as users run it: the built binary (npm test builds first), exit codes, messages.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { toBranched } from '../../src/core/model.js';
import { loadModel, saveModel } from '../../src/io.js';
import { GOLDEN, randomModel, REPO, smallConfig, tmpDir } from '../helpers.js';

const BIN = join(REPO, 'dist', 'cli', 'main.js');
const DEEP = join(GOLDEN, 'deep.safetensors');

function vitfold(...args: string[]) {
  assert.ok(existsSync(BIN), `${BIN} missing: run 'npm run build' (npm test does)`);
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function relError(out: string, label: string): number {
  const m = new RegExp(`${label}.*max rel ([0-9.e+-]+)`).exec(out);
  assert.ok(m, `no '${label} ... max rel' in:\n${out}`);
  return Number(m[1]);
}

test('fold + verify a plain checkpoint regrouped with --branches --assume-joined', () => {
  const dir = tmpDir();
  const out = join(dir, 'folded.safetensors');
  const f = vitfold('fold', DEEP, '--branches', '4', '--assume-joined', '--out', out);
  assert.equal(f.code, 0, f.err);
  assert.match(f.out, /12 layers in 3 blocks x 4 branches -> 3 layers, 12 heads x 16, MLP 768/);
  const m = loadModel(out);
  assert.deepEqual(m.structure, { kind: 'folded', branches: 4, source_depth: 12 });
  assert.equal(m.dtype, 'F32');
  const v = vitfold('verify', DEEP, '--branches', '4', '--assume-joined', '--input', join(GOLDEN, 'input.safetensors'), '--folded', out);
  assert.equal(v.code, 0, v.out + v.err);
  assert.ok(relError(v.out, 'branched \\(float64\\) vs fold') < 1e-9);
  assert.ok(relError(v.out, 'branched vs') < 1e-5);
});

test('--branches without --assume-joined is refused with the reason', () => {
  const r = vitfold('fold', DEEP, '--branches', '3', '--out', join(tmpDir(), 'x.safetensors'));
  assert.equal(r.code, 2);
  assert.match(r.err, /^vitfold: error: --branches 3 regroups the plain model .* FULLY JOINED .* Pass --assume-joined/);
  const r2 = vitfold('verify', DEEP);
  assert.equal(r2.code, 2);
  assert.match(r2.err, /is a plain 12-layer ViT with no branch structure.*\n.*--branches k --assume-joined/);
});

test('fold refuses a partially joined checkpoint and names block and coefficient', () => {
  const dir = tmpDir();
  const path = join(dir, 'epoch3.safetensors');
  saveModel(path, toBranched(randomModel(smallConfig(), 1), 2, { attn: [1, 1, 0.75], ffn: [1, 0.5, 0] }));
  const r = vitfold('fold', path, '--out', join(dir, 'f.safetensors'));
  assert.equal(r.code, 2);
  assert.match(r.err, /epoch3.safetensors: is not fully joined/);
  assert.match(r.err, /block 1: ffn join coefficient f_1 = 0.5/);
  assert.match(r.err, /block 2: attn join coefficient a_2 = 0.75/);
  assert.ok(!existsSync(join(dir, 'f.safetensors')));
});

test('a branched checkpoint at 1 folds without flags; verify fails (exit 1) on a wrong folded file', () => {
  const dir = tmpDir();
  const joined = join(dir, 'joined.safetensors');
  saveModel(joined, toBranched(randomModel(smallConfig(), 2), 3, { attn: 1, ffn: 1 }), 'F64');
  const good = join(dir, 'good.safetensors');
  assert.equal(vitfold('fold', joined, '--out', good, '--verify').code, 0);
  assert.equal(loadModel(good).dtype, 'F64'); // the input's dtype is kept by default
  const v = vitfold('verify', joined, '--folded', good);
  assert.equal(v.code, 0, v.out);
  assert.ok(relError(v.out, 'branched vs') < 1e-9); // F64 file: exact
  // A fold of another model has the right shapes but the wrong function.
  const other = join(dir, 'other.safetensors');
  saveModel(other, toBranched(randomModel(smallConfig(), 3), 3, { attn: 1, ffn: 1 }));
  const wrong = join(dir, 'wrong.safetensors');
  assert.equal(vitfold('fold', other, '--out', wrong).code, 0);
  const bad = vitfold('verify', joined, '--folded', wrong);
  assert.equal(bad.code, 1);
  assert.match(bad.out, /FAILED/);
});

test('info, init and clear errors for bad files', () => {
  const info = vitfold('info', DEEP);
  assert.equal(info.code, 0);
  assert.match(info.out, /params {5}349,978/);
  assert.match(info.out, /width 48, depth 12, 3 heads x 16, MLP 192, 10 classes/);
  const dir = tmpDir();
  const path = join(dir, 'b.safetensors');
  const init = vitfold('init', '--preset', 'vit-28', '--branches', '4', '--out', path);
  assert.equal(init.code, 0, init.err);
  const i2 = vitfold('info', path, '--json');
  const j = JSON.parse(i2.out);
  assert.deepEqual(j.structure, { kind: 'branched', branches: 4, attn: [0, 0, 0], ffn: [0, 0, 0] });
  assert.equal(j.fold.depth, 3);
  const corrupt = join(dir, 'corrupt.safetensors');
  writeFileSync(corrupt, Buffer.from([1, 2, 3]));
  const bad = vitfold('info', corrupt);
  assert.equal(bad.code, 2);
  assert.equal(bad.err, `vitfold: error: ${corrupt}: not a safetensors file: 3 bytes, too short for the 8-byte header length\n`);
  const badArg = vitfold('fold', DEEP, '--branches', 'two', '--out', 'x');
  assert.notEqual(badArg.code, 0);
  assert.match(badArg.err, /--branches must be a positive integer \(got 'two'\)/);
  assert.match(vitfold('--help').out, /Examples:\n {2}\$ vitfold init/);
});

test('predict: logits file, join overrides, images with top-k, bad image', async () => {
  const { readFileSync } = await import('node:fs');
  const { readFloatTensor } = await import('../../src/io.js');
  const sharp = (await import('sharp')).default;
  const expected = JSON.parse(readFileSync(join(GOLDEN, 'expected.json'), 'utf8')).cases;
  const dir = tmpDir();
  const out = join(dir, 'logits.safetensors');
  const input = join(GOLDEN, 'input.safetensors');
  const maxRel = (want: number[][], got: Float64Array) => {
    const w = want.flat();
    const scale = Math.max(...w.map(Math.abs));
    return Math.max(...w.map((v, i) => Math.abs(v - got[i]))) / scale;
  };
  let r = vitfold('predict', DEEP, '--input', input, '--out', out);
  assert.equal(r.code, 0, r.err);
  const deep = expected.find((c: { model: string }) => c.model === 'deep');
  assert.ok(maxRel(deep.logits, readFloatTensor(out, 'logits', 2).data) < 1e-4);
  // --branches 4 --join-attn 1 --join-ffn 0,0.5,1 is one of the golden cases.
  r = vitfold('predict', DEEP, '--input', input, '--out', out, '--branches', '4', '--join-attn', '1', '--join-ffn', '0,0.5,1');
  assert.equal(r.code, 0, r.err);
  const c = expected.find((e: { k: number; lam_ffn?: number[] }) => e.k === 4 && JSON.stringify(e.lam_ffn) === '[0,0.5,1]');
  assert.ok(maxRel(c.logits, readFloatTensor(out, 'logits', 2).data) < 1e-4);
  r = vitfold('predict', DEEP, '--input', input, '--branches', '4', '--join-attn', '0.5', '--join-ffn', '0.5');
  assert.equal(r.code, 2);
  assert.match(r.err, /block 0: ffn coefficient f=0.5 > 0 requires the attention coefficient a=1/);
  r = vitfold('predict', DEEP, '--input', input, '--branches', '4', '--join-attn', '1,1');
  assert.match(r.err, /--join-attn 1,1: give one value or 3 \(one per block\), got 2/);
  // Images: any size, PNG and JPEG; top-3 printed per image.
  const png = join(dir, 'red.png');
  const jpg = join(dir, 'blue.jpg');
  await sharp({ create: { width: 60, height: 40, channels: 3, background: { r: 200, g: 30, b: 90 } } }).png().toFile(png);
  await sharp({ create: { width: 32, height: 32, channels: 3, background: { r: 0, g: 130, b: 255 } } }).jpeg().toFile(jpg);
  r = vitfold('predict', DEEP, '--input', png, jpg, '--top', '3');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, new RegExp(`^${png}: (\\d+ [\\d.]+%, ){2}\\d+ [\\d.]+%\\n${jpg}: `, 'm'));
  const bad = join(dir, 'bad.png');
  writeFileSync(bad, 'not an image');
  r = vitfold('predict', DEEP, '--input', bad);
  assert.equal(r.code, 2);
  assert.match(r.err, /bad.png: cannot decode image/);
});

test('image preprocessing: resize, center crop, normalize (exact on a solid image)', async () => {
  const sharp = (await import('sharp')).default;
  const { loadImage } = await import('../../src/data/image.js');
  const { preset } = await import('../../src/core/config.js');
  const path = join(tmpDir(), 'grey.png');
  await sharp({ create: { width: 50, height: 30, channels: 3, background: { r: 51, g: 51, b: 51 } } }).png().toFile(path);
  const cfg = preset('vit-28'); // 1 channel, 28 x 28
  const x = await loadImage(path, cfg, { mean: [0.5], std: [0.25], crop_pct: 1 });
  assert.equal(x.length, 28 * 28);
  for (const v of x) assert.ok(Math.abs(v - (51 / 255 - 0.5) / 0.25) < 1e-12, `${v}`);
});

test('export in each precision: writes the file, validates, reports; a bad opset is a usage error', () => {
  const dir = tmpDir();
  const model = join(GOLDEN, 'folded-k4.safetensors');
  for (const precision of ['fp32', 'fp16', 'int8']) {
    const out = join(dir, `m-${precision}.onnx`);
    const r = vitfold('export', model, '--precision', precision, '--out', out);
    assert.equal(r.code, 0, r.out + r.err);
    assert.ok(existsSync(out));
    const label = precision === 'int8' ? 'int8 \\(paired weights\\)' : precision;
    assert.match(r.out, new RegExp(`wrote .*m-${precision}.onnx .*${label}, opset 17, strided attention, batch symbolic\\): 3 layers, 12 heads x 16`));
    assert.match(r.out, new RegExp(`validate onnxruntime-node ${precision} vs float64 reference .* OK`));
  }
  const fused = vitfold('export', model, '--attention', 'fused', '--out', join(dir, 'fused.onnx'));
  assert.equal(fused.code, 0, fused.out + fused.err);
  assert.match(fused.out, /wrote .*fused.onnx .*fp32, opset 17, fused attention, batch symbolic\)/);
  assert.match(fused.out, /validate onnxruntime-node fp32 vs float64 reference .* OK/);
  assert.doesNotMatch(vitfold('export', model, '--precision', 'int8', '--out', join(dir, 'p.onnx')).out, /overflow/);
  // full-range int8 weights: written, with a note on the CPUs where they are wrong
  const full = vitfold('export', model, '--precision', 'int8', '--int8-weights', 'full', '--out', join(dir, 'full.onnx'));
  assert.equal(full.code, 0, full.out + full.err);
  assert.match(full.out, /int8 \(full weights\)/);
  assert.match(full.out, /note {5}\d+ int8 weight pairs can overflow int16 on x86 CPUs without VNNI/);
  // an impossible tolerance makes the validation fail with exit code 1, and nothing is written
  const strict = vitfold('export', model, '--precision', 'int8', '--tol', '1e-9', '--out', join(dir, 'strict.onnx'));
  assert.equal(strict.code, 1);
  assert.match(strict.out, /FAILED/);
  assert.match(strict.out, /not written: .*strict.onnx \(validation failed/);
  assert.ok(!existsSync(join(dir, 'strict.onnx')));
  const bad = vitfold('export', model, '--opset', '13', '--out', join(dir, 'x.onnx'));
  assert.equal(bad.code, 2);
  assert.match(bad.err, /option '--opset <n>' argument '13' is invalid. Allowed choices are 17, 18, 19, 20, 21/);
});
