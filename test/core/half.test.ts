// float16 conversion (src/core/half.ts), used by fp16 exports.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fromHalfBits, toHalfBits } from '../../src/core/half.js';

test('toHalfBits: known values, rounding to nearest even, overflow and subnormals', () => {
  const cases: [number, number][] = [
    [0, 0x0000], [-0, 0x8000], [1, 0x3c00], [-2, 0xc000], [0.5, 0x3800], [65504, 0x7bff],
    [65520, 0x7c00], // halfway to 2^16 rounds to even: overflow
    [65519, 0x7bff], [0.1, 0x2e66], [1 / 3, 0x3555],
    [2 ** -24, 0x0001], [2 ** -25, 0x0000], [1.5 * 2 ** -24, 0x0002], [2 ** -14, 0x0400],
    [1 + 2 ** -11, 0x3c00], // tie: stays on the even 1.0
    [1 + 3 * 2 ** -11, 0x3c02], // tie: rounds up to even
    [Infinity, 0x7c00], [-Infinity, 0xfc00],
  ];
  for (const [x, h] of cases) assert.equal(toHalfBits(x), h, `toHalfBits(${x}) = 0x${toHalfBits(x).toString(16)}, want 0x${h.toString(16)}`);
  assert.ok(Number.isNaN(fromHalfBits(toHalfBits(NaN))));
});

test('every finite binary16 value round-trips exactly', () => {
  for (let h = 0; h < 0x10000; h++) {
    const x = fromHalfBits(h);
    if (Number.isNaN(x)) continue;
    assert.equal(toHalfBits(x), h, `0x${h.toString(16)}`);
  }
});
