// `vitfold bench --runtime web`: runs bench-web-child in its own process and collects timings.

import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Per file the timed runs (null if it failed), or why the web runtime could not run at all. */
export async function runWeb(
  files: string[],
  o: { batch: number; threads: number; inputShape: number[]; runs: number; rounds: number; warmup: number },
  log: (line: string) => void,
): Promise<(number[] | null)[] | string> {
  const self = fileURLToPath(import.meta.url);
  const ts = self.endsWith('.ts');
  const script = join(dirname(self), ts ? 'bench-web-child.ts' : 'bench-web-child.js');
  const args = JSON.stringify({ files, threads: o.threads, shape: [o.batch, ...o.inputShape.slice(1)], runs: o.runs, rounds: o.rounds, warmup: o.warmup });
  const r = spawnSync(process.execPath, [...(ts ? ['--import', 'tsx'] : []), script, args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) return `onnxruntime-web child failed (exit ${r.status}): ${(r.stderr || '').trim().split('\n').slice(-3).join(' ')}`;
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { times: (number[] | null)[]; errors: (string | null)[] };
  out.errors.forEach((e, i) => {
    if (e) log(`onnxruntime-web: ${files[i]}: ${e}`);
  });
  return out.times;
}
