// Runs training steps: holds the flat parameter and AdamW buffers between steps and one ONNX
// session per join-phase pattern (see src/model/vit-graph.ts: a block joins its attention
// entry first, then its FFN entry; each pattern is one graph, built when first needed).

import type { JoinCoefficients, Model } from '../core/model.js';
import type { Tensor } from '../core/params.js';
import { toOnnxBytes } from '../graph/onnx.js';
import { oneHotTargets, ParamLayout, sessionOptionsFor, type FloatType } from '../model/engine.js';
import { phasesFor, type Distillation, type GraphStructure } from '../model/vit-graph.js';
import { Session, type HostTensor, type SessionOptions } from '../runtime/ort.js';
import { buildTrainStepGraph, DEFAULT_ADAMW, type AdamWConfig } from './step-graph.js';
import { Rng } from '../core/rng.js';

export interface StepRunnerOptions extends SessionOptions {
  batch: number;
  dtype?: FloatType;
  optim?: Partial<AdamWConfig>;
  /**
   * Drop-path (stochastic depth) rate of the last layer; layer i drops with rate * i / (depth - 1)
   * (timm's rule), attention and FFN entries independently, per sample. Off at 0.
   */
  dropPath?: number;
  /** Seed of the drop-path masks (their RNG state is `dropRng.s`, for checkpoints). */
  seed?: number;
  /** Distillation: every step then takes the teacher's softened probabilities (see softTargets), and its hidden states with `hidden`. */
  distill?: Distillation;
}

/** What a step takes besides the batch: drop-path keep factors, the teacher's probabilities. */
export interface StepExtras {
  /** [2*depth, B*T, 1]; drawn from dropRng when absent. */
  dropKeep?: F;
  /** [B, K], with the distill option. */
  teacherProbs?: Tensor | HostTensor;
  /** [L - 1, B*T, D], with distill.hidden: the teacher's residual streams at the block boundaries. */
  teacherHidden?: Tensor | HostTensor;
}

/**
 * Drop-path keep factors [2*depth, B*T, 1]: per layer and sub-layer, per sample, 0 (dropped)
 * or 1 / (1 - rate) (kept), repeated over the sample's T token rows.
 */
export function dropPathMasks(rng: Rng, depth: number, batch: number, tokens: number, rate: number): Float32Array {
  const out = new Float32Array(2 * depth * batch * tokens);
  for (let l = 0; l < depth; l++) {
    const r = depth > 1 ? (rate * l) / (depth - 1) : rate;
    for (let sub = 0; sub < 2; sub++) {
      const row = (2 * l + sub) * batch * tokens;
      for (let b = 0; b < batch; b++) {
        const keep = r > 0 && rng.uniform() < r ? 0 : 1 / (1 - r);
        out.fill(keep, row + b * tokens, row + (b + 1) * tokens);
      }
    }
  }
  return out;
}

export interface StepResult {
  loss: number;
  gradNorm: number;
}

type F = Float32Array | Float64Array;

export class StepRunner {
  readonly layout: ParamLayout;
  params: F;
  m: F;
  v: F;
  /** Steps taken (AdamW's t is step + 1 in the next step). */
  step = 0;
  /** Drop-path mask RNG (checkpoint `dropRng.s` to resume the same masks). */
  dropRng: Rng;
  private readonly sessions = new Map<string, Session>();
  private readonly dtype: FloatType;

  constructor(
    private readonly model: Model,
    private readonly opts: StepRunnerOptions,
  ) {
    this.dtype = opts.dtype ?? 'float32';
    this.layout = new ParamLayout(model.config);
    this.params = this.layout.pack(model.params, this.dtype);
    const Arr = this.dtype === 'float32' ? Float32Array : Float64Array;
    this.m = new Arr(this.layout.total);
    this.v = new Arr(this.layout.total);
    this.dropRng = new Rng(opts.seed ?? 0);
  }

  private structureFor(join?: JoinCoefficients): GraphStructure {
    const s = this.model.structure;
    if (s.kind !== 'branched') return { kind: 'plain' };
    if (!join) throw new Error('a branched model needs join coefficients for every step');
    return { kind: 'branched', branches: s.branches, phases: phasesFor(join.attn, join.ffn) };
  }

  private async session(structure: GraphStructure): Promise<Session> {
    const key = structure.kind === 'plain' ? 'plain' : structure.phases.join(',');
    let s = this.sessions.get(key);
    if (!s) {
      const g = buildTrainStepGraph(this.model.config, structure, {
        batch: this.opts.batch,
        dtype: this.dtype,
        optim: { ...DEFAULT_ADAMW, ...this.opts.optim },
        dropPath: (this.opts.dropPath ?? 0) > 0,
        distill: this.opts.distill,
      });
      // Pool threads spin-wait: training steps run back to back, and each of a step's ~2,500
      // nodes would otherwise wake a sleeping thread (faster steps: docs/engine.md).
      s = await Session.create(toOnnxBytes(g), sessionOptionsFor(this.dtype, { spinning: true, ...this.opts }));
      this.sessions.set(key, s);
    }
    return s;
  }

  private arr(values: ArrayLike<number>): F {
    return this.dtype === 'float32' ? Float32Array.from(values) : Float64Array.from(values);
  }

  /** A host tensor's data in the step's dtype (converted when it is the other float type). */
  private floats(data: HostTensor['data'] | Tensor['data']): F {
    const same = this.dtype === 'float32' ? data instanceof Float32Array : data instanceof Float64Array;
    return same ? (data as F) : this.arr(data as ArrayLike<number>);
  }

  /**
   * One optimizer step on a batch. `targets` are soft targets [B, K] (see oneHotTargets).
   * With dropPath > 0 the masks are drawn from `dropRng` unless `extras.dropKeep` is given;
   * with distill, `extras.teacherProbs` is required (and `extras.teacherHidden` with distill.hidden).
   */
  async run(x: Tensor | HostTensor, targets: Tensor | HostTensor, lr: number, join?: JoinCoefficients, extras: StepExtras = {}): Promise<StepResult> {
    const session = await this.session(this.structureFor(join));
    const feeds: Record<string, HostTensor> = {
      params: { shape: [this.layout.total], data: this.params },
      m: { shape: [this.layout.total], data: this.m },
      v: { shape: [this.layout.total], data: this.v },
      x: { shape: x.shape, data: this.floats(x.data) },
      targets: { shape: targets.shape, data: this.floats(targets.data) },
      lr: { shape: [], data: this.arr([lr]) },
      step: { shape: [], data: this.arr([this.step + 1]) },
    };
    if (join) {
      feeds.join_attn = { shape: [join.attn.length], data: this.arr(join.attn) };
      feeds.join_ffn = { shape: [join.ffn.length], data: this.arr(join.ffn) };
    }
    const rate = this.opts.dropPath ?? 0;
    if (rate > 0) {
      const cfg = this.model.config;
      const T = (cfg.img_size / cfg.patch_size) ** 2 + 1;
      const keep = extras.dropKeep ?? dropPathMasks(this.dropRng, cfg.depth, x.shape[0], T, rate);
      feeds.drop_keep = { shape: [2 * cfg.depth, x.shape[0] * T, 1], data: this.dtype === 'float32' ? Float32Array.from(keep) : Float64Array.from(keep) };
    }
    if (this.opts.distill) {
      const p = extras.teacherProbs;
      if (!p) throw new Error('a distilling StepRunner needs the teacher\'s probabilities for every step');
      feeds.teacher_probs = { shape: p.shape, data: this.floats(p.data) };
      if (this.opts.distill.hidden) {
        const h = extras.teacherHidden;
        if (!h) throw new Error('a StepRunner matching hidden states needs the teacher\'s hidden states for every step');
        feeds.teacher_hidden = { shape: h.shape, data: this.floats(h.data) };
      }
    }
    const out = await session.run(feeds);
    const loss = Number(out.loss.data[0]);
    // Keep the previous state if the step produced non-finite numbers: the caller decides.
    if (!Number.isFinite(loss)) return { loss, gradNorm: Number(out.grad_norm.data[0]) };
    this.params = out.params_out.data as F;
    this.m = out.m_out.data as F;
    this.v = out.v_out.data as F;
    this.step++;
    return { loss, gradNorm: Number(out.grad_norm.data[0]) };
  }

  /** The current model (parameters unpacked to float64, structure as given). */
  currentModel(): Model {
    return { ...this.model, params: this.layout.unpack(this.params) };
  }

  async release(): Promise<void> {
    for (const s of this.sessions.values()) await s.release();
    this.sessions.clear();
  }
}

export { oneHotTargets };
