// Graph -> ONNX ModelProto bytes, through onnx-proto (protobufjs code generated from onnx.proto).

import { createRequire } from 'node:module';
import type { onnx as OnnxNs } from 'onnx-proto';
import { ELEM_CODE as ELEM, type AttrValue, type Dim, type Graph, type Value } from './graph.js';

// onnx-proto is CommonJS; load it without relying on ESM interop details.
const { onnx } = createRequire(import.meta.url)('onnx-proto') as { onnx: typeof OnnxNs };

export { OPSET } from './graph.js';
import { VERSION } from '../version.js';
const IR_VERSION = 8;

function dimProto(d: Dim): OnnxNs.TensorShapeProto.IDimension {
  if (typeof d === 'number') return { dimValue: d };
  return { dimParam: d.b === 1 ? 'batch' : `batch*${d.b}` };
}

function valueInfo(v: Value): OnnxNs.IValueInfoProto {
  return { name: v.name, type: { tensorType: { elemType: ELEM[v.dtype], shape: { dim: v.shape.map(dimProto) } } } };
}

function attrProto(name: string, v: AttrValue): OnnxNs.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'number') return { name, type: T.INT, i: v };
  if (typeof v === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) return { name, type: T.INTS, ints: v };
  if ('float' in v) return { name, type: T.FLOAT, f: v.float };
  return { name, type: T.FLOATS, floats: v.floats };
}

export interface SerializeOptions {
  docString?: string;
  /** ModelProto.metadata_props: what the file is, readable without vitfold (onnx, netron, ...). */
  metadata?: Record<string, string>;
}

/** The metadata_props, producer and opsets of ONNX model bytes (nothing else is decoded into objects we keep). */
export function onnxModelInfo(bytes: Uint8Array): { metadata: Record<string, string>; producer: string; opsets: Record<string, number>; inputs: string[]; outputs: string[]; nodes: number } {
  const m = onnx.ModelProto.decode(bytes);
  const metadata: Record<string, string> = {};
  for (const p of m.metadataProps ?? []) if (p.key) metadata[p.key] = p.value ?? '';
  const opsets: Record<string, number> = {};
  for (const o of m.opsetImport ?? []) opsets[o.domain || 'ai.onnx'] = Number(o.version);
  const g = m.graph;
  return {
    metadata,
    producer: `${m.producerName ?? ''} ${m.producerVersion ?? ''}`.trim(),
    opsets,
    inputs: (g?.input ?? []).map((v) => v.name ?? ''),
    outputs: (g?.output ?? []).map((v) => v.name ?? ''),
    nodes: g?.node?.length ?? 0,
  };
}

/**
 * The nodes and initializers the outputs depend on. Building (autodiff especially) can leave
 * nodes nothing reads, e.g. a transpose the builder later cancelled; ONNX Runtime would still
 * run them, so they are not serialized.
 */
function liveParts(g: Graph): { nodes: Graph['nodes']; initializers: Graph['initializers'] } {
  const live = new Set(g.outputs.map((v) => v.name));
  const nodes: Graph['nodes'] = [];
  for (let i = g.nodes.length - 1; i >= 0; i--) {
    const n = g.nodes[i];
    if (!n.outputs.some((o) => live.has(o))) continue;
    nodes.push(n);
    for (const inp of n.inputs) if (inp) live.add(inp);
  }
  return { nodes: nodes.reverse(), initializers: g.initializers.filter((t) => live.has(t.name)) };
}

/**
 * Graph.output(v, name) names an output with an Identity. Where v is also read inside the graph
 * (AdamW's new moments feed the update), ONNX Runtime keeps that Identity and copies the tensor
 * (a measurable cost per step for each moment buffer), so the producer writes
 * the output name directly instead. Graph inputs, initializers and values that are outputs
 * under their own name keep the Identity.
 */
function outputsWithoutCopies(g: Graph, nodes: Graph['nodes']): Graph['nodes'] {
  const outputs = new Set(g.outputs.map((v) => v.name));
  const produced = new Set(nodes.flatMap((n) => n.outputs));
  const rename = new Map<string, string>();
  const dropped = new Set<Graph['nodes'][number]>();
  for (const n of nodes) {
    const [src] = n.inputs;
    if (n.op !== 'Identity' || !outputs.has(n.outputs[0]) || outputs.has(src) || !produced.has(src) || rename.has(src)) continue;
    rename.set(src, n.outputs[0]);
    dropped.add(n);
  }
  if (rename.size === 0) return nodes;
  const to = (name: string) => rename.get(name) ?? name;
  return nodes.filter((n) => !dropped.has(n)).map((n) => ({ ...n, inputs: n.inputs.map(to), outputs: n.outputs.map(to) }));
}

/** Serializes a Graph to ONNX ModelProto bytes (with optional doc string and metadata_props). */
export function toOnnxBytes(g: Graph, opts: SerializeOptions = {}): Uint8Array {
  const { nodes: liveNodes, initializers } = liveParts(g);
  const nodes = outputsWithoutCopies(g, liveNodes);
  const usesMs = nodes.some((n) => n.domain === 'com.microsoft');
  const model = onnx.ModelProto.create({
    irVersion: IR_VERSION,
    producerName: 'vitfold',
    producerVersion: VERSION,
    docString: opts.docString ?? '',
    metadataProps: Object.entries(opts.metadata ?? {}).map(([key, value]) => ({ key, value })),
    opsetImport: [{ domain: '', version: g.opset }, ...(usesMs ? [{ domain: 'com.microsoft', version: 1 }] : [])],
    graph: {
      name: g.name,
      node: nodes.map((n) => ({
        opType: n.op,
        domain: n.domain,
        name: n.name,
        input: n.inputs,
        output: n.outputs,
        attribute: Object.entries(n.attrs).map(([k, v]) => attrProto(k, v)),
      })),
      input: g.inputs.map(valueInfo),
      output: g.outputs.map(valueInfo),
      initializer: initializers.map((t) => ({
        name: t.name,
        dataType: ELEM[t.dtype],
        dims: t.dims,
        rawData: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength),
      })),
    },
  });
  return onnx.ModelProto.encode(model).finish();
}
