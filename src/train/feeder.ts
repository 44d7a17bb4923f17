// The training batches of a run, built into two buffers in turn so that batch s+1 is prepared
// (crop, flip, random erasing, mixup/cutmix) while the engine runs step s.

import type { Rng } from '../core/rng.js';
import { mixBatch, mixedTargets, randomErase } from '../data/augment.js';
import { fillBatch } from '../data/batch.js';
import type { ImageSet } from '../data/idx.js';
import { batchSpec, type TrainConfig } from './trainer.js';

export class BatchFeeder {
  private readonly per: number;
  private readonly bufs: Float32Array[];
  private readonly labels: number[][];
  private readonly lams = [1, 1];

  constructor(
    private readonly set: ImageSet,
    private readonly cfg: TrainConfig,
    private readonly rng: Rng,
  ) {
    const S = cfg.model.img_size;
    this.per = cfg.model.in_chans * S * S;
    this.bufs = [new Float32Array(cfg.batch * this.per), new Float32Array(cfg.batch * this.per)];
    this.labels = [new Array<number>(cfg.batch), new Array<number>(cfg.batch)];
  }

  /** Builds batch `s` of the epoch's `order` into buffer `k`. */
  prepare(order: Uint32Array, s: number, k: number): void {
    const { cfg, rng } = this;
    const { in_chans: C, img_size: S } = cfg.model;
    fillBatch(this.set, order.subarray(s * cfg.batch, (s + 1) * cfg.batch), batchSpec(cfg), rng, this.bufs[k], this.labels[k]);
    const erase = cfg.augment.erase ?? 0;
    if (erase > 0) for (let b = 0; b < cfg.batch; b++) randomErase(this.bufs[k], b * this.per, C, S, erase, rng);
    const mix = { mixup: cfg.augment.mixup ?? 0, cutmix: cfg.augment.cutmix ?? 0, prob: cfg.augment.mixProb ?? 1 };
    this.lams[k] = mixBatch(this.bufs[k], cfg.batch, C, S, mix, rng);
  }

  /** Buffer k as the model input x [B, C, S, S]. */
  input(k: number): { shape: number[]; data: Float32Array } {
    const { in_chans: C, img_size: S } = this.cfg.model;
    return { shape: [this.cfg.batch, C, S, S], data: this.bufs[k] };
  }

  /** Buffer k's targets [B, K]: one-hot with label smoothing, mixed as its images were. */
  targets(k: number): { shape: number[]; data: Float32Array } {
    const K = this.cfg.model.num_classes;
    return { shape: [this.cfg.batch, K], data: mixedTargets(this.labels[k], K, this.cfg.labelSmoothing, this.lams[k]) };
  }
}
