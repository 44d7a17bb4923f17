// The metadata_props of ONNX model bytes, read without a protobuf library, so that a web page
// (or any JavaScript) can learn what a vitfold export is before running it: onnxruntime-web has
// no API for metadata_props. Only the top level of ModelProto is walked; the graph is skipped.

import { parseConfigJson, type ViTConfig } from './config.js';
import { parseNormalization, type Normalization } from './preprocess.js';

/** A protobuf varint at `pos`: [value, next position]. Values above 2^53 are not expected here. */
function varint(b: Uint8Array, pos: number): [number, number] {
  let v = 0;
  let mul = 1;
  for (let i = 0; i < 10; i++) {
    if (pos >= b.length) throw new Error('truncated varint');
    const byte = b[pos++];
    v += (byte & 0x7f) * mul;
    if (byte < 0x80) return [v, pos];
    mul *= 128;
  }
  throw new Error('varint too long');
}

/** Fields of one protobuf message: number -> length-delimited payloads (other wire types skipped). */
function fields(b: Uint8Array, want: Set<number>): Map<number, Uint8Array[]> {
  const out = new Map<number, Uint8Array[]>();
  let pos = 0;
  while (pos < b.length) {
    let key: number;
    [key, pos] = varint(b, pos);
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (wire === 0) [, pos] = varint(b, pos);
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      let len: number;
      [len, pos] = varint(b, pos);
      if (pos + len > b.length) throw new Error('truncated field');
      if (want.has(field)) out.set(field, [...(out.get(field) ?? []), b.subarray(pos, pos + len)]);
      pos += len;
    } else throw new Error(`unsupported wire type ${wire}`);
  }
  return out;
}

/** ModelProto.metadata_props (field 14) as a plain object. */
export function readOnnxMetadata(bytes: Uint8Array): Record<string, string> {
  const text = new TextDecoder();
  const md: Record<string, string> = {};
  for (const entry of fields(bytes, new Set([14])).get(14) ?? []) {
    const kv = fields(entry, new Set([1, 2])); // StringStringEntryProto: key 1, value 2
    const key = kv.get(1)?.[0];
    if (key) md[text.decode(key)] = text.decode(kv.get(2)?.[0] ?? new Uint8Array());
  }
  return md;
}

/** What a page needs to run a vitfold export: its input shape, preprocessing and class names. */
export function describeOnnxExport(bytes: Uint8Array, where = 'model'): { config: ViTConfig; normalization: Normalization | null; classes: string[] | null; metadata: Record<string, string> } {
  const metadata = readOnnxMetadata(bytes);
  if (metadata.config === undefined) throw new Error(`${where}: no vitfold metadata (metadata_props 'config')`);
  const config = parseConfigJson(metadata.config, where);
  const classes = metadata.classes ? (JSON.parse(metadata.classes) as string[]) : null;
  return { config, normalization: parseNormalization(metadata.normalization, config, where), classes, metadata };
}
