// `vitfold experiment`: runs a results table's rows (see src/experiment/spec.ts) and writes it.

import { join } from 'node:path';
import { Command, Option } from 'commander';
import { positiveInt } from './args.js';
import { readSpec } from '../experiment/spec.js';
import { runExperiment } from '../experiment/harness.js';
import { summarize, writeResults } from '../experiment/results.js';

interface ExperimentCliOptions {
  root?: string;
  results: string;
  only?: string[];
  latency: boolean;
  threads: number;
  rounds: number;
}

export function addExperimentCommand(program: Command): void {
  program
    .command('experiment')
    .description('train every row of a results table for every seed (resuming unfinished runs, reusing finished ones and the shared teacher), then write the table as JSON, markdown and an accuracy-vs-latency SVG')
    .argument('<spec>', 'experiment file (JSON: name, title, seeds, teacher, rows; see experiments/)')
    .option('--root <dir>', 'where the runs go (default: runs/experiments/<name>)')
    .option('--results <dir>', 'where <name>.json, .md and .svg go', 'experiments/results')
    .addOption(new Option('--only <ids>', 'run only these rows (comma-separated ids)').argParser((v: string) => v.split(',').map((s) => s.trim())))
    .option('--no-latency', 'skip the latency measurement')
    .addOption(new Option('--threads <n>', 'latency: onnxruntime threads').argParser(positiveInt('--threads')).default(2))
    .addOption(new Option('--rounds <n>', 'latency: alternating rounds (30 runs each)').argParser(positiveInt('--rounds')).default(7))
    .addHelpText(
      'after',
      `
Examples:
  $ vitfold experiment experiments/shrink-fm-10pct.json
  $ vitfold experiment experiments/shrink-fm-10pct.json --only join-kd-3,drop-kd-3 --no-latency
Interrupted? Run the same command again: finished runs are read back, unfinished ones resume from
their last epoch checkpoint.`,
    )
    .action(async (specPath: string, o: ExperimentCliOptions) => {
      const spec = readSpec(specPath);
      const root = o.root ?? join('runs', 'experiments', spec.name);
      const runs = await runExperiment(spec, root, { only: o.only, onLine: (s) => console.log(s) });
      if (o.latency) console.log(`latency  fp32 exports, batch 1, ${o.threads} threads, ${o.rounds} alternating rounds`);
      const results = await summarize(spec, runs, o.latency ? { batch: 1, threads: o.threads, rounds: o.rounds, runsPerRound: 30 } : null);
      for (const p of writeResults(results, o.results)) console.log(`wrote    ${p}`);
    });
}
