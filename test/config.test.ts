import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, PRESETS, preset, validateBranches, validateConfig } from '../src/core/config.js';
import { erf, gelu } from '../src/core/erf.js';
import { flopsPerImage } from '../src/core/flops.js';
import { foldedConfig } from '../src/core/fold.js';
import { paramCount } from '../src/core/params.js';

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

test('erf matches libm (Python math.erf) to 2 ulp; GELU is exact-erf GELU', () => {
  const ref: [number, number][] = [
    [0, 0], [1e-20, 1.1283791670955125e-20], [1e-8, 1.1283791670955126e-8], [0.1, 0.1124629160182849],
    [0.3, 0.3286267594591274], [0.46875, 0.49261347321793797], [0.5, 0.5204998778130465], [0.7, 0.6778011938374184],
    [1, 0.8427007929497149], [1.5, 0.9661051464753108], [2, 0.9953222650189527], [2.5, 0.999593047982555],
    [3, 0.9999779095030014], [3.9, 0.9999999652077514], [4, 0.9999999845827421], [4.5, 0.9999999998033839],
    [5, 0.9999999999984626], [6, 1], [27, 1], [-0.2, -0.22270258921047847], [-1.3, -0.9340079449406524],
    [-3.7, -0.9999998328489421], [-6, -1],
  ];
  for (const [x, y] of ref) assert.ok(Math.abs(erf(x) - y) <= 2 * Number.EPSILON * Math.abs(y), `erf(${x}) = ${erf(x)}, expected ${y}`);
  assert.equal(gelu(0), 0);
  assert.ok(Math.abs(gelu(1) - 0.8413447460685429) < 1e-15);
  assert.ok(Math.abs(gelu(-3) - -0.00404969409489031) < 1e-17);
});
