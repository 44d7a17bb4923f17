// Runs an experiment's rows as vitfold child processes (one run directory per row and seed),
// resumes interrupted runs, and reads each run's outcome from its log.jsonl.
//
//   <root>/teacher ...        the teacher's run directory is spec.teacher.dir (shared)
//   <root>/<row>/s<seed>/     a run; its console output in <root>/<row>/s<seed>.log
//   .../timing.json           wall seconds of the run, summed over its segments (resumes)

import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ViTConfig } from '../core/config.js';
import { loadModel } from '../io.js';
import { CHECKPOINT_FILE, readRunLog } from '../train/checkpoint.js';
import { ExperimentError, type ExperimentSpec, type RowSpec } from './spec.js';

/** What a finished run produced. */
export interface RunOutcome {
  top1: number;
  top5?: number;
  /** Seconds in training steps (teacher forward included), summed over epochs; 0 for no training. */
  trainSeconds: number;
  imagesSeen: number;
  /** The run's final model file and its shape. */
  model: string;
  config: ViTConfig;
}

/** One finished run of an experiment: its row, seed, outcome and wall time. */
export interface RunRecord extends RunOutcome {
  row: string;
  seed: number;
  /** Wall seconds of the whole command (data loading, evaluation, fold checks and export included). */
  wallSeconds: number;
}


/**
 * The outcome of a finished train or shrink run, or null while it is unfinished: a shrink run
 * ends with a 'shrunk' event, a branched run with 'fold', a plain run with its last epoch.
 */
export function runOutcome(dir: string): RunOutcome | null {
  if (!existsSync(join(dir, 'config.json'))) return null;
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { epochs: number; model: ViTConfig };
  const log = readRunLog(dir);
  const epochs = log.filter((e) => e.event === 'epoch') as { epoch: number; top1: number; top5?: number; seconds: number; img_per_s: number }[];
  const shrunk = log.find((e) => e.event === 'shrunk') as { top1: number; path: string } | undefined;
  const folded = log.find((e) => e.event === 'fold') as { top1_folded: number; path: string } | undefined;
  const last = epochs[epochs.length - 1];
  const trainSeconds = epochs.reduce((s, e) => s + e.seconds, 0);
  const imagesSeen = Math.round(epochs.reduce((s, e) => s + e.seconds * e.img_per_s, 0));
  const top5 = last?.top5;
  let top1: number;
  let model: string;
  if (shrunk) [top1, model] = [shrunk.top1, shrunk.path];
  else if (folded) [top1, model] = [folded.top1_folded, folded.path];
  else if (last && last.epoch === cfg.epochs && (cfg as { join?: { mode: string } }).join?.mode === 'none') [top1, model] = [last.top1, join(dir, 'last.safetensors')];
  else return null;
  if (!existsSync(model)) return null;
  // A fold or a shrink changes the shape: the final model file says what it is.
  return { top1, ...(top5 !== undefined ? { top5 } : {}), trainSeconds, imagesSeen, model, config: loadModel(model).config };
}

/** The vitfold CLI entry that runs beside this module (dist/cli/main.js, or src under tsx). */
function cliEntry(): string {
  const here = fileURLToPath(import.meta.url);
  return join(dirname(here), '..', 'cli', `main${extname(here)}`);
}

function wallSecondsOf(dir: string): number {
  const p = join(dir, 'timing.json');
  return existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as { wall_s: number }).wall_s : 0;
}

/** Runs `vitfold args --out dir` (or `--resume dir`), its output appended to logPath. */
function runCli(args: string[], logPath: string, onOutput?: (text: string) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    appendFileSync(logPath, `$ vitfold ${args.join(' ')}\n`);
    const child = spawn(process.execPath, [...process.execArgv, cliEntry(), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (d) => {
      appendFileSync(logPath, d);
      onOutput?.(String(d));
    });
    child.stderr.on('data', (d) => {
      appendFileSync(logPath, d);
      // The run's progress lines (one per interval: the child's stderr is not a terminal).
      const progress = String(d).split('\n').filter((l) => /^epoch \d+ \d+\/\d+ /.test(l));
      if (progress.length) onOutput?.(progress.join('\n') + '\n');
    });
    child.on('error', reject);
    child.on('close', (code) => resolve(code ?? 1));
  });
}

/**
 * Brings one run to completion: nothing to do when finished, `--resume` when it has an epoch
 * checkpoint, else a fresh start (an unfinished run without a checkpoint is removed first).
 */
export async function completeRun(args: string[], dir: string, logPath: string, onOutput?: (text: string) => void): Promise<{ outcome: RunOutcome; wallSeconds: number; ran: 'cached' | 'resumed' | 'fresh' }> {
  const done = runOutcome(dir);
  if (done) return { outcome: done, wallSeconds: wallSecondsOf(dir) || done.trainSeconds, ran: 'cached' };
  const resumable = existsSync(join(dir, CHECKPOINT_FILE));
  if (!resumable) rmSync(dir, { recursive: true, force: true });
  mkdirSync(dirname(logPath), { recursive: true });
  const before = resumable ? wallSecondsOf(dir) : 0;
  const t0 = performance.now();
  const code = await runCli(resumable ? [args[0], '--resume', dir] : [...args, '--out', dir], logPath, onOutput);
  const wallSeconds = before + (performance.now() - t0) / 1000;
  if (existsSync(dir)) writeFileSync(join(dir, 'timing.json'), JSON.stringify({ wall_s: wallSeconds }) + '\n');
  const outcome = runOutcome(dir);
  if (code !== 0 || !outcome) throw new ExperimentError(`vitfold ${args.join(' ')} failed (exit ${code}); its output is in ${logPath}`);
  return { outcome, wallSeconds, ran: resumable ? 'resumed' : 'fresh' };
}

export function rowArgs(row: RowSpec, seed: number, teacherModel: string | undefined): string[] {
  return row.args.map((a) => a.replaceAll('{seed}', String(seed)).replaceAll('{teacher}', teacherModel ?? ''));
}

export interface ExperimentRuns {
  teacher?: RunRecord;
  runs: RunRecord[];
}

/**
 * Trains the teacher if needed, then every row for every seed, in order; finished runs are read
 * back. onLine gets one line per run started and finished; onOutput the runs' own output.
 */
export async function runExperiment(spec: ExperimentSpec, root: string, opts: { only?: string[]; onLine?: (s: string) => void; onOutput?: (text: string) => void } = {}): Promise<ExperimentRuns> {
  const say = opts.onLine ?? (() => {});
  const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
  let teacher: RunRecord | undefined;
  if (spec.teacher) {
    const t = spec.teacher;
    say(`teacher  ${t.dir}: vitfold ${t.args.join(' ')}`);
    const r = await completeRun(t.args, t.dir, `${t.dir}.log`, opts.onOutput);
    teacher = { ...r.outcome, model: join(t.dir, t.model), row: 'teacher', seed: -1, wallSeconds: r.wallSeconds };
    say(`teacher  ${r.ran}: top-1 ${pct(r.outcome.top1)} (${r.wallSeconds.toFixed(0)} s)`);
  }
  const runs: RunRecord[] = [];
  const rows = spec.rows.filter((r) => !opts.only || opts.only.includes(r.id));
  const total = rows.reduce((n, r) => n + (r.seeds ?? spec.seeds).length, 0);
  let i = 0;
  for (const row of rows) {
    for (const seed of row.seeds ?? spec.seeds) {
      i++;
      const dir = join(root, row.id, `s${seed}`);
      const args = rowArgs(row, seed, teacher?.model);
      const t0 = performance.now();
      say(`run ${i}/${total}  ${row.id} seed ${seed}: vitfold ${args.join(' ')}`);
      const r = await completeRun(args, dir, `${dir}.log`, opts.onOutput);
      runs.push({ ...r.outcome, row: row.id, seed, wallSeconds: r.wallSeconds });
      say(`run ${i}/${total}  ${row.id} seed ${seed}: ${r.ran}, top-1 ${pct(r.outcome.top1)} (${r.wallSeconds.toFixed(0)} s wall${r.ran === 'cached' ? '' : `, ${((performance.now() - t0) / 1000).toFixed(0)} s now`})`);
    }
  }
  return { teacher, runs };
}
