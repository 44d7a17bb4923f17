// `vitfold predict`: a model run in the ONNX engine on a tensor file or on images.

import { Command, Option } from 'commander';
import { CliError, positiveInt, refuseOverwrite } from './args.js';
import { toBranched, type JoinCoefficients } from '../core/model.js';
import { type Tensor } from '../core/params.js';
import { loadModel, writeFloatTensors } from '../io.js';
import { defaultNormalization, parseNormalization, softmaxRow, topK } from '../core/preprocess.js';
import { Predictor } from '../model/engine.js';
import { loadImage } from '../data/image.js';
import { printNotes, joinList, readInputTensor, numHeadsOption, classNamesOf } from './model-args.js';
import type { ViTConfig } from '../core/config.js';
import { isOnnxPath, loadOnnxModel, OnnxClassifier } from '../deploy/onnx-model.js';
import type { Classifier } from '../model/engine.js';

export function addPredictCommand(program: Command): void {
  program
    .command('predict')
    .description('run a model in the ONNX engine: logits for a tensor file, top classes for images')
    .argument('<model>', 'model .safetensors (plain, branched at its join state, or folded; run in fp32) or an exported .onnx file (any precision)')
    .requiredOption('--input <files...>', 'x.safetensors with tensor x [B, C, S, S] (float), or image files (PNG, JPEG, WebP)')
    .option('--out <file>', 'write the logits [B, num_classes] as tensor "logits" to this .safetensors')
    .addOption(new Option('--branches <k>', 'run a plain model as k-branch blocks (join coefficients default 0 = the deep model)').argParser(positiveInt('--branches')))
    .option('--join-attn <list>', 'attention join coefficients: one per block, comma-separated, or one value for all')
    .option('--join-ffn <list>', 'FFN join coefficients, same form')
    .addOption(new Option('--threads <n>', 'engine threads').argParser(positiveInt('--threads')))
    .addOption(new Option('--top <k>', 'classes printed per input').argParser(positiveInt('--top')).default(5))
    .addOption(numHeadsOption())
    .addHelpText(
      'after',
      `
Images are resized and normalized as the model's normalization metadata says
(default: timm's ImageNet eval transform for RGB models of 160 px and more, else mean 0.5, std 0.5).

Examples:
  $ vitfold predict folded.safetensors --input x.safetensors --out logits.safetensors
  $ vitfold predict deit-tiny.safetensors --input cat.jpg dog.png
  $ vitfold predict fmnist-3layer-int8.onnx --input shoe.png
  $ vitfold predict run/last.safetensors --input x.safetensors --join-attn 1 --join-ffn 0.5,0,0`,
    )
    .action(async (path: string, o: { input: string[]; out?: string; branches?: number; joinAttn?: string; joinFfn?: string; threads?: number; top: number; numHeads?: number }) => {
      if (o.out) refuseOverwrite(o.out, [path, ...o.input]);
      const { config: cfg, metadata, create } = isOnnxPath(path) ? onnxSource(path, o) : safetensorsSource(path, o);
      let x: Tensor;
      let labels: string[];
      const tensorFiles = o.input.filter((f) => f.endsWith('.safetensors'));
      if (tensorFiles.length) {
        if (o.input.length !== 1) throw new CliError('--input takes one .safetensors file, or image files, not both');
        x = readInputTensor(o.input[0], cfg);
        labels = Array.from({ length: x.shape[0] }, (_, i) => `${o.input[0]}[${i}]`);
      } else {
        const norm = parseNormalization(metadata.normalization, cfg, path) ?? defaultNormalization(cfg);
        if (!metadata.normalization) printNotes([`${path} has no normalization metadata; using mean ${norm.mean.join('/')}, std ${norm.std.join('/')}, crop ${norm.crop_pct}`]);
        const per = cfg.in_chans * cfg.img_size * cfg.img_size;
        const data = new Float64Array(o.input.length * per);
        for (let i = 0; i < o.input.length; i++) data.set(await loadImage(o.input[i], cfg, norm), i * per);
        x = { shape: [o.input.length, cfg.in_chans, cfg.img_size, cfg.img_size], data };
        labels = o.input;
      }
      const t0 = performance.now();
      const classifier = await create();
      const logits = await classifier.predict(x);
      await classifier.release();
      const ms = performance.now() - t0;
      if (o.out) {
        writeFloatTensors(o.out, { logits }, 'F32');
        console.log(`wrote    ${o.out}: logits [${logits.shape.join(', ')}] (${ms.toFixed(0)} ms including engine start-up)`);
      }
      const classNames = classNamesOf(metadata, path);
      const K = cfg.num_classes;
      const shown = Math.min(logits.shape[0], 20);
      for (let b = 0; b < shown; b++) {
        const probs = softmaxRow(logits.data.subarray(b * K, (b + 1) * K));
        const top = topK(probs, Math.min(o.top, K)).map(([c, p]) => `${classNames?.[c] ?? c} ${(100 * p).toFixed(1)}%`);
        console.log(`${labels[b]}: ${top.join(', ')}`);
      }
      if (logits.shape[0] > shown) console.log(`... ${logits.shape[0] - shown} more (see --out)`);
    });
}

interface ModelSource {
  config: ViTConfig;
  /** normalization and classes, as the file's metadata holds them. */
  metadata: Record<string, string>;
  create: () => Promise<Classifier>;
}

/** A .safetensors model at its join state, or with --branches / --join-attn / --join-ffn. */
function safetensorsSource(path: string, o: { branches?: number; joinAttn?: string; joinFfn?: string; threads?: number; numHeads?: number }): ModelSource {
  const notes: string[] = [];
  let model = loadModel(path, { numHeads: o.numHeads, notes });
  printNotes(notes);
  if (o.branches !== undefined) {
    if (model.structure.kind === 'branched' && model.structure.branches !== o.branches) {
      throw new CliError(`${path}: is a ${model.structure.branches}-branch model; --branches ${o.branches} contradicts it`);
    }
    if (model.structure.kind !== 'branched') model = toBranched(model, o.branches, {}, path);
  }
  if (o.joinAttn !== undefined || o.joinFfn !== undefined) {
    const s = model.structure;
    if (s.kind !== 'branched') throw new CliError(`${path}: --join-attn/--join-ffn need a branched model (or --branches k)`);
    const L = model.config.depth / s.branches;
    const join: JoinCoefficients = { attn: o.joinAttn !== undefined ? joinList(o.joinAttn, L, '--join-attn') : s.attn, ffn: o.joinFfn !== undefined ? joinList(o.joinFfn, L, '--join-ffn') : s.ffn };
    model = toBranched(model, s.branches, join, path); // validates (f > 0 needs a = 1)
  }
  const m = model;
  return { config: m.config, metadata: m.extraMetadata, create: () => Predictor.create(m, { threads: o.threads }) };
}

/** An exported .onnx file: plain or folded, with its config, normalization and classes in metadata_props. */
function onnxSource(path: string, o: { branches?: number; joinAttn?: string; joinFfn?: string; threads?: number; numHeads?: number }): ModelSource {
  const given = (['branches', 'joinAttn', 'joinFfn', 'numHeads'] as const).filter((k) => o[k] !== undefined);
  if (given.length) throw new CliError(`${path}: ${given.map((k) => '--' + k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())).join(', ')} apply to .safetensors models; an exported .onnx file is what it is`);
  const m = loadOnnxModel(path);
  return { config: m.config, metadata: m.metadata, create: () => OnnxClassifier.create(m, { threads: o.threads }) };
}
