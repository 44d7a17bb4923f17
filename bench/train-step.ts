// Training-step benchmark: vitfold's one-graph step (forward, gradients, AdamW) against PyTorch
// eager on the same model and batch, measured in the same run, in alternating rounds (this
// machine's speed drifts by +-15% over minutes). Prints median ms/step, images/s, the ratio of
// the medians and the ratio per round (each round pairs a PyTorch run with a vitfold run).
// Usage:
//   npm run bench:train [-- --preset vit-28 --batch 64 --threads 2 --rounds 5 --steps 6 --warmup 3]
//
// The PyTorch peer needs Debian's python3-torch (run with the OpenMP OpenBLAS from
// libopenblas0-openmp, as DEVELOPERS.md says); without it that row is skipped with a note.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { preset } from '../src/core/config.js';
import { initParams } from '../src/core/params.js';
import type { Model } from '../src/core/model.js';
import { oneHotTargets } from '../src/model/engine.js';
import { StepRunner } from '../src/train/step-runner.js';
import { Rng } from '../src/core/rng.js';
import { OPENBLAS_OMP, peerEnv, peersUnavailable, PYTHON } from '../src/deploy/bench.js';

const { values: a } = parseArgs({
  options: {
    preset: { type: 'string', default: 'vit-28' },
    batch: { type: 'string', default: '64' },
    threads: { type: 'string', default: '2' },
    steps: { type: 'string', default: '6' },
    rounds: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '3' },
    'no-torch': { type: 'boolean', default: false },
    arena: { type: 'string', default: 'on' },
  },
});
const cfg = preset(a.preset!);
const batch = Number(a.batch);
const threads = Number(a.threads);
const steps = Number(a.steps);
const warmup = Number(a.warmup);
const median = (xs: number[]) => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)];

const rounds = Number(a.rounds);

async function vitfoldRunner() {
  const model: Model = { config: cfg, structure: { kind: 'plain' }, params: initParams(cfg, 0), dtype: 'F32', extraMetadata: {} };
  const runner = new StepRunner(model, { batch, threads, optim: { weightDecay: 0.05 }, arena: a.arena !== 'off' });
  const rng = new Rng(1);
  const x = { shape: [batch, cfg.in_chans, cfg.img_size, cfg.img_size], data: Float32Array.from({ length: batch * cfg.in_chans * cfg.img_size ** 2 }, () => rng.normal()) };
  const t = oneHotTargets(Array.from({ length: batch }, () => rng.int(cfg.num_classes)), cfg.num_classes);
  const targets = { shape: t.shape, data: Float32Array.from(t.data) };
  let peak = 0;
  const run = async (n: number, record: number[] | null) => {
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await runner.run(x, targets, 1e-3);
      record?.push(performance.now() - t0);
      peak = Math.max(peak, process.memoryUsage().rss);
    }
  };
  await run(warmup, null);
  return { run, peakMb: () => peak / 2 ** 20, release: () => runner.release() };
}

function torchRound(): { times: number[]; version: string } | string {
  const peer = join(dirname(fileURLToPath(import.meta.url)), 'peers', 'torch_train_step.py');
  const missing = peersUnavailable();
  if (missing) return `skipped: ${missing}`;
  const r = spawnSync(PYTHON, [peer, JSON.stringify({ ...cfg, batch, threads, steps, warmup })], { encoding: 'utf8', env: peerEnv(threads), cwd: dirname(peer) });
  if (r.status !== 0) return `failed: ${r.stderr.trim().split('\n').pop()}`;
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
  return { times: out.ms_per_step, version: `torch ${out.torch}, ${out.threads} threads${existsSync(OPENBLAS_OMP) ? ', OpenBLAS (OpenMP)' : ''}` };
}

console.log(
  `model: ${a.preset} (${cfg.depth} layers, ${cfg.img_size}x${cfg.img_size}/${cfg.patch_size}, width ${cfg.embed_dim}, ${cfg.num_heads} heads, MLP ${cfg.mlp_hidden}), ` +
    `batch ${batch}, ${threads} threads, AdamW; ${rounds} alternating rounds of ${steps} steps after ${warmup} warm-up steps each`,
);
const ours = await vitfoldRunner();
const oursTimes: number[] = [];
const torchTimes: number[] = [];
let torchNote = a['no-torch'] ? 'skipped (--no-torch)' : '';
let torchVersion = '';
// Per round, PyTorch's median over ours: each pair was measured minutes apart at most, so a
// slow phase of the machine hits both sides of a pair.
const roundRatios: number[] = [];
for (let r = 0; r < rounds; r++) {
  let torchMedian = 0;
  if (!torchNote) {
    const t = torchRound();
    if (typeof t === 'string') torchNote = t;
    else {
      torchTimes.push(...t.times);
      torchVersion = t.version;
      torchMedian = median(t.times);
    }
  }
  const mine: number[] = [];
  await ours.run(steps, mine);
  oursTimes.push(...mine);
  if (torchMedian) roundRatios.push(torchMedian / median(mine));
}
await ours.release();
const mo = median(oursTimes);
console.log(`vitfold (onnxruntime-node, arena ${a.arena}): ${mo.toFixed(1)} ms/step, ${((batch * 1000) / mo).toFixed(0)} images/s, peak RSS ${ours.peakMb().toFixed(0)} MB`);
if (torchNote) {
  console.log(`pytorch eager: ${torchNote}`);
} else {
  const mt = median(torchTimes);
  console.log(`pytorch eager (${torchVersion}): ${mt.toFixed(1)} ms/step, ${((batch * 1000) / mt).toFixed(0)} images/s`);
  console.log(`speed-up vitfold vs pytorch eager: ${(mt / mo).toFixed(2)}x (medians of all steps); per round ${roundRatios.map((x) => x.toFixed(2)).join(', ')}, median ${median(roundRatios).toFixed(2)}x`);
}
