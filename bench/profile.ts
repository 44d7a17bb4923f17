// Where the inference time of vitfold's fp32 exports goes (measured against two goals: the 3-layer fold at
// >= 85% of the fp32 matmul peak, and at <= 0.63x the 12-layer latency in onnxruntime-web).
// Each model runs alone in a child process with ORT's profiler on; the kernel times are summed
// per op type over the last --runs runs. The matrix products' share bounds what graph changes
// can reach: if every other op took no time, the fold would still need its matrix products'
// time. The fp32 peak is the fastest run of a 1024^3 constant-weight MatMul in the same runtime.
// Usage:
//   npm run bench:profile [-- --preset deit-tiny --depths 12,3 --runtime node,web --threads 2 --runs 20]

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { preset } from '../src/core/config.js';
import { exportFlopsPerImage } from '../src/core/flops.js';
import { initParams } from '../src/core/params.js';
import type { Model } from '../src/core/model.js';
import { modelsAtDepths, PEAK_N, runNodeScript } from '../src/deploy/bench.js';
import { buildExportGraph } from '../src/deploy/export.js';
import { MATRIX_OPS, type ProfileSummary } from '../src/deploy/profile.js';
import { toOnnxBytes } from '../src/graph/onnx.js';

const { values: a } = parseArgs({
  options: {
    preset: { type: 'string', default: 'deit-tiny' },
    depths: { type: 'string', default: '12,3' },
    runtime: { type: 'string', default: 'node,web' },
    threads: { type: 'string', default: '2' },
    runs: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '5' },
  },
});
const cfg = preset(a.preset!);
const threads = Number(a.threads);
const runs = Number(a.runs);
const warmup = Number(a.warmup);
const runtimes = a.runtime!.split(',') as ('node' | 'web')[];
for (const r of runtimes) if (r !== 'node' && r !== 'web') throw new Error(`--runtime: '${r}' is not node or web`);
const shape = [1, cfg.in_chans, cfg.img_size, cfg.img_size];

const child = join(dirname(fileURLToPath(import.meta.url)), 'profile-child.ts');
const runChild = <T>(job: object): T => runNodeScript<T>(child, [JSON.stringify(job)], 'profile child');

const deep: Model = { config: cfg, structure: { kind: 'plain' }, params: initParams(cfg, 0), dtype: 'F32', extraMetadata: {} };
const dir = mkdtempSync(join(tmpdir(), 'vitfold-bench-profile-'));
const models = modelsAtDepths(deep, a.depths!.split(',').map(Number)).map(({ depth, model }) => {
  const file = join(dir, `${depth}L.onnx`);
  writeFileSync(file, toOnnxBytes(buildExportGraph(model)));
  return { depth, file, gflop: exportFlopsPerImage(model.config) / 1e9 };
});

const f = (x: number, d = 2) => x.toFixed(d);
console.log(`bench:profile  ${a.preset}, batch 1, ${threads} thread${threads === 1 ? '' : 's'}: ORT profiles of vitfold's fp32 exports (class-token-only last layer), ` +
  `${runs} runs after ${warmup} warm-up, each model alone in a process; ms are per run`);
try {
  for (const runtime of runtimes) {
    const peak = runChild<{ gflops: number }>({ runtime, threads, runs, warmup: 3, peak: PEAK_N }).gflops;
    console.log(`\n${runtime}: fp32 matmul peak ${f(peak, 1)} GFLOP/s (${PEAK_N}^3 constant-weight MatMul, fastest of ${runs} runs)`);
    console.log('model  GFLOP   run ms  kernels  matrix  matrix GFLOP/s  matrix %peak  largest other ops');
    const rows = models.map((m) => {
      const s = runChild<ProfileSummary>({ runtime, threads, runs, warmup, file: m.file, shape });
      const others = s.byOp.filter(([op]) => !MATRIX_OPS.has(op)).slice(0, 5);
      const rate = m.gflop / (s.matrixMs / 1000);
      console.log(
        `${`${m.depth}L`.padEnd(6)} ${f(m.gflop).padStart(5)}  ${f(s.runMs).padStart(7)}  ${f(s.kernelMs).padStart(7)}  ${f(s.matrixMs).padStart(6)}  ` +
          `${f(rate, 1).padStart(14)}  ${`${(100 * rate / peak).toFixed(0)}%`.padStart(12)}  ${others.map(([op, ms]) => `${op} ${f(ms)}`).join(', ')}`,
      );
      return { depth: m.depth, s, rate };
    });
    const [d, ...folds] = rows;
    for (const r of folds) {
      console.log(
        `${runtime}: ${r.depth}L / ${d.depth}L: run ${f(r.s.runMs / d.s.runMs)}, matrix products ${f(r.s.matrixMs / d.s.matrixMs)}; ` +
          `${r.depth}L's matrix products alone / ${d.depth}L's run ${f(r.s.matrixMs / d.s.runMs)}; ` +
          `${r.depth}L with every other op free: ${(100 * r.rate / peak).toFixed(0)}% of the peak`,
      );
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
