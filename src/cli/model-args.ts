// Model-file arguments shared by the model commands (fold, verify, predict, ...): loading a
// joined model, join lists, inputs, and the float64 fold check.

import { Option } from 'commander';
import { CliError, positiveInt } from './args.js';
import { unjoinedCoefficients } from '../core/fold.js';
import type { ViTConfig } from '../core/config.js';
import { describeStructure, toBranched, type Model } from '../core/model.js';
import { type Tensor } from '../core/params.js';
import { FLOAT_DTYPES, type FloatDType } from '../core/safetensors.js';
import { checkFold, randomInput } from '../core/verify.js';
import { loadModel, readFloatTensor } from '../io.js';
import { Progress } from './progress.js';

/** --dtype f32|f64|f16|bf16: the safetensors float dtypes, lower case. */
export const DTYPES: Record<string, FloatDType> = Object.fromEntries(FLOAT_DTYPES.map((d) => [d.toLowerCase(), d as FloatDType]));

export function printNotes(notes: string[]): void {
  for (const n of notes) process.stderr.write(`note: ${n}\n`);
}

export interface BranchOpts {
  branches?: number;
  assumeJoined?: boolean;
  numHeads?: number;
}

/**
 * The fully joined branched model that `fold` and `verify` work on: a branched checkpoint as it
 * is, or a plain checkpoint regrouped with --branches k, which needs --assume-joined because its
 * fold equals the fully joined model, not the deep model the checkpoint holds.
 */
export function joinedModelFrom(path: string, opts: BranchOpts): Model {
  const notes: string[] = [];
  const model = loadModel(path, { numHeads: opts.numHeads, notes });
  printNotes(notes);
  const s = model.structure;
  if (s.kind === 'folded') {
    throw new CliError(
      `${path}: is already folded (${describeStructure(s, model.config)}); give the branched model it was folded from`,
    );
  }
  if (s.kind === 'plain') {
    if (opts.branches === undefined) {
      throw new CliError(
        `${path}: is a plain ${model.config.depth}-layer ViT with no branch structure in its metadata.\n` +
          `To fold it as blocks of k consecutive layers, pass --branches k --assume-joined ` +
          `(k divides ${model.config.depth}).`,
      );
    }
    if (!opts.assumeJoined) {
      throw new CliError(
        `--branches ${opts.branches} regroups the plain model ${path} into ${model.config.depth / opts.branches} ` +
          `blocks of ${opts.branches} branches. Its fold equals the FULLY JOINED model (every join ` +
          `coefficient 1), not the original deep model, whose outputs will differ. ` +
          `Pass --assume-joined to confirm that this is what you want.`,
      );
    }
    return toBranched(model, opts.branches, { attn: 1, ffn: 1 }, path);
  }
  if (opts.branches !== undefined && opts.branches !== s.branches) {
    throw new CliError(`${path}: is a ${s.branches}-branch model; --branches ${opts.branches} contradicts it`);
  }
  const unjoined = unjoinedCoefficients(model);
  if (unjoined.length) {
    throw new CliError(
      `${path}: is not fully joined, so no exact fold exists yet:\n  ${unjoined.join('\n  ')}\n` +
        `Every join coefficient must be 1; continue training until the schedule has joined every block.`,
    );
  }
  return model;
}

/** "0.5" -> [0.5, ...] (one value for all blocks) or "1,0.5,0" -> one per block. */
export function joinList(text: string, L: number, flag: string): number[] {
  const vals = text.split(',').map((t) => Number(t.trim()));
  if (vals.some((v) => !(v >= 0 && v <= 1))) throw new CliError(`${flag} ${text}: coefficients must be numbers in [0, 1]`);
  if (vals.length === 1) return new Array(L).fill(vals[0]);
  if (vals.length !== L) throw new CliError(`${flag} ${text}: give one value or ${L} (one per block), got ${vals.length}`);
  return vals;
}

export function fmtErr(x: number): string {
  return Number.isNaN(x) ? 'NaN' : x.toExponential(2);
}

export function seconds(t0: number): string {
  return `${((performance.now() - t0) / 1000).toFixed(2)}s`;
}

export function loadInput(path: string | undefined, model: Model, batch: number, seed: number): { x: Tensor; label: string } {
  if (path === undefined) {
    return { x: randomInput(model, batch, seed), label: `seeded normal [${batch}, ${model.config.in_chans}, ${model.config.img_size}, ${model.config.img_size}] (seed ${seed})` };
  }
  const x = readInputTensor(path, model.config);
  return { x, label: `${path} 'x' ${JSON.stringify(x.shape)}` };
}

/** Tensor 'x' [B, C, S, S] of a .safetensors file, checked against the model's input. */
export function readInputTensor(path: string, cfg: ViTConfig): Tensor {
  const x = readFloatTensor(path, 'x', 4);
  const { in_chans: C, img_size: S } = cfg;
  if (x.shape[1] !== C || x.shape[2] !== S || x.shape[3] !== S) {
    throw new CliError(`${path}: 'x' has shape ${JSON.stringify(x.shape)}, expected [B, ${C}, ${S}, ${S}] for this model`);
  }
  if (x.shape[0] < 1) throw new CliError(`${path}: 'x' holds no images (shape ${JSON.stringify(x.shape)})`);
  const bad = x.data.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new CliError(`${path}: 'x' holds a non-finite value (${x.data[bad]}) at flat index ${bad}`);
  return x;
}

export function progressFor(label: string) {
  const p = new Progress(label);
  return {
    onProgress: (what: string, done: number, total: number) => p.update(done, total, what),
    done: () => p.done(),
  };
}

export interface VerifyReport {
  ok: boolean;
  lines: string[];
  branchedLogits: Float64Array;
}

/** Runs the branched model and its fold on x and reports; shared by verify, fold --verify, demo. */
export function verifyFold(branched: Model, folded: Model, x: Tensor, inputLabel: string, tol: number): VerifyReport {
  const prog = progressFor('verify');
  const t0 = performance.now();
  const res = checkFold(branched, folded, x, prog.onProgress);
  prog.done();
  const ok = res.error.maxRel <= tol;
  return {
    ok,
    branchedLogits: res.branchedLogits.data,
    lines: [
      `input    ${inputLabel}`,
      `logits   branched (float64) vs fold (float64): max abs ${fmtErr(res.error.maxAbs)}, ` +
        `max rel ${fmtErr(res.error.maxRel)} (tolerance ${tol})  ${ok ? 'OK' : 'FAILED'}`,
      `time     ${seconds(t0)} for both forwards (float64 reference)`,
    ],
  };
}

/** --num-heads: the head count of a file without a config (timm exports), which shapes cannot tell. */
export function numHeadsOption(): Option {
  return new Option('--num-heads <n>', 'head count, for files without a config').argParser(positiveInt('--num-heads'));
}

/** The class names a model's metadata lists (classes), or null with a note when absent or malformed. */
export function classNamesOf(metadata: Record<string, string>, path: string): string[] | null {
  if (!metadata.classes) return null;
  try {
    const names = JSON.parse(metadata.classes) as unknown;
    if (Array.isArray(names) && names.every((n) => typeof n === 'string')) return names;
  } catch {
    // reported below
  }
  printNotes([`${path}: the classes metadata is not a JSON array of names; printing class indices`]);
  return null;
}
