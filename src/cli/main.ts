#!/usr/bin/env node
// The vitfold command line: one file per command (src/cli/<command>.ts), assembled here, and
// the one place errors become exit codes and messages.

import { Command, CommanderError } from 'commander';
import { fileSystemError, VitfoldError } from '../core/errors.js';
import { EXIT } from './args.js';
import { VERSION } from '../version.js';
import { addInfoCommand } from './info.js';
import { addInitCommand } from './init.js';
import { addFoldCommand } from './fold.js';
import { addVerifyCommand } from './verify.js';
import { addPredictCommand } from './predict.js';
import { addExportCommand } from './export.js';
import { addEvalCommand } from './eval.js';
import { addTrainCommands } from './train.js';
import { addShrinkCommand } from './shrink.js';
import { addExperimentCommand } from './experiment.js';
import { addDemoCommand } from './demo.js';
import { addBenchCommand } from './bench.js';
import { addAppCommand } from './app.js';
import { addReportCommand } from './report.js';

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('vitfold')
    .description(
      'Make Vision Transformers shallower without losing accuracy: train parallel branches, join them, ' +
        'then fold each block exactly into one wider layer (Zhou et al., arXiv 2511.19718).',
    )
    .version(VERSION)
    .exitOverride()
    .option('--debug', 'print a stack trace with any error')
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText(
      'after',
      `
Examples:
  $ vitfold init --preset deit-tiny --out deit-tiny.safetensors
  $ vitfold info deit-tiny.safetensors
  $ vitfold fold deit-tiny.safetensors --branches 4 --assume-joined --out deit-tiny-3layer.safetensors
  $ vitfold verify deit-tiny.safetensors --branches 4 --assume-joined --folded deit-tiny-3layer.safetensors
  $ vitfold train --epochs 5 --out runs/fm
  $ vitfold demo
  $ vitfold app`,
    );

  addInfoCommand(program);
  addInitCommand(program);
  addFoldCommand(program);
  addVerifyCommand(program);
  addPredictCommand(program);
  addExportCommand(program);
  addEvalCommand(program);
  addTrainCommands(program);
  addShrinkCommand(program);
  addExperimentCommand(program);
  addDemoCommand(program);
  addBenchCommand(program);
  addReportCommand(program);
  addAppCommand(program);

  return program;
}

export async function main(argv: string[]): Promise<void> {
  // Output piped into a reader that stops early (`vitfold info m | head`): stop quietly.
  for (const stream of [process.stdout, process.stderr]) stream.on('error', (e: NodeJS.ErrnoException) => (e.code === 'EPIPE' ? process.exit(0) : undefined));
  const debug = argv.includes('--debug');
  try {
    await buildProgram().parseAsync(argv.filter((a) => a !== '--debug'));
  } catch (e) {
    if (e instanceof CommanderError) {
      // Commander has printed its message (unknown option, invalid argument) or the help.
      process.exitCode = e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.exitCode === 0 ? 0 : EXIT.badInput;
      return;
    }
    // Errors about the user's input, flags or files: the message, not a stack trace.
    const user = e instanceof VitfoldError ? e : fileSystemError(e);
    if (user) {
      process.stderr.write(`vitfold: error: ${user.message}\n`);
      if (debug) process.stderr.write(`${(e as Error).stack}\n`);
      process.exitCode = EXIT.badInput;
      return;
    }
    // Anything else is a bug in vitfold: one line, and how to see the trace.
    const msg = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    process.stderr.write(debug ? `${(e as Error)?.stack ?? msg}\n` : `vitfold: internal error: ${msg.split('\n')[0]}\n(rerun with --debug for a stack trace, and please report it)\n`);
    process.exitCode = EXIT.internal;
  }
}

await main(process.argv);
