// Node file I/O for models and tensors. Kept out of src/core so the core also runs in browsers.
//
// Writes are atomic (temp file in the same directory, fsync, rename): a crash or kill never
// leaves a torn model file where a good one was.

import { randomBytes } from 'node:crypto';
import { appendFileSync, closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { modelFromSafetensors, modelToSafetensors, type LoadOptions, type Model } from './core/model.js';
import type { Tensor } from './core/params.js';
import {
  decodeFloat,
  decodeInt,
  encodeFloat,
  parseSafetensors,
  serializeSafetensors,
  SafetensorsError,
  type FloatDType,
  type RawTensor,
  type SafetensorsFile,
} from './core/safetensors.js';

/** Reads and parses a .safetensors file (errors name the path). */
export function readSafetensors(path: string): SafetensorsFile {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'ENOENT' ? 'no such file' : err.code === 'EISDIR' ? 'is a directory' : err.message;
    throw new SafetensorsError(`${path}: cannot read: ${why}`);
  }
  return parseSafetensors(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), path);
}

/**
 * Fault injection for the crash tests: with VITFOLD_FAULT_AT=N the process kills itself
 * (SIGKILL, as a crash or an OOM kill would) at its N-th write point; with
 * VITFOLD_WRITE_TRACE=FILE every write point is appended to FILE, so a test can count them.
 * A write point is a completed durable step: a temp file written, a rename, a log append.
 */
let writePoints = 0;
export function writePoint(what: string): void {
  writePoints++;
  const trace = process.env.VITFOLD_WRITE_TRACE;
  if (trace) appendFileSync(trace, `${writePoints} ${what}\n`);
  if (Number(process.env.VITFOLD_FAULT_AT) === writePoints) process.kill(process.pid, 'SIGKILL');
}

/** A temp name beside `path`, unique and unguessable: created with 'wx', it never follows a planted link. */
export function tempPath(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
}

/** fsync a directory so that renames into it are durable (not every filesystem allows it). */
export function syncDir(dir: string): void {
  try {
    const dfd = openSync(dir, 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch {
    // The data itself is synced; the rename is as durable as the filesystem makes it.
  }
}

/** Writes `bytes` to a new file at `path` (exclusive create) and fsyncs it. */
export function writeFileSynced(path: string, bytes: Uint8Array): void {
  const fd = openSync(path, 'wx', 0o644);
  try {
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    fsyncSync(fd);
  } catch (e) {
    throw withPath(e, path);
  } finally {
    closeSync(fd);
  }
}

/** write(2) and fsync(2) errors carry no path: add it, so the message can name the file. */
function withPath(e: unknown, path: string): unknown {
  const err = e as NodeJS.ErrnoException;
  if (err && typeof err === 'object' && err.code && !err.path) err.path = path;
  return err;
}

/**
 * Replaces `path` atomically (temp file in the same directory, fsync, rename): a crash or kill
 * never leaves a torn file where a good one was.
 */
export function writeFileAtomic(path: string, bytes: Uint8Array | string): void {
  const data = typeof bytes === 'string' ? new TextEncoder().encode(bytes) : bytes;
  const tmp = tempPath(path);
  try {
    writeFileSynced(tmp, data);
    writePoint(`wrote ${basename(tmp)}`);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    // Name the file the user asked for, not our temp file.
    const err = e as NodeJS.ErrnoException;
    if (err && typeof err === 'object' && err.path === tmp) Object.assign(err, { path, syscall: 'write', dest: undefined });
    throw e;
  }
  writePoint(`renamed to ${basename(path)}`);
  syncDir(dirname(path));
}

/** Appends one line to a log file (a write point). */
export function appendLine(path: string, line: string): void {
  try {
    appendFileSync(path, line + '\n');
  } catch (e) {
    throw withPath(e, path);
  }
  writePoint(`appended to ${basename(path)}`);
}

/** The same file (same device and inode)? False when either does not exist. */
export function sameFile(a: string, b: string): boolean {
  try {
    const [sa, sb] = [statSync(a), statSync(b)];
    return sa.dev === sb.dev && sa.ino === sb.ino;
  } catch {
    return false;
  }
}

/** Writes a .safetensors file atomically. */
export function writeSafetensors(path: string, file: SafetensorsFile): void {
  writeFileAtomic(path, serializeSafetensors(file));
}

/**
 * Loads a model file: vitfold metadata when present, else a timm checkpoint with the config
 * inferred from the shapes.
 */
export function loadModel(path: string, opts: LoadOptions = {}): Model {
  return modelFromSafetensors(readSafetensors(path), path, opts);
}

/**
 * Saves a model with its config, structure and metadata (atomically), in its own dtype or the one
 * given.
 */
export function saveModel(path: string, model: Model, dtype?: FloatDType): void {
  writeSafetensors(path, modelToSafetensors(model, dtype));
}

/** Reads one float tensor by name, checking its rank when `rank` is given. */
export function readFloatTensor(path: string, name: string, rank?: number): Tensor {
  const file = readSafetensors(path);
  const t = file.tensors.get(name);
  if (!t) {
    throw new SafetensorsError(
      `${path}: no tensor named '${name}' (found: ${[...file.tensors.keys()].join(', ') || 'none'})`,
    );
  }
  if (rank !== undefined && t.shape.length !== rank) {
    throw new SafetensorsError(`${path}: '${name}' has shape ${JSON.stringify(t.shape)}, expected rank ${rank}`);
  }
  return { shape: [...t.shape], data: decodeFloat(t, `${path}: '${name}'`) };
}

/** An integer tensor (e.g. labels) from a .safetensors file. */
export function readIntTensor(path: string, name: string): { shape: number[]; data: number[] } {
  const file = readSafetensors(path);
  const t: RawTensor | undefined = file.tensors.get(name);
  if (!t) throw new SafetensorsError(`${path}: no tensor named '${name}'`);
  return { shape: [...t.shape], data: decodeInt(t, `${path}: '${name}'`) };
}

/** Writes float tensors (e.g. logits) to a .safetensors file atomically. */
export function writeFloatTensors(path: string, tensors: Record<string, Tensor>, dtype: FloatDType = 'F32', metadata?: Record<string, string>): void {
  const map = new Map<string, RawTensor>();
  for (const [name, t] of Object.entries(tensors)) map.set(name, encodeFloat(t.data, t.shape, dtype));
  writeSafetensors(path, metadata ? { tensors: map, metadata } : { tensors: map });
}
