// `vitfold bench`: latency, throughput and peak memory of a deep ViT's exports and of
// its folds, at several precisions, batches and thread counts, against the baselines users run
// today, measured in the same run:
//   - ORT (onnxruntime-node) running a torch.onnx.export of the deep model (bench/peers);
//   - PyTorch eager (bench/peers), in its own process;
//   - the machine's fp32 matmul peak: one large constant-weight MatMul in ORT, timed in the
//     same interleaved rounds, so "fraction of peak" compares like with like.
//   - the same exports in onnxruntime-web (wasm) under Node ('web', bench-web-child.ts) and
//     inside headless Chromium ('browser', bench-browser.ts).
// Every node-runtime candidate is timed in interleaved rounds (a VM's speed drifts over
// minutes). Sessions spin-wait as onnxruntime-node does by default (what a deployed model
// gets), and after each session's block of runs the bench idles until this process uses no
// CPU (the pool has stopped spinning), so no session's spinning pool takes the cores while
// another is timed (--no-spin: spin-waiting off, no idling). Peak memory is each model's own process (bench-memory.ts), not this one's.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ViTConfig } from '../core/config.js';
import { exportFlopsPerImage } from '../core/flops.js';
import { fold } from '../core/fold.js';
import { toBranched, type Model } from '../core/model.js';
import { cpuFeatures, int8PairsSaturate, type CpuFeatures } from './cpu.js';
import { buildExportGraph, type Precision } from './export.js';
import { DEFAULT_INT8_WEIGHTS, type Int8Weights } from './int8.js';
import { Graph } from '../graph/graph.js';
import { toOnnxBytes } from '../graph/onnx.js';
import { saveModel } from '../io.js';
import { Session, type HostTensor } from '../runtime/ort.js';
import type { WebJob, WebTiming } from '../runtime/web-timing.js';
import { findChromium, timeInChromium } from './bench-browser.js';
import { peersUnavailable, runPeer, torchExport } from './peers.js';

export type BenchRuntime = 'node' | 'web' | 'browser';

/** What runBench times: depths, batches, threads, precisions, runtimes, rounds. */
export interface BenchOptions {
  /** The deep plain model (random weights unless the user gave a file). */
  deep: Model;
  depths: number[];
  batches: number[];
  threads: number[];
  precisions: Precision[];
  /** The int8 weight modes to time (precision int8 only; default: the export default). */
  int8Weights?: Int8Weights[];
  runtimes: BenchRuntime[];
  /** Timed runs per round and interleaved rounds per candidate. */
  runs: number;
  rounds: number;
  warmup: number;
  peers: boolean;
  memory: boolean;
  /**
   * onnxruntime-node sessions spin-wait between ops (ORT's default), idling until the process
   * is quiet after each session's block; false: spin-waiting off and no idling.
   */
  spin: boolean;
  log: (line: string) => void;
  /** Progress of the timing loop (done, total). */
  progress?: (done: number, total: number) => void;
}

/**
 * One timed candidate: runtime, model, precision, batch, threads, median/min/max ms, throughput,
 * ratio to the baseline.
 */
export interface BenchRow {
  runtime: BenchRuntime | 'pytorch';
  /** e.g. 'vitfold export' or 'torch.onnx.export' */
  source: string;
  depth: number;
  precision: Precision;
  /** int8 rows: how the weights are stored (deploy/int8.ts). */
  int8Weights?: Int8Weights;
  batch: number;
  threads: number;
  medianMs: number;
  minMs: number;
  maxMs: number;
  imagesPerSec: number;
  /** Matrix-product FLOPs of the graph per second, and that over the fp32 matmul peak. */
  gflops: number;
  peakFraction?: number;
  /** Latency over the baseline's (same runtime, batch and threads). */
  ratio?: number;
  peakRssMiB?: number;
}

/** runBench's result: the machine (CPU features), one row per candidate, notes. */
export interface BenchResult {
  date: string;
  machine: {
    cpu: string;
    cores: number;
    node: string;
    /** The features that select onnxruntime's kernels (AVX2, AVX-512, VNNI, AMX, ARM dot). */
    features: CpuFeatures;
    /** Whether this onnxruntime's uint8 x int8 kernels saturate pair sums at int16 (x86 without VNNI). */
    int8PairsSaturate: boolean;
  };
  config: ViTConfig;
  baseline: string;
  /** fp32 matmul peak (GFLOP/s) per thread count: the fastest run of a 1024^3 constant-weight MatMul. */
  peakGflops: Record<string, number>;
  /** Whether the onnxruntime-node sessions spin-waited (BenchOptions.spin). */
  spin: boolean;
  /** Peak RSS of node + onnxruntime with no model loaded (the floor under every peakRssMiB). */
  rssFloorMiB?: number;
  rows: BenchRow[];
  notes: string[];
}

interface Candidate {
  source: string;
  depth: number;
  precision: Precision;
  int8Weights?: Int8Weights;
  flops: number; // per image
  bytes: Uint8Array;
  file: string;
}

const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)], min: s[0], max: s[s.length - 1] };
};


/** The deep model at each requested depth: itself, or its fold with k = depth / d branches. */
export function modelsAtDepths(deep: Model, depths: number[]): { depth: number; model: Model }[] {
  const L = deep.config.depth;
  return depths.map((d) => {
    if (!Number.isInteger(d) || d < 1 || L % d !== 0) throw new Error(`--depths: ${d} does not divide the model's ${L} layers (a fold has depth ${L}/k)`);
    return { depth: d, model: d === L ? deep : fold(toBranched(deep, L / d, { attn: 1, ffn: 1 })) };
  });
}

/** A deterministic float32 benchmark input of `shape` (sin(0.37 i): no RNG, same in every run). */
export function benchInput(shape: number[]): HostTensor {
  return { shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)).map((_, i) => Math.sin(0.37 * i)) };
}

/** One constant-weight MatMul [n, n] x [n, n]: the fp32 matmul peak ORT reaches here. */
export function peakGraph(n: number): Uint8Array {
  const g = new Graph('matmul_peak', { dtype: 'float32' });
  const x = g.input('x', 'float32', [n, n]);
  const w = g.initializer('w', 'float32', [n, n], Float32Array.from({ length: n * n }, (_, i) => Math.sin(i) / n));
  g.output(g.matmul(x, w), 'y');
  return toOnnxBytes(g);
}
export const PEAK_N = 1024;

/** Length of one CPU-use sample of waitUntilQuiet, ms. */
export const QUIET_SLICE_MS = 10;

/**
 * Waits until this process's threads use (nearly) no CPU for one QUIET_SLICE_MS slice, at
 * least `minMs` and at most `maxMs`; returns the ms waited. After a run an onnxruntime-node
 * pool that spin-waits keeps a core busy for a fixed number of spin iterations, whose length in
 * time depends on the CPU (the cost of its pause instruction), so a fixed pause would be too
 * short on some machines and wasted on others. Other processes' load does not count: the
 * measure is this process's own CPU time.
 */
export async function waitUntilQuiet(minMs = QUIET_SLICE_MS, maxMs = 2000): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    const c0 = process.cpuUsage();
    const s0 = performance.now();
    await new Promise((resolve) => setTimeout(resolve, QUIET_SLICE_MS));
    const c = process.cpuUsage(c0);
    const waited = performance.now() - t0;
    // a spinning core fills the slice; an idle process uses a few hundredths of it
    const quiet = (c.user + c.system) / 1000 < 0.2 * (performance.now() - s0);
    if ((quiet && waited >= minMs) || waited >= maxMs) return waited;
  }
}

/** Runs a Node script in a child process (a .ts one under tsx) and parses its last stdout line as JSON. */
export function runNodeScript<T>(script: string, args: string[], what: string): T {
  const r = spawnSync(process.execPath, [...(script.endsWith('.ts') ? ['--import', 'tsx'] : []), script, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${what} failed (exit ${r.status}): ${(r.stderr || '').trim().split('\n').slice(-3).join(' ')}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as T;
}

/** Runs one of this folder's child scripts (bench-memory, bench-web-child). */
function runChild<T>(name: string, args: string[], what: string): T {
  const self = fileURLToPath(import.meta.url);
  const ts = self.endsWith('.ts'); // under tsx (tests, bench scripts) the children are .ts too
  return runNodeScript<T>(join(dirname(self), `${name}.${ts ? 'ts' : 'js'}`), args, what);
}

function memoryOf(file: string, shape: number[], threads: number): number {
  return runChild<{ maxRssMiB: number }>('bench-memory', [file, shape.join(','), String(threads)], `memory probe of ${file}`).maxRssMiB;
}

/** Per file the timed runs in onnxruntime-web (null where it could not run), in a child process. */
function timeWeb(files: string[], o: WebJob, log: (line: string) => void): (number[] | null)[] {
  const out = runChild<WebTiming>('bench-web-child', [JSON.stringify({ files, ...o })], 'onnxruntime-web child');
  out.errors.forEach((e, i) => {
    if (e) log(`onnxruntime-web: ${files[i]}: ${e}`);
  });
  return out.times;
}

/**
 * Times each session on its feeds in interleaved rounds (warm-up, then `runs` timed runs, per
 * session per round): slow drifts of the machine hit every candidate alike. `quiet`: after each
 * block, wait until the process is quiet (spin-waiting sessions).
 */
export async function timeInterleaved(
  items: { session: Session; feeds: Record<string, HostTensor> }[],
  o: { rounds: number; runs: number; warmup: number; quiet?: boolean },
  onRound?: () => void,
): Promise<number[][]> {
  const times = items.map(() => [] as number[]);
  for (let round = 0; round < o.rounds; round++) {
    for (let i = 0; i < items.length; i++) {
      const { session, feeds } = items[i];
      for (let w = 0; w < o.warmup; w++) await session.run(feeds);
      for (let r = 0; r < o.runs; r++) {
        const t0 = performance.now();
        await session.run(feeds);
        times[i].push(performance.now() - t0);
      }
      if (o.quiet) await waitUntilQuiet();
      onRound?.();
    }
  }
  return times;
}


/**
 * Times a deep model and its folds (exports in onnxruntime-node, onnxruntime-web, Chromium;
 * PyTorch peers when installed) in interleaved rounds, with medians and ratios to a baseline
 * measured in the same run.
 */
export async function runBench(o: BenchOptions): Promise<BenchResult> {
  const cfg = o.deep.config;
  const L = cfg.depth;
  const dir = mkdtempSync(join(tmpdir(), 'vitfold-bench-'));
  const notes: string[] = [];
  const inputShape = [1, cfg.in_chans, cfg.img_size, cfg.img_size];

  // candidates: every depth x precision, plus the torch export of the deep model
  const candidates: Candidate[] = [];
  const deepFile = join(dir, 'deep.safetensors');
  saveModel(deepFile, o.deep);
  const noPeers = o.peers ? peersUnavailable() : 'not requested (--no-peers)';
  if (noPeers) notes.push(`PyTorch baselines skipped: ${noPeers}`);
  else {
    const file = join(dir, 'torch-export.onnx');
    const t = torchExport(deepFile, file);
    notes.push(`torch.onnx.export: torch ${t.torch}, opset ${t.opset}`);
    candidates.push({ source: 'torch.onnx.export', depth: L, precision: 'fp32', flops: exportFlopsPerImage(cfg, false), bytes: t.bytes, file });
  }
  for (const { depth, model } of modelsAtDepths(o.deep, o.depths)) {
    for (const precision of o.precisions) {
      for (const int8Weights of precision === 'int8' ? (o.int8Weights ?? [DEFAULT_INT8_WEIGHTS]) : [undefined]) {
        const bytes = toOnnxBytes(buildExportGraph(model, { precision, int8Weights }));
        const file = join(dir, `vitfold-${depth}L-${precision}${int8Weights ? `-${int8Weights}` : ''}.onnx`);
        writeFileSync(file, bytes);
        candidates.push({ source: 'vitfold export', depth, precision, int8Weights, flops: exportFlopsPerImage(model.config), bytes, file });
      }
    }
  }
  const baseline = candidates[0].source === 'torch.onnx.export' ? `torch.onnx.export ${L}L fp32` : `vitfold export ${L}L ${precisionLabel(candidates[0])}`;

  const rows: BenchRow[] = [];
  const peakGflops: Record<string, number> = {};
  const row = (runtime: BenchRow['runtime'], c: Pick<Candidate, 'source' | 'depth' | 'precision' | 'int8Weights' | 'flops'>, batch: number, threads: number, times: number[]): BenchRow => {
    const s = stats(times);
    const gflops = (c.flops * batch) / (s.median * 1e6);
    const peak = peakGflops[threads];
    return { runtime, source: c.source, depth: c.depth, precision: c.precision, ...(c.int8Weights ? { int8Weights: c.int8Weights } : {}), batch, threads, medianMs: s.median, minMs: s.min, maxMs: s.max, imagesPerSec: (1000 * batch) / s.median, gflops, peakFraction: peak ? gflops / peak : undefined };
  };

  if (o.runtimes.includes('node')) {
    const total = o.threads.length * o.batches.length * o.rounds * (candidates.length + 1);
    let done = 0;
    for (const threads of o.threads) {
      const sessions = await Promise.all(candidates.map((c) => Session.create(c.bytes, { threads, spinning: o.spin })));
      const peak = await Session.create(peakGraph(PEAK_N), { threads, spinning: o.spin });
      try {
        for (const batch of o.batches) {
          const x = benchInput([batch, ...inputShape.slice(1)]);
          const px = { shape: [PEAK_N, PEAK_N], data: new Float32Array(PEAK_N * PEAK_N).map((_, i) => Math.cos(i)) };
          const items = [...sessions.map((session) => ({ session, feeds: { x } })), { session: peak, feeds: { x: px } }];
          const times = await timeInterleaved(items, { ...o, quiet: o.spin }, () => o.progress?.(++done, total));
          peakGflops[threads] = Math.max(peakGflops[threads] ?? 0, (2 * PEAK_N ** 3) / (stats(times[sessions.length]).min * 1e6));
          candidates.forEach((c, i) => rows.push(row('node', c, batch, threads, times[i])));
        }
      } finally {
        for (const s of [...sessions, peak]) await s.release();
      }
    }
  }

  if (!noPeers) {
    for (const threads of o.threads) {
      for (const batch of o.batches) {
        const args = JSON.stringify({ batch, threads, warmup: o.warmup, runs: o.runs * o.rounds });
        const out = runPeer<{ torch: string; ms: number[] }>('torch_eager_infer.py', [deepFile, args], threads, 'PyTorch eager peer');
        rows.push(row('pytorch', { source: `PyTorch ${out.torch} eager`, depth: L, precision: 'fp32', flops: exportFlopsPerImage(cfg, false) }, batch, threads, out.ms));
      }
    }
  }

  const webJob = (threads: number, batch: number): WebJob => ({ threads, shape: [batch, ...inputShape.slice(1)], runs: o.runs, rounds: o.rounds, warmup: o.warmup });
  if (o.runtimes.includes('web')) {
    for (const threads of o.threads) {
      for (const batch of o.batches) {
        const times = timeWeb(candidates.map((c) => c.file), webJob(threads, batch), o.log);
        candidates.forEach((c, i) => {
          if (times[i]) rows.push(row('web', c, batch, threads, times[i]!));
          else notes.push(`onnxruntime-web could not run ${c.source} ${c.depth}L ${precisionLabel(c)}`);
        });
      }
    }
  }

  if (o.runtimes.includes('browser')) {
    const chromium = findChromium();
    if (!chromium) notes.push('browser runtime skipped: Chromium not found (apt-get install chromium, or set VITFOLD_CHROMIUM)');
    else {
      for (const threads of o.threads) {
        for (const batch of o.batches) {
          const r = await timeInChromium(candidates.map((c) => c.file), webJob(threads, batch), { chromium });
          if (!notes.some((n) => n.startsWith('browser: '))) notes.push(`browser: ${r.browser}, onnxruntime-web wasm`);
          candidates.forEach((c, i) => {
            if (r.times[i]) rows.push(row('browser', c, batch, threads, r.times[i]!));
            else notes.push(`Chromium's onnxruntime-web could not run ${c.source} ${c.depth}L ${precisionLabel(c)}: ${r.errors[i]}`);
          });
        }
      }
    }
  }

  // ratios against the baseline of the same runtime, batch and threads (PyTorch rows: vs node's)
  for (const r of rows) {
    const rt = r.runtime === 'pytorch' ? 'node' : r.runtime;
    const base = rows.find((b) => b.runtime === rt && b.batch === r.batch && b.threads === r.threads && `${b.source} ${b.depth}L ${precisionLabel(b)}` === baseline);
    if (base) r.ratio = r.medianMs / base.medianMs;
  }

  let rssFloorMiB: number | undefined;
  if (o.memory) {
    const threads = Math.max(...o.threads);
    rssFloorMiB = memoryOf('-', inputShape, threads);
    for (const c of candidates) {
      for (const batch of o.batches) {
        const rss = memoryOf(c.file, [batch, ...inputShape.slice(1)], threads);
        for (const r of rows) if (r.runtime === 'node' && r.batch === batch && r.source === c.source && r.depth === c.depth && precisionLabel(r) === precisionLabel(c)) r.peakRssMiB = rss;
      }
    }
  }

  return {
    date: new Date().toISOString(),
    machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, node: process.version, features: cpuFeatures(), int8PairsSaturate: await int8PairsSaturate() },
    config: cfg,
    baseline,
    peakGflops,
    spin: o.spin,
    rssFloorMiB,
    rows,
    notes,
  };
}

/** 'fp32', 'fp16', or 'int8 paired' (int8 with its weight mode). */
export function precisionLabel(x: { precision: Precision; int8Weights?: Int8Weights }): string {
  return x.int8Weights ? `${x.precision} ${x.int8Weights}` : x.precision;
}
