// Inference latency: vitfold's ONNX graph against ORT running a torch.onnx.export of the same
// weights (how users run timm models from JavaScript today), in one process, same threads,
// sessions without spin-waiting (they would steal each other's cores). Rounds are interleaved
// and the median is reported. Usage:
//   npm run bench:infer [-- --preset deit-tiny --batch 1 --threads 2 --runs 20 --rounds 5]

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { preset } from '../src/core/config.js';
import { fold } from '../src/core/fold.js';
import { toBranched, type Model } from '../src/core/model.js';
import { initParams } from '../src/core/params.js';
import { compareLogits, randomInput } from '../src/core/verify.js';
import { toOnnxBytes } from '../src/graph/onnx.js';
import { buildPredictGraph } from '../src/model/engine.js';
import { Session } from '../src/runtime/ort.js';
import { buildExportGraph } from '../src/deploy/export.js';
import { timeInterleaved } from '../src/deploy/bench.js';
import { peersUnavailable, torchExport } from '../src/deploy/peers.js';
import { saveModel } from '../src/io.js';

const { values: a } = parseArgs({
  options: {
    preset: { type: 'string', default: 'deit-tiny' },
    batch: { type: 'string', default: '1' },
    threads: { type: 'string', default: '2' },
    runs: { type: 'string', default: '20' },
    rounds: { type: 'string', default: '5' },
    branches: { type: 'string', default: '4' },
  },
});
const cfg = preset(a.preset!);
const batch = Number(a.batch);
const threads = Number(a.threads);
const k = Number(a.branches);
const median = (xs: number[]) => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)];

const deep: Model = { config: cfg, structure: { kind: 'plain' }, params: initParams(cfg, 0), dtype: 'F32', extraMetadata: {} };
const folded = fold(toBranched(deep, k, { attn: 1, ffn: 1 }));
const x = randomInput(deep, batch, 1);
const feeds = { x: { shape: x.shape, data: Float32Array.from(x.data) } };

const candidates: { name: string; session: Session }[] = [];
const dir = mkdtempSync(join(tmpdir(), 'vitfold-bench-'));
const modelPath = join(dir, 'deep.safetensors');
saveModel(modelPath, deep);
const noPeers = peersUnavailable();
if (!noPeers) {
  const t = torchExport(modelPath, join(dir, 'torch-export.onnx'));
  candidates.push({ name: `torch.onnx.export (torch ${t.torch}, opset ${t.opset}), ${cfg.depth} layers`, session: await Session.create(t.bytes, { threads }) });
} else {
  console.log(`torch.onnx.export baseline skipped: ${noPeers}`);
}
candidates.push({ name: `vitfold graph, ${cfg.depth} layers`, session: await Session.create(toOnnxBytes(buildPredictGraph(deep).graph), { threads }) });
candidates.push({ name: `vitfold graph, ${folded.config.depth}-layer fold (k=${k})`, session: await Session.create(toOnnxBytes(buildPredictGraph(folded).graph), { threads }) });
candidates.push({ name: `vitfold export, ${cfg.depth} layers`, session: await Session.create(toOnnxBytes(buildExportGraph(deep)), { threads }) });
candidates.push({ name: `vitfold export, ${folded.config.depth}-layer fold (k=${k})`, session: await Session.create(toOnnxBytes(buildExportGraph(folded)), { threads }) });

// Same function: every deep graph gives the same logits (the fold is a different function).
const outs = await Promise.all(candidates.map(async (c) => Float64Array.from((await c.session.run(feeds)).logits.data as Float32Array)));
const times = await timeInterleaved(candidates.map((c) => ({ session: c.session, feeds })), { rounds: Number(a.rounds), runs: Number(a.runs), warmup: 3 });
console.log(`${a.preset}: ${cfg.img_size}x${cfg.img_size}/${cfg.patch_size}, width ${cfg.embed_dim}, ${cfg.num_heads} heads; batch ${batch}, ${threads} threads, median of ${Number(a.rounds) * Number(a.runs)} runs in ${a.rounds} interleaved rounds`);
const base = median(times[0]);
candidates.forEach((c, i) => {
  const m = median(times[i]);
  console.log(`${c.name.padEnd(62)} ${m.toFixed(2).padStart(8)} ms  ${(base / m).toFixed(2)}x vs first row`);
});
if (candidates.length === 5) {
  console.log(`logits, torch export vs vitfold deep graph: max rel ${compareLogits(outs[0], outs[1]).maxRel.toExponential(2)}; vs vitfold deep export: ${compareLogits(outs[0], outs[3]).maxRel.toExponential(2)}`);
}
for (const c of candidates) await c.session.release();
