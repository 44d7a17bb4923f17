// `vitfold eval`: top-1 and top-5 of a model on a test set, for a .safetensors model (at its
// join state, fp32) or an exported .onnx file (any precision), with the model's own
// normalization.

import { Command, Option } from 'commander';
import { CliError, positiveInt } from './args.js';
import type { ViTConfig } from '../core/config.js';
import { defaultNormalization, parseNormalization } from '../core/preprocess.js';
import { loadCifar10 } from '../data/cifar.js';
import { loadImageFolder } from '../data/folder.js';
import { loadMnistLike, type ImageSet } from '../data/idx.js';
import { limit } from '../data/batch.js';
import { isOnnxPath, loadOnnxModel, OnnxClassifier } from '../deploy/onnx-model.js';
import { loadModel } from '../io.js';
import { Predictor, type Classifier } from '../model/engine.js';
import { evaluateClassifier } from '../train/trainer.js';
import { classNamesOf, numHeadsOption, printNotes } from './model-args.js';
import { Progress } from './progress.js';

const DATASETS = ['fashion-mnist', 'cifar10', 'folder'] as const;

export function addEvalCommand(program: Command): void {
  program
    .command('eval')
    .description('top-1 and top-5 of a model on a test set (.safetensors in fp32, or an exported .onnx in its precision)')
    .argument('<model>', 'model .safetensors or exported .onnx')
    .addOption(new Option('--dataset <name>', 'the test set: Fashion-MNIST t10k, CIFAR-10 test_batch, or ROOT/val/<class>/*.jpg').choices([...DATASETS]).default('fashion-mnist'))
    .option('--data <dir>', 'dataset folder (Fashion-MNIST default: Debian dataset-fashion-mnist)')
    .addOption(new Option('--limit-test <n>', 'use the first n test images').argParser(positiveInt('--limit-test')))
    .addOption(new Option('--batch <n>', 'images per engine call').argParser(positiveInt('--batch')).default(500))
    .addOption(new Option('--threads <n>', 'engine threads').argParser(positiveInt('--threads')))
    .addOption(numHeadsOption())
    .addHelpText('after', '\nExamples:\n  $ vitfold eval runs/demo/folded.safetensors\n  $ vitfold eval fmnist-3layer-int8.onnx --limit-test 1000\n  $ vitfold eval pets-3layer.onnx --dataset folder --data pets/')
    .action(async (path: string, o: { dataset: (typeof DATASETS)[number]; data?: string; limitTest?: number; batch: number; threads?: number; numHeads?: number }) => {
      let cfg: ViTConfig;
      let metadata: Record<string, string>;
      let create: () => Promise<Classifier>;
      if (isOnnxPath(path)) {
        const m = loadOnnxModel(path);
        [cfg, metadata] = [m.config, m.metadata];
        create = () => OnnxClassifier.create(m, { threads: o.threads });
      } else {
        const notes: string[] = [];
        const model = loadModel(path, { numHeads: o.numHeads, notes });
        printNotes(notes);
        [cfg, metadata] = [model.config, model.extraMetadata];
        create = () => Predictor.create(model, { threads: o.threads });
      }
      const normalization = parseNormalization(metadata.normalization, cfg, path) ?? defaultNormalization(cfg);
      const set = limit(await testSet(o.dataset, o.data, cfg, normalization.crop_pct, classNamesOf(metadata, path)), o.limitTest);
      if (set.channels !== cfg.in_chans || (o.dataset !== 'folder' && set.size !== cfg.img_size)) {
        throw new CliError(`${path}: the model takes ${cfg.in_chans} x ${cfg.img_size} x ${cfg.img_size} images; the ${o.dataset} test set has ${set.channels} x ${set.size} x ${set.size}`);
      }
      if (set.classes.length !== cfg.num_classes) throw new CliError(`${path}: the model has ${cfg.num_classes} classes; the test set has ${set.classes.length}`);
      const t0 = performance.now();
      const progress = new Progress('eval    ');
      const r = await evaluateClassifier(await create(), set, { size: cfg.img_size, normalization, cropPadding: 0, hflip: false }, cfg.num_classes, o.batch, (done, total) => progress.update(done, total, 'images'));
      progress.done();
      const s = (performance.now() - t0) / 1000;
      console.log(`eval     ${path} on ${set.count.toLocaleString('en-US')} ${o.dataset} test images: top-1 ${(100 * r.top1).toFixed(2)}%, top-5 ${(100 * r.top5).toFixed(2)}% (${s.toFixed(1)} s)`);
    });
}

async function testSet(dataset: (typeof DATASETS)[number], dir: string | undefined, cfg: ViTConfig, cropPct: number, classes: string[] | null): Promise<ImageSet> {
  if (dataset === 'cifar10') return loadCifar10(dir, 'test');
  if (dataset === 'fashion-mnist') return loadMnistLike(dir, 't10k');
  if (!dir) throw new CliError('--dataset folder needs --data ROOT (ROOT/val/<class>/*.jpg)');
  return loadImageFolder(dir, 'val', Math.round(cfg.img_size / cropPct), cfg.in_chans, classes ?? undefined);
}
