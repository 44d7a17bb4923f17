// `vitfold shrink`: option parsing and output around src/train/shrink.ts.

import { join } from 'node:path';
import { Command, Option } from 'commander';
import { CliError, commandLine, nonNegativeInt, nonNegativeNumber, numberArg, positiveInt, positiveNumber, refuseFlagsWithResume, refuseOutsideInput } from './args.js';
import { describeConfig } from '../core/model.js';
import { parseNormalization } from '../core/preprocess.js';
import { exportModel, EXPORT_TOLERANCE } from '../deploy/export.js';
import { loadModel, writeFileAtomic } from '../io.js';
import { DEFAULT_JOIN_SCHEDULE } from '../train/schedule.js';
import { planShrink, resumeShrink, shrink, shrinkConfig, SHRINK_DEFAULTS, SHRINK_METHODS, type ShrinkMethod, type ShrinkResult } from '../train/shrink.js';
import { TrainError } from '../train/trainer.js';
import { addRecipeOptions, runTrainingWith, trainConfigFrom, type TrainCliOptions } from './train.js';

interface ShrinkCliOptions extends Omit<TrainCliOptions, 'branches' | 'join' | 'epochs'> {
  epochs: number;
  depth?: number;
  branches?: number;
  method: ShrinkMethod;
  join: 'together' | 'sequential';
  distill: boolean;
  kdAlpha: number;
  kdTemperature: number;
  kdHidden?: number;
  export: boolean;
  resume?: string;
}

const pct = (x: number) => `${(100 * x).toFixed(2)}%`;

/** Writes the shallow model's fp32 ONNX export beside it, validated against the float64 reference. */
async function exportShrunk(r: ShrinkResult): Promise<void> {
  const model = loadModel(r.model.path);
  const out = join(r.runDir, 'shrunk.onnx');
  const e = await exportModel(model, { precision: 'fp32' });
  const ok = e.error.maxRel <= EXPORT_TOLERANCE.fp32;
  if (ok) writeFileAtomic(out, e.bytes);
  console.log(`export   ${ok ? out : '(not written)'}: fp32 ONNX, ${(e.bytes.length / 2 ** 20).toFixed(2)} MiB; onnxruntime vs float64 reference max rel ${e.error.maxRel.toExponential(2)} (tolerance ${EXPORT_TOLERANCE.fp32})${ok ? '' : ' FAILED'}`);
  if (!ok) process.exitCode = 1;
}

function printResult(r: ShrinkResult): void {
  if (r.stopped !== 'done') return;
  if (r.folded) console.log(`verify   float64 logits joined vs folded (4 test images) max rel ${r.folded.verifyMaxRel.toExponential(2)}; test predictions agree ${pct(r.folded.agreement)}`);
  const vs = r.instantTop1 !== undefined ? `, instant fold ${pct(r.instantTop1)}` : '';
  console.log(`shrunk   ${r.model.path}: ${r.model.depth} layers, top-1 ${pct(r.model.top1)} (teacher ${pct(r.teacherTop1)}${vs})`);
}

export function addShrinkCommand(program: Command): void {
  addRecipeOptions(
    program
      .command('shrink')
      .description('make a trained deep ViT shallow: fine-tune it as branches joined while distilling from itself, fold exactly, verify, evaluate and export')
      .argument('[teacher]', 'the trained deep model (.safetensors, plain; e.g. a `vitfold train --join none` run or a timm checkpoint adapted with `train --init`)')
      .addOption(new Option('--depth <L>', 'layers of the shallow model (join: L divides the depth)').argParser(positiveInt('--depth')))
      .addOption(new Option('--branches <k>', 'branches per block instead of --depth (L = depth / k)').argParser(positiveInt('--branches')))
      .addOption(new Option('--method <m>', 'join: fold the joined branches (vitfold); drop: keep L evenly spaced layers and fine-tune them the same way (the standard baseline)').choices([...SHRINK_METHODS]).default(SHRINK_DEFAULTS.method))
      .addOption(new Option('--join <mode>', 'join schedule: all blocks together or block by block').choices(['together', 'sequential']).default(DEFAULT_JOIN_SCHEDULE.mode))
      .option('--no-distill', 'labels only: no distillation from the deep model')
      .addOption(new Option('--kd-alpha <x>', 'weight of the distillation term (the label loss gets 1 - alpha)').argParser(numberArg('--kd-alpha', (n) => n >= 0 && n <= 1, 'in [0, 1]')).default(SHRINK_DEFAULTS.distill!.alpha))
      .addOption(new Option('--kd-temperature <T>', 'softmax temperature of the distillation').argParser(positiveNumber('--kd-temperature')).default(SHRINK_DEFAULTS.distill!.temperature))
      .addOption(new Option('--kd-hidden <beta>', `weight of hidden-state matching: the shallow model\'s stream at each block boundary against the deep model\'s (relative squared error per image; 0: off) (default: ${SHRINK_DEFAULTS.kdHidden.join} with --method join, ${SHRINK_DEFAULTS.kdHidden.drop} with drop)`).argParser(nonNegativeNumber('--kd-hidden')))
      .option('--no-export', 'skip the fp32 ONNX export of the shallow model'),
    {
      epochs: SHRINK_DEFAULTS.epochs,
      lr: SHRINK_DEFAULTS.lr,
      warmupEpochs: SHRINK_DEFAULTS.warmupEpochs,
      joinEnd: String(SHRINK_DEFAULTS.joinEnd),
      out: 'runs/shrink',
      epochsArg: nonNegativeInt('--epochs'),
      epochsHelp: 'fine-tuning epochs (0 with --method join: the instant fold, no training)',
    },
  )
    .option('--resume <dir>', 'continue an interrupted shrink run from its last epoch checkpoint')
    .addHelpText(
      'after',
      `
Examples:
  $ vitfold train --join none --epochs 5 --out runs/deep          # a trained 12-layer model
  $ vitfold shrink runs/deep/last.safetensors --depth 3 --out runs/shrink3
  $ vitfold shrink runs/deep/last.safetensors --depth 3 --limit-train 6000 --epochs 5
  $ vitfold shrink runs/deep/last.safetensors --depth 3 --method drop --out runs/drop3
  $ vitfold shrink runs/deep/last.safetensors --depth 3 --epochs 0 --out runs/instant3
  $ vitfold shrink --resume runs/shrink3`,
    )
    .action(async (teacherPath: string | undefined, o: ShrinkCliOptions, cmd: Command) => {
      let r: ShrinkResult;
      if (o.resume) {
        if (teacherPath) throw new CliError(`--resume ${o.resume} continues the run with its own teacher; drop ${teacherPath}`);
        refuseFlagsWithResume(cmd);
        r = await runTrainingWith((events) => resumeShrink(o.resume!, events));
      } else {
        if (!teacherPath) throw new TrainError('shrink needs the trained deep model: vitfold shrink TEACHER.safetensors --depth L (or --resume DIR)');
        refuseOutsideInput(o.out, teacherPath);
        const teacher = loadModel(teacherPath);
        const D = teacher.config.depth;
        if ((o.depth === undefined) === (o.branches === undefined)) throw new TrainError(`give exactly one of --depth L or --branches k (the model has ${D} layers)`);
        if (o.branches !== undefined && D % o.branches !== 0) throw new TrainError(`--branches ${o.branches} does not divide the model's ${D} layers`);
        const depth = o.depth ?? D / o.branches!;
        const { plan, branches } = planShrink(teacher, teacherPath, o.method, depth);
        const base = trainConfigFrom({ ...o, branches, preset: undefined, init: teacherPath });
        base.model = teacher.config;
        base.normalization = parseNormalization(teacher.extraMetadata.normalization, teacher.config, teacherPath) ?? base.normalization;
        if (o.kdHidden && !o.distill) throw new CliError('--kd-hidden is part of the distillation: drop --no-distill or --kd-hidden');
        if (o.kdHidden && depth < 2) throw new CliError('--kd-hidden matches the boundaries between the shallow model\'s layers: it needs --depth 2 or more');
        const kdHidden = o.kdHidden ?? (depth >= 2 ? SHRINK_DEFAULTS.kdHidden[o.method] : 0);
        const cfg = shrinkConfig(base, teacher, plan, branches, o.distill ? { alpha: o.kdAlpha, temperature: o.kdTemperature, ...(kdHidden > 0 ? { hidden: kdHidden } : {}) } : null);
        const how = plan.method === 'join' ? `${D / depth} branches per block joined (${cfg.join.mode}, ${cfg.join.shape}) over ${cfg.join.start}-${cfg.join.end} of the run, then folded` : `layers ${plan.layers!.join(', ')} kept`;
        console.log(`shrink   ${teacherPath} (${describeConfig(teacher.config)}) -> ${depth} layers: ${how}`);
        console.log(`recipe   ${cfg.epochs} epochs, lr ${cfg.lr}, ${cfg.data.limitTrain ?? 'all'} training images, ${cfg.distill ? `distilled from the deep model (alpha ${cfg.distill.alpha}, T ${cfg.distill.temperature}${cfg.distill.hidden ? `, hidden-state matching beta ${cfg.distill.hidden}` : ''})` : 'labels only'}`);
        r = await runTrainingWith((events) => shrink(cfg, o.out, { force: o.force, events, command: commandLine() }));
      }
      printResult(r);
      if (r.stopped === 'done' && o.export) await exportShrunk(r);
    });
}
