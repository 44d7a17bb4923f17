// Shared test helpers: where the golden fixtures are, random models that exercise every part
// of the fold (random LayerNorm affine, random biases, head_dim != embed_dim / num_heads).

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { validateConfig, type ViTConfig } from '../src/core/config.js';
import type { Model } from '../src/core/model.js';
import { initParams } from '../src/core/params.js';
import { Rng } from '../src/core/rng.js';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** CI has shared/ beside the checkout; VITFOLD_SHARED overrides. */
export const SHARED = process.env.VITFOLD_SHARED ?? resolve(REPO, '..', 'shared');
export const GOLDEN = join(SHARED, 'fixtures', 'golden');
if (!existsSync(join(GOLDEN, 'expected.json'))) {
  throw new Error(`golden fixtures not found at ${GOLDEN} (shared/ must sit beside the checkout, or set VITFOLD_SHARED)`);
}

export function tmpDir(): string {
  return mkdtempSync(join(tmpdir(), 'vitfold-test-'));
}

export function smallConfig(over: Partial<ViTConfig> = {}): ViTConfig {
  return validateConfig({
    img_size: 8,
    patch_size: 4,
    in_chans: 2,
    num_classes: 5,
    embed_dim: 12,
    depth: 6,
    num_heads: 2,
    head_dim: 5, // != embed_dim / num_heads on purpose
    mlp_hidden: 20,
    eps: 1e-6,
    ...over,
  });
}

/**
 * A plain model whose every parameter is random, including LayerNorm gains and biases, at a
 * scale (std 0.3) where the blocks are far from identity maps.
 */
export function randomModel(cfg: ViTConfig, seed: number): Model {
  const params = initParams(cfg, seed);
  const rng = new Rng(seed + 1000);
  for (const [name, t] of params) {
    for (let i = 0; i < t.data.length; i++) {
      t.data[i] = name.endsWith('norm1.weight') || name.endsWith('norm2.weight') || name === 'norm.weight'
        ? 1 + 0.5 * rng.normal()
        : 0.3 * rng.normal();
    }
  }
  return { config: cfg, structure: { kind: 'plain' }, params, dtype: 'F32', extraMetadata: {} };
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

export function idx(dims: number[], data: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  const dv = new DataView(out.buffer);
  out[2] = 8;
  out[3] = dims.length;
  dims.forEach((d, i) => dv.setUint32(4 + 4 * i, d, false));
  out.set(data, 4 + 4 * dims.length);
  return out;
}

/** A tiny Fashion-MNIST-shaped dataset whose class is visible as the image's brightness. */
export function writeDataset(dir: string, nTrain: number, nTest: number, gz: boolean): void {
  mkdirSync(dir, { recursive: true });
  const rng = new Rng(5);
  for (const [split, n] of [['train', nTrain], ['t10k', nTest]] as const) {
    const labels = Uint8Array.from({ length: n }, () => rng.int(10));
    const images = new Uint8Array(n * 784);
    for (let i = 0; i < n; i++) {
      for (let p = 0; p < 784; p++) images[i * 784 + p] = 25 * labels[i] + rng.int(20);
    }
    const w = (name: string, bytes: Uint8Array) => writeFileSync(join(dir, gz ? `${name}.gz` : name), gz ? gzipSync(bytes) : bytes);
    w(`${split}-images-idx3-ubyte`, idx([n, 28, 28], images));
    w(`${split}-labels-idx1-ubyte`, idx([n], labels));
  }
}

/** The built CLI (npm test builds first). */
export const BIN = join(REPO, 'dist', 'cli', 'main.js');

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  err: string;
  ms: number;
}

/**
 * Runs `vitfold args` in a child process without blocking the test runner (so two can run at
 * once). A hang is a failure: the child is killed after `timeoutMs`.
 */
export function runVitfold(args: string[], env: Record<string, string> = {}, timeoutMs = 120_000): Promise<CliRun> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out, err, ms: performance.now() - t0 });
    });
  });
}

/**
 * The Chromium executable's path for playwright-core (findChromium gives the command name).
 * Imported on demand: bench-browser loads onnxruntime, which most tests using helpers do not need.
 */
export async function chromiumExecutable(): Promise<string | undefined> {
  const name = (await import('../src/deploy/bench-browser.js')).findChromium();
  return name ? spawnSync('sh', ['-c', `command -v "${name}"`], { encoding: 'utf8' }).stdout.trim() || undefined : undefined;
}
