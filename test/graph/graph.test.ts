// The graph builder's shape checks: a wrong graph fails where it is built, with a GraphError that
// names the op, the values and their shapes, instead of failing later inside onnxruntime.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Graph, GraphError } from '../../src/graph/graph.js';

test('shape and dtype errors name the op, the values and their shapes', () => {
  const g = new Graph('t', { dtype: 'float32' });
  const a = g.input('a', 'float32', [{ b: 1 }, 4]);
  const w = g.input('w', 'float32', [5, 3]);
  const cases: [() => unknown, RegExp][] = [
    [() => g.gemm(a, w, null), /^Gemm\(a \[B, 4\], w \[5, 3\]\): inner dims 4 and 5 differ$/],
    [() => g.matmul(a, w), /^MatMul\(a \[B, 4\], w \[5, 3\]\): inner dims differ$/],
    [() => g.add(a, w), /shapes \[B, 4\] and \[5, 3\] do not broadcast/],
    [() => g.add(a, g.input('h', 'float16', [4])), /Add: dtypes differ \(a: float32, h: float16\)/],
    [() => g.reshape(w, [4, 4]), /^Reshape\(w \[5, 3\]\) to \[4, 4\]: element counts differ$/],
    [() => g.transpose(w, [0, 1, 2]), /^Transpose\(w\): perm 0,1,2 for rank 2$/],
    [() => g.concat([a, w], 0), /^Concat axis 0: w \[5, 3\] does not match \[B, 4\]$/],
    [() => g.split(w, 0, [2, 2]), /^Split\(w \[5, 3\]\) axis 0 into 2,2$/],
    [() => g.input('a', 'float32', [1]), /value name 'a' is already used/],
  ];
  for (const [build, message] of cases) {
    assert.throws(build, (e: unknown) => e instanceof GraphError && message.test((e as Error).message), String(message));
  }
});
