// Training on the fold: one step of the fully joined branched graph vs the folded graph (same
// function), alternating in one process. Usage: npm run bench:folded [-- --preset vit-28-p7]
import { StepRunner } from '../src/train/step-runner.js';
import { initParams } from '../src/core/params.js';
import { toBranched } from '../src/core/model.js';
import { fold } from '../src/core/fold.js';
import { preset } from '../src/core/config.js';
import { oneHotTargets } from '../src/model/engine.js';
import { parseArgs } from 'node:util';
const { values: a } = parseArgs({ options: { preset: { type: 'string', default: 'vit-28-p7' }, batch: { type: 'string', default: '128' }, branches: { type: 'string', default: '4' } } });
const cfg = preset(a.preset!);
const batch = Number(a.batch);
const k = Number(a.branches);
const L = cfg.depth / k;
const joined = toBranched({ config: cfg, structure: { kind: 'plain' }, params: initParams(cfg, 0), dtype: 'F32', extraMetadata: {} }, k, { attn: 1, ffn: 1 });
const folded = fold(joined);
const x = { shape: [batch, cfg.in_chans, cfg.img_size, cfg.img_size], data: new Float32Array(batch * cfg.in_chans * cfg.img_size ** 2).map(() => Math.random()) };
const t = oneHotTargets(Array.from({ length: batch }, (_, i) => i % cfg.num_classes), cfg.num_classes);
const tt = { shape: t.shape, data: Float32Array.from(t.data) };
const runners = [[`branched (${L} blocks x ${k}), fully joined`, new StepRunner(joined, { batch, threads: 2 }), { attn: new Array(L).fill(1), ffn: new Array(L).fill(1) }], [`folded (${L} layers)`, new StepRunner(folded, { batch, threads: 2 }), undefined]] as const;
const times: number[][] = [[], []];
for (let round = 0; round < 4; round++) for (let q = 0; q < 2; q++) {
  const [, r, j] = runners[q];
  for (let i = 0; i < 8; i++) { const t0 = performance.now(); await r.run(x, tt, 1e-3, j as any); if (i >= 2) times[q].push(performance.now() - t0); }
}
console.log(`${a.preset}, batch ${batch}, 2 threads; median of ${times[0].length} steps each, 4 alternating rounds`);
const med = times.map((t) => t.sort((p, q) => p - q)[Math.floor(t.length / 2)]);
runners.forEach(([name], q) => console.log(`${name.padEnd(36)} ${med[q].toFixed(1)} ms/step`));
console.log(`folded / joined: ${(med[1] / med[0]).toFixed(2)}x`);
