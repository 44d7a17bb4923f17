// The class-token-only tail (ForwardOptions.clsOnlyLastLayer, on by default in every graph):
// after the last attention's keys and values, only class-token rows are computed. It must give
// the same logits, loss and gradients as computing every token, for the plain model and both
// join phases of a branched model's last block, with drop path, in training and inference graphs.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { numTokens, type ViTConfig } from '../../src/core/config.js';
import { Rng } from '../../src/core/rng.js';
import { gradients } from '../../src/graph/autodiff.js';
import { Graph } from '../../src/graph/graph.js';
import { toOnnxBytes } from '../../src/graph/onnx.js';
import { flatBinding, initializerBinding, ParamLayout } from '../../src/model/engine.js';
import { buildForward, crossEntropy, phasesFor, type GraphStructure } from '../../src/model/vit-graph.js';
import { Session } from '../../src/runtime/ort.js';
import { smallConfig } from '../helpers.js';

interface Case {
  name: string;
  cfg: ViTConfig;
  structure: GraphStructure;
  join?: { attn: number[]; ffn: number[] };
}

const cfg = smallConfig({ depth: 6 });
const cases: Case[] = [
  { name: 'plain', cfg, structure: { kind: 'plain' } },
  { name: 'plain, one head', cfg: smallConfig({ depth: 3, num_heads: 1 }), structure: { kind: 'plain' } },
];
for (const [k, attn, ffn] of [
  [2, [1, 1, 0.5], [0.3, 1, 0]], // last block in phase 'attn'
  [3, [0.5, 1], [0, 0.5]], // last block in phase 'ffn'
  [3, [1, 1], [1, 1]], // fully joined: phase 'ffn' with f = 1
] as [number, number[], number[]][]) {
  const phases = phasesFor(attn, ffn);
  cases.push({ name: `branched k=${k} phases ${phases.join(',')}`, cfg, structure: { kind: 'branched', branches: k, phases }, join: { attn, ffn } });
}

const BATCH = 3;

/**
 * float64 graph of logits and, for training graphs, the loss and the flat gradient. Inputs x,
 * join; training graphs also params (flat), targets and drop_keep, inference graphs bake the
 * parameters as initializers (their own binding).
 */
function build(c: Case, training: boolean, clsOnly: boolean): Graph {
  const { cfg } = c;
  const g = new Graph('cls_only_check', { dtype: 'float64' });
  const layout = new ParamLayout(cfg);
  const flat = training ? g.input('params', 'float64', [layout.total]) : null!;
  const x = g.input('x', 'float64', [BATCH, cfg.in_chans, cfg.img_size, cfg.img_size]);
  const join =
    c.structure.kind === 'branched'
      ? { joinAttn: g.input('join_attn', 'float64', [c.structure.phases.length]), joinFfn: g.input('join_ffn', 'float64', [c.structure.phases.length]) }
      : {};
  const dropKeep = training ? g.input('drop_keep', 'float64', [2 * cfg.depth, BATCH * numTokens(cfg), 1]) : undefined;
  const { bind, values } = training ? flatBinding(g, flat, layout) : { bind: initializerBinding(g, layout.unpack(params(cfg))), values: new Map() };
  const logits = buildForward(g, cfg, c.structure, bind, { x, ...join, dropKeep }, { clsOnlyLastLayer: clsOnly, training });
  g.output(logits, 'logits');
  if (training) {
    const loss = crossEntropy(g, logits, g.input('targets', 'float64', [BATCH, cfg.num_classes]));
    g.output(loss, 'loss');
    const wrt = layout.entries.map((e) => values.get(e.name)!);
    const grads = gradients(g, loss, wrt);
    g.output(g.concat(grads.map((gv, i) => g.reshape(gv ?? g.mul(wrt[i], g.scalar(0)), [layout.entries[i].size])), 0), 'grad');
  }
  return g;
}

/** Random parameters, flat. */
function params(cfg: ViTConfig): Float64Array {
  const rng = new Rng(3);
  return Float64Array.from({ length: new ParamLayout(cfg).total }, () => 0.3 * rng.normal());
}

function feeds(c: Case, training: boolean) {
  const { cfg } = c;
  const rng = new Rng(7);
  const normal = (n: number) => Float64Array.from({ length: n }, () => rng.normal());
  const f: Record<string, { shape: number[]; data: Float64Array }> = {
    x: { shape: [BATCH, cfg.in_chans, cfg.img_size, cfg.img_size], data: normal(BATCH * cfg.in_chans * cfg.img_size ** 2) },
  };
  if (c.join) {
    f.join_attn = { shape: [c.join.attn.length], data: Float64Array.from(c.join.attn) };
    f.join_ffn = { shape: [c.join.ffn.length], data: Float64Array.from(c.join.ffn) };
  }
  if (training) {
    f.params = { shape: [params(cfg).length], data: params(cfg) };
    // keep factors differ per token (drop path's are per sample), so reading a wrong row shows
    const T = numTokens(cfg);
    const keep = Float64Array.from({ length: 2 * cfg.depth * BATCH * T }, () => (rng.uniform() < 0.2 ? 0 : 0.5 + rng.uniform()));
    f.drop_keep = { shape: [2 * cfg.depth, BATCH * T, 1], data: keep };
    const targets = new Float64Array(BATCH * cfg.num_classes).fill(0.02);
    for (let b = 0; b < BATCH; b++) targets[b * cfg.num_classes + rng.int(cfg.num_classes)] += 0.9;
    f.targets = { shape: [BATCH, cfg.num_classes], data: targets };
  }
  return f;
}

async function run(g: Graph, f: ReturnType<typeof feeds>) {
  // 'basic': ORT's extended fusions would swap float64 LayerNorm statistics for float32 ones.
  const s = await Session.create(toOnnxBytes(g), { threads: 1, optimization: 'basic' });
  const out = await s.run(f);
  await s.release();
  return out;
}

/** max |a - b| / max |b| */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

describe('class-token-only tail equals computing every token (float64)', () => {
  for (const c of cases) {
    test(`${c.name}: training graph logits, loss and every gradient within 1e-12`, async () => {
      const f = feeds(c, true);
      const [cls, all] = await Promise.all([run(build(c, true, true), f), run(build(c, true, false), f)]);
      const grad = all.grad.data as Float64Array;
      assert.ok(grad.some((v) => v !== 0), 'gradient is all zeros');
      for (const name of ['logits', 'loss', 'grad']) {
        const e = relErr(cls[name].data as Float64Array, all[name].data as Float64Array);
        assert.ok(e < 1e-12, `${name}: max rel ${e}`);
      }
    });
    test(`${c.name}: inference graph logits within 1e-12`, async () => {
      const f = feeds(c, false);
      const [cls, all] = await Promise.all([run(build(c, false, true), f), run(build(c, false, false), f)]);
      const e = relErr(cls.logits.data as Float64Array, all.logits.data as Float64Array);
      assert.ok(e < 1e-12, `logits: max rel ${e}`);
    });
  }

  test('the tail computes fewer class-token rows: the training graph has fewer FLOP-heavy Gemm rows', () => {
    // The last layer's FFN runs on [B, D] instead of [B*T, D].
    const c = cases[0];
    const fc1Rows = (g: Graph) =>
      g.nodes
        .filter((n) => n.op === 'Gemm' && g.values.get(n.outputs[0])!.shape[1] === c.cfg.mlp_hidden && n.name.includes('mlp'))
        .map((n) => g.values.get(n.outputs[0])!.shape[0]);
    const T = numTokens(c.cfg);
    assert.deepEqual(fc1Rows(build(c, true, false)).filter((r) => r === BATCH).length, 0);
    assert.ok(fc1Rows(build(c, true, true)).includes(BATCH), `fc1 rows ${fc1Rows(build(c, true, true))}, expected one layer with ${BATCH} (not ${BATCH * T})`);
  });
});
