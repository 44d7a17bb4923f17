// `vitfold demo`: the built-in default job. A trained 12-layer Fashion-MNIST ViT (shipped in
// experiments/teachers/fm12, or retrained when absent) is made 3 layers deep on 10% of the
// training images by `vitfold shrink`, next to the alternatives a user would try, and timed.

import { copyFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import { positiveInt } from './args.js';
import { runExperiment } from '../experiment/harness.js';
import { summarize, writeResults, type ExperimentResults } from '../experiment/results.js';
import type { ExperimentSpec } from '../experiment/spec.js';

/** The shipped teacher: `vitfold train --join none --epochs 5 --seed 0` (config.json, log.jsonl, last.safetensors). */
export const DEMO_TEACHER_DIR = fileURLToPath(new URL('../../experiments/teachers/fm12', import.meta.url));

const scratchEpochs = (epochs: number) => Math.round(5.6 * epochs);

export function demoSpec(o: { limitTrain: number; epochs: number; data?: string; limitTest?: number }): ExperimentSpec {
  const data = [...(o.data ? ['--data', o.data] : []), ...(o.limitTest ? ['--limit-test', String(o.limitTest)] : [])];
  const few = ['--limit-train', String(o.limitTrain), '--epochs', String(o.epochs), ...data];
  return {
    name: 'demo',
    title: `Fashion-MNIST: the trained 12-layer ViT made 3 layers deep on ${o.limitTrain.toLocaleString('en-US')} training images, ${o.epochs} epochs, seed 0`,
    seeds: [0],
    teacher: { dir: DEMO_TEACHER_DIR, model: 'last.safetensors', args: ['train', '--join', 'none', '--epochs', '5', '--seed', '0', ...data] },
    rows: [
      { id: 'instant-3', label: 'instant fold, no training', args: ['shrink', '{teacher}', '--depth', '3', '--epochs', '0', '--no-export', ...data] },
      { id: 'join-kd-3', label: 'vitfold shrink: join + distillation, folded', args: ['shrink', '{teacher}', '--depth', '3', '--seed', '{seed}', ...few] },
      { id: 'drop-kd-3', label: 'keep 3 of the 12 layers + distillation', args: ['shrink', '{teacher}', '--depth', '3', '--method', 'drop', '--seed', '{seed}', '--no-export', ...few] },
      // About the shrink's training seconds: a narrow 3-layer step costs ~1/5 of a distilled
      // 12-layer branched step (docs/shrink.md), so 5.6 times the epochs.
      { id: 'scratch-narrow-3', label: `narrow 3-layer ViT from scratch, ${scratchEpochs(o.epochs)} epochs`, args: ['train', '--join', 'none', '--depth', '3', '--seed', '{seed}', '--limit-train', String(o.limitTrain), '--epochs', String(scratchEpochs(o.epochs)), ...data] },
    ],
  };
}

/** The results as an aligned text table. */
export function demoTable(r: ExperimentResults): string {
  const base = r.teacher?.latencyMs;
  const rows = [
    ['model', 'how', 'top-1', 'train s', 'latency (vs 12-layer)'],
    ...(r.teacher ? [[r.teacher.shape, 'the trained 12-layer model (teacher)', `${(100 * r.teacher.top1).toFixed(2)}%`, r.teacher.trainSeconds.toFixed(0), base ? `${base.toFixed(2)} ms` : '-']] : []),
    ...r.rows.map((x) => [x.shape, x.label, `${(100 * x.top1Mean).toFixed(2)}%`, x.trainSeconds.toFixed(0), x.latencyMs !== undefined ? `${x.latencyMs.toFixed(2)} ms${base ? ` (${(x.latencyMs / base).toFixed(2)}x)` : ''}` : '-']),
  ];
  const w = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
  return rows.map((row) => row.map((cell, c) => (c >= 2 ? cell.padStart(w[c]) : cell.padEnd(w[c]))).join('  ')).join('\n');
}

export function addDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('the built-in default: the trained 12-layer Fashion-MNIST ViT made 3 layers deep by vitfold shrink on 10% of the data, beside the instant fold, layer dropping and a 3-layer ViT from scratch, then timed')
    .option('--out <dir>', 'run directory', 'runs/demo')
    .addOption(new Option('--epochs <n>', 'fine-tuning epochs').argParser(positiveInt('--epochs')).default(5))
    .addOption(new Option('--limit-train <n>', 'training images for the shrink (10% of Fashion-MNIST)').argParser(positiveInt('--limit-train')).default(6000))
    .addOption(new Option('--limit-test <n>', 'use the first n test images').argParser(positiveInt('--limit-test')))
    .option('--data <dir>', 'Fashion-MNIST IDX files (default: Debian dataset-fashion-mnist)')
    .addHelpText('after', '\nExamples:\n  $ vitfold demo\n  $ vitfold demo --epochs 2 --out runs/demo-short')
    .action(async (o: { out: string; epochs: number; limitTrain: number; limitTest?: number; data?: string }) => {
      const spec = demoSpec(o);
      console.log(`demo     ${spec.title}`);
      if (!existsSync(join(DEMO_TEACHER_DIR, 'last.safetensors'))) console.log(`         no trained teacher in ${DEMO_TEACHER_DIR}: training it first (5 epochs on all 60,000 images)`);
      const runs = await runExperiment(spec, o.out, { onLine: (s) => console.log(s), onOutput: (t) => process.stdout.write(t.replace(/^(?=.)/gm, '    ')) });
      console.log('latency  fp32 ONNX exports, batch 1, 2 threads, 7 alternating rounds of 30 runs');
      const results = await summarize(spec, runs, { batch: 1, threads: 2, rounds: 7, runsPerRound: 30 });
      const files = writeResults(results, o.out);
      console.log('');
      console.log(demoTable(results));
      console.log('');
      // The shallow model under a short name (what `vitfold export`, `predict` and bench:quant take).
      const shrunk = runs.runs.find((r) => r.row === 'join-kd-3');
      if (shrunk) {
        copyFileSync(shrunk.model, join(o.out, 'folded.safetensors'));
        const onnx = shrunk.model.replace(/\.safetensors$/, '.onnx');
        if (existsSync(onnx)) copyFileSync(onnx, join(o.out, 'folded.onnx'));
        console.log(`folded   ${join(o.out, 'folded.safetensors')} (and .onnx): the 3-layer model vitfold shrink made`);
      }
      console.log(`results  ${files.join(', ')}`);
    });
}
