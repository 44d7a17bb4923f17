// Child process of `vitfold bench --runtime web`: times ONNX files in onnxruntime-web (wasm).
// argv: JSON {files, threads, shape, runs, rounds, warmup}; prints one JSON line (WebTiming).

import { readFileSync } from 'node:fs';
import { timeModelsWeb, type WebJob } from '../runtime/ort-web.js';

const o = JSON.parse(process.argv[2]) as WebJob & { files: string[] };
const r = await timeModelsWeb(o.files.map((f) => readFileSync(f)), o);
process.stdout.write(JSON.stringify(r) + '\n');
process.exit(0); // the wasm worker threads would otherwise keep the process alive
