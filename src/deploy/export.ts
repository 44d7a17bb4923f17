// Inference export: an ONNX graph of a plain or folded model tuned for
// ONNX Runtime, validated against the float64 reference after writing.
//
//   - weights baked as [in, out] (ORT pre-packs constant MatMul operands), single-op
//     LayerNormalization / Gelu / Softmax, symbolic batch dimension;
//   - the attention scale 1/sqrt(hd) folded into the query rows of every qkv layer;
//   - attention with the heads read in place by ORT's FusedMatMul (--attention strided, the
//     default), as standard MatMul/Softmax/MatMul (matmul), or ORT's MultiHeadAttention (fused);
//   - the last layer for the class token only (the head reads nothing else): its query,
//     attention, projection and FFN, the attention reassociated as (q Wk) X^T and (p X) Wv^T so
//     no key or value is projected (exact);
//   - precisions: fp32; fp16 (weights and activations float16, float32 input and logits);
//     int8 (dynamic quantization of qkv/proj/fc1/fc2 and of the last layer's per-head
//     products: weights int8 per output channel, symmetric, activations uint8 per tensor,
//     quantized at run time by DynamicQuantizeLinear; ORT fuses the chain into one
//     DynamicQuantizeMatMul per linear layer).

import { configJson, numTokens } from '../core/config.js';
import { defaultNormalization } from '../core/preprocess.js';
import { VERSION } from '../version.js';
import { fold, unjoinedCoefficients } from '../core/fold.js';
import { ModelError, type Model } from '../core/model.js';
import { cloneParams } from '../core/params.js';
import { referenceForward } from '../core/reference.js';
import { compareLogits, randomInput, type LogitError } from '../core/verify.js';
import { B, Graph } from '../graph/graph.js';
import { toOnnxBytes } from '../graph/onnx.js';
import { initializerBinding } from '../model/engine.js';
import { buildForward } from '../model/vit-graph.js';
import { Session } from '../runtime/ort.js';
import { DEFAULT_INT8_WEIGHTS, int8Emitters, int8GraphOverflows, type Int8Weights } from './int8.js';

/** The precisions an export can have. */
export const PRECISIONS = ['fp32', 'fp16', 'int8'] as const;
/** fp32, fp16 (half the file) or int8 (dynamic quantization of the transformer linear layers). */
export type Precision = (typeof PRECISIONS)[number];

/** Opsets an export can target: LayerNormalization needs 17; from 20 GELU is a standard op. */
export const EXPORT_OPSETS = [17, 18, 19, 20, 21] as const;
export const DEFAULT_EXPORT_OPSET = 17;

/**
 * Default validation bounds on the max logit error relative to the largest reference logit.
 * fp16 carries 11 significant bits; int8 rounds weights to 1/254 of each channel's range and
 * activations to 1/255 of each tensor's (observed on a random DeiT-Tiny fold: 6.6e-4 and 2.7e-2).
 */
export const EXPORT_TOLERANCE: Record<Precision, number> = { fp32: 1e-4, fp16: 1e-2, int8: 0.1 };

/**
 * How exportModel builds the graph: precision, opset, attention form, int8 weight mode,
 * class-token-only last layer.
 */
export interface ExportOptions {
  /** Class-token-only last layer (default true). */
  clsOnly?: boolean;
  precision?: Precision;
  opset?: number;
  /**
   * 'strided' (default): token-major rows, heads read in place by ONNX Runtime's
   * com.microsoft FusedMatMul (ForwardOptions.stridedHeads). 'matmul': standard ONNX ops only,
   * MatMul/Softmax/MatMul with the heads transposed to [B, H, T, hd]. 'fused': ONNX Runtime's
   * com.microsoft MultiHeadAttention. strided is the default because it is the fastest in
   * onnxruntime-node and onnxruntime-web (measurements: docs/engine.md).
   */
  attention?: ExportAttention;
  /** How int8 weights are stored (deploy/int8.ts); precision 'int8' only. */
  int8Weights?: Int8Weights;
}

export const EXPORT_ATTENTION = ['strided', 'matmul', 'fused'] as const;
export type ExportAttention = (typeof EXPORT_ATTENTION)[number];

/** The model an export runs: plain or folded; a fully joined branched model is folded first. */
export function exportableModel(model: Model, where: string): { model: Model; note?: string } {
  const s = model.structure;
  if (s.kind !== 'branched') return { model };
  const unjoined = unjoinedCoefficients(model);
  if (unjoined.length) {
    throw new ModelError(
      `${where}: is a branched model that is not fully joined, so it has no exact fold to export:\n  ${unjoined.join('\n  ')}\n` +
        `Finish training (every coefficient 1), then fold it: vitfold fold ${where} --out folded.safetensors`,
    );
  }
  return { model: fold(model, where), note: `${where} is fully joined; exporting its fold (${model.config.depth / s.branches} layers)` };
}

/**
 * The inference graph of a plain or folded model, before serialization (exportModel serializes
 * and validates it).
 */
export function buildExportGraph(model: Model, opts: ExportOptions = {}): Graph {
  if (model.structure.kind === 'branched') throw new ModelError('export needs a plain or folded model (fold branched models first)');
  const cfg = model.config;
  const params = cloneParams(model.params);
  // Fold the attention scale into the q rows (the first H*hd rows) of qkv weight and bias.
  const HD = cfg.num_heads * cfg.head_dim;
  const scale = 1 / Math.sqrt(cfg.head_dim);
  for (let i = 0; i < cfg.depth; i++) {
    const w = params.get(`blocks.${i}.attn.qkv.weight`)!.data; // [3*H*hd, D]
    const b = params.get(`blocks.${i}.attn.qkv.bias`)!.data;
    for (let r = 0; r < HD * cfg.embed_dim; r++) w[r] *= scale;
    for (let r = 0; r < HD; r++) b[r] *= scale;
  }
  const precision = opts.precision ?? 'fp32';
  const opset = opts.opset ?? DEFAULT_EXPORT_OPSET;
  if (!(EXPORT_OPSETS as readonly number[]).includes(opset)) throw new ModelError(`--opset ${opset}: vitfold exports opsets ${EXPORT_OPSETS.join(', ')}`);
  const fp16 = precision === 'fp16';
  const g = new Graph('vitfold_export', { dtype: fp16 ? 'float16' : 'float32', opset });
  const x = g.input('x', 'float32', [B, cfg.in_chans, cfg.img_size, cfg.img_size]); // [B, C, S, S]
  const logits = buildForward(g, cfg, { kind: 'plain' }, initializerBinding(g, params), { x: fp16 ? g.cast(x, 'float16') : x }, {
    clsOnlyLastLayer: opts.clsOnly ?? true,
    scaleInQuery: true,
    ...(precision === 'int8' ? int8Emitters(g, params, opts.int8Weights ?? DEFAULT_INT8_WEIGHTS) : {}),
    fusedAttention: opts.attention === 'fused',
    stridedHeads: (opts.attention ?? 'strided') === 'strided',
  });
  g.output(fp16 ? g.cast(logits, 'float32') : logits, 'logits');
  return g;
}

/**
 * exportModel's result: the ONNX bytes and the exported graph's logit error against the float64
 * reference.
 */
export interface ExportResult {
  bytes: Uint8Array;
  /** The exported graph in ORT (fp32) vs the float64 reference, on a seeded input. */
  error: LogitError;
  tokens: number;
  /** int8: weight pairs that can overflow a saturating int16 pair sum on x86 without VNNI (deploy/int8.ts). */
  int8Overflows: number;
}

/**
 * What an exported file says about itself (ONNX metadata_props), in the keys of vitfold's
 * safetensors metadata: config, structure (a fold's origin), normalization and classes (what
 * a page needs to preprocess images and name classes), precision and vitfold's version.
 */
export function exportMetadata(model: Model, opts: ExportOptions = {}): Record<string, string> {
  const cfg = model.config;
  const s = model.structure;
  const precision = opts.precision ?? 'fp32';
  return {
    vitfold_version: VERSION,
    config: configJson(cfg),
    structure: JSON.stringify(s),
    origin: s.kind === 'folded' ? `folded from a ${s.source_depth}-layer model, ${s.branches} branches per block` : `a plain ${cfg.depth}-layer ViT`,
    precision: precision === 'int8' ? `int8 (${opts.int8Weights ?? DEFAULT_INT8_WEIGHTS} weights)` : precision,
    normalization: model.extraMetadata.normalization ?? JSON.stringify(defaultNormalization(cfg)),
    ...(model.extraMetadata.classes ? { classes: model.extraMetadata.classes } : {}),
  };
}

/** Builds the export and validates it in onnxruntime-node against the float64 reference. */
export async function exportModel(
  model: Model,
  opts: ExportOptions & { validateBatch?: number; threads?: number; onProgress?: (what: string, done: number, total: number) => void } = {},
): Promise<ExportResult> {
  const batch = opts.validateBatch ?? 2;
  // Progress in steps: build, serialize, start onnxruntime, run it, then the float64 reference
  // one layer of one image at a time (the slowest part at DeiT size).
  const total = 4 + batch * model.config.depth;
  const step = (what: string, done: number) => opts.onProgress?.(what, done, total);
  step('building the graph', 0);
  const graph = buildExportGraph(model, opts);
  step('serializing', 1);
  const bytes = toOnnxBytes(graph, { docString: `vitfold export: ${model.structure.kind} ViT, depth ${model.config.depth}, ${opts.precision ?? 'fp32'}`, metadata: exportMetadata(model, opts) });
  step('loading into onnxruntime', 2);
  const session = await Session.create(bytes, { threads: opts.threads });
  try {
    const x = randomInput(model, batch, 0);
    step('running onnxruntime', 3);
    const out = await session.run({ x: { shape: x.shape, data: Float32Array.from(x.data) } });
    const reference = referenceForward(model, x, { onProgress: (d) => step('float64 reference', 4 + d) });
    const error = compareLogits(reference.data, Float64Array.from(out.logits.data as Float32Array));
    return { bytes, error, tokens: numTokens(model.config), int8Overflows: int8GraphOverflows(graph).length };
  } finally {
    await session.release();
  }
}
