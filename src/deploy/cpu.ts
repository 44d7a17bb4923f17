// The CPU features that decide which integer kernels onnxruntime runs, recorded with every
// benchmark figure so that figures from different machines can be told apart, and a probe of
// what the int8 kernels of this process actually compute.

import { readFileSync } from 'node:fs';
import { arch, cpus } from 'node:os';
import { Graph } from '../graph/graph.js';
import { toOnnxBytes } from '../graph/onnx.js';
import { Session } from '../runtime/ort.js';

export interface CpuFeatures {
  arch: string;
  model: string;
  cores: number;
  /** x86: AVX2, AVX-512 (F and BW), VNNI (AVX-512 or AVX), AMX int8; ARM: dot product, i8mm. */
  avx2: boolean;
  avx512: boolean;
  vnni: boolean;
  amx: boolean;
  armDot: boolean;
  armI8mm: boolean;
  /** One line, e.g. "x64 AMD EPYC, 2 cores: AVX2 AVX-512 VNNI". */
  summary: string;
}

/** Parses the flags (x86) or Features (ARM) line of /proc/cpuinfo text. */
export function parseCpuFlags(cpuinfo: string): Set<string> {
  const line = cpuinfo.split('\n').find((l) => /^(flags|Features)\s*:/.test(l));
  return new Set(line ? line.split(':')[1].trim().split(/\s+/) : []);
}

export function cpuFeatures(cpuinfo?: string): CpuFeatures {
  let text = cpuinfo;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      text = '';
    }
  }
  const f = parseCpuFlags(text);
  const c = cpus();
  const feats: Omit<CpuFeatures, 'summary'> = {
    arch: arch(),
    model: c[0]?.model.trim() ?? 'unknown',
    cores: c.length,
    avx2: f.has('avx2'),
    avx512: f.has('avx512f') && f.has('avx512bw'),
    vnni: f.has('avx512_vnni') || f.has('avx_vnni'),
    amx: f.has('amx_int8'),
    armDot: f.has('asimddp'),
    armI8mm: f.has('i8mm'),
  };
  const names = [['avx2', 'AVX2'], ['avx512', 'AVX-512'], ['vnni', 'VNNI'], ['amx', 'AMX'], ['armDot', 'dot product'], ['armI8mm', 'i8mm']] as const;
  const on = names.filter(([k]) => feats[k]).map(([, n]) => n);
  const noVnni = feats.avx2 && !feats.vnni ? ' (no VNNI)' : '';
  return { ...feats, summary: `${feats.arch} ${feats.model}, ${feats.cores} cores: ${on.join(' ') || 'no SIMD features read'}${noVnni}` };
}

/**
 * Whether onnxruntime's uint8 x int8 kernels in this process saturate pair sums at int16 (x86
 * without VNNI: VPMADDUBSW). Runs MatMulInteger on weights 127 and activations 255, whose pair
 * sums (64770) overflow int16, and compares with the exact result. This is what the CPU's ORT
 * build does, whatever /proc/cpuinfo says (an emulator reports the host's flags).
 */
export async function int8PairsSaturate(): Promise<boolean> {
  const K = 64;
  const N = 16;
  const g = new Graph('int8_pair_probe', { dtype: 'float32', opset: 17 });
  const x = g.input('x', 'float32', [1, K]);
  // ones quantize to 255 with zero point 0 (DynamicQuantizeLinear's range includes 0)
  const [xq, , xzp] = g.node('DynamicQuantizeLinear', [x], {}, [
    { dtype: 'uint8', shape: [1, K] },
    { dtype: 'float32', shape: [] },
    { dtype: 'uint8', shape: [] },
  ]);
  const w = g.initializer('w', 'int8', [K, N], new Int8Array(K * N).fill(127));
  g.output(g.node('MatMulInteger', [xq, w, xzp], {}, [{ dtype: 'int32', shape: [1, N] }])[0], 'y');
  const s = await Session.create(toOnnxBytes(g), { threads: 1 });
  try {
    const y = (await s.run({ x: { shape: [1, K], data: new Float32Array(K).fill(1) } })).y.data as Int32Array;
    return y[0] !== K * 255 * 127;
  } finally {
    await s.release();
  }
}
