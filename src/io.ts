// Node file I/O for models and tensors. Kept out of src/core so the core also runs in browsers.
//
// Writes are atomic (temp file in the same directory, fsync, rename): a crash or kill never
// leaves a torn model file where a good one was.

import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
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

export function writeFileAtomic(path: string, bytes: Uint8Array): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  let fd: number | null = null;
  try {
    fd = openSync(tmp, 'w');
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    fsyncSync(fd);
    closeSync(fd);
    fd = null;
    renameSync(tmp, path);
  } catch (e) {
    if (fd !== null) closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  try {
    // Make the rename itself durable.
    const dfd = openSync(dirname(path), 'r');
    fsyncSync(dfd);
    closeSync(dfd);
  } catch {
    // Some filesystems do not allow fsync on directories; the data itself is synced.
  }
}

export function writeSafetensors(path: string, file: SafetensorsFile): void {
  writeFileAtomic(path, serializeSafetensors(file));
}

export function loadModel(path: string, opts: LoadOptions = {}): Model {
  return modelFromSafetensors(readSafetensors(path), path, opts);
}

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

export function readIntTensor(path: string, name: string): { shape: number[]; data: number[] } {
  const file = readSafetensors(path);
  const t: RawTensor | undefined = file.tensors.get(name);
  if (!t) throw new SafetensorsError(`${path}: no tensor named '${name}'`);
  return { shape: [...t.shape], data: decodeInt(t, `${path}: '${name}'`) };
}

export function writeFloatTensors(path: string, tensors: Record<string, Tensor>, dtype: FloatDType = 'F32', metadata?: Record<string, string>): void {
  const map = new Map<string, RawTensor>();
  for (const [name, t] of Object.entries(tensors)) map.set(name, encodeFloat(t.data, t.shape, dtype));
  writeSafetensors(path, metadata ? { tensors: map, metadata } : { tensors: map });
}
