// onnxruntime-web (WebAssembly backend, SIMD + threads), the runtime browsers use. The same
// .wasm binaries run under Node's V8, which is how `vitfold bench --runtime web` measures them
// (in a child process, so its worker threads never share the CPU with onnxruntime-node's pool).

import * as ort from 'onnxruntime-web';
import { timeModelsWasm, type WebJob, type WebTiming } from './web-timing.js';

export type { WebJob, WebTiming } from './web-timing.js';

/** Times each model in interleaved rounds in onnxruntime-web under Node (runtime/web-timing.ts). */
export function timeModelsWeb(models: Uint8Array[], job: WebJob): Promise<WebTiming> {
  return timeModelsWasm(ort, models, job);
}
