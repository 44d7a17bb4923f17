// The library as a user imports it: by its package name, from outside the repository, running
// the README's library example as written (on a small model saved under the example's name).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { initParams } from '../../src/core/params.js';
import { saveModel } from '../../src/io.js';
import { REPO, smallConfig, tmpDir } from '../helpers.js';

test("the README's library example runs against the package imported by name", () => {
  assert.ok(existsSync(join(REPO, 'dist', 'index.js')), 'dist/ missing: run npm run build (npm test does)');
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  const lib = readme.slice(readme.indexOf('## Library'));
  const code = /```ts\n([\s\S]*?)```/.exec(lib)?.[1];
  assert.ok(code && code.includes("from 'vitfold'"), 'the README has a ts example importing vitfold');
  const dir = tmpDir();
  mkdirSync(join(dir, 'node_modules'));
  symlinkSync(REPO, join(dir, 'node_modules', 'vitfold'), 'dir');
  // A 12-layer model small enough to run in a second, under the name the example reads.
  const cfg = smallConfig({ depth: 12 });
  saveModel(join(dir, 'deit-tiny.safetensors'), { config: cfg, structure: { kind: 'plain' }, params: initParams(cfg, 0), dtype: 'F32', extraMetadata: {} });
  writeFileSync(join(dir, 'example.mjs'), code);
  const r = spawnSync(process.execPath, ['example.mjs'], { cwd: dir, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const err = /maxRel: ([0-9.e+-]+)/.exec(r.stdout);
  assert.ok(err && Number(err[1]) < 1e-12, `fold error printed: ${r.stdout}`);
  assert.ok(existsSync(join(dir, 'deit-tiny-3layer.safetensors')) && existsSync(join(dir, 'deit-tiny-3layer-int8.onnx')));
});

test('every name the README documents is exported, and every user error extends VitfoldError', async () => {
  const vf = await import('vitfold');
  const documented = ['loadModel', 'saveModel', 'toBranched', 'fold', 'referenceForward', 'randomInput', 'compareLogits', 'exportModel', 'Predictor', 'train', 'shrink', 'planShrink', 'shrinkConfig', 'runExperiment', 'runBench', 'VitfoldError'];
  for (const name of documented) assert.ok(name in vf, `vitfold exports ${name}`);
  for (const E of [vf.ModelError, vf.ConfigError, vf.SafetensorsError, vf.TrainError, vf.ExperimentError, vf.RunDirError]) {
    assert.ok(new E('x') instanceof vf.VitfoldError, E.name);
  }
});
