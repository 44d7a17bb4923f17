// fixtures/method/ is the one definition of the method that vitfold and vitfold_torch (python/)
// are both checked against: vitfold must still compute every committed value (the Python tests
// check vitfold_torch against the same file).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel, readFloatTensor, saveModel } from '../../src/io.js';
import { FIXTURES, fixtureModel, methodValues } from '../../scripts/method-fixtures.js';
import { tmpDir } from '../helpers.js';

const close = (a: number[], b: number[], tol: number, what: string) => {
  assert.equal(a.length, b.length, `${what}: length`);
  const scale = Math.max(1, ...b.map(Math.abs));
  a.forEach((v, i) => assert.ok(Math.abs(v - b[i]) <= tol * scale, `${what}[${i}]: ${v} vs committed ${b[i]}`));
};

test('vitfold computes the committed method fixtures: branched logits, join and LR schedules, distillation loss, hidden-state matching', async () => {
  const committed = JSON.parse(readFileSync(join(FIXTURES, 'method.json'), 'utf8'));
  // The model file is the fixture model, bit for bit.
  const mine = join(tmpDir(), 'model.safetensors');
  saveModel(mine, fixtureModel(), 'F64');
  assert.ok(readFileSync(mine).equals(readFileSync(join(FIXTURES, 'model.safetensors'))), 'fixtures/method/model.safetensors is the fixture model');
  const now = await methodValues(loadModel(join(FIXTURES, 'model.safetensors')), readFloatTensor(join(FIXTURES, 'input.safetensors'), 'x', 4));
  for (const k of ['forward', 'join', 'lr', 'distill', 'hidden'] as const) assert.equal(now[k].length, committed[k].length, `${k}: as many cases as committed`);
  now.forward.forEach((c, i) => close(c.logits, committed.forward[i].logits, 1e-12, `forward k=${c.branches} attn=${c.attn} ffn=${c.ffn}`));
  now.join.forEach((s, i) => assert.equal(s.points.length, committed.join[i].points.length));
  now.join.forEach((s, i) => s.points.forEach((pt, j) => close([...pt.attn, ...pt.ffn], [...committed.join[i].points[j].attn, ...committed.join[i].points[j].ffn], 1e-15, `join ${s.mode} ${s.shape} p=${pt.p}`)));
  now.lr.forEach((s, i) => close(s.values.flat(), committed.lr[i].values.flat(), 1e-15, `lr case ${i}`));
  now.distill.forEach((c, i) => close([c.loss], [committed.distill[i].loss], 1e-12, `distillation alpha ${c.alpha} T ${c.temperature}`));
  now.hidden.forEach((c, i) => close([c.loss], [committed.hidden[i].loss], 1e-12, `hidden-state matching k=${c.branches}`));
});
