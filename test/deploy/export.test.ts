// vitfold export: logits of the exported graph (fp32, fp16, int8) against the golden fixtures
// and the float64 reference; class-token-only last layer; symbolic batch; refusal of unjoined
// models; the ONNX checker (Debian's python3-onnx) on every precision.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { preset } from '../../src/core/config.js';
import { fold } from '../../src/core/fold.js';
import { toBranched, type Model } from '../../src/core/model.js';
import { initParams } from '../../src/core/params.js';
import { compareLogits, randomInput } from '../../src/core/verify.js';
import { buildExportGraph, exportableModel, exportModel, type Precision } from '../../src/deploy/export.js';
import { toOnnxBytes } from '../../src/graph/onnx.js';
import { loadModel, readFloatTensor } from '../../src/io.js';
import { Session } from '../../src/runtime/ort.js';
import { GOLDEN, randomModel, smallConfig, tmpDir } from '../helpers.js';

const expected = JSON.parse(readFileSync(join(GOLDEN, 'expected.json'), 'utf8')).cases as { model: string; logits: number[][] }[];
const x = readFloatTensor(join(GOLDEN, 'input.safetensors'), 'x', 4);

async function run(bytes: Uint8Array, input: { shape: number[]; data: Float64Array }): Promise<Float64Array> {
  const s = await Session.create(bytes, { threads: 1 });
  const out = await s.run({ x: { shape: input.shape, data: Float32Array.from(input.data) } });
  await s.release();
  return Float64Array.from(out.logits.data as Float32Array);
}

test('exported golden models reproduce expected.json within 1e-4 (strided and transposed heads; class-token-only and full last layer)', async () => {
  for (const name of ['deep', 'folded-k2', 'folded-k3', 'folded-k4', 'folded-k6']) {
    const model = loadModel(join(GOLDEN, `${name}.safetensors`));
    const L = model.config.depth;
    const want = Float64Array.from(expected.find((c) => c.model === name)!.logits.flat());
    for (const attention of ['strided', 'matmul'] as const) {
      for (const clsOnly of [true, false]) {
        const g = buildExportGraph(model, { clsOnly, attention });
        const count = (op: string) => g.nodes.filter((n) => n.op === op).length;
        if (attention === 'strided') {
          // heads read in place: no Split; Transposes: the patchify's rows to token-major order and
          // one head merge per full layer (plus, with clsOnly, the two constant per-head weight
          // layouts of the class-query attention, which ORT folds at load)
          assert.equal(count('FusedMatMul'), 2 * L);
          assert.equal(count('Split'), 0);
          assert.equal(count('Transpose'), 1 + L + (clsOnly ? 1 : 0));
        } else {
          assert.equal(count('FusedMatMul'), 0, 'matmul attention uses standard ops');
        }
        const got = await run(toOnnxBytes(g), x); // batch 4: token-major rows differ from batch-major ones
        assert.ok(compareLogits(want, got).maxRel < 1e-4, `${name} ${attention} clsOnly=${clsOnly}: ${compareLogits(want, got).maxRel}`);
      }
    }
  }
});

test('fused attention (com.microsoft MultiHeadAttention) exports reproduce expected.json within 1e-4', async () => {
  for (const name of ['deep', 'folded-k3', 'folded-k6']) {
    const model = loadModel(join(GOLDEN, `${name}.safetensors`));
    const want = Float64Array.from(expected.find((c) => c.model === name)!.logits.flat());
    for (const clsOnly of [true, false]) {
      const g = buildExportGraph(model, { clsOnly, attention: 'fused' });
      // every full layer's attention core is the fused op; the class-token-only last layer
      // reassociates its one query's attention instead (classQueryAttention: one Softmax)
      assert.equal(g.nodes.filter((n) => n.op === 'MultiHeadAttention' && n.domain === 'com.microsoft').length, model.config.depth - (clsOnly ? 1 : 0));
      // the patchify is a Gather: no other Softmax or Transpose of activations is left
      assert.equal(g.nodes.filter((n) => n.op === 'Softmax').length, clsOnly ? 1 : 0);
      const got = await run(toOnnxBytes(g), x);
      assert.ok(compareLogits(want, got).maxRel < 1e-4, `${name} clsOnly=${clsOnly}: ${compareLogits(want, got).maxRel}`);
    }
    const int8 = compareLogits(want, await run(toOnnxBytes(buildExportGraph(model, { precision: 'int8', attention: 'fused' })), x)).maxRel;
    assert.ok(int8 < 6e-2, `${name} int8 fused: ${int8}`);
  }
});

test('export of a folded DeiT-Tiny-shaped model validates against the float64 reference', async () => {
  const cfg = preset('deit-tiny');
  const deep: Model = { config: cfg, structure: { kind: 'plain' }, params: initParams(cfg, 3), dtype: 'F32', extraMetadata: {} };
  const folded = fold(toBranched(deep, 4, { attn: 1, ffn: 1 }));
  const r = await exportModel(folded, { validateBatch: 1 });
  assert.ok(r.error.maxRel < 1e-4, `max rel ${r.error.maxRel}`);
  assert.ok(r.error.maxAbs > 0, 'the comparison ran');
});

test('symbolic batch; the class-token-only graph equals the full one; export refuses unjoined models', async () => {
  const m = fold(toBranched(randomModel(smallConfig(), 4), 3, { attn: 1, ffn: 1 }));
  const a = toOnnxBytes(buildExportGraph(m, { clsOnly: true }));
  const b = toOnnxBytes(buildExportGraph(m, { clsOnly: false }));
  for (const batch of [1, 3]) {
    const xi = randomInput(m, batch, batch);
    const ya = await run(a, xi);
    assert.equal(ya.length, batch * 5);
    assert.ok(compareLogits(await run(b, xi), ya).maxRel < 1e-5);
  }
  const unjoined = toBranched(randomModel(smallConfig(), 4), 3, { attn: [1, 1], ffn: [1, 0.5] });
  assert.throws(() => exportableModel(unjoined, 'run/last.safetensors'), /run\/last.safetensors: is a branched model that is not fully joined.*\n {2}block 1: ffn join coefficient f_1 = 0.5\nFinish training .*vitfold fold run\/last.safetensors/s);
  const joined = toBranched(randomModel(smallConfig(), 4), 3, { attn: 1, ffn: 1 });
  const e = exportableModel(joined, 'j.safetensors');
  assert.equal(e.model.structure.kind, 'folded');
  assert.match(e.note!, /fully joined; exporting its fold \(2 layers\)/);
});

// Bounds on max |logit error| / max |logit| vs expected.json, over the golden models. Observed:
// fp16 8.3e-4 to 1.4e-3 (11-bit significands), int8 1.7e-2 to 2.9e-2 (paired int8 weights per
// channel, activations per tensor). int8 integer products are exact on every CPU
// (test/int8.test.ts), so these bounds do not depend on the CPU running them.
const REDUCED: { precision: Precision; bound: number }[] = [
  { precision: 'fp16', bound: 5e-3 },
  { precision: 'int8', bound: 6e-2 },
];

test('fp16 and int8 exports of the golden models stay close to expected.json', async () => {
  for (const name of ['deep', 'folded-k2', 'folded-k3', 'folded-k4', 'folded-k6']) {
    const model = loadModel(join(GOLDEN, `${name}.safetensors`));
    const want = Float64Array.from(expected.find((c) => c.model === name)!.logits.flat());
    const fp32 = compareLogits(want, await run(toOnnxBytes(buildExportGraph(model)), x)).maxRel;
    for (const { precision, bound } of REDUCED) {
      const err = compareLogits(want, await run(toOnnxBytes(buildExportGraph(model, { precision })), x)).maxRel;
      assert.ok(err < bound, `${name} ${precision}: max rel ${err} >= ${bound}`);
      assert.ok(err > 10 * fp32, `${name} ${precision}: error ${err} is not above fp32's ${fp32}: is the graph really ${precision}?`);
    }
  }
});

test('the int8 graph quantizes every transformer linear layer; fp16 stores half-size weights', () => {
  const m = loadModel(join(GOLDEN, 'folded-k3.safetensors'));
  const L = m.config.depth;
  for (const attention of ['strided', 'matmul'] as const) {
    const int8 = buildExportGraph(m, { precision: 'int8', attention });
    const count = (op: string) => int8.nodes.filter((n) => n.op === op).length;
    // strided: q, k, v, proj, fc1, fc2 per layer; matmul: qkv, proj, fc1, fc2; the
    // class-token-only last layer: q, proj, fc1, fc2 and the two per-head products q Wk_h and
    // (p X) Wv_h^T (its keys and values are never projected)
    const layers = attention === 'strided' ? 6 * L : 4 * L + 2;
    assert.equal(count('MatMulInteger'), layers, attention);
    assert.equal(int8.initializers.filter((t) => t.dtype === 'int8').length, layers, attention);
    // no transformer weight matrix is left in float (only the patch embedding and head are)
    const floatWeights = int8.initializers.filter((t) => t.dtype === 'float32' && /^blocks\.\d+\.(attn|mlp)\.\w+\.weight/.test(t.name));
    assert.deepEqual(floatWeights.map((t) => t.name), [], attention);
    // one activation quantization per input: q, k and v share h's; the last layer's q reads the
    // class token, its per-head products read q and p X
    assert.equal(count('DynamicQuantizeLinear'), 4 * L + 2, attention);
  }
  const fp32Bytes = toOnnxBytes(buildExportGraph(m)).length;
  const fp16 = buildExportGraph(m, { precision: 'fp16' });
  assert.ok(fp16.initializers.every((t) => t.dtype !== 'float32'), 'no float32 weights in the fp16 graph');
  assert.ok(toOnnxBytes(fp16).length < 0.55 * fp32Bytes);
  assert.deepEqual(fp16.inputs.map((v) => v.dtype), ['float32'], 'fp16 graphs take float32 input');
  assert.deepEqual(fp16.outputs.map((v) => v.dtype), ['float32'], 'and give float32 logits');
});

test('a fold exported at opset 20 uses the standard Gelu op and gives the same logits', async () => {
  const m = loadModel(join(GOLDEN, 'folded-k2.safetensors'));
  const g20 = buildExportGraph(m, { opset: 20 });
  assert.ok(g20.nodes.some((n) => n.op === 'Gelu' && n.domain === ''));
  assert.ok(buildExportGraph(m).nodes.some((n) => n.op === 'Gelu' && n.domain === 'com.microsoft'));
  const a = await run(toOnnxBytes(g20), x);
  const b = await run(toOnnxBytes(buildExportGraph(m)), x);
  assert.ok(compareLogits(a, b).maxRel < 1e-6);
  assert.throws(() => buildExportGraph(m, { opset: 16 }), /--opset 16: vitfold exports opsets 17, 18, 19, 20, 21/);
});

// The official ONNX checker (onnx.checker.check_model with full_check: schemas, topological
// order, types and shape inference) from Debian's python3-onnx 1.12, which knows opsets <= 17,
// vitfold's default export opset. CI installs it and sets VITFOLD_REQUIRE_ONNX_CHECKER=1.
const CHECKER = `
import onnx, sys
for path in sys.argv[1:]:
    try:
        onnx.checker.check_model(onnx.load(path), full_check=True)
        print("OK", path)
    except Exception as e:
        print("FAIL", path, str(e).splitlines()[0])
`;
const haveChecker = spawnSync('/usr/bin/python3', ['-c', 'import onnx'], { encoding: 'utf8' }).status === 0;
const requireChecker = process.env.VITFOLD_REQUIRE_ONNX_CHECKER === '1';

test('the ONNX checker accepts fp32, fp16, int8 and fused-attention exports (and rejects a broken graph)', { skip: !haveChecker && !requireChecker ? 'python3-onnx not installed (apt-get install python3-onnx)' : false }, () => {
  assert.ok(haveChecker, 'VITFOLD_REQUIRE_ONNX_CHECKER=1 but /usr/bin/python3 cannot import onnx (apt-get install python3-onnx)');
  const dir = tmpDir();
  const files: string[] = [];
  const m = loadModel(join(GOLDEN, 'folded-k3.safetensors'));
  for (const precision of ['fp32', 'fp16', 'int8'] as const) {
    for (const clsOnly of [true, false]) {
      const f = join(dir, `${precision}-${clsOnly}.onnx`);
      writeFileSync(f, toOnnxBytes(buildExportGraph(m, { precision, clsOnly })));
      files.push(f);
    }
  }
  const fused = join(dir, 'fp32-fused.onnx');
  writeFileSync(fused, toOnnxBytes(buildExportGraph(m, { attention: 'fused' })));
  files.push(fused);
  // A broken graph: the first node reads a value nobody defines.
  const broken = buildExportGraph(m);
  broken.nodes[0].inputs[0] = 'undefined_value';
  const bad = join(dir, 'broken.onnx');
  writeFileSync(bad, toOnnxBytes(broken));
  const r = spawnSync('/usr/bin/python3', ['-c', CHECKER, ...files, bad], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.deepEqual(lines.slice(0, -1), files.map((f) => `OK ${f}`));
  assert.match(lines.at(-1)!, /^FAIL .*broken.onnx .*undefined_value/);
});
