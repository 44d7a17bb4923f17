// The frozen teacher of distillation: a second inference session whose softened probabilities
// go into every training step (trainingLoss in src/model/vit-graph.ts).

import type { Model } from '../core/model.js';
import type { Tensor } from '../core/params.js';
import { Predictor } from '../model/engine.js';
import type { HostTensor } from '../runtime/ort.js';
import type { Distillation } from '../model/vit-graph.js';

/** Distillation weights used when a run distils and names none. */
export const DEFAULT_DISTILLATION: Distillation = { alpha: 0.9, temperature: 2 };

/** softmax(logits / T) per row of logits [B, K], in float64. */
export function softTargets(logits: Tensor, temperature: number): Tensor {
  const [B, K] = logits.shape;
  const out = new Float64Array(B * K);
  for (let b = 0; b < B; b++) {
    let max = -Infinity;
    for (let k = 0; k < K; k++) max = Math.max(max, logits.data[b * K + k] / temperature);
    let sum = 0;
    for (let k = 0; k < K; k++) sum += out[b * K + k] = Math.exp(logits.data[b * K + k] / temperature - max);
    for (let k = 0; k < K; k++) out[b * K + k] /= sum;
  }
  return { shape: [B, K], data: out };
}

/** What the teacher gives a step: softened probabilities [B, K] and, when asked, hidden states [S, B*T, D]. */
export interface TeacherTargets {
  probs: Tensor;
  hidden?: HostTensor;
}

/**
 * The frozen deep model of a distillation, run in its own onnxruntime session: softened
 * probabilities for each batch and, for hidden-state matching, its residual streams after the
 * layers `hiddenAfter`.
 */
export class Teacher {
  private constructor(
    private readonly predictor: Predictor,
    readonly temperature: number,
  ) {}

  static async create(model: Model, temperature: number, threads?: number, hiddenAfter?: number[]): Promise<Teacher> {
    return new Teacher(await Predictor.create(model, { threads, hiddenAfter }), temperature);
  }

  /** The teacher's targets for a batch x [B, C, S, S]. */
  async targets(x: { shape: number[]; data: Float32Array }): Promise<TeacherTargets> {
    const { logits, hidden } = await this.predictor.forward(x);
    return { probs: softTargets(logits, this.temperature), ...(hidden ? { hidden } : {}) };
  }

  release(): Promise<void> {
    return this.predictor.release();
  }
}
