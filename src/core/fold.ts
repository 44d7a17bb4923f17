// The fold (docs/method.md section 3): a fully joined branched model -> an equivalent plain ViT of depth
// L = depth / k with k*H heads of size hd and MLP hidden size k*M.
//
// Pure: returns a new model and never touches the input's arrays. Computed in float64, so the
// folded model equals the fully joined branched model to float64 rounding (~1e-14); writing it
// as F32 adds only the F32 rounding of the weights.
//
// Per block b with branches j = 0..k-1 (layer b*k + j):
//   LN extraction   W LN_j(u) + b = (W diag(g_j)) n(u) + (W c_j + b); the folded LN is (1, 0).
//   attention       q rows of all branches, then k rows, then v rows (branch-major, head-major
//                   inside); Proj weights concatenated along the input dim in the same head
//                   order; Proj biases summed.
//   FFN             fc1 rows and biases stacked (hidden k*M); fc2 weights concatenated along the
//                   input dim; fc2 biases summed.

import { validateBranches, type ViTConfig } from './config.js';
import { ModelError, toBranched, type Model } from './model.js';
import type { Params, Tensor } from './params.js';
import { layerParamSpecs } from './params.js';

/** Per-block join coefficients that are not 1, e.g. ["block 2: ffn = 0.5"]. */
export function unjoinedCoefficients(model: Model): string[] {
  const s = model.structure;
  if (s.kind !== 'branched') return [];
  const out: string[] = [];
  s.attn.forEach((a, b) => a !== 1 && out.push(`block ${b}: attn join coefficient a_${b} = ${a}`));
  s.ffn.forEach((f, b) => f !== 1 && out.push(`block ${b}: ffn join coefficient f_${b} = ${f}`));
  return out;
}

/**
 * W' = W diag(g), b' = W c + b for W [O, I], b [O], g, c [I]: a linear layer reading
 * g * n(u) + c becomes one reading n(u).
 */
function absorbAffine(W: Float64Array, b: Float64Array, g: Float64Array, c: Float64Array, O: number, I: number) {
  const W2 = new Float64Array(O * I);
  const b2 = new Float64Array(O);
  for (let o = 0; o < O; o++) {
    let s = 0;
    for (let i = 0; i < I; i++) {
      W2[o * I + i] = W[o * I + i] * g[i];
      s += W[o * I + i] * c[i];
    }
    b2[o] = s + b[o];
  }
  return { W: W2, b: b2 };
}

/** Concatenates row-major matrices [R, C_j] along columns -> [R, sum C_j]. */
function concatColumns(mats: Float64Array[], R: number, cols: number[]): Float64Array {
  const total = cols.reduce((a, b) => a + b, 0);
  const out = new Float64Array(R * total);
  let c0 = 0;
  mats.forEach((m, j) => {
    const Cj = cols[j];
    for (let r = 0; r < R; r++) out.set(m.subarray(r * Cj, (r + 1) * Cj), r * total + c0);
    c0 += Cj;
  });
  return out;
}

function sumVectors(vs: Float64Array[]): Float64Array {
  const out = Float64Array.from(vs[0]);
  for (let j = 1; j < vs.length; j++) for (let i = 0; i < out.length; i++) out[i] += vs[j][i];
  return out;
}

function concatRows(parts: Float64Array[]): Float64Array {
  const out = new Float64Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** The config of the fold of a `branches`-branch model with config `cfg`. */
export function foldedConfig(cfg: ViTConfig, branches: number): ViTConfig {
  validateBranches(cfg, branches);
  return {
    ...cfg,
    depth: cfg.depth / branches,
    num_heads: cfg.num_heads * branches,
    mlp_hidden: cfg.mlp_hidden * branches,
  };
}

/**
 * Folds a fully joined branched model (every a_b = f_b = 1) into a plain model. Throws a
 * ModelError naming each block and coefficient that is not 1.
 */
export function fold(model: Model, where = 'model'): Model {
  const s = model.structure;
  if (s.kind !== 'branched') {
    throw new ModelError(
      `${where}: is ${s.kind}, not branched; nothing to fold ` +
        `(a plain checkpoint can be regrouped with --branches k --assume-joined)`,
    );
  }
  const unjoined = unjoinedCoefficients(model);
  if (unjoined.length) {
    throw new ModelError(
      `${where}: cannot fold exactly: the fold needs every join coefficient at 1, but\n  ` +
        unjoined.join('\n  ') +
        `\n  Train until the join schedule has reached 1 in every block.`,
    );
  }
  const cfg = model.config;
  const k = s.branches;
  const out = foldedConfig(cfg, k);
  const { embed_dim: D, mlp_hidden: M } = cfg;
  const HD = cfg.num_heads * cfg.head_dim;
  const P = model.params;
  const get = (name: string): Float64Array => {
    const t = P.get(name);
    if (!t) throw new ModelError(`${where}: parameter '${name}' is missing`);
    return t.data;
  };
  const params: Params = new Map();
  const put = (name: string, shape: number[], data: Float64Array) => params.set(name, { shape, data } satisfies Tensor);
  for (const name of ['cls_token', 'pos_embed', 'patch_embed.proj.weight', 'patch_embed.proj.bias', 'norm.weight', 'norm.bias', 'head.weight', 'head.bias']) {
    const t = P.get(name)!;
    put(name, [...t.shape], Float64Array.from(t.data));
  }
  const ones = new Float64Array(D).fill(1);
  for (let b = 0; b < out.depth; b++) {
    const q: Float64Array[] = [], kk: Float64Array[] = [], v: Float64Array[] = [];
    const qb: Float64Array[] = [], kb: Float64Array[] = [], vb: Float64Array[] = [];
    const projW: Float64Array[] = [], projB: Float64Array[] = [];
    const fc1W: Float64Array[] = [], fc1B: Float64Array[] = [];
    const fc2W: Float64Array[] = [], fc2B: Float64Array[] = [];
    for (let j = 0; j < k; j++) {
      const p = `blocks.${b * k + j}.`;
      const qkv = absorbAffine(get(p + 'attn.qkv.weight'), get(p + 'attn.qkv.bias'), get(p + 'norm1.weight'), get(p + 'norm1.bias'), 3 * HD, D);
      // qkv rows are [q | k | v], each H*hd rows of D.
      q.push(qkv.W.subarray(0, HD * D));
      kk.push(qkv.W.subarray(HD * D, 2 * HD * D));
      v.push(qkv.W.subarray(2 * HD * D, 3 * HD * D));
      qb.push(qkv.b.subarray(0, HD));
      kb.push(qkv.b.subarray(HD, 2 * HD));
      vb.push(qkv.b.subarray(2 * HD, 3 * HD));
      projW.push(get(p + 'attn.proj.weight'));
      projB.push(get(p + 'attn.proj.bias'));
      const f1 = absorbAffine(get(p + 'mlp.fc1.weight'), get(p + 'mlp.fc1.bias'), get(p + 'norm2.weight'), get(p + 'norm2.bias'), M, D);
      fc1W.push(f1.W);
      fc1B.push(f1.b);
      fc2W.push(get(p + 'mlp.fc2.weight'));
      fc2B.push(get(p + 'mlp.fc2.bias'));
    }
    const specs = layerParamSpecs(out, b);
    const shape = (suffix: string) => [...specs.find((x) => x.name.endsWith(suffix))!.shape];
    const p = `blocks.${b}.`;
    put(p + 'norm1.weight', shape('norm1.weight'), Float64Array.from(ones));
    put(p + 'norm1.bias', shape('norm1.bias'), new Float64Array(D));
    put(p + 'attn.qkv.weight', shape('attn.qkv.weight'), concatRows([...q, ...kk, ...v]));
    put(p + 'attn.qkv.bias', shape('attn.qkv.bias'), concatRows([...qb, ...kb, ...vb]));
    put(p + 'attn.proj.weight', shape('attn.proj.weight'), concatColumns(projW, D, new Array(k).fill(HD)));
    put(p + 'attn.proj.bias', shape('attn.proj.bias'), sumVectors(projB));
    put(p + 'norm2.weight', shape('norm2.weight'), Float64Array.from(ones));
    put(p + 'norm2.bias', shape('norm2.bias'), new Float64Array(D));
    put(p + 'mlp.fc1.weight', shape('mlp.fc1.weight'), concatRows(fc1W));
    put(p + 'mlp.fc1.bias', shape('mlp.fc1.bias'), concatRows(fc1B));
    put(p + 'mlp.fc2.weight', shape('mlp.fc2.weight'), concatColumns(fc2W, D, new Array(k).fill(M)));
    put(p + 'mlp.fc2.bias', shape('mlp.fc2.bias'), sumVectors(fc2B));
  }
  return {
    config: out,
    structure: { kind: 'folded', branches: k, source_depth: cfg.depth },
    params,
    dtype: model.dtype,
    extraMetadata: { ...model.extraMetadata },
  };
}

/**
 * Folds a plain model as if its layers were grouped into `branches`-branch blocks and fully
 * joined. This is NOT the original deep model's function: the deep model is the branched model
 * with all coefficients 0. Callers must say they mean it (the CLI's --assume-joined).
 */
export function foldAssumingJoined(model: Model, branches: number, where = 'model'): Model {
  return fold(toBranched(model, branches, { attn: 1, ffn: 1 }, where), where);
}
