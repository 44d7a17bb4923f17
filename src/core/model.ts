// Models: config + structure (plain, branched with join coefficients, or folded) + parameters,
// and their safetensors form (docs/method.md sections 1-2).
//
// A checkpoint explains itself: `__metadata__.config` holds the ViTConfig (the format's keys) and
// `__metadata__.structure` the branch/join state, e.g.
//   {"kind":"branched","branches":4,"attn":[1,1,0.5],"ffn":[0.2,0,0]}
// A file without `structure` is a plain ViT (a timm/DeiT checkpoint, say). Other metadata
// entries are kept as they are, so nothing a user stored is lost on rewrite.

import { VitfoldError } from './errors.js';
import {
  ConfigError,
  configJson,
  parseConfigJson,
  validateBranches,
  validateConfig,
  type ViTConfig,
} from './config.js';
import type { Params } from './params.js';
import { cloneParams, paramCount, paramSpecs } from './params.js';
import {
  decodeFloat,
  encodeFloat,
  FLOAT_DTYPES,
  type FloatDType,
  type SafetensorsFile,
} from './safetensors.js';

/** Join coefficients per block (docs/method.md section 2): attn[b] = a_b, ffn[b] = f_b. */
export interface JoinCoefficients {
  attn: number[];
  ffn: number[];
}

/**
 * Checks one coefficient set for a model of `blocks` blocks: one value per block and kind, each in
 * [0, 1], and f_b > 0 only once a_b = 1 (otherwise the FFN input y depends on itself).
 */
export function validateJoin(j: JoinCoefficients, blocks: number, where: string, field = '', blocksWhy = ''): JoinCoefficients {
  for (const [key, arr] of [['attn', j.attn], ['ffn', j.ffn]] as const) {
    if (!Array.isArray(arr) || arr.length !== blocks) {
      throw new ModelError(`${where}: ${field}${key} must list ${blocks} join coefficients (one per block${blocksWhy}), got ${JSON.stringify(arr)}`);
    }
    arr.forEach((c, b) => {
      if (typeof c !== 'number' || !(c >= 0 && c <= 1)) throw new ModelError(`${where}: block ${b}: ${key} join coefficient ${JSON.stringify(c)} is not in [0, 1]`);
    });
  }
  j.ffn.forEach((f, b) => {
    if (f > 0 && j.attn[b] !== 1) {
      throw new ModelError(
        `${where}: block ${b}: ffn coefficient f=${f} > 0 requires the attention coefficient ` +
          `a=1 (got a=${j.attn[b]}); otherwise the FFN input y depends on itself (docs/method.md section 2)`,
      );
    }
  });
  return j;
}

/**
 * How the layers of a model are arranged: plain (sequential), branched (k per block, with join
 * coefficients) or folded (and from what).
 */
export type Structure =
  /** A plain ViT: `depth` sequential layers. */
  | { kind: 'plain' }
  /**
   * `depth / branches` blocks of `branches` consecutive layers. `attn[b]` and `ffn[b]` are the
   * join coefficients a_b and f_b of block b (docs/method.md section 2).
   */
  | ({ kind: 'branched'; branches: number } & JoinCoefficients)
  /** A plain ViT produced by folding a `branches`-branch model of depth `source_depth`. */
  | { kind: 'folded'; branches: number; source_depth: number };

/**
 * A ViT: config, structure, parameters (timm names), stored dtype and extra metadata
 * (normalization, classes, ...).
 */
export interface Model {
  config: ViTConfig;
  structure: Structure;
  params: Params;
  /** dtype the parameters are written in by default (the dtype they were read in). */
  dtype: FloatDType;
  /** Metadata entries other than config/structure, preserved on save. */
  extraMetadata: Record<string, string>;
}

/** A model file or structure that is wrong (names the file, tensor or coefficient). */
export class ModelError extends VitfoldError {
  override name = 'ModelError';
}

/** Blocks of a structure: depth / k for a branched model, else the depth. */
export function numBlocks(s: Structure, cfg: ViTConfig): number {
  return s.kind === 'branched' ? cfg.depth / s.branches : cfg.depth;
}

/** Checks branch count and coefficients; names the block and coefficient that is wrong. */
export function validateStructure(cfg: ViTConfig, s: Structure, where: string): Structure {
  switch (s.kind) {
    case 'plain':
      return s;
    case 'folded':
      if (!Number.isInteger(s.branches) || s.branches < 1 || s.source_depth !== cfg.depth * s.branches) {
        throw new ModelError(
          `${where}: folded structure says ${s.branches} branches from depth ${s.source_depth}, ` +
            `which does not give this model's depth ${cfg.depth}`,
        );
      }
      return s;
    case 'branched': {
      validateBranches(cfg, s.branches, where);
      validateJoin(s, cfg.depth / s.branches, where, 'structure.', `: depth ${cfg.depth} / ${s.branches} branches`);
      return s;
    }
  }
}

function parseStructure(text: string, cfg: ViTConfig, where: string): Structure {
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch (e) {
    throw new ModelError(`${where}: __metadata__.structure is not valid JSON: ${(e as Error).message}`);
  }
  const s = o as Record<string, unknown>;
  if (typeof s !== 'object' || s === null || !['plain', 'branched', 'folded'].includes(s.kind as string)) {
    throw new ModelError(
      `${where}: __metadata__.structure.kind must be "plain", "branched" or "folded" (got ${JSON.stringify(s?.kind)})`,
    );
  }
  return validateStructure(cfg, s as unknown as Structure, where);
}

/** Options of loadModel for files without vitfold metadata. */
export interface LoadOptions {
  /** Head count for files without `__metadata__.config` (it cannot be read off the shapes). */
  numHeads?: number;
  /** Notes about what was inferred are pushed here (e.g. for the CLI to print). */
  notes?: string[];
}

/** Infers a config from timm tensor shapes (head_dim = embed_dim / num_heads, as timm). */
function inferConfig(file: SafetensorsFile, where: string, opts: LoadOptions): ViTConfig {
  const shape = (name: string, rank: number): number[] => {
    const t = file.tensors.get(name);
    if (!t) {
      throw new ModelError(
        `${where}: no __metadata__.config and no '${name}' tensor to infer the config from; ` +
          `is this a timm ViT/DeiT checkpoint?`,
      );
    }
    if (t.shape.length !== rank) {
      throw new ModelError(`${where}: '${name}' has shape ${JSON.stringify(t.shape)}, expected rank ${rank}`);
    }
    return t.shape;
  };
  const [D, C, P] = shape('patch_embed.proj.weight', 4);
  const T = shape('pos_embed', 3)[1];
  const grid = Math.round(Math.sqrt(T - 1));
  if (grid * grid !== T - 1) {
    throw new ModelError(`${where}: pos_embed has ${T} tokens, which is not a square grid plus a class token`);
  }
  const numClasses = shape('head.weight', 2)[0];
  const M = shape('blocks.0.mlp.fc1.weight', 2)[0];
  const HD = shape('blocks.0.attn.proj.weight', 2)[1];
  let depth = 0;
  while (file.tensors.has(`blocks.${depth}.attn.qkv.weight`)) depth++;
  let H = opts.numHeads;
  if (H === undefined) {
    // timm's ViT/DeiT family uses 64-dimensional heads (tiny: 3, small: 6, base: 12).
    if (HD % 64 !== 0) {
      throw new ModelError(
        `${where}: no __metadata__.config, and the head count cannot be read from tensor shapes ` +
          `(attention width ${HD}); pass it explicitly (--num-heads)`,
      );
    }
    H = HD / 64;
    opts.notes?.push(
      `${where}: no config in the file; assumed ${H} heads of size 64 (timm convention). ` +
        `Pass --num-heads if that is wrong.`,
    );
  }
  if (HD % H !== 0) {
    throw new ModelError(`${where}: attention width ${HD} is not divisible by ${H} heads`);
  }
  return validateConfig(
    {
      img_size: grid * P,
      patch_size: P,
      in_chans: C,
      num_classes: numClasses,
      embed_dim: D,
      depth,
      num_heads: H,
      head_dim: HD / H,
      mlp_hidden: M,
      eps: 1e-6,
    },
    where,
  );
}

/** Builds a Model from a parsed safetensors file, checking every tensor against the config. */
export function modelFromSafetensors(file: SafetensorsFile, where: string, opts: LoadOptions = {}): Model {
  const meta = file.metadata ?? {};
  const config = meta.config !== undefined ? parseConfigJson(meta.config, where) : inferConfig(file, where, opts);
  if (opts.numHeads !== undefined && meta.config !== undefined && opts.numHeads !== config.num_heads) {
    throw new ModelError(
      `${where}: --num-heads ${opts.numHeads} contradicts the file's config (num_heads ${config.num_heads})`,
    );
  }
  const structure: Structure =
    meta.structure !== undefined ? parseStructure(meta.structure, config, where) : { kind: 'plain' };

  // The config's sizes are bounded (validateConfig), so listing what it expects is cheap; the
  // file's bytes bound what it can hold, which says at once when a header claims too much.
  const expectedCount = paramCount(config);
  let fileElements = 0;
  for (const t of file.tensors.values()) fileElements += t.bytes.byteLength / 2; // F16 and BF16 hold the most per byte
  const problems: string[] = [];
  const params: Params = new Map();
  const expected = paramSpecs(config);
  const dtypes = new Set<string>();
  for (const spec of expected) {
    const t = file.tensors.get(spec.name);
    if (!t) {
      problems.push(`missing tensor '${spec.name}' ${JSON.stringify(spec.shape)} ${spec.dims}`);
      continue;
    }
    if (t.shape.length !== spec.shape.length || t.shape.some((d, i) => d !== spec.shape[i])) {
      problems.push(
        `'${spec.name}' has shape ${JSON.stringify(t.shape)}, expected ${JSON.stringify(spec.shape)} ${spec.dims}`,
      );
      continue;
    }
    if (!FLOAT_DTYPES.includes(t.dtype)) {
      problems.push(`'${spec.name}' has dtype ${t.dtype}, expected a float dtype (F32, F16, BF16, F64)`);
      continue;
    }
    dtypes.add(t.dtype);
    params.set(spec.name, { shape: [...spec.shape], data: decodeFloat(t, `${where}: '${spec.name}'`) });
  }
  const known = new Set(expected.map((s) => s.name));
  for (const [name, t] of file.tensors) {
    if (known.has(name)) continue;
    let why = '';
    if (name === 'dist_token' || name.startsWith('head_dist')) {
      why = ' (distilled DeiT checkpoints are not supported; use the non-distilled model)';
    } else if (/^blocks\.\d+\./.test(name)) {
      why = ` (the config says depth ${config.depth})`;
    }
    problems.push(`unexpected tensor '${name}' ${JSON.stringify(t.shape)}${why}`);
  }
  if (problems.length) {
    const shown = problems.slice(0, 12);
    const more = problems.length > shown.length ? `\n  ... and ${problems.length - shown.length} more` : '';
    const size =
      expectedCount > fileElements
        ? `\n  the config needs ${expectedCount.toLocaleString('en-US')} parameters, but the file's tensors hold at most ${Math.floor(fileElements).toLocaleString('en-US')} values`
        : '';
    throw new ModelError(
      `${where}: does not match a ViT with ${describeConfig(config)}:${size}\n  ${shown.join('\n  ')}${more}`,
    );
  }
  for (const [name, t] of params) {
    for (let i = 0; i < t.data.length; i++) {
      if (!Number.isFinite(t.data[i])) {
        throw new ModelError(`${where}: '${name}' holds a non-finite value (${t.data[i]}) at flat index ${i}`);
      }
    }
  }
  const extraMetadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(meta)) if (k !== 'config' && k !== 'structure') extraMetadata[k] = v;
  // Write back what was read: a mixed-precision file is written as F32.
  const dtype: FloatDType = dtypes.size === 1 ? ([...dtypes][0] as FloatDType) : 'F32';
  return { config, structure, params, dtype, extraMetadata };
}

/** The safetensors form of a model: tensors sorted by name (as PyTorch's safetensors writes). */
export function modelToSafetensors(model: Model, dtype: FloatDType = model.dtype): SafetensorsFile {
  const names = [...model.params.keys()].sort();
  const tensors = new Map();
  for (const name of names) {
    const t = model.params.get(name)!;
    tensors.set(name, encodeFloat(t.data, t.shape, dtype));
  }
  const metadata: Record<string, string> = { ...model.extraMetadata, config: configJson(model.config) };
  if (model.structure.kind !== 'plain') metadata.structure = JSON.stringify(model.structure);
  return { tensors, metadata };
}

/** A config in one line (what `vitfold info` prints). */
export function describeConfig(c: ViTConfig): string {
  return (
    `img ${c.img_size}/${c.patch_size}, ${c.in_chans} channels, width ${c.embed_dim}, depth ${c.depth}, ` +
    `${c.num_heads} heads x ${c.head_dim}, MLP ${c.mlp_hidden}, ${c.num_classes} classes`
  );
}

/** A structure in one line: plain, branched with its coefficients, or folded and from what. */
export function describeStructure(s: Structure, cfg: ViTConfig): string {
  switch (s.kind) {
    case 'plain':
      return `plain (${cfg.depth} sequential layers)`;
    case 'folded':
      return `folded (${cfg.depth} layers from ${s.source_depth} layers in ${s.branches}-branch blocks)`;
    case 'branched':
      return (
        `branched: ${cfg.depth / s.branches} blocks x ${s.branches} branches; ` +
        `join attn [${s.attn.join(', ')}], ffn [${s.ffn.join(', ')}]`
      );
  }
}

/**
 * Regroups a plain model's layers into blocks of `branches` consecutive layers (docs/method.md section 2:
 * the parameters are exactly the plain ViT's). Coefficients default to 0: the deep model.
 * Returns a new model that shares no arrays with the input.
 */
export function toBranched(
  model: Model,
  branches: number,
  join: { attn?: number[] | number; ffn?: number[] | number } = {},
  where = 'model',
): Model {
  if (model.structure.kind === 'folded') {
    throw new ModelError(`${where}: is already folded; it cannot be regrouped into branches`);
  }
  validateBranches(model.config, branches, where);
  const L = model.config.depth / branches;
  const expand = (v: number[] | number | undefined): number[] =>
    v === undefined ? new Array(L).fill(0) : typeof v === 'number' ? new Array(L).fill(v) : [...v];
  const structure = validateStructure(
    model.config,
    { kind: 'branched', branches, attn: expand(join.attn), ffn: expand(join.ffn) },
    where,
  );
  return { ...model, structure, params: cloneParams(model.params), extraMetadata: { ...model.extraMetadata } };
}

/** Whether every join coefficient is 1 (the model has an exact fold). */
export function isFullyJoined(s: Structure): boolean {
  return s.kind === 'branched' && s.attn.every((a) => a === 1) && s.ffn.every((f) => f === 1);
}

export { ConfigError };
