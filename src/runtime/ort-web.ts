// onnxruntime-web (WebAssembly backend, SIMD + threads), the runtime browsers use. The same
// .wasm binaries run under Node's V8, which is how `vitfold bench --runtime web` measures them
// (in a child process, so its worker threads never share the CPU with onnxruntime-node's pool).

import * as ort from 'onnxruntime-web';

export interface WebTiming {
  /** Per model, the timed runs in ms; null when the wasm build could not load or run it. */
  times: (number[] | null)[];
  errors: (string | null)[];
}

/** Times each model in interleaved rounds (warm-up, then `runs` timed runs per round), all in one wasm instance. */
export async function timeModelsWeb(models: Uint8Array[], o: { threads: number; shape: number[]; runs: number; rounds: number; warmup: number }): Promise<WebTiming> {
  ort.env.wasm.numThreads = o.threads;
  const errors: (string | null)[] = models.map(() => null);
  const sessions = await Promise.all(
    models.map((m, i) =>
      ort.InferenceSession.create(m, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' }).catch((e: Error) => {
        errors[i] = e.message;
        return null;
      }),
    ),
  );
  const n = o.shape.reduce((a, b) => a * b, 1);
  const x = new ort.Tensor('float32', new Float32Array(n).map((_, i) => Math.sin(0.37 * i)), o.shape);
  const times: (number[] | null)[] = sessions.map((s) => (s ? [] : null));
  for (let round = 0; round < o.rounds; round++) {
    for (let i = 0; i < sessions.length; i++) {
      const s = sessions[i];
      if (!s || !times[i]) continue;
      try {
        for (let w = 0; w < o.warmup; w++) await s.run({ x });
        for (let r = 0; r < o.runs; r++) {
          const t0 = performance.now();
          await s.run({ x });
          times[i]!.push(performance.now() - t0);
        }
      } catch (e) {
        errors[i] = (e as Error).message;
        times[i] = null;
      }
    }
  }
  for (const s of sessions) await s?.release();
  return { times, errors };
}
