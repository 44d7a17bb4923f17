// One training step as one ONNX graph: forward, loss, reverse-mode gradients, optional
// gradient-norm clipping and AdamW, all in the engine.
//
// Parameters and the AdamW moments live in three flat buffers [P] that go in as inputs and
// come back as outputs. AdamW therefore runs as ~15 element-wise ops over the whole buffer
// instead of ~10 ops per tensor. Weight decay follows timm: linear
// and patch weights decay; biases, norms, class token and position embedding do not.
//
// Update (PyTorch AdamW, step t >= 1):
//   p <- p (1 - lr wd mask);  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
//   p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

import type { ViTConfig } from '../core/config.js';
import { paramSpecs } from '../core/params.js';
import { gradients } from '../graph/autodiff.js';
import { Graph, type Value } from '../graph/graph.js';
import { flatBinding, ParamLayout, type FloatType } from '../model/engine.js';
import { buildTrainingLoss, type Distillation, type GraphStructure } from '../model/vit-graph.js';

export interface AdamWConfig {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Clip the global gradient norm to this value (null: no clipping). */
  clipNorm: number | null;
}

export const DEFAULT_ADAMW: AdamWConfig = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.05, clipNorm: null };

export interface StepGraphOptions {
  batch: number;
  dtype?: FloatType;
  optim?: Partial<AdamWConfig>;
  /** Adds the input drop_keep [2*depth, batch*T, 1] (stochastic depth). */
  dropPath?: boolean;
  /** Adds the inputs teacher_probs [batch, K] (and teacher_hidden) and the distillation terms of buildTrainingLoss. */
  distill?: Distillation;
}

/** 1 for parameters that get weight decay (timm: weights of linear and patch layers), else 0. */
export function decayMask(cfg: ViTConfig, layout: ParamLayout): Float64Array {
  const roles = new Map(paramSpecs(cfg).map((s) => [s.name, s.role]));
  const mask = new Float64Array(layout.total);
  for (const e of layout.entries) if (roles.get(e.name) === 'weight') mask.fill(1, e.offset, e.offset + e.size);
  return mask;
}

/**
 * Inputs: params, m, v [P]; x [batch, C, S, S]; targets [batch, K]; lr, step (scalars);
 * join_attn, join_ffn [L] for branched graphs; drop_keep with dropPath; teacher_probs (and teacher_hidden) with distill.
 * Outputs: loss, grad_norm (before clipping), params_out, m_out, v_out.
 */
export function buildTrainStepGraph(cfg: ViTConfig, structure: GraphStructure, opts: StepGraphOptions): Graph {
  const dtype = opts.dtype ?? 'float32';
  const o = { ...DEFAULT_ADAMW, ...opts.optim };
  const g = new Graph('vitfold_train_step', { dtype });
  const layout = new ParamLayout(cfg);
  const P = layout.total;
  const params = g.input('params', dtype, [P]);
  const m = g.input('m', dtype, [P]);
  const v = g.input('v', dtype, [P]);
  const x = g.input('x', dtype, [opts.batch, cfg.in_chans, cfg.img_size, cfg.img_size]);
  const targets = g.input('targets', dtype, [opts.batch, cfg.num_classes]);
  const lr = g.input('lr', dtype, []);
  const step = g.input('step', dtype, []);
  let join: { joinAttn?: Value; joinFfn?: Value } = {};
  if (structure.kind === 'branched') {
    const L = structure.phases.length;
    join = { joinAttn: g.input('join_attn', dtype, [L]), joinFfn: g.input('join_ffn', dtype, [L]) };
  }
  const T = (cfg.img_size / cfg.patch_size) ** 2 + 1;
  const dropKeep = opts.dropPath ? g.input('drop_keep', dtype, [2 * cfg.depth, opts.batch * T, 1]) : undefined;

  const { bind, values } = flatBinding(g, params, layout);
  const loss = buildTrainingLoss(g, cfg, structure, bind, { x, ...join, dropKeep }, targets, opts.distill);
  g.output(loss, 'loss');

  const wrt = layout.entries.map((e) => values.get(e.name)!);
  const grads = gradients(g, loss, wrt);
  let grad = g.scope('grad', () => g.concat(grads.map((gv, i) => g.reshape(gv ?? g.mul(wrt[i], g.scalar(0)), [layout.entries[i].size])), 0)); // [P]

  return g.scope('adamw', () => {
    const norm = g.sqrt(g.reduceSum(g.mul(grad, grad), [0], false));
    g.output(norm, 'grad_norm');
    if (o.clipNorm !== null) {
      // scale = min(1, clip / (norm + 1e-6)), as torch.nn.utils.clip_grad_norm_.
      const ratio = g.div(g.scalar(o.clipNorm), g.add(norm, g.scalar(1e-6)));
      const scale = g.node('Min', [ratio, g.scalar(1)], {}, [{ dtype, shape: [] }])[0];
      grad = g.mul(grad, scale);
    }
    const one = g.scalar(1);
    const bc1 = g.sub(one, g.node('Pow', [g.scalar(o.beta1), step], {}, [{ dtype, shape: [] }])[0]);
    const bc2 = g.sub(one, g.node('Pow', [g.scalar(o.beta2), step], {}, [{ dtype, shape: [] }])[0]);
    const mNew = g.add(g.mul(m, g.scalar(o.beta1)), g.mul(grad, g.scalar(1 - o.beta1)));
    const vNew = g.add(g.mul(v, g.scalar(o.beta2)), g.mul(g.mul(grad, grad), g.scalar(1 - o.beta2)));
    // lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps) = stepSize * m / (sqrt(v) + eps sqrt(bc2)) with
    // stepSize = lr sqrt(bc2) / bc1: the bias corrections stay scalar work, no pass over [P].
    const sqrtBc2 = g.sqrt(bc2);
    const denom = g.add(g.sqrt(vNew), g.mul(g.scalar(o.eps), sqrtBc2));
    const stepSize = g.div(g.mul(lr, sqrtBc2), bc1); // scalar
    let p = params;
    if (o.weightDecay > 0) {
      // p (1 - lr wd) where decayed, p elsewhere: the factor is one Where over a constant mask
      const mask = g.constant(decayMask(cfg, layout), [P], 'bool');
      p = g.mul(p, g.where(mask, g.sub(one, g.mul(lr, g.scalar(o.weightDecay))), one));
    }
    p = g.sub(p, g.mul(g.div(mNew, denom), stepSize));
    g.output(p, 'params_out');
    g.output(mNew, 'm_out');
    g.output(vNew, 'v_out');
    return g;
  });
}
