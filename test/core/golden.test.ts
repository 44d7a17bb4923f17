// The float64 reference and the fold against the independent PyTorch implementation's outputs
// (shared/fixtures/golden).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fold, foldAssumingJoined } from '../../src/core/fold.js';
import { toBranched, type Model } from '../../src/core/model.js';
import { referenceForward } from '../../src/core/reference.js';
import { compareLogits } from '../../src/core/verify.js';
import { loadModel, readFloatTensor } from '../../src/io.js';
import { GOLDEN } from '../helpers.js';

interface Case {
  model: string;
  k: number;
  lam_attn?: number[] | null;
  lam_ffn?: number[] | null;
  logits: number[][];
}
const expected = JSON.parse(readFileSync(join(GOLDEN, 'expected.json'), 'utf8')) as { cases: Case[] };
const deep = loadModel(join(GOLDEN, 'deep.safetensors'));
const x = readFloatTensor(join(GOLDEN, 'input.safetensors'), 'x', 4);

// Our float64 reference against their float64 reference: only summation order differs.
const TOL_F64 = 1e-9;
// The folded-k*.safetensors files store F32 weights; their expected logits were computed from
// the unrounded fold, so evaluating the files can only match to F32 weight rounding (~1e-7).
const TOL_F32_FILE = 1e-6;

function caseName(c: Case): string {
  return c.model === 'branched' ? `branched k=${c.k} a=${JSON.stringify(c.lam_attn)} f=${JSON.stringify(c.lam_ffn)}` : c.model;
}

describe('golden: float64 reference reproduces expected.json', () => {
  assert.equal(expected.cases.length, 29);
  for (const c of expected.cases) {
    test(caseName(c), () => {
      let model: Model;
      let tol = TOL_F64;
      if (c.model === 'deep') model = deep;
      else if (c.model === 'branched') model = toBranched(deep, c.k, { attn: c.lam_attn!, ffn: c.lam_ffn! });
      else {
        model = loadModel(join(GOLDEN, `${c.model}.safetensors`));
        tol = TOL_F32_FILE;
      }
      const y = referenceForward(model, x);
      assert.deepEqual(y.shape, [2, 10]);
      const err = compareLogits(Float64Array.from(c.logits.flat()), y.data);
      assert.ok(err.maxRel < tol, `${caseName(c)}: max rel error ${err.maxRel} >= ${tol}`);
    });
  }
});

describe('golden: our fold of deep.safetensors reproduces the folded logits', () => {
  for (const k of [2, 3, 4, 6]) {
    test(`k=${k}`, () => {
      const c = expected.cases.find((e) => e.model === `folded-k${k}`)!;
      const folded = foldAssumingJoined(deep, k);
      assert.equal(folded.config.depth, 12 / k);
      assert.equal(folded.config.num_heads, 3 * k);
      assert.equal(folded.config.head_dim, 16);
      assert.equal(folded.config.mlp_hidden, 192 * k);
      const err = compareLogits(Float64Array.from(c.logits.flat()), referenceForward(folded, x).data);
      assert.ok(err.maxRel < TOL_F64, `k=${k}: max rel error ${err.maxRel}`);
      // Same shapes as the reference implementation's fold file.
      const theirs = loadModel(join(GOLDEN, `folded-k${k}.safetensors`));
      assert.deepEqual(theirs.config, folded.config);
      for (const [name, t] of theirs.params) assert.deepEqual(folded.params.get(name)?.shape, t.shape, name);
    });
  }
});

test('golden: branched with all coefficients 0 equals the deep model bit for bit', () => {
  const yDeep = referenceForward(deep, x).data;
  for (const k of [1, 2, 3, 4, 6, 12]) {
    const b = toBranched(deep, k); // coefficients default to 0
    assert.deepEqual(referenceForward(b, x).data, yDeep, `k=${k}`);
  }
});

test('golden: fully joined branched equals its fold within 1e-12 (float64)', () => {
  for (const k of [2, 3, 4, 6]) {
    const joined = toBranched(deep, k, { attn: 1, ffn: 1 });
    const err = compareLogits(referenceForward(joined, x).data, referenceForward(fold(joined), x).data);
    assert.ok(err.maxRel < 1e-12, `k=${k}: ${err.maxRel}`);
  }
});
