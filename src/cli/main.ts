#!/usr/bin/env node
// The vitfold command line. Every command is a thin layer over the library: parse flags, load,
// call the pure core, print, write atomically.

import { fileSystemError, VitfoldError } from '../core/errors.js';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { CliError, nonNegativeInt, positiveInt, positiveNumber, refuseOverwrite } from './args.js';
import { PRESETS, preset, validateConfig, type ViTConfig } from '../core/config.js';
import { fold, foldedConfig, unjoinedCoefficients } from '../core/fold.js';
import { flopsPerImage, formatCount } from '../core/flops.js';
import {
  describeConfig,
  describeStructure,
  toBranched,
  type Model,
} from '../core/model.js';
import { initParams, paramCount, type Tensor } from '../core/params.js';
import { type FloatDType } from '../core/safetensors.js';
import { checkFold, compareLogits, randomInput } from '../core/verify.js';
import { referenceForward } from '../core/reference.js';
import { loadModel, readFloatTensor, saveModel, writeFileAtomic, writeFloatTensors } from '../io.js';
import { DEFAULT_INT8_WEIGHTS, INT8_WEIGHTS, type Int8Weights } from '../deploy/int8.js';
import { DEFAULT_EXPORT_OPSET, EXPORT_ATTENTION, EXPORT_OPSETS, EXPORT_TOLERANCE, exportableModel, exportModel, PRECISIONS, type ExportAttention, type Precision } from '../deploy/export.js';
import { defaultNormalization, parseNormalization, softmaxRow, topK } from '../core/preprocess.js';
import { Predictor } from '../model/engine.js';
import { loadImage } from '../data/image.js';
import { Progress } from './progress.js';
import { addTrainCommands } from './train.js';
import { addShapeOptions, configFromOptions } from './shape.js';
import { addBenchCommand } from './bench.js';
import { addShrinkCommand } from './shrink.js';
import { addExperimentCommand } from './experiment.js';
import { addDemoCommand } from './demo.js';

/** Exit codes: 0 ok, 1 a check failed (verify above tolerance), 2 bad input or usage, 3 a bug. */
const EXIT_CHECK_FAILED = 1;
const EXIT_BAD_INPUT = 2;
const EXIT_INTERNAL = 3;

const DTYPES: Record<string, FloatDType> = { f32: 'F32', f64: 'F64', f16: 'F16', bf16: 'BF16' };

function printNotes(notes: string[]): void {
  for (const n of notes) process.stderr.write(`note: ${n}\n`);
}

interface BranchOpts {
  branches?: number;
  assumeJoined?: boolean;
  numHeads?: number;
}

/**
 * The fully joined branched model that `fold` and `verify` work on: a branched checkpoint as it
 * is, or a plain checkpoint regrouped with --branches k, which needs --assume-joined because its
 * fold equals the fully joined model, not the deep model the checkpoint holds.
 */
function joinedModelFrom(path: string, opts: BranchOpts): Model {
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
function joinList(text: string, L: number, flag: string): number[] {
  const vals = text.split(',').map((t) => Number(t.trim()));
  if (vals.some((v) => !(v >= 0 && v <= 1))) throw new CliError(`${flag} ${text}: coefficients must be numbers in [0, 1]`);
  if (vals.length === 1) return new Array(L).fill(vals[0]);
  if (vals.length !== L) throw new CliError(`${flag} ${text}: give one value or ${L} (one per block), got ${vals.length}`);
  return vals;
}

function fmtErr(x: number): string {
  return Number.isNaN(x) ? 'NaN' : x.toExponential(2);
}

function seconds(t0: number): string {
  return `${((performance.now() - t0) / 1000).toFixed(2)}s`;
}

function loadInput(path: string | undefined, model: Model, batch: number, seed: number): { x: Tensor; label: string } {
  if (path === undefined) {
    return { x: randomInput(model, batch, seed), label: `seeded normal [${batch}, ${model.config.in_chans}, ${model.config.img_size}, ${model.config.img_size}] (seed ${seed})` };
  }
  const x = readFloatTensor(path, 'x', 4);
  const { in_chans: C, img_size: S } = model.config;
  if (x.shape[1] !== C || x.shape[2] !== S || x.shape[3] !== S) {
    throw new CliError(`${path}: 'x' has shape ${JSON.stringify(x.shape)}, expected [B, ${C}, ${S}, ${S}] for this model`);
  }
  if (x.shape[0] < 1) throw new CliError(`${path}: 'x' holds no images (shape ${JSON.stringify(x.shape)})`);
  const bad = x.data.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new CliError(`${path}: 'x' holds a non-finite value (${x.data[bad]}) at flat index ${bad}`);
  return { x, label: `${path} 'x' ${JSON.stringify(x.shape)}` };
}

function progressFor(label: string) {
  const p = new Progress(label);
  return {
    onImage: (what: string, done: number, total: number) => p.update(done, total, what),
    done: () => p.done(),
  };
}

interface VerifyReport {
  ok: boolean;
  lines: string[];
  branchedLogits: Float64Array;
}

/** Runs the branched model and its fold on x and reports; shared by verify, fold --verify, demo. */
function verifyFold(branched: Model, folded: Model, x: Tensor, inputLabel: string, tol: number): VerifyReport {
  const prog = progressFor('verify');
  const t0 = performance.now();
  const res = checkFold(branched, folded, x, prog.onImage);
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

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('vitfold')
    .description(
      'Make Vision Transformers shallower without losing accuracy: train parallel branches, join them, ' +
        'then fold each block exactly into one wider layer (Zhou et al., arXiv 2511.19718).',
    )
    .version('0.1.0')
    .exitOverride()
    .option('--debug', 'print a stack trace with any error')
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText(
      'after',
      `
Examples:
  $ vitfold init --preset deit-tiny --out deit-tiny.safetensors
  $ vitfold info deit-tiny.safetensors
  $ vitfold fold deit-tiny.safetensors --branches 4 --assume-joined --out deit-tiny-3layer.safetensors
  $ vitfold verify deit-tiny.safetensors --branches 4 --assume-joined --folded deit-tiny-3layer.safetensors
  $ vitfold train --epochs 5 --out runs/fm
  $ vitfold demo`,
    );

  program
    .command('info')
    .description('print a model file\'s config, join state, parameter count and FLOPs per image')
    .argument('<model>', 'model .safetensors (vitfold or timm/DeiT)')
    .addOption(new Option('--num-heads <n>', 'head count, for files without a config').argParser(positiveInt('--num-heads')))
    .option('--json', 'print JSON instead of text')
    .action((path: string, o: { numHeads?: number; json?: boolean }) => {
      const notes: string[] = [];
      const model = loadModel(path, { numHeads: o.numHeads, notes });
      printNotes(notes);
      const cfg = model.config;
      const s = model.structure;
      const flops = flopsPerImage(cfg);
      const foldCfg = s.kind === 'branched' ? foldedConfig(cfg, s.branches) : null;
      if (o.json) {
        console.log(
          JSON.stringify(
            { file: path, config: cfg, structure: s, dtype: model.dtype, params: paramCount(cfg), flops_per_image: flops.total, fold: foldCfg, metadata: model.extraMetadata },
            null,
            2,
          ),
        );
        return;
      }
      console.log(`file       ${path} (${model.dtype})`);
      console.log(`config     ${describeConfig(cfg)}, LayerNorm eps ${cfg.eps}`);
      console.log(`structure  ${describeStructure(s, cfg)}`);
      console.log(`params     ${paramCount(cfg).toLocaleString('en-US')} (${formatCount(paramCount(cfg))})`);
      console.log(
        `FLOPs      ${formatCount(flops.total)}FLOP per image (matmuls, multiply-add = 2: ` +
          `patch ${formatCount(flops.patchEmbed)}, attention ${formatCount(flops.attention)}, MLP ${formatCount(flops.mlp)}, head ${formatCount(flops.head)})`,
      );
      if (foldCfg && s.kind === 'branched') {
        const unjoined = unjoinedCoefficients(model);
        console.log(
          `fold       ${foldCfg.depth} layers, ${foldCfg.num_heads} heads x ${foldCfg.head_dim}, MLP ${foldCfg.mlp_hidden}, ` +
            `${paramCount(foldCfg).toLocaleString('en-US')} params; ` +
            (unjoined.length ? `not yet possible (${unjoined.length} coefficients below 1)` : 'ready (fully joined)'),
        );
      }
      for (const [k, v] of Object.entries(model.extraMetadata)) console.log(`metadata   ${k}: ${v.length > 100 ? v.slice(0, 100) + '...' : v}`);
    });

  addShapeOptions(program
    .command('init'))
    .description('write a randomly initialized model (timm init), plain or branched with coefficients 0')
    .requiredOption('--out <file>', 'output .safetensors')
    .addOption(new Option('--preset <name>', 'base config').choices(Object.keys(PRESETS)).default('deit-tiny'))
    .addOption(new Option('--branches <k>', 'write a k-branch model (join coefficients 0 = the deep model)').argParser(positiveInt('--branches')))
    .addOption(new Option('--seed <n>', 'random seed').argParser(nonNegativeInt('--seed')).default(0))
    .addOption(new Option('--dtype <t>', 'storage dtype').choices(Object.keys(DTYPES)).default('f32'))
    .addHelpText('after', '\nExample:\n  $ vitfold init --preset vit-28 --branches 4 --out fmnist-4branch.safetensors')
    .action((o: Record<string, unknown>) => {
      const config = configFromOptions(preset(o.preset as string), o, `--preset ${o.preset as string} with overrides`);
      let model: Model = { config, structure: { kind: 'plain' }, params: initParams(config, o.seed as number), dtype: 'F32', extraMetadata: {} };
      if (o.branches !== undefined) model = toBranched(model, o.branches as number, {}, '--branches');
      saveModel(o.out as string, model, DTYPES[o.dtype as string]);
      console.log(`wrote ${o.out as string}: ${describeConfig(config)}; ${describeStructure(model.structure, config)}; ${paramCount(config).toLocaleString('en-US')} params`);
    });

  program
    .command('fold')
    .description('fold a fully joined branched model into an equivalent shallower, wider plain ViT (exact)')
    .argument('<model>', 'branched model .safetensors with every join coefficient at 1, or a plain one with --branches --assume-joined')
    .requiredOption('--out <file>', 'output .safetensors (a plain ViT: timm names, wider shapes)')
    .addOption(new Option('--branches <k>', 'regroup a plain checkpoint into blocks of k consecutive layers').argParser(positiveInt('--branches')))
    .option('--assume-joined', 'with --branches: fold as the fully joined model (differs from the deep original)')
    .addOption(new Option('--dtype <t>', 'storage dtype of the folded weights (default: the input file\'s)').choices(Object.keys(DTYPES)))
    .addOption(new Option('--num-heads <n>', 'head count, for files without a config').argParser(positiveInt('--num-heads')))
    .option('--verify', 'also run the branched model and the fold on a seeded input and compare (float64)')
    .addHelpText(
      'after',
      `
The fold is computed in float64; the file stores the weights as --dtype.

Examples:
  $ vitfold fold run/joined.safetensors --out run/folded.safetensors
  $ vitfold fold deit_tiny_patch16_224.safetensors --branches 4 --assume-joined --out deit-3layer.safetensors`,
    )
    .action((path: string, o: BranchOpts & { out: string; dtype?: string; verify?: boolean }) => {
      refuseOverwrite(o.out, [path]);
      const t0 = performance.now();
      const branched = joinedModelFrom(path, o);
      const folded = fold(branched, path);
      saveModel(o.out, folded, o.dtype ? DTYPES[o.dtype] : branched.dtype);
      const c = folded.config;
      console.log(
        `folded   ${path}: ${branched.config.depth} layers in ${c.depth} blocks x ${(folded.structure as { branches: number }).branches} branches -> ` +
          `${c.depth} layers, ${c.num_heads} heads x ${c.head_dim}, MLP ${c.mlp_hidden}`,
      );
      console.log(`wrote    ${o.out} (${o.dtype ? DTYPES[o.dtype] : branched.dtype}, ${paramCount(c).toLocaleString('en-US')} params) in ${seconds(t0)}`);
      if (o.verify) {
        const { x, label } = loadInput(undefined, branched, 1, 0);
        const rep = verifyFold(branched, folded, x, label, 1e-9);
        rep.lines.forEach((l) => console.log(l));
        if (!rep.ok) return void (process.exitCode = EXIT_CHECK_FAILED);
      }
    });

  program
    .command('verify')
    .description('check that a fully joined branched model and its fold give the same logits (float64)')
    .argument('<model>', 'branched model .safetensors, or a plain one with --branches --assume-joined')
    .addOption(new Option('--branches <k>', 'regroup a plain checkpoint into blocks of k consecutive layers').argParser(positiveInt('--branches')))
    .option('--assume-joined', 'with --branches: verify the fully joined model\'s fold')
    .option('--input <file>', 'input .safetensors with tensor x [B, C, S, S] (default: seeded normal input)')
    .addOption(new Option('--batch <n>', 'images in the seeded input').argParser(positiveInt('--batch')).default(2))
    .addOption(new Option('--seed <n>', 'seed of the input').argParser(nonNegativeInt('--seed')).default(0))
    .option('--folded <file>', 'also check this folded file (e.g. written by `vitfold fold`) against the branched model')
    .addOption(new Option('--tol <x>', 'max relative logit error of the float64 fold').argParser(positiveNumber('--tol')).default(1e-9))
    .addOption(
      new Option('--folded-tol <x>', 'max relative error for --folded (default: 1e-9 for F64 files, 1e-5 for F32, 1e-2 for F16/BF16)').argParser(
        positiveNumber('--folded-tol'),
      ),
    )
    .addOption(new Option('--num-heads <n>', 'head count, for files without a config').argParser(positiveInt('--num-heads')))
    .addHelpText(
      'after',
      `
Relative error = max |branched - folded| / max |branched| over all logits. The in-memory fold is
float64 and must be within --tol (1e-9); a folded FILE stores rounded weights (F32: ~1e-7).
Exit code 1 when a check fails.

Examples:
  $ vitfold verify run/joined.safetensors
  $ vitfold verify deep.safetensors --branches 3 --assume-joined --input x.safetensors
  $ vitfold verify deep.safetensors --branches 3 --assume-joined --folded deep-folded.safetensors`,
    )
    .action(
      (
        path: string,
        o: BranchOpts & { input?: string; batch: number; seed: number; folded?: string; tol: number; foldedTol?: number },
      ) => {
        const branched = joinedModelFrom(path, o);
        const folded = fold(branched, path);
        const { x, label } = loadInput(o.input, branched, o.batch, o.seed);
        const c = folded.config;
        console.log(`model    ${path}: ${describeStructure(branched.structure, branched.config)}`);
        console.log(`fold     ${c.depth} layers, ${c.num_heads} heads x ${c.head_dim}, MLP ${c.mlp_hidden}`);
        const rep = verifyFold(branched, folded, x, label, o.tol);
        rep.lines.forEach((l) => console.log(l));
        let ok = rep.ok;
        if (o.folded !== undefined) {
          const file = loadModel(o.folded);
          const fc = file.config;
          if (fc.depth !== c.depth || fc.num_heads !== c.num_heads || fc.head_dim !== c.head_dim || fc.mlp_hidden !== c.mlp_hidden) {
            throw new CliError(`${o.folded}: has ${describeConfig(fc)}, but the fold of ${path} has ${describeConfig(c)}`);
          }
          const tol = o.foldedTol ?? (file.dtype === 'F64' ? 1e-9 : file.dtype === 'F32' ? 1e-5 : 1e-2);
          const err = compareLogits(rep.branchedLogits, referenceForward(file, x).data);
          const fileOk = err.maxRel <= tol;
          console.log(
            `file     branched vs ${o.folded} (${file.dtype} weights): max abs ${fmtErr(err.maxAbs)}, ` +
              `max rel ${fmtErr(err.maxRel)} (tolerance ${tol})  ${fileOk ? 'OK' : 'FAILED'}`,
          );
          ok &&= fileOk;
        }
        if (!ok) process.exitCode = EXIT_CHECK_FAILED;
      },
    );

  program
    .command('predict')
    .description('run a model in the ONNX engine (fp32): logits for a tensor file, top classes for images')
    .argument('<model>', 'model .safetensors (plain, branched at its join state, or folded)')
    .requiredOption('--input <files...>', 'x.safetensors with tensor x [B, C, S, S] (float), or image files (PNG, JPEG, WebP)')
    .option('--out <file>', 'write the logits [B, num_classes] as tensor "logits" to this .safetensors')
    .addOption(new Option('--branches <k>', 'run a plain model as k-branch blocks (join coefficients default 0 = the deep model)').argParser(positiveInt('--branches')))
    .option('--join-attn <list>', 'attention join coefficients: one per block, comma-separated, or one value for all')
    .option('--join-ffn <list>', 'FFN join coefficients, same form')
    .addOption(new Option('--threads <n>', 'engine threads').argParser(positiveInt('--threads')))
    .addOption(new Option('--top <k>', 'classes printed per input').argParser(positiveInt('--top')).default(5))
    .addOption(new Option('--num-heads <n>', 'head count, for files without a config').argParser(positiveInt('--num-heads')))
    .addHelpText(
      'after',
      `
Images are resized and normalized as the model's __metadata__.normalization says
(default: timm's ImageNet eval transform for RGB models of 160 px and more, else mean 0.5, std 0.5).

Examples:
  $ vitfold predict folded.safetensors --input x.safetensors --out logits.safetensors
  $ vitfold predict deit-tiny.safetensors --input cat.jpg dog.png
  $ vitfold predict run/last.safetensors --input x.safetensors --join-attn 1 --join-ffn 0.5,0,0`,
    )
    .action(async (path: string, o: { input: string[]; out?: string; branches?: number; joinAttn?: string; joinFfn?: string; threads?: number; top: number; numHeads?: number }) => {
      if (o.out) refuseOverwrite(o.out, [path, ...o.input]);
      const notes: string[] = [];
      let model = loadModel(path, { numHeads: o.numHeads, notes });
      printNotes(notes);
      if (o.branches !== undefined) {
        if (model.structure.kind === 'branched' && model.structure.branches !== o.branches) {
          throw new CliError(`${path}: is a ${model.structure.branches}-branch model; --branches ${o.branches} contradicts it`);
        }
        if (model.structure.kind !== 'branched') model = toBranched(model, o.branches, {}, path);
      }
      let join: { attn: number[]; ffn: number[] } | undefined;
      if (o.joinAttn !== undefined || o.joinFfn !== undefined) {
        const s = model.structure;
        if (s.kind !== 'branched') throw new CliError(`${path}: --join-attn/--join-ffn need a branched model (or --branches k)`);
        const L = model.config.depth / s.branches;
        join = { attn: o.joinAttn !== undefined ? joinList(o.joinAttn, L, '--join-attn') : s.attn, ffn: o.joinFfn !== undefined ? joinList(o.joinFfn, L, '--join-ffn') : s.ffn };
        model = toBranched(model, s.branches, join, path); // validates (f > 0 needs a = 1)
      }
      const cfg = model.config;
      let x: Tensor;
      let labels: string[];
      const tensorFiles = o.input.filter((f) => f.endsWith('.safetensors'));
      if (tensorFiles.length) {
        if (o.input.length !== 1) throw new CliError('--input takes one .safetensors file, or image files, not both');
        x = loadInput(o.input[0], model, 1, 0).x;
        labels = Array.from({ length: x.shape[0] }, (_, i) => `${o.input[0]}[${i}]`);
      } else {
        const norm = parseNormalization(model.extraMetadata.normalization, cfg, path) ?? defaultNormalization(cfg);
        if (!model.extraMetadata.normalization) printNotes([`${path} has no normalization metadata; using mean ${norm.mean.join('/')}, std ${norm.std.join('/')}, crop ${norm.crop_pct}`]);
        const per = cfg.in_chans * cfg.img_size * cfg.img_size;
        const data = new Float64Array(o.input.length * per);
        for (let i = 0; i < o.input.length; i++) data.set(await loadImage(o.input[i], cfg, norm), i * per);
        x = { shape: [o.input.length, cfg.in_chans, cfg.img_size, cfg.img_size], data };
        labels = o.input;
      }
      const t0 = performance.now();
      const predictor = await Predictor.create(model, { threads: o.threads });
      const logits = await predictor.predict(x);
      await predictor.release();
      const ms = performance.now() - t0;
      if (o.out) {
        writeFloatTensors(o.out, { logits }, 'F32');
        console.log(`wrote    ${o.out}: logits [${logits.shape.join(', ')}] (${ms.toFixed(0)} ms including engine start-up)`);
      }
      let classNames: string[] | null = null;
      if (model.extraMetadata.classes) {
        try {
          classNames = JSON.parse(model.extraMetadata.classes);
        } catch {
          printNotes([`${path}: __metadata__.classes is not a JSON array; printing class indices`]);
        }
      }
      const K = cfg.num_classes;
      const shown = Math.min(logits.shape[0], 20);
      for (let b = 0; b < shown; b++) {
        const probs = softmaxRow(logits.data.subarray(b * K, (b + 1) * K));
        const top = topK(probs, Math.min(o.top, K)).map(([c, p]) => `${classNames?.[c] ?? c} ${(100 * p).toFixed(1)}%`);
        console.log(`${labels[b]}: ${top.join(', ')}`);
      }
      if (logits.shape[0] > shown) console.log(`... ${logits.shape[0] - shown} more (see --out)`);
    });

  program
    .command('export')
    .description('write an ONNX model tuned for onnxruntime (fp32, fp16 or int8) and validate it against the float64 reference')
    .argument('<model>', 'plain or folded model .safetensors (a fully joined branched model is folded first)')
    .requiredOption('--out <file>', 'output .onnx')
    .addOption(new Option('--precision <p>', 'fp32; fp16 (float16 weights and activations, float32 input/logits); int8 (dynamic quantization of the transformer linear layers)').choices([...PRECISIONS]).default('fp32'))
    .addOption(new Option('--int8-weights <mode>', 'int8 weight storage: paired (default: int8 whose adjacent-pair products cannot overflow on x86 CPUs without VNNI, so every CPU computes the same result), u8 (uint8 with zero point 128: full 8-bit, exact everywhere, slower uint8 x uint8 kernels), s7 (7-bit weights), full (full-range int8: exact only on VNNI x86, ARM and wasm; wrong on AVX2-only x86)').choices([...INT8_WEIGHTS]).default(DEFAULT_INT8_WEIGHTS))
    .addOption(new Option('--attention <a>', "strided (heads read in place by onnxruntime's com.microsoft FusedMatMul: no head transposes; 2-10% faster than matmul in onnxruntime-node), matmul (standard ONNX ops only, heads transposed), or fused (onnxruntime's com.microsoft MultiHeadAttention)").choices([...EXPORT_ATTENTION]).default('strided'))
    .addOption(new Option('--opset <n>', 'ONNX opset (>= 20 uses the standard Gelu op instead of com.microsoft Gelu; with --attention matmul the graph then has standard ops only)').choices(EXPORT_OPSETS.map(String)).default(String(DEFAULT_EXPORT_OPSET)))
    .option('--no-cls-only', 'compute the full last layer (default: the class token only, its attention without projecting keys or values; exact)')
    .addOption(new Option('--tol <x>', `max relative logit error of the validation (default: ${PRECISIONS.map((p) => `${p} ${EXPORT_TOLERANCE[p]}`).join(', ')})`).argParser(positiveNumber('--tol')))
    .addOption(new Option('--num-heads <n>', 'head count, for files without a config').argParser(positiveInt('--num-heads')))
    .addHelpText(
      'after',
      '\nExamples:\n  $ vitfold export runs/demo/folded.safetensors --out fmnist-3layer.onnx\n  $ vitfold export runs/demo/folded.safetensors --precision int8 --out fmnist-3layer-int8.onnx\n  $ vitfold export runs/demo/folded.safetensors --precision int8 --int8-weights full --out vnni-only-int8.onnx\n  $ vitfold export deit-tiny-3layer.safetensors --precision fp16 --opset 20 --attention matmul --out deit-3layer-fp16.onnx\n  $ vitfold export deit-tiny.safetensors --attention fused --out deit-12layer.onnx',
    )
    .action(async (path: string, o: { out: string; precision: Precision; int8Weights: Int8Weights; attention: ExportAttention; opset: string; clsOnly: boolean; tol?: number; numHeads?: number }) => {
      refuseOverwrite(o.out, [path]);
      const notes: string[] = [];
      const loaded = loadModel(path, { numHeads: o.numHeads, notes });
      const { model, note } = exportableModel(loaded, path);
      printNotes(note ? [...notes, note] : notes);
      const t0 = performance.now();
      const opset = Number(o.opset);
      const r = await exportModel(model, { clsOnly: o.clsOnly, precision: o.precision, int8Weights: o.int8Weights, opset, attention: o.attention });
      const tol = o.tol ?? EXPORT_TOLERANCE[o.precision];
      const ok = r.error.maxRel <= tol;
      // a file that failed its validation is not written: nothing wrong is left on disk
      if (ok) writeFileAtomic(o.out, r.bytes);
      const c = model.config;
      const prec = o.precision === 'int8' ? `int8 (${o.int8Weights} weights)` : o.precision;
      console.log(`${ok ? 'wrote   ' : 'built   '} ${o.out} (${(r.bytes.length / 2 ** 20).toFixed(1)} MiB, ${prec}, opset ${opset}, ${o.attention} attention, batch symbolic): ${c.depth} layers, ${c.num_heads} heads x ${c.head_dim}, MLP ${c.mlp_hidden}${o.clsOnly ? ', last layer for the class token only' : ''}`);
      console.log(`validate onnxruntime-node ${o.precision} vs float64 reference (seeded input, batch 2): max abs ${fmtErr(r.error.maxAbs)}, max rel ${fmtErr(r.error.maxRel)} (tolerance ${tol})  ${ok ? 'OK' : 'FAILED'}  [${seconds(t0)}]`);
      if (r.int8Overflows) console.log(`note     ${r.int8Overflows} int8 weight pairs can overflow int16 on x86 CPUs without VNNI (AVX2-only): this file is exact on VNNI x86, ARM and onnxruntime-web; --int8-weights paired is exact everywhere`);
      if (!ok) {
        console.log(`not written: ${o.out} (validation failed; raise --tol to write it anyway)`);
        process.exitCode = EXIT_CHECK_FAILED;
      }
    });

  addTrainCommands(program);
  addShrinkCommand(program);
  addExperimentCommand(program);
  addDemoCommand(program);
  addBenchCommand(program);

  return program;
}

export async function main(argv: string[]): Promise<void> {
  const debug = argv.includes('--debug');
  try {
    await buildProgram().parseAsync(argv.filter((a) => a !== '--debug'));
  } catch (e) {
    if (e instanceof CommanderError) {
      // Commander has printed its message (unknown option, invalid argument) or the help.
      process.exitCode = e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.exitCode === 0 ? 0 : EXIT_BAD_INPUT;
      return;
    }
    // Errors about the user's input, flags or files: the message, not a stack trace.
    const user = e instanceof VitfoldError ? e : fileSystemError(e);
    if (user) {
      process.stderr.write(`vitfold: error: ${user.message}\n`);
      if (debug) process.stderr.write(`${(e as Error).stack}\n`);
      process.exitCode = EXIT_BAD_INPUT;
      return;
    }
    // Anything else is a bug in vitfold: one line, and how to see the trace.
    const msg = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    process.stderr.write(debug ? `${(e as Error)?.stack ?? msg}\n` : `vitfold: internal error: ${msg.split('\n')[0]}\n(rerun with --debug for a stack trace, and please report it)\n`);
    process.exitCode = EXIT_INTERNAL;
  }
}

await main(process.argv);
