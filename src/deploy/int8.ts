// int8 exports: weight quantization, the int8 emitters of an export graph, and the static check
// that no integer product of an exported graph can overflow on any CPU.
//
// Every int8 linear layer is DynamicQuantizeLinear(x) -> MatMulInteger -> Cast -> Mul: the
// activations become uint8 per tensor at run time (values 0..255 with a zero point), the
// weights are constant per output column. ONNX Runtime's x86 kernels for uint8 x int8 on CPUs
// without VNNI (AVX2, AVX-512 without VNNI) multiply with VPMADDUBSW, which adds the products
// of two adjacent k (2i, 2i+1) into a *saturating* int16 before widening. With uint8
// activations up to 255, a pair of same-sign weights whose magnitudes sum past 128 can leave
// the int16 range (255 * 129 = 32895 > 32767) and the sum is clipped: a wrong result on those
// CPUs only. VNNI (VPDPBUSD), AMX, ARM (UDOT/SDOT, widening multiplies) and onnxruntime-web's
// wasm kernels (16-bit widening, or relaxed dot products only where they do not saturate)
// compute every pair exactly.

import type { Params } from '../core/params.js';
import type { Dim, Graph, Initializer, Value } from '../graph/graph.js';
import type { HeadProductEmitter, LinearEmitter } from '../model/vit-graph.js';

/**
 * How int8 weights are stored:
 * - 'paired' (default): int8 per column, with the scale chosen so that within every pair of
 *   adjacent input rows (2i, 2i+1) two same-sign values sum to at most 128 in magnitude: the
 *   larger of max|w| / 127 and (largest same-sign pair sum) / 128. No pair sum can overflow
 *   int16, so every CPU computes the same exact integer products, at a resolution between 7
 *   and 8 bits (RMS logit error ~5% above 8-bit weights on the golden and DeiT-Tiny models).
 * - 'u8': uint8 weights with zero point 128 (the same 8-bit values as 'full'); ONNX Runtime
 *   runs its uint8 x uint8 kernels, exact everywhere but slower where VNNI would apply.
 * - 's7': int8 with |q| <= 63 (7-bit weights): no pair can overflow, half the resolution.
 * - 'full': int8 with |q| <= 127 and no pair limit. Exact on VNNI x86, ARM and wasm; on x86
 *   without VNNI its pair sums saturate (wrong logits). An explicit choice for VNNI targets.
 */
export const INT8_WEIGHTS = ['paired', 'u8', 's7', 'full'] as const;
export type Int8Weights = (typeof INT8_WEIGHTS)[number];
export const DEFAULT_INT8_WEIGHTS: Int8Weights = 'paired';

/** The largest |a0 w0 + a1 w1| a saturating int16 pair sum holds for uint8 a: 128 * 255 <= 32767. */
export const PAIR_LIMIT = 128;

export interface QuantizedMatrix {
  /** [K, N] row-major; uint8 (zero point 128) for 'u8'. */
  q: Int8Array | Uint8Array;
  /** [N]: w = scale * (q - zero point). */
  scale: Float32Array;
}

/**
 * Per-column symmetric quantization of a matrix [K, N] given element-wise by `at(k, n)`
 * (K is the contracted axis: MatMulInteger's B operand).
 */
export function quantizeColumns(at: (k: number, n: number) => number, K: number, N: number, mode: Int8Weights = DEFAULT_INT8_WEIGHTS): QuantizedMatrix {
  const levels = mode === 's7' ? 63 : 127;
  const q = new Int8Array(K * N);
  const scale = new Float32Array(N);
  const col = new Float64Array(K);
  const rounded = new Int8Array(K);
  for (let n = 0; n < N; n++) {
    let m = 0;
    for (let k = 0; k < K; k++) {
      col[k] = at(k, n);
      m = Math.max(m, Math.abs(col[k]));
    }
    if (m === 0) {
      scale[n] = 1;
      continue;
    }
    const lo = m / levels;
    let s = lo;
    if (mode === 'paired') {
      // The scale that keeps every same-sign pair within PAIR_LIMIT, if larger than max / 127.
      let pairMax = 0;
      for (let k = 0; k + 1 < K; k += 2) {
        const a = col[k];
        const b = col[k + 1];
        pairMax = Math.max(pairMax, Math.max(a, 0) + Math.max(b, 0), -(Math.min(a, 0) + Math.min(b, 0)));
      }
      s = Math.max(lo, pairMax / PAIR_LIMIT);
      pairedRound(col, K, s, rounded);
      for (let k = 0; k < K; k++) q[k * N + n] = rounded[k];
    } else {
      for (let k = 0; k < K; k++) q[k * N + n] = Math.round(col[k] / s);
    }
    scale[n] = s;
  }
  if (mode !== 'u8') return { q, scale };
  const u = new Uint8Array(q.length);
  for (let i = 0; i < q.length; i++) u[i] = q[i] + 128;
  return { q: u, scale };
}

/**
 * Rounds col / s to int8 with every same-sign pair (2i, 2i+1) at most PAIR_LIMIT in magnitude:
 * at a scale from the pair maxima only rounding can pass it (64.5 + 63.5 -> 65 + 64), and such a
 * pair is moved to the closest integer point on the bound.
 */
function pairedRound(col: Float64Array, K: number, s: number, out: Int8Array): void {
  for (let k = 0; k < K; k += 2) {
    const r0 = col[k] / s;
    let q0 = Math.max(-127, Math.min(127, Math.round(r0)));
    if (k + 1 === K) {
      out[k] = q0;
      break;
    }
    const r1 = col[k + 1] / s;
    let q1 = Math.max(-127, Math.min(127, Math.round(r1)));
    if (Math.sign(q0) === Math.sign(q1) && Math.abs(q0) + Math.abs(q1) > PAIR_LIMIT) {
      const a0 = Math.min(127, Math.max(PAIR_LIMIT - 127, Math.round((Math.abs(r0) - Math.abs(r1) + PAIR_LIMIT) / 2)));
      const sign = Math.sign(q0);
      q0 = sign * a0;
      q1 = sign * (PAIR_LIMIT - a0);
    }
    out[k] = q0;
    out[k + 1] = q1;
  }
}

/** Per-output-channel quantization of rows [r0, r1) of a weight [out, in], as B [in, r1 - r0]. */
export function quantizeRows(w: Float64Array, inp: number, rows: [number, number], mode: Int8Weights = DEFAULT_INT8_WEIGHTS): QuantizedMatrix {
  return quantizeColumns((i, c) => w[(rows[0] + c) * inp + i], inp, rows[1] - rows[0], mode);
}

/** A pair of int8 weights whose uint8 x int8 products can leave the int16 range. */
export interface PairOverflow {
  initializer: string;
  /** Index of the leading dims (batched B), the first k of the pair, and the column. */
  batch: number;
  k: number;
  n: number;
  values: [number, number];
}

/**
 * The pairs (2i, 2i+1) along the contracted axis (-2) of an int8 B [..., K, N] whose products
 * with uint8 activations in 0..255 can sum outside int16 (same-sign magnitudes above 128).
 */
export function pairOverflows(t: Pick<Initializer, 'name' | 'dims' | 'data'>): PairOverflow[] {
  const K = t.dims[t.dims.length - 2];
  const N = t.dims[t.dims.length - 1];
  const d = t.data as Int8Array;
  const found: PairOverflow[] = [];
  for (let b = 0; b * K * N < d.length; b++) {
    for (let k = 0; k + 1 < K; k += 2) {
      for (let n = 0; n < N; n++) {
        const v0 = d[(b * K + k) * N + n];
        const v1 = d[(b * K + k + 1) * N + n];
        const pos = Math.max(v0, 0) + Math.max(v1, 0);
        const neg = Math.min(v0, 0) + Math.min(v1, 0);
        if (pos > PAIR_LIMIT || neg < -PAIR_LIMIT) found.push({ initializer: t.name, batch: b, k, n, values: [v0, v1] });
      }
    }
  }
  return found;
}

/**
 * The static int8 check of a graph: for every MatMulInteger whose B is an int8 initializer,
 * the pairs that could overflow a saturating int16 pair sum on x86 without VNNI (empty when
 * every product is exact on every CPU). uint8 B operands run uint8 x uint8 kernels, which
 * widen to 16 bits before multiplying, and need no check.
 */
export function int8GraphOverflows(g: Pick<Graph, 'nodes' | 'initializers'>): PairOverflow[] {
  const inits = new Map(g.initializers.map((t) => [t.name, t]));
  const found: PairOverflow[] = [];
  for (const n of g.nodes) {
    if (n.op !== 'MatMulInteger') continue;
    const b = inits.get(n.inputs[1]);
    if (b && b.dtype === 'int8') found.push(...pairOverflows(b));
  }
  return found;
}

/**
 * The int8 emitters of an export: y = x Wq scaled, with Wq int8 (or uint8) and per-column
 * scales, as DynamicQuantizeLinear(x) -> MatMulInteger -> Cast -> Mul by (x scale * w scales).
 * Standard ONNX ops (any runtime), in the pattern ORT's MatMulIntegerToFloat /
 * DynamicQuantizeMatMul fusions recognise.
 */
export function int8Emitters(g: Graph, params: Params, mode: Int8Weights = DEFAULT_INT8_WEIGHTS): { linear: LinearEmitter; headProduct: HeadProductEmitter } {
  const wtype = mode === 'u8' ? 'uint8' : 'int8';
  const wzp = mode === 'u8' ? g.initializer(g.uniqueName('weight.zero_point'), 'uint8', [], Uint8Array.of(128)) : null;
  // One DynamicQuantizeLinear per activation: strided attention's q, k and v read the same x.
  const quantized = new Map<string, Value[]>();
  const product = (x: Value, wq: Value, ws: Value, outShape: Dim[]): Value => {
    let xqz = quantized.get(x.name);
    if (!xqz) {
      xqz = g.node('DynamicQuantizeLinear', [x], {}, [
        { dtype: 'uint8', shape: x.shape },
        { dtype: 'float32', shape: [] },
        { dtype: 'uint8', shape: [] },
      ]);
      quantized.set(x.name, xqz);
    }
    const [xq, xs, xzp] = xqz;
    const acc = g.node('MatMulInteger', wzp ? [xq, wq, xzp, wzp] : [xq, wq, xzp], {}, [{ dtype: 'int32', shape: outShape }])[0];
    return g.mul(g.cast(acc, 'float32'), g.mul(xs, ws));
  };
  const tagOf = (out: number, rows: [number, number]) => (rows[1] - rows[0] === out ? '' : `[${rows[0]}:${rows[1]}]`);
  return {
    // y = x W^T + b: x [R, in], W rows [r0, r1) of [out, in]
    linear: (x, { prefix, out, inp, rows }) =>
      g.scope(prefix, () => {
        const n = rows[1] - rows[0];
        const { q, scale } = quantizeRows(params.get(prefix + '.weight')!.data, inp, rows, mode);
        const tag = tagOf(out, rows);
        const wq = g.initializer(g.uniqueName(`weight${tag}.${wtype}`), wtype, [inp, n], q); // [in, n]
        const ws = g.initializer(g.uniqueName(`weight${tag}.scale`), 'float32', [n], scale); // [n]
        const bias = g.initializer(g.uniqueName(`bias${tag}`), 'float32', [n], Float32Array.from(params.get(prefix + '.bias')!.data.subarray(rows[0], rows[1])));
        return g.add(product(x, wq, ws, [x.shape[0], n]), bias); // [R, n]
      }),
    // HeadProductSpec: per head h, B_h = W_h [hd, in] (to 'in') or W_h^T [in, hd] (to 'out'),
    // quantized per column of B_h
    headProduct: (x, { prefix, out, inp, rows, heads: H, to }) =>
      g.scope(prefix, () => {
        const w = params.get(prefix + '.weight')!.data;
        const hd = (rows[1] - rows[0]) / H;
        const [K, N] = to === 'in' ? [hd, inp] : [inp, hd];
        const q = mode === 'u8' ? new Uint8Array(H * K * N) : new Int8Array(H * K * N); // [H, K, N]
        const scale = new Float32Array(H * N); // [H, 1, N]
        for (let h = 0; h < H; h++) {
          const row0 = rows[0] + h * hd;
          const at = to === 'in' ? (k: number, n: number) => w[(row0 + k) * inp + n] : (k: number, n: number) => w[(row0 + n) * inp + k];
          const block = quantizeColumns(at, K, N, mode);
          q.set(block.q, h * K * N);
          scale.set(block.scale, h * N);
        }
        const tag = `${tagOf(out, rows)}.heads${to === 'in' ? '' : 'T'}`;
        const wq = g.initializer(g.uniqueName(`weight${tag}.${wtype}`), wtype, [H, K, N], q);
        const ws = g.initializer(g.uniqueName(`weight${tag}.scale`), 'float32', [H, 1, N], scale);
        return product(x, wq, ws, [...x.shape.slice(0, -1), N]); // [B, H, 1, N]
      }),
  };
}
