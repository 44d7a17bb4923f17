// vitfold library entry point: the pure core (config, safetensors, reference forward, fold)
// and Node file I/O.

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
export * from './io.js';
