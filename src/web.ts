// vitfold/web: the browser-safe part of the library (no Node or onnxruntime-node imports): read
// what an exported model is, fold and verify in float64, preprocess like `vitfold predict`.

export { describeOnnxExport, readOnnxMetadata } from './core/onnx-metadata.js';
export * from './core/config.js';
export * from './core/preprocess.js';
export * from './core/model.js';
export * from './core/fold.js';
export * from './core/reference.js';
export * from './core/safetensors.js';
