// An experiment: the rows of a results table, each a vitfold command run for several seeds,
// with a shared teacher (a trained deep model) cached in its own run directory.
//
// {
//   "name": "shrink-fm-10pct",                       results file names
//   "title": "...",                                    table caption
//   "seeds": [0, 1, 2],
//   "teacher": { "dir": "experiments/teachers/fm12", "model": "last.safetensors",
//                "args": ["train", "--join", "none", "--epochs", "5"] },
//   "rows": [ { "id": "join-kd-3", "label": "join + distillation (vitfold)",
//               "args": ["shrink", "{teacher}", "--depth", "3", "--seed", "{seed}"] } ]
// }
// In args, {teacher} is the teacher's model file and {seed} the seed; every run gets --out.
// A row with "seeds": [0] runs once (e.g. the instant fold, which has nothing random).

import { VitfoldError } from '../core/errors.js';
import { readFileSync } from 'node:fs';

/**
 * The shared teacher of an experiment: its run directory, model file and the command that trains
 * it when absent.
 */
export interface TeacherSpec {
  /** Run directory (shared by every experiment that names it: trained once). */
  dir: string;
  /** The model file inside dir that the rows start from. */
  model: string;
  /** vitfold command line that trains it (without --out). */
  args: string[];
}

/**
 * One row of an experiment table: an id, a label and the vitfold arguments it runs ({teacher} and
 * {seed} substituted).
 */
export interface RowSpec {
  id: string;
  label: string;
  args: string[];
  /** Overrides the experiment's seeds (e.g. [0] for a deterministic row). */
  seeds?: number[];
}

/**
 * An experiment: a title, seeds, a shared teacher and the rows of its table (each a vitfold
 * command).
 */
export interface ExperimentSpec {
  name: string;
  title: string;
  seeds: number[];
  teacher?: TeacherSpec;
  rows: RowSpec[];
}

/** An experiment spec or results directory that is wrong (names the field). */
export class ExperimentError extends VitfoldError {
  override name = 'ExperimentError';
}

const isStrings = (a: unknown): a is string[] => Array.isArray(a) && a.every((s) => typeof s === 'string');
const isSeeds = (a: unknown): a is number[] => Array.isArray(a) && a.length > 0 && a.every((n) => Number.isInteger(n) && n >= 0);

/** Reads and checks a spec file; errors name the file and the field. */
export function readSpec(path: string): ExperimentSpec {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new ExperimentError(`${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : `not valid JSON: ${(e as Error).message}`}`);
  }
  const bad = (field: string, what: string) => new ExperimentError(`${path}: ${field} must be ${what}`);
  if (typeof o.name !== 'string' || !/^[A-Za-z0-9._-]+$/.test(o.name)) throw bad('name', 'a file-name-safe string (letters, digits, . _ -)');
  if (typeof o.title !== 'string') throw bad('title', 'a string');
  if (!isSeeds(o.seeds)) throw bad('seeds', 'a non-empty array of integers >= 0');
  const t = o.teacher as Record<string, unknown> | undefined;
  if (t !== undefined && (typeof t.dir !== 'string' || typeof t.model !== 'string' || !isStrings(t.args) || !t.args.length)) throw bad('teacher', 'an object with dir, model (strings) and args (a vitfold command line)');
  if (!Array.isArray(o.rows) || !o.rows.length) throw bad('rows', 'a non-empty array');
  const ids = new Set<string>();
  o.rows.forEach((r: Record<string, unknown>, i: number) => {
    if (typeof r.id !== 'string' || !/^[A-Za-z0-9._-]+$/.test(r.id)) throw bad(`rows[${i}].id`, 'a file-name-safe string');
    if (ids.has(r.id)) throw bad(`rows[${i}].id`, `unique ('${r.id}' appears twice)`);
    ids.add(r.id);
    if (typeof r.label !== 'string') throw bad(`rows[${i}].label`, 'a string');
    if (!isStrings(r.args) || !r.args.length) throw bad(`rows[${i}].args`, 'a vitfold command line (array of strings)');
    if (r.args.some((a) => a.includes('{teacher}')) && !t) throw bad(`rows[${i}].args`, 'free of {teacher} when the experiment has no teacher');
    if (r.args.includes('--out')) throw bad(`rows[${i}].args`, 'without --out (the harness gives every run its own directory)');
    if (r.seeds !== undefined && !isSeeds(r.seeds)) throw bad(`rows[${i}].seeds`, 'a non-empty array of integers >= 0');
  });
  return o as unknown as ExperimentSpec;
}
