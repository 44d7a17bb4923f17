// `vitfold bench`: latency of a deep ViT and its folds at several precisions (deploy/bench.ts).

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { choiceList, positiveInt, positiveIntList } from './args.js';
import { preset, PRESETS } from '../core/config.js';
import { ModelError, type Model } from '../core/model.js';
import { initParams } from '../core/params.js';
import { runBench, type BenchOptions } from '../deploy/bench.js';
import { benchSvg, formatBench } from '../deploy/bench-report.js';
import { PRECISIONS } from '../deploy/export.js';
import { DEFAULT_INT8_WEIGHTS, INT8_WEIGHTS } from '../deploy/int8.js';
import { loadModel, writeFileAtomic } from '../io.js';
import { Progress } from './progress.js';

/** The parsed flags: BenchOptions' own fields, plus those named differently on the command line. */
type BenchFlags = Pick<BenchOptions, 'threads' | 'runs' | 'rounds' | 'warmup' | 'peers' | 'memory' | 'spin'> & {
  preset: string;
  model?: string;
  depths?: number[];
  batch: BenchOptions['batches'];
  precision: BenchOptions['precisions'];
  int8Weights: NonNullable<BenchOptions['int8Weights']>;
  runtime: BenchOptions['runtimes'];
  out: string;
};

export function addBenchCommand(program: Command): void {
  program
    .command('bench')
    .description('latency, throughput and peak memory of a deep ViT and its folds (exports at each precision) against torch.onnx.export and PyTorch eager')
    .addOption(new Option('--preset <name>', 'architecture, with random weights').choices(Object.keys(PRESETS)).default('deit-tiny'))
    .option('--model <file>', 'a plain (deep) model .safetensors instead of --preset')
    .addOption(new Option('--depths <list>', 'depths to run: the deep model and folds with k = depth/d branches (default: L, L/2, L/3, L/4 where they divide)').argParser(positiveIntList('--depths')))
    .addOption(new Option('--batch <list>', 'batch sizes').argParser(positiveIntList('--batch')).default([1], '1'))
    .addOption(new Option('--threads <list>', 'intra-op thread counts').argParser(positiveIntList('--threads')).default([2], '2'))
    .addOption(new Option('--precision <list>', `export precisions (${PRECISIONS.join(', ')})`).argParser(choiceList('--precision', PRECISIONS)).default(['fp32', 'int8'], 'fp32,int8'))
    .addOption(new Option('--int8-weights <list>', `int8 weight modes to time (${INT8_WEIGHTS.join(', ')}; see vitfold export --help)`).argParser(choiceList('--int8-weights', INT8_WEIGHTS)).default([DEFAULT_INT8_WEIGHTS], DEFAULT_INT8_WEIGHTS))
    .addOption(new Option('--runtime <list>', 'node (onnxruntime-node), web (onnxruntime-web wasm, SIMD + threads, under Node), browser (the same inside headless Chromium)').argParser(choiceList('--runtime', ['node', 'web', 'browser'] as const)).default(['node'], 'node'))
    .addOption(new Option('--runs <n>', 'timed runs per round').argParser(positiveInt('--runs')).default(10))
    .addOption(new Option('--rounds <n>', 'interleaved rounds (every model once per round)').argParser(positiveInt('--rounds')).default(5))
    .addOption(new Option('--warmup <n>', 'untimed runs before each round').argParser(positiveInt('--warmup')).default(3))
    .option('--no-peers', 'skip the PyTorch baselines (torch.onnx.export in ORT, PyTorch eager)')
    .option('--no-memory', 'skip the per-model peak-memory processes')
    .option('--no-spin', "onnxruntime-node sessions without spin-waiting (default: ORT's default spin-waiting, idling until the process is quiet after each session's runs)")
    .option('--out <dir>', 'where bench.json and bench.svg go', 'bench-results')
    .addHelpText(
      'after',
      '\nBaselines need Debian\'s python3-torch (and libopenblas0-openmp); without it they are skipped with a note.\n\nExamples:\n  $ vitfold bench\n  $ vitfold bench --depths 12,3 --batch 1,8 --threads 1,2 --precision fp32,fp16,int8\n  $ vitfold bench --runtime node,web --no-peers\n  $ vitfold bench --depths 12,3 --precision int8 --int8-weights paired,u8,s7,full --runtime node,web\n  $ vitfold bench --depths 12,3 --precision fp32 --no-spin\n  $ vitfold bench --runtime browser --depths 12,3 --precision fp32\n  $ vitfold bench --model deit-tiny.safetensors --out results/deit',
    )
    .action(async (o: BenchFlags) => {
      let deep: Model;
      if (o.model) {
        deep = loadModel(o.model);
        if (deep.structure.kind !== 'plain') throw new ModelError(`${o.model}: bench needs the deep (plain) model, got a ${deep.structure.kind} one; it folds the deep model itself`);
      } else {
        const cfg = preset(o.preset);
        deep = { config: cfg, structure: { kind: 'plain' }, params: initParams(cfg, 0), dtype: 'F32', extraMetadata: {} };
      }
      const L = deep.config.depth;
      const depths = o.depths ?? [L, L / 2, L / 3, L / 4].filter((d) => Number.isInteger(d) && d >= 1);
      for (const d of depths) if (L % d !== 0) throw new ModelError(`--depths ${d}: does not divide the model's ${L} layers (a fold has depth ${L}/k)`);
      console.log(`vitfold bench: ${o.model ?? `${o.preset} (random weights)`}; depths ${depths.join(', ')}; batch ${o.batch.join(', ')}; threads ${o.threads.join(', ')}; ${o.precision.join(', ')}; runtime ${o.runtime.join(', ')}; ${o.rounds} rounds x ${o.runs} runs after ${o.warmup} warm-up`);
      const progress = new Progress('timing');
      const result = await runBench({
        deep,
        depths,
        batches: o.batch,
        threads: o.threads,
        precisions: o.precision,
        int8Weights: o.int8Weights,
        runtimes: o.runtime,
        runs: o.runs,
        rounds: o.rounds,
        warmup: o.warmup,
        peers: o.peers,
        memory: o.memory,
        spin: o.spin,
        log: (line) => console.log(line),
        progress: (d, t) => progress.update(d, t),
      });
      progress.done();
      console.log(formatBench(result));
      mkdirSync(o.out, { recursive: true });
      writeFileAtomic(join(o.out, 'bench.json'), new TextEncoder().encode(JSON.stringify(result, null, 2) + '\n'));
      writeFileAtomic(join(o.out, 'bench.svg'), new TextEncoder().encode(benchSvg(result)));
      console.log(`wrote ${join(o.out, 'bench.json')} and ${join(o.out, 'bench.svg')}`);
    });
}
