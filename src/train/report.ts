// report.html of a run: self-contained HTML with inline SVG charts (training loss per step,
// top-1 per epoch, join coefficients over training), rebuilt from config.json and log.jsonl.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../io.js';
import { readRunLog } from './checkpoint.js';

interface Series {
  name: string;
  color: string;
  points: [number, number][];
  dashed?: boolean;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A line chart as an SVG string. */
export function lineChart(title: string, xLabel: string, series: Series[], opts: { yMin?: number; yMax?: number } = {}): string {
  const W = 560, H = 300, L = 56, R = 150, T = 30, B = 40;
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) return `<svg width="${W}" height="60"><text x="10" y="30">${esc(title)}: no data</text></svg>`;
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs) === x0 ? x0 + 1 : Math.max(...xs);
  const y0 = opts.yMin ?? Math.min(...ys), y1 = opts.yMax ?? (Math.max(...ys) === y0 ? y0 + 1 : Math.max(...ys));
  const px = (x: number) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const py = (y: number) => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
  const ticks = (a: number, b: number) => Array.from({ length: 5 }, (_, i) => a + ((b - a) * i) / 4);
  const fmt = (v: number) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(2));
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`,
    `<text x="${L}" y="18" font-size="13" font-weight="bold">${esc(title)}</text>`,
    `<rect x="${L}" y="${T}" width="${W - L - R}" height="${H - T - B}" fill="none" stroke="#999"/>`,
  ];
  for (const t of ticks(y0, y1)) parts.push(`<line x1="${L - 4}" x2="${W - R}" y1="${py(t)}" y2="${py(t)}" stroke="#eee"/><text x="${L - 6}" y="${py(t) + 4}" text-anchor="end">${fmt(t)}</text>`);
  for (const t of ticks(x0, x1)) parts.push(`<text x="${px(t)}" y="${H - B + 15}" text-anchor="middle">${fmt(t)}</text>`);
  parts.push(`<text x="${(L + W - R) / 2}" y="${H - 6}" text-anchor="middle">${esc(xLabel)}</text>`);
  series.forEach((s, i) => {
    if (!s.points.length) return;
    const d = s.points.map((p, k) => `${k ? 'L' : 'M'}${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join('');
    parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.6"${s.dashed ? ' stroke-dasharray="5,3"' : ''}/>`);
    if (s.points.length < 40) for (const p of s.points) parts.push(`<circle cx="${px(p[0])}" cy="${py(p[1])}" r="2.5" fill="${s.color}"/>`);
    parts.push(`<line x1="${W - R + 10}" x2="${W - R + 28}" y1="${T + 8 + 16 * i}" y2="${T + 8 + 16 * i}" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5,3"' : ''}/><text x="${W - R + 32}" y="${T + 12 + 16 * i}">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

interface LogRecord {
  event?: string;
  step?: number;
  epoch?: number;
  loss?: number;
  attn?: number[];
  ffn?: number[];
  top1?: number;
  train_loss?: number;
  [k: string]: unknown;
}

export function reportHtml(config: Record<string, unknown>, records: LogRecord[]): string {
  const steps = records.filter((r) => r.step !== undefined && r.event === undefined);
  const epochs = records.filter((r) => r.event === 'epoch');
  const foldRec = records.find((r) => r.event === 'fold');
  const maxStep = Math.max(1, ...steps.map((r) => r.step!));
  const perEpoch = epochs.length && steps.length ? maxStep / Math.max(...epochs.map((e) => e.epoch!)) : 1;
  const toEpoch = (step: number) => step / perEpoch;
  const loss: Series = { name: 'train loss', color: COLORS[0], points: steps.map((r) => [toEpoch(r.step!), r.loss!]) };
  const acc: Series[] = [
    { name: 'top-1 (test)', color: COLORS[1], points: epochs.map((e) => [e.epoch!, 100 * e.top1!]) },
  ];
  if (foldRec) acc.push({ name: 'folded top-1', color: COLORS[2], points: [[Math.max(...epochs.map((e) => e.epoch!)), 100 * (foldRec.top1_folded as number)]] });
  const blocks = steps.find((r) => r.attn)?.attn?.length ?? 0;
  const joinSeries: Series[] = [];
  // Steps without coefficients come after the switch to the folded graph: every coefficient is 1.
  for (let b = 0; b < blocks; b++) {
    joinSeries.push({ name: `attn a_${b}`, color: COLORS[b % COLORS.length], points: steps.map((r) => [toEpoch(r.step!), r.attn ? r.attn[b] : 1]) });
    joinSeries.push({ name: `ffn f_${b}`, color: COLORS[b % COLORS.length], dashed: true, points: steps.map((r) => [toEpoch(r.step!), r.ffn ? r.ffn[b] : 1]) });
  }
  const rows = epochs
    .map((e) => `<tr><td>${e.epoch}</td><td>${(e.train_loss as number).toFixed(4)}</td><td>${(100 * e.top1!).toFixed(2)}%</td><td>${(e.seconds as number).toFixed(1)}</td><td>${(e.img_per_s as number).toFixed(0)}</td></tr>`)
    .join('\n');
  const sw = records.find((r) => r.event === 'switch');
  const foldText = foldRec
    ? `<p>Folded model: <code>${esc(String(foldRec.path))}</code>; top-1 ${(100 * (foldRec.top1_folded as number)).toFixed(2)}%. ` +
      (sw ? `Training moved to the folded graph at epoch ${sw.epoch} (joined top-1 then ${(100 * (foldRec.top1_joined as number)).toFixed(2)}%); at that point ` : `Joined model top-1 ${(100 * (foldRec.top1_joined as number)).toFixed(2)}%; `) +
      `the fold's predictions agreed on ${(100 * (foldRec.agreement as number)).toFixed(2)}% of test images and its float64 max relative logit error was ${(foldRec.verify_max_rel as number).toExponential(2)}.</p>`
    : '<p>No fold yet (the run has not finished, or it trains the plain model).</p>';
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>vitfold run report</title>
<style>body{font-family:sans-serif;max-width:1200px;margin:20px auto;padding:0 12px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}pre{background:#f6f6f6;padding:8px;overflow:auto}.charts{display:flex;flex-wrap:wrap;gap:12px}</style>
</head><body>
<h1>vitfold run report</h1>
${foldText}
<div class="charts">
${lineChart('Training loss', 'epoch', [loss])}
${lineChart('Test top-1 (%)', 'epoch', acc)}
${blocks ? lineChart('Join coefficients', 'epoch', joinSeries, { yMin: 0, yMax: 1 }) : ''}
</div>
<h2>Epochs</h2>
<table><tr><th>epoch</th><th>train loss</th><th>top-1</th><th>seconds</th><th>images/s</th></tr>
${rows}
</table>
<h2>Configuration</h2>
<pre>${esc(JSON.stringify(config, null, 2))}</pre>
</body></html>
`;
}

/** Rebuilds runDir/report.html from its config.json and log.jsonl. */
export function writeReport(runDir: string): string {
  const config = JSON.parse(readFileSync(join(runDir, 'config.json'), 'utf8'));
  const records = readRunLog(runDir) as LogRecord[];
  const path = join(runDir, 'report.html');
  writeFileAtomic(path, new TextEncoder().encode(reportHtml(config, records)));
  return path;
}
