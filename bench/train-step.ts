// Training-step benchmark: vitfold's one-graph step (forward, gradients, AdamW) against PyTorch
// eager on the same model and batch, measured in the same run. This machine's speed drifts by
// +-15% over minutes, so the two are compared step by step: PyTorch runs in a child process
// that takes one step per request, and single steps of the two alternate in ABBA pairs. A
// pause follows every step: after a step ORT's spin-waiting pool keeps one core busy for
// ~30 ms (measured), which would slow a PyTorch step started at once. Prints median
// ms/step and images/s of each, the ratio of the medians, and the median of the per-pair
// ratios with a bootstrap 90% interval.
// Usage:
//   npm run bench:train [-- --preset vit-28 --batch 64 --threads 2 --pairs 40 --warmup 3 --gap 100]
//
// The PyTorch peer needs Debian's python3-torch (run with the OpenMP OpenBLAS from
// libopenblas0-openmp); without it that row is skipped with a note.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { preset } from '../src/core/config.js';
import { initParams } from '../src/core/params.js';
import type { Model } from '../src/core/model.js';
import { oneHotTargets } from '../src/model/engine.js';
import { StepRunner } from '../src/train/step-runner.js';
import { Rng } from '../src/core/rng.js';
import { OPENBLAS_OMP, peerEnv, peersUnavailable, PYTHON } from '../src/deploy/peers.js';

const { values: a } = parseArgs({
  options: {
    preset: { type: 'string', default: 'vit-28' },
    batch: { type: 'string', default: '64' },
    threads: { type: 'string', default: '2' },
    pairs: { type: 'string', default: '40' },
    warmup: { type: 'string', default: '3' },
    gap: { type: 'string', default: '100' },
    'no-torch': { type: 'boolean', default: false },
    arena: { type: 'string', default: 'on' },
  },
});
const cfg = preset(a.preset!);
const batch = Number(a.batch);
const threads = Number(a.threads);
const pairs = Number(a.pairs);
const warmup = Number(a.warmup);
const gapMs = Number(a.gap);
const median = (xs: number[]) => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)];
const pause = () => new Promise((r) => setTimeout(r, gapMs));

async function vitfoldRunner() {
  const model: Model = { config: cfg, structure: { kind: 'plain' }, params: initParams(cfg, 0), dtype: 'F32', extraMetadata: {} };
  const runner = new StepRunner(model, { batch, threads, optim: { weightDecay: 0.05 }, arena: a.arena !== 'off' });
  const rng = new Rng(1);
  const x = { shape: [batch, cfg.in_chans, cfg.img_size, cfg.img_size], data: Float32Array.from({ length: batch * cfg.in_chans * cfg.img_size ** 2 }, () => rng.normal()) };
  const t = oneHotTargets(Array.from({ length: batch }, () => rng.int(cfg.num_classes)), cfg.num_classes);
  const targets = { shape: t.shape, data: Float32Array.from(t.data) };
  let peak = 0;
  const step = async () => {
    const t0 = performance.now();
    await runner.run(x, targets, 1e-3);
    const ms = performance.now() - t0;
    peak = Math.max(peak, process.memoryUsage().rss);
    return ms;
  };
  for (let i = 0; i < warmup; i++) await step();
  return { step, peakMb: () => peak / 2 ** 20, release: () => runner.release() };
}

/** The PyTorch peer as a child process that runs one step per request, or why it cannot run. */
async function torchPeer(): Promise<{ step: () => Promise<number>; version: string; close: () => void } | string> {
  const missing = peersUnavailable();
  if (missing) return `skipped: ${missing}`;
  const script = join(dirname(fileURLToPath(import.meta.url)), 'peers', 'torch_train_step.py');
  const child = spawn(PYTHON, [script, JSON.stringify({ ...cfg, batch, threads, warmup })], { env: peerEnv(threads), cwd: dirname(script), stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async () => {
    const r = await lines.next();
    if (r.done) throw new Error(`PyTorch peer exited: ${stderr.trim().split('\n').pop()}`);
    return r.value as string;
  };
  let hello: { torch: string; threads: number };
  try {
    hello = JSON.parse(await next());
  } catch (e) {
    child.kill();
    return `failed: ${(e as Error).message}`;
  }
  return {
    step: async () => {
      child.stdin!.write('\n');
      return Number(await next());
    },
    version: `torch ${hello.torch}, ${hello.threads} threads${existsSync(OPENBLAS_OMP) ? ', OpenBLAS (OpenMP)' : ''}`,
    close: () => child.stdin!.end(),
  };
}

/** Median of the ratios and its bootstrap 90% interval (seeded resampling). */
function medianWithInterval(ratios: number[]): { median: number; lo: number; hi: number } {
  const rng = new Rng(7);
  const boots: number[] = [];
  for (let k = 0; k < 2000; k++) boots.push(median(Array.from({ length: ratios.length }, () => ratios[rng.int(ratios.length)])));
  boots.sort((p, q) => p - q);
  return { median: median(ratios), lo: boots[100], hi: boots[1899] };
}

const ours = await vitfoldRunner();
const peer = a['no-torch'] ? 'skipped (--no-torch)' : await torchPeer();
console.log(
  `model: ${a.preset} (${cfg.depth} layers, ${cfg.img_size}x${cfg.img_size}/${cfg.patch_size}, width ${cfg.embed_dim}, ${cfg.num_heads} heads, MLP ${cfg.mlp_hidden}), ` +
    `batch ${batch}, ${threads} threads, AdamW; ${typeof peer === 'string' ? `${2 * pairs} steps` : `${pairs} ABBA-ordered pairs of single steps (vitfold, PyTorch)`} after ${warmup} warm-up steps${typeof peer === 'string' ? '' : ' each'}`,
);
const oursTimes: number[] = [];
const torchTimes: number[] = [];
const pairRatios: number[] = []; // PyTorch's step time over ours, per pair
for (let i = 0; i < pairs; i++) {
  if (typeof peer === 'string') {
    oursTimes.push(await ours.step(), await ours.step());
    continue;
  }
  let mine: number;
  let theirs: number;
  if (i % 2 === 0) {
    mine = await ours.step();
    await pause();
    theirs = await peer.step();
  } else {
    theirs = await peer.step();
    await pause();
    mine = await ours.step();
  }
  await pause();
  oursTimes.push(mine);
  torchTimes.push(theirs);
  pairRatios.push(theirs / mine);
}
await ours.release();
const mo = median(oursTimes);
console.log(`vitfold (onnxruntime-node, arena ${a.arena}): ${mo.toFixed(1)} ms/step, ${((batch * 1000) / mo).toFixed(0)} images/s, peak RSS ${ours.peakMb().toFixed(0)} MB`);
if (typeof peer === 'string') {
  console.log(`pytorch eager: ${peer}`);
} else {
  peer.close();
  const mt = median(torchTimes);
  const r = medianWithInterval(pairRatios);
  console.log(`pytorch eager (${peer.version}): ${mt.toFixed(1)} ms/step, ${((batch * 1000) / mt).toFixed(0)} images/s`);
  console.log(
    `speed-up vitfold vs pytorch eager: ${(mt / mo).toFixed(2)}x (medians of all steps); ` +
      `per pair median ${r.median.toFixed(3)}x (90% interval ${r.lo.toFixed(3)}-${r.hi.toFixed(3)})`,
  );
}
