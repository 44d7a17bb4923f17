// `vitfold report`: rebuilds report.html of a run (finished or in progress) from its log, or of
// every run under a directory (an experiment's or the demo's); --bench times the run's deep model
// and its fold first, so the report's latency panel is filled.

import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { CliError, positiveInt } from './args.js';
import { initParams } from '../core/params.js';
import type { Model } from '../core/model.js';
import { runBench } from '../deploy/bench.js';
import { writeFileAtomic } from '../io.js';
import { readRunConfig } from '../train/trainer.js';
import { isRunDir, LATENCY_FILE, writeReport, type RunLatency } from '../train/report.js';
import { Progress } from './progress.js';

/** dir itself when it is a run, else the runs below it (three levels at most), sorted. */
function runDirs(dir: string, depth = 0): string[] {
  if (isRunDir(dir)) return [dir];
  if (depth >= 3) return [];
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CliError(`${dir}: cannot read: ${code === 'ENOENT' ? 'no such directory' : code === 'ENOTDIR' ? 'not a directory (give a run directory, or a directory of runs)' : (e as Error).message}`);
  }
  return names.filter((n) => n !== 'checkpoints' && statSync(join(dir, n), { throwIfNoEntry: false })?.isDirectory()).flatMap((n) => runDirs(join(dir, n), depth + 1));
}

/** Times the run's deep model and its fold (fp32, int8) with random weights of their shapes. */
async function benchRun(runDir: string, threads: number, rounds: number): Promise<void> {
  const cfg = readRunConfig(runDir);
  const k = cfg.join.mode === 'none' ? 1 : cfg.branches;
  const m = cfg.model;
  const deep: Model = { config: m, structure: { kind: 'plain' }, params: initParams(m, 0), dtype: 'F32', extraMetadata: {} };
  const depths = k > 1 ? [m.depth, m.depth / k] : [m.depth];
  const progress = new Progress('timing  ');
  const r = await runBench({ deep, depths, batches: [1], threads: [threads], precisions: ['fp32', 'int8'], runtimes: ['node'], runs: 20, rounds, warmup: 3, peers: false, memory: false, spin: true, log: () => {}, progress: (d, t) => progress.update(d, t) });
  progress.done();
  const latency: RunLatency = {
    machine: r.machine.features.summary,
    batch: 1,
    threads,
    rows: r.rows.filter((x) => x.source === 'vitfold export').map((x) => ({ depth: x.depth, precision: x.precision, medianMs: x.medianMs, ratio: x.ratio })),
  };
  writeFileAtomic(join(runDir, LATENCY_FILE), JSON.stringify(latency, null, 2) + '\n');
  for (const x of latency.rows) console.log(`timed    ${runDir}: ${x.depth} layers ${x.precision} ${x.medianMs.toFixed(2)} ms${x.ratio !== undefined ? ` (${x.ratio.toFixed(2)}x)` : ''}`);
}

export function addReportCommand(program: Command): void {
  program
    .command('report')
    .description("rebuild a run's report.html from its log (also while it runs), or the reports of every run under a directory")
    .argument('<dir>', 'a run directory (config.json + log.jsonl), or a directory of runs (an experiment, the demo)')
    .option('--bench', "first time the run's deep model and its fold (fp32, int8, batch 1) on this machine, for the latency panel")
    .addOption(new Option('--threads <n>', 'engine threads for --bench').argParser(positiveInt('--threads')).default(2))
    .addOption(new Option('--rounds <n>', 'interleaved timing rounds for --bench').argParser(positiveInt('--rounds')).default(7))
    .addHelpText('after', '\nExamples:\n  $ vitfold report runs/fm\n  $ vitfold report runs/fm --bench\n  $ vitfold report runs/demo            # every run of the demo')
    .action(async (dir: string, o: { bench?: boolean; threads: number; rounds: number }) => {
      const dirs = runDirs(dir);
      if (!dirs.length) throw new CliError(`${dir}: no vitfold run here (a run directory holds config.json and log.jsonl)`);
      for (const d of dirs) {
        if (o.bench) await benchRun(d, o.threads, o.rounds);
        console.log(`report   ${writeReport(d)}`);
      }
    });
}
