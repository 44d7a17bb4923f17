// Top-1 of a trained model's exports (fp32, fp16, int8) on the Fashion-MNIST test set, each run
// by onnxruntime-node: what quantization costs in accuracy (issue 5: int8 within 0.5 point of
// the fp32 fold). Usage (after `npm run demo`, which trains and folds runs/demo):
//   npm run bench:quant [-- --model runs/demo/folded.safetensors --data DIR]

import { parseArgs } from 'node:util';
import { defaultNormalization, parseNormalization } from '../src/core/preprocess.js';
import { loadMnistLike } from '../src/data/idx.js';
import { exportableModel, exportModel, PRECISIONS } from '../src/deploy/export.js';
import { loadModel } from '../src/io.js';
import { Session } from '../src/runtime/ort.js';

const { values: a } = parseArgs({ options: { model: { type: 'string', default: 'runs/demo/folded.safetensors' }, data: { type: 'string' }, threads: { type: 'string', default: '2' } } });
const { model } = exportableModel(loadModel(a.model!), a.model!);
const cfg = model.config;
const norm = parseNormalization(model.extraMetadata.normalization, cfg, a.model!) ?? defaultNormalization(cfg);
const test = loadMnistLike(a.data, 't10k');
if (test.size !== cfg.img_size || cfg.in_chans !== 1) throw new Error(`${a.model}: expects ${cfg.in_chans}x${cfg.img_size}x${cfg.img_size}; Fashion-MNIST is 1x28x28`);
const per = cfg.img_size * cfg.img_size;
const x = new Float32Array(test.count * per);
for (let i = 0; i < x.length; i++) x[i] = (test.images[i] / 255 - norm.mean[0]) / norm.std[0];

const preds: Record<string, Uint8Array> = {};
console.log(`${a.model}: ${cfg.depth} layers, ${cfg.num_heads} heads, Fashion-MNIST test set (${test.count} images), onnxruntime-node`);
for (const precision of PRECISIONS) {
  const r = await exportModel(model, { precision });
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
  preds[precision] = p;
  let same = 0;
  if (preds.fp32) for (let i = 0; i < test.count; i++) if (p[i] === preds.fp32[i]) same++;
  console.log(`${precision.padEnd(5)} top-1 ${((100 * correct) / test.count).toFixed(2)}%  (${(r.bytes.length / 2 ** 20).toFixed(2)} MiB; logits vs float64 reference max rel ${r.error.maxRel.toExponential(2)}; same prediction as fp32 on ${((100 * same) / test.count).toFixed(2)}%)`);
}
