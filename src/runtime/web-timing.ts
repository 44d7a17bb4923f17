// The onnxruntime-web timing protocol, shared by `vitfold bench --runtime web` (under Node,
// runtime/ort-web.ts) and `--runtime browser` (deploy/bench-browser.ts embeds this function's
// source in its page). So it imports nothing and takes the onnxruntime-web namespace as an
// argument; types only.

export interface WebJob {
  threads: number;
  shape: number[];
  runs: number;
  rounds: number;
  warmup: number;
}

export interface WebTiming {
  /** Per model, the timed runs in ms; null when the wasm build could not load or run it. */
  times: (number[] | null)[];
  errors: (string | null)[];
}

interface OrtWebSession {
  run(feeds: Record<string, unknown>): Promise<unknown>;
  release(): Promise<void>;
}

/** The parts of the onnxruntime-web namespace the protocol uses. */
export interface OrtWebLike {
  env: { wasm: { numThreads?: number } };
  InferenceSession: { create(model: Uint8Array, opts: object): Promise<OrtWebSession> };
  Tensor: new (type: 'float32', data: Float32Array, dims: number[]) => unknown;
}

/**
 * Times each model in interleaved rounds (per round and model: warm-up runs, then `runs` timed
 * runs), all in one wasm instance. Self-contained on purpose (no imports, no named inner
 * functions): its source runs in the browser page as it is.
 */
export async function timeModelsWasm(ort: OrtWebLike, models: Uint8Array[], job: WebJob): Promise<WebTiming> {
  ort.env.wasm.numThreads = job.threads;
  const errors: (string | null)[] = models.map(() => null);
  const sessions = await Promise.all(
    models.map((m, i) =>
      ort.InferenceSession.create(m, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' }).catch((e: Error) => {
        errors[i] = String((e && e.message) || e);
        return null;
      }),
    ),
  );
  const n = job.shape.reduce((a, b) => a * b, 1);
  const x = new ort.Tensor('float32', new Float32Array(n).map((_, i) => Math.sin(0.37 * i)), job.shape);
  const times: (number[] | null)[] = sessions.map((s) => (s ? [] : null));
  for (let round = 0; round < job.rounds; round++) {
    for (let i = 0; i < sessions.length; i++) {
      const s = sessions[i];
      if (!s || !times[i]) continue;
      try {
        for (let w = 0; w < job.warmup; w++) await s.run({ x });
        for (let r = 0; r < job.runs; r++) {
          const t0 = performance.now();
          await s.run({ x });
          times[i]!.push(performance.now() - t0);
        }
      } catch (e) {
        errors[i] = String(((e as Error) && (e as Error).message) || e);
        times[i] = null;
      }
    }
  }
  for (const s of sessions) await s?.release();
  return { times, errors };
}
