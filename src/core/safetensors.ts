// safetensors read/write (the format of every vitfold model, input and gradient file).
//
// Layout: u64 little-endian header length N, N bytes of JSON header, then the data buffer.
// The header maps tensor names to {dtype, shape, data_offsets: [begin, end]} (offsets relative
// to the data buffer) plus an optional "__metadata__" object of string -> string.
//
// Parsing is strict, like the reference Rust implementation: every problem (short file, header
// length past the end, bad JSON, unknown dtype, size not matching shape, offsets out of range,
// overlapping tensors, holes, trailing bytes) is an error that names the file and the tensor.
// Writing keeps tensor order and puts __metadata__ last, padding the header with spaces to a
// multiple of 8 bytes, which is what PyTorch's `safetensors` writes: reading and rewriting a
// file gives the same bytes.

import { VitfoldError } from './errors.js';

/** The safetensors dtypes vitfold reads. */
export type DType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const ITEM_SIZE: Record<DType, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

/** The float dtypes a model file may use. */
export const FLOAT_DTYPES: readonly DType[] = ['F64', 'F32', 'F16', 'BF16'];

/** A tensor as stored: dtype, shape and raw little-endian bytes. */
export interface RawTensor {
  dtype: DType;
  shape: number[];
  /** Little-endian element bytes (a view into the file buffer when parsed). */
  bytes: Uint8Array;
}

/** A safetensors file: its tensors by name and its __metadata__ strings. */
export interface SafetensorsFile {
  tensors: Map<string, RawTensor>;
  metadata?: Record<string, string>;
}

/** A file that is not valid safetensors (names the file and what is wrong). */
export class SafetensorsError extends VitfoldError {
  override name = 'SafetensorsError';
}

// A header larger than this is not a model header but a corrupted length field.
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** The element count of a shape. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Bytes per element of a safetensors dtype. */
export function itemSize(dtype: DType): number {
  return ITEM_SIZE[dtype];
}

/**
 * Parses safetensors bytes (header validated: offsets, shapes, dtypes, sizes); `where` names the
 * file in errors.
 */
export function parseSafetensors(buf: Uint8Array, where: string): SafetensorsFile {
  const fail = (msg: string): never => {
    throw new SafetensorsError(`${where}: ${msg}`);
  };
  if (buf.length < 8) {
    fail(`not a safetensors file: ${buf.length} bytes, too short for the 8-byte header length`);
  }
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const headerLen = dv.getBigUint64(0, true);
  if (headerLen > BigInt(buf.length - 8)) {
    fail(
      `header length field says ${headerLen} bytes but only ${buf.length - 8} bytes follow ` +
        `(truncated file, or not a safetensors file)`,
    );
  }
  const n = Number(headerLen);
  if (n > MAX_HEADER_BYTES) fail(`header length ${n} bytes exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  if (n < 2) fail(`header length ${n} is too small for a JSON object`);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(8, 8 + n)));
  } catch (e) {
    fail(`header is not valid UTF-8 JSON: ${(e as Error).message}`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    fail('header must be a JSON object');
  }
  const data = buf.subarray(8 + n);
  const entries: { name: string; dtype: DType; shape: number[]; begin: number; end: number }[] = [];
  let metadata: Record<string, string> | undefined;
  for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        fail('__metadata__ must be an object of string values');
      }
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`__metadata__.${k} must be a string (got ${typeof v})`);
      }
      metadata = value as Record<string, string>;
      continue;
    }
    if (typeof value !== 'object' || value === null) fail(`tensor '${name}': entry must be an object`);
    const v = value as Record<string, unknown>;
    const dtype = v.dtype;
    if (typeof dtype !== 'string' || !(dtype in ITEM_SIZE)) {
      fail(
        `tensor '${name}': unsupported dtype ${JSON.stringify(dtype)} ` +
          `(supported: ${Object.keys(ITEM_SIZE).join(', ')})`,
      );
    }
    const shape = v.shape;
    if (
      !Array.isArray(shape) ||
      !shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)
    ) {
      fail(`tensor '${name}': shape must be an array of non-negative integers (got ${JSON.stringify(shape)})`);
    }
    const offs = v.data_offsets;
    if (
      !Array.isArray(offs) ||
      offs.length !== 2 ||
      !offs.every((o) => typeof o === 'number' && Number.isSafeInteger(o) && o >= 0) ||
      offs[0] > offs[1]
    ) {
      fail(`tensor '${name}': data_offsets must be [begin, end] with 0 <= begin <= end (got ${JSON.stringify(offs)})`);
    }
    const [begin, end] = offs as [number, number];
    const need = numel(shape as number[]) * ITEM_SIZE[dtype as DType];
    if (end - begin !== need) {
      fail(
        `tensor '${name}': shape ${JSON.stringify(shape)} of ${dtype} needs ${need} bytes ` +
          `but data_offsets [${begin}, ${end}] span ${end - begin}`,
      );
    }
    if (end > data.length) {
      fail(
        `tensor '${name}': data_offsets [${begin}, ${end}] reach past the ${data.length} bytes ` +
          `of tensor data (truncated file?)`,
      );
    }
    entries.push({ name, dtype: dtype as DType, shape: shape as number[], begin, end });
  }
  // Data order, not header key order: JSON.parse reorders integer-like keys, and the data
  // layout is what makes a rewrite byte-identical.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const e of entries) {
    if (e.begin < cursor) fail(`tensor '${e.name}': data_offsets [${e.begin}, ${e.end}] overlap the previous tensor`);
    if (e.begin > cursor) fail(`tensor '${e.name}': ${e.begin - cursor} bytes before it belong to no tensor`);
    cursor = e.end;
  }
  if (cursor !== data.length) {
    fail(`${data.length - cursor} bytes after the last tensor belong to no tensor (corrupted file?)`);
  }
  const tensors = new Map<string, RawTensor>();
  for (const e of entries) {
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, bytes: data.subarray(e.begin, e.end) });
  }
  return metadata ? { tensors, metadata } : { tensors };
}

/**
 * Safetensors bytes of tensors (in the map's order) and __metadata__, the header padded to 8 bytes.
 */
export function serializeSafetensors(file: SafetensorsFile): Uint8Array {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, t] of file.tensors) {
    if (name === '__metadata__') throw new SafetensorsError(`'__metadata__' is not a valid tensor name`);
    const need = numel(t.shape) * ITEM_SIZE[t.dtype];
    if (t.bytes.length !== need) {
      throw new SafetensorsError(
        `tensor '${name}': ${t.bytes.length} bytes given for shape ${JSON.stringify(t.shape)} of ${t.dtype} (needs ${need})`,
      );
    }
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + need] };
    offset += need;
  }
  if (file.metadata) header.__metadata__ = file.metadata;
  let json = new TextEncoder().encode(JSON.stringify(header));
  const pad = (8 - ((8 + json.length) % 8)) % 8;
  if (pad) {
    const padded = new Uint8Array(json.length + pad).fill(0x20);
    padded.set(json);
    json = padded;
  }
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let p = 8 + json.length;
  for (const t of file.tensors.values()) {
    out.set(t.bytes, p);
    p += t.bytes.length;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// dtype conversion

function f16ToF64(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** Round-to-nearest-even float64 -> IEEE half. */
function f64ToF16(x: number): number {
  f32Scratch[0] = x;
  const f = u32Scratch[0];
  const sign = (f >>> 16) & 0x8000;
  const exp = (f >>> 23) & 0xff;
  const mant = f & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = (mant | 0x800000) >>> 0;
    const shift = 14 - e;
    let half = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}

/** Decodes a float tensor of any supported float dtype to float64 (exactly). */
export function decodeFloat(t: RawTensor, what: string): Float64Array {
  const n = numel(t.shape);
  const out = new Float64Array(n);
  const dv = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);
  switch (t.dtype) {
    case 'F64':
      for (let i = 0; i < n; i++) out[i] = dv.getFloat64(8 * i, true);
      return out;
    case 'F32':
      for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, true);
      return out;
    case 'F16':
      for (let i = 0; i < n; i++) out[i] = f16ToF64(dv.getUint16(2 * i, true));
      return out;
    case 'BF16':
      for (let i = 0; i < n; i++) {
        u32Scratch[0] = dv.getUint16(2 * i, true) << 16;
        out[i] = f32Scratch[0];
      }
      return out;
    default:
      throw new SafetensorsError(`${what}: expected a float tensor (F32, F16, BF16 or F64), got ${t.dtype}`);
  }
}

/** Decodes an integer tensor (I64, I32, I16, I8, U8) to numbers; I64 values must be safe integers. */
export function decodeInt(t: RawTensor, what: string): number[] {
  const n = numel(t.shape);
  const dv = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    switch (t.dtype) {
      case 'I64': {
        const v = dv.getBigInt64(8 * i, true);
        if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
          throw new SafetensorsError(`${what}: element ${i} = ${v} is out of range`);
        }
        out[i] = Number(v);
        break;
      }
      case 'I32':
        out[i] = dv.getInt32(4 * i, true);
        break;
      case 'I16':
        out[i] = dv.getInt16(2 * i, true);
        break;
      case 'I8':
        out[i] = dv.getInt8(i);
        break;
      case 'U8':
        out[i] = dv.getUint8(i);
        break;
      default:
        throw new SafetensorsError(`${what}: expected an integer tensor (I64, I32, I16, I8, U8), got ${t.dtype}`);
    }
  }
  return out;
}

/** The float dtypes a model can be saved in. */
export type FloatDType = 'F64' | 'F32' | 'F16' | 'BF16';

/** Encodes float values to the given dtype (round to nearest even). */
export function encodeFloat(values: ArrayLike<number>, shape: number[], dtype: FloatDType): RawTensor {
  const n = values.length;
  if (n !== numel(shape)) {
    throw new SafetensorsError(`encodeFloat: ${n} values for shape ${JSON.stringify(shape)}`);
  }
  const bytes = new Uint8Array(n * ITEM_SIZE[dtype]);
  const dv = new DataView(bytes.buffer);
  switch (dtype) {
    case 'F64':
      for (let i = 0; i < n; i++) dv.setFloat64(8 * i, values[i], true);
      break;
    case 'F32':
      for (let i = 0; i < n; i++) dv.setFloat32(4 * i, values[i], true);
      break;
    case 'F16':
      for (let i = 0; i < n; i++) dv.setUint16(2 * i, f64ToF16(values[i]), true);
      break;
    case 'BF16':
      for (let i = 0; i < n; i++) {
        f32Scratch[0] = values[i];
        const u = u32Scratch[0];
        // NaN stays NaN; otherwise round to nearest even on the upper 16 bits.
        const r = (u & 0x7fffffff) > 0x7f800000 ? (u >>> 16) | 0x40 : (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
        dv.setUint16(2 * i, r & 0xffff, true);
      }
      break;
  }
  return { dtype, shape: [...shape], bytes };
}

/** An I64 tensor of integer values. */
export function encodeInt64(values: ArrayLike<number>, shape: number[]): RawTensor {
  const bytes = new Uint8Array(values.length * 8);
  const dv = new DataView(bytes.buffer);
  for (let i = 0; i < values.length; i++) dv.setBigInt64(8 * i, BigInt(values[i]), true);
  return { dtype: 'I64', shape: [...shape], bytes };
}
