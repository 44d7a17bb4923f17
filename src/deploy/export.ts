// Inference export (issue 5, fp32 part): an ONNX graph of a plain or folded model tuned for
// ONNX Runtime, validated against the float64 reference after writing.
//
//   - weights baked as [in, out] (ORT pre-packs constant MatMul operands), single-op
//     LayerNormalization / Gelu / Softmax, symbolic batch dimension;
//   - the attention scale 1/sqrt(hd) folded into the query rows of every qkv layer;
//   - the last layer for the class token only (the head reads nothing else): keys and values of
//     every token, queries, attention, projection and FFN of one token (exact).

import { numTokens } from '../core/config.js';
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

export interface ExportOptions {
  /** Class-token-only last layer (default true). */
  clsOnly?: boolean;
}

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
  const g = new Graph('vitfold_export', { dtype: 'float32' });
  const x = g.input('x', 'float32', [B, cfg.in_chans, cfg.img_size, cfg.img_size]);
  const logits = buildForward(g, cfg, { kind: 'plain' }, initializerBinding(g, params), { x }, { clsOnlyLastLayer: opts.clsOnly ?? true, scaleInQuery: true });
  g.output(logits, 'logits');
  return g;
}

export interface ExportResult {
  bytes: Uint8Array;
  /** The exported graph in ORT (fp32) vs the float64 reference, on a seeded input. */
  error: LogitError;
  tokens: number;
}

/** Builds the export and validates it in onnxruntime-node against the float64 reference. */
export async function exportModel(model: Model, opts: ExportOptions & { validateBatch?: number; threads?: number } = {}): Promise<ExportResult> {
  const bytes = toOnnxBytes(buildExportGraph(model, opts), { docString: `vitfold export: ${model.structure.kind} ViT, depth ${model.config.depth}` });
  const session = await Session.create(bytes, { threads: opts.threads });
  try {
    const x = randomInput(model, opts.validateBatch ?? 2, 0);
    const out = await session.run({ x: { shape: x.shape, data: Float32Array.from(x.data) } });
    const error = compareLogits(referenceForward(model, x).data, Float64Array.from(out.logits.data as Float32Array));
    return { bytes, error, tokens: numTokens(model.config) };
  } finally {
    await session.release();
  }
}
