// `vitfold train`: a branched ViT trained while its join coefficients move from 0 to 1 on a
// schedule (docs/method.md section 2), then folded, verified and evaluated (docs/method.md section 3).
//
// Run directory:
//   config.json          the TrainConfig (what `--resume` continues)
//   log.jsonl            one JSON object per logged step and per epoch
//   checkpoint.json, checkpoints/   the last epoch's checkpoint, committed atomically
//                        (src/train/checkpoint.ts): model, trainer state, EMA; what --resume reads
//   last.safetensors     model at the end of the last epoch (structure = current join state)
//   best.safetensors     model of the best epoch (top-1)
//   ema.safetensors      EMA of the weights (with emaDecay), evaluated separately
//   joined.safetensors   the fully joined model when training moved to the folded graph
//   folded.safetensors   the final folded model
//   report.html          charts of loss, top-1 and join coefficients (rewritten every epoch)
//   lock                 the pid of the process that owns the run while it runs
// Every file is written atomically; a kill at any point resumes to the same result.

import { VitfoldError } from '../core/errors.js';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ViTConfig } from '../core/config.js';
import { validateBranches, validateConfig } from '../core/config.js';
import { fold } from '../core/fold.js';
import { boundaryLayers } from '../core/layers.js';
import { modelFromSafetensors, modelToSafetensors, toBranched, type Model } from '../core/model.js';
import { initParams } from '../core/params.js';
import type { Normalization } from '../core/preprocess.js';
import { referenceForward } from '../core/reference.js';
import { Rng } from '../core/rng.js';
import { parseSafetensors, serializeSafetensors } from '../core/safetensors.js';
import { compareLogits } from '../core/verify.js';
import { appendLine, loadModel, saveModel, writeFileAtomic } from '../io.js';
import { commitCheckpoint, openRunDir, readCheckpointFiles, restoreCheckpoint } from './checkpoint.js';
import { parseState, stateBytes, type ResumeState, type SwitchInfo } from './state.js';
import { Predictor, type Classifier } from '../model/engine.js';
import { loadMnistLike, type ImageSet } from '../data/idx.js';
import { loadCifar10 } from '../data/cifar.js';
import { loadImageFolder } from '../data/folder.js';
import { fillBatch, limit, shuffled, type BatchSpec } from '../data/batch.js';
import { joinCoefficients, learningRate, validateJoinSchedule, type JoinSchedule } from './schedule.js';
import { StepRunner } from './step-runner.js';
import { writeReport } from './report.js';
import { BatchFeeder } from './feeder.js';
import { isFullyJoined } from '../core/model.js';
import type { Distillation } from '../model/vit-graph.js';
import { Teacher } from './distill.js';
import type { ShrinkPlan } from './shrink.js';

/**
 * Everything a training run is: model config, branches, join schedule, epochs, optimizer,
 * augmentation, data, distillation; stored as the run's config.json.
 */
export interface TrainConfig {
  model: ViTConfig;
  /** Branches per block; 1 with join mode 'none' trains the plain deep model. */
  branches: number;
  join: JoinSchedule;
  epochs: number;
  batch: number;
  lr: number;
  minLr: number;
  warmupEpochs: number;
  weightDecay: number;
  clipNorm: number | null;
  dropPath: number;
  labelSmoothing: number;
  augment: {
    cropPadding: number;
    hflip: boolean;
    /** Beta alphas (0: off) and the probability that a batch is mixed. */
    mixup?: number;
    cutmix?: number;
    mixProb?: number;
    /** Random-erasing probability per image (0: off). */
    erase?: number;
  };
  data: { kind: 'fashion-mnist' | 'cifar10' | 'folder'; dir?: string; limitTrain?: number; limitTest?: number };
  normalization: Normalization;
  seed: number;
  threads?: number;
  /** Steps between log lines. */
  logEvery: number;
  /** EMA decay of the weights (e.g. 0.999; absent or 0: off), evaluated separately. */
  emaDecay?: number;
  /**
   * Once every join coefficient is 1 (at an epoch boundary), continue on the folded graph: the
   * same function, faster per step (`npm run bench:folded`). The folded
   * parametrization has its own AdamW moments (they restart at 0, bias correction from t = 1).
   * Default on; off with drop path, which drops single branches (not expressible after folding).
   */
  trainFolded?: boolean;
  /**
   * Distillation from a frozen teacher (a model file of the same image size, channels and
   * classes; any depth): every step adds alpha T^2 CE(z / T, softmax(z_teacher / T)) to
   * (1 - alpha) times the label loss, the teacher run on the same augmented batch.
   */
  distill?: Distillation & { teacher: string };
  /** Set by `vitfold shrink`: the deep model this run shrinks (see src/train/shrink.ts). */
  shrink?: ShrinkPlan;
}

/** Callbacks of a training run: messages, per-step progress, per-epoch records. */
export interface TrainEvents {
  onStep?: (s: { epoch: number; epochs: number; step: number; stepsPerEpoch: number; loss: number; lr: number; imgPerSec: number }) => void;
  onEpoch?: (e: EpochRecord) => void;
  onMessage?: (m: string) => void;
  /** Return true to stop after the current step (tests: simulate a kill). */
  shouldStop?: (globalStep: number) => boolean;
}

/** One epoch of a run as logged: losses, test top-1/top-5, join coefficients, timing. */
export interface EpochRecord {
  epoch: number;
  train_loss: number;
  top1: number;
  /** Only when there are more than 5 classes. */
  top5?: number;
  /** Top-1 of the EMA weights (with --ema). */
  ema_top1?: number;
  /** Once every coefficient is 1: the folded model's top-1 and its agreement with the joined one. */
  folded_top1?: number;
  folded_agreement?: number;
  attn: number[];
  ffn: number[];
  seconds: number;
  img_per_s: number;
  data_ms_per_step: number;
  step_ms: number;
  /** With distillation: the teacher's forward per step (included in step_ms). */
  teacher_ms?: number;
}

/**
 * train's result: the run directory, every epoch's record and the fold (path, top-1,
 * verification).
 */
export interface TrainResult {
  runDir: string;
  epochs: EpochRecord[];
  /** verifyMaxRel and agreement were measured when the model was folded (atEpoch: after that many epochs). */
  folded?: { path: string; top1: number; verifyMaxRel: number; agreement: number; atEpoch: number };
  stopped: 'done' | 'interrupted' | 'nan';
}

/** A training job that cannot run as configured (data, shapes, run directory). */
export class TrainError extends VitfoldError {
  override name = 'TrainError';
}

/** Fills x [B, C, S, S] (normalized, augmented) and labels for `idx` from the set. */



/** The batch settings of a run. */
export function batchSpec(cfg: TrainConfig): BatchSpec {
  return { size: cfg.model.img_size, normalization: cfg.normalization, cropPadding: cfg.augment.cropPadding, hflip: cfg.augment.hflip };
}

/** Top-1 and top-5 accuracy and the predictions of a model on a set (engine, fp32). */
export async function evaluate(model: Model, set: ImageSet, cfg: TrainConfig, batch = 500): Promise<{ top1: number; top5: number; predictions: Uint8Array }> {
  return evaluateClassifier(await Predictor.create(model, { threads: cfg.threads }), set, batchSpec(cfg), model.config.num_classes, batch);
}

/** The same for any classifier (an exported .onnx file's session, say); releases it. */
export async function evaluateClassifier(
  classifier: Classifier,
  set: ImageSet,
  spec: BatchSpec,
  K: number,
  batch = 500,
  onProgress?: (done: number, total: number) => void,
): Promise<{ top1: number; top5: number; predictions: Uint8Array }> {
  const S = spec.size; // not set.size: image folders are stored larger and centre-cropped
  const predictions = new Uint8Array(set.count);
  let correct = 0;
  let correct5 = 0;
  try {
    for (let start = 0; start < set.count; start += batch) {
      const n = Math.min(batch, set.count - start);
      const x = new Float32Array(n * set.channels * S * S);
      const labels = new Array<number>(n);
      fillBatch(set, Array.from({ length: n }, (_, i) => start + i), spec, null, x, labels);
      const logits = (await classifier.predict({ shape: [n, set.channels, S, S], data: x })).data;
      for (let b = 0; b < n; b++) {
        let best = 0;
        for (let c = 1; c < K; c++) if (logits[b * K + c] > logits[b * K + best]) best = c;
        predictions[start + b] = best;
        if (best === labels[b]) correct++;
        // Top-5: fewer than 5 classes score above the label.
        let above = 0;
        for (let c = 0; c < K; c++) if (logits[b * K + c] > logits[b * K + labels[b]]) above++;
        if (above < 5) correct5++;
      }
      onProgress?.(start + n, set.count);
    }
  } finally {
    await classifier.release();
  }
  return { top1: correct / set.count, top5: correct5 / set.count, predictions };
}

function modelMetadata(cfg: TrainConfig, classes: string[]): Record<string, string> {
  return { normalization: JSON.stringify(cfg.normalization), classes: JSON.stringify(classes) };
}

/** A run directory's config.json as a TrainConfig (validated). */
export function readRunConfig(dir: string): TrainConfig {
  const p = join(dir, 'config.json');
  if (!existsSync(p)) throw new TrainError(`${dir}: no config.json; is this a vitfold run directory?`);
  let cfg: TrainConfig;
  try {
    cfg = JSON.parse(readFileSync(p, 'utf8')) as TrainConfig;
  } catch (e) {
    throw new TrainError(`${p}: not valid JSON (${(e as Error).message}); the run cannot be resumed`);
  }
  const bad = (field: string, what: string) => new TrainError(`${p}: '${field}' must be ${what}; the run cannot be resumed`);
  if (typeof cfg !== 'object' || cfg === null || typeof cfg.model !== 'object' || cfg.model === null) throw bad('model', 'a ViT config object');
  validateConfig(cfg.model, `${p}: model`);
  for (const k of ['epochs', 'batch', 'branches'] as const) if (!(Number.isInteger(cfg[k]) && cfg[k] > 0)) throw bad(k, 'a positive integer');
  if (typeof cfg.join !== 'object' || cfg.join === null) throw bad('join', 'a join schedule object');
  if (typeof cfg.data !== 'object' || cfg.data === null) throw bad('data', 'a dataset object');
  return cfg;
}

/** The training and test sets of a run (limited as the config says), checked against its model. */
export async function loadData(cfg: TrainConfig, ev: TrainEvents = {}): Promise<{ trainSet: ImageSet; testSet: ImageSet }> {
  const kind = cfg.data.kind;
  let trainSet: ImageSet;
  let testSet: ImageSet;
  if (kind === 'folder') {
    if (!cfg.data.dir) throw new TrainError('an image-folder dataset needs --data ROOT (ROOT/train/<class>/*.jpg, ROOT/val/<class>/*.jpg)');
    const stored = Math.round(cfg.model.img_size / cfg.normalization.crop_pct);
    trainSet = await loadImageFolder(cfg.data.dir, 'train', stored, cfg.model.in_chans);
    testSet = await loadImageFolder(cfg.data.dir, 'val', stored, cfg.model.in_chans, trainSet.classes);
    ev.onMessage?.(`data     ${cfg.data.dir}: ${trainSet.count} training and ${testSet.count} validation images, ${trainSet.classes.length} classes`);
  } else {
    trainSet = kind === 'cifar10' ? loadCifar10(cfg.data.dir, 'train') : loadMnistLike(cfg.data.dir, 'train');
    testSet = kind === 'cifar10' ? loadCifar10(cfg.data.dir, 'test') : loadMnistLike(cfg.data.dir, 't10k');
    if (trainSet.size !== cfg.model.img_size || trainSet.channels !== cfg.model.in_chans) {
      throw new TrainError(
        `${kind === 'cifar10' ? 'CIFAR-10' : 'Fashion-MNIST'} images are ${trainSet.channels} x ${trainSet.size} x ${trainSet.size}; ` +
          `the model expects ${cfg.model.in_chans} x ${cfg.model.img_size} x ${cfg.model.img_size} (choose a matching --preset)`,
      );
    }
  }
  trainSet = limit(trainSet, cfg.data.limitTrain);
  testSet = limit(testSet, cfg.data.limitTest);
  if (trainSet.classes.length !== cfg.model.num_classes) {
    throw new TrainError(`the data has ${trainSet.classes.length} classes; the model has ${cfg.model.num_classes}`);
  }
  return { trainSet, testSet };
}

/**
 * Trains (or resumes) a run. `init` is the starting plain model (random when absent).
 */
export interface TrainOptions {
  /** Continue from the run's last committed checkpoint. */
  resume?: boolean;
  /** Start afresh in a run directory that is not empty, replacing what is there. */
  force?: boolean;
  /** The caller (shrink) already holds the run directory's lock. */
  locked?: boolean;
  init?: Model;
  events?: TrainEvents;
  /** The command line that started the run, recorded in the log for its report. */
  command?: string[];
}

/** The report is for people: a failure to write it is a note, never the end of a training run. */
function tryReport(runDir: string, ev: TrainEvents): void {
  try {
    writeReport(runDir);
  } catch (e) {
    ev.onMessage?.(`note     report.html not rewritten: ${(e as Error).message}`);
  }
}

/**
 * Trains (or resumes) a run in runDir: a branched ViT joined by the schedule, folded once every
 * coefficient is 1 and trained on as the fold; writes checkpoints, log.jsonl, report.html and the
 * fold.
 */
export async function train(cfg: TrainConfig, runDir: string, opts: TrainOptions = {}): Promise<TrainResult> {
  validateJoinSchedule(cfg.join);
  validateBranches(cfg.model, cfg.branches, 'train');
  const release = opts.locked ? () => {} : openRunDir(runDir, { fresh: !opts.resume, force: opts.force, command: 'train' });
  try {
    return await trainLocked(cfg, runDir, opts);
  } finally {
    release();
  }
}

async function trainLocked(cfg: TrainConfig, runDir: string, opts: TrainOptions): Promise<TrainResult> {
  const ev = opts.events ?? {};
  const { trainSet, testSet } = await loadData(cfg, ev);
  const L = cfg.model.depth / cfg.branches;
  const stepsPerEpoch = Math.floor(trainSet.count / cfg.batch); // drop the last partial batch
  if (stepsPerEpoch === 0) {
    throw new TrainError(`${trainSet.count} training images make no full batch of ${cfg.batch}: use a smaller --batch or more images (--limit-train)`);
  }
  const logPath = join(runDir, 'log.jsonl');
  const totalSteps = stepsPerEpoch * cfg.epochs;
  const lrSchedule = { peak: cfg.lr, min: cfg.minLr, warmup: Math.round(cfg.warmupEpochs * stepsPerEpoch), total: totalSteps };
  const meta = modelMetadata(cfg, trainSet.classes);

  let model: Model;
  let state: ResumeState | null = null;
  if (opts.resume) {
    const c = restoreCheckpoint(runDir, logPath);
    const files = readCheckpointFiles(runDir, c);
    const where = (name: string) => join(runDir, c.dir, name);
    state = parseState(files.get('state.safetensors') ?? new Uint8Array(), where('state.safetensors'));
    model = modelFromSafetensors(parseSafetensors(files.get('model.safetensors') ?? new Uint8Array(), where('model.safetensors')), where('model.safetensors'));
    if (state.epoch !== c.epoch || state.step > c.epoch * stepsPerEpoch || c.epoch > cfg.epochs) {
      throw new TrainError(
        `${runDir}: the checkpoint (epoch ${c.epoch}, step ${state.step}) does not fit the run's config.json ` +
          `(${cfg.epochs} epochs of ${stepsPerEpoch} steps); was config.json or the dataset changed?`,
      );
    }
  } else {
    writeFileAtomic(join(runDir, 'config.json'), JSON.stringify(cfg, null, 2) + '\n');
    writeFileAtomic(logPath, '');
    const base = opts.init ?? { config: cfg.model, structure: { kind: 'plain' as const }, params: initParams(cfg.model, cfg.seed), dtype: 'F32' as const, extraMetadata: {} };
    model = cfg.join.mode === 'none' ? base : toBranched(base, cfg.branches, {}, 'train');
  }
  model = { ...model, extraMetadata: { ...model.extraMetadata, ...meta }, dtype: 'F32' };
  let phase: 'plain' | 'branched' | 'folded' = model.structure.kind;
  let teacher: Teacher | null = null;
  let teacherModel: Model | null = null;
  if (cfg.distill) {
    const { teacher: path, alpha, temperature } = cfg.distill;
    if (!(alpha >= 0 && alpha <= 1)) throw new TrainError(`distillation weight alpha must be in [0, 1], got ${alpha}`);
    if (!(temperature > 0 && Number.isFinite(temperature))) throw new TrainError(`distillation temperature must be a positive number, got ${temperature}`);
    teacherModel = loadModel(path);
    const t = teacherModel.config;
    for (const key of ['img_size', 'in_chans', 'num_classes'] as const) {
      if (t[key] !== cfg.model[key]) throw new TrainError(`teacher ${path}: ${key} is ${t[key]}, the student's is ${cfg.model[key]}`);
    }
    if (teacherModel.structure.kind === 'branched' && !isFullyJoined(teacherModel.structure)) throw new TrainError(`teacher ${path}: a branched model that is not fully joined; fold it or use a plain checkpoint`);
    let hiddenAfter: number[] | undefined;
    if (cfg.distill.hidden !== undefined && cfg.distill.hidden !== 0) {
      if (!(cfg.distill.hidden > 0 && Number.isFinite(cfg.distill.hidden))) throw new TrainError(`hidden-state matching weight must be a positive number, got ${cfg.distill.hidden}`);
      if (!cfg.shrink) throw new TrainError('hidden-state matching is for shrink runs (it matches the shallow model\'s block boundaries to the deep model\'s layers)');
      if (teacherModel.structure.kind === 'branched') throw new TrainError(`teacher ${path}: hidden-state matching needs a plain or folded teacher`);
      if (cfg.shrink.depth < 2) throw new TrainError('hidden-state matching needs a shallow model of at least 2 layers (it matches the boundaries between them)');
      hiddenAfter = boundaryLayers(t.depth, cfg.shrink.depth, cfg.shrink.layers);
    }
    teacher = await Teacher.create(teacherModel, temperature, cfg.threads, hiddenAfter);
  }
  const runnerOpts = {
    batch: cfg.batch,
    threads: cfg.threads,
    optim: { weightDecay: cfg.weightDecay, clipNorm: cfg.clipNorm },
    dropPath: cfg.dropPath,
    seed: cfg.seed + 2,
    ...(cfg.distill ? { distill: { alpha: cfg.distill.alpha, temperature: cfg.distill.temperature, ...(cfg.distill.hidden ? { hidden: cfg.distill.hidden } : {}) } } : {}),
  };
  let runner = new StepRunner(model, runnerOpts);
  const trainFolded = (cfg.trainFolded ?? true) && cfg.dropPath === 0;
  let switchInfo: SwitchInfo | null = null;
  const emaDecay = cfg.emaDecay ?? 0;
  let ema: Float32Array | null = emaDecay > 0 ? Float32Array.from(runner.params) : null;
  const dataRng = new Rng(cfg.seed + 1);
  const augRng = new Rng(cfg.seed + 3);
  let best = -1; // every first epoch is the best so far
  let bestEpoch = 0;
  let startEpoch = 0;
  if (state) {
    runner.m = state.m;
    runner.v = state.v;
    runner.step = state.step;
    dataRng.s.set(state.dataRng);
    augRng.s.set(state.augRng);
    runner.dropRng.s.set(state.dropRng);
    best = state.best;
    bestEpoch = state.bestEpoch;
    startEpoch = state.epoch;
    switchInfo = state.switchInfo;
    if (emaDecay > 0) {
      if (!state.ema) throw new TrainError(`${runDir}: the run uses EMA weights but state.safetensors has none`);
      ema = state.ema;
    }
    ev.onMessage?.(`resuming ${runDir} after epoch ${startEpoch} (step ${state.step})`);
  }
  const log = (o: object) => appendLine(logPath, JSON.stringify(o));
  const S = cfg.model.img_size;
  const per = cfg.model.in_chans * S * S;
  const feeder = new BatchFeeder(trainSet, cfg, augRng);
  const epochs: EpochRecord[] = [];
  const currentJoin = (step: number) => (phase === 'branched' ? joinCoefficients(cfg.join, L, step / totalSteps) : undefined);

  /** Folds a fully joined model, verifies the fold in float64 and compares test predictions. */
  const foldAndCheck = async (joined: Model, epoch: number): Promise<{ folded: Model; info: SwitchInfo }> => {
    const folded = fold(joined, 'the joined model');
    const nv = Math.min(4, testSet.count);
    const xv = new Float32Array(nv * per);
    fillBatch(testSet, Array.from({ length: nv }, (_, i) => i), batchSpec(cfg), null, xv, new Array(nv));
    const xt = { shape: [nv, cfg.model.in_chans, S, S], data: Float64Array.from(xv) };
    const verifyMaxRel = compareLogits(referenceForward(joined, xt).data, referenceForward(folded, xt).data).maxRel;
    const je = await evaluate(joined, testSet, cfg);
    const fe = await evaluate(folded, testSet, cfg);
    let agree = 0;
    for (let i = 0; i < testSet.count; i++) if (je.predictions[i] === fe.predictions[i]) agree++;
    return { folded, info: { epoch, verifyMaxRel, agreement: agree / testSet.count, joinedTop1: je.top1, foldedTop1: fe.top1 } };
  };

  if (!state) {
    // The starting point: the deep model (every coefficient 0), e.g. a pretrained checkpoint.
    const start = await evaluate(model, testSet, cfg);
    log({ event: 'start', top1: start.top1, top5: start.top5, steps_per_epoch: stepsPerEpoch, ...(opts.command ? { command: opts.command } : {}) });
    const what = model.structure.kind === 'branched' ? 'deep model (every join coefficient 0)' : `${model.config.depth}-layer model`;
    ev.onMessage?.(`start    ${what}: top-1 ${(100 * start.top1).toFixed(2)}%, top-5 ${(100 * start.top5).toFixed(2)}% on ${testSet.count} test images`);
    if (teacherModel) ev.onMessage?.(`distill  from ${cfg.distill!.teacher} (${teacherModel.config.depth} layers, frozen): alpha ${cfg.distill!.alpha}, temperature ${cfg.distill!.temperature}${cfg.distill!.hidden ? `, hidden-state matching beta ${cfg.distill!.hidden}` : ''}`);
  }
  for (let epoch = startEpoch; epoch < cfg.epochs; epoch++) {
    const j0 = currentJoin(epoch * stepsPerEpoch);
    if (trainFolded && phase === 'branched' && j0 && j0.attn.every((c) => c === 1) && j0.ffn.every((c) => c === 1)) {
      // Every coefficient is 1 from here on: continue on the (faster, equal) folded graph.
      const joined: Model = { ...runner.currentModel(), structure: { kind: 'branched', branches: cfg.branches, attn: j0.attn, ffn: j0.ffn } };
      saveModel(join(runDir, 'joined.safetensors'), joined, 'F32');
      const { folded, info } = await foldAndCheck(joined, epoch);
      switchInfo = info;
      const next = new StepRunner(folded, runnerOpts);
      next.dropRng.s.set(runner.dropRng.s);
      if (ema) ema = next.layout.pack(fold({ ...joined, params: runner.layout.unpack(ema) }).params, 'float32') as Float32Array;
      await runner.release();
      runner = next;
      phase = 'folded';
      log({ event: 'switch', ...info });
      ev.onMessage?.(
        `epoch ${epoch + 1}: every join coefficient is 1; training continues on the folded ${folded.config.depth}-layer graph ` +
          `(float64 verify ${info.verifyMaxRel.toExponential(2)}, test predictions agree ${(100 * info.agreement).toFixed(2)}%; fresh AdamW moments)`,
      );
    }
    const order = shuffled(trainSet.count, dataRng);
    const t0 = performance.now();
    let lossSum = 0;
    let dataMs = 0;
    let stepMs = 0;
    let teacherMs = 0;
    // Batch 0 is built before the loop; batch s+1 is built while the engine runs step s.
    let d0 = performance.now();
    feeder.prepare(order, 0, 0);
    dataMs += performance.now() - d0;
    for (let s = 0; s < stepsPerEpoch; s++) {
      const cur = s % 2;
      const globalStep = epoch * stepsPerEpoch + s;
      const join_ = currentJoin(globalStep);
      const lr = learningRate(lrSchedule, globalStep);
      const ts = performance.now();
      const xb = feeder.input(cur);
      // The teacher runs before the step, not beside it: both sessions use every core.
      const taught = teacher ? await teacher.targets(xb) : undefined;
      teacherMs += performance.now() - ts;
      const pending = runner.run(xb, feeder.targets(cur), lr, join_, { teacherProbs: taught?.probs, teacherHidden: taught?.hidden });
      if (s + 1 < stepsPerEpoch) {
        d0 = performance.now();
        feeder.prepare(order, s + 1, 1 - cur);
        dataMs += performance.now() - d0;
      }
      const r = await pending;
      stepMs += performance.now() - ts;
      if (!Number.isFinite(r.loss)) {
        log({ event: 'nan', epoch, step: globalStep, loss: String(r.loss) });
        await runner.release();
        await teacher?.release();
        const lastGood = join(runDir, 'last.safetensors');
        throw new TrainError(
          `loss is ${r.loss} at epoch ${epoch + 1}, step ${s + 1} (lr ${lr.toExponential(2)}); training stopped. ` +
            (existsSync(lastGood) ? `The last good checkpoint is ${lastGood} (resume with --resume ${runDir}).` : 'No epoch had finished, so there is no checkpoint yet.') +
            ' Try a lower --lr or --clip 1.',
        );
      }
      lossSum += r.loss;
      if (ema) {
        // ema <- d ema + (1 - d) params, over the flat buffer (~1 ms per million parameters).
        const p = runner.params;
        for (let i = 0; i < ema.length; i++) ema[i] = emaDecay * ema[i] + (1 - emaDecay) * p[i];
      }
      const imgPerSec = (cfg.batch * (s + 1) * 1000) / (performance.now() - t0);
      if ((globalStep + 1) % cfg.logEvery === 0) log({ step: globalStep + 1, epoch: epoch + 1, loss: r.loss, lr, grad_norm: r.gradNorm, attn: join_?.attn, ffn: join_?.ffn, img_per_s: imgPerSec });
      ev.onStep?.({ epoch, epochs: cfg.epochs, step: s + 1, stepsPerEpoch, loss: r.loss, lr, imgPerSec });
      if (ev.shouldStop?.(globalStep + 1)) {
        await runner.release();
        await teacher?.release();
        return { runDir, epochs, stopped: 'interrupted' };
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    const joinNow = currentJoin((epoch + 1) * stepsPerEpoch);
    const current: Model = phase === 'branched' ? { ...runner.currentModel(), structure: { kind: 'branched', branches: cfg.branches, attn: joinNow!.attn, ffn: joinNow!.ffn } } : runner.currentModel();
    const { top1, top5, predictions } = await evaluate(current, testSet, cfg);
    const emaTop1 = ema ? (await evaluate({ ...current, params: runner.layout.unpack(ema) }, testSet, cfg)).top1 : undefined;
    // Once fully joined the fold is exact: evaluate it too; it must agree with the joined model.
    let foldedRec: { folded_top1: number; folded_agreement: number } | null = null;
    if (phase === 'branched' && isFullyJoined(current.structure)) {
      const fe = await evaluate(fold(current), testSet, cfg);
      let agree = 0;
      for (let i = 0; i < testSet.count; i++) if (fe.predictions[i] === predictions[i]) agree++;
      foldedRec = { folded_top1: fe.top1, folded_agreement: agree / testSet.count };
    }
    const rec: EpochRecord = {
      epoch: epoch + 1,
      train_loss: lossSum / stepsPerEpoch,
      top1,
      ...(cfg.model.num_classes > 5 ? { top5 } : {}),
      ...(foldedRec ?? {}),
      ...(emaTop1 !== undefined ? { ema_top1: emaTop1 } : {}),
      attn: joinNow?.attn ?? [],
      ffn: joinNow?.ffn ?? [],
      seconds,
      img_per_s: (stepsPerEpoch * cfg.batch) / seconds,
      data_ms_per_step: dataMs / stepsPerEpoch,
      step_ms: stepMs / stepsPerEpoch,
      ...(teacher ? { teacher_ms: teacherMs / stepsPerEpoch } : {}),
    };
    if (top1 > best) {
      best = top1;
      bestEpoch = epoch + 1;
    }
    const files = new Map([
      ['model.safetensors', serializeSafetensors(modelToSafetensors(current, 'F32'))],
      ['state.safetensors', stateBytes(runner, epoch + 1, dataRng, augRng, { top1: best, epoch: bestEpoch }, ema, switchInfo)],
    ]);
    if (ema) files.set('ema.safetensors', serializeSafetensors(modelToSafetensors({ ...current, params: runner.layout.unpack(ema) }, 'F32')));
    // The epoch's log line first: the commit records the log's length including it.
    log({ event: 'epoch', ...rec });
    commitCheckpoint(runDir, epoch + 1, files, logPath, { epoch: bestEpoch, top1: best });
    tryReport(runDir, ev);
    epochs.push(rec);
    ev.onEpoch?.(rec);
  }
  await runner.release();
  await teacher?.release();

  // The final folded model: trained on the folded graph since the switch, or folded now.
  const last = loadModel(join(runDir, 'last.safetensors'));
  const foldedPath = join(runDir, 'folded.safetensors');
  let info: SwitchInfo;
  let foldedTop1: number;
  if (last.structure.kind === 'folded') {
    if (!switchInfo) throw new TrainError(`${runDir}: the model is folded but the fold check was not recorded`);
    info = switchInfo;
    saveModel(foldedPath, last, 'F32');
    foldedTop1 = epochs.length ? epochs[epochs.length - 1].top1 : (await evaluate(last, testSet, cfg)).top1;
  } else if (last.structure.kind === 'branched') {
    const r = await foldAndCheck(last, cfg.epochs);
    info = r.info;
    saveModel(foldedPath, r.folded, 'F32');
    foldedTop1 = r.info.foldedTop1;
  } else {
    return { runDir, epochs, stopped: 'done' };
  }
  log({ event: 'fold', path: foldedPath, verify_max_rel: info.verifyMaxRel, top1_joined: info.joinedTop1, top1_folded: foldedTop1, agreement: info.agreement, folded_at_epoch: info.epoch });
  tryReport(runDir, ev);
  return { runDir, epochs, folded: { path: foldedPath, top1: foldedTop1, verifyMaxRel: info.verifyMaxRel, agreement: info.agreement, atEpoch: info.epoch }, stopped: 'done' };
}
