// int8 exports on every CPU: the weight modes' quantizers, the static check that no uint8 x int8
// pair sum of an exported graph can leave int16 (what x86 CPUs without VNNI saturate), and the
// same export run on an emulated AVX2-only CPU (qemu-user, EPYC-Rome: no AVX-512, no VNNI).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { arch } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { compareLogits, randomInput } from '../../src/core/verify.js';
import { cpuFeatures, parseCpuFlags } from '../../src/deploy/cpu.js';
import { buildExportGraph, EXPORT_ATTENTION } from '../../src/deploy/export.js';
import { INT8_WEIGHTS, int8GraphOverflows, PAIR_LIMIT, pairOverflows, quantizeColumns, quantizeRows, type Int8Weights } from '../../src/deploy/int8.js';
import { Rng } from '../../src/core/rng.js';
import { toOnnxBytes } from '../../src/graph/onnx.js';
import { loadModel } from '../../src/io.js';
import { Session } from '../../src/runtime/ort.js';
import { GOLDEN, REPO, tmpDir } from '../helpers.js';

const GOLDEN_MODELS = ['deep', 'folded-k2', 'folded-k3', 'folded-k4', 'folded-k6'];

/** Heavy-tailed columns of different ranges: many same-sign pairs above the limit at max / 127. */
function testMatrix(K: number, N: number, seed: number): Float64Array {
  const rng = new Rng(seed);
  return Float64Array.from({ length: K * N }, (_, i) => rng.normal() ** 3 * (1 + (i % N)));
}

test('quantizeColumns: every mode within its step of every weight; paired keeps same-sign pairs within 128', () => {
  const K = 33; // odd: the last row has no partner
  const N = 6;
  const w = testMatrix(K, N, 5);
  const at = (k: number, n: number) => w[k * N + n];
  const full = quantizeColumns(at, K, N, 'full');
  for (const mode of INT8_WEIGHTS) {
    const { q, scale } = quantizeColumns(at, K, N, mode);
    const zero = mode === 'u8' ? 128 : 0;
    for (let n = 0; n < N; n++) {
      let peak = 0;
      for (let k = 0; k < K; k++) {
        const v = q[k * N + n] - zero;
        // paired moves a rounded pair onto the bound: at most one step from its value
        const tol = (mode === 'paired' ? 1 : 0.5) * scale[n] + 1e-12;
        assert.ok(Math.abs(v * scale[n] - at(k, n)) <= tol, `${mode} k ${k} n ${n}: ${v} * ${scale[n]} vs ${at(k, n)}`);
        peak = Math.max(peak, Math.abs(v));
      }
      if (mode === 's7') assert.equal(peak, 63, 's7 uses 7 bits');
      if (mode === 'full' || mode === 'u8') assert.equal(peak, 127, `${mode}: each column uses the full range`);
      if (mode === 'paired') assert.ok(peak >= 64 && peak <= 127, `paired peak ${peak}`);
    }
    if (mode === 'u8') assert.deepEqual(Array.from(q, (v) => v - 128), Array.from(full.q), 'u8 holds the full-range values + 128');
  }
  const tensor = (mode: Int8Weights) => ({ name: mode, dims: [K, N], data: quantizeColumns(at, K, N, mode).q });
  assert.deepEqual(pairOverflows(tensor('paired')), []);
  assert.deepEqual(pairOverflows(tensor('s7')), []);
  assert.ok(pairOverflows(tensor('full')).length > 0, 'the test matrix has pairs that overflow at full range');
  // the paired scale is the larger of max / 127 and the largest same-sign pair sum / 128
  const { scale } = quantizeColumns(at, K, N, 'paired');
  for (let n = 0; n < N; n++) {
    let m = 0;
    let pair = 0;
    for (let k = 0; k < K; k++) m = Math.max(m, Math.abs(at(k, n)));
    for (let k = 0; k + 1 < K; k += 2) {
      const [a, b] = [at(k, n), at(k + 1, n)];
      pair = Math.max(pair, Math.max(a, 0) + Math.max(b, 0), -Math.min(a, 0) - Math.min(b, 0));
    }
    assert.ok(Math.abs(scale[n] - Math.max(m / 127, pair / PAIR_LIMIT)) <= 1e-7 * scale[n], `column ${n}`);
  }
});

test('quantizeRows reads rows [r0, r1) of a weight [out, in] as B [in, n]', () => {
  const out = 7;
  const inp = 11;
  const w = testMatrix(inp, out, 3);
  const { q, scale } = quantizeRows(w, inp, [2, 5], 'full');
  const ref = quantizeColumns((i, c) => w[(2 + c) * inp + i], inp, 3, 'full');
  assert.deepEqual(Array.from(q), Array.from(ref.q));
  assert.deepEqual(Array.from(scale), Array.from(ref.scale));
});

test('pairOverflows: same-sign pairs (2i, 2i+1) above 128 in magnitude, per batch; opposite signs and odd tails never', () => {
  // [2, 5, 2]: K = 5 (pairs k = 0 and 2; k = 4 is unpaired), N = 2
  const d = new Int8Array(2 * 5 * 2);
  const set = (b: number, k: number, n: number, v: number) => (d[(b * 5 + k) * 2 + n] = v);
  set(0, 0, 0, 64); set(0, 1, 0, 64); // 128: the limit itself is safe (255 * 128 = 32640)
  set(0, 0, 1, 65); set(0, 1, 1, 64); // 129: overflows
  set(0, 2, 0, 127); set(0, 3, 0, -127); // opposite signs: at most 255 * 127
  set(0, 2, 1, -100); set(0, 3, 1, -29); // -129: overflows
  set(0, 4, 0, 127); // unpaired
  set(1, 2, 0, 127); set(1, 3, 0, 2); // batch 1
  const found = pairOverflows({ name: 'w', dims: [2, 5, 2], data: d });
  assert.deepEqual(found.map((f) => [f.batch, f.k, f.n, ...f.values]), [[0, 0, 1, 65, 64], [0, 2, 1, -100, -29], [1, 2, 0, 127, 2]]);
});

test('no exported int8 graph can overflow an int16 pair sum (every golden model, attention form and tail); full-range weights can', () => {
  for (const name of GOLDEN_MODELS) {
    const model = loadModel(join(GOLDEN, `${name}.safetensors`));
    for (const attention of EXPORT_ATTENTION) {
      for (const clsOnly of [true, false]) {
        for (const int8Weights of ['paired', 's7', 'u8'] as const) {
          const g = buildExportGraph(model, { precision: 'int8', attention, clsOnly, int8Weights });
          assert.deepEqual(int8GraphOverflows(g).slice(0, 3), [], `${name} ${attention} clsOnly=${clsOnly} ${int8Weights}`);
          const b = g.initializers.filter((t) => g.nodes.some((n) => n.op === 'MatMulInteger' && n.inputs[1] === t.name));
          assert.ok(b.length > 0 && b.every((t) => t.dtype === (int8Weights === 'u8' ? 'uint8' : 'int8')), `${name} ${int8Weights}: weight dtype`);
        }
      }
    }
    // the control: the check sees the overflowing pairs of full-range weights
    assert.ok(int8GraphOverflows(buildExportGraph(model, { precision: 'int8', int8Weights: 'full' })).length > 0, `${name}: full-range weights overflow somewhere`);
  }
});

test('cpuFeatures reads AVX2 / AVX-512 / VNNI / ARM dot product from /proc/cpuinfo flags', () => {
  const avx2 = cpuFeatures('processor : 0\nflags\t\t: fpu sse2 avx avx2 fma\n');
  assert.deepEqual([avx2.avx2, avx2.avx512, avx2.vnni], [true, false, false]);
  assert.match(avx2.summary, /: AVX2 \(no VNNI\)$/);
  const vnni = cpuFeatures('flags : avx2 avx512f avx512bw avx512_vnni amx_int8\n');
  assert.deepEqual([vnni.avx2, vnni.avx512, vnni.vnni, vnni.amx], [true, true, true, true]);
  assert.match(vnni.summary, /: AVX2 AVX-512 VNNI AMX$/);
  assert.equal(cpuFeatures('flags : avx2 avx_vnni\n').vnni, true, 'AVX-VNNI counts');
  const arm = cpuFeatures('Features\t: fp asimd asimddp i8mm\n');
  assert.deepEqual([arm.armDot, arm.armI8mm, arm.avx2], [true, true, false]);
  assert.deepEqual([...parseCpuFlags('no flags here')], []);
});

// An AVX2-only x86 CPU, emulated: qemu-user (Debian's qemu-user) runs node with the CPUID of
// an AMD EPYC Rome (AVX2, no AVX-512, no VNNI), so onnxruntime selects its VPMADDUBSW kernels,
// whose pair sums saturate. CI installs it and sets VITFOLD_REQUIRE_QEMU=1.
const QEMU = '/usr/bin/qemu-x86_64';
const haveQemu = spawnSync(QEMU, ['--version']).status === 0;
const requireQemu = process.env.VITFOLD_REQUIRE_QEMU === '1';
const qemuSkip = arch() !== 'x64' ? 'x86 hosts only (emulates an x86 CPU with qemu-user)' : !haveQemu && !requireQemu ? 'qemu-user not installed (apt-get install qemu-user)' : false;

test('on an emulated AVX2-only CPU, paired int8 exports compute what this CPU computes; full-range ones do not', { skip: qemuSkip }, async () => {
  assert.ok(haveQemu, `VITFOLD_REQUIRE_QEMU=1 but ${QEMU} does not run (apt-get install qemu-user)`);
  const dir = tmpDir();
  const model = loadModel(join(GOLDEN, 'folded-k3.safetensors'));
  const x = randomInput(model, 4, 1);
  const input = join(dir, 'x.json');
  writeFileSync(input, JSON.stringify({ shape: x.shape, data: Array.from(x.data) }));
  const files: Record<string, string> = {};
  const here: Record<string, Float64Array> = {};
  for (const mode of ['paired', 'full'] as const) {
    const bytes = toOnnxBytes(buildExportGraph(model, { precision: 'int8', int8Weights: mode }));
    files[mode] = join(dir, `${mode}.onnx`);
    writeFileSync(files[mode], bytes);
    const s = await Session.create(bytes, { threads: 1 });
    here[mode] = Float64Array.from((await s.run({ x: { shape: x.shape, data: Float32Array.from(x.data) } })).logits.data as Float32Array);
    await s.release();
  }
  const r = spawnSync(QEMU, ['-cpu', 'EPYC-Rome', process.execPath, '--import', 'tsx', join(REPO, 'test', 'deploy', 'int8-child.ts'), input, files.paired, files.full], { encoding: 'utf8', cwd: REPO, timeout: 120_000 });
  assert.equal(r.status, 0, `emulated child failed: ${r.stderr}`);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { saturates: boolean; logits: number[][] };
  assert.equal(out.saturates, true, 'the emulated CPU runs the saturating (no VNNI) int8 kernels');
  const [paired, full] = out.logits.map((l) => Float64Array.from(l));
  // integer products are exact on both CPUs: only float kernels' summation order differs
  assert.ok(compareLogits(here.paired, paired).maxRel < 1e-5, `paired: emulated vs here ${compareLogits(here.paired, paired).maxRel}`);
  // full-range weights: saturated pair sums change the logits (a VNNI host computes them exactly;
  // an AVX2-only host saturates too, and then both sides agree)
  const hostSaturates = JSON.parse(spawnSync(process.execPath, ['--import', 'tsx', '-e', "import('./src/deploy/cpu.ts').then(async (m) => console.log(JSON.stringify(await m.int8PairsSaturate())))"], { encoding: 'utf8', cwd: REPO }).stdout.trim());
  const fullDiff = compareLogits(here.full, full).maxRel;
  if (hostSaturates) assert.ok(fullDiff < 1e-5, `full on two saturating CPUs: ${fullDiff}`);
  else assert.ok(fullDiff > 1e-2, `full: emulated AVX2 vs VNNI host differ by only ${fullDiff}`);
});
