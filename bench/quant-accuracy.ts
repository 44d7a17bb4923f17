// Top-1 of a trained model's exports (fp32, fp16, int8) on the Fashion-MNIST test set, each run
// by onnxruntime-node, for every int8 weight mode: what quantization costs in accuracy on the
// CPU that runs it. Usage (after `npm run demo`, which trains and folds runs/demo):
//   npm run bench:quant [-- --model runs/demo/folded.safetensors --data DIR]

import { parseArgs } from 'node:util';
import { defaultNormalization, parseNormalization } from '../src/core/preprocess.js';
import { loadMnistLike } from '../src/data/idx.js';
import { cpuFeatures, int8PairsSaturate } from '../src/deploy/cpu.js';
import { exportableModel, exportModel, type ExportOptions } from '../src/deploy/export.js';
import { INT8_WEIGHTS, type Int8Weights } from '../src/deploy/int8.js';
import { loadModel } from '../src/io.js';
import { Session } from '../src/runtime/ort.js';

const { values: a } = parseArgs({ options: { model: { type: 'string', default: 'runs/demo/folded.safetensors' }, data: { type: 'string' }, threads: { type: 'string', default: '2' }, 'int8-weights': { type: 'string', default: INT8_WEIGHTS.join(',') } } });
const variants: { label: string; opts: ExportOptions }[] = [
  { label: 'fp32', opts: { precision: 'fp32' } },
  { label: 'fp16', opts: { precision: 'fp16' } },
  ...(a['int8-weights']!.split(',') as Int8Weights[]).map((w) => ({ label: `int8 ${w}`, opts: { precision: 'int8' as const, int8Weights: w } })),
];
const { model } = exportableModel(loadModel(a.model!), a.model!);
const cfg = model.config;
const norm = parseNormalization(model.extraMetadata.normalization, cfg, a.model!) ?? defaultNormalization(cfg);
const test = loadMnistLike(a.data, 't10k');
if (test.size !== cfg.img_size || cfg.in_chans !== 1) throw new Error(`${a.model}: expects ${cfg.in_chans}x${cfg.img_size}x${cfg.img_size}; Fashion-MNIST is 1x28x28`);
const per = cfg.img_size * cfg.img_size;
const x = new Float32Array(test.count * per);
for (let i = 0; i < x.length; i++) x[i] = (test.images[i] / 255 - norm.mean[0]) / norm.std[0];

const preds: Record<string, Uint8Array> = {};
console.log(`cpu      ${cpuFeatures().summary}; int8 pair sums ${(await int8PairsSaturate()) ? 'saturate at int16' : 'exact'} in this onnxruntime`);
console.log(`${a.model}: ${cfg.depth} layers, ${cfg.num_heads} heads, Fashion-MNIST test set (${test.count} images), onnxruntime-node`);
for (const { label, opts } of variants) {
  const r = await exportModel(model, opts);
  const s = await Session.create(r.bytes, { threads: Number(a.threads) });
  const p = new Uint8Array(test.count);
  let correct = 0;
  const B = 500;
  for (let start = 0; start < test.count; start += B) {
    const n = Math.min(B, test.count - start);
    const logits = (await s.run({ x: { shape: [n, 1, cfg.img_size, cfg.img_size], data: x.subarray(start * per, (start + n) * per) } })).logits.data as Float32Array;
    for (let b = 0; b < n; b++) {
      let best = 0;
      for (let c = 1; c < cfg.num_classes; c++) if (logits[b * cfg.num_classes + c] > logits[b * cfg.num_classes + best]) best = c;
      p[start + b] = best;
      if (best === test.labels[start + b]) correct++;
    }
  }
  await s.release();
  preds[label] = p;
  let same = 0;
  if (preds.fp32) for (let i = 0; i < test.count; i++) if (p[i] === preds.fp32[i]) same++;
  console.log(`${label.padEnd(12)} top-1 ${((100 * correct) / test.count).toFixed(2)}%  (${(r.bytes.length / 2 ** 20).toFixed(2)} MiB; logits vs float64 reference max rel ${r.error.maxRel.toExponential(2)}; same prediction as fp32 on ${((100 * same) / test.count).toFixed(2)}%)`);
}
