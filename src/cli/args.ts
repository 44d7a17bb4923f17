// Number-valued CLI options: each parser names the flag and what it needs in its error.

import { InvalidArgumentError, type Command } from 'commander';
import { dirname, resolve, sep } from 'node:path';
import { VitfoldError } from '../core/errors.js';
import { sameFile } from '../io.js';

/** Exit codes: 0 ok, 1 a check failed (verify or export above tolerance), 2 bad input or usage, 3 a bug. */
export const EXIT = { checkFailed: 1, badInput: 2, internal: 3 } as const;

/** A usage error the CLI reports itself (exit 2). */
export class CliError extends VitfoldError {
  override name = 'CliError';
}

/** With --resume the run's config.json decides everything: any other flag given is an error, not ignored. */
export function refuseFlagsWithResume(cmd: Command): void {
  const given = Object.keys(cmd.opts()).filter((k) => k !== 'resume' && cmd.getOptionValueSource(k) === 'cli');
  const flag = (k: string) => '--' + k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
  if (given.length) throw new CliError(`--resume continues the run as its config.json says; drop ${given.map(flag).join(', ')}`);
}

export function numberArg(flag: string, check: (n: number) => boolean, what: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!check(n)) throw new InvalidArgumentError(`${flag} must be ${what} (got '${v}')`);
    return n;
  };
}

export const positiveInt = (flag: string) => numberArg(flag, (n) => Number.isInteger(n) && n > 0, 'a positive integer');
export const nonNegativeInt = (flag: string) => numberArg(flag, (n) => Number.isInteger(n) && n >= 0, 'a non-negative integer');
export const positiveNumber = (flag: string) => numberArg(flag, (n) => n > 0 && Number.isFinite(n), 'a positive number');
export const nonNegativeNumber = (flag: string) => numberArg(flag, (n) => n >= 0 && Number.isFinite(n), 'a number >= 0');
export const fraction = (flag: string) => numberArg(flag, (n) => n >= 0 && n < 1, 'a number in [0, 1)');

/** A comma-separated list of positive integers, e.g. --depths 12,6,4,3. */
export const positiveIntList = (flag: string) => (v: string): number[] => {
  const xs = v.split(',').map((s) => s.trim());
  const ns = xs.map(Number);
  if (!xs.length || ns.some((n, i) => xs[i] === '' || !Number.isInteger(n) || n <= 0)) throw new InvalidArgumentError(`${flag} must be comma-separated positive integers (got '${v}')`);
  return [...new Set(ns)];
};

/** A comma-separated list of choices, e.g. --precision fp32,int8. */
export const choiceList = <T extends string>(flag: string, choices: readonly T[]) => (v: string): T[] => {
  const xs = v.split(',').map((s) => s.trim());
  const bad = xs.filter((x) => !(choices as readonly string[]).includes(x));
  if (!xs.length || bad.length) throw new InvalidArgumentError(`${flag}: ${bad.map((b) => `'${b}'`).join(', ') || 'empty list'} not one of ${choices.join(', ')}`);
  return [...new Set(xs)] as T[];
};

/** Refuses an --out that is one of the command's inputs (same path or same file): writing it would destroy the input. */
export function refuseOverwrite(out: string, inputs: string[]): void {
  for (const input of inputs) {
    if (resolve(input) === resolve(out) || sameFile(input, out)) throw new CliError(`--out ${out} is the input ${input}: writing it would destroy the input; choose another --out`);
  }
}

/** Refuses a run directory that holds an input file: the run writes (and --force clears) it. */
export function refuseOutsideInput(runDir: string, input: string): void {
  const dir = resolve(runDir);
  if (resolve(dirname(input)) === dir || resolve(input).startsWith(dir + sep)) {
    throw new CliError(`--out ${runDir} holds the input ${input}; the run writes into that directory: choose another --out`);
  }
}

/** This process's command line as a user would type it again: `vitfold <args>`. */
export function commandLine(): string[] {
  return ['vitfold', ...process.argv.slice(2).filter((a) => a !== '--debug')];
}
