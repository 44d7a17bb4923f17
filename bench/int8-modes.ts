// int8 weight modes side by side: max |logit error| / max |logit| of each mode's export against
// the float64 reference (the golden models, a DeiT-Tiny-shaped 3-layer fold of a random timm
// init), and the static pair-overflow count of each graph. The error is what the CPU running
// this script computes; run it on a CPU without VNNI as well (or emulated:
// `qemu-x86_64 -cpu EPYC-Rome node --import tsx bench/int8-modes.ts`).
//   npm run bench:int8 [-- --golden DIR] [--modes paired,u8,s7,full] [--deit-batch 1]

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { preset } from '../src/core/config.js';
import { fold } from '../src/core/fold.js';
import { toBranched, type Model } from '../src/core/model.js';
import { initParams } from '../src/core/params.js';
import { referenceForward } from '../src/core/reference.js';
import { compareLogits, randomInput } from '../src/core/verify.js';
import { buildExportGraph } from '../src/deploy/export.js';
import { INT8_WEIGHTS, int8GraphOverflows, type Int8Weights } from '../src/deploy/int8.js';
import { cpuFeatures } from '../src/deploy/cpu.js';
import { toOnnxBytes } from '../src/graph/onnx.js';
import { loadModel } from '../src/io.js';
import { Session } from '../src/runtime/ort.js';

const { values: a } = parseArgs({
  options: { golden: { type: 'string', default: '../shared/fixtures/golden' }, modes: { type: 'string', default: INT8_WEIGHTS.join(',') }, 'deit-batch': { type: 'string', default: '1' }, seeds: { type: 'string', default: '3' } },
});
const modes = a.modes!.split(',') as Int8Weights[];
console.log(`cpu      ${cpuFeatures().summary}`);

/** RMS of the logit error over the RMS logit: less noisy than the max when comparing modes. */
function rmsRel(want: Float64Array, got: Float64Array): number {
  let e = 0;
  let r = 0;
  for (let i = 0; i < want.length; i++) {
    e += (want[i] - got[i]) ** 2;
    r += want[i] ** 2;
  }
  return Math.sqrt(e / r);
}

async function errorOf(model: Model, mode: Int8Weights | 'fp32', x: { shape: number[]; data: Float64Array }, want: Float64Array): Promise<{ rel: number; rms: number; overflows: number }> {
  const g = buildExportGraph(model, mode === 'fp32' ? {} : { precision: 'int8', int8Weights: mode });
  const s = await Session.create(toOnnxBytes(g), { threads: 1 });
  const out = await s.run({ x: { shape: x.shape, data: Float32Array.from(x.data) } });
  await s.release();
  const got = Float64Array.from(out.logits.data as Float32Array);
  return { rel: compareLogits(want, got).maxRel, rms: rmsRel(want, got), overflows: int8GraphOverflows(g).length };
}

const cases: { name: string; model: Model; x: { shape: number[]; data: Float64Array } }[] = [];
if (existsSync(a.golden!)) {
  for (const name of ['deep', 'folded-k2', 'folded-k3', 'folded-k4', 'folded-k6']) {
    const model = loadModel(join(a.golden!, `${name}.safetensors`));
    cases.push({ name: `golden ${name}`, model, x: randomInput(model, 32, 0) });
  }
}
for (let seed = 0; seed < Number(a.seeds); seed++) {
  const cfg = preset('deit-tiny');
  const deep: Model = { config: cfg, structure: { kind: 'plain' }, params: initParams(cfg, seed), dtype: 'F32', extraMetadata: {} };
  const model = fold(toBranched(deep, 4, { attn: 1, ffn: 1 }));
  cases.push({ name: `deit-tiny fold (init seed ${seed})`, model, x: randomInput(model, Number(a['deit-batch']), 0) });
}

console.log(`${'model'.padEnd(30)} ${['fp32', ...modes].map((m) => m.padStart(24)).join(' ')}`);
for (const c of cases) {
  const want = referenceForward(c.model, c.x).data;
  const cells: string[] = [];
  for (const mode of ['fp32', ...modes] as (Int8Weights | 'fp32')[]) {
    const r = await errorOf(c.model, mode, c.x, want);
    cells.push(`${r.rel.toExponential(2)} ${r.rms.toExponential(2)}${mode === 'fp32' ? '' : ` (${r.overflows})`}`.padStart(24));
  }
  console.log(`${c.name.padEnd(30)} ${cells.join(' ')}`);
}
console.log('cells: max |logit error| / max |logit|, then RMS error / RMS logit, vs float64; (n): weight pairs that can overflow int16 on x86 without VNNI');
