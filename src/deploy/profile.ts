// ORT profiles of inference graphs (`npm run bench:profile`): the Chrome
// trace events that onnxruntime-node writes to a file and onnxruntime-web to stdout, summarized
// per op type, with the share the matrix products take. No runtime imports: the runtimes'
// adapters (runtime/ort.ts, runtime/ort-web.ts) produce the text, this reads it.

export interface TraceEvent {
  cat: string;
  name: string;
  ts: number; // us
  dur: number; // us
  args?: { op_name?: string };
}

/**
 * Parses a profile: a JSON array of events. onnxruntime-web's stdout copy (one event per line)
 * can end with a comma before the closing bracket, so where the whole text is not JSON each
 * event line is parsed on its own.
 */
export function parseTrace(text: string): TraceEvent[] {
  let all: unknown[];
  try {
    all = JSON.parse(text) as unknown[];
  } catch {
    all = text.split('\n').map((l) => l.trim().replace(/,$/, '')).filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as unknown);
  }
  if (!Array.isArray(all)) throw new Error('profile: expected a JSON array of trace events');
  return all.filter((e): e is TraceEvent => {
    const t = e as TraceEvent;
    return typeof t.cat === 'string' && typeof t.name === 'string' && typeof t.dur === 'number';
  });
}

/** Ops that are matrix products (fp32 exports: MatMul, Gemm, and ORT's fusions of them). */
export const MATRIX_OPS: ReadonlySet<string> = new Set(['MatMul', 'Gemm', 'FusedMatMul', 'FusedGemm']);

export interface ProfileSummary {
  /** model_run events averaged (the last `runs` of the profile). */
  runs: number;
  /** Mean model_run duration, ms (the profiler adds a little per node). */
  runMs: number;
  /** Mean summed kernel time per run, ms. */
  kernelMs: number;
  /** Mean kernel time per run of the matrix products (MATRIX_OPS), ms. */
  matrixMs: number;
  /** Mean kernel time per run by op type, ms, largest first. */
  byOp: [string, number][];
}

/** Per-run means over the last `runs` model runs of a profile (earlier runs: warm-up). */
export function summarizeTrace(events: TraceEvent[], runs: number): ProfileSummary {
  const modelRuns = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').sort((a, b) => a.ts - b.ts);
  if (modelRuns.length < runs) throw new Error(`profile has ${modelRuns.length} model runs, fewer than the ${runs} to summarize`);
  const window = modelRuns.slice(modelRuns.length - runs);
  const from = window[0].ts;
  const byOp = new Map<string, number>();
  let kernel = 0;
  for (const e of events) {
    if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time') || e.ts < from) continue;
    const op = e.args?.op_name ?? '?';
    byOp.set(op, (byOp.get(op) ?? 0) + e.dur);
    kernel += e.dur;
  }
  const ms = (us: number) => us / runs / 1000;
  let matrix = 0;
  for (const [op, us] of byOp) if (MATRIX_OPS.has(op)) matrix += us;
  return {
    runs,
    runMs: ms(window.reduce((a, e) => a + e.dur, 0)),
    kernelMs: ms(kernel),
    matrixMs: ms(matrix),
    byOp: [...byOp].map(([op, us]) => [op, ms(us)] as [string, number]).sort((a, b) => b[1] - a[1]),
  };
}
