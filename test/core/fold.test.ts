// Fold properties on random configs (docs/method.md section 3): exactness for several k, head_dim !=
// embed_dim / num_heads, random LayerNorm affine; purity; refusal of unjoined models.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { fold, foldAssumingJoined, foldedConfig } from '../../src/core/fold.js';
import { modelFromSafetensors, modelToSafetensors, ModelError, toBranched } from '../../src/core/model.js';
import { paramCount } from '../../src/core/params.js';
import { referenceForward } from '../../src/core/reference.js';
import { parseSafetensors, serializeSafetensors } from '../../src/core/safetensors.js';
import { compareLogits, randomInput } from '../../src/core/verify.js';
import { randomModel, smallConfig } from '../helpers.js';

const configs = [
  { name: 'hd != D/H, depth 6', cfg: smallConfig(), ks: [1, 2, 3, 6] },
  { name: 'one head, wide head_dim', cfg: smallConfig({ num_heads: 1, head_dim: 16, depth: 4 }), ks: [2, 4] },
  { name: '3 channels, patch 2, depth 8', cfg: smallConfig({ in_chans: 3, patch_size: 2, depth: 8, num_heads: 3, head_dim: 4 }), ks: [2, 4, 8] },
  { name: 'narrow MLP, 12 layers', cfg: smallConfig({ mlp_hidden: 7, depth: 12, embed_dim: 9, num_heads: 3, head_dim: 3 }), ks: [3, 4, 12] },
];

describe('fold is exact on random models', () => {
  for (const { name, cfg, ks } of configs) {
    for (const k of ks) {
      for (const seed of [1, 2]) {
        test(`${name}, k=${k}, seed ${seed}`, () => {
          const joined = toBranched(randomModel(cfg, seed), k, { attn: 1, ffn: 1 });
          const folded = fold(joined);
          assert.deepEqual(folded.config, foldedConfig(cfg, k));
          assert.deepEqual(folded.structure, { kind: 'folded', branches: k, source_depth: cfg.depth });
          const x = randomInput(joined, 3, seed);
          const yb = referenceForward(joined, x).data;
          const err = compareLogits(yb, referenceForward(folded, x).data);
          assert.ok(err.maxRel < 1e-12, `max rel ${err.maxRel}`);
          // The test must be able to fail: the logits are not trivially small or equal.
          assert.ok(Math.max(...yb.map(Math.abs)) > 0.1);
          // The folded LayerNorms are identity affine.
          for (let b = 0; b < folded.config.depth; b++) {
            assert.ok(folded.params.get(`blocks.${b}.norm1.weight`)!.data.every((v) => v === 1));
            assert.ok(folded.params.get(`blocks.${b}.norm2.bias`)!.data.every((v) => v === 0));
          }
        });
      }
    }
  }
});

test('a partially joined model differs from the fold (the check can fail)', () => {
  const cfg = smallConfig();
  const m = randomModel(cfg, 3);
  const x = randomInput(m, 2, 3);
  const folded = fold(toBranched(m, 3, { attn: 1, ffn: 1 }));
  const partial = toBranched(m, 3, { attn: 1, ffn: [1, 0.9] });
  const err = compareLogits(referenceForward(partial, x).data, referenceForward(folded, x).data);
  assert.ok(err.maxRel > 1e-3, `expected a visible difference, got ${err.maxRel}`);
});

test('fold does not mutate its input', () => {
  const joined = toBranched(randomModel(smallConfig(), 4), 2, { attn: 1, ffn: 1 });
  const before = new Map([...joined.params].map(([k, t]) => [k, Float64Array.from(t.data)]));
  const structureBefore = structuredClone(joined.structure);
  const folded = fold(joined);
  assert.deepEqual(joined.structure, structureBefore);
  for (const [k, t] of joined.params) assert.deepEqual(t.data, before.get(k), k);
  // ...and shares no arrays with it.
  for (const [k, t] of folded.params) {
    const src = joined.params.get(k);
    if (src) assert.notEqual(t.data, src.data, k);
  }
});

test('fold refuses a model that is not fully joined and names block and coefficient', () => {
  const m = toBranched(randomModel(smallConfig(), 5), 2, { attn: [1, 1, 0.5], ffn: [1, 0.25, 0] });
  assert.throws(
    () => fold(m, 'run/epoch3.safetensors'),
    (e: Error) =>
      e instanceof ModelError &&
      e.message.includes('run/epoch3.safetensors') &&
      e.message.includes('block 2: attn join coefficient a_2 = 0.5') &&
      e.message.includes('block 1: ffn join coefficient f_1 = 0.25') &&
      e.message.includes('block 2: ffn join coefficient f_2 = 0') &&
      !e.message.includes('block 0'),
  );
  assert.throws(() => fold(randomModel(smallConfig(), 5)), /is plain, not branched.*--assume-joined/s);
});

test('f > 0 before a = 1 is rejected (y would depend on itself)', () => {
  assert.throws(() => toBranched(randomModel(smallConfig(), 6), 2, { attn: [1, 0.5, 1], ffn: [0, 0.1, 0] }), /block 1: ffn coefficient f=0.1 > 0 requires the attention coefficient a=1 \(got a=0.5\)/);
  assert.throws(() => toBranched(randomModel(smallConfig(), 6), 4), /depth 6 is not divisible by 4 branches \(possible branch counts: 1, 2, 3, 6\)/);
  assert.throws(() => toBranched(randomModel(smallConfig(), 6), 2, { attn: [0, 1.5, 0] }), /block 1: attn join coefficient 1.5 is not in \[0, 1\]/);
});

test('the folded model is a plain ViT file: saves, loads with the same loader, same logits', () => {
  const cfg = smallConfig();
  const folded = foldAssumingJoined(randomModel(cfg, 7), 3);
  const bytes = serializeSafetensors(modelToSafetensors(folded, 'F64'));
  const back = modelFromSafetensors(parseSafetensors(bytes, 'folded.safetensors'), 'folded.safetensors');
  assert.deepEqual(back.config, folded.config);
  assert.deepEqual(back.structure, folded.structure);
  assert.equal(paramCount(back.config), [...back.params.values()].reduce((a, t) => a + t.data.length, 0));
  const x = randomInput(folded, 2, 7);
  assert.deepEqual(referenceForward(back, x).data, referenceForward(folded, x).data);
  // Written as F32 it stays within F32 rounding.
  const f32 = modelFromSafetensors(parseSafetensors(serializeSafetensors(modelToSafetensors(folded, 'F32')), 'f'), 'f');
  const err = compareLogits(referenceForward(folded, x).data, referenceForward(f32, x).data);
  assert.ok(err.maxRel < 1e-5 && err.maxRel > 0, `F32 rounding error ${err.maxRel}`);
});
