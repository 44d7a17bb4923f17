// `vitfold verify`: the branched model and its fold run in float64 and compared.

import { Command, Option } from 'commander';
import { CliError, nonNegativeInt, positiveInt, positiveNumber, EXIT } from './args.js';
import { fold } from '../core/fold.js';
import { describeConfig, describeStructure } from '../core/model.js';
import { compareLogits } from '../core/verify.js';
import { referenceForward } from '../core/reference.js';
import { loadModel } from '../io.js';
import { type BranchOpts, joinedModelFrom, fmtErr, loadInput, verifyFold, numHeadsOption } from './model-args.js';

export function addVerifyCommand(program: Command): void {
  program
    .command('verify')
    .description('check that a fully joined branched model and its fold give the same logits (float64)')
    .argument('<model>', 'branched model .safetensors, or a plain one with --branches --assume-joined')
    .addOption(new Option('--branches <k>', 'regroup a plain checkpoint into blocks of k consecutive layers').argParser(positiveInt('--branches')))
    .option('--assume-joined', 'with --branches: verify the fully joined model\'s fold')
    .option('--input <file>', 'input .safetensors with tensor x [B, C, S, S] (default: seeded normal input)')
    .addOption(new Option('--batch <n>', 'images in the seeded input').argParser(positiveInt('--batch')).default(2))
    .addOption(new Option('--seed <n>', 'seed of the input').argParser(nonNegativeInt('--seed')).default(0))
    .option('--folded <file>', 'also check this folded file (e.g. written by `vitfold fold`) against the branched model')
    .addOption(new Option('--tol <x>', 'max relative logit error of the float64 fold').argParser(positiveNumber('--tol')).default(1e-9))
    .addOption(
      new Option('--folded-tol <x>', 'max relative error for --folded (default: 1e-9 for F64 files, 1e-5 for F32, 1e-2 for F16/BF16)').argParser(
        positiveNumber('--folded-tol'),
      ),
    )
    .addOption(numHeadsOption())
    .addHelpText(
      'after',
      `
Relative error = max |branched - folded| / max |branched| over all logits. The in-memory fold is
float64 and must be within --tol (1e-9); a folded FILE stores rounded weights (F32: ~1e-7).
Exit code 1 when a check fails.

Examples:
  $ vitfold verify run/joined.safetensors
  $ vitfold verify deep.safetensors --branches 3 --assume-joined --input x.safetensors
  $ vitfold verify deep.safetensors --branches 3 --assume-joined --folded deep-folded.safetensors`,
    )
    .action(
      (
        path: string,
        o: BranchOpts & { input?: string; batch: number; seed: number; folded?: string; tol: number; foldedTol?: number },
      ) => {
        const branched = joinedModelFrom(path, o);
        const folded = fold(branched, path);
        const { x, label } = loadInput(o.input, branched, o.batch, o.seed);
        const c = folded.config;
        console.log(`model    ${path}: ${describeStructure(branched.structure, branched.config)}`);
        console.log(`fold     ${c.depth} layers, ${c.num_heads} heads x ${c.head_dim}, MLP ${c.mlp_hidden}`);
        const rep = verifyFold(branched, folded, x, label, o.tol);
        rep.lines.forEach((l) => console.log(l));
        let ok = rep.ok;
        if (o.folded !== undefined) {
          const file = loadModel(o.folded);
          const fc = file.config;
          if (fc.depth !== c.depth || fc.num_heads !== c.num_heads || fc.head_dim !== c.head_dim || fc.mlp_hidden !== c.mlp_hidden) {
            throw new CliError(`${o.folded}: has ${describeConfig(fc)}, but the fold of ${path} has ${describeConfig(c)}`);
          }
          const tol = o.foldedTol ?? (file.dtype === 'F64' ? 1e-9 : file.dtype === 'F32' ? 1e-5 : 1e-2);
          const err = compareLogits(rep.branchedLogits, referenceForward(file, x).data);
          const fileOk = err.maxRel <= tol;
          console.log(
            `file     branched vs ${o.folded} (${file.dtype} weights): max abs ${fmtErr(err.maxAbs)}, ` +
              `max rel ${fmtErr(err.maxRel)} (tolerance ${tol})  ${fileOk ? 'OK' : 'FAILED'}`,
          );
          ok &&= fileOk;
        }
        if (!ok) process.exitCode = EXIT.checkFailed;
      },
    );
}
