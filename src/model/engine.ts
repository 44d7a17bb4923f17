// Model graphs run by the runtime adapter: prediction (logits) and loss + gradients.
//
// Parameters reach a graph in one of two ways:
//   'initializers'  baked into the graph (inference and export: ORT can pre-pack weights);
//   'flat'          one input `params` [P] sliced in-graph (training and gradients: one copy
//                   in, and the gradient leaves as one flat [P] output).

import { toHalfArray } from '../core/half.js';
import type { ViTConfig } from '../core/config.js';
import type { JoinCoefficients, Model } from '../core/model.js';
import { paramSpecs, type Params, type Tensor } from '../core/params.js';
import { gradients } from '../graph/autodiff.js';
import { B, Graph, type Dim, type FloatElem, type Value } from '../graph/graph.js';
import { toOnnxBytes } from '../graph/onnx.js';
import { Session, type HostTensor, type SessionOptions } from '../runtime/ort.js';
import { buildForward, buildTrainingLoss, phasesFor, type Distillation, type GraphStructure, type ParamBinding } from './vit-graph.js';

/** The element types the engine computes in (onnxruntime has no float16 training kernels). */
export type FloatType = Exclude<FloatElem, 'float16'>;

export interface ParamEntry {
  name: string;
  shape: number[];
  offset: number;
  size: number;
}

/** Where each parameter lives in the flat buffer (timm state_dict order). */
export class ParamLayout {
  readonly entries: ParamEntry[];
  readonly total: number;

  constructor(cfg: ViTConfig) {
    let offset = 0;
    this.entries = paramSpecs(cfg).map((s) => {
      const size = s.shape.reduce((a, b) => a * b, 1);
      const e = { name: s.name, shape: s.shape, offset, size };
      offset += size;
      return e;
    });
    this.total = offset;
  }

  pack(params: Params, dtype: FloatType = 'float32'): Float32Array | Float64Array {
    const out = dtype === 'float32' ? new Float32Array(this.total) : new Float64Array(this.total);
    for (const e of this.entries) {
      const t = params.get(e.name);
      if (!t || t.data.length !== e.size) throw new Error(`parameter '${e.name}' missing or of the wrong size`);
      out.set(t.data, e.offset);
    }
    return out;
  }

  unpack(flat: Float32Array | Float64Array): Params {
    const params: Params = new Map();
    for (const e of this.entries) {
      params.set(e.name, { shape: [...e.shape], data: Float64Array.from(flat.subarray(e.offset, e.offset + e.size)) });
    }
    return params;
  }
}

export function initializerBinding(g: Graph, params: Params): ParamBinding {
  const cache = new Map<string, Value>();
  return (name, shape, transposed = false) => {
    const key = transposed ? `${name}^T` : name;
    let v = cache.get(key);
    if (!v) {
      const t = params.get(name);
      if (!t) throw new Error(`parameter '${name}' is missing`);
      let src = t.data;
      let dims = shape;
      if (transposed) {
        const [O, I] = shape;
        src = new Float64Array(O * I);
        for (let o = 0; o < O; o++) for (let i = 0; i < I; i++) src[i * O + o] = t.data[o * I + i];
        dims = [I, O];
      }
      const data = g.dtype === 'float32' ? Float32Array.from(src) : g.dtype === 'float16' ? toHalfArray(src) : Float64Array.from(src);
      v = g.initializer(transposed ? `${name}.T` : name, g.dtype, dims, data);
      cache.set(key, v);
    }
    return v;
  };
}

/** Binds parameters to slices of one flat input; `values` maps each name to its graph value. */
export function flatBinding(g: Graph, flat: Value, layout: ParamLayout): { bind: ParamBinding; values: Map<string, Value> } {
  const values = new Map<string, Value>();
  const byName = new Map(layout.entries.map((e) => [e.name, e]));
  const bind: ParamBinding = (name, _shape, transposed) => {
    if (transposed) throw new Error(`flat parameter binding: '${name}' is only bound in timm layout`);
    let v = values.get(name);
    if (!v) {
      const e = byName.get(name);
      if (!e) throw new Error(`parameter '${name}' is not in the layout`);
      v = g.scope('param', () => g.reshape(g.slice(flat, 0, e.offset, e.offset + e.size), e.shape));
      values.set(name, v);
    }
    return v;
  };
  return { bind, values };
}

/** The graph structure for a model's (or overriding) join state. */
export function graphStructureOf(model: Model, join?: JoinCoefficients): { structure: GraphStructure; attn?: number[]; ffn?: number[] } {
  const s = model.structure;
  if (s.kind !== 'branched') {
    if (join) throw new Error(`join coefficients given, but the model is ${s.kind}, not branched`);
    return { structure: { kind: 'plain' } };
  }
  const attn = join?.attn ?? s.attn;
  const ffn = join?.ffn ?? s.ffn;
  const L = model.config.depth / s.branches;
  if (attn.length !== L || ffn.length !== L) throw new Error(`join coefficients must list ${L} values per kind (one per block)`);
  return { structure: { kind: 'branched', branches: s.branches, phases: phasesFor(attn, ffn) }, attn, ffn };
}

function joinInputs(g: Graph, structure: GraphStructure): { joinAttn?: Value; joinFfn?: Value } {
  if (structure.kind !== 'branched') return {};
  const L = structure.phases.length;
  return { joinAttn: g.input('join_attn', g.dtype, [L]), joinFfn: g.input('join_ffn', g.dtype, [L]) };
}

/**
 * Session options for a graph of `dtype`. Float64 graphs run with 'basic' optimizations: ORT's
 * extended level fuses the decomposed float64 LayerNorm into a kernel with float32 statistics,
 * which silently costs ~1e-8 relative precision (measured: 9.6e-9 vs 1.2e-15 logit error).
 */
export function sessionOptionsFor(dtype: FloatType, opts: SessionOptions): SessionOptions {
  return { ...opts, optimization: opts.optimization ?? (dtype === 'float64' ? 'basic' : 'all') };
}

function floatArray(dtype: FloatType, values: ArrayLike<number>): Float32Array | Float64Array {
  return dtype === 'float32' ? Float32Array.from(values) : Float64Array.from(values);
}

/** Builds the inference graph of a model: input x [batch, C, S, S] -> logits [batch, K]. */
export function buildPredictGraph(model: Model, opts: { dtype?: FloatType; batch?: Dim; join?: JoinCoefficients; hiddenAfter?: number[] } = {}): { graph: Graph; structure: GraphStructure; attn?: number[]; ffn?: number[] } {
  const dtype = opts.dtype ?? 'float32';
  const cfg = model.config;
  const g = new Graph('vitfold_predict', { dtype });
  const { structure, attn, ffn } = graphStructureOf(model, opts.join);
  const x = g.input('x', dtype, [opts.batch ?? B, cfg.in_chans, cfg.img_size, cfg.img_size]);
  // float32: heads read in place by ORT's FusedMatMul (ForwardOptions.stridedHeads), faster than
  // transposed heads (docs/benchmarks.md); ORT has no float64 FusedMatMul.
  const hidden = new Map<number, Value>();
  const onBlockOutput = opts.hiddenAfter?.length ? (b: number, z: Value) => void hidden.set(b, z) : undefined;
  const logits = buildForward(g, cfg, structure, initializerBinding(g, model.params), { x, ...joinInputs(g, structure) }, { stridedHeads: dtype === 'float32', onBlockOutput });
  g.output(logits, 'logits');
  if (onBlockOutput) {
    const taps = opts.hiddenAfter!.map((b) => {
      const z = hidden.get(b);
      if (!z) throw new Error(`no hidden state after block ${b}: the model has blocks 0..${hidden.size} and the last one has none`);
      return g.reshape(z, [1, ...z.shape]); // [1, B*T, D]
    });
    g.output(taps.length === 1 ? taps[0] : g.concat(taps, 0), 'hidden'); // [n, B*T, D]
  }
  return { graph: g, structure, attn, ffn };
}

/**
 * Options of Predictor.create: engine threads, the float type (float32 default, float64 for
 * checks) and join coefficients overriding a branched model's.
 */
export interface PredictOptions extends SessionOptions {
  dtype?: FloatType;
  /** Overrides a branched model's join coefficients. */
  join?: JoinCoefficients;
  /**
   * Also output the residual streams after these blocks (ForwardOptions.onBlockOutput; a
   * plain model's blocks are its layers): Predictor.forward's hidden [n, B*T, D].
   */
  hiddenAfter?: number[];
}

/** Anything that turns images x [B, C, S, S] into logits [B, K]: a Predictor, or an exported file's session. */
export interface Classifier {
  predict(x: { shape: number[]; data: Float32Array | Float64Array }): Promise<Tensor>;
  release(): Promise<void>;
}

/**
 * A model (plain, branched at its join state, or folded) run by onnxruntime-node: logits [B, K]
 * for images [B, C, S, S]. Create with Predictor.create, free with release().
 */
export class Predictor implements Classifier {
  private constructor(
    private readonly session: Session,
    private readonly dtype: FloatType,
    private readonly cfg: ViTConfig,
    private readonly join?: JoinCoefficients,
  ) {}

  static async create(model: Model, opts: PredictOptions = {}): Promise<Predictor> {
    const dtype = opts.dtype ?? 'float32';
    const { graph, attn, ffn } = buildPredictGraph(model, { dtype, join: opts.join, hiddenAfter: opts.hiddenAfter });
    const session = await Session.create(toOnnxBytes(graph), sessionOptionsFor(dtype, opts));
    return new Predictor(session, dtype, model.config, attn && ffn ? { attn, ffn } : undefined);
  }

  /** x [B, C, S, S] -> logits [B, K] (float64 copies of the engine's output). Data already in the engine's dtype is not copied. */
  async predict(x: { shape: number[]; data: Float32Array | Float64Array }): Promise<Tensor> {
    return (await this.forward(x)).logits;
  }

  /** predict's logits and, when created with hiddenAfter, the hidden states [n, B*T, D] as the engine returns them. */
  async forward(x: { shape: number[]; data: Float32Array | Float64Array }): Promise<{ logits: Tensor; hidden?: HostTensor }> {
    const { in_chans: C, img_size: S } = this.cfg;
    if (x.shape.length !== 4 || x.shape[1] !== C || x.shape[2] !== S || x.shape[3] !== S) {
      throw new Error(`input x has shape ${JSON.stringify(x.shape)}, expected [B, ${C}, ${S}, ${S}]`);
    }
    const same = (this.dtype === 'float32') === x.data instanceof Float32Array;
    const feeds: Record<string, { shape: number[]; data: Float32Array | Float64Array }> = { x: { shape: x.shape, data: same ? x.data : floatArray(this.dtype, x.data) } };
    if (this.join) {
      feeds.join_attn = { shape: [this.join.attn.length], data: floatArray(this.dtype, this.join.attn) };
      feeds.join_ffn = { shape: [this.join.ffn.length], data: floatArray(this.dtype, this.join.ffn) };
    }
    const out = await this.session.run(feeds);
    return { logits: { shape: out.logits.shape, data: Float64Array.from(out.logits.data as Float32Array) }, ...(out.hidden ? { hidden: out.hidden } : {}) };
  }

  release(): Promise<void> {
    return this.session.release();
  }
}

/** One-hot targets [B, K], label-smoothed: (1 - eps) on the label plus eps / K everywhere. */
export function oneHotTargets(labels: number[], numClasses: number, smoothing = 0): Tensor {
  const data = new Float64Array(labels.length * numClasses).fill(smoothing / numClasses);
  labels.forEach((y, b) => {
    if (!Number.isInteger(y) || y < 0 || y >= numClasses) throw new Error(`label ${y} at index ${b} is not a class in [0, ${numClasses})`);
    data[b * numClasses + y] += 1 - smoothing;
  });
  return { shape: [labels.length, numClasses], data };
}

/** Options of lossAndGradients. */
export interface GradientOptions extends SessionOptions {
  /** float32 (the engine) or float64 (exact checks; decomposed erf and LayerNorm). */
  dtype?: FloatType;
  join?: JoinCoefficients;
  labelSmoothing?: number;
  /** Distillation from the teacher's softened probabilities [B, K] and, with `hidden`, its streams teacherHidden [L - 1, B*T, D] (see buildTrainingLoss). */
  distill?: Distillation & { teacherProbs: Tensor; teacherHidden?: Tensor };
}

/** The loss of a batch and the gradient of every parameter (by timm name). */
export interface LossAndGradients {
  loss: number;
  /** d loss / d parameter, by timm name. */
  grads: Params;
}

/** Builds loss + gradient graph: inputs params [P], x, targets [, join]; outputs loss, grad [P]. */
export function buildGradientGraph(cfg: ViTConfig, structure: GraphStructure, batch: number, dtype: FloatType, distill?: Distillation): Graph {
  const g = new Graph('vitfold_gradients', { dtype });
  const layout = new ParamLayout(cfg);
  const flat = g.input('params', dtype, [layout.total]);
  const x = g.input('x', dtype, [batch, cfg.in_chans, cfg.img_size, cfg.img_size]);
  const targets = g.input('targets', dtype, [batch, cfg.num_classes]);
  const { bind, values } = flatBinding(g, flat, layout);
  const loss = buildTrainingLoss(g, cfg, structure, bind, { x, ...joinInputs(g, structure) }, targets, distill);
  g.output(loss, 'loss');
  const wrt = layout.entries.map((e) => values.get(e.name)!);
  const grads = gradients(g, loss, wrt);
  const flatGrads = grads.map((gv, i) => g.reshape(gv ?? g.mul(wrt[i], g.scalar(0)), [layout.entries[i].size]));
  g.output(g.concat(flatGrads, 0), 'grad');
  return g;
}

/**
 * The loss (mean cross-entropy, optional label smoothing) and the gradient of every parameter
 * for one batch, at the model's join state or `opts.join`.
 */
export async function lossAndGradients(model: Model, x: Tensor, labels: number[], opts: GradientOptions = {}): Promise<LossAndGradients> {
  const dtype = opts.dtype ?? 'float32';
  const cfg = model.config;
  const batch = x.shape[0];
  if (labels.length !== batch) throw new Error(`${labels.length} labels for a batch of ${batch}`);
  const { structure, attn, ffn } = graphStructureOf(model, opts.join);
  const layout = new ParamLayout(cfg);
  const session = await Session.create(toOnnxBytes(buildGradientGraph(cfg, structure, batch, dtype, opts.distill)), sessionOptionsFor(dtype, opts));
  try {
    const t = oneHotTargets(labels, cfg.num_classes, opts.labelSmoothing ?? 0);
    const feeds: Record<string, { shape: number[]; data: Float32Array | Float64Array }> = {
      params: { shape: [layout.total], data: layout.pack(model.params, dtype) },
      x: { shape: x.shape, data: floatArray(dtype, x.data) },
      targets: { shape: t.shape, data: floatArray(dtype, t.data) },
    };
    if (attn && ffn) {
      feeds.join_attn = { shape: [attn.length], data: floatArray(dtype, attn) };
      feeds.join_ffn = { shape: [ffn.length], data: floatArray(dtype, ffn) };
    }
    if (opts.distill) feeds.teacher_probs = { shape: opts.distill.teacherProbs.shape, data: floatArray(dtype, opts.distill.teacherProbs.data) };
    const th = opts.distill?.teacherHidden;
    if (opts.distill?.hidden && th) feeds.teacher_hidden = { shape: th.shape, data: floatArray(dtype, th.data) };
    const out = await session.run(feeds);
    return { loss: Number(out.loss.data[0]), grads: layout.unpack(out.grad.data as Float32Array) };
  } finally {
    await session.release();
  }
}
