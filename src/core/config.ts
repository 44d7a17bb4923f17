// ViT configuration and presets (docs/method.md section 1).
//
// One serializable object describes every model vitfold handles. Its keys are exactly the
// file format's `__metadata__.config` keys, so the JSON written into a checkpoint *is* this object.
// Head size is independent of width (`head_dim` need not be `embed_dim / num_heads`), because
// a fold multiplies the head count while keeping the head size.

import { VitfoldError } from './errors.js';

/**
 * The one description of a ViT: image and patch size, channels, classes, width, depth, heads,
 * head size, MLP width, LayerNorm epsilon (timm names).
 */
export interface ViTConfig {
  img_size: number; // S: input images are S x S
  patch_size: number; // P: non-overlapping P x P patches, N = (S/P)^2 tokens + 1 class token
  in_chans: number; // C
  num_classes: number;
  embed_dim: number; // D: residual stream width
  depth: number; // number of (attention + FFN) layers
  num_heads: number; // H
  head_dim: number; // hd
  mlp_hidden: number; // M
  eps: number; // LayerNorm epsilon
}

/** The fields of a ViTConfig, in the order files store them. */
export const CONFIG_KEYS: readonly (keyof ViTConfig)[] = [
  'img_size',
  'patch_size',
  'in_chans',
  'num_classes',
  'embed_dim',
  'depth',
  'num_heads',
  'head_dim',
  'mlp_hidden',
  'eps',
];

/** A config that is not a valid ViT (names the field and the expected value). */
export class ConfigError extends VitfoldError {
  override name = 'ConfigError';
}

/** DeiT presets as in timm; small presets sized for 28x28 and 32x32 datasets. */
export const PRESETS = {
  'deit-tiny': vit({ img: 224, patch: 16, chans: 3, classes: 1000, dim: 192, depth: 12, heads: 3 }),
  'deit-small': vit({ img: 224, patch: 16, chans: 3, classes: 1000, dim: 384, depth: 12, heads: 6 }),
  'deit-base': vit({ img: 224, patch: 16, chans: 3, classes: 1000, dim: 768, depth: 12, heads: 12 }),
  // Fashion-MNIST / MNIST: 28x28 grey, patch 4 -> 49 tokens + class token.
  'vit-28': vit({ img: 28, patch: 4, chans: 1, classes: 10, dim: 96, depth: 12, heads: 3 }),
  // Fashion-MNIST, fast: patch 7 -> 16 tokens + class token, MLP 2x (the built-in demo).
  'vit-28-p7': vit({ img: 28, patch: 7, chans: 1, classes: 10, dim: 96, depth: 12, heads: 3, mlp: 192 }),
  // CIFAR-10: 32x32 RGB, patch 4 -> 64 tokens + class token.
  'vit-32': vit({ img: 32, patch: 4, chans: 3, classes: 10, dim: 192, depth: 12, heads: 3 }),
} satisfies Record<string, ViTConfig>;

/** The names preset() accepts. */
export type PresetName = keyof typeof PRESETS;

function vit(p: {
  img: number;
  patch: number;
  chans: number;
  classes: number;
  dim: number;
  depth: number;
  heads: number;
  mlp?: number;
}): ViTConfig {
  return {
    img_size: p.img,
    patch_size: p.patch,
    in_chans: p.chans,
    num_classes: p.classes,
    embed_dim: p.dim,
    depth: p.depth,
    num_heads: p.heads,
    head_dim: p.dim / p.heads,
    mlp_hidden: p.mlp ?? 4 * p.dim,
    eps: 1e-6,
  };
}

/**
 * The ViTConfig of a named preset (deit-tiny, deit-small, deit-base, vit-28-p7, vit-28, vit-32).
 */
export function preset(name: string): ViTConfig {
  const cfg = (PRESETS as Record<string, ViTConfig>)[name];
  if (!cfg) {
    throw new ConfigError(
      `unknown preset '${name}'; available: ${Object.keys(PRESETS).join(', ')}`,
    );
  }
  return { ...cfg };
}

/** Patches per image (tokens without the class token). */
export function numPatches(cfg: ViTConfig): number {
  const g = cfg.img_size / cfg.patch_size;
  return g * g;
}

/** Tokens per image including the class token. */
export function numTokens(cfg: ViTConfig): number {
  return numPatches(cfg) + 1;
}

/**
 * Upper bounds on every size, checked before anything allocates or loops over them: a file's
 * header must not be able to ask for unbounded memory or time. Each is far above real models
 * (ViT-H: depth 32, width 1280; a 24-layer ViT-L folded to 1 layer: 384 heads, MLP 98,304;
 * ImageNet-21k: 21,843 classes; SAM's encoder: 4,096 patches).
 */
export const CONFIG_LIMITS: Readonly<Record<Exclude<keyof ViTConfig, 'eps'>, number>> = {
  img_size: 4096,
  patch_size: 4096,
  in_chans: 64,
  num_classes: 1 << 20,
  embed_dim: 16384,
  depth: 1024,
  num_heads: 4096,
  head_dim: 4096,
  mlp_hidden: 1 << 20,
};
/**
 * The most patches per image a config may have (keeps a hostile config from allocating without
 * bound).
 */
export const MAX_PATCHES = 4096;

/**
 * Throws a ConfigError naming every field that is wrong. `where` names the source
 * (a file, a preset) so the message says where to look.
 */
export function validateConfig(cfg: ViTConfig, where = 'config'): ViTConfig {
  const problems: string[] = [];
  for (const key of CONFIG_KEYS) {
    const v = (cfg as unknown as Record<string, unknown>)[key];
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      problems.push(`${key} must be a number (got ${JSON.stringify(v)})`);
    } else if (key === 'eps') {
      if (!(v > 0)) problems.push(`eps must be > 0 (got ${v})`);
    } else if (!Number.isInteger(v) || v < 1) {
      problems.push(`${key} must be a positive integer (got ${v})`);
    }
  }
  if (problems.length === 0) {
    for (const [key, max] of Object.entries(CONFIG_LIMITS) as [keyof ViTConfig, number][]) {
      if (cfg[key] > max) problems.push(`${key} ${cfg[key]} is above vitfold's limit of ${max}`);
    }
  }
  if (problems.length === 0 && cfg.img_size % cfg.patch_size !== 0) {
    problems.push(
      `img_size ${cfg.img_size} is not divisible by patch_size ${cfg.patch_size}`,
    );
  }
  if (problems.length === 0 && numPatches(cfg) > MAX_PATCHES) {
    problems.push(`${numPatches(cfg)} patches (img_size ${cfg.img_size} / patch_size ${cfg.patch_size}, squared) is above vitfold's limit of ${MAX_PATCHES}`);
  }
  if (problems.length) {
    throw new ConfigError(`${where}: invalid ViT config: ${problems.join('; ')}`);
  }
  return cfg;
}

/** Depth must split into `branches` equal groups of consecutive layers (docs/method.md section 2). */
export function validateBranches(cfg: ViTConfig, branches: number, where = 'config'): void {
  if (!Number.isInteger(branches) || branches < 1) {
    throw new ConfigError(`${where}: branch count must be a positive integer (got ${branches})`);
  }
  if (cfg.depth % branches !== 0) {
    const divisors = [];
    for (let k = 1; k <= cfg.depth; k++) if (cfg.depth % k === 0) divisors.push(k);
    throw new ConfigError(
      `${where}: depth ${cfg.depth} is not divisible by ${branches} branches ` +
        `(possible branch counts: ${divisors.join(', ')})`,
    );
  }
}

/** Parses the JSON text of `__metadata__.config`, with the defaults the file format allows (eps 1e-6, head_dim = embed_dim / num_heads). */
export function parseConfigJson(text: string, where: string): ViTConfig {
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${where}: __metadata__.config is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
    throw new ConfigError(`${where}: __metadata__.config must be a JSON object`);
  }
  const o = obj as Record<string, unknown>;
  const cfg: Record<string, unknown> = { eps: 1e-6, ...o };
  if (cfg.head_dim === undefined && typeof o.embed_dim === 'number' && typeof o.num_heads === 'number') {
    cfg.head_dim = o.embed_dim / o.num_heads;
  }
  const missing = CONFIG_KEYS.filter((k) => cfg[k] === undefined);
  if (missing.length) {
    throw new ConfigError(`${where}: __metadata__.config lacks ${missing.join(', ')}`);
  }
  const out = {} as Record<string, number>;
  for (const k of CONFIG_KEYS) out[k] = cfg[k] as number;
  return validateConfig(out as unknown as ViTConfig, where);
}

/** A config as the JSON stored in files' metadata. */
export function configJson(cfg: ViTConfig): string {
  const o: Record<string, number> = {};
  for (const k of CONFIG_KEYS) o[k] = cfg[k];
  return JSON.stringify(o);
}
