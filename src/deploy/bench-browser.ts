// `vitfold bench --runtime browser`: times ONNX files in onnxruntime-web inside headless
// Chromium, the runtime a web page gets. A local HTTP server hands the page onnxruntime-web's
// own dist files, the models and the job, with the cross-origin isolation headers that
// WebAssembly threads need (SharedArrayBuffer); the page times the models in interleaved rounds
// (runtime/web-timing.ts, the same function as under Node) and posts the timings back.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join, normalize } from 'node:path';
import { ISOLATION_HEADERS, ortWebDist } from './app.js';
import { timeModelsWasm, type WebJob, type WebTiming } from '../runtime/web-timing.js';

export interface BrowserTiming extends WebTiming {
  /** navigator.userAgent of the page. */
  browser: string;
}

/** The Chromium binary: $VITFOLD_CHROMIUM, else the first of chromium / chromium-browser / google-chrome on PATH. */
export function findChromium(): string | undefined {
  const env = process.env.VITFOLD_CHROMIUM;
  for (const name of env ? [env] : ['chromium', 'chromium-browser', 'google-chrome']) {
    const r = spawnSync(name, ['--version'], { encoding: 'utf8' });
    if (r.status === 0) return name;
  }
  return undefined;
}

// The page: onnxruntime-web's WebAssembly build (SIMD + threads) running the same timing
// function as under Node, embedded from its source. `__name` is the helper a tsx/esbuild
// transpile with keepNames may call inside it (source runs here untranspiled either way).
const PAGE = `<!doctype html><meta charset="utf-8"><title>vitfold bench</title><script type="module">
const __name = (f) => f;
const timeModelsWasm = ${timeModelsWasm.toString()};
const post = (r) => fetch('/result', { method: 'POST', body: JSON.stringify(r) });
addEventListener('unhandledrejection', (e) => post({ fatal: String(e.reason && e.reason.stack || e.reason) }));
const ort = await import('/ort/ort.wasm.min.mjs');
ort.env.wasm.wasmPaths = '/ort/';
const job = await (await fetch('/job')).json();
const models = [];
for (let i = 0; i < job.models; i++) models.push(new Uint8Array(await (await fetch('/model/' + i)).arrayBuffer()));
const r = await timeModelsWasm(ort, models, job);
await post({ ...r, browser: navigator.userAgent, isolated: crossOriginIsolated });
</script>`;

/** Times each model file in headless Chromium; throws if the browser cannot be started or the page fails. */
export async function timeInChromium(files: string[], job: WebJob, opts: { chromium?: string; timeoutMs?: number } = {}): Promise<BrowserTiming> {
  const chromium = opts.chromium ?? findChromium();
  if (!chromium) throw new Error('Chromium not found (apt-get install chromium, or set VITFOLD_CHROMIUM)');
  const dist = ortWebDist();
  const profile = mkdtempSync(join(tmpdir(), 'vitfold-chromium-'));
  const headers = { ...ISOLATION_HEADERS, 'Cache-Control': 'no-store' };
  let browser: ChildProcess | undefined;
  let stderr = '';
  const server = createServer();
  try {
    return await new Promise<BrowserTiming>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`Chromium page did not report within ${(opts.timeoutMs ?? 600_000) / 1000} s; stderr: ${stderr.trim().split('\n').slice(-3).join(' ')}`)), opts.timeoutMs ?? 600_000);
      const send = (res: ServerResponse, status: number, type: string, body: string | Uint8Array) => {
        res.writeHead(status, { ...headers, 'Content-Type': type });
        res.end(body);
      };
      server.on('request', (req: IncomingMessage, res: ServerResponse) => {
        const url = req.url ?? '/';
        if (url === '/') return send(res, 200, 'text/html', PAGE);
        if (url === '/job') return send(res, 200, 'application/json', JSON.stringify({ ...job, models: files.length }));
        if (url.startsWith('/model/')) return send(res, 200, 'application/octet-stream', readFileSync(files[Number(url.slice(7))]));
        if (url.startsWith('/ort/')) {
          const name = normalize(url.slice(5)).replace(/^(\.\.[/\\])+/, '');
          try {
            return send(res, 200, name.endsWith('.wasm') ? 'application/wasm' : 'text/javascript', readFileSync(join(dist, name)));
          } catch {
            return send(res, 404, 'text/plain', 'not found');
          }
        }
        if (url === '/result' && req.method === 'POST') {
          let body = '';
          req.on('data', (c: Buffer) => (body += c));
          req.on('end', () => {
            send(res, 200, 'text/plain', 'ok');
            clearTimeout(timer);
            const r = JSON.parse(body) as BrowserTiming & { fatal?: string; isolated?: boolean };
            if (r.fatal) reject(new Error(`the Chromium page failed: ${r.fatal}`));
            else if (r.isolated === false) reject(new Error('the Chromium page is not cross-origin isolated: no WebAssembly threads'));
            else resolve({ times: r.times, errors: r.errors, browser: r.browser });
          });
          return;
        }
        send(res, 404, 'text/plain', 'not found');
      });
      server.listen(0, '127.0.0.1', () => {
        const { port } = server.address() as { port: number };
        browser = spawn(chromium, ['--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-extensions', `--user-data-dir=${profile}`, `http://127.0.0.1:${port}/`], { stdio: ['ignore', 'ignore', 'pipe'] });
        browser.stderr!.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
        browser.on('error', (e) => reject(new Error(`could not start ${chromium}: ${e.message}`)));
        browser.on('exit', (code) => reject(new Error(`${chromium} exited (code ${code}) before the page reported; stderr: ${stderr.trim().split('\n').slice(-3).join(' ')}`)));
      });
    });
  } finally {
    server.close();
    if (browser && browser.exitCode === null) {
      const b = browser;
      b.removeAllListeners('exit');
      await new Promise<void>((done) => {
        const t = setTimeout(done, 5000);
        b.once('exit', () => (clearTimeout(t), done()));
        b.kill();
      });
    }
    try {
      rmSync(profile, { recursive: true, force: true });
    } catch {
      // a profile file still held by a dying browser: leave it to the OS's tmp cleanup
    }
  }
}
