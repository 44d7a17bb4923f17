// Model-shape options (`init`, `train`): a preset's config with single fields overridden.

import { Command, Option } from 'commander';
import { positiveInt } from './args.js';
import { validateConfig, type ViTConfig } from '../core/config.js';

export function addShapeOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--img-size <n>').argParser(positiveInt('--img-size')))
    .addOption(new Option('--patch-size <n>').argParser(positiveInt('--patch-size')))
    .addOption(new Option('--in-chans <n>').argParser(positiveInt('--in-chans')))
    .addOption(new Option('--num-classes <n>').argParser(positiveInt('--num-classes')))
    .addOption(new Option('--embed-dim <n>').argParser(positiveInt('--embed-dim')))
    .addOption(new Option('--depth <n>', 'layers').argParser(positiveInt('--depth')))
    .addOption(new Option('--num-heads <n>').argParser(positiveInt('--num-heads')))
    .addOption(new Option('--head-dim <n>', 'default embed-dim / num-heads').argParser(positiveInt('--head-dim')))
    .addOption(new Option('--mlp-hidden <n>', 'default 4 * embed-dim').argParser(positiveInt('--mlp-hidden')));
}

export interface ShapeOptions {
  imgSize?: number;
  patchSize?: number;
  inChans?: number;
  numClasses?: number;
  embedDim?: number;
  depth?: number;
  numHeads?: number;
  headDim?: number;
  mlpHidden?: number;
}

export const SHAPE_KEYS: readonly (keyof ShapeOptions)[] = ['imgSize', 'patchSize', 'inChans', 'numClasses', 'embedDim', 'depth', 'numHeads', 'headDim', 'mlpHidden'];

/** `base` with the shape options given; head_dim and mlp_hidden follow embed_dim unless given. */
export function configFromOptions(base: ViTConfig, o: ShapeOptions, where: string): ViTConfig {
  const cfg = { ...base };
  const map: [keyof ShapeOptions, keyof ViTConfig][] = [
    ['imgSize', 'img_size'],
    ['patchSize', 'patch_size'],
    ['inChans', 'in_chans'],
    ['numClasses', 'num_classes'],
    ['embedDim', 'embed_dim'],
    ['depth', 'depth'],
    ['numHeads', 'num_heads'],
    ['headDim', 'head_dim'],
    ['mlpHidden', 'mlp_hidden'],
  ];
  for (const [opt, key] of map) if (o[opt] !== undefined) (cfg[key] as number) = o[opt]!;
  if (o.headDim === undefined && (o.embedDim !== undefined || o.numHeads !== undefined)) cfg.head_dim = cfg.embed_dim / cfg.num_heads;
  if (o.mlpHidden === undefined && o.embedDim !== undefined) cfg.mlp_hidden = 4 * cfg.embed_dim;
  return validateConfig(cfg, where);
}
