// Child process of test/int8.test.ts, run under qemu-user as an AVX2-only CPU: whether this
// process's int8 kernels saturate pair sums, and the logits of each given .onnx file on the
// input JSON ({shape, data}). Prints one JSON line {saturates, logits: number[][]}.

import { readFileSync } from 'node:fs';
import { int8PairsSaturate } from '../../src/deploy/cpu.js';
import { Session } from '../../src/runtime/ort.js';

const [inputFile, ...models] = process.argv.slice(2);
const x = JSON.parse(readFileSync(inputFile, 'utf8')) as { shape: number[]; data: number[] };
const logits: number[][] = [];
for (const file of models) {
  const s = await Session.create(readFileSync(file), { threads: 1 });
  logits.push(Array.from((await s.run({ x: { shape: x.shape, data: Float32Array.from(x.data) } })).logits.data as Float32Array));
  await s.release();
}
process.stdout.write(JSON.stringify({ saturates: await int8PairsSaturate(), logits }) + '\n');
