// report.html of a run: one self-contained page a user can show a colleague, rebuilt from
// config.json and log.jsonl (also while the run is in progress): what was trained and where it
// ended, loss and learning rate, top-1/top-5 per epoch with the branched, joined and folded
// phases shaded and the fold marked, the join coefficients per block, the fold's verification,
// the deep model against its fold (shape, size, FLOPs and, after `vitfold report --bench`, latency),
// the epoch table, and the command and config folded away at the bottom.

import { existsSync, readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { esc, extent, lineChart, PALETTE, type Band, type LineSeries, type Marker } from '../chart/svg.js';
import type { ViTConfig } from '../core/config.js';
import { foldedConfig } from '../core/fold.js';
import { flopsPerImage } from '../core/flops.js';
import { paramSpecs } from '../core/params.js';
import { writeFileAtomic } from '../io.js';
import { readRunLog } from './checkpoint.js';

/** Timing of the run's deep model and its fold (written by `vitfold report --bench`). */
export const LATENCY_FILE = 'latency.json';

export interface RunLatency {
  machine: string;
  batch: number;
  threads: number;
  rows: { depth: number; precision: string; medianMs: number; ratio?: number }[];
}

interface LogRecord {
  event?: string;
  step?: number;
  epoch?: number;
  [k: string]: unknown;
}

interface RunConfig {
  model: ViTConfig;
  branches: number;
  join: { mode: string; shape: string; start: number; end: number };
  epochs: number;
  batch: number;
  lr: number;
  data: { kind: string; limitTrain?: number; limitTest?: number };
  shrink?: { teacher: string; method: string; depth: number };
  distill?: { teacher: string; alpha: number; temperature: number; hidden?: number };
  [k: string]: unknown;
}

const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const pct = (v: unknown, d = 2) => (num(v) !== undefined ? `${(100 * (v as number)).toFixed(d)}%` : '–');
const count = (n: number) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} k` : String(n));
const params = (cfg: ViTConfig) => paramSpecs(cfg).reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1), 0);
const shape = (cfg: ViTConfig) => `${cfg.depth} layers, ${cfg.num_heads} heads, MLP ${cfg.mlp_hidden}`;

/** Training images of the built-in datasets, for logs that predate steps_per_epoch. */
const TRAIN_IMAGES: Record<string, number> = { 'fashion-mnist': 60000, cifar10: 50000 };

/** Steps per epoch: logged at the start; in older logs from the config, or estimated from the steps. */
function stepsPerEpoch(config: RunConfig, records: LogRecord[], steps: LogRecord[]): number {
  const logged = num(records.find((r) => r.event === 'start')?.steps_per_epoch);
  if (logged) return logged;
  const images = config.data.limitTrain ?? TRAIN_IMAGES[config.data.kind];
  if (images) return Math.max(1, Math.floor(images / config.batch));
  const last1 = Math.max(0, extent(steps.filter((r) => r.epoch === 1).map((r) => r.step!))[1]);
  const first2 = extent(steps.filter((r) => r.epoch === 2).map((r) => r.step!))[0];
  return Number.isFinite(first2) ? (last1 + first2) / 2 : Math.max(1, last1);
}

/** Join coefficients of one kind per block; blocks whose curves coincide share one line. */
function joinSeries(kind: 'attn' | 'ffn', points: { x: number; c: number[] | undefined }[], blocks: number, color: (i: number) => string): LineSeries[] {
  const curves = Array.from({ length: blocks }, (_, b) => points.map(({ x, c }) => [x, c && c.length ? c[b] : 1] as [number, number]));
  const groups: { blocks: number[]; curve: [number, number][] }[] = [];
  for (const [b, curve] of curves.entries()) {
    const same = groups.find((g) => g.curve.every((p, i) => p[1] === curve[i][1]));
    if (same) same.blocks.push(b + 1);
    else groups.push({ blocks: [b + 1], curve });
  }
  const what = kind === 'attn' ? 'attention' : 'FFN';
  return groups.map((g, i) => ({
    name: `${what}, ${g.blocks.length === blocks && blocks > 1 ? 'every block' : `block${g.blocks.length > 1 ? 's' : ''} ${g.blocks.join(', ')}`}`,
    color: color(i),
    dashed: kind === 'ffn',
    points: g.curve,
  }));
}

export function reportHtml(config: RunConfig, records: LogRecord[], opts: { runDir?: string; latency?: RunLatency } = {}): string {
  const E = config.epochs;
  const steps = records.filter((r) => r.step !== undefined && r.event === undefined);
  const epochs = records.filter((r) => r.event === 'epoch');
  const start = records.find((r) => r.event === 'start');
  const sw = records.find((r) => r.event === 'switch');
  const foldRec = records.find((r) => r.event === 'fold');
  const shrunk = records.find((r) => r.event === 'shrunk');
  const nan = records.find((r) => r.event === 'nan');
  const spe = stepsPerEpoch(config, records, steps);
  const x = (r: LogRecord) => r.step! / spe;
  const cfg = config.model;
  const k = config.branches;
  const branched = k > 1 && config.join.mode !== 'none';
  const last = epochs[epochs.length - 1];
  const finished = Boolean(foldRec || shrunk) || (!branched && last?.epoch === E);
  const instant = Boolean(shrunk) && epochs.length === 0;

  // Phases of a branched run, in epochs; the fold marker where the log says the model was folded.
  const bands: Band[] = [];
  const markers: Marker[] = [];
  const foldEpoch = num(foldRec?.folded_at_epoch) ?? num(sw?.epoch);
  if (branched) {
    const [a, b] = [config.join.start * E, config.join.end * E];
    const joinedUntil = foldEpoch ?? E;
    if (a > 0) bands.push({ from: 0, to: a, label: 'deep', color: '#f3f4f6' });
    if (b > a) bands.push({ from: a, to: b, label: 'joining', color: '#fff4e0' });
    if (joinedUntil > b) bands.push({ from: b, to: joinedUntil, label: 'joined', color: '#e8f1ff' });
    if (foldEpoch !== undefined && foldEpoch < E) bands.push({ from: foldEpoch, to: E, label: 'folded', color: '#e6f6ea' });
    if (foldEpoch !== undefined) markers.push({ x: foldEpoch, label: 'fold' });
  }
  const frame = { xRange: [0, E] as [number, number], integerX: true, bands, markers };

  const lossChart = lineChart([{ name: 'training loss (per logged step)', color: PALETTE[0], points: steps.map((r) => [x(r), num(r.loss) ?? NaN]) }], {
    ...frame,
    title: 'Training loss',
    xLabel: 'epoch',
    yLabel: config.distill ? 'loss (distillation + labels)' : 'cross-entropy',
  });
  const lrChart = lineChart([{ name: 'learning rate', color: PALETTE[4], points: steps.map((r) => [x(r), num(r.lr) ?? NaN]) }], { ...frame, title: 'Learning rate', xLabel: 'epoch', yLabel: 'learning rate', yRange: [0, Math.max(config.lr, extent(steps.map((r) => num(r.lr) ?? 0))[1])] });
  const atStart = start ? [[0, 100 * (start.top1 as number)] as [number, number]] : [];
  const atStart5 = start && num(start.top5) !== undefined ? [[0, 100 * (start.top5 as number)] as [number, number]] : [];
  const top1Series: LineSeries[] = [{ name: 'top-1 (test)', color: PALETTE[1], dots: true, points: [...atStart, ...epochs.map((e) => [e.epoch!, 100 * (e.top1 as number)] as [number, number])] }];
  if (shrunk && num(shrunk.teacher_top1) !== undefined) top1Series.push({ name: `teacher (${shrunk.teacher_depth} layers)`, color: '#111', dashed: true, points: [[0, 100 * (shrunk.teacher_top1 as number)], [E, 100 * (shrunk.teacher_top1 as number)]] });
  const top1Chart = lineChart(top1Series, { ...frame, title: 'Test top-1 per epoch', xLabel: 'epoch', yLabel: 'top-1 (%)' });
  const top5 = [...atStart5, ...epochs.filter((e) => num(e.top5) !== undefined).map((e) => [e.epoch!, 100 * (e.top5 as number)] as [number, number])];
  const top5Chart = lineChart([{ name: 'top-5 (test)', color: PALETTE[2], dots: true, points: top5 }], { ...frame, title: 'Test top-5 per epoch', xLabel: 'epoch', yLabel: 'top-5 (%)' });
  const L = branched ? cfg.depth / k : 0;
  const joinPoints = steps.map((r) => ({ x: x(r), attn: r.attn as number[] | undefined, ffn: r.ffn as number[] | undefined }));
  const joinChart = branched
    ? lineChart(
        [
          ...joinSeries('attn', joinPoints.map((p) => ({ x: p.x, c: p.attn })), L, (i) => PALETTE[(2 * i) % PALETTE.length]),
          ...joinSeries('ffn', joinPoints.map((p) => ({ x: p.x, c: p.ffn })), L, (i) => PALETTE[(2 * i + 3) % PALETTE.length]),
        ],
        { ...frame, title: 'Join coefficients (0: the deep model, 1: joined)', xLabel: 'epoch', yLabel: 'coefficient', yRange: [0, 1] },
      )
    : '';

  // What was trained, and where it ended.
  const folded = branched ? foldedConfig(cfg, k) : undefined;
  const what = config.shrink
    ? `shrink (${config.shrink.method === 'drop' ? 'keep layers' : 'join + fold'}) of ${config.shrink.teacher} to ${config.shrink.depth} layers`
    : branched
      ? `branched training, ${k} branches per block, join ${config.join.mode} (${config.join.shape}, epochs ${(config.join.start * E).toFixed(2).replace(/\.00$/, '')}-${(config.join.end * E).toFixed(2).replace(/\.00$/, '')})`
      : `plain training of a ${cfg.depth}-layer ViT`;
  const seconds = epochs.reduce((a, e) => a + (num(e.seconds) ?? 0), 0);
  const status = nan ? `stopped: non-finite loss in epoch ${(num(nan.epoch) ?? 0) + 1}, step ${(num(nan.step) ?? 0) + 1}` : finished ? 'finished' : `in progress: ${epochs.length} of ${E} epochs logged`;
  const facts: [string, string][] = [
    ['run', `${esc(opts.runDir ? resolve(opts.runDir) : '')}`],
    ['what', esc(what)],
    ['status', esc(status)],
    ['model', esc(`${shape(cfg)}, width ${cfg.embed_dim}, ${cfg.img_size}x${cfg.img_size}/${cfg.patch_size}, ${cfg.num_classes} classes`)],
    ['data', esc(`${config.data.kind}${config.data.limitTrain ? `, first ${config.data.limitTrain.toLocaleString('en-US')} training images` : ''}, batch ${config.batch}, ${E} epochs, lr ${config.lr}`)],
    ['top-1', `${start ? `${pct(start.top1)} at the start → ` : ''}<strong>${pct(last?.top1 ?? shrunk?.top1)}</strong>${last ? ` after epoch ${num(last.epoch) ?? '–'}` : ''}${num(last?.top5) !== undefined ? ` (top-5 ${pct(last!.top5)})` : ''}${shrunk ? `; teacher ${pct(shrunk.teacher_top1)}, instant fold ${pct(shrunk.instant_top1)}` : ''}`],
    ['training time', `${seconds.toFixed(0)} s in ${epochs.length} epochs`],
  ];
  if (config.distill && !instant) facts.push(['distillation', esc(`from ${config.distill.teacher} (frozen): alpha ${config.distill.alpha}, temperature ${config.distill.temperature}${config.distill.hidden ? `, hidden-state matching beta ${config.distill.hidden}` : ''}`)]);
  // The fold's check as logged when it happened: at the switch to the folded graph, else at the end.
  const verify = sw
    ? { verify_max_rel: sw.verifyMaxRel, agreement: sw.agreement, top1_joined: sw.joinedTop1, top1_folded: sw.foldedTop1, folded_at_epoch: sw.epoch }
    : foldRec;
  const verifyHtml = instant
    ? `<p>An instant fold: the deep model folded as it is, without training (top-1 ${pct(shrunk!.top1 ?? shrunk!.instant_top1)}, teacher ${pct(shrunk!.teacher_top1)}).</p>`
    : verify
      ? `<p>Folded at epoch ${num(verify.folded_at_epoch) ?? '–'}: the joined model and its fold, run in float64 on test images, differ by at most <strong>${(num(verify.verify_max_rel) ?? NaN).toExponential(1)}</strong> (relative logit error); their predictions agree on <strong>${pct(verify.agreement)}</strong> of the test images (joined ${pct(verify.top1_joined)}, folded ${pct(verify.top1_folded)}).${foldRec && foldEpoch! < E ? ` Training continued on the folded graph (equal, and faster) to epoch ${E}: final top-1 ${pct(foldRec.top1_folded)}.` : ''}${foldRec ? ` File: <code>${esc(String(foldRec.path))}</code>.` : ''}</p>`
      : `<p>${branched ? 'Not folded yet: the fold happens once every join coefficient is 1.' : 'A plain run: nothing to fold.'}</p>`;

  const sizeRows = [[`${folded ? 'deep' : 'model'} (${cfg.depth} layers)`, cfg] as const, ...(folded ? [[`fold (${folded.depth} layers)`, folded] as const] : [])];
  const lat = opts.latency;
  const latencyFor = (depth: number, precision: string) => lat?.rows.find((r) => r.depth === depth && r.precision === precision);
  const latCell = (depth: number, precision: string) => {
    const r = latencyFor(depth, precision);
    return r ? `${r.medianMs.toFixed(2)} ms${r.ratio !== undefined ? ` (${r.ratio.toFixed(2)}x)` : ''}` : '–';
  };
  const sizeTable = `<table><tr><th></th><th>shape</th><th>parameters</th><th>MFLOP / image</th><th>fp32 file</th><th>latency fp32</th><th>latency int8</th></tr>
${sizeRows.map(([name, c]) => `<tr><td>${name}</td><td>${esc(shape(c))}</td><td>${count(params(c))}</td><td>${(flopsPerImage(c).total / 1e6).toFixed(1)}</td><td>${(params(c) * 4 / 2 ** 20).toFixed(1)} MiB</td><td>${latCell(c.depth, 'fp32')}</td><td>${latCell(c.depth, 'int8')}</td></tr>`).join('\n')}
</table>
<p class="note">${lat ? esc(`Latency: ONNX exports in onnxruntime-node, batch ${lat.batch}, ${lat.threads} threads, median of interleaved rounds; ratio to the deep fp32 model; ${lat.machine}.`) : `Not timed yet: <code>vitfold report ${esc(opts.runDir ?? 'RUN_DIR')} --bench</code> times ${folded ? 'the deep model and its fold' : 'the model'} (fp32 and int8) on this machine.`}${folded ? ' The fold keeps the FLOPs: it is faster because it is shallower.' : ''}</p>`;

  const epochRows = epochs
    .map((e) => `<tr><td>${num(e.epoch) ?? '–'}</td><td>${(num(e.train_loss) ?? NaN).toFixed(4)}</td><td>${pct(e.top1)}</td><td>${pct(e.top5)}</td><td>${Array.isArray(e.attn) && (e.attn as number[]).length ? (e.attn as number[]).map((c) => c.toFixed(2)).join(', ') : '–'}</td><td>${Array.isArray(e.ffn) && (e.ffn as number[]).length ? (e.ffn as number[]).map((c) => c.toFixed(2)).join(', ') : '–'}</td><td>${(num(e.seconds) ?? NaN).toFixed(1)}</td><td>${(num(e.img_per_s) ?? NaN).toFixed(0)}</td></tr>`)
    .join('\n');
  const command = Array.isArray(start?.command) ? (start!.command as string[]).map((a) => (/^[\w./:=,@+-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ') : '(not recorded in this log)';

  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vitfold run report${opts.runDir ? `: ${esc(basename(resolve(opts.runDir)))}` : ''}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;max-width:1180px;margin:24px auto;padding:0 16px;background:#f6f7f9}
h1{font-size:22px;margin:0 0 12px}h2{font-size:16px;margin:26px 0 8px}
.panel{background:#fff;border:1px solid #e4e7ec;border-radius:10px;padding:14px 18px;margin-bottom:14px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0}dt{color:#667085}dd{margin:0}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:14px}.charts>div{background:#fff;border:1px solid #e4e7ec;border-radius:10px;padding:6px}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #e4e7ec;padding:4px 10px;text-align:right}td:first-child,th:first-child{text-align:left}
.note{color:#667085;font-size:13px}pre{background:#fff;border:1px solid #e4e7ec;padding:10px;overflow:auto}code{font-size:13px}summary{cursor:pointer;color:#2f6fed}
</style>
</head><body>
<h1>vitfold run report</h1>
<div class="panel"><dl>
${facts.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join('\n')}
</dl></div>
${instant ? '' : `<div class="charts">
<div>${top1Chart}</div>
<div>${top5Chart}</div>
<div>${lossChart}</div>
${joinChart ? `<div>${joinChart}</div>` : ''}
<div>${lrChart}</div>
</div>`}
<h2>The fold</h2>
<div class="panel">${verifyHtml}</div>
<h2>Deep model and fold</h2>
<div class="panel">${sizeTable}</div>
<h2>Epochs</h2>
<table><tr><th>epoch</th><th>train loss</th><th>top-1</th><th>top-5</th><th>attention join</th><th>FFN join</th><th>seconds</th><th>images/s</th></tr>
${epochRows}
</table>
<h2>Command and configuration</h2>
<details><summary>show</summary>
<pre>${esc(command)}</pre>
<pre>${esc(JSON.stringify(config, null, 2))}</pre>
</details>
</body></html>
`;
}

export const isRunDir = (dir: string) => existsSync(join(dir, 'config.json')) && existsSync(join(dir, 'log.jsonl'));

/** Rebuilds runDir/report.html from its config.json, log.jsonl and latency.json (if timed). */
export function writeReport(runDir: string): string {
  const config = JSON.parse(readFileSync(join(runDir, 'config.json'), 'utf8')) as RunConfig;
  const records = readRunLog(runDir) as LogRecord[];
  const latencyPath = join(runDir, LATENCY_FILE);
  let latency: RunLatency | undefined;
  try {
    latency = existsSync(latencyPath) ? (JSON.parse(readFileSync(latencyPath, 'utf8')) as RunLatency) : undefined;
  } catch {
    latency = undefined; // a damaged latency.json: the report shows no latency rather than failing
  }
  const path = join(runDir, 'report.html');
  writeFileAtomic(path, new TextEncoder().encode(reportHtml(config, records, { runDir, latency })));
  return path;
}
