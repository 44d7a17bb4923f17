// The experiment harness: spec checks, a tiny table end to end (teacher cached, rows per seed),
// finished runs read back, an interrupted run resumed, results files with round chart ticks;
// `vitfold demo` on the shipped teacher.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { niceTicks } from '../../src/chart/svg.js';
import { loadModel } from '../../src/io.js';
import { readSpec } from '../../src/experiment/spec.js';
import { REPO, tmpDir, writeDataset } from '../helpers.js';

const BIN = join(REPO, 'dist', 'cli', 'main.js');
const vitfold = (...args: string[]) => {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

describe('experiment spec', () => {
  const write = (o: unknown) => {
    const p = join(tmpDir(), 'spec.json');
    writeFileSync(p, typeof o === 'string' ? o : JSON.stringify(o));
    return p;
  };
  const good = { name: 'x', title: 't', seeds: [0], rows: [{ id: 'a', label: 'A', args: ['train'] }] };
  test('a valid spec reads; every bad field is named', () => {
    assert.equal(readSpec(write(good)).rows.length, 1);
    assert.throws(() => readSpec(write('{')), /spec.json: not valid JSON/);
    assert.throws(() => readSpec(join(tmpDir(), 'none.json')), /none.json: no such file/);
    assert.throws(() => readSpec(write({ ...good, seeds: [] })), /seeds must be a non-empty array/);
    assert.throws(() => readSpec(write({ ...good, rows: [good.rows[0], good.rows[0]] })), /rows\[1\].id must be unique \('a' appears twice\)/);
    assert.throws(() => readSpec(write({ ...good, rows: [{ ...good.rows[0], args: ['train', '--out', 'x'] }] })), /rows\[0\].args must be without --out/);
    assert.throws(() => readSpec(write({ ...good, rows: [{ ...good.rows[0], args: ['shrink', '{teacher}'] }] })), /free of \{teacher\}/);
    assert.throws(() => readSpec(write({ ...good, name: 'a/b' })), /name must be a file-name-safe string/);
  });
  test('chart ticks are round numbers', () => {
    assert.deepEqual(niceTicks(0, 0.93), [0, 0.2, 0.4, 0.6, 0.8, 1]);
    assert.deepEqual(niceTicks(68, 86), [65, 70, 75, 80, 85, 90]);
    assert.deepEqual(niceTicks(0, 17.6), [0, 5, 10, 15, 20]);
    assert.deepEqual(niceTicks(81.3, 84.9, 4), [81, 82, 83, 84, 85]);
  });
});

describe('vitfold experiment', () => {
  test('teacher once, rows per seed, cached on rerun, an unfinished run resumed, results written', () => {
    const dir = tmpDir();
    const data = join(dir, 'data');
    writeDataset(data, 96, 32, false);
    const common = ['--data', data, '--batch', '32', '--threads', '1'];
    const shape = ['--embed-dim', '12', '--depth', '4', '--num-heads', '2', '--mlp-hidden', '20'];
    const spec = {
      name: 'tiny',
      title: 'tiny table',
      seeds: [0, 1],
      teacher: { dir: join(dir, 'teacher'), model: 'last.safetensors', args: ['train', '--join', 'none', '--epochs', '1', ...shape, ...common] },
      rows: [
        { id: 'instant', label: 'instant fold', args: ['shrink', '{teacher}', '--depth', '2', '--epochs', '0', '--no-export', ...common], seeds: [0] },
        { id: 'join', label: 'join + KD', args: ['shrink', '{teacher}', '--depth', '2', '--epochs', '2', '--no-export', '--seed', '{seed}', ...common] },
      ],
    };
    const specPath = join(dir, 'tiny.json');
    writeFileSync(specPath, JSON.stringify(spec));
    const root = join(dir, 'runs');
    const results = join(dir, 'results');
    const first = vitfold('experiment', specPath, '--root', root, '--results', results, '--no-latency');
    assert.equal(first.code, 0, first.out + first.err);
    assert.match(first.out, /teacher  fresh: top-1/);
    assert.match(first.out, /run 3\/3  join seed 1: fresh, top-1/);
    const r1 = JSON.parse(readFileSync(join(results, 'tiny.json'), 'utf8'));
    assert.equal(r1.runs.length, 3);
    const row = r1.rows.find((r: { id: string }) => r.id === 'join');
    assert.equal(row.n, 2);
    assert.equal(row.shape, '2 layers, 4 heads, MLP 40');
    const mean = (row.top1[0] + row.top1[1]) / 2;
    assert.ok(Math.abs(row.top1Mean - mean) < 1e-12);
    assert.ok(Math.abs(row.top1Std - Math.abs(row.top1[0] - row.top1[1]) / Math.SQRT2) < 1e-12, 'sample std');

    // Seed 1 interrupted after its last epoch checkpoint: its final events are gone.
    const log = join(root, 'join', 's1', 'log.jsonl');
    writeFileSync(log, readFileSync(log, 'utf8').split('\n').filter((l) => !/"event":"(fold|shrunk)"/.test(l)).join('\n'));
    const second = vitfold('experiment', specPath, '--root', root, '--results', results, '--rounds', '1');
    assert.equal(second.code, 0, second.out + second.err);
    assert.match(second.out, /teacher  cached/);
    assert.match(second.out, /join seed 0: cached/);
    assert.match(second.out, /join seed 1: resumed/);
    assert.match(readFileSync(join(root, 'join', 's1.log'), 'utf8'), /\$ vitfold shrink --resume/);
    const md = readFileSync(join(results, 'tiny.md'), 'utf8');
    assert.match(md, /\| 4 layers, 2 heads, MLP 20 \| the deep model \(teacher\) \|/);
    assert.match(md, /\| 2 layers, 4 heads, MLP 40 \| join \+ KD \| [0-9.]+ ± [0-9.]+ \|/);
    const svg = readFileSync(join(results, 'tiny.svg'), 'utf8');
    assert.ok(!/NaN|undefined/.test(svg + md), 'no NaN or undefined in the results');
    assert.match(svg, /latency \(ms, batch 1, 2 threads/);
  });
});

describe('vitfold demo', () => {
  test('the shipped 12-layer teacher is shrunk to 3 layers beside the alternatives; the table and the folded model are written', () => {
    const dir = tmpDir();
    const data = join(dir, 'data');
    writeDataset(data, 128, 40, false);
    const out = join(dir, 'demo');
    const r = vitfold('demo', '--data', data, '--limit-train', '128', '--epochs', '1', '--out', out);
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.out, /teacher  cached: top-1 84\.94%/, 'the shipped teacher is used, not retrained');
    for (const how of ['instant fold, no training', 'vitfold shrink: join \\+ distillation, folded', 'keep 3 of the 12 layers \\+ distillation', 'narrow 3-layer ViT from scratch, 6 epochs']) {
      assert.match(r.out, new RegExp(`\\n3 layers, (12 heads, MLP 768|3 heads, MLP 192) +${how} +[0-9.]+% +[0-9]+ +[0-9.]+ ms \\(0\\.[0-9]+x\\)`), how);
    }
    const folded = loadModel(join(out, 'folded.safetensors'));
    assert.deepEqual(folded.structure, { kind: 'folded', branches: 4, source_depth: 12 });
    assert.ok(existsSync(join(out, 'folded.onnx')) && existsSync(join(out, 'demo.svg')));
  });
});
