// The PyTorch peers of the benchmarks (bench/peers/*.py, shipped with the package): Debian's
// python3-torch run in a child process that prints its result as JSON on its last line.

import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** bench/peers beside src/ (or dist/) in a checkout and in the npm package. */
export function peersDir(): string | undefined {
  const d = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'peers');
  return existsSync(join(d, 'vit_torch.py')) ? d : undefined;
}

/** Debian's python3 (python3-torch), not a pyenv one; OpenBLAS's OpenMP build goes first. */
export const PYTHON = '/usr/bin/python3';
export const OPENBLAS_OMP = '/usr/lib/x86_64-linux-gnu/openblas-openmp';

/** Environment of a PyTorch peer process: its thread count and the OpenMP OpenBLAS. */
export function peerEnv(threads: number): NodeJS.ProcessEnv {
  const ld = existsSync(OPENBLAS_OMP) ? `${OPENBLAS_OMP}:${process.env.LD_LIBRARY_PATH ?? ''}` : process.env.LD_LIBRARY_PATH;
  return { ...process.env, OMP_NUM_THREADS: String(threads), LD_LIBRARY_PATH: ld };
}

/** Why the PyTorch peers cannot run, or undefined when they can. */
export function peersUnavailable(): string | undefined {
  if (!peersDir()) return 'bench/peers not found beside the vitfold installation';
  if (spawnSync(PYTHON, ['-c', 'import torch'], { encoding: 'utf8' }).status !== 0) return 'python3-torch not installed (apt-get install python3-torch libopenblas0-openmp)';
  return undefined;
}

/** Runs bench/peers/SCRIPT with `threads` OpenMP threads and parses its last stdout line as JSON. */
export function runPeer<T>(script: string, args: string[], threads: number, what: string): T {
  const dir = peersDir();
  if (!dir) throw new Error(`${what}: bench/peers not found`);
  const r = spawnSync(PYTHON, [join(dir, script), ...args], { encoding: 'utf8', env: peerEnv(threads), maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${what} failed (exit ${r.status}): ${(r.stderr || '').trim().split('\n').slice(-3).join(' ')}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as T;
}

/** ORT-ready bytes of a torch.onnx.export of a model file (bench/peers/torch_export.py). */
export function torchExport(modelFile: string, outFile: string): { bytes: Uint8Array; torch: string; opset: number } {
  const info = runPeer<{ torch: string; opset: number }>('torch_export.py', [modelFile, outFile], 1, 'torch.onnx.export peer');
  return { bytes: readFileSync(outFile), torch: info.torch, opset: info.opset };
}
