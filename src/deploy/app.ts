// `vitfold app`: the static site of the browser app (page, styles, browser-safe core modules,
// onnxruntime-web's files, the models and bundled samples), served locally with the headers that
// WebAssembly threads need, or written to a folder for any static host. The site is a fixed map
// of URL paths to files or bytes, so nothing outside it can be requested.

import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { ModelError } from '../core/model.js';
import { loadModel } from '../io.js';
import { EXPORT_TOLERANCE, exportableModel, exportModel } from './export.js';
import { isOnnxPath, loadOnnxModel } from './onnx-model.js';

/** The package root (src/deploy and dist/deploy both sit two levels below it). */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Headers of cross-origin isolation: SharedArrayBuffer, hence WebAssembly threads. */
export const ISOLATION_HEADERS = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' } as const;

const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  css: 'text/css; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  mjs: 'text/javascript; charset=utf-8',
  json: 'application/json',
  wasm: 'application/wasm',
  png: 'image/png',
  onnx: 'application/octet-stream',
};
export const contentType = (path: string) => TYPES[path.slice(path.lastIndexOf('.') + 1)] ?? 'application/octet-stream';

/** onnxruntime-web's dist folder (the files a page loads). */
export function ortWebDist(): string {
  return dirname(createRequire(import.meta.url).resolve('onnxruntime-web')); // .../onnxruntime-web/dist/ort.node.min.js
}

/** A model the page shows: its display name and the exported ONNX bytes. */
export interface AppModel {
  name: string;
  bytes: Uint8Array;
}

/** URL path (no leading slash) -> a file on disk or bytes. */
export type Site = Map<string, { file: string } | { bytes: Uint8Array }>;

/**
 * onnxruntime-web's two builds the page picks from, each with the WebAssembly it loads: the
 * WebGPU build (asyncify) where the browser has a GPU adapter, else the smaller and faster
 * WebAssembly-only build. A browser downloads one of the two.
 */
const ORT_FILES = ['ort.webgpu.min.mjs', 'ort-wasm-simd-threaded.asyncify.mjs', 'ort-wasm-simd-threaded.asyncify.wasm', 'ort.wasm.min.mjs', 'ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm'];

export function appSite(models: AppModel[]): Site {
  const site: Site = new Map();
  const page = join(ROOT, 'dist', 'app', 'browser', 'page.js');
  if (!existsSync(page)) throw new ModelError(`${page} is missing: build vitfold first (npm run build)`);
  site.set('index.html', { file: join(ROOT, 'app', 'index.html') });
  site.set('app.css', { file: join(ROOT, 'app', 'app.css') });
  site.set('js/app/browser/page.js', { file: page });
  // The page imports the browser-safe core (preprocessing, ONNX metadata) as ES modules.
  for (const f of readdirSync(join(ROOT, 'dist', 'core'))) if (f.endsWith('.js')) site.set(`js/core/${f}`, { file: join(ROOT, 'dist', 'core', f) });
  const ort = ortWebDist();
  for (const f of ORT_FILES) site.set(`ort/${f}`, { file: join(ort, f) });
  for (const f of readdirSync(join(ROOT, 'app', 'samples'))) site.set(`samples/${f}`, { file: join(ROOT, 'app', 'samples', f) });
  const entries = models.map((m, i) => ({ file: `models/${i}.onnx`, name: m.name, bytes: m.bytes.length }));
  models.forEach((m, i) => site.set(entries[i].file, { bytes: m.bytes }));
  site.set('models.json', { bytes: new TextEncoder().encode(JSON.stringify(entries, null, 2)) });
  return site;
}

const read = (entry: { file: string } | { bytes: Uint8Array }) => ('bytes' in entry ? entry.bytes : readFileSync(entry.file));

/** Serves the site on host:port (0: a free port) until close(). */
export function serveSite(site: Site, opts: { port?: number; host?: string } = {}): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    let path: string;
    try {
      path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\/+/, '') || 'index.html';
    } catch {
      res.writeHead(400, { 'Content-Type': 'text/plain' }).end('bad request');
      return;
    }
    const entry = site.get(path);
    if (!entry || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(entry ? 405 : 404, { 'Content-Type': 'text/plain' }).end(entry ? 'method not allowed' : 'not found');
      return;
    }
    let body: Uint8Array;
    try {
      body = read(entry);
    } catch (e) {
      res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`cannot read ${'file' in entry ? entry.file : path}: ${(e as Error).message}`);
      return;
    }
    res.writeHead(200, { ...ISOLATION_HEADERS, 'Content-Type': contentType(path), 'Content-Length': body.length, 'Cache-Control': 'no-cache' });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  return new Promise((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        e.code === 'EADDRINUSE'
          ? new ModelError(`port ${opts.port} is in use: pick another with --port, or --port 0 for any free port`)
          : ['ENOTFOUND', 'EADDRNOTAVAIL', 'EACCES', 'EAI_AGAIN'].includes(e.code ?? '')
            ? new ModelError(`cannot listen on ${opts.host ?? '127.0.0.1'}:${opts.port ?? 0}: ${e.code === 'EACCES' ? 'permission denied (ports below 1024 need privileges)' : 'no such address on this machine'} (--host, --port)`)
            : e,
      ),
    );
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
      const a = server.address() as { port: number; address: string };
      const host = a.address.includes(':') ? `[${a.address}]` : a.address;
      resolve({ url: `http://${host}:${a.port}/`, server });
    });
  });
}

/**
 * Writes the site to dir, plus `_headers` (the format Netlify and Cloudflare Pages read) asking
 * for cross-origin isolation; on a host that ignores it the page runs single-threaded.
 */
export function writeSite(site: Site, dir: string): string[] {
  const written: string[] = [];
  for (const [path, entry] of site) {
    const out = join(dir, path);
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, read(entry), { flag: 'wx' });
    written.push(out);
  }
  const headers = join(dir, '_headers');
  writeFileSync(headers, `/*\n${Object.entries(ISOLATION_HEADERS).map(([k, v]) => `  ${k}: ${v}`).join('\n')}\n`, { flag: 'wx' });
  return [...written, headers];
}

/**
 * The page's models from files: .onnx exports as they are; .safetensors models exported to fp32
 * here (a fully joined branched model is folded first), validated like `vitfold export`.
 */
export async function appModels(paths: string[], opts: { names?: string[]; onLine?: (s: string) => void } = {}): Promise<AppModel[]> {
  const out: AppModel[] = [];
  for (const [i, path] of paths.entries()) {
    const name = opts.names?.[i] ?? basename(path);
    if (isOnnxPath(path)) {
      out.push({ name, bytes: loadOnnxModel(path).bytes });
      continue;
    }
    const t0 = performance.now();
    const { model } = exportableModel(loadModel(path), path);
    const r = await exportModel(model, { precision: 'fp32' });
    if (!(r.error.maxRel <= EXPORT_TOLERANCE.fp32)) throw new ModelError(`${path}: the fp32 export differs from the float64 reference by ${r.error.maxRel} (relative), above ${EXPORT_TOLERANCE.fp32}`);
    opts.onLine?.(`export   ${path}: ${model.config.depth} layers, fp32, ${(r.bytes.length / 1e6).toFixed(2)} MB, validated (max rel error ${r.error.maxRel.toExponential(1)}) [${((performance.now() - t0) / 1000).toFixed(1)} s]`);
    out.push({ name: name.replace(/\.safetensors$/i, '.onnx'), bytes: r.bytes });
  }
  return out;
}
