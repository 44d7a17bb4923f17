// The text and SVG reports of a bench result (what `vitfold bench` prints and writes).

import { barChart, PALETTE } from '../chart/svg.js';
import { PEAK_N, precisionLabel, type BenchResult, type BenchRow } from './bench.js';

/** The result as an aligned text table with its notes. */
export function formatBench(r: BenchResult): string {
  const lines: string[] = [];
  const c = r.config;
  lines.push(`${c.img_size}x${c.img_size}/${c.patch_size}, width ${c.embed_dim}, ${c.num_heads} heads, ${c.depth} layers; node ${r.machine.node}`);
  lines.push(`cpu ${r.machine.features.summary}; onnxruntime int8 pair sums ${r.machine.int8PairsSaturate ? 'saturate at int16 (no VNNI)' : 'exact'}`);
  if (Object.keys(r.peakGflops).length) {
    lines.push(`fp32 matmul peak (ORT, ${PEAK_N}^3 MatMul, fastest of the same rounds): ${Object.entries(r.peakGflops).map(([t, g]) => `${g.toFixed(1)} GFLOP/s at ${t} thread${t === '1' ? '' : 's'}`).join(', ')}`);
  }
  if (r.rows.some((x) => x.runtime === 'node')) {
    lines.push(r.spin ? "onnxruntime-node: spin-waiting on (ORT's default), idle until the process is quiet after each session's runs" : 'onnxruntime-node: spin-waiting off (--no-spin)');
  }
  lines.push(`ratio = median latency / ${r.baseline} (same runtime, batch, threads); %peak = matrix-product FLOPs per second at the median / fp32 peak`);
  const head = ['runtime', 'model', 'prec', 'batch', 'thr', 'median ms', 'min', 'max', 'img/s', 'ratio', '%peak', 'RSS MiB'];
  const body = r.rows.map((x) => [
    x.runtime,
    `${x.source} ${x.depth}L`,
    precisionLabel(x),
    String(x.batch),
    String(x.threads),
    x.medianMs.toFixed(2),
    x.minMs.toFixed(2),
    x.maxMs.toFixed(2),
    x.imagesPerSec.toFixed(1),
    x.ratio !== undefined ? `${x.ratio.toFixed(2)}x` : '',
    x.peakFraction !== undefined && x.precision === 'fp32' ? `${(100 * x.peakFraction).toFixed(0)}%` : '',
    x.peakRssMiB !== undefined ? x.peakRssMiB.toFixed(0) : '',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const fmt = (cells: string[]) => cells.map((s, i) => (i < 3 ? s.padEnd(widths[i]) : s.padStart(widths[i]))).join('  ');
  lines.push(fmt(head), ...body.map(fmt));
  if (r.rssFloorMiB !== undefined) lines.push(`RSS: peak of a process running that model alone (node + onnxruntime with no model: ${r.rssFloorMiB.toFixed(0)} MiB)`);
  for (const n of r.notes) lines.push(`note: ${n}`);
  return lines.join('\n');
}

/** Horizontal bars of median latency with min-max whiskers, one group per runtime/batch/threads. */
export function benchSvg(r: BenchResult): string {
  const groups = new Map<string, BenchRow[]>();
  for (const x of r.rows) {
    const key = `${x.runtime === 'pytorch' ? 'node' : x.runtime}, batch ${x.batch}, ${x.threads} thread${x.threads === 1 ? '' : 's'}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key)!.push(x);
  }
  const colors = { fp32: PALETTE[0], fp16: PALETTE[2], int8: PALETTE[3] };
  const color = (x: BenchRow) => (x.source === 'vitfold export' ? colors[x.precision] : '#999');
  return barChart(
    [...groups].map(([title, rows]) => ({
      title,
      bars: rows.map((x) => ({ label: `${x.source} ${x.depth}L ${precisionLabel(x)}`, value: x.medianMs, lo: x.minMs, hi: x.maxMs, color: color(x), note: `${x.medianMs.toFixed(2)}${x.ratio !== undefined ? ` (${x.ratio.toFixed(2)}x)` : ''}` })),
    })),
    {
      title: `vitfold bench: median latency, whiskers min-max; ${r.baseline} is the baseline`,
      subtitle: `${r.config.img_size}x${r.config.img_size}/${r.config.patch_size}, width ${r.config.embed_dim}, ${r.config.depth} layers; ${r.machine.cpu}`,
      xLabel: 'latency per batch (ms)',
      legend: [...Object.entries(colors).map(([p, c]) => ({ text: `vitfold ${p}`, color: c })), { text: 'peers (torch export, PyTorch eager)', color: '#999' }],
    },
  );
}
