// Progress when output is not a terminal: plain lines at the configured interval during each
// epoch (a log file shows life), not one per step.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { REPO, tmpDir, writeDataset } from '../helpers.js';

test('train with piped output prints a progress line per interval, with the epoch and run ETA', () => {
  const root = tmpDir();
  writeDataset(join(root, 'data'), 1600, 16, false);
  const run = join(root, 'run');
  const args = ['train', '--data', join(root, 'data'), '--depth', '4', '--embed-dim', '16', '--num-heads', '2', '--head-dim', '8', '--mlp-hidden', '32', '--branches', '2', '--epochs', '2', '--batch', '16', '--threads', '1', '--out', run];
  const interval = 0.1;
  const r = spawnSync(process.execPath, [join(REPO, 'dist', 'cli', 'main.js'), ...args], { encoding: 'utf8', env: { ...process.env, VITFOLD_PROGRESS_SECONDS: String(interval) } });
  assert.equal(r.status, 0, r.stderr);
  assert.ok(!r.stderr.includes('\r'), 'no carriage returns in a log');
  const lines = r.stderr.split('\n').filter((l) => l.startsWith('epoch '));
  // Each epoch's training time (log.jsonl) bounds its lines from both sides: at least one line
  // once an epoch outlasts two intervals, at most one per interval (so not one per step).
  const seconds = readFileSync(join(run, 'log.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((e) => e.event === 'epoch').map((e) => e.seconds as number);
  assert.equal(seconds.length, 2);
  seconds.forEach((s, e) => {
    const mine = lines.filter((l) => l.startsWith(`epoch ${e + 1} `));
    assert.ok(mine.length <= s / interval + 1, `epoch ${e + 1}: ${mine.length} lines in ${s.toFixed(2)} s`);
    if (s > 2 * interval) assert.ok(mine.length >= 1, `epoch ${e + 1}: no progress line in ${s.toFixed(2)} s:\n${r.stderr}`);
  });
  for (const l of lines) assert.match(l, /^epoch \d \d+\/100 \d+\.\ds ETA \d+\.\ds loss \d\.\d{3} lr \S+ \d+ img\/s run ETA \d+s$/);
});

test('export, verify and eval with piped output print plain progress lines (what they are doing, done/total, ETA), never a carriage return', () => {
  const root = tmpDir();
  writeDataset(join(root, 'data'), 16, 400, false);
  const model = join(root, 'm.safetensors');
  const env = { ...process.env, VITFOLD_PROGRESS_SECONDS: '0.001' };
  const vitfold = (args: string[]) => spawnSync(process.execPath, [join(REPO, 'dist', 'cli', 'main.js'), ...args], { encoding: 'utf8', env });
  assert.equal(vitfold(['init', '--preset', 'vit-28-p7', '--out', model]).status, 0);
  const runs: [string, string[], RegExp][] = [
    ['export', ['export', model, '--out', join(root, 'm.onnx')], /^export {3}\d+\/28 \d+\.\ds( ETA \d+\.\ds)? (building the graph|serializing|loading into onnxruntime|running onnxruntime|float64 reference)$/],
    ['verify', ['verify', model, '--branches', '4', '--assume-joined', '--batch', '2'], /^verify \d+\/30 \d+\.\ds( ETA \d+\.\ds)? (branched|folded)$/],
    ['eval', ['eval', model, '--data', join(root, 'data'), '--batch', '10'], /^eval {5}\d+\/400 \d+\.\ds( ETA \d+\.\ds)? images$/],
  ];
  for (const [name, args, line] of runs) {
    const r = vitfold(args);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(!r.stderr.includes('\r'), `${name}: no carriage returns in a log`);
    const lines = r.stderr.split('\n').filter(Boolean);
    assert.ok(lines.length >= 1, `${name}: no progress line:\n${r.stderr}`);
    for (const l of lines) assert.match(l, line, name);
  }
});
