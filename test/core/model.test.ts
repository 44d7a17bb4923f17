// Loading model files: every expected tensor checked by name and shape, metadata parsed with
// clear errors, timm checkpoints without metadata accepted, nothing lost on rewrite.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { modelFromSafetensors, modelToSafetensors, toBranched } from '../../src/core/model.js';
import { paramSpecs } from '../../src/core/params.js';
import { referenceForward } from '../../src/core/reference.js';
import { encodeFloat, encodeInt64, parseSafetensors, serializeSafetensors, type SafetensorsFile } from '../../src/core/safetensors.js';
import { randomInput } from '../../src/core/verify.js';
import { GOLDEN, randomModel, smallConfig } from '../helpers.js';

const deepFile = () => parseSafetensors(new Uint8Array(readFileSync(join(GOLDEN, 'deep.safetensors'))), 'deep.safetensors');

function load(file: SafetensorsFile, opts = {}) {
  return modelFromSafetensors(file, 'm.safetensors', opts);
}

describe('loader errors name the file, the tensor and the expected shape', () => {
  test('missing tensor', () => {
    const f = deepFile();
    f.tensors.delete('blocks.11.mlp.fc2.bias');
    assert.throws(() => load(f), /^ModelError: m.safetensors: does not match a ViT with img 32\/8, 3 channels, width 48, depth 12, 3 heads x 16, MLP 192, 10 classes:\n {2}missing tensor 'blocks.11.mlp.fc2.bias' \[48\] \[embed_dim\]$/);
  });
  test('wrong shape', () => {
    const f = deepFile();
    f.tensors.set('blocks.3.attn.qkv.weight', encodeFloat(new Float64Array(144 * 40), [144, 40], 'F32'));
    assert.throws(() => load(f), /'blocks.3.attn.qkv.weight' has shape \[144,40\], expected \[144,48\] \[3\*num_heads\*head_dim, embed_dim\]/);
  });
  test('unexpected tensors, with a hint for distilled DeiT', () => {
    const f = deepFile();
    f.tensors.set('dist_token', encodeFloat(new Float64Array(48), [1, 1, 48], 'F32'));
    f.tensors.set('blocks.12.norm1.weight', encodeFloat(new Float64Array(48), [48], 'F32'));
    assert.throws(() => load(f), (e: Error) => /unexpected tensor 'dist_token' \[1,1,48\] \(distilled DeiT checkpoints are not supported/.test(e.message) && /unexpected tensor 'blocks.12.norm1.weight' \[48\] \(the config says depth 12\)/.test(e.message));
  });
  test('integer dtype for a weight', () => {
    const f = deepFile();
    f.tensors.set('head.bias', encodeInt64(new Array(10).fill(0), [10]));
    assert.throws(() => load(f), /'head.bias' has dtype I64, expected a float dtype/);
  });
  test('many problems are listed with a count', () => {
    const f = deepFile();
    for (const n of [...f.tensors.keys()].filter((k) => k.startsWith('blocks.'))) f.tensors.delete(n);
    assert.throws(() => load(f), /\.\.\. and 132 more$/);
  });
  test('non-finite values', () => {
    const f = deepFile();
    const t = new Float64Array(48);
    t[5] = NaN;
    f.tensors.set('norm.bias', encodeFloat(t, [48], 'F32'));
    assert.throws(() => load(f), /'norm.bias' holds a non-finite value \(NaN\) at flat index 5/);
  });
  test('bad config metadata', () => {
    const f = deepFile();
    f.metadata = { config: '{"img_size": 32,' };
    assert.throws(() => load(f), /m.safetensors: __metadata__.config is not valid JSON/);
    f.metadata = { config: '{"img_size": 30, "patch_size": 8, "in_chans": 3, "num_classes": 10, "embed_dim": 48, "depth": 12, "num_heads": 3, "mlp_hidden": 192}' };
    assert.throws(() => load(f), /img_size 30 is not divisible by patch_size 8/);
    f.metadata = { config: '{"img_size": 32}' };
    assert.throws(() => load(f), /__metadata__.config lacks patch_size, in_chans, num_classes, embed_dim, depth, num_heads, head_dim, mlp_hidden/);
    f.metadata = { config: JSON.stringify({ ...JSON.parse(deepFile().metadata!.config), depth: 2.5 }) };
    assert.throws(() => load(f), /depth must be a positive integer \(got 2.5\)/);
  });
  test('bad structure metadata', () => {
    const f = deepFile();
    f.metadata = { ...f.metadata, structure: '{"kind":"branched","branches":5,"attn":[],"ffn":[]}' };
    assert.throws(() => load(f), /depth 12 is not divisible by 5 branches/);
    f.metadata = { ...f.metadata, structure: '{"kind":"branched","branches":4,"attn":[1,1],"ffn":[0,0,0]}' };
    assert.throws(() => load(f), /structure.attn must list 3 join coefficients/);
    f.metadata = { ...f.metadata, structure: '{"kind":"stacked"}' };
    assert.throws(() => load(f), /structure.kind must be "plain", "branched" or "folded" \(got "stacked"\)/);
  });
});

describe('timm checkpoints without vitfold metadata', () => {
  const timmLike = (): SafetensorsFile => {
    const f = deepFile();
    return { tensors: f.tensors }; // no __metadata__ at all, like a timm export
  };
  test('head count from --num-heads; the rest from shapes', () => {
    const m = load(timmLike(), { numHeads: 3 });
    assert.deepEqual(m.config, JSON.parse(deepFile().metadata!.config));
    assert.deepEqual(m.structure, { kind: 'plain' });
  });
  test('without --num-heads a non-64 head width is an error that says what to pass', () => {
    assert.throws(() => load(timmLike()), /head count cannot be read from tensor shapes \(attention width 48\); pass it explicitly \(--num-heads\)/);
  });
  test('64-wide heads are assumed (timm DeiT convention) with a note', () => {
    const cfg = smallConfig({ embed_dim: 8, num_heads: 2, head_dim: 64, depth: 2 });
    const file = modelToSafetensors(randomModel(cfg, 1));
    delete file.metadata;
    const notes: string[] = [];
    const m = load(file, { notes });
    assert.equal(m.config.num_heads, 2);
    assert.equal(m.config.head_dim, 64);
    assert.match(notes[0], /assumed 2 heads of size 64/);
  });
  test('--num-heads contradicting the file config is an error', () => {
    assert.throws(() => load(deepFile(), { numHeads: 4 }), /--num-heads 4 contradicts the file's config \(num_heads 3\)/);
  });
});

test('save/load keeps config, structure, dtype and unknown metadata (nothing lost)', () => {
  const cfg = smallConfig();
  const m = toBranched(randomModel(cfg, 2), 3, { attn: [1, 0.25], ffn: [0.5, 0] });
  m.extraMetadata = { classes: '["a","b","c","d","e"]', normalization: '{"mean":[0.5],"std":[0.5]}' };
  const bytes = serializeSafetensors(modelToSafetensors(m, 'F64'));
  const back = modelFromSafetensors(parseSafetensors(bytes, 'x'), 'x');
  assert.deepEqual(back.structure, m.structure);
  assert.deepEqual(back.config, m.config);
  assert.deepEqual(back.extraMetadata, m.extraMetadata);
  assert.equal(back.dtype, 'F64');
  const x = randomInput(m, 1, 0);
  assert.deepEqual(referenceForward(back, x).data, referenceForward(m, x).data);
  // Names written are exactly the timm names.
  assert.deepEqual([...back.params.keys()].sort(), paramSpecs(cfg).map((s) => s.name).sort());
});
