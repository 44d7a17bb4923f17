// Weight-gradient Gemms dW = dY^T X of the training step's linear layers (vit-28, batch 64:
// R = 3200 rows) in the three forms the engine could emit, each in its own graph, timed in
// interleaved rounds (medians). Baseline: Gemm with transA, what ORT runs when it is given
// Gemm(dY, X, transA) or a 2-D Transpose feeding a Gemm (GemmTransposeFusion). The engine's
// form is Graph.transposeMatrix (a Transpose ORT cannot fuse) then a plain Gemm. The last
// column is the bound with dY^T handed in as an input (no Transpose at all).
// Usage: npm run bench:wgrad [-- --rows 3200 --threads 2]
import { parseArgs } from 'node:util';
import { Graph, type Value } from '../src/graph/graph.js';
import { toOnnxBytes } from '../src/graph/onnx.js';
import { Session, type HostTensor } from '../src/runtime/ort.js';
import { benchInput, timeInterleaved } from '../src/deploy/bench.js';

const { values: a } = parseArgs({ options: { rows: { type: 'string', default: '3200' }, threads: { type: 'string', default: '2' } } });
const R = Number(a.rows);
const threads = Number(a.threads);
const REPS = 4; // products per session run, distinct operands (ORT would merge identical ones)
const FORMS = ['transA', 'transposeMatrix + Gemm', 'dY^T as input'] as const;
type Form = (typeof FORMS)[number];

/** One graph computing REPS weight gradients [O, I] in `form`, summed to a scalar. */
function build(form: Form, O: number, I: number): Uint8Array {
  const g = new Graph('wgrad', { dtype: 'float32' });
  let acc: Value | null = null;
  for (let r = 0; r < REPS; r++) {
    const x = g.input(`x${r}`, 'float32', [R, I]); // [R, I] layer input
    const dW =
      form === 'dY^T as input'
        ? g.gemm(g.input(`dyT${r}`, 'float32', [O, R]), x, null)
        : form === 'transA'
          ? g.gemm(g.input(`dy${r}`, 'float32', [R, O]), x, null, { transA: true })
          : g.gemm(g.transposeMatrix(g.input(`dy${r}`, 'float32', [R, O])), x, null); // [O, I]
    const s = g.reduceSum(dW, [0, 1], false);
    acc = acc ? g.add(acc, s) : s;
  }
  g.output(acc!, 'sum');
  return toOnnxBytes(g);
}

function feeds(form: Form, O: number, I: number): Record<string, HostTensor> {
  const f: Record<string, HostTensor> = {};
  for (let r = 0; r < REPS; r++) {
    f[`x${r}`] = benchInput([R, I]);
    if (form === 'dY^T as input') f[`dyT${r}`] = benchInput([O, R]);
    else f[`dy${r}`] = benchInput([R, O]);
  }
  return f;
}

const layers: [string, number, number][] = [['fc1', 384, 96], ['fc2', 96, 384], ['qkv', 288, 96], ['proj', 96, 96]];
console.log(`dW = dY^T X over R = ${R} rows, ${threads} threads; ms per product (median of 6 rounds x 8 runs, ${REPS} products per run); ratio vs transA`);
console.log(`${'layer'.padEnd(6)}${'dW'.padEnd(11)}${FORMS.map((f) => f.padStart(26)).join('')}`);
for (const [name, O, I] of layers) {
  const items = await Promise.all(FORMS.map(async (form) => ({ session: await Session.create(build(form, O, I), { threads, spinning: true }), feeds: feeds(form, O, I) })));
  const times = await timeInterleaved(items, { rounds: 6, runs: 8, warmup: 2, quiet: true });
  const med = times.map((t) => [...t].sort((p, q) => p - q)[t.length >> 1] / REPS);
  console.log(`${name.padEnd(6)}${`[${O}, ${I}]`.padEnd(11)}${med.map((m) => `${m.toFixed(3)} ms ${(m / med[0]).toFixed(2)}x`.padStart(26)).join('')}`);
  for (const it of items) await it.session.release();
}
