// Child process of bench/profile.ts: one model (or the matmul peak) in one runtime, alone in its
// process (profiled sessions created later in a process ran 20-40% slower in element-wise ops);
// onnxruntime-node sessions spin-wait, ORT's default and `vitfold bench`'s (alone, nothing to spin against).
// argv: JSON {runtime: 'node'|'web', threads, runs, warmup, file?, shape?, peak?}; prints one
// JSON line: a ProfileSummary, or {gflops} (fastest run of the peak MatMul) with `peak`.

import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseTrace, summarizeTrace } from '../src/deploy/profile.js';
import { benchInput, peakGraph, timeInterleaved } from '../src/deploy/bench.js';
import { Session } from '../src/runtime/ort.js';
import { profileModelWeb, timeModelsWeb } from '../src/runtime/ort-web.js';

const o = JSON.parse(process.argv[2]) as { runtime: 'node' | 'web'; threads: number; runs: number; warmup: number; file?: string; shape?: number[]; peak?: number };
let out: unknown;
if (o.peak) {
  const n = o.peak;
  let times: number[];
  if (o.runtime === 'node') {
    const session = await Session.create(peakGraph(n), { threads: o.threads, spinning: true });
    [times] = await timeInterleaved([{ session, feeds: { x: benchInput([n, n]) } }], { rounds: 1, runs: o.runs, warmup: o.warmup });
    await session.release();
  } else {
    const r = await timeModelsWeb([peakGraph(n)], { threads: o.threads, shape: [n, n], runs: o.runs, rounds: 1, warmup: o.warmup });
    if (!r.times[0]) throw new Error(`onnxruntime-web could not run the peak MatMul: ${r.errors[0]}`);
    times = r.times[0];
  }
  out = { gflops: (2 * n ** 3) / (Math.min(...times) * 1e6) };
} else {
  const bytes = readFileSync(o.file!);
  let text: string;
  if (o.runtime === 'node') {
    const dir = mkdtempSync(join(tmpdir(), 'vitfold-profile-'));
    try {
      const s = await Session.create(bytes, { threads: o.threads, spinning: true, profile: join(dir, 'ort') });
      const x = benchInput(o.shape!);
      for (let i = 0; i < o.warmup + o.runs; i++) await s.run({ x });
      await s.endProfiling();
      await s.release();
      const files = readdirSync(dir);
      if (files.length !== 1) throw new Error(`expected one ORT profile in ${dir}, found ${files.length}`);
      text = readFileSync(join(dir, files[0]), 'utf8');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  } else {
    text = await profileModelWeb(bytes, { threads: o.threads, shape: o.shape!, runs: o.runs, warmup: o.warmup });
  }
  out = summarizeTrace(parseTrace(text), o.runs);
}
process.stdout.write(JSON.stringify(out) + '\n');
process.exit(0); // onnxruntime-web's worker threads would otherwise keep the process alive
