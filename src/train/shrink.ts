// `vitfold shrink`: a trained deep ViT made shallow while keeping what it learnt.
//
//   join: the deep model regrouped into L blocks of depth / L branches (at every join
//         coefficient 0 it *is* the deep model), fine-tuned while the branches are joined,
//         distilled from the original deep model, then folded exactly into L layers;
//   drop: L evenly spaced layers of the deep model kept and fine-tuned the same way (the
//         standard way to shorten a pretrained transformer; the comparison point).
// With 0 epochs, join is the instant fold (the deep model read as fully joined, no training).

import { join } from 'node:path';
import { validateBranches } from '../core/config.js';
import { fold } from '../core/fold.js';
import { evenlySpacedLayers, keepLayers } from '../core/layers.js';
import { toBranched, type Model } from '../core/model.js';
import { referenceForward } from '../core/reference.js';
import { compareLogits, randomInput } from '../core/verify.js';
import { appendLine, loadModel, saveModel, writeFileAtomic } from '../io.js';
import { openRunDir } from './checkpoint.js';
import type { Distillation } from '../model/vit-graph.js';
import { DEFAULT_DISTILLATION } from './distill.js';
import { evaluate, loadData, readRunConfig, train, TrainError, type TrainConfig, type TrainEvents, type TrainResult } from './trainer.js';

/**
 * 'join': fine-tune as joined branches (with distillation) and fold; 'drop': keep evenly spaced
 * layers and fine-tune them.
 */
export type ShrinkMethod = 'join' | 'drop';
/** The ways shrink makes a deep model shallow. */
export const SHRINK_METHODS: readonly ShrinkMethod[] = ['join', 'drop'];

/** What a shrink run is, recorded in its config.json and in the shrunk model's metadata. */
export interface ShrinkPlan {
  /** The deep model's file (also the distillation teacher). */
  teacher: string;
  method: ShrinkMethod;
  /** Layers of the shallow model. */
  depth: number;
  /** drop: the deep model's layers kept (0-based). */
  layers?: number[];
}

/** The fine-tuning recipe of a shrink where a run does not override it (see docs/shrink.md). */
export const SHRINK_DEFAULTS = {
  method: 'join' as ShrinkMethod,
  epochs: 5,
  lr: 5e-4,
  warmupEpochs: 0.25,
  /** The join window ends at this fraction of the fine-tuning; the folded graph trains after. */
  joinEnd: 0.5,
  distill: DEFAULT_DISTILLATION as Distillation | null,
  /**
   * Weight beta of hidden-state matching (Distillation.hidden) per method: it helps joined
   * branches and not kept layers (docs/shrink.md); 0 for a 1-layer result (no boundary).
   */
  kdHidden: { join: 4, drop: 0 } as Record<ShrinkMethod, number>,
};

/** Checks a plan against the deep model and fills in what follows from it (branches, kept layers). */
export function planShrink(teacher: Model, teacherPath: string, method: ShrinkMethod, depth: number): { plan: ShrinkPlan; branches: number } {
  if (teacher.structure.kind === 'branched') throw new TrainError(`${teacherPath}: is a branched model; shrink starts from a plain or folded checkpoint (fold it first)`);
  const D = teacher.config.depth;
  if (!Number.isInteger(depth) || depth < 1 || depth >= D) throw new TrainError(`${teacherPath}: --depth must be an integer in [1, ${D - 1}] for a ${D}-layer model, got ${depth}`);
  if (method === 'drop') return { plan: { teacher: teacherPath, method, depth, layers: evenlySpacedLayers(D, depth) }, branches: 1 };
  if (D % depth !== 0) {
    const ok = Array.from({ length: D - 1 }, (_, i) => i + 1).filter((l) => D % l === 0);
    throw new TrainError(`${teacherPath}: --depth ${depth} does not divide the model's ${D} layers (join folds blocks of ${D} / L branches: L in ${ok.join(', ')}; --method drop keeps any number)`);
  }
  validateBranches(teacher.config, D / depth, teacherPath);
  return { plan: { teacher: teacherPath, method, depth }, branches: D / depth };
}

/** The model a shrink starts training from: the deep model itself (join) or its kept layers (drop). */
export function shrinkStart(teacher: Model, plan: ShrinkPlan): Model {
  const plain: Model = { ...teacher, structure: { kind: 'plain' } };
  return plan.method === 'drop' ? keepLayers(plain, plan.layers!, plan.teacher) : plain;
}

/** The instant fold: the deep model read as its fully joined branched form, folded with no training. */
export function instantFold(teacher: Model, depth: number): { joined: Model; folded: Model } {
  const joined = toBranched({ ...teacher, structure: { kind: 'plain' } }, teacher.config.depth / depth, { attn: 1, ffn: 1 });
  return { joined, folded: fold(joined) };
}

/**
 * The training config of a shrink: `base` (data, optimizer, augmentation) with the plan applied:
 * the teacher's shape, k = depth / L branches joined by base's schedule (join) or the kept
 * layers trained plainly (drop), distillation from the teacher unless `distill` is null.
 */
export function shrinkConfig(base: TrainConfig, teacher: Model, plan: ShrinkPlan, branches: number, distill: Distillation | null): TrainConfig {
  const cfg: TrainConfig = {
    ...base,
    model: plan.method === 'drop' ? { ...teacher.config, depth: plan.depth } : { ...teacher.config },
    branches,
    join: plan.method === 'drop' ? { ...base.join, mode: 'none' } : base.join.mode === 'none' ? { ...base.join, mode: 'together' } : base.join,
    shrink: plan,
  };
  if (distill) cfg.distill = { teacher: plan.teacher, ...distill };
  else delete cfg.distill;
  return cfg;
}

/** shrink's result: the training result and the shrunk model's path and top-1. */
export interface ShrinkResult extends TrainResult {
  /** The shallow model file, its test top-1 and depth; the instant fold's top-1 (join only). */
  model: { path: string; top1: number; depth: number };
  instantTop1?: number;
  teacherTop1: number;
}

/**
 * Runs (or resumes) the shrink that `cfg.shrink` describes into `runDir`, then writes
 * `shrunk.safetensors` (the fold for join, the fine-tuned layers for drop) with the recipe in
 * its metadata (`shrink`). With 0 epochs (join) the result is the instant fold.
 */
export async function shrink(cfg: TrainConfig, runDir: string, opts: { resume?: boolean; force?: boolean; events?: TrainEvents; command?: string[] } = {}): Promise<ShrinkResult> {
  const plan = cfg.shrink;
  if (!plan) throw new TrainError(`${runDir}: not a shrink run (its config has no shrink plan)`);
  const release = openRunDir(runDir, { fresh: !opts.resume, force: opts.force, command: 'shrink' });
  try {
    return await shrinkLocked(cfg, plan, runDir, opts);
  } finally {
    release();
  }
}

async function shrinkLocked(cfg: TrainConfig, plan: ShrinkPlan, runDir: string, opts: { resume?: boolean; events?: TrainEvents; command?: string[] }): Promise<ShrinkResult> {
  const ev = opts.events ?? {};
  const teacher = loadModel(plan.teacher);
  const { testSet } = await loadData(cfg);
  const teacherTop1 = (await evaluate(teacher, testSet, cfg)).top1;
  const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
  ev.onMessage?.(`teacher  ${plan.teacher}: ${teacher.config.depth} layers, top-1 ${pct(teacherTop1)} on ${testSet.count} test images`);
  let instantTop1: number | undefined;
  let instant: ReturnType<typeof instantFold> | undefined;
  if (plan.method === 'join') {
    instant = instantFold(teacher, plan.depth);
    instantTop1 = (await evaluate(instant.folded, testSet, cfg)).top1;
    ev.onMessage?.(`instant  the ${teacher.config.depth}-layer model folded to ${plan.depth} layers as it is (no training): top-1 ${pct(instantTop1)}`);
  }
  const recipe = (top1: number, r?: TrainResult) => ({
    ...plan,
    teacher_depth: teacher.config.depth,
    teacher_top1: teacherTop1,
    ...(instantTop1 !== undefined ? { instant_top1: instantTop1 } : {}),
    distill: cfg.distill ? { alpha: cfg.distill.alpha, temperature: cfg.distill.temperature, ...(cfg.distill.hidden ? { hidden: cfg.distill.hidden } : {}) } : null,
    epochs: cfg.epochs,
    lr: cfg.lr,
    ...(plan.method === 'join' ? { join: cfg.join } : {}),
    train_images: cfg.data.limitTrain ?? 'all',
    top1,
    ...(r?.folded ? { verify_max_rel: r.folded.verifyMaxRel } : {}),
  });
  const path = join(runDir, 'shrunk.safetensors');
  const write = (m: Model, rec: object) => saveModel(path, { ...m, extraMetadata: { ...m.extraMetadata, shrink: JSON.stringify(rec) } }, 'F32');

  if (cfg.epochs === 0) {
    if (!instant) throw new TrainError('--epochs 0 (the instant fold) needs --method join; layer dropping without fine-tuning is not a result');
    if (opts.resume) throw new TrainError(`${runDir}: an instant fold (--epochs 0) has nothing to resume; run it again with --force`);
    writeFileAtomic(join(runDir, 'config.json'), JSON.stringify(cfg, null, 2) + '\n');
    const x = randomInput(teacher, 2, 0);
    const verifyMaxRel = compareLogits(referenceForward(instant.joined, x).data, referenceForward(instant.folded, x).data).maxRel;
    const rec = recipe(instantTop1!);
    write(instant.folded, { ...rec, verify_max_rel: verifyMaxRel });
    writeFileAtomic(join(runDir, 'log.jsonl'), '');
    const log = (o: object) => appendLine(join(runDir, 'log.jsonl'), JSON.stringify(o));
    log({ event: 'teacher', path: plan.teacher, top1: teacherTop1 });
    log({ event: 'shrunk', ...rec, verify_max_rel: verifyMaxRel, path });
    return { runDir, epochs: [], stopped: 'done', model: { path, top1: instantTop1!, depth: plan.depth }, instantTop1, teacherTop1 };
  }

  const r = await train(cfg, runDir, { init: opts.resume ? undefined : shrinkStart(teacher, plan), resume: opts.resume, locked: true, events: ev, command: opts.command });
  if (r.stopped !== 'done') return { ...r, model: { path: '', top1: NaN, depth: plan.depth }, instantTop1, teacherTop1 };
  const source = r.folded?.path ?? join(runDir, 'last.safetensors');
  const top1 = r.folded?.top1 ?? r.epochs[r.epochs.length - 1]?.top1 ?? NaN;
  const rec = recipe(top1, r);
  write(loadModel(source), rec);
  appendLine(join(runDir, 'log.jsonl'), JSON.stringify({ event: 'shrunk', ...rec, path }));
  return { ...r, model: { path, top1, depth: plan.depth }, instantTop1, teacherTop1 };
}

/** Continues an interrupted shrink run from its last epoch checkpoint. */
export function resumeShrink(runDir: string, events?: TrainEvents): Promise<ShrinkResult> {
  return shrink(readRunConfig(runDir), runDir, { resume: true, events });
}
