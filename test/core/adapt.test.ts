// --init adaptation of a pretrained checkpoint to a new dataset: head, position embedding, channels.

import assert from 'node:assert/strict';
import { test } from 'node:test';

test('--init adaptation: new head, bicubic position embedding, grey patch weights; same shape is a copy', async () => {
  const { adaptModel, resizeGrid } = await import('../../src/core/adapt.js');
  const { initParams } = await import('../../src/core/params.js');
  const { referenceForward } = await import('../../src/core/reference.js');
  const { randomInput } = await import('../../src/core/verify.js');
  const src = { img_size: 32, patch_size: 8, in_chans: 3, num_classes: 1000, embed_dim: 16, depth: 2, num_heads: 2, head_dim: 8, mlp_hidden: 32, eps: 1e-6 };
  const model = { config: src, structure: { kind: 'plain' as const }, params: initParams(src, 1), dtype: 'F32' as const, extraMetadata: {} };
  // Same config: a copy with the same function.
  const same = adaptModel(model, src, 0);
  const x = randomInput(model, 1, 0);
  assert.deepEqual(referenceForward(same, x).data, referenceForward(model, x).data);
  const target = { ...src, img_size: 48, in_chans: 1, num_classes: 10 };
  const a = adaptModel(model, target, 0, 'deit.safetensors');
  assert.deepEqual(a.params.get('head.weight')!.shape, [10, 16]);
  assert.deepEqual(a.params.get('pos_embed')!.shape, [1, 37, 16]);
  assert.deepEqual(a.params.get('pos_embed')!.data.subarray(0, 16), model.params.get('pos_embed')!.data.subarray(0, 16), 'class token entry kept');
  // A grey image through the adapted patch weights equals the RGB image (R = G = B) through the original.
  const wSrc = model.params.get('patch_embed.proj.weight')!.data;
  const wNew = a.params.get('patch_embed.proj.weight')!.data;
  assert.ok(Math.abs(wNew[0] - (wSrc[0] + wSrc[64] + wSrc[128])) < 1e-15);
  referenceForward(a, randomInput(a, 1, 0)); // runs with the new shapes
  // Bicubic: identity at the same size, constants stay constant, PyTorch's value at a known point.
  const g = Float64Array.from({ length: 16 }, (_, i) => i); // 4x4 grid, D = 1, value = 4y + x
  assert.deepEqual(resizeGrid(g, 4, 4, 1), g);
  assert.ok(resizeGrid(new Float64Array(16).fill(2.5), 4, 6, 1).every((v) => Math.abs(v - 2.5) < 1e-12));
  // torch.nn.functional.interpolate(torch.arange(16.).view(1,1,4,4), size=(6,6), mode='bicubic',
  // align_corners=False)[0,0,:2] computed with torch 1.13:
  const torchRows = [-0.434, 0.059, 0.8657, 1.4398, 2.2465, 2.7396, 1.5382, 2.0312, 2.838, 3.412, 4.2188, 4.7118];
  const up = resizeGrid(g, 4, 6, 1);
  torchRows.forEach((v, i) => assert.ok(Math.abs(up[i] - v) < 1e-4, `(${Math.floor(i / 6)}, ${i % 6}): ${up[i]} vs torch ${v}`));
  assert.throws(() => adaptModel(model, { ...src, embed_dim: 32, head_dim: 16 }, 0, 'deit.safetensors'), /deit.safetensors: cannot initialize from it: embed_dim 16 vs 32, head_dim 8 vs 16/);
});
