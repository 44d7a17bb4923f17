// ViT configs: presets, validation naming the field, parameter and FLOP counts.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, PRESETS, preset, validateBranches, validateConfig } from '../../src/core/config.js';
import { flopsPerImage } from '../../src/core/flops.js';
import { foldedConfig } from '../../src/core/fold.js';
import { paramCount } from '../../src/core/params.js';

test('presets are valid and DeiT sizes match timm', () => {
  for (const [name, cfg] of Object.entries(PRESETS)) validateConfig(cfg, name);
  assert.equal(paramCount(preset('deit-tiny')), 5_717_416); // timm deit_tiny_patch16_224
  assert.equal(paramCount(preset('deit-small')), 22_050_664); // timm deit_small_patch16_224
  assert.equal(paramCount(preset('deit-base')), 86_567_656); // timm deit_base_patch16_224
  assert.throws(() => preset('deit-huge'), /unknown preset 'deit-huge'; available: deit-tiny, deit-small/);
});

test('FLOPs: DeiT-Tiny ~2.5 GFLOP per image, unchanged by folding', () => {
  const f = flopsPerImage(preset('deit-tiny')).total;
  assert.ok(f > 2.45e9 && f < 2.55e9, `${f}`);
  for (const k of [2, 3, 4, 6]) assert.equal(flopsPerImage(foldedConfig(preset('deit-tiny'), k)).total, f);
});

test('validation names the field', () => {
  assert.throws(() => validateConfig({ ...preset('vit-28'), img_size: 30 }, 'cfg.json'), /^ConfigError: cfg.json: invalid ViT config: img_size 30 is not divisible by patch_size 4$/);
  assert.throws(() => validateConfig({ ...preset('vit-28'), num_heads: 0, eps: -1 }, 'x'), /num_heads must be a positive integer \(got 0\); eps must be > 0 \(got -1\)/);
  assert.throws(() => validateBranches(preset('deit-tiny'), 5), (e: Error) => e instanceof ConfigError && /depth 12 is not divisible by 5 branches \(possible branch counts: 1, 2, 3, 4, 6, 12\)/.test(e.message));
});
