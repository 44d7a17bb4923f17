// The runtime adapter: the only module that imports onnxruntime. Everything else hands it
// ONNX bytes and typed arrays.

import * as ort from 'onnxruntime-node';

export type TensorData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;

export interface HostTensor {
  shape: number[];
  data: TensorData;
}

export interface SessionOptions {
  /** Intra-op threads (default: ORT's choice, all cores). */
  threads?: number;
  /**
   * Spin-waiting of idle pool threads. Off by default: with two sessions in one process (train
   * + eval, deep + folded) spinning pools steal each other's cores (about twice the latency).
   */
  spinning?: boolean;
  /** CPU memory arena (default on). */
  arena?: boolean;
  /** ORT graph optimization level (default 'all'). */
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /**
   * Profile every node: ORT writes `<profile>_<date>.json` (Chrome trace events) when
   * endProfiling() is called; the path prefix may include a directory.
   */
  profile?: string;
  /** Write the graph as ORT optimized it to this path (tests check what ORT actually runs). */
  optimizedModelPath?: string;
}

export class RuntimeError extends Error {
  override name = 'RuntimeError';
}

function toOrt(name: string, t: HostTensor): ort.Tensor {
  const d = t.data;
  const type = d instanceof Float32Array ? 'float32' : d instanceof Float64Array ? 'float64' : d instanceof BigInt64Array ? 'int64' : d instanceof Int32Array ? 'int32' : 'bool';
  const n = t.shape.reduce((a, b) => a * b, 1);
  if (n !== d.length) throw new RuntimeError(`input '${name}': ${d.length} values for shape [${t.shape.join(', ')}]`);
  return new ort.Tensor(type, d, t.shape);
}

export class Session {
  private constructor(private readonly s: ort.InferenceSession) {}

  static async create(model: Uint8Array, opts: SessionOptions = {}): Promise<Session> {
    const o: ort.InferenceSession.SessionOptions = {
      graphOptimizationLevel: opts.optimization ?? 'all',
      enableCpuMemArena: opts.arena ?? true,
      executionMode: 'sequential',
      extra: { session: { 'intra_op.allow_spinning': opts.spinning ? '1' : '0' } },
    };
    if (opts.threads !== undefined) o.intraOpNumThreads = opts.threads;
    if (opts.optimizedModelPath !== undefined) o.optimizedModelFilePath = opts.optimizedModelPath;
    if (opts.profile !== undefined) {
      o.enableProfiling = true;
      o.profileFilePrefix = opts.profile;
    }
    try {
      return new Session(await ort.InferenceSession.create(model, o));
    } catch (e) {
      throw new RuntimeError(`onnxruntime could not load the graph: ${(e as Error).message}`);
    }
  }

  get inputNames(): readonly string[] {
    return this.s.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.s.outputNames;
  }

  async run(feeds: Record<string, HostTensor>, outputs?: string[]): Promise<Record<string, HostTensor>> {
    const f: Record<string, ort.Tensor> = {};
    for (const [k, v] of Object.entries(feeds)) f[k] = toOrt(k, v);
    const r = outputs ? await this.s.run(f, outputs) : await this.s.run(f);
    const out: Record<string, HostTensor> = {};
    for (const [k, v] of Object.entries(r)) out[k] = { shape: [...v.dims], data: v.data as TensorData };
    return out;
  }

  /** Stops profiling (SessionOptions.profile) and writes the profile file. */
  async endProfiling(): Promise<void> {
    await this.s.endProfiling();
  }

  async release(): Promise<void> {
    await this.s.release();
  }
}
