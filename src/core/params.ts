// Parameter names and shapes of the plain ViT (docs/method.md section 1, timm names), random init.
//
// `paramSpecs` is the single source of truth for what a model file must contain: the loader
// checks files against it, init fills it, `info` counts it.

import type { ViTConfig } from './config.js';
import { numTokens } from './config.js';
import { Rng } from './rng.js';

/** A float tensor: shape and row-major data (float64 in the core). */
export interface Tensor {
  shape: number[];
  data: Float64Array;
}

/** Parameters by timm name. Values are float64 whatever the file's dtype. */
export type Params = Map<string, Tensor>;

/** What a parameter is, for initialization and weight decay. */
export type ParamRole = 'weight' | 'bias' | 'norm' | 'token';

/** One parameter of a ViT: timm name, shape and role. */
export interface ParamSpec {
  name: string;
  shape: number[];
  /** What the shape is made of, for error messages. */
  dims: string;
  role: ParamRole;
}

/** The parameters of layer i (timm names, shapes, roles). */
export function layerParamSpecs(cfg: ViTConfig, i: number): ParamSpec[] {
  const D = cfg.embed_dim;
  const HD = cfg.num_heads * cfg.head_dim;
  const M = cfg.mlp_hidden;
  const p = `blocks.${i}.`;
  return [
    { name: p + 'norm1.weight', shape: [D], dims: '[embed_dim]', role: 'norm' },
    { name: p + 'norm1.bias', shape: [D], dims: '[embed_dim]', role: 'norm' },
    { name: p + 'attn.qkv.weight', shape: [3 * HD, D], dims: '[3*num_heads*head_dim, embed_dim]', role: 'weight' },
    { name: p + 'attn.qkv.bias', shape: [3 * HD], dims: '[3*num_heads*head_dim]', role: 'bias' },
    { name: p + 'attn.proj.weight', shape: [D, HD], dims: '[embed_dim, num_heads*head_dim]', role: 'weight' },
    { name: p + 'attn.proj.bias', shape: [D], dims: '[embed_dim]', role: 'bias' },
    { name: p + 'norm2.weight', shape: [D], dims: '[embed_dim]', role: 'norm' },
    { name: p + 'norm2.bias', shape: [D], dims: '[embed_dim]', role: 'norm' },
    { name: p + 'mlp.fc1.weight', shape: [M, D], dims: '[mlp_hidden, embed_dim]', role: 'weight' },
    { name: p + 'mlp.fc1.bias', shape: [M], dims: '[mlp_hidden]', role: 'bias' },
    { name: p + 'mlp.fc2.weight', shape: [D, M], dims: '[embed_dim, mlp_hidden]', role: 'weight' },
    { name: p + 'mlp.fc2.bias', shape: [D], dims: '[embed_dim]', role: 'bias' },
  ];
}

/** Every parameter of the plain ViT, in timm's state_dict order. */
export function paramSpecs(cfg: ViTConfig): ParamSpec[] {
  const D = cfg.embed_dim;
  const P = cfg.patch_size;
  const C = cfg.in_chans;
  const specs: ParamSpec[] = [
    { name: 'cls_token', shape: [1, 1, D], dims: '[1, 1, embed_dim]', role: 'token' },
    { name: 'pos_embed', shape: [1, numTokens(cfg), D], dims: '[1, (img_size/patch_size)^2 + 1, embed_dim]', role: 'token' },
    { name: 'patch_embed.proj.weight', shape: [D, C, P, P], dims: '[embed_dim, in_chans, patch_size, patch_size]', role: 'weight' },
    { name: 'patch_embed.proj.bias', shape: [D], dims: '[embed_dim]', role: 'bias' },
  ];
  for (let i = 0; i < cfg.depth; i++) specs.push(...layerParamSpecs(cfg, i));
  specs.push(
    { name: 'norm.weight', shape: [D], dims: '[embed_dim]', role: 'norm' },
    { name: 'norm.bias', shape: [D], dims: '[embed_dim]', role: 'norm' },
    { name: 'head.weight', shape: [cfg.num_classes, D], dims: '[num_classes, embed_dim]', role: 'weight' },
    { name: 'head.bias', shape: [cfg.num_classes], dims: '[num_classes]', role: 'bias' },
  );
  return specs;
}

/** The number of parameters of a config. */
export function paramCount(cfg: ViTConfig): number {
  let n = 0;
  for (const s of paramSpecs(cfg)) n += s.shape.reduce((a, b) => a * b, 1);
  return n;
}

/**
 * timm's ViT init: truncated normal (std 0.02) for linear weights and pos_embed, zero biases,
 * LayerNorm (1, 0), class token N(0, 1e-6), patch conv with PyTorch's default
 * uniform(+-1/sqrt(fan_in)).
 */
export function initParams(cfg: ViTConfig, seed: number): Params {
  const rng = new Rng(seed);
  const params: Params = new Map();
  const fanInConv = cfg.in_chans * cfg.patch_size * cfg.patch_size;
  for (const spec of paramSpecs(cfg)) {
    const n = spec.shape.reduce((a, b) => a * b, 1);
    const data = new Float64Array(n);
    if (spec.name === 'cls_token') {
      for (let i = 0; i < n; i++) data[i] = rng.normal() * 1e-6;
    } else if (spec.name.startsWith('patch_embed.')) {
      const bound = 1 / Math.sqrt(fanInConv);
      for (let i = 0; i < n; i++) data[i] = (2 * rng.uniform() - 1) * bound;
    } else if (spec.role === 'weight' || spec.name === 'pos_embed') {
      for (let i = 0; i < n; i++) data[i] = rng.truncNormal(0.02);
    } else if (spec.role === 'norm' && spec.name.endsWith('.weight')) {
      data.fill(1);
    }
    params.set(spec.name, { shape: [...spec.shape], data });
  }
  return params;
}

/** A deep copy of a parameter map. */
export function cloneParams(params: Params): Params {
  const out: Params = new Map();
  for (const [k, t] of params) out.set(k, { shape: [...t.shape], data: Float64Array.from(t.data) });
  return out;
}
