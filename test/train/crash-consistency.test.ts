// Crash consistency of training runs: the process is killed (SIGKILL) at every write point of
// a run (a branched epoch, the switch to the folded graph, a folded epoch, the final fold), or
// runs out of disk space, and the resumed run must end bit-identical to an uninterrupted one.
// Also: the run directory's lock, and a fresh run refusing a non-empty directory.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { runVitfold, tmpDir, writeDataset } from '../helpers.js';

/** A 4-layer model, 2 branches, 3 steps per epoch, joined within epoch 1, then 1 folded epoch. */
const TRAIN = (data: string) =>
  ['train', '--data', data, '--depth', '4', '--embed-dim', '16', '--num-heads', '2', '--head-dim', '8', '--mlp-hidden', '32',
    '--branches', '2', '--epochs', '2', '--batch', '16', '--limit-test', '16', '--threads', '1', '--join-end', '0.3', '--ema', '0.9'];

const vitfold = (args: string[], env: Record<string, string> = {}) => runVitfold(args, env);

/** What a finished run must hold, timings removed from the log. */
function fingerprint(dir: string): Record<string, string> {
  const fp: Record<string, string> = {};
  for (const f of ['last.safetensors', 'best.safetensors', 'ema.safetensors', 'joined.safetensors', 'folded.safetensors', 'config.json']) {
    fp[f] = existsSync(join(dir, f)) ? readFileSync(join(dir, f)).toString('base64') : 'missing';
  }
  // `command` names each run's own directory.
  const timing = new Set(['seconds', 'img_per_s', 'data_ms_per_step', 'step_ms', 'teacher_ms', 'path', 'command']);
  fp.log = readFileSync(join(dir, 'log.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.stringify(JSON.parse(l), (k, v) => (timing.has(k) ? undefined : v)))
    .join('\n');
  return fp;
}

/** Runs jobs two at a time. */
async function pool<T>(items: T[], job: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await job(items[next++]);
  };
  await Promise.all([worker(), worker()]);
}

describe('crash consistency', () => {
  const root = tmpDir();
  const data = join(root, 'data');
  writeDataset(data, 48, 16, false);

  test('killed at every write point, the resumed run is bit-identical to an uninterrupted one', async () => {
    const ref = join(root, 'ref');
    const trace = join(root, 'trace');
    const r = await vitfold([...TRAIN(data), '--out', ref], { VITFOLD_WRITE_TRACE: trace });
    assert.equal(r.code, 0, r.err);
    const points = readFileSync(trace, 'utf8').trim().split('\n');
    const labels = points.map((l) => l.replace(/^\d+ /, ''));
    // The run covers a branched epoch, the switch, a folded epoch and the final fold.
    assert.ok(labels.includes('renamed to joined.safetensors') && labels.includes('renamed to folded.safetensors'), labels.join('\n'));
    assert.ok(labels.filter((l) => l === 'renamed to checkpoint.json').length === 2);
    const want = fingerprint(ref);
    const firstCommit = labels.indexOf('renamed to checkpoint.json') + 1;
    const failures: string[] = [];
    await pool(points.map((_, i) => i + 1), async (k) => {
      const dir = join(root, `kill-${k}`);
      const killed = await vitfold([...TRAIN(data), '--out', dir], { VITFOLD_FAULT_AT: String(k) });
      if (killed.signal !== 'SIGKILL') return void failures.push(`point ${k} (${labels[k - 1]}): not killed (${killed.code})`);
      const resumed = await vitfold(['train', '--resume', dir]);
      if (k < firstCommit) {
        // Nothing committed yet: a clean refusal that says how to start again.
        if (resumed.code !== 2 || !/no epoch has finished.*--force|no config.json/.test(resumed.err)) failures.push(`point ${k}: ${resumed.code} ${resumed.err}`);
        const again = await vitfold([...TRAIN(data), '--out', dir, '--force']);
        if (again.code !== 0) return void failures.push(`point ${k}: --force: ${again.err}`);
      } else if (resumed.code !== 0) {
        return void failures.push(`point ${k} (${labels[k - 1]}): resume exit ${resumed.code}: ${resumed.err}`);
      }
      const got = fingerprint(dir);
      for (const f of Object.keys(want)) if (got[f] !== want[f]) failures.push(`point ${k} (${labels[k - 1]}): ${f} differs`);
      const leftovers = [...readdirSync(dir), ...readdirSync(join(dir, 'checkpoints'))].filter((n) => n.endsWith('.tmp') || n === 'lock');
      if (leftovers.length) failures.push(`point ${k}: left ${leftovers.join(', ')}`);
    });
    assert.deepEqual(failures, [], `${points.length} kill points`);
  });

  test('out of disk space: a clean error naming the file, then resume once there is space', { skip: process.getuid?.() !== 0 && 'mounting a tmpfs needs root' }, async (t) => {
    const mnt = join(root, 'small');
    mkdirSync(mnt);
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=300k', 'tmpfs', mnt]);
    if (m.status !== 0) return t.skip(`cannot mount a tmpfs here: ${String(m.stderr).trim()}`);
    try {
      const dir = join(mnt, 'run');
      const r = await vitfold([...TRAIN(data), '--out', dir]);
      assert.equal(r.code, 2, r.err);
      assert.match(r.err, /^vitfold: error: cannot \w+ .*\/small\/run\/.*: no space left on the device \(ENOSPC\)\n$/);
      assert.ok(existsSync(join(dir, 'checkpoint.json')), 'the test needs the disk to fill after the first commit: adjust size=');
      spawnSync('mount', ['-o', 'remount,size=8m', mnt]);
      const resumed = await vitfold(['train', '--resume', dir]);
      assert.equal(resumed.code, 0, resumed.err);
      const ref = join(root, 'ref-enospc');
      assert.equal((await vitfold([...TRAIN(data), '--out', ref])).code, 0);
      assert.deepEqual(fingerprint(dir), fingerprint(ref));
    } finally {
      spawnSync('umount', [mnt]);
    }
  });
});

describe('run directory', () => {
  const root = tmpDir();
  const data = join(root, 'data');
  writeDataset(data, 48, 16, false);

  test('a fresh run refuses a non-empty directory; --force replaces it; --resume refuses other flags', async () => {
    const dir = join(root, 'r');
    assert.equal((await vitfold([...TRAIN(data), '--out', dir])).code, 0);
    const again = await vitfold([...TRAIN(data), '--out', dir]);
    assert.equal(again.code, 2);
    assert.match(again.err, new RegExp(`${dir}: not empty .*--resume ${dir} continues it, --force replaces it`));
    const resumeFlags = await vitfold(['train', '--resume', dir, '--epochs', '5']);
    assert.equal(resumeFlags.code, 2);
    assert.match(resumeFlags.err, /--resume continues the run as its config.json says; drop --epochs/);
    writeFileSync(join(root, 'file'), 'x');
    const onFile = await vitfold([...TRAIN(data), '--out', join(root, 'file')]);
    assert.equal(onFile.code, 2);
    assert.match(onFile.err, /file: exists and is not a directory/);
  });

  test('a second process on the same run directory is refused while the first runs; a stale lock is taken over', async () => {
    const dir = join(root, 'locked');
    mkdirSync(dir);
    // A lock held by a live process (this one).
    writeFileSync(join(dir, 'lock'), `${process.pid} train\n`);
    const r = await vitfold([...TRAIN(data), '--out', dir]);
    assert.equal(r.code, 2);
    assert.match(r.err, new RegExp(`${dir}: in use by process ${process.pid} \\(vitfold train\\)`));
    // A lock left by a process that is gone.
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    writeFileSync(join(dir, 'lock'), `${gone.stdout} train\n`);
    const r2 = await vitfold([...TRAIN(data), '--out', dir]);
    assert.equal(r2.code, 0, r2.err);
    assert.ok(!existsSync(join(dir, 'lock')), 'lock released at exit');
  });
});
