// Runs training steps: holds the flat parameter and AdamW buffers between steps and one ONNX
// session per join-phase pattern (see src/model/vit-graph.ts: a block joins its attention
// entry first, then its FFN entry; each pattern is one graph, built when first needed).

import type { Model } from '../core/model.js';
import type { Tensor } from '../core/params.js';
import { toOnnxBytes } from '../graph/onnx.js';
import { oneHotTargets, ParamLayout, sessionOptionsFor, type FloatType } from '../model/engine.js';
import { phasesFor, type GraphStructure } from '../model/vit-graph.js';
import { Session, type HostTensor, type SessionOptions } from '../runtime/ort.js';
import { buildTrainStepGraph, DEFAULT_ADAMW, type AdamWConfig } from './step-graph.js';

export interface StepRunnerOptions extends SessionOptions {
  batch: number;
  dtype?: FloatType;
  optim?: Partial<AdamWConfig>;
  /** Drop-path rate; > 0 adds the drop_keep input (the caller draws the masks). */
  dropPath?: number;
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
  }

  private structureFor(join?: { attn: number[]; ffn: number[] }): GraphStructure {
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
      });
      s = await Session.create(toOnnxBytes(g), sessionOptionsFor(this.dtype, this.opts));
      this.sessions.set(key, s);
    }
    return s;
  }

  private arr(values: ArrayLike<number>): F {
    return this.dtype === 'float32' ? Float32Array.from(values) : Float64Array.from(values);
  }

  /**
   * One optimizer step on a batch. `targets` are soft targets [B, K] (see oneHotTargets);
   * `dropKeep` [2*depth, B*T, 1] when the runner was made with dropPath > 0.
   */
  async run(x: Tensor | HostTensor, targets: Tensor | HostTensor, lr: number, join?: { attn: number[]; ffn: number[] }, dropKeep?: F): Promise<StepResult> {
    const session = await this.session(this.structureFor(join));
    const feeds: Record<string, HostTensor> = {
      params: { shape: [this.layout.total], data: this.params },
      m: { shape: [this.layout.total], data: this.m },
      v: { shape: [this.layout.total], data: this.v },
      x: { shape: x.shape, data: x.data instanceof Float64Array && this.dtype === 'float32' ? this.arr(x.data) : (x.data as F) },
      targets: { shape: targets.shape, data: targets.data instanceof Float64Array && this.dtype === 'float32' ? this.arr(targets.data) : (targets.data as F) },
      lr: { shape: [], data: this.arr([lr]) },
      step: { shape: [], data: this.arr([this.step + 1]) },
    };
    if (join) {
      feeds.join_attn = { shape: [join.attn.length], data: this.arr(join.attn) };
      feeds.join_ffn = { shape: [join.ffn.length], data: this.arr(join.ffn) };
    }
    if ((this.opts.dropPath ?? 0) > 0) {
      if (!dropKeep) throw new Error('dropKeep is required when dropPath > 0');
      const T = (this.model.config.img_size / this.model.config.patch_size) ** 2 + 1;
      feeds.drop_keep = { shape: [2 * this.model.config.depth, x.shape[0] * T, 1], data: dropKeep };
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
