// `vitfold fold`: a fully joined branched model (or a plain one read as joined) folded into a plain ViT.

import { Command, Option } from 'commander';
import { positiveInt, refuseOverwrite, EXIT } from './args.js';
import { fold } from '../core/fold.js';
import { paramCount } from '../core/params.js';
import { saveModel } from '../io.js';
import { DTYPES, type BranchOpts, joinedModelFrom, seconds, loadInput, verifyFold, numHeadsOption } from './model-args.js';

export function addFoldCommand(program: Command): void {
  program
    .command('fold')
    .description('fold a fully joined branched model into an equivalent shallower, wider plain ViT (exact)')
    .argument('<model>', 'branched model .safetensors with every join coefficient at 1, or a plain one with --branches --assume-joined')
    .requiredOption('--out <file>', 'output .safetensors (a plain ViT: timm names, wider shapes)')
    .addOption(new Option('--branches <k>', 'regroup a plain checkpoint into blocks of k consecutive layers').argParser(positiveInt('--branches')))
    .option('--assume-joined', 'with --branches: fold as the fully joined model (differs from the deep original)')
    .addOption(new Option('--dtype <t>', 'storage dtype of the folded weights (default: the input file\'s)').choices(Object.keys(DTYPES)))
    .addOption(numHeadsOption())
    .option('--verify', 'also run the branched model and the fold on a seeded input and compare (float64)')
    .addHelpText(
      'after',
      `
The fold is computed in float64; the file stores the weights as --dtype.

Examples:
  $ vitfold fold run/joined.safetensors --out run/folded.safetensors
  $ vitfold fold deit_tiny_patch16_224.safetensors --branches 4 --assume-joined --out deit-3layer.safetensors`,
    )
    .action((path: string, o: BranchOpts & { out: string; dtype?: string; verify?: boolean }) => {
      refuseOverwrite(o.out, [path]);
      const t0 = performance.now();
      const branched = joinedModelFrom(path, o);
      const folded = fold(branched, path);
      saveModel(o.out, folded, o.dtype ? DTYPES[o.dtype] : branched.dtype);
      const c = folded.config;
      console.log(
        `folded   ${path}: ${branched.config.depth} layers in ${c.depth} blocks x ${(folded.structure as { branches: number }).branches} branches -> ` +
          `${c.depth} layers, ${c.num_heads} heads x ${c.head_dim}, MLP ${c.mlp_hidden}`,
      );
      console.log(`wrote    ${o.out} (${o.dtype ? DTYPES[o.dtype] : branched.dtype}, ${paramCount(c).toLocaleString('en-US')} params) in ${seconds(t0)}`);
      if (o.verify) {
        const { x, label } = loadInput(undefined, branched, 1, 0);
        const rep = verifyFold(branched, folded, x, label, 1e-9);
        rep.lines.forEach((l) => console.log(l));
        if (!rep.ok) return void (process.exitCode = EXIT.checkFailed);
      }
    });
}
