// The trainer's state at an epoch boundary (AdamW moments, step, every RNG stream, EMA, best
// epoch, the fold check): with the model, what makes a resumed run bit-identical.

import { decodeFloat, encodeFloat, parseSafetensors, serializeSafetensors } from '../core/safetensors.js';
import type { Rng } from '../core/rng.js';
import { RunDirError } from './checkpoint.js';
import type { StepRunner } from './step-runner.js';

export interface ResumeState {
  epoch: number; // epochs completed
  step: number;
  dataRng: Uint32Array;
  augRng: Uint32Array;
  dropRng: Uint32Array;
  m: Float32Array;
  v: Float32Array;
  ema: Float32Array | null;
  best: number;
  bestEpoch: number;
  switchInfo: SwitchInfo | null;
}

/** The fold check made when training moved to the folded graph (or at the end). */
export interface SwitchInfo {
  epoch: number;
  verifyMaxRel: number;
  agreement: number;
  joinedTop1: number;
  foldedTop1: number;
}

export function stateBytes(runner: StepRunner, epoch: number, dataRng: Rng, augRng: Rng, best: { top1: number; epoch: number }, ema: Float32Array | null, switchInfo: SwitchInfo | null): Uint8Array {
  const P = runner.layout.total;
  const tensors = new Map([
    ['m', encodeFloat(runner.m, [P], 'F32')],
    ['v', encodeFloat(runner.v, [P], 'F32')],
  ]);
  if (ema) tensors.set('ema', encodeFloat(ema, [P], 'F32'));
  return serializeSafetensors({
    tensors,
    metadata: {
      epoch: String(epoch),
      step: String(runner.step),
      data_rng: JSON.stringify([...dataRng.s]),
      aug_rng: JSON.stringify([...augRng.s]),
      drop_rng: JSON.stringify([...runner.dropRng.s]),
      best_top1: String(best.top1),
      best_epoch: String(best.epoch),
      ...(switchInfo ? { switch: JSON.stringify(switchInfo) } : {}),
    },
  });
}

export function parseState(bytes: Uint8Array, where: string): ResumeState {
  const f = parseSafetensors(bytes, where);
  const md = f.metadata ?? {};
  const need = ['epoch', 'step', 'data_rng', 'aug_rng', 'drop_rng'];
  const missing = need.filter((k) => md[k] === undefined);
  if (missing.length || !f.tensors.has('m') || !f.tensors.has('v')) {
    throw new RunDirError(`${where}: not a vitfold trainer state (missing ${[...missing, ...['m', 'v'].filter((t) => !f.tensors.has(t))].join(', ')})`);
  }
  const rng = (k: string) => Uint32Array.from(JSON.parse(md[k]) as number[]);
  return {
    epoch: Number(md.epoch),
    step: Number(md.step),
    dataRng: rng('data_rng'),
    augRng: rng('aug_rng'),
    dropRng: rng('drop_rng'),
    m: Float32Array.from(decodeFloat(f.tensors.get('m')!, 'm')),
    v: Float32Array.from(decodeFloat(f.tensors.get('v')!, 'v')),
    ema: f.tensors.has('ema') ? Float32Array.from(decodeFloat(f.tensors.get('ema')!, 'ema')) : null,
    best: Number(md.best_top1 ?? -1),
    bestEpoch: Number(md.best_epoch ?? 0),
    switchInfo: md.switch ? (JSON.parse(md.switch) as SwitchInfo) : null,
  };
}
