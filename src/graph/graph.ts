// A small typed builder for ONNX graphs, with the static shape tracking that autodiff needs.
//
// Shapes are tracked symbolically with one batch symbol: a dim is a number or `{ b: c }`,
// meaning c * B. That is enough for every graph vitfold builds (the batch appears in one dim,
// possibly merged with tokens as B*T) and lets the exported models keep a symbolic batch.
//
// Every op method infers its output shape and checks its inputs, so a wrong shape is an error
// at build time naming the op and the value, not a runtime failure inside ONNX Runtime.

import { toHalfArray } from '../core/half.js';

/** Default opset 18: LayerNormalization (17), ReduceMean with axes as an input (18). */
export const OPSET = 18;

export type ElemType = 'float32' | 'float64' | 'float16' | 'int64' | 'int32' | 'int8' | 'uint8' | 'bool';
export type FloatElem = 'float32' | 'float64' | 'float16';

/** ONNX TensorProto.DataType codes. */
export const ELEM_CODE: Record<ElemType, number> = { float32: 1, uint8: 2, int8: 3, int32: 6, int64: 7, bool: 9, float16: 10, float64: 11 };
export type Dim = number | { b: number };
export type Shape = Dim[];

export interface Value {
  readonly name: string;
  readonly dtype: ElemType;
  readonly shape: Shape;
}

/** Attribute values: integers and integer lists as numbers, floats wrapped with `float()`. */
export type AttrValue = number | number[] | string | { float: number } | { floats: number[] };

export interface GraphNode {
  op: string;
  domain: string;
  name: string;
  inputs: string[]; // '' for an omitted optional input
  outputs: string[];
  attrs: Record<string, AttrValue>;
}

export interface Initializer {
  name: string;
  dtype: ElemType;
  dims: number[];
  /** float16 as Uint16Array bit patterns. */
  data: Float32Array | Float64Array | BigInt64Array | Int32Array | Int8Array | Uint8Array | Uint16Array;
}

export function float(v: number): { float: number } {
  return { float: v };
}

export class GraphError extends Error {
  override name = 'GraphError';
}

// ---------------------------------------------------------------------------------------------
// dims

export const B: Dim = { b: 1 };

export function dimEq(a: Dim, b: Dim): boolean {
  return typeof a === 'number' ? a === b : typeof b !== 'number' && a.b === b.b;
}

export function shapeEq(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => dimEq(d, b[i]));
}

export function dimStr(d: Dim): string {
  return typeof d === 'number' ? String(d) : d.b === 1 ? 'B' : `${d.b}B`;
}

export function shapeStr(s: Shape): string {
  return `[${s.map(dimStr).join(', ')}]`;
}

/** Product of a shape as (constant factor, whether B appears). */
function volume(s: Shape): { c: number; hasB: boolean } {
  let c = 1;
  let hasB = false;
  for (const d of s) {
    if (typeof d === 'number') c *= d;
    else {
      if (hasB) throw new GraphError(`shape ${shapeStr(s)} uses the batch twice`);
      hasB = true;
      c *= d.b;
    }
  }
  return { c, hasB };
}

export function isStatic(s: Shape): s is number[] {
  return s.every((d) => typeof d === 'number');
}

/** Concrete dims for a given batch size. */
export function concreteShape(s: Shape, batch: number): number[] {
  return s.map((d) => (typeof d === 'number' ? d : d.b * batch));
}

export function broadcastShapes(a: Shape, b: Shape, what: string): Shape {
  const n = Math.max(a.length, b.length);
  const out: Shape = [];
  for (let i = 0; i < n; i++) {
    const da = i < n - a.length ? 1 : a[i - (n - a.length)];
    const db = i < n - b.length ? 1 : b[i - (n - b.length)];
    if (dimEq(da, db) || db === 1) out.push(da);
    else if (da === 1) out.push(db);
    else throw new GraphError(`${what}: shapes ${shapeStr(a)} and ${shapeStr(b)} do not broadcast`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

export interface GraphOptions {
  /** Element type of activations, parameters and float constants. */
  dtype: FloatElem;
  /** ONNX opset the graph targets (default OPSET): from 20 on, GELU is the standard op. */
  opset?: number;
  /** 'native': ONNX Erf/Gelu ops; 'rational': Cody's rational erf from primitive ops, for float64 (ORT has no float64 Erf kernel). */
  erf?: 'native' | 'rational';
}

export class Graph {
  readonly nodes: GraphNode[] = [];
  readonly inputs: Value[] = [];
  readonly outputs: Value[] = [];
  readonly initializers: Initializer[] = [];
  readonly dtype: FloatElem;
  readonly opset: number;
  readonly erfMode: 'native' | 'rational';
  /** Producer node of each value (absent for inputs and initializers). */
  readonly producer = new Map<string, GraphNode>();
  readonly values = new Map<string, Value>();
  private readonly scopes: string[] = [];
  private readonly counters = new Map<string, number>();
  private readonly constCache = new Map<string, Value>();
  /**
   * Values computed by a decomposition of one op (rational erf, GELU and LayerNorm in float64
   * graphs, the erf gate): autodiff applies that op's gradient rule from the outputs straight
   * to the inputs instead of differentiating the pieces.
   */
  readonly composites = new Map<string, { op: 'Erf' | 'Gelu' | 'ErfGate' | 'LayerNormalization'; inputs: Value[]; outputs: Value[] }>();

  constructor(readonly name: string, opts: GraphOptions) {
    this.dtype = opts.dtype;
    this.opset = opts.opset ?? OPSET;
    this.erfMode = opts.erf ?? (opts.dtype === 'float64' ? 'rational' : 'native');
  }

  /** Runs fn with `prefix` prepended to the names of the values it creates (e.g. blocks.3.attn). */
  scope<T>(prefix: string, fn: () => T): T {
    this.scopes.push(prefix);
    try {
      return fn();
    } finally {
      this.scopes.pop();
    }
  }

  uniqueName(base: string): string {
    const full = this.scopes.length ? `${this.scopes.join('.')}.${base}` : base;
    const n = this.counters.get(full) ?? 0;
    this.counters.set(full, n + 1);
    const name = n === 0 && !this.values.has(full) ? full : `${full}_${n}`;
    if (this.values.has(name)) return this.uniqueName(`${base}_`);
    return name;
  }

  private register(v: Value): Value {
    if (this.values.has(v.name)) throw new GraphError(`value name '${v.name}' is already used`);
    this.values.set(v.name, v);
    return v;
  }

  input(name: string, dtype: ElemType, shape: Shape): Value {
    const v = this.register({ name, dtype, shape });
    this.inputs.push(v);
    return v;
  }

  output(v: Value, name?: string): Value {
    const out = name && name !== v.name ? this.node1('Identity', [v], {}, v.dtype, v.shape, name) : v;
    this.outputs.push(out);
    return out;
  }

  initializer(name: string, dtype: ElemType, dims: number[], data: Initializer['data']): Value {
    const v = this.register({ name, dtype, shape: [...dims] });
    this.initializers.push({ name, dtype, dims: [...dims], data });
    return v;
  }

  /** A constant of the graph's float dtype (deduplicated by value). */
  constant(values: number[] | Float64Array | Float32Array, dims: number[], dtype: ElemType = this.dtype): Value {
    const small = values.length <= 16;
    const key = small ? `${dtype}|${dims.join(',')}|${Array.from(values).join(',')}` : '';
    if (small && this.constCache.has(key)) return this.constCache.get(key)!;
    let data: Initializer['data'];
    if (dtype === 'float32') data = Float32Array.from(values);
    else if (dtype === 'float64') data = Float64Array.from(values);
    else if (dtype === 'float16') data = toHalfArray(values);
    else if (dtype === 'int64') data = BigInt64Array.from(Array.from(values), (x) => BigInt(x));
    else data = Uint8Array.from(values);
    const v = this.initializer(this.uniqueName('const'), dtype, dims, data);
    if (small) this.constCache.set(key, v);
    return v;
  }

  scalar(x: number): Value {
    return this.constant([x], []);
  }

  ints(xs: number[]): Value {
    return this.constant(xs, [xs.length], 'int64');
  }

  /** Adds a node with explicitly given output types. Most callers use the op methods below. */
  node(op: string, inputs: (Value | null)[], attrs: Record<string, AttrValue>, outs: { dtype: ElemType; shape: Shape; name?: string }[], domain = ''): Value[] {
    const outputs = outs.map((o) => this.register({ name: o.name ?? this.uniqueName(op.toLowerCase()), dtype: o.dtype, shape: o.shape }));
    const n: GraphNode = {
      op,
      domain,
      name: `${outputs[0].name}/${op}`,
      inputs: inputs.map((v) => (v ? v.name : '')),
      outputs: outputs.map((o) => o.name),
      attrs,
    };
    this.nodes.push(n);
    for (const o of outputs) this.producer.set(o.name, n);
    return outputs;
  }

  private node1(op: string, inputs: (Value | null)[], attrs: Record<string, AttrValue>, dtype: ElemType, shape: Shape, name?: string, domain = ''): Value {
    return this.node(op, inputs, attrs, [{ dtype, shape, name }], domain)[0];
  }

  // ---- element-wise ------------------------------------------------------------------------

  private binary(op: string, a: Value, b: Value): Value {
    if (a.dtype !== b.dtype) throw new GraphError(`${op}: dtypes differ (${a.name}: ${a.dtype}, ${b.name}: ${b.dtype})`);
    return this.node1(op, [a, b], {}, a.dtype, broadcastShapes(a.shape, b.shape, `${op}(${a.name}, ${b.name})`));
  }

  add(a: Value, b: Value): Value {
    return this.binary('Add', a, b);
  }
  sub(a: Value, b: Value): Value {
    return this.binary('Sub', a, b);
  }
  mul(a: Value, b: Value): Value {
    return this.binary('Mul', a, b);
  }
  div(a: Value, b: Value): Value {
    return this.binary('Div', a, b);
  }
  /** a ** p for a constant exponent p. */
  pow(a: Value, p: number): Value {
    return this.binary('Pow', a, this.constant([p], [], a.dtype));
  }

  private unary(op: string, x: Value, attrs: Record<string, AttrValue> = {}, domain = ''): Value {
    return this.node1(op, [x], attrs, x.dtype, x.shape, undefined, domain);
  }

  neg(x: Value): Value {
    return this.unary('Neg', x);
  }
  exp(x: Value): Value {
    return this.unary('Exp', x);
  }
  sqrt(x: Value): Value {
    return this.unary('Sqrt', x);
  }
  tanh(x: Value): Value {
    return this.unary('Tanh', x);
  }
  abs(x: Value): Value {
    return this.unary('Abs', x);
  }
  identity(x: Value): Value {
    return this.unary('Identity', x);
  }

  erf(x: Value): Value {
    if (this.erfMode === 'native') return this.unary('Erf', x);
    const y = this.rationalErf(x);
    this.composites.set(y.name, { op: 'Erf', inputs: [x], outputs: [y] });
    return y;
  }

  /**
   * Exact (erf) GELU, x Phi(x), for inference graphs: one fused op (ONNX Gelu from opset 20,
   * else com.microsoft Gelu). Rational-erf graphs (float64): a composite that autodiff
   * differentiates with the Gelu rule.
   */
  gelu(x: Value): Value {
    if (this.erfMode === 'native') return this.node1('Gelu', [x], {}, x.dtype, x.shape, undefined, this.opset >= 20 ? '' : 'com.microsoft');
    const cdf = this.mul(this.add(this.rationalErf(this.mul(x, this.scalar(Math.SQRT1_2))), this.scalar(1)), this.scalar(0.5));
    const y = this.mul(x, cdf);
    this.composites.set(y.name, { op: 'Gelu', inputs: [x], outputs: [y] });
    return y;
  }

  /**
   * The erf gate u (1 + erf(u)) = sqrt 2 GELU(sqrt 2 u), GELU for training graphs: with the
   * 1/sqrt 2 scales folded into the neighbouring weights (model/vit-graph.ts) it takes three
   * passes over the activations, and its backward six, reusing the saved 1 + erf(u) (a
   * decomposed x Phi(x) took five and seven). A composite, so autodiff applies one rule.
   */
  erfGate(u: Value): Value {
    const onePlusErf = this.add(this.erf(u), this.scalar(1));
    const y = this.mul(u, onePlusErf);
    this.composites.set(y.name, { op: 'ErfGate', inputs: [u], outputs: [y, onePlusErf] });
    return y;
  }

  /**
   * A constant of ones (cached per shape): column sums as MatMul([1, n], x) (autodiff); the
   * scale of a unit-affine LayerNorm with [n], which the LayerNorm rule recognises with isOnes.
   */
  ones(dims: number[]): Value {
    const key = `ones|${this.dtype}|${dims.join(',')}`;
    let v = this.constCache.get(key);
    if (!v) {
      v = this.constant(new Float64Array(dims.reduce((a, b) => a * b, 1)).fill(1), dims);
      this.constCache.set(key, v);
    }
    return v;
  }

  /** Whether v is the cached constant ones(v.shape). */
  isOnes(v: Value): boolean {
    return isStatic(v.shape) && this.constCache.get(`ones|${this.dtype}|${v.shape.join(',')}`) === v;
  }

  /**
   * erf from primitive ops (Cody 1969, the same approximation as src/core/erf.ts, |rel err| <
   * 1e-15): lets float64 graphs run where ONNX Runtime has no float64 Erf kernel.
   */
  private rationalErf(x: Value): Value {
    const y = this.abs(x);
    const poly = (z: Value, num: number[], den: number[]) => {
      // (num[0] z^n + ... ) / (z^m + ...) evaluated by Horner: coefficients highest first.
      let n = this.scalar(num[0]);
      for (let i = 1; i < num.length; i++) n = this.add(this.mul(n, z), this.scalar(num[i]));
      let d = this.scalar(1);
      for (let i = 0; i < den.length; i++) d = this.add(this.mul(d, z), this.scalar(den[i]));
      return this.div(n, d);
    };
    // |x| <= 0.5: erf = x * R(x^2)
    const y2 = this.mul(x, x);
    const small = this.mul(x, poly(y2, [0.185777706184603153, 3.1611237438705656, 113.864154151050156, 377.485237685302021, 3209.37758913846947], [23.6012909523441209, 244.024637934444173, 1282.61652607737228, 2844.23683343917062]));
    // 0.5 < |x| <= 4: erfc = exp(-y^2) * R(y)
    const mid = this.mul(
      this.exp(this.neg(y2)),
      poly(y, [2.15311535474403846e-8, 0.564188496988670089, 8.88314979438837594, 66.1191906371416295, 298.635138197400131, 881.95222124176909, 1712.04761263407058, 2051.07837782607147, 1230.33935479799725], [15.7449261107098347, 117.693950891312499, 537.181101862009858, 1621.38957456669019, 3290.79923573345963, 4362.61909014324716, 3439.36767414372164, 1230.33935480374942]),
    );
    // |x| > 4: erfc = exp(-y^2) / y * (1/sqrt(pi) - R(1/y^2) / y^2)
    const inv2 = this.div(this.scalar(1), y2);
    const large = this.mul(
      this.div(this.exp(this.neg(y2)), y),
      this.sub(this.scalar(0.56418958354775628695), this.mul(inv2, poly(inv2, [0.0163153871373020978, 0.305326634961232344, 0.360344899949804439, 0.125781726111229246, 0.0160837851487422766, 6.58749161529837803e-4], [2.56852019228982242, 1.87295284992346047, 0.527905102951428412, 0.0605183413124413191, 0.00233520497626869185]))),
    );
    const signed = (erfcAbs: Value) => {
      const e = this.sub(this.scalar(1), erfcAbs);
      return this.where(this.less(x, this.scalar(0)), this.neg(e), e);
    };
    const safeLarge = this.where(this.greater(y, this.scalar(26.5)), this.scalar(0), large);
    return this.where(this.lessOrEqual(y, this.scalar(0.46875)), small, signed(this.where(this.lessOrEqual(y, this.scalar(4)), mid, safeLarge)));
  }

  private compare(op: 'Less' | 'Greater' | 'LessOrEqual', a: Value, b: Value): Value {
    return this.node1(op, [a, b], {}, 'bool', broadcastShapes(a.shape, b.shape, op));
  }
  less(a: Value, b: Value): Value {
    return this.compare('Less', a, b);
  }
  greater(a: Value, b: Value): Value {
    return this.compare('Greater', a, b);
  }
  lessOrEqual(a: Value, b: Value): Value {
    return this.compare('LessOrEqual', a, b);
  }

  where(cond: Value, a: Value, b: Value): Value {
    const s = broadcastShapes(broadcastShapes(cond.shape, a.shape, 'Where'), b.shape, 'Where');
    return this.node1('Where', [cond, a, b], {}, a.dtype, s);
  }

  cast(x: Value, to: ElemType): Value {
    return this.node1('Cast', [x], { to: ELEM_CODE[to] }, to, x.shape);
  }

  // ---- linear algebra -----------------------------------------------------------------------

  /** Y = op(A) op(B) + C with 2-D A and B (alpha = beta = 1). */
  gemm(a: Value, b: Value, c: Value | null, opts: { transA?: boolean; transB?: boolean } = {}): Value {
    if (a.shape.length !== 2 || b.shape.length !== 2) throw new GraphError(`Gemm(${a.name}, ${b.name}): inputs must be 2-D, got ${shapeStr(a.shape)} and ${shapeStr(b.shape)}`);
    const [m, ka] = opts.transA ? [a.shape[1], a.shape[0]] : [a.shape[0], a.shape[1]];
    const [kb, n] = opts.transB ? [b.shape[1], b.shape[0]] : [b.shape[0], b.shape[1]];
    if (!dimEq(ka, kb)) throw new GraphError(`Gemm(${a.name} ${shapeStr(a.shape)}, ${b.name} ${shapeStr(b.shape)}): inner dims ${dimStr(ka)} and ${dimStr(kb)} differ`);
    const out: Shape = [m, n];
    if (c) broadcastShapes(out, c.shape, `Gemm bias ${c.name}`);
    const attrs: Record<string, AttrValue> = {};
    if (opts.transA) attrs.transA = 1;
    if (opts.transB) attrs.transB = 1;
    return this.node1('Gemm', c ? [a, b, c] : [a, b], attrs, a.dtype, out);
  }

  /** y = x W^T + b for x [R, in], W [out, in] (timm layout), b [out]. */
  linear(x: Value, w: Value, b: Value | null): Value {
    return this.gemm(x, w, b, { transB: true });
  }

  /** numpy-style batched matmul. */
  matmul(a: Value, b: Value): Value {
    if (a.shape.length < 2 || b.shape.length < 2) throw new GraphError(`MatMul(${a.name}, ${b.name}): inputs must be at least 2-D`);
    const [m, k1] = a.shape.slice(-2);
    const [k2, n] = b.shape.slice(-2);
    if (!dimEq(k1, k2)) throw new GraphError(`MatMul(${a.name} ${shapeStr(a.shape)}, ${b.name} ${shapeStr(b.shape)}): inner dims differ`);
    const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2), `MatMul(${a.name}, ${b.name})`);
    return this.node1('MatMul', [a, b], {}, a.dtype, [...batch, m, n]);
  }

  // ---- shape ops ----------------------------------------------------------------------------

  /** Reshape to `dims` (numbers, -1 for the one inferred dim, 0 to copy); B dims allowed. */
  reshape(x: Value, dims: Dim[]): Value {
    const out: Dim[] = dims.map((d, i) => (d === 0 ? x.shape[i] : d));
    const inf = out.findIndex((d) => d === -1);
    const vin = volume(x.shape);
    if (inf >= 0) {
      const rest = volume(out.filter((_, i) => i !== inf));
      if (vin.c % rest.c !== 0 || (rest.hasB && !vin.hasB)) throw new GraphError(`Reshape(${x.name} ${shapeStr(x.shape)}) to ${shapeStr(dims)}: sizes do not divide`);
      const c = vin.c / rest.c;
      out[inf] = vin.hasB && !rest.hasB ? { b: c } : c;
    }
    const vout = volume(out);
    if (vout.c !== vin.c || vout.hasB !== vin.hasB) throw new GraphError(`Reshape(${x.name} ${shapeStr(x.shape)}) to ${shapeStr(out)}: element counts differ`);
    // ONNX wants numbers: B dims become -1 (at most one) or 0 (same position, same dim).
    const onnxDims = dims.map((d, i) => {
      if (typeof d === 'number') return d;
      if (i < x.shape.length && dimEq(x.shape[i], d)) return 0;
      return -1;
    });
    if (onnxDims.filter((d) => d === -1).length > 1) throw new GraphError(`Reshape(${x.name}): more than one inferred dim`);
    return this.node1('Reshape', [x, this.ints(onnxDims)], {}, x.dtype, out);
  }

  /** Reshape x to the runtime shape of `like` (for gradients of values with a B dim). */
  reshapeLike(x: Value, like: Value): Value {
    if (isStatic(like.shape)) return this.reshape(x, like.shape);
    return this.node1('Reshape', [x, this.shapeOf(like)], {}, x.dtype, like.shape);
  }

  shapeOf(x: Value): Value {
    return this.node1('Shape', [x], {}, 'int64', [x.shape.length]);
  }

  /** Transpose; of a Transpose whose permutation this one undoes, the original value (no node). */
  transpose(x: Value, perm: number[]): Value {
    if (perm.length !== x.shape.length) throw new GraphError(`Transpose(${x.name}): perm ${perm} for rank ${x.shape.length}`);
    const src = this.producer.get(x.name);
    if (src?.op === 'Transpose') {
      const inner = src.attrs.perm as number[];
      if (perm.every((p, i) => inner[p] === i)) return this.values.get(src.inputs[0])!;
    }
    return this.node1('Transpose', [x], { perm }, x.dtype, perm.map((p) => x.shape[p]));
  }

  /**
   * The 2-D transpose [R, C] -> [C, R] as a rank-3 Transpose between two Reshapes. ORT's
   * GemmTransposeFusion folds a 2-D Transpose that feeds only Gemms back into transA/transB,
   * and a transA Gemm is the slow one (it copies A transposed inside MLAS; see autodiff's Gemm
   * rule). A rank-3 Transpose is not matched, so the transposed copy stays a separate op.
   */
  transposeMatrix(x: Value): Value {
    if (x.shape.length !== 2) throw new GraphError(`transposeMatrix(${x.name}): expected 2-D, got ${shapeStr(x.shape)}`);
    const [r, c] = x.shape;
    return this.reshape(this.transpose(this.reshape(x, [1, r, c]), [0, 2, 1]), [c, r]);
  }

  concat(xs: Value[], axis: number): Value {
    const r = xs[0].shape.length;
    const ax = axis < 0 ? axis + r : axis;
    const shape = [...xs[0].shape];
    let total: Dim = 0;
    for (const x of xs) {
      if (x.shape.length !== r || x.shape.some((d, i) => i !== ax && !dimEq(d, shape[i]))) {
        throw new GraphError(`Concat axis ${axis}: ${x.name} ${shapeStr(x.shape)} does not match ${shapeStr(xs[0].shape)}`);
      }
      const d = x.shape[ax];
      total = typeof total === 'number' && typeof d === 'number' ? total + d : { b: (typeof total === 'number' ? 0 : total.b) + (typeof d === 'number' ? 0 : d.b) };
    }
    shape[ax] = total;
    return this.node1('Concat', xs, { axis: ax }, xs[0].dtype, shape);
  }

  split(x: Value, axis: number, sizes: number[]): Value[] {
    const ax = axis < 0 ? axis + x.shape.length : axis;
    const d = x.shape[ax];
    if (typeof d !== 'number' || sizes.reduce((a, b) => a + b, 0) !== d) throw new GraphError(`Split(${x.name} ${shapeStr(x.shape)}) axis ${axis} into ${sizes}`);
    return this.node('Split', [x, this.ints(sizes)], { axis: ax }, sizes.map((s) => ({ dtype: x.dtype, shape: x.shape.map((dd, i) => (i === ax ? s : dd)) })));
  }

  /** Static slice [start, end) along one axis with a numeric dim. */
  slice(x: Value, axis: number, start: number, end: number): Value {
    const ax = axis < 0 ? axis + x.shape.length : axis;
    const d = x.shape[ax];
    if (typeof d !== 'number' || start < 0 || end > d || start >= end) throw new GraphError(`Slice(${x.name} ${shapeStr(x.shape)}) axis ${axis} [${start}, ${end})`);
    return this.node1('Slice', [x, this.ints([start]), this.ints([end]), this.ints([ax])], {}, x.dtype, x.shape.map((dd, i) => (i === ax ? end - start : dd)));
  }

  /** Gather with a constant scalar index (drops the axis) or index list. */
  gather(x: Value, indices: number | number[], axis: number): Value {
    const ax = axis < 0 ? axis + x.shape.length : axis;
    const idx = typeof indices === 'number' ? this.constant([indices], [], 'int64') : this.ints(indices);
    const shape = typeof indices === 'number' ? x.shape.filter((_, i) => i !== ax) : x.shape.map((d, i) => (i === ax ? indices.length : d));
    return this.node1('Gather', [x, idx], { axis: ax }, x.dtype, shape);
  }

  expand(x: Value, like: Value): Value {
    return this.node1('Expand', [x, this.shapeOf(like)], {}, x.dtype, broadcastShapes(x.shape, like.shape, `Expand(${x.name})`));
  }

  /** Zero-padding along axes: pads[i] = [before, after] per axis. */
  pad(x: Value, pads: [number, number][]): Value {
    const shape = x.shape.map((d, i) => (pads[i][0] + pads[i][1] === 0 ? d : mustNum(d, 'Pad') + pads[i][0] + pads[i][1]));
    return this.node1('Pad', [x, this.ints([...pads.map((p) => p[0]), ...pads.map((p) => p[1])])], {}, x.dtype, shape);
  }

  // ---- reductions and normalizations --------------------------------------------------------

  private reduce(op: 'ReduceSum' | 'ReduceMean', x: Value, axes: number[], keepdims: boolean): Value {
    const r = x.shape.length;
    const ax = axes.map((a) => (a < 0 ? a + r : a));
    const shape: Shape = [];
    x.shape.forEach((d, i) => {
      if (ax.includes(i)) {
        if (keepdims) shape.push(1);
      } else shape.push(d);
    });
    return this.node1(op, [x, this.ints(ax)], { keepdims: keepdims ? 1 : 0 }, x.dtype, shape);
  }

  reduceSum(x: Value, axes: number[], keepdims = false): Value {
    return this.reduce('ReduceSum', x, axes, keepdims);
  }
  reduceMean(x: Value, axes: number[], keepdims = false): Value {
    return this.reduce('ReduceMean', x, axes, keepdims);
  }

  softmax(x: Value, axis = -1): Value {
    return this.unary('Softmax', x, { axis });
  }
  logSoftmax(x: Value, axis = -1): Value {
    return this.unary('LogSoftmax', x, { axis });
  }

  /**
   * LayerNormalization over the last axis. Mean and inverse std are outputs too: the gradient
   * reuses them instead of recomputing. `beta` may be null (no shift). Float64 graphs compute it
   * from primitive ops (ONNX Runtime has no LayerNormalization kernel with float64 statistics)
   * as a composite that autodiff differentiates with the same rule.
   */
  layerNorm(x: Value, gamma: Value, beta: Value | null, eps: number): { y: Value; mean: Value; invStd: Value } {
    const stat = [...x.shape.slice(0, -1), 1];
    if (this.dtype === 'float64') {
      const mean = this.reduceMean(x, [-1], true);
      const xc = this.sub(x, mean);
      const invStd = this.div(this.scalar(1), this.sqrt(this.add(this.reduceMean(this.mul(xc, xc), [-1], true), this.scalar(eps))));
      let y = this.mul(xc, invStd);
      if (!this.isOnes(gamma)) y = this.mul(y, gamma);
      if (beta) y = this.add(y, beta);
      this.composites.set(y.name, { op: 'LayerNormalization', inputs: [x, gamma, ...(beta ? [beta] : [])], outputs: [y, mean, invStd] });
      return { y, mean, invStd };
    }
    const [y, mean, invStd] = this.node(
      'LayerNormalization',
      // A trailing '' for an omitted bias crashes ONNX Runtime 1.30 (SIGSEGV); leave it off.
      beta ? [x, gamma, beta] : [x, gamma],
      { axis: -1, epsilon: float(eps) },
      [
        { dtype: x.dtype, shape: x.shape },
        { dtype: x.dtype, shape: stat },
        { dtype: x.dtype, shape: stat },
      ],
    );
    return { y, mean, invStd };
  }

  /** LayerNormalization without affine: xhat = (x - mean) / sqrt(var + eps) over the last axis. */
  normalize(x: Value, eps: number): { y: Value; mean: Value; invStd: Value } {
    return this.layerNorm(x, this.ones([mustNum(x.shape[x.shape.length - 1], 'normalize')]), null, eps);
  }
}

function mustNum(d: Dim, what: string): number {
  if (typeof d !== 'number') throw new GraphError(`${what}: needs a numeric dim here, got ${dimStr(d)}`);
  return d;
}
