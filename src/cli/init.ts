// `vitfold init`: a randomly initialized model (timm init), plain or branched with coefficients 0.

import { Command, Option } from 'commander';
import { nonNegativeInt, positiveInt } from './args.js';
import { PRESETS, preset } from '../core/config.js';
import { describeConfig, describeStructure, toBranched, type Model } from '../core/model.js';
import { initParams, paramCount } from '../core/params.js';
import { saveModel } from '../io.js';
import { addShapeOptions, configFromOptions } from './shape.js';
import { DTYPES } from './model-args.js';

export function addInitCommand(program: Command): void {
  addShapeOptions(program
    .command('init'))
    .description('write a randomly initialized model (timm init), plain or branched with coefficients 0')
    .requiredOption('--out <file>', 'output .safetensors')
    .addOption(new Option('--preset <name>', 'base config').choices(Object.keys(PRESETS)).default('deit-tiny'))
    .addOption(new Option('--branches <k>', 'write a k-branch model (join coefficients 0 = the deep model)').argParser(positiveInt('--branches')))
    .addOption(new Option('--seed <n>', 'random seed').argParser(nonNegativeInt('--seed')).default(0))
    .addOption(new Option('--dtype <t>', 'storage dtype').choices(Object.keys(DTYPES)).default('f32'))
    .addHelpText('after', '\nExample:\n  $ vitfold init --preset vit-28 --branches 4 --out fmnist-4branch.safetensors')
    .action((o: Record<string, unknown>) => {
      const config = configFromOptions(preset(o.preset as string), o, `--preset ${o.preset as string} with overrides`);
      let model: Model = { config, structure: { kind: 'plain' }, params: initParams(config, o.seed as number), dtype: 'F32', extraMetadata: {} };
      if (o.branches !== undefined) model = toBranched(model, o.branches as number, {}, '--branches');
      saveModel(o.out as string, model, DTYPES[o.dtype as string]);
      console.log(`wrote ${o.out as string}: ${describeConfig(config)}; ${describeStructure(model.structure, config)}; ${paramCount(config).toLocaleString('en-US')} params`);
    });
}
