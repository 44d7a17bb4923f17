// Number-valued CLI options: each parser names the flag and what it needs in its error.

import { InvalidArgumentError } from 'commander';

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
