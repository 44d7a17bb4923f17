// An exported .onnx file as vitfold reads it back: its self-description (metadata_props, written
// by exportModel) and an onnxruntime session that classifies batches, like Predictor does for
// a .safetensors model.

import { readFileSync } from 'node:fs';
import { parseConfigJson, type ViTConfig } from '../core/config.js';
import { ModelError } from '../core/model.js';
import type { Tensor } from '../core/params.js';
import { readOnnxMetadata } from '../core/onnx-metadata.js';
import type { Classifier } from '../model/engine.js';
import { Session } from '../runtime/ort.js';

export interface OnnxModel {
  path: string;
  bytes: Uint8Array;
  config: ViTConfig;
  /** metadata_props: config, structure, origin, precision, normalization, classes, vitfold_version. */
  metadata: Record<string, string>;
}

export const isOnnxPath = (path: string) => path.toLowerCase().endsWith('.onnx');

export function loadOnnxModel(path: string): OnnxModel {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ModelError(`${path}: cannot read: ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : (e as Error).message}`);
  }
  // Only the metadata is read here (a scan of the top level); onnxruntime parses the graph.
  let metadata: Record<string, string>;
  try {
    metadata = readOnnxMetadata(bytes);
  } catch (e) {
    throw new ModelError(`${path}: not an ONNX model (${(e as Error).message})`);
  }
  const text = metadata.config;
  if (text === undefined) throw new ModelError(`${path}: has no vitfold metadata (metadata_props 'config'); vitfold reads the .onnx files that vitfold export writes`);
  return { path, bytes, config: parseConfigJson(text, `${path}: metadata_props`), metadata };
}

/** An onnxruntime-node session of an exported model: logits [B, K] for images x [B, C, S, S]. */
export class OnnxClassifier implements Classifier {
  private constructor(
    private readonly session: Session,
    private readonly model: OnnxModel,
  ) {}

  static async create(model: OnnxModel, opts: { threads?: number } = {}): Promise<OnnxClassifier> {
    return new OnnxClassifier(await Session.create(model.bytes, { threads: opts.threads }), model);
  }

  async predict(x: { shape: number[]; data: Float32Array | Float64Array }): Promise<Tensor> {
    const { in_chans: C, img_size: S } = this.model.config;
    if (x.shape.length !== 4 || x.shape[1] !== C || x.shape[2] !== S || x.shape[3] !== S) {
      throw new ModelError(`${this.model.path}: input x has shape ${JSON.stringify(x.shape)}, expected [B, ${C}, ${S}, ${S}]`);
    }
    const data = x.data instanceof Float32Array ? x.data : Float32Array.from(x.data);
    const out = (await this.session.run({ x: { shape: x.shape, data } })).logits;
    return { shape: out.shape, data: Float64Array.from(out.data as Float32Array) };
  }

  release(): Promise<void> {
    return this.session.release();
  }
}
