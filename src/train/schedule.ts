// Schedules as pure functions of training progress (docs/method.md section 2; nanoGPT's get_lr).
//
// Join schedule: progress p in [0, 1] -> every block's (a_b, f_b). Inside the window
// [start, end], each block's attention coefficient ramps 0 -> 1, then its FFN coefficient
// ramps 0 -> 1 (f_b > 0 only once a_b = 1). 'together': all blocks share the window (first
// half attention, second half FFN); 'sequential': the window is cut into one slot per block,
// block 0 first. After `end` every coefficient is exactly 1, so the model folds exactly.

import { ConfigError } from '../core/config.js';
import type { JoinCoefficients } from '../core/model.js';

export type JoinMode = 'none' | 'together' | 'sequential';
export type RampShape = 'linear' | 'cosine';

export interface JoinSchedule {
  mode: JoinMode;
  shape: RampShape;
  /** Window as fractions of training progress, 0 <= start < end <= 1. */
  start: number;
  end: number;
}

export const DEFAULT_JOIN_SCHEDULE: JoinSchedule = { mode: 'together', shape: 'cosine', start: 0, end: 0.5 };

export function validateJoinSchedule(s: JoinSchedule): JoinSchedule {
  if (!['none', 'together', 'sequential'].includes(s.mode)) throw new ConfigError(`join schedule mode must be none, together or sequential (got ${s.mode})`);
  if (!['linear', 'cosine'].includes(s.shape)) throw new ConfigError(`join ramp must be linear or cosine (got ${s.shape})`);
  if (!(s.start >= 0 && s.start < s.end && s.end <= 1)) {
    throw new ConfigError(`join window must satisfy 0 <= start < end <= 1 (--join-start, --join-end: fractions of training like 0.5, or epochs like 3ep up to the run's epochs), got [${s.start}, ${s.end}]`);
  }
  return s;
}

function ramp(p: number, from: number, to: number, shape: RampShape): number {
  if (p <= from) return 0;
  if (p >= to) return 1;
  const r = (p - from) / (to - from);
  return shape === 'linear' ? r : 0.5 * (1 - Math.cos(Math.PI * r));
}

/** Join coefficients of `blocks` blocks at progress p (0 = start of training, 1 = end). */
export function joinCoefficients(s: JoinSchedule, blocks: number, p: number): JoinCoefficients {
  if (s.mode === 'none') return { attn: new Array(blocks).fill(0), ffn: new Array(blocks).fill(0) };
  const attn: number[] = [];
  const ffn: number[] = [];
  for (let b = 0; b < blocks; b++) {
    let from = s.start;
    let to = s.end;
    if (s.mode === 'sequential') {
      const slot = (s.end - s.start) / blocks;
      from = s.start + b * slot;
      to = from + slot;
    }
    const mid = (from + to) / 2;
    attn.push(ramp(p, from, mid, s.shape));
    ffn.push(ramp(p, mid, to, s.shape));
  }
  return { attn, ffn };
}

export interface LrSchedule {
  peak: number;
  /** Warm-up steps (linear from 0), then cosine to `min` at `total` steps. */
  warmup: number;
  total: number;
  min: number;
}

/** Learning rate at optimizer step `step` (0-based). */
export function learningRate(s: LrSchedule, step: number): number {
  if (step < s.warmup) return (s.peak * (step + 1)) / s.warmup;
  const r = Math.min(1, (step - s.warmup) / Math.max(1, s.total - s.warmup));
  return s.min + 0.5 * (s.peak - s.min) * (1 + Math.cos(Math.PI * r));
}
