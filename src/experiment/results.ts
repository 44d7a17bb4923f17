// An experiment's results: per-row mean and sample std over seeds, each model shape's latency
// (its fp32 ONNX export in onnxruntime-node, measured in one alternating run), and the files a
// reader gets: <name>.json (every run, so anyone can recompute the means), <name>.md, <name>.svg.

import { PALETTE, scatterChart, type ScatterPoint } from '../chart/svg.js';
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

/**
 * One row of a results table: top-1 mean and std over seeds, training seconds, images seen,
 * latency.
 */
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

/**
 * What an experiment writes as NAME.json: every run, the per-row summaries, the teacher, the
 * machine and the latency method.
 */
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

/**
 * Means and standard deviations over seeds per row, with each model timed (interleaved, in
 * onnxruntime-node) unless latencyOpts is null.
 */
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

/** The results as a markdown table with its notes (machine, latency method). */
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

/**
 * Top-1 (mean, whiskers ± std) against latency: one colour per kind of row (its label), each
 * point marked with its depth, the deep model as a black square.
 */
export function resultsSvg(r: ExperimentResults): string {
  const rows = r.rows.filter((row) => row.latencyMs !== undefined);
  const kinds = [...new Set(rows.map((row) => row.label))];
  const color = (label: string) => PALETTE[kinds.indexOf(label) % PALETTE.length];
  const deep = r.teacher?.latencyMs !== undefined ? r.teacher : undefined;
  const points: ScatterPoint[] = [
    ...(deep ? [{ x: deep.latencyMs!, y: 100 * deep.top1, label: `${deep.shape.split(' ')[0]}L deep`, color: '#000', square: true }] : []),
    ...rows.map((row) => ({ x: row.latencyMs!, y: 100 * row.top1Mean, err: 100 * row.top1Std, label: `${row.depth}L`, color: color(row.label) })),
  ];
  const l = r.latency;
  return scatterChart(points, {
    title: r.title,
    subtitle: `top-1 (mean over seeds, whiskers ± std) against latency; points labelled with their depth; ${r.machine}`,
    xLabel: `latency (ms${l ? `, batch ${l.batch}, ${l.threads} threads, fp32 ONNX in onnxruntime-node` : ''})`,
    yLabel: 'top-1 (%)',
    legend: [...(r.teacher ? [{ text: `the deep model (${r.teacher.shape}): ${(100 * r.teacher.top1).toFixed(2)}%`, color: '#000', square: true }] : []), ...kinds.map((k) => ({ text: k, color: color(k) }))],
  });
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
