// Cost of feeding the flat parameters and AdamW moments into ONNX Runtime and back each
// training step (onnxruntime-node has no stateful sessions or IO binding): a graph that only
// passes params, m, v [P] through one element-wise op each. Usage: npm run bench:feed
import { Graph } from '../src/graph/graph.js';
import { toOnnxBytes } from '../src/graph/onnx.js';
import { Session } from '../src/runtime/ort.js';
import { ParamLayout } from '../src/model/engine.js';
import { preset } from '../src/core/config.js';
const P = new ParamLayout(preset('vit-28')).total;
const g = new Graph('feed', { dtype: 'float32' });
const ins = ['params', 'm', 'v'].map((n) => g.input(n, 'float32', [P]));
const one = g.scalar(1);
ins.forEach((v, i) => g.output(g.mul(v, one), ['params_out', 'm_out', 'v_out'][i]));
const s = await Session.create(toOnnxBytes(g), { threads: 2 });
let feeds = Object.fromEntries(['params', 'm', 'v'].map((n) => [n, { shape: [P], data: new Float32Array(P).fill(1) }]));
const ts: number[] = [];
for (let i = 0; i < 40; i++) {
  const t0 = performance.now();
  const o = await s.run(feeds);
  feeds = { params: o.params_out as any, m: o.m_out as any, v: o.v_out as any };
  if (i >= 5) ts.push(performance.now() - t0);
}
ts.sort((a, b) => a - b);
console.log(`P = ${P} floats (${(P * 4 / 2 ** 20).toFixed(1)} MiB each): feed 3 + fetch 3 + 3 element-wise passes: median ${ts[17].toFixed(2)} ms`);
