// safetensors: byte-stable round trips, dtype conversion, and clear errors for malformed files.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  decodeFloat,
  decodeInt,
  encodeFloat,
  encodeInt64,
  itemSize,
  numel,
  parseSafetensors,
  SafetensorsError,
  serializeSafetensors,
  type SafetensorsFile,
} from '../../src/core/safetensors.js';
import { readIntTensor, readSafetensors } from '../../src/io.js';
import { GOLDEN } from '../helpers.js';

const goldenFiles = readdirSync(GOLDEN).filter((f) => f.endsWith('.safetensors'));

describe('round trip is byte-stable', () => {
  test('there are golden files to round-trip', () => assert.ok(goldenFiles.length >= 12));
  for (const f of goldenFiles) {
    test(f, () => {
      const bytes = new Uint8Array(readFileSync(join(GOLDEN, f)));
      const parsed = parseSafetensors(bytes, f);
      assert.deepEqual(serializeSafetensors(parsed), bytes);
    });
  }
  test('our own files: serialize(parse(serialize(x))) == serialize(x)', () => {
    const file: SafetensorsFile = {
      tensors: new Map([
        ['b', encodeFloat([1, 2, 3], [3], 'F32')],
        ['a.weight', encodeFloat([0.5, -1, 1e-3, 7], [2, 2], 'BF16')],
        ['labels', encodeInt64([3, 7, 0], [3])],
      ]),
      metadata: { config: '{"x": "quote \\" and ünïcode"}', note: 'kept' },
    };
    const once = serializeSafetensors(file);
    assert.equal((8 + Number(new DataView(once.buffer).getBigUint64(0, true))) % 8, 0, 'header padded to 8 bytes');
    const back = parseSafetensors(once, 'mem');
    assert.deepEqual(back.metadata, file.metadata);
    assert.deepEqual([...back.tensors.keys()], ['b', 'a.weight', 'labels']);
    assert.deepEqual(serializeSafetensors(back), once);
  });
});

describe('dtypes', () => {
  test('F16 and BF16 decode known bit patterns exactly', () => {
    const f16 = { dtype: 'F16' as const, shape: [6], bytes: new Uint8Array(new Uint16Array([0x3c00, 0xc000, 0x0001, 0x7bff, 0x7c00, 0x3555]).buffer) };
    assert.deepEqual([...decodeFloat(f16, 't')], [1, -2, 2 ** -24, 65504, Infinity, 0.333251953125]);
    const bf16 = { dtype: 'BF16' as const, shape: [3], bytes: new Uint8Array(new Uint16Array([0x3f80, 0xc0a0, 0x3e80]).buffer) };
    assert.deepEqual([...decodeFloat(bf16, 't')], [1, -5, 0.25]);
  });
  test('encode rounds to nearest even and decodes back', () => {
    const vals = [0, 1, -2.5, 0.1, 65504, 1e-5, 3.14159];
    for (const dt of ['F16', 'BF16', 'F32', 'F64'] as const) {
      const back = decodeFloat(encodeFloat(vals, [vals.length], dt), dt);
      const rel = dt === 'F16' ? 1e-3 : dt === 'BF16' ? 8e-3 : dt === 'F32' ? 1e-7 : 0;
      vals.forEach((v, i) => assert.ok(Math.abs(back[i] - v) <= rel * Math.abs(v) + (dt === 'F16' ? 6e-8 : 0), `${dt} ${v} -> ${back[i]}`));
    }
    // 1 + 2^-11 is halfway between two halves; ties go to the even one (1.0).
    assert.equal(decodeFloat(encodeFloat([1 + 2 ** -11], [1], 'F16'), '')[0], 1);
    assert.equal(decodeFloat(encodeFloat([1 + 3 * 2 ** -11], [1], 'F16'), '')[0], 1 + 2 ** -9);
  });
  test('I64 labels of the golden fixtures', () => {
    assert.deepEqual(readIntTensor(join(GOLDEN, 'labels.safetensors'), 'labels'), { shape: [2], data: [3, 7] });
  });
  test('decoding with the wrong kind of dtype names the tensor', () => {
    assert.throws(() => decodeFloat(encodeInt64([1], [1]), 'x.safetensors: labels'), /x.safetensors: labels: expected a float tensor .* got I64/);
    assert.throws(() => decodeInt(encodeFloat([1], [1], 'F32'), 'y: t'), /y: t: expected an integer tensor .* got F32/);
  });
});

// Builds a file with a hand-written header so each corruption is exactly the one named.
function withHeader(header: unknown, dataBytes: number, headerText?: string): Uint8Array {
  const json = new TextEncoder().encode(headerText ?? JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

const good = { w: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] }, b: { dtype: 'F32', shape: [2], data_offsets: [16, 24] } };

describe('malformed files give clear errors', () => {
  const cases: [string, Uint8Array, RegExp][] = [
    ['empty file', new Uint8Array(0), /bad.safetensors: not a safetensors file: 0 bytes, too short/],
    ['5 bytes', new Uint8Array(5), /5 bytes, too short for the 8-byte header length/],
    ['header length past the end', (() => { const b = withHeader(good, 24); new DataView(b.buffer).setBigUint64(0, 10n ** 12n, true); return b; })(), /header length field says 1000000000000 bytes but only \d+ bytes follow/],
    ['bad JSON', withHeader(null, 24, '{"w": {"dtype": "F32",'), /header is not valid UTF-8 JSON/],
    ['header not an object', withHeader([1, 2], 0), /header must be a JSON object/],
    ['unknown dtype', withHeader({ w: { ...good.w, dtype: 'F99' } }, 16), /tensor 'w': unsupported dtype "F99"/],
    ['negative dim', withHeader({ w: { ...good.w, shape: [-2, 2] } }, 16), /tensor 'w': shape must be an array of non-negative integers \(got \[-2,2\]\)/],
    ['offsets reversed', withHeader({ w: { ...good.w, data_offsets: [16, 0] } }, 16), /tensor 'w': data_offsets must be \[begin, end\]/],
    ['size does not match shape', withHeader({ w: { ...good.w, shape: [3, 2] } }, 16), /tensor 'w': shape \[3,2\] of F32 needs 24 bytes but data_offsets \[0, 16\] span 16/],
    ['offsets out of range', withHeader({ w: { ...good.w, data_offsets: [8, 24] } }, 16), /tensor 'w': data_offsets \[8, 24\] reach past the 16 bytes of tensor data \(truncated file\?\)/],
    ['overlap', withHeader({ w: good.w, b: { ...good.b, data_offsets: [8, 16] } }, 16), /tensor 'b': data_offsets \[8, 16\] overlap the previous tensor/],
    ['hole', withHeader({ b: { ...good.b, data_offsets: [16, 24] } }, 24), /tensor 'b': 16 bytes before it belong to no tensor/],
    ['trailing bytes', withHeader(good, 40), /16 bytes after the last tensor belong to no tensor/],
    ['metadata not strings', withHeader({ __metadata__: { config: { depth: 1 } } }, 0), /__metadata__.config must be a string/],
  ];
  for (const [name, bytes, re] of cases) {
    test(name, () => {
      assert.throws(() => parseSafetensors(bytes, 'bad.safetensors'), (e: Error) => e instanceof SafetensorsError && re.test(e.message) && e.message.startsWith('bad.safetensors: '));
    });
  }

  test('every truncation of a real file is rejected with a message, never a crash', () => {
    const bytes = new Uint8Array(readFileSync(join(GOLDEN, 'input.safetensors')));
    for (let len = 0; len < bytes.length; len += len < 120 ? 1 : 997) {
      assert.throws(
        () => parseSafetensors(bytes.subarray(0, len), 'cut.safetensors'),
        (e: Error) => e instanceof SafetensorsError && /^cut.safetensors: (not a safetensors file|header length field says|header is not valid|tensor 'x': data_offsets .* reach past)/.test(e.message),
        `length ${len}`,
      );
    }
  });

  test('random byte flips in the header never crash and never pass silently with wrong sizes', () => {
    const bytes = new Uint8Array(readFileSync(join(GOLDEN, 'labels.safetensors')));
    let rejected = 0;
    for (let i = 0; i < 8 + 64; i++) {
      for (const v of [0x00, 0x22, 0x39, 0x7b, 0xff]) {
        const b = Uint8Array.from(bytes);
        b[i] = v;
        try {
          const f = parseSafetensors(b, 'flip');
          // Accepted: then it must be self-consistent.
          for (const t of f.tensors.values()) assert.equal(t.bytes.length, numel(t.shape) * itemSize(t.dtype));
        } catch (e) {
          assert.ok(e instanceof SafetensorsError, `byte ${i} = ${v}: ${(e as Error).stack}`);
          rejected++;
        }
      }
    }
    assert.ok(rejected > 100, `only ${rejected} corruptions detected`);
  });

  test('a missing file names the path', () => {
    assert.throws(() => readSafetensors('/nonexistent/model.safetensors'), /\/nonexistent\/model.safetensors: cannot read: no such file/);
  });
});
