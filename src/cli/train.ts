// `vitfold train`: option parsing and progress output around src/train/.

import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { commandLine, fraction, nonNegativeNumber, numberArg, positiveInt, refuseFlagsWithResume, refuseOutsideInput } from './args.js';
import { preset, PRESETS, type ViTConfig } from '../core/config.js';
import { describeConfig, type Model } from '../core/model.js';
import { paramCount } from '../core/params.js';
import { loadModel } from '../io.js';
import { adaptModel } from '../core/adapt.js';
import { defaultNormalization } from '../core/preprocess.js';
import { DEFAULT_JOIN_SCHEDULE, type JoinMode, type RampShape } from '../train/schedule.js';
import { readRunConfig, train, TrainError, type TrainConfig, type TrainEvents, type TrainResult } from '../train/trainer.js';
import { Progress } from './progress.js';
import { addShapeOptions, configFromOptions, SHAPE_KEYS, type ShapeOptions } from './shape.js';

/** "0.5" (fraction of training) or "3ep" (epochs) -> fraction. */
function progressPoint(text: string, epochs: number, flag: string): number {
  const m = /^([0-9.]+)(ep)?$/.exec(text.trim());
  const v = m ? Number(m[1]) : NaN;
  if (!m || !Number.isFinite(v)) throw new TrainError(`${flag} takes a fraction of training (0.5) or epochs (3ep), got '${text}'`);
  const p = m[2] ? v / epochs : v;
  if (p > 1) throw new TrainError(`${flag} ${text} lies past the end of training (${m[2] ? `${epochs} epochs` : 'fractions run from 0 to 1'})`);
  return p;
}

export interface TrainCliOptions {
  preset?: string;
  branches: number;
  epochs: number;
  batch: number;
  lr: number;
  minLr: number;
  warmupEpochs: number;
  wd: number;
  clip?: number;
  dropPath: number;
  labelSmoothing: number;
  join: JoinMode;
  joinShape: RampShape;
  joinStart: string;
  joinEnd: string;
  cropPadding: number;
  flip: boolean;
  mixup: number;
  cutmix: number;
  mixProb: number;
  erase: number;
  data?: string;
  dataset: 'fashion-mnist' | 'cifar10' | 'folder';
  limitTrain?: number;
  limitTest?: number;
  seed: number;
  threads?: number;
  out: string;
  force?: boolean;
  init?: string;
  ema?: number;
  trainFolded?: boolean;
}

export function trainConfigFrom(o: TrainCliOptions): TrainConfig {
  const cifar = o.dataset === 'cifar10';
  if (o.dataset === 'folder' && !o.preset && !o.init) throw new TrainError('--dataset folder needs --preset (e.g. deit-tiny) or --init CHECKPOINT to set the model shape');
  const model: ViTConfig = preset(o.preset ?? (cifar ? 'vit-32' : o.dataset === 'folder' ? 'deit-tiny' : 'vit-28-p7'));
  return {
    model,
    branches: o.join === 'none' ? 1 : o.branches,
    join: { mode: o.join, shape: o.joinShape, start: progressPoint(o.joinStart, o.epochs, '--join-start'), end: progressPoint(o.joinEnd, o.epochs, '--join-end') },
    epochs: o.epochs,
    batch: o.batch,
    lr: o.lr,
    minLr: o.minLr,
    warmupEpochs: o.warmupEpochs,
    weightDecay: o.wd,
    clipNorm: o.clip ?? null,
    dropPath: o.dropPath,
    labelSmoothing: o.labelSmoothing,
    augment: { cropPadding: o.cropPadding, hflip: o.flip, mixup: o.mixup, cutmix: o.cutmix, mixProb: o.mixProb, erase: o.erase },
    data: { kind: o.dataset, dir: o.data, limitTrain: o.limitTrain, limitTest: o.limitTest },
    // Training-set statistics of each dataset.
    normalization:
      o.dataset === 'folder'
        ? defaultNormalization(model)
        : cifar
          ? { mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.2435, 0.2616], crop_pct: 1 }
          : { mean: [0.286], std: [0.353], crop_pct: 1 },
    seed: o.seed,
    threads: o.threads,
    logEvery: 20,
    ...(o.ema ? { emaDecay: o.ema } : {}),
    ...(o.trainFolded === false ? { trainFolded: false } : {}),
  };
}

/** 75 s -> '1m15s'. */
function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** Runs a training job with a progress bar (or progress lines) on stderr and an epoch table on stdout. */
export async function runTrainingWith<T>(job: (events: TrainEvents) => Promise<T>): Promise<T> {
  let bar: Progress | undefined;
  let lastLoss = NaN;
  let header = false;
  let runStart: number | undefined;
  let stepsTimed = 0;
  const fmtJoin = (v: number[]) => (v.length ? `[${v.map((c) => c.toFixed(2)).join(',')}]` : '-').padEnd(16);
  return job({
      onMessage: (m) => console.log(m),
      onStep: (s) => {
        lastLoss = s.loss;
        // Whole-run ETA from this process's pace (evaluation between epochs not counted).
        const now = performance.now();
        if (runStart === undefined) runStart = now;
        else stepsTimed++;
        const left = (s.epochs - s.epoch - 1) * s.stepsPerEpoch + (s.stepsPerEpoch - s.step);
        const runEta = stepsTimed > 0 ? ` run ETA ${formatDuration(((now - runStart) / stepsTimed) * left)}` : '';
        bar ??= new Progress(`epoch ${s.epoch + 1}`);
        bar.update(s.step, s.stepsPerEpoch, `loss ${lastLoss.toFixed(3)} lr ${s.lr.toExponential(1)} ${s.imgPerSec.toFixed(0)} img/s${runEta}`);
      },
      onEpoch: (e) => {
        bar?.done();
        bar = undefined;
        if (!header) {
          console.log('epoch  train loss  top-1   top-5   attn join        ffn join         s/epoch  img/s  data ms/step');
          header = true;
        }
        console.log(
          `${String(e.epoch).padStart(5)}  ${e.train_loss.toFixed(4).padStart(10)}  ${(100 * e.top1).toFixed(2).padStart(5)}%  ${e.top5 === undefined ? '   -  ' : (100 * e.top5).toFixed(2).padStart(5) + '%'}  ${fmtJoin(e.attn)} ${fmtJoin(e.ffn)} ` +
            `${e.seconds.toFixed(1).padStart(7)}  ${e.img_per_s.toFixed(0).padStart(5)}  ${e.data_ms_per_step.toFixed(2).padStart(6)} (step ${e.step_ms.toFixed(0)} ms)` +
            (e.folded_top1 !== undefined ? `  folded ${(100 * e.folded_top1).toFixed(2)}%, agree ${(100 * e.folded_agreement!).toFixed(2)}%` : '') +
            (e.ema_top1 !== undefined ? `  EMA ${(100 * e.ema_top1).toFixed(2)}%` : ''),
        );
      },
  });
}

function printFold(r: TrainResult): void {
  console.log(`report   ${join(r.runDir, 'report.html')}`);
  if (!r.folded) return;
  const when = r.folded.atEpoch < r.epochs[r.epochs.length - 1]?.epoch ? `when folded after epoch ${r.folded.atEpoch}` : 'at the end';
  console.log(`folded   ${r.folded.path}: top-1 ${(100 * r.folded.top1).toFixed(2)}%`);
  console.log(`verify   ${when}: float64 logits joined vs folded (4 test images) max rel ${r.folded.verifyMaxRel.toExponential(2)}; test predictions agree ${(100 * r.folded.agreement).toFixed(2)}%`);
}

function countClasses(root: string | undefined): number {
  const dir = join(root ?? '.', 'train');
  if (!existsSync(dir)) throw new TrainError(`--dataset folder: ${dir} does not exist (expected ROOT/train/<class>/*.jpg)`);
  return readdirSync(dir).filter((d) => statSync(join(dir, d)).isDirectory()).length;
}

/** Defaults of the options train and shrink share where they differ between the two. */
interface RecipeDefaults {
  epochs: number;
  lr: number;
  warmupEpochs: number;
  joinEnd: string;
  out: string;
  /** Parser and help of --epochs where they differ from train's (shrink takes 0). */
  epochsArg?: (v: string) => number;
  epochsHelp?: string;
}

/** The data, optimizer, schedule and augmentation options of train and shrink. */
export function addRecipeOptions(cmd: Command, d: RecipeDefaults): Command {
  return cmd
    .addOption(new Option('--dataset <name>', 'Fashion-MNIST IDX files, CIFAR-10 binary batches, or an image folder (ROOT/train/<class>/*.jpg, ROOT/val/...)').choices(['fashion-mnist', 'cifar10', 'folder']).default('fashion-mnist'))
    .addOption(new Option('--epochs <n>', d.epochsHelp).argParser(d.epochsArg ?? positiveInt('--epochs')).default(d.epochs))
    .addOption(new Option('--batch <n>').argParser(positiveInt('--batch')).default(128))
    .addOption(new Option('--lr <x>', 'peak learning rate').argParser(nonNegativeNumber('--lr')).default(d.lr))
    .addOption(new Option('--min-lr <x>', 'final learning rate (cosine)').argParser(nonNegativeNumber('--min-lr')).default(1e-5))
    .addOption(new Option('--warmup-epochs <x>').argParser(nonNegativeNumber('--warmup-epochs')).default(d.warmupEpochs))
    .addOption(new Option('--wd <x>', 'AdamW weight decay').argParser(nonNegativeNumber('--wd')).default(0.05))
    .addOption(new Option('--clip <x>', 'clip the global gradient norm').argParser(nonNegativeNumber('--clip')))
    .addOption(new Option('--drop-path <x>', 'stochastic depth rate of the last layer').argParser(fraction('--drop-path')).default(0))
    .addOption(new Option('--label-smoothing <x>').argParser(fraction('--label-smoothing')).default(0.1))
    .addOption(new Option('--join-shape <s>').choices(['linear', 'cosine']).default(DEFAULT_JOIN_SCHEDULE.shape))
    .option('--join-start <p>', 'start of the join window: fraction of training or epochs (2ep)', '0')
    .option('--join-end <p>', 'end of the join window (every coefficient is 1 from here on)', d.joinEnd)
    .addOption(new Option('--crop-padding <n>', 'random crop with zero padding (0: off)').argParser(numberArg('--crop-padding', (n) => Number.isInteger(n) && n >= 0, 'an integer >= 0')).default(2))
    .option('--no-flip', 'no random horizontal flips')
    .addOption(new Option('--mixup <alpha>', 'mixup Beta alpha (DeiT: 0.8; 0: off)').argParser(nonNegativeNumber('--mixup')).default(0))
    .addOption(new Option('--cutmix <alpha>', 'cutmix Beta alpha (DeiT: 1.0; 0: off)').argParser(nonNegativeNumber('--cutmix')).default(0))
    .addOption(new Option('--mix-prob <p>', 'probability that a batch is mixed').argParser(numberArg('--mix-prob', (n) => n >= 0 && n <= 1, 'in [0, 1]')).default(1))
    .addOption(new Option('--erase <p>', 'random-erasing probability per image (DeiT: 0.25; 0: off)').argParser(fraction('--erase')).default(0))
    .option('--data <dir>', 'dataset folder (Fashion-MNIST default: Debian dataset-fashion-mnist)')
    .addOption(new Option('--limit-train <n>', 'use the first n training images').argParser(positiveInt('--limit-train')))
    .addOption(new Option('--limit-test <n>', 'use the first n test images').argParser(positiveInt('--limit-test')))
    .addOption(new Option('--seed <n>').argParser(numberArg('--seed', (n) => Number.isInteger(n) && n >= 0, 'an integer >= 0')).default(0))
    .addOption(new Option('--threads <n>', 'engine threads').argParser(positiveInt('--threads')))
    .option('--out <dir>', 'run directory', d.out)
    .option('--force', 'start afresh in a run directory that is not empty, replacing what is there')
    .addOption(new Option('--ema <decay>', 'keep an exponential moving average of the weights (e.g. 0.999), evaluated separately').argParser(fraction('--ema')))
    .option('--no-train-folded', 'stay on the branched graph after the join window (default: continue on the faster folded graph)');
}

export function addTrainCommands(program: Command): void {
  addRecipeOptions(
    addShapeOptions(program
      .command('train'))
      .description('train a branched ViT (Fashion-MNIST, CIFAR-10 or an image folder) while its branches are joined, then fold, verify and evaluate it')
      .addOption(new Option('--preset <name>', 'model shape (default: vit-28-p7 for Fashion-MNIST, vit-32 for CIFAR-10)').choices(Object.keys(PRESETS)))
      .addOption(new Option('--branches <k>', 'branches per block (depth / k blocks)').argParser(positiveInt('--branches')).default(4))
      .addOption(new Option('--join <mode>', 'join schedule: all blocks together, block by block, or none (the plain deep baseline)').choices(['together', 'sequential', 'none']).default(DEFAULT_JOIN_SCHEDULE.mode)),
    { epochs: 5, lr: 2e-3, warmupEpochs: 0.5, joinEnd: '0.5', out: 'runs/train' },
  )
    .option('--init <checkpoint>', 'start from a plain deep checkpoint (e.g. timm safetensors): new head for a new class count, position embedding resized (bicubic), RGB/grey patch weights adapted')
    .option('--resume <dir>', 'continue an interrupted run from its last epoch checkpoint')
    .addHelpText(
      'after',
      `
Examples:
  $ vitfold train --epochs 5 --out runs/fm-k4
  $ vitfold train --join sequential --join-end 3ep --epochs 6 --branches 3
  $ vitfold train --join none --out runs/deep-baseline
  $ vitfold train --join none --depth 3 --num-heads 12 --head-dim 32 --mlp-hidden 768   # a 3-layer fold's shape, trained directly
  $ vitfold train --dataset cifar10 --data cifar-10-batches-bin --mixup 0.8 --cutmix 1 --erase 0.25
  $ vitfold train --dataset folder --data pets/ --init deit_tiny_patch16_224.safetensors
  $ vitfold train --resume runs/fm-k4`,
    )
    .action(async (o: TrainCliOptions & ShapeOptions & { resume?: string }, cmd: Command) => {
      if (o.resume) {
        refuseFlagsWithResume(cmd);
        const cfg = readRunConfig(o.resume);
        printFold(await runTrainingWith((events) => train(cfg, o.resume!, { resume: true, events })));
        return;
      }
      const cfg = trainConfigFrom(o);
      const shapeGiven = Object.keys(o).filter((k) => SHAPE_KEYS.includes(k as keyof ShapeOptions));
      if (shapeGiven.length && o.init) throw new TrainError(`--init ${o.init} sets the model shape; drop ${shapeGiven.map((k) => '--' + k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())).join(', ')}`);
      cfg.model = configFromOptions(cfg.model, o, 'train: the preset with the shape options');
      // An image folder's class count is its number of sub-folders of train/.
      const folderClasses = o.dataset === 'folder' ? countClasses(o.data) : undefined;
      if (folderClasses !== undefined) cfg.model.num_classes = folderClasses;
      let init: Model | undefined;
      if (o.init) {
        refuseOutsideInput(o.out, o.init);
        // The pretrained network with this dataset's image size, channels and classes (or --preset).
        const notes: string[] = [];
        const ckpt = loadModel(o.init, { notes });
        notes.forEach((n) => console.error(`note: ${n}`));
        const data =
          o.dataset === 'cifar10' ? { img_size: 32, in_chans: 3, num_classes: 10 } : o.dataset === 'folder' ? { num_classes: folderClasses! } : { img_size: 28, in_chans: 1, num_classes: 10 };
        const target = o.preset ? { ...preset(o.preset), ...(folderClasses !== undefined ? { num_classes: folderClasses } : {}) } : { ...ckpt.config, ...data };
        init = adaptModel(ckpt, target, o.seed, o.init);
        cfg.model = target;
        cfg.normalization = o.dataset === 'folder' ? defaultNormalization(target) : cfg.normalization;
      }
      console.log(`model    ${describeConfig(cfg.model)}, ${paramCount(cfg.model).toLocaleString('en-US')} params; ${cfg.model.depth / cfg.branches} blocks x ${cfg.branches} branches`);
      printFold(await runTrainingWith((events) => train(cfg, o.out, { init, force: o.force, events, command: commandLine() })));
    });
}
