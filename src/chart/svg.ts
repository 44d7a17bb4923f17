// The one charting module: static SVG strings for the run report (line charts with phases and
// markers), `vitfold bench` (bars with whiskers) and the results tables (top-1 against latency).
// Axes always carry round ticks (multiples of 1, 2 or 5 times a power of ten) with their units.

export const PALETTE = ['#2f6fed', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

/** [min, max] of values, in a loop (spreading 10^5 values into Math.min overflows the stack). */
export function extent(values: Iterable<number>): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

export function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Round ticks covering [lo, hi]: about `count` steps of 1, 2 or 5 times a power of ten. */
export function niceTicks(lo: number, hi: number, count = 5, minStep = 0): number[] {
  if (!(hi > lo)) hi = lo + (lo === 0 ? 1 : Math.abs(lo) * 0.1);
  const raw = Math.max((hi - lo) / Math.max(1, count), minStep);
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw * (1 - 1e-9))!;
  const out: number[] = [];
  const first = Math.floor(lo / step + 1e-9);
  const last = Math.ceil(hi / step - 1e-9);
  for (let i = first; i <= last; i++) out.push(Number((i * step).toPrecision(12)));
  return out;
}

/** A tick label with as many decimals as the step needs (1e-4 steps and below in exponent form). */
export function tickLabel(v: number, ticks: number[]): string {
  const step = ticks.length > 1 ? Math.abs(ticks[1] - ticks[0]) : 1;
  if (v === 0) return '0';
  if (step < 1e-3) return v.toExponential(Math.max(0, Math.floor(Math.log10(Math.abs(v)) + 1e-9) - Math.floor(Math.log10(step) + 1e-9)));
  return v.toFixed(Math.max(0, -Math.floor(Math.log10(step) + 1e-9)));
}

export interface ChartFrame {
  title: string;
  xLabel: string;
  yLabel: string;
  width?: number;
  height?: number;
}

export interface LineSeries {
  name: string;
  color: string;
  points: [number, number][];
  dashed?: boolean;
  /** Dots on the points (epoch values); off for dense per-step curves. */
  dots?: boolean;
}

/** A shaded x-range with its name (a phase of training). */
export interface Band {
  from: number;
  to: number;
  label: string;
  color: string;
}

/** A vertical line at x with its name (an event, e.g. the fold). */
export interface Marker {
  x: number;
  label: string;
}

type LegendEntry = { text: string; color: string; dashed?: boolean; shape?: 'line' | 'square' | 'dot' };

function legend(entries: LegendEntry[], x: number, y: number, width: number): { svg: string[]; height: number } {
  const svg: string[] = [];
  let cx = x;
  let cy = y;
  for (const e of entries) {
    const w = 36 + 7 * e.text.length; // a generous average glyph width, so entries never overlap
    if (cx + w > x + width && cx > x) {
      cx = x;
      cy += 16;
    }
    svg.push(
      e.shape === 'square'
        ? `<rect x="${cx + 4}" y="${cy - 8}" width="9" height="9" fill="${e.color}"/>`
        : e.shape === 'dot'
          ? `<circle cx="${cx + 9}" cy="${cy - 4}" r="4.5" fill="${e.color}"/>`
          : `<line x1="${cx}" x2="${cx + 18}" y1="${cy - 4}" y2="${cy - 4}" stroke="${e.color}" stroke-width="2.2"${e.dashed ? ' stroke-dasharray="5,3"' : ''}/>`,
      `<text x="${cx + 23}" y="${cy}">${esc(e.text)}</text>`,
    );
    cx += w;
  }
  return { svg, height: entries.length ? cy - y + 16 : 0 };
}

/** Pixel positions of values on the plot box, from the first to the last tick of each axis. */
function scales(xs: number[], ys: number[], box: { L: number; T: number; R: number; B: number }) {
  const [x0, x1, y0, y1] = [xs[0], xs[xs.length - 1], ys[0], ys[ys.length - 1]];
  const px = (v: number) => box.L + ((v - x0) / (x1 - x0)) * (box.R - box.L);
  const py = (v: number) => box.B - ((v - y0) / (y1 - y0)) * (box.B - box.T);
  return { px, py, x0, x1 };
}

function axes(o: ChartFrame, xs: number[], ys: number[], px: (v: number) => number, py: (v: number) => number, box: { L: number; T: number; R: number; B: number }): string[] {
  const out: string[] = [];
  for (const v of ys) out.push(`<line x1="${box.L}" x2="${box.R}" y1="${py(v).toFixed(1)}" y2="${py(v).toFixed(1)}" stroke="#e8eaee"/><text class="tick-y" x="${box.L - 6}" y="${(py(v) + 4).toFixed(1)}" text-anchor="end">${tickLabel(v, ys)}</text>`);
  for (const v of xs) out.push(`<line x1="${px(v).toFixed(1)}" x2="${px(v).toFixed(1)}" y1="${box.B}" y2="${box.B + 4}" stroke="#888"/><text class="tick-x" x="${px(v).toFixed(1)}" y="${box.B + 16}" text-anchor="middle">${tickLabel(v, xs)}</text>`);
  out.push(`<rect x="${box.L}" y="${box.T}" width="${box.R - box.L}" height="${box.B - box.T}" fill="none" stroke="#b8bec9"/>`);
  out.push(`<text x="${(box.L + box.R) / 2}" y="${box.B + 32}" text-anchor="middle" fill="#444">${esc(o.xLabel)}</text>`);
  const my = (box.T + box.B) / 2;
  out.push(`<text x="13" y="${my}" transform="rotate(-90 13 ${my})" text-anchor="middle" fill="#444">${esc(o.yLabel)}</text>`);
  return out;
}

/** Lines over x, with shaded bands and vertical markers; the legend below the plot. */
export function lineChart(series: LineSeries[], o: ChartFrame & { yRange?: [number, number]; xRange?: [number, number]; bands?: Band[]; markers?: Marker[]; integerX?: boolean }): string {
  const W = o.width ?? 560;
  const H = o.height ?? 290;
  const box = { L: 62, T: 34, R: W - 18, B: H - 44 };
  const all = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  if (!all.length) return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="60" font-family="system-ui, sans-serif" font-size="12"><text x="10" y="30">${esc(o.title)}: no data yet</text></svg>`;
  const [xlo, xhi] = o.xRange ?? extent(all.map((p) => p[0]));
  const [ylo, yhi] = o.yRange ?? extent(all.map((p) => p[1]));
  const xs = niceTicks(xlo, xhi, 6, o.integerX ? 1 : 0);
  const ys = niceTicks(ylo, yhi, 5);
  const { px, py, x0, x1 } = scales(xs, ys, box);
  const lg = legend(series.map((s) => ({ text: s.name, color: s.color, dashed: s.dashed })), box.L, H + 4, box.R - box.L);
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H + lg.height + 6}" font-family="system-ui, sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${box.L}" y="20" font-size="14" font-weight="600">${esc(o.title)}</text>`,
  ];
  for (const b of o.bands ?? []) {
    const a = px(Math.max(b.from, x0));
    const z = px(Math.min(b.to, x1));
    if (z <= a) continue;
    out.push(`<rect class="band" x="${a.toFixed(1)}" y="${box.T}" width="${(z - a).toFixed(1)}" height="${box.B - box.T}" fill="${b.color}"/>`);
    if (z - a > 6.5 * b.label.length) out.push(`<text x="${((a + z) / 2).toFixed(1)}" y="${box.T + 13}" text-anchor="middle" font-size="11" fill="#555">${esc(b.label)}</text>`);
  }
  out.push(...axes(o, xs, ys, px, py, box));
  for (const s of series) {
    const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    if (!pts.length) continue;
    const d = pts.map(([x, y], k) => `${k ? 'L' : 'M'}${px(x).toFixed(1)},${py(y).toFixed(1)}`).join('');
    out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.8"${s.dashed ? ' stroke-dasharray="6,3"' : ''}/>`);
    if (s.dots || pts.length === 1) for (const [x, y] of pts) out.push(`<circle cx="${px(x).toFixed(1)}" cy="${py(y).toFixed(1)}" r="3" fill="${s.color}"/>`);
  }
  for (const m of o.markers ?? []) {
    const x = px(m.x).toFixed(1);
    out.push(`<line class="marker" data-x="${m.x}" x1="${x}" x2="${x}" y1="${box.T}" y2="${box.B}" stroke="#111" stroke-width="1.5" stroke-dasharray="4,3"/>`);
    out.push(`<text x="${(px(m.x) + 4).toFixed(1)}" y="${box.B - 6}" font-size="11" fill="#111">${esc(m.label)}</text>`);
  }
  out.push(...lg.svg, '</svg>');
  return out.join('\n');
}

export interface ScatterPoint {
  x: number;
  y: number;
  /** Whisker half-length in y (e.g. the std over seeds). */
  err?: number;
  label: string;
  color: string;
  square?: boolean;
}

/** Points with y whiskers and labels; x from 0. */
export function scatterChart(points: ScatterPoint[], o: ChartFrame & { subtitle?: string; legend: { text: string; color: string; square?: boolean }[] }): string {
  const W = o.width ?? 760;
  const H = o.height ?? 430;
  const box = { L: 62, T: 50, R: W - 20, B: H - 50 };
  const xs = niceTicks(0, Math.max(...points.map((p) => p.x)) * 1.1);
  const ys = niceTicks(Math.floor(Math.min(...points.map((p) => p.y - (p.err ?? 0))) - 1), Math.ceil(Math.max(...points.map((p) => p.y + (p.err ?? 0))) + 1));
  const { px, py } = scales(xs, ys, box);
  const lg = legend(o.legend.map((e) => ({ text: e.text, color: e.color, shape: e.square ? 'square' : 'dot' })), box.L, H + 4, box.R - box.L);
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H + lg.height + 6}" font-family="system-ui, sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="18" font-size="14" font-weight="600">${esc(o.title)}</text>`,
    ...(o.subtitle ? [`<text x="10" y="34" fill="#555">${esc(o.subtitle)}</text>`] : []),
    ...axes(o, xs, ys, px, py, box),
  ];
  for (const p of points) {
    if (p.err) out.push(`<line x1="${px(p.x).toFixed(1)}" x2="${px(p.x).toFixed(1)}" y1="${py(p.y - p.err).toFixed(1)}" y2="${py(p.y + p.err).toFixed(1)}" stroke="${p.color}" stroke-width="2"/>`);
    out.push(p.square ? `<rect x="${(px(p.x) - 5).toFixed(1)}" y="${(py(p.y) - 5).toFixed(1)}" width="10" height="10" fill="${p.color}"/>` : `<circle cx="${px(p.x).toFixed(1)}" cy="${py(p.y).toFixed(1)}" r="5" fill="${p.color}"/>`);
    out.push(`<text x="${(px(p.x) + 8).toFixed(1)}" y="${(py(p.y) + 4).toFixed(1)}" fill="${p.color}">${esc(p.label)}</text>`);
  }
  out.push(...lg.svg, '</svg>');
  return out.join('\n') + '\n';
}

export interface Bar {
  label: string;
  value: number;
  /** Whisker from lo to hi (e.g. min and max over runs). */
  lo?: number;
  hi?: number;
  color: string;
  /** Text after the bar (default: the value). */
  note?: string;
}

/** Horizontal bars in named groups, on one x axis from 0. */
export function barChart(groups: { title: string; bars: Bar[] }[], o: { title: string; subtitle?: string; xLabel: string; width?: number; legend?: { text: string; color: string }[] }): string {
  const W = o.width ?? 760;
  const L = 250;
  const R = W - 110;
  const barH = 16;
  const gap = 4;
  const groupH = 24;
  const top = o.subtitle ? 44 : 30;
  const bars = groups.flatMap((g) => g.bars);
  const xs = niceTicks(0, Math.max(...bars.map((b) => b.hi ?? b.value)) * 1.02, 6);
  const px = (v: number) => L + (v / xs[xs.length - 1]) * (R - L);
  let y = top;
  const body: string[] = [];
  for (const g of groups) {
    y += groupH;
    body.push(`<text x="10" y="${y - 7}" font-weight="600">${esc(g.title)}</text>`);
    for (const b of g.bars) {
      body.push(`<text x="${L - 6}" y="${y + barH - 4}" text-anchor="end">${esc(b.label)}</text>`);
      body.push(`<rect x="${L}" y="${y}" width="${(px(b.value) - L).toFixed(1)}" height="${barH}" fill="${b.color}"/>`);
      if (b.lo !== undefined && b.hi !== undefined) body.push(`<line x1="${px(b.lo).toFixed(1)}" x2="${px(b.hi).toFixed(1)}" y1="${y + barH / 2}" y2="${y + barH / 2}" stroke="#222"/>`);
      body.push(`<text x="${(px(b.hi ?? b.value) + 4).toFixed(1)}" y="${y + barH - 4}">${esc(b.note ?? String(b.value))}</text>`);
      y += barH + gap;
    }
  }
  const axisY = y + 4;
  for (const v of xs) body.push(`<line x1="${px(v).toFixed(1)}" x2="${px(v).toFixed(1)}" y1="${top + 8}" y2="${axisY}" stroke="#eceef2"/><text class="tick-x" x="${px(v).toFixed(1)}" y="${axisY + 14}" text-anchor="middle">${tickLabel(v, xs)}</text>`);
  body.push(`<text x="${(L + R) / 2}" y="${axisY + 30}" text-anchor="middle" fill="#444">${esc(o.xLabel)}</text>`);
  const lg = legend((o.legend ?? []).map((e) => ({ ...e, shape: 'square' as const })), L, axisY + 50, R - L);
  const height = axisY + 40 + lg.height;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" font-family="system-ui, sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="18" font-size="14" font-weight="600">${esc(o.title)}</text>`,
    ...(o.subtitle ? [`<text x="10" y="34" fill="#555">${esc(o.subtitle)}</text>`] : []),
    // gridlines first, so the bars sit on top
    ...body.filter((s) => s.startsWith('<line x1') && s.includes('#eceef2')),
    ...body.filter((s) => !(s.startsWith('<line x1') && s.includes('#eceef2'))),
    ...lg.svg,
    '</svg>',
  ].join('\n');
}
