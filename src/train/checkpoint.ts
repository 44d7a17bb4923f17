// A run directory: its lock, and its epoch checkpoints committed atomically.
//
//   <run>/lock                          pid of the process that owns the run (removed at exit)
//   <run>/checkpoints/epoch-0003/       every file of one epoch's checkpoint:
//       model.safetensors               the model with its join state at the end of the epoch
//       state.safetensors               AdamW moments, step, every RNG state, best top-1
//       ema.safetensors                 EMA weights, when the run keeps them
//   <run>/checkpoint.json               the commit: the epoch, its directory, the sha256 of each
//                                       file, the byte length of log.jsonl at the commit, and
//                                       the directory of the best epoch
//   <run>/last.safetensors, best.safetensors, ema.safetensors
//                                       the user's copies (hard links), published after each commit
//
// An epoch's files are written into a temp directory, fsynced, and the directory renamed into
// place; only then is checkpoint.json replaced (one atomic rename: the commit point). A crash at
// any moment leaves either the previous commit or the new one, never a mix, and resume reads
// only what checkpoint.json names, after checking every hash.

import { createHash } from 'node:crypto';
import { closeSync, copyFileSync, existsSync, fsyncSync, linkSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, truncateSync } from 'node:fs';
import { basename, join } from 'node:path';
import { VitfoldError } from '../core/errors.js';
import { sameFile, syncDir, tempPath, writeFileAtomic, writeFileSynced, writePoint } from '../io.js';

/**
 * A run directory that cannot be used: locked by a live process, not empty without --force, or
 * damaged.
 */
export class RunDirError extends VitfoldError {
  override name = 'RunDirError';
}

/** The file whose atomic rename commits an epoch of a run (see Checkpoint). */
export const CHECKPOINT_FILE = 'checkpoint.json';
/** The checkpoint's files, and the run-directory copy each is published as. */
const PUBLISHED: Record<string, string> = { 'model.safetensors': 'last.safetensors', 'ema.safetensors': 'ema.safetensors' };

/**
 * checkpoint.json: the last committed epoch of a run, its files with their sha256, the log length
 * and the best epoch.
 */
export interface Checkpoint {
  epoch: number;
  /** Directory of this epoch's files, relative to the run directory. */
  dir: string;
  /** sha256 (hex) of each file in `dir`. */
  files: Record<string, string>;
  /** Byte length of log.jsonl at the commit: anything after it was logged after this epoch. */
  log_bytes: number;
  /** The best epoch's model (relative path), published as best.safetensors. */
  best: { epoch: number; top1: number; model: string };
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const epochDir = (epoch: number) => join('checkpoints', `epoch-${String(epoch).padStart(4, '0')}`);

/** The committed checkpoint of a run, or null when no epoch has been committed. */
export function readCheckpoint(runDir: string): Checkpoint | null {
  const p = join(runDir, CHECKPOINT_FILE);
  if (!existsSync(p)) return null;
  let c: Checkpoint;
  try {
    c = JSON.parse(readFileSync(p, 'utf8')) as Checkpoint;
  } catch (e) {
    throw new RunDirError(`${p}: not valid JSON (${(e as Error).message}); the run cannot be resumed`);
  }
  const ok = Number.isInteger(c?.epoch) && c.epoch >= 1 && typeof c.dir === 'string' && typeof c.files === 'object' && c.files !== null && Number.isInteger(c.log_bytes) && c.log_bytes >= 0 && typeof c.best?.model === 'string';
  if (!ok || c.dir !== epochDir(c.epoch) || /(^|[\\/])\.\.([\\/]|$)/.test(c.best.model)) throw new RunDirError(`${p}: not a vitfold checkpoint record; the run cannot be resumed`);
  return c;
}

/**
 * Reads the checkpoint's files after checking each one's sha256, so resume never continues from
 * a file that is not the one committed.
 */
export function readCheckpointFiles(runDir: string, c: Checkpoint): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  for (const [name, hash] of Object.entries(c.files)) {
    const p = join(runDir, c.dir, name);
    if (!existsSync(p)) throw new RunDirError(`${p}: missing; ${CHECKPOINT_FILE} names it (epoch ${c.epoch}), so the run cannot be resumed`);
    const bytes = readFileSync(p);
    if (sha256(bytes) !== hash) throw new RunDirError(`${p}: its sha256 differs from the one ${CHECKPOINT_FILE} recorded (epoch ${c.epoch}): the file changed after the commit`);
    out.set(name, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }
  return out;
}

/** Makes the log durable and returns its length (the commit records it). */
function syncedLength(path: string): number {
  const fd = openSync(path, 'r+');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return statSync(path).size;
}

/**
 * Commits one epoch: writes `files` into checkpoints/epoch-NNNN (temp directory, fsync,
 * rename), then replaces checkpoint.json, then publishes the user's copies and removes the
 * checkpoints no longer needed (all but this epoch's and the best one's).
 */
export function commitCheckpoint(runDir: string, epoch: number, files: Map<string, Uint8Array>, logPath: string, best: { epoch: number; top1: number }): Checkpoint {
  const dir = epochDir(epoch);
  const tmp = tempPath(join(runDir, dir));
  mkdirSync(join(runDir, 'checkpoints'), { recursive: true });
  mkdirSync(tmp);
  const hashes: Record<string, string> = {};
  try {
    for (const [name, bytes] of files) {
      writeFileSynced(join(tmp, name), bytes);
      hashes[name] = sha256(bytes);
      writePoint(`wrote ${dir}/${name}`);
    }
    syncDir(tmp);
    // A directory of this epoch left by an earlier crash was never committed: replace it.
    rmSync(join(runDir, dir), { recursive: true, force: true });
    renameSync(tmp, join(runDir, dir));
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true }); // e.g. ENOSPC: give the space back
    throw e;
  }
  writePoint(`renamed to ${dir}`);
  syncDir(join(runDir, 'checkpoints'));
  const prev = readCheckpoint(runDir);
  const model = join(dir, 'model.safetensors');
  const bestRec = { ...best, model: best.epoch === epoch || !prev ? model : prev.best.model };
  const c: Checkpoint = { epoch, dir, files: hashes, log_bytes: syncedLength(logPath), best: bestRec };
  writeFileAtomic(join(runDir, CHECKPOINT_FILE), JSON.stringify(c, null, 2) + '\n');
  publish(runDir, c);
  return c;
}

/** Copies the committed files to last/best/ema.safetensors (each replaced atomically) and prunes. */
export function publish(runDir: string, c: Checkpoint): void {
  // A hard link costs no space (a checkpoint of a large model is hundreds of MB); a copy where
  // the filesystem has no links. Resume checks hashes, so an edited copy cannot leak back in.
  const copy = (from: string, to: string) => {
    // Already published (rename of one link onto another link of the same file does nothing).
    if (sameFile(from, to)) return;
    const tmp = tempPath(to);
    try {
      try {
        linkSync(from, tmp);
      } catch {
        copyFileSync(from, tmp);
        const fd = openSync(tmp, 'r+');
        fsyncSync(fd);
        closeSync(fd);
      }
      renameSync(tmp, to);
    } catch (e) {
      rmSync(tmp, { force: true });
      throw e;
    }
    writePoint(`published ${basename(to)}`);
  };
  for (const [name, target] of Object.entries(PUBLISHED)) if (c.files[name]) copy(join(runDir, c.dir, name), join(runDir, target));
  copy(join(runDir, c.best.model), join(runDir, 'best.safetensors'));
  const keep = new Set([basename(c.dir), c.best.model.split(/[\\/]/)[1]]);
  for (const d of readdirSync(join(runDir, 'checkpoints'))) if (!keep.has(d)) rmSync(join(runDir, 'checkpoints', d), { recursive: true, force: true });
}

/**
 * Brings a run directory back to its last commit before resuming: the log cut to the committed
 * length (steps logged after it are run again), the user's copies republished, temp files of an
 * interrupted write removed. Returns the commit; an error when there is none.
 */
export function restoreCheckpoint(runDir: string, logPath: string): Checkpoint {
  const c = readCheckpoint(runDir);
  if (!c) {
    throw new RunDirError(`${runDir}: no epoch has finished, so there is no checkpoint to resume from; start the run again with --force (it replaces what is there)`);
  }
  const size = existsSync(logPath) ? statSync(logPath).size : -1;
  if (size < c.log_bytes) throw new RunDirError(`${logPath}: ${size < 0 ? 'missing' : `${size} bytes, shorter than the ${c.log_bytes} committed at epoch ${c.epoch}`}; the run cannot be resumed`);
  if (size > c.log_bytes) truncateSync(logPath, c.log_bytes);
  for (const name of readdirSync(runDir)) if (/^\..*\.tmp$/.test(name)) rmSync(join(runDir, name), { recursive: true, force: true });
  if (existsSync(join(runDir, 'checkpoints'))) {
    for (const name of readdirSync(join(runDir, 'checkpoints'))) if (/^\..*\.tmp$/.test(name)) rmSync(join(runDir, 'checkpoints', name), { recursive: true, force: true });
  }
  publish(runDir, c);
  return c;
}

/** Is a process with this pid alive (signal 0 checks without sending anything)? */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes the run directory's lock (a `lock` file holding this process's pid, created
 * exclusively); a lock left by a process that no longer runs is taken over. For a fresh run the
 * directory must be empty, or `force` clears it. Returns the function that releases the lock.
 */
export function openRunDir(runDir: string, how: { fresh: boolean; force?: boolean; command: string }): () => void {
  if (existsSync(runDir) && !statSync(runDir).isDirectory()) throw new RunDirError(`${runDir}: exists and is not a directory; choose another --out`);
  mkdirSync(runDir, { recursive: true });
  const lock = join(runDir, 'lock');
  for (let attempt = 0; ; attempt++) {
    try {
      writeFileSynced(lock, new TextEncoder().encode(`${process.pid} ${how.command}\n`));
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw e;
      const [pidText, cmd] = readFileSync(lock, 'utf8').trim().split(' ');
      const pid = Number(pidText);
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
        throw new RunDirError(`${runDir}: in use by process ${pid} (vitfold ${cmd ?? '?'}); wait for it to finish or stop it`);
      }
      rmSync(lock, { force: true }); // left by a process that no longer runs
    }
  }
  const release = () => rmSync(lock, { force: true });
  if (how.fresh) {
    const others = readdirSync(runDir).filter((n) => n !== 'lock');
    if (others.length && !how.force) {
      release();
      const done = existsSync(join(runDir, CHECKPOINT_FILE)) || existsSync(join(runDir, 'config.json'));
      throw new RunDirError(
        `${runDir}: not empty (${others.slice(0, 4).join(', ')}${others.length > 4 ? ', ...' : ''}); ` +
          (done ? `it holds a run: --resume ${runDir} continues it, --force replaces it, or choose another --out` : 'choose another --out, or --force to replace what is there'),
      );
    }
    for (const n of others) rmSync(join(runDir, n), { recursive: true, force: true });
  }
  return release;
}

/**
 * The records of a run's log.jsonl ([] when there is none). A torn last line is what a kill
 * in the middle of an append leaves (resume cuts it away) and is skipped; a torn line anywhere
 * else means the file was damaged.
 */
export function readRunLog(runDir: string): Record<string, unknown>[] {
  const p = join(runDir, 'log.jsonl');
  if (!existsSync(p)) return [];
  const lines = readFileSync(p, 'utf8').split('\n');
  const out: Record<string, unknown>[] = [];
  lines.forEach((l, i) => {
    if (!l.trim()) return;
    try {
      out.push(JSON.parse(l) as Record<string, unknown>);
    } catch {
      const last = lines.slice(i + 1).every((rest) => !rest.trim());
      if (!last) throw new RunDirError(`${p}: line ${i + 1} is not valid JSON (the log was damaged)`);
    }
  });
  return out;
}
