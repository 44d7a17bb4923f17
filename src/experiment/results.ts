// An experiment's results: per-row mean and sample std over seeds, each model shape's latency
// (its fp32 ONNX export in onnxruntime-node, measured in one alternating run), and the files a
// reader gets: <name>.json (every run, so anyone can recompute the means), <name>.md, <name>.svg.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { paramCount } from '../core/params.js';
import type { ViTConfig } from '../core/config.js';
import { cpuFeatures } from '../deploy/cpu.js';
import { exportModel } from '../deploy/export.js';
import { loadModel, writeFileAtomic } from '../io.js';
import { Session } from '../runtime/ort.js';
import type { ExperimentRuns, RunRecord } from './harness.js';
import type { ExperimentSpec } from './spec.js';

export interface RowSummary {
  id: string;
  label: string;
  /** e.g. "3 layers, 12 heads, MLP 768" */
  shape: string;
  depth: number;
  n: number;
  top1Mean: number;
  /** Sample standard deviation over seeds (n - 1); 0 for one run. */
  top1Std: number;
  top1: number[];
  trainSeconds: number;
  wallSeconds: number;
  imagesSeen: number;
  params: number;
  latencyMs?: number;
}

export interface ExperimentResults {
  name: string;
  title: string;
  machine: string;
  date: string;
  teacher?: { top1: number; shape: string; trainSeconds: number; imagesSeen: number; latencyMs?: number };
  rows: RowSummary[];
  latency?: { batch: number; threads: number; rounds: number; runsPerRound: number };
  runs: RunRecord[];
}

export function shapeOf(c: ViTConfig): string {
  return `${c.depth} layers, ${c.num_heads} heads, MLP ${c.mlp_hidden}`;
}

function meanStd(xs: number[]): [number, number] {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  const v = xs.length > 1 ? xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1) : 0;
  return [m, Math.sqrt(v)];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * Batch latency (ms, median over rounds of per-round medians) of each model file's fp32 export,
 * the models alternating round by round so that the machine's drift hits them alike.
 */
export async function measureLatency(models: Map<string, string>, opts: { batch: number; threads: number; rounds: number; runsPerRound: number }): Promise<Map<string, number>> {
  const sessions = new Map<string, { session: Session; x: Float32Array; shape: number[] }>();
  try {
    for (const [key, path] of models) {
      const model = loadModel(path);
      const { bytes } = await exportModel(model, { precision: 'fp32' });
      const c = model.config;
      const shape = [opts.batch, c.in_chans, c.img_size, c.img_size];
      const x = Float32Array.from({ length: shape.reduce((a, b) => a * b) }, (_, i) => Math.sin(0.37 * i));
      // Pool threads spin-wait (onnxruntime's default): the models are timed one at a time, as a
      // deployed model runs.
      sessions.set(key, { session: await Session.create(bytes, { threads: opts.threads, spinning: true }), x, shape });
    }
    const perRound = new Map<string, number[]>([...sessions.keys()].map((k) => [k, []]));
    for (let r = 0; r < opts.rounds; r++) {
      for (const [key, s] of sessions) {
        const feed = { x: { shape: s.shape, data: s.x } };
        for (let i = 0; i < 5; i++) await s.session.run(feed);
        const ts: number[] = [];
        for (let i = 0; i < opts.runsPerRound; i++) {
          const t0 = performance.now();
          await s.session.run(feed);
          ts.push(performance.now() - t0);
        }
        perRound.get(key)!.push(median(ts));
      }
    }
    return new Map([...perRound].map(([k, v]) => [k, median(v)]));
  } finally {
    for (const s of sessions.values()) await s.session.release();
  }
}

export async function summarize(spec: ExperimentSpec, runs: ExperimentRuns, latencyOpts: { batch: number; threads: number; rounds: number; runsPerRound: number } | null): Promise<ExperimentResults> {
  const rows: RowSummary[] = [];
  for (const row of spec.rows) {
    const rs = runs.runs.filter((r) => r.row === row.id);
    if (!rs.length) continue;
    const top1 = rs.map((r) => r.top1);
    const [m, s] = meanStd(top1);
    const avg = (f: (r: RunRecord) => number) => rs.reduce((a, r) => a + f(r), 0) / rs.length;
    rows.push({
      id: row.id,
      label: row.label,
      shape: shapeOf(rs[0].config),
      depth: rs[0].config.depth,
      n: rs.length,
      top1Mean: m,
      top1Std: s,
      top1,
      trainSeconds: avg((r) => r.trainSeconds),
      wallSeconds: avg((r) => r.wallSeconds),
      imagesSeen: avg((r) => r.imagesSeen),
      params: paramCount(rs[0].config),
    });
  }
  const t = runs.teacher;
  const results: ExperimentResults = {
    name: spec.name,
    title: spec.title,
    machine: cpuFeatures().summary,
    date: new Date().toISOString().slice(0, 10),
    ...(t ? { teacher: { top1: t.top1, shape: shapeOf(t.config), trainSeconds: t.trainSeconds, imagesSeen: t.imagesSeen } } : {}),
    rows,
    runs: runs.runs,
  };
  if (latencyOpts) {
    // One model file per shape: the first run's (weights do not change the time).
    const models = new Map<string, string>();
    if (t) models.set(shapeOf(t.config), t.model);
    for (const r of runs.runs) if (!models.has(shapeOf(r.config))) models.set(shapeOf(r.config), r.model);
    const ms = await measureLatency(models, latencyOpts);
    for (const row of rows) row.latencyMs = ms.get(row.shape);
    if (results.teacher) results.teacher.latencyMs = ms.get(results.teacher.shape);
    results.latency = latencyOpts;
  }
  return results;
}

const pct = (x: number) => (100 * x).toFixed(2);

export function resultsMarkdown(r: ExperimentResults): string {
  const base = r.teacher?.latencyMs;
  const lat = (ms?: number) => (ms === undefined ? '-' : `${ms.toFixed(2)}${base ? ` (${(ms / base).toFixed(2)}x)` : ''}`);
  const k = (n: number) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : n >= 1e3 ? `${(n / 1e3).toFixed(0)} k` : String(Math.round(n)));
  const lines = [
    `**${r.title}**`,
    '',
    `| model (inference shape) | how | top-1 % (mean ± std) | top-1 per seed | train s | wall s | images seen | latency ms${base ? ' (x deep)' : ''} |`,
    '|---|---|---|---|---|---|---|---|',
  ];
  if (r.teacher) lines.push(`| ${r.teacher.shape} | the deep model (teacher) | ${pct(r.teacher.top1)} | 1 | ${r.teacher.trainSeconds.toFixed(0)} | - | ${k(r.teacher.imagesSeen)} | ${lat(r.teacher.latencyMs)} |`);
  for (const row of r.rows) {
    const acc = row.n > 1 ? `${pct(row.top1Mean)} ± ${pct(row.top1Std)}` : pct(row.top1Mean);
    lines.push(`| ${row.shape} | ${row.label} | ${acc} | ${row.top1.map(pct).join(', ')} | ${row.trainSeconds.toFixed(0)} | ${row.wallSeconds.toFixed(0)} | ${k(row.imagesSeen)} | ${lat(row.latencyMs)} |`);
  }
  lines.push('');
  const l = r.latency;
  lines.push(
    `Machine: ${r.machine}; ${r.date}.` +
      (l ? ` Latency: fp32 ONNX export in onnxruntime-node, batch ${l.batch}, ${l.threads} threads, median of ${l.rounds} alternating rounds of ${l.runsPerRound} runs.` : '') +
      ' train s: seconds in training steps (teacher forward included); wall s: the whole command (data, evaluation every epoch, fold checks); both means over seeds.',
  );
  return lines.join('\n') + '\n';
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Round tick values from at or below lo to at or above hi: steps of 1, 2 or 5 times a power of ten. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  const raw = (hi - lo) / Math.max(1, count);
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw)!;
  const out: number[] = [];
  const first = Math.floor(lo / step + 1e-9), last = Math.ceil(hi / step - 1e-9);
  for (let i = first; i <= last; i++) out.push(Number((i * step).toPrecision(12)));
  return out;
}

/**
 * Top-1 (mean, whiskers ± std) against latency: one colour per kind of row (its label), each
 * point marked with its depth, the deep model as a black square.
 */
export function resultsSvg(r: ExperimentResults): string {
  const rows = r.rows.filter((row) => row.latencyMs !== undefined);
  const kinds = [...new Set(rows.map((row) => row.label))];
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
  const color = (label: string) => colors[kinds.indexOf(label) % colors.length];
  const pts = [
    ...(r.teacher?.latencyMs !== undefined ? [{ x: r.teacher.latencyMs, y: 100 * r.teacher.top1, s: 0, mark: `${r.teacher.shape.split(' ')[0]}L deep`, color: '#000', deep: true }] : []),
    ...rows.map((row) => ({ x: row.latencyMs!, y: 100 * row.top1Mean, s: 100 * row.top1Std, mark: `${row.depth}L`, color: color(row.label), deep: false })),
  ];
  const W = 760, H = 430, L = 60, R = 20, T = 50, B = 50;
  const legendH = 16 * (kinds.length + (r.teacher ? 1 : 0)) + 10;
  const xs = niceTicks(0, Math.max(...pts.map((p) => p.x)) * 1.1);
  const yLo = Math.min(...pts.map((p) => p.y - p.s)), yHi = Math.max(...pts.map((p) => p.y + p.s));
  const ys = niceTicks(Math.floor(yLo - 1), Math.ceil(yHi + 1));
  const x0 = xs[0], x1 = xs[xs.length - 1], y0 = ys[0], y1 = ys[ys.length - 1];
  const px = (v: number) => L + ((v - x0) / (x1 - x0)) * (W - L - R);
  const py = (v: number) => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H + legendH}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="18" font-size="13" font-weight="bold">${esc(r.title)}</text>`,
    `<text x="10" y="32" fill="#555">top-1 (mean over seeds, whiskers ± std) against latency; points labelled with their depth; ${esc(r.machine)}</text>`,
  ];
  for (const v of xs) out.push(`<line x1="${px(v)}" x2="${px(v)}" y1="${T}" y2="${H - B}" stroke="#eee"/><text x="${px(v)}" y="${H - B + 14}" text-anchor="middle">${v}</text>`);
  for (const v of ys) out.push(`<line x1="${L}" x2="${W - R}" y1="${py(v)}" y2="${py(v)}" stroke="#eee"/><text x="${L - 6}" y="${py(v) + 4}" text-anchor="end">${v}</text>`);
  const l = r.latency;
  out.push(`<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">latency (ms${l ? `, batch ${l.batch}, ${l.threads} threads, fp32 ONNX in onnxruntime-node` : ''})</text>`);
  out.push(`<text x="14" y="${(T + H - B) / 2}" transform="rotate(-90 14 ${(T + H - B) / 2})" text-anchor="middle">top-1 (%)</text>`);
  for (const p of pts) {
    if (p.s > 0) out.push(`<line x1="${px(p.x)}" x2="${px(p.x)}" y1="${py(p.y - p.s)}" y2="${py(p.y + p.s)}" stroke="${p.color}" stroke-width="2"/>`);
    out.push(p.deep ? `<rect x="${px(p.x) - 5}" y="${py(p.y) - 5}" width="10" height="10" fill="#000"/>` : `<circle cx="${px(p.x)}" cy="${py(p.y)}" r="5" fill="${p.color}"/>`);
    out.push(`<text x="${px(p.x) + 8}" y="${py(p.y) + 4}" fill="${p.color}">${esc(p.mark)}</text>`);
  }
  const legend = [...(r.teacher ? [{ text: `the deep model (${r.teacher.shape}): ${(100 * r.teacher.top1).toFixed(2)}%`, color: '#000', deep: true }] : []), ...kinds.map((k) => ({ text: k, color: color(k), deep: false }))];
  legend.forEach((e, i) => {
    const ly = H + 8 + 16 * i;
    out.push(e.deep ? `<rect x="${L}" y="${ly - 8}" width="9" height="9" fill="#000"/>` : `<circle cx="${L + 4}" cy="${ly - 4}" r="4.5" fill="${e.color}"/>`);
    out.push(`<text x="${L + 14}" y="${ly}">${esc(e.text)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** Writes <dir>/<name>.json, .md and .svg; returns their paths. */
export function writeResults(r: ExperimentResults, dir: string): string[] {
  mkdirSync(dir, { recursive: true });
  const files: [string, string][] = [
    [join(dir, `${r.name}.json`), JSON.stringify(r, null, 2) + '\n'],
    [join(dir, `${r.name}.md`), resultsMarkdown(r)],
  ];
  if (r.latency) files.push([join(dir, `${r.name}.svg`), resultsSvg(r)]);
  for (const [p, text] of files) writeFileAtomic(p, new TextEncoder().encode(text));
  return files.map(([p]) => p);
}
