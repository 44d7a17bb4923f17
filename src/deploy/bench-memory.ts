// Child process of `vitfold bench`: loads one ONNX model alone, runs it, and prints its peak RSS,
// so each model's memory is measured without the others (or the benchmark itself) in the way.
// argv: MODEL.onnx SHAPE THREADS, SHAPE e.g. 1,3,224,224 (MODEL '-' = no model: the floor of
// node + onnxruntime)

import { existsSync, readFileSync } from 'node:fs';
import { Session } from '../runtime/ort.js';

const [path, shapeArg, threadsArg] = process.argv.slice(2);
if (path !== '-') {
  const session = await Session.create(readFileSync(path), { threads: Number(threadsArg) });
  const shape = shapeArg.split(',').map(Number);
  const x = new Float32Array(shape.reduce((a, b) => a * b, 1)).map((_, i) => Math.sin(i));
  for (let i = 0; i < 5; i++) await session.run({ x: { shape, data: x } });
  await session.release();
}
// VmHWM, not getrusage's maxRSS: Linux carries ru_maxrss across exec, so a child spawned by a
// large parent would report the parent's size (seen: 589 MiB for every model).
const status = existsSync('/proc/self/status') ? readFileSync('/proc/self/status', 'utf8') : '';
const hwm = /^VmHWM:\s+(\d+) kB/m.exec(status);
process.stdout.write(JSON.stringify({ maxRssMiB: (hwm ? Number(hwm[1]) : process.resourceUsage().maxRSS) / 1024 }) + '\n');
