// vitfold library entry point: the pure core (config, safetensors, reference forward, fold),
// Node file I/O, and the onnxruntime-backed engine, export and benchmark.

export * from './core/config.js';
export * from './core/safetensors.js';
export * from './core/params.js';
export * from './core/model.js';
export * from './core/reference.js';
export * from './core/fold.js';
export * from './core/flops.js';
export * from './core/verify.js';
export { erf, gelu } from './core/erf.js';
export { Rng } from './core/rng.js';
export { toHalfBits, fromHalfBits } from './core/half.js';
export { loadModel, saveModel, readSafetensors, writeSafetensors, readFloatTensor, readIntTensor, writeFloatTensors } from './io.js';
export { VitfoldError, fileSystemError } from './core/errors.js';
export { RunDirError, readCheckpoint, readRunLog, CHECKPOINT_FILE, type Checkpoint } from './train/checkpoint.js';
export { Predictor, lossAndGradients, type PredictOptions, type GradientOptions, type LossAndGradients } from './model/engine.js';
export { exportModel, buildExportGraph, exportableModel, PRECISIONS, EXPORT_OPSETS, EXPORT_TOLERANCE, type Precision, type ExportOptions, type ExportResult } from './deploy/export.js';
export { runBench, modelsAtDepths, type BenchOptions, type BenchResult, type BenchRow } from './deploy/bench.js';
export { formatBench, benchSvg } from './deploy/bench-report.js';
export { toOnnxBytes } from './graph/onnx.js';
export { train, evaluate, readRunConfig, TrainError, type TrainConfig, type TrainEvents, type TrainResult, type EpochRecord } from './train/trainer.js';
export { shrink, resumeShrink, planShrink, shrinkConfig, shrinkStart, instantFold, SHRINK_DEFAULTS, SHRINK_METHODS, type ShrinkPlan, type ShrinkMethod, type ShrinkResult } from './train/shrink.js';
export { DEFAULT_DISTILLATION, softTargets, Teacher } from './train/distill.js';
export { evenlySpacedLayers, keepLayers } from './core/layers.js';
export type { Distillation } from './model/vit-graph.js';
export { readSpec, ExperimentError, type ExperimentSpec, type RowSpec, type TeacherSpec } from './experiment/spec.js';
export { runExperiment, runOutcome, type RunOutcome, type RunRecord } from './experiment/harness.js';
export { summarize, writeResults, resultsMarkdown, resultsSvg, type ExperimentResults, type RowSummary } from './experiment/results.js';
