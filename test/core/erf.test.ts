// erf in float64 (JavaScript has none) and the exact GELU built on it.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { erf, gelu } from '../../src/core/erf.js';

test('erf matches libm (Python math.erf) to 2 ulp; GELU is exact-erf GELU', () => {
  const ref: [number, number][] = [
    [0, 0], [1e-20, 1.1283791670955125e-20], [1e-8, 1.1283791670955126e-8], [0.1, 0.1124629160182849],
    [0.3, 0.3286267594591274], [0.46875, 0.49261347321793797], [0.5, 0.5204998778130465], [0.7, 0.6778011938374184],
    [1, 0.8427007929497149], [1.5, 0.9661051464753108], [2, 0.9953222650189527], [2.5, 0.999593047982555],
    [3, 0.9999779095030014], [3.9, 0.9999999652077514], [4, 0.9999999845827421], [4.5, 0.9999999998033839],
    [5, 0.9999999999984626], [6, 1], [27, 1], [-0.2, -0.22270258921047847], [-1.3, -0.9340079449406524],
    [-3.7, -0.9999998328489421], [-6, -1],
  ];
  for (const [x, y] of ref) assert.ok(Math.abs(erf(x) - y) <= 2 * Number.EPSILON * Math.abs(y), `erf(${x}) = ${erf(x)}, expected ${y}`);
  assert.equal(gelu(0), 0);
  assert.ok(Math.abs(gelu(1) - 0.8413447460685429) < 1e-15);
  assert.ok(Math.abs(gelu(-3) - -0.00404969409489031) < 1e-17);
});
