// The `vitfold app` page: two or more exported models side by side in onnxruntime-web, fed the
// same image (a bundled sample, a chosen or dropped file, or webcam frames), each with its top-5
// and its latency. Everything it needs is in the exported files' metadata_props (input size,
// normalization, class names, depth, origin), read with vitfold/web's describeOnnxExport; the
// pixels end in the same normalizePixels as `vitfold predict`, so both give the same numbers
// for an image already at the model's size.

import { describeOnnxExport } from '../../core/onnx-metadata.js';
import { defaultNormalization, resizedSize, rgbaToInput, softmaxRow, topK, type Normalization } from '../../core/preprocess.js';
import type { ViTConfig } from '../../core/config.js';

// The slice of onnxruntime-web's API the page uses (it is loaded as a plain ES module).
interface OrtTensor {
  data: Float32Array;
  dims: readonly number[];
}
interface OrtSession {
  run(feeds: Record<string, unknown>): Promise<Record<string, OrtTensor>>;
}
interface Ort {
  env: { wasm: { wasmPaths: string; numThreads: number } };
  InferenceSession: { create(model: Uint8Array, options: { executionProviders: string[]; graphOptimizationLevel: string }): Promise<OrtSession> };
  Tensor: new (type: 'float32', data: Float32Array, dims: number[]) => unknown;
}

/** models.json, written by the server or by `vitfold app --out`. */
interface ModelEntry {
  file: string;
  name: string;
  bytes: number;
}
interface Sample {
  file: string;
  label: string;
  source: string;
}

interface LoadedModel extends ModelEntry {
  config: ViTConfig;
  normalization: Normalization;
  classes: string[];
  metadata: Record<string, string>;
  session: OrtSession;
  card: Card;
}

/** One model's answer for the current image: what the tests read back from window.vitfoldApp. */
export interface ModelResult {
  name: string;
  probs: number[];
  top1: number;
  /** Median of the timed runs, ms; null until timed. */
  latencyMs: number | null;
}

interface Card {
  root: HTMLElement;
  latency: HTMLElement;
  speedup: HTMLElement;
  bars: HTMLElement;
}

const params = new URLSearchParams(location.search);
/** Timed runs per model after warm-up (?runs=N). */
const RUNS = Math.max(3, Math.min(500, Number(params.get('runs')) || 30));
const WARMUP = 3;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const el = (tag: string, cls?: string, text?: string) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text; // never innerHTML: class names come from files
  return e;
};
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const mb = (n: number) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)} MB` : `${(n / 1e3).toFixed(0)} kB`);

/** WebGPU when the browser has an adapter, else WebAssembly (SIMD, threads when isolated); ?ep= overrides. */
async function pickProvider(): Promise<'webgpu' | 'wasm'> {
  const asked = params.get('ep');
  if (asked === 'webgpu' || asked === 'wasm') return asked;
  const gpu = (navigator as Navigator & { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
  if (gpu) {
    try {
      if (await gpu.requestAdapter()) return 'webgpu';
    } catch {
      // no usable adapter: WebAssembly
    }
  }
  return 'wasm';
}

function setStatus(text: string, state: 'busy' | 'done' | 'error') {
  $('status').textContent = text;
  document.body.dataset.state = state;
}

function makeCard(m: ModelEntry, config: ViTConfig, metadata: Record<string, string>): Card {
  const root = el('article', 'card');
  root.dataset.model = m.name;
  root.append(el('h2', undefined, m.name));
  const heads = config.num_heads;
  root.append(el('p', 'shape', `${config.depth} layers · ${heads} heads · width ${config.embed_dim} · MLP ${config.mlp_hidden} · ${metadata.precision ?? 'fp32'} · ${mb(m.bytes)}`));
  root.append(el('p', 'origin', metadata.origin ?? ''));
  const timing = el('div', 'timing');
  const latency = el('span', 'latency', '–');
  const speedup = el('span', 'speedup');
  timing.append(latency, speedup);
  root.append(timing);
  const bars = el('ol', 'bars');
  root.append(bars);
  $('models').append(root);
  return { root, latency, speedup, bars };
}

function showTop5(card: Card, probs: number[], classes: string[]) {
  card.bars.replaceChildren(
    ...topK(probs, Math.min(5, probs.length)).map(([c, p], rank) => {
      const li = el('li', rank === 0 ? 'top' : undefined);
      const bar = el('span', 'bar');
      bar.style.width = `${(100 * p).toFixed(1)}%`;
      li.append(el('span', 'cls', classes[c] ?? String(c)), el('span', 'track'), el('span', 'pct', `${(100 * p).toFixed(1)}%`));
      li.children[1].append(bar);
      return li;
    }),
  );
}

/** Draws an image source into RGBA pixels at the model's pre-crop size (the shorter side = img_size / crop_pct). */
function pixelsFor(source: CanvasImageSource, width: number, height: number, m: LoadedModel): { data: Uint8ClampedArray; width: number; height: number } {
  const [w, h] = resizedSize(width, height, m.config, m.normalization);
  const canvas = document.createElement('canvas');
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext('2d', { willReadFrequently: true })!;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(source, 0, 0, w, h);
  return { data: ctx.getImageData(0, 0, w, h).data, width: w, height: h };
}

function inputFor(ort: Ort, source: CanvasImageSource, width: number, height: number, m: LoadedModel): unknown {
  const px = pixelsFor(source, width, height, m);
  const C = m.config.in_chans;
  const S = m.config.img_size;
  const x = rgbaToInput(px.data, px.width, px.height, m.config, m.normalization); // [C, S, S]
  return new ort.Tensor('float32', Float32Array.from(x), [1, C, S, S]);
}

async function main() {
  setStatus('loading onnxruntime-web…', 'busy');
  const base = new URL('.', location.href);
  const provider = await pickProvider();
  const ort = (await import(new URL(provider === 'webgpu' ? 'ort/ort.webgpu.min.mjs' : 'ort/ort.wasm.min.mjs', base).href)) as Ort;
  ort.env.wasm.wasmPaths = new URL('ort/', base).href;
  const threads = crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  ort.env.wasm.numThreads = threads;
  $('runtime').textContent =
    provider === 'webgpu' ? 'WebGPU (falls back to WebAssembly per operator)' : `WebAssembly, SIMD, ${threads} thread${threads > 1 ? 's' : ''}${crossOriginIsolated ? '' : ' (page not cross-origin isolated)'}`;

  const entries = (await (await fetch(new URL('models.json', base))).json()) as ModelEntry[];
  const models: LoadedModel[] = [];
  for (const entry of entries) {
    setStatus(`loading ${entry.name}…`, 'busy');
    const bytes = new Uint8Array(await (await fetch(new URL(entry.file, base))).arrayBuffer());
    const d = describeOnnxExport(bytes, entry.name);
    const session = await ort.InferenceSession.create(bytes, { executionProviders: provider === 'webgpu' ? ['webgpu', 'wasm'] : ['wasm'], graphOptimizationLevel: 'all' });
    models.push({ ...entry, ...d, normalization: d.normalization ?? defaultNormalization(d.config), classes: d.classes ?? [], session, card: makeCard(entry, d.config, d.metadata) });
  }
  // The baseline of the speed-up: the deepest model (the one the folds come from).
  const baseline = models.reduce((a, b) => (b.config.depth > a.config.depth ? b : a), models[0]);

  const preview = $<HTMLCanvasElement>('preview');
  let busy = false;
  let last: ModelResult[] = [];
  // One classification at a time: the sessions are shared and the latency rounds must not
  // interleave with another image's, so every request waits for the one before it.
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(job: () => Promise<T>): Promise<T> => {
    const run = queue.then(job, job);
    queue = run.catch(() => undefined);
    return run;
  };

  /** Classifies one image with every model; `timed` adds the interleaved latency rounds. */
  async function classify(source: CanvasImageSource, width: number, height: number, label: string, timed: boolean): Promise<ModelResult[]> {
    busy = true;
    try {
      const pctx = preview.getContext('2d')!;
      pctx.imageSmoothingEnabled = width > preview.width;
      pctx.clearRect(0, 0, preview.width, preview.height);
      const k = Math.min(preview.width / width, preview.height / height);
      pctx.drawImage(source, (preview.width - width * k) / 2, (preview.height - height * k) / 2, width * k, height * k);
      $('input-label').textContent = label;
      const feeds = models.map((m) => ({ x: inputFor(ort, source, width, height, m) }));
      const results: ModelResult[] = [];
      for (const [i, m] of models.entries()) {
        const out = await m.session.run(feeds[i]);
        const probs = softmaxRow(out.logits.data);
        showTop5(m.card, probs, m.classes);
        results.push({ name: m.name, probs, top1: topK(probs, 1)[0][0], latencyMs: null });
      }
      if (timed) {
        setStatus(`timing: ${WARMUP} warm-up and ${RUNS} timed runs per model, interleaved…`, 'busy');
        for (let r = 0; r < WARMUP; r++) for (const [i, m] of models.entries()) await m.session.run(feeds[i]);
        const times: number[][] = models.map(() => []);
        // Rounds alternate the models, so a slow moment of the machine hits them alike.
        for (let r = 0; r < RUNS; r++) {
          for (const [i, m] of models.entries()) {
            const t0 = performance.now();
            await m.session.run(feeds[i]);
            times[i].push(performance.now() - t0);
          }
        }
        const med = times.map(median);
        const ref = med[models.indexOf(baseline)];
        for (const [i, m] of models.entries()) {
          results[i].latencyMs = med[i];
          m.card.latency.textContent = `${med[i] < 10 ? med[i].toFixed(2) : med[i].toFixed(1)} ms`;
          m.card.speedup.textContent = m === baseline ? 'baseline' : `${(ref / med[i]).toFixed(2)}x the speed of ${baseline.config.depth} layers`;
        }
        $('timing-note').textContent = `latency: median of ${RUNS} runs per model, batch 1, after ${WARMUP} warm-up runs, models alternating`;
      }
      last = results;
      return results;
    } finally {
      busy = false;
    }
  }

  const classifyUrl = (url: string, label: string) =>
    serial(async () => {
      const img = new Image();
      img.src = url;
      await img.decode();
      setStatus('running…', 'busy');
      await classify(img, img.naturalWidth, img.naturalHeight, label, true);
      setStatus(`${label}: done`, 'done');
    });

  const samples = (await (await fetch(new URL('samples/samples.json', base))).json()) as Sample[];
  for (const s of samples) {
    const b = el('button', 'sample');
    b.title = `${s.label} (${s.source})`;
    b.dataset.sample = s.file;
    const img = el('img') as HTMLImageElement;
    img.src = new URL(`samples/${s.file}`, base).href;
    img.alt = s.label;
    b.append(img);
    b.addEventListener('click', () => void classifyUrl(img.src, `${s.label} (${s.source})`).catch(fail));
    $('samples').append(b);
  }

  const chooseFile = (file: File | undefined) => {
    if (!file) return;
    const url = URL.createObjectURL(file);
    void classifyUrl(url, file.name)
      .catch(fail)
      .finally(() => URL.revokeObjectURL(url));
  };
  $<HTMLInputElement>('file').addEventListener('change', (e) => chooseFile((e.target as HTMLInputElement).files?.[0]));
  const drop = $('drop');
  drop.addEventListener('dragover', (e) => (e.preventDefault(), drop.classList.add('over')));
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    chooseFile(e.dataTransfer?.files[0]);
  });

  // Webcam: frames are classified back to back while it runs; latency is timed on a frame when it stops.
  let stream: MediaStream | null = null;
  const video = $<HTMLVideoElement>('video');
  const camButton = $<HTMLButtonElement>('webcam');
  camButton.addEventListener('click', async () => {
    if (stream) {
      stream.getTracks().forEach((t) => t.stop());
      stream = null;
      camButton.textContent = 'Webcam';
      await serial(() => classify(video, video.videoWidth, video.videoHeight, 'last webcam frame', true)).catch(fail);
      setStatus('webcam stopped: last frame timed', 'done');
      return;
    }
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
    } catch (e) {
      return fail(new Error(`no webcam: ${(e as Error).message}`));
    }
    video.srcObject = stream;
    await video.play();
    camButton.textContent = 'Stop webcam';
    setStatus('webcam: classifying frames live', 'busy');
    const loop = async () => {
      if (!stream) return;
      // Frames that arrive while a classification runs are skipped, not queued.
      if (!busy && video.videoWidth) await serial(() => classify(video, video.videoWidth, video.videoHeight, 'webcam', false)).catch(fail);
      requestAnimationFrame(() => void loop());
    };
    void loop();
  });

  setStatus(`ready: ${models.length} models on ${provider === 'webgpu' ? 'WebGPU' : 'WebAssembly'}; pick an image`, 'done');
  const api = { provider, threads, models: models.map((m) => m.name), get last() { return last; } };
  (window as unknown as { vitfoldApp: typeof api }).vitfoldApp = api;
  document.body.dataset.ready = '1';
}

function fail(e: unknown) {
  setStatus(`error: ${e instanceof Error ? e.message : String(e)}`, 'error');
  console.error(e);
}

main().catch(fail);
