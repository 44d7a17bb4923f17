// onnxruntime-web (WebAssembly backend, SIMD + threads), the runtime browsers use. The same
// .wasm binaries run under Node's V8, which is how `vitfold bench --runtime web` measures them
// (in a child process, so its worker threads never share the CPU with onnxruntime-node's pool).

import fs from 'node:fs';
import * as ort from 'onnxruntime-web';
import { timeModelsWasm, type WebJob, type WebTiming } from './web-timing.js';

export type { WebJob, WebTiming } from './web-timing.js';

/** Times each model in interleaved rounds in onnxruntime-web under Node (runtime/web-timing.ts). */
export function timeModelsWeb(models: Uint8Array[], job: WebJob): Promise<WebTiming> {
  return timeModelsWasm(ort, models, job);
}

/**
 * Runs one model in onnxruntime-web with ORT's profiler on (`warmup` + `runs` runs on a
 * sin-filled input named x) and returns the profile: Chrome trace events as JSON text. The wasm
 * build writes its profile to stdout (fd 1, through fs.writeSync) when profiling ends, so those
 * writes are captured for the duration of that call (and kept off the caller's stdout).
 */
export async function profileModelWeb(model: Uint8Array, job: { threads: number; shape: number[]; runs: number; warmup: number }): Promise<string> {
  ort.env.wasm.numThreads = job.threads;
  const s = await ort.InferenceSession.create(model, { executionProviders: ['wasm'], graphOptimizationLevel: 'all', enableProfiling: true });
  const n = job.shape.reduce((a, b) => a * b, 1);
  const x = new ort.Tensor('float32', new Float32Array(n).map((_, i) => Math.sin(0.37 * i)), job.shape);
  for (let i = 0; i < job.warmup + job.runs; i++) await s.run({ x });
  const chunks: string[] = [];
  const write = fs.writeSync;
  const capture = (fd: number, data: string | NodeJS.ArrayBufferView, ...rest: unknown[]): number => {
    if (fd !== 1) return (write as (...a: unknown[]) => number)(fd, data, ...rest);
    const text = typeof data === 'string' ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString();
    chunks.push(text);
    return typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
  };
  fs.writeSync = capture as typeof fs.writeSync;
  try {
    await s.endProfiling();
  } finally {
    fs.writeSync = write;
  }
  await s.release();
  return chunks.join('');
}
