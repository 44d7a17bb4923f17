// `vitfold export`: an ONNX model for onnxruntime, validated against the float64 reference.

import { Command, Option } from 'commander';
import { positiveNumber, refuseOverwrite, EXIT } from './args.js';
import { loadModel, writeFileAtomic } from '../io.js';
import { Progress } from './progress.js';
import { DEFAULT_INT8_WEIGHTS, INT8_WEIGHTS, type Int8Weights } from '../deploy/int8.js';
import { DEFAULT_EXPORT_OPSET, EXPORT_ATTENTION, EXPORT_OPSETS, EXPORT_TOLERANCE, exportableModel, exportModel, PRECISIONS, type ExportAttention, type Precision } from '../deploy/export.js';
import { printNotes, fmtErr, seconds, numHeadsOption } from './model-args.js';

export function addExportCommand(program: Command): void {
  program
    .command('export')
    .description('write an ONNX model tuned for onnxruntime (fp32, fp16 or int8) and validate it against the float64 reference')
    .argument('<model>', 'plain or folded model .safetensors (a fully joined branched model is folded first)')
    .requiredOption('--out <file>', 'output .onnx')
    .addOption(new Option('--precision <p>', 'fp32; fp16 (float16 weights and activations, float32 input/logits); int8 (dynamic quantization of the transformer linear layers)').choices([...PRECISIONS]).default('fp32'))
    .addOption(new Option('--int8-weights <mode>', 'int8 weight storage: paired (default: int8 whose adjacent-pair products cannot overflow on x86 CPUs without VNNI, so every CPU computes the same result), u8 (uint8 with zero point 128: full 8-bit, exact everywhere, slower uint8 x uint8 kernels), s7 (7-bit weights), full (full-range int8: exact only on VNNI x86, ARM and wasm; wrong on AVX2-only x86)').choices([...INT8_WEIGHTS]).default(DEFAULT_INT8_WEIGHTS))
    .addOption(new Option('--attention <a>', "strided (heads read in place by onnxruntime's com.microsoft FusedMatMul: no head transposes; 2-10% faster than matmul in onnxruntime-node), matmul (standard ONNX ops only, heads transposed), or fused (onnxruntime's com.microsoft MultiHeadAttention)").choices([...EXPORT_ATTENTION]).default('strided'))
    .addOption(new Option('--opset <n>', 'ONNX opset (>= 20 uses the standard Gelu op instead of com.microsoft Gelu; with --attention matmul the graph then has standard ops only)').choices(EXPORT_OPSETS.map(String)).default(String(DEFAULT_EXPORT_OPSET)))
    .option('--no-cls-only', 'compute the full last layer (default: the class token only, its attention without projecting keys or values; exact)')
    .addOption(new Option('--tol <x>', `max relative logit error of the validation (default: ${PRECISIONS.map((p) => `${p} ${EXPORT_TOLERANCE[p]}`).join(', ')})`).argParser(positiveNumber('--tol')))
    .addOption(numHeadsOption())
    .addHelpText(
      'after',
      '\nExamples:\n  $ vitfold export runs/demo/folded.safetensors --out fmnist-3layer.onnx\n  $ vitfold export runs/demo/folded.safetensors --precision int8 --out fmnist-3layer-int8.onnx\n  $ vitfold export runs/demo/folded.safetensors --precision int8 --int8-weights full --out vnni-only-int8.onnx\n  $ vitfold export deit-tiny-3layer.safetensors --precision fp16 --opset 20 --attention matmul --out deit-3layer-fp16.onnx\n  $ vitfold export deit-tiny.safetensors --attention fused --out deit-12layer.onnx',
    )
    .action(async (path: string, o: { out: string; precision: Precision; int8Weights: Int8Weights; attention: ExportAttention; opset: string; clsOnly: boolean; tol?: number; numHeads?: number }) => {
      refuseOverwrite(o.out, [path]);
      const notes: string[] = [];
      const loaded = loadModel(path, { numHeads: o.numHeads, notes });
      const { model, note } = exportableModel(loaded, path);
      printNotes(note ? [...notes, note] : notes);
      const t0 = performance.now();
      const opset = Number(o.opset);
      const progress = new Progress('export  ');
      const r = await exportModel(model, { clsOnly: o.clsOnly, precision: o.precision, int8Weights: o.int8Weights, opset, attention: o.attention, onProgress: (what, done, total) => progress.update(done, total, what) });
      progress.done();
      const tol = o.tol ?? EXPORT_TOLERANCE[o.precision];
      const ok = r.error.maxRel <= tol;
      // a file that failed its validation is not written: nothing wrong is left on disk
      if (ok) writeFileAtomic(o.out, r.bytes);
      const c = model.config;
      const prec = o.precision === 'int8' ? `int8 (${o.int8Weights} weights)` : o.precision;
      console.log(`${ok ? 'wrote   ' : 'built   '} ${o.out} (${(r.bytes.length / 2 ** 20).toFixed(1)} MiB, ${prec}, opset ${opset}, ${o.attention} attention, batch symbolic): ${c.depth} layers, ${c.num_heads} heads x ${c.head_dim}, MLP ${c.mlp_hidden}${o.clsOnly ? ', last layer for the class token only' : ''}`);
      console.log(`validate onnxruntime-node ${o.precision} vs float64 reference (seeded input, batch 2): max abs ${fmtErr(r.error.maxAbs)}, max rel ${fmtErr(r.error.maxRel)} (tolerance ${tol})  ${ok ? 'OK' : 'FAILED'}  [${seconds(t0)}]`);
      if (r.int8Overflows) console.log(`note     ${r.int8Overflows} int8 weight pairs can overflow int16 on x86 CPUs without VNNI (AVX2-only): this file is exact on VNNI x86, ARM and onnxruntime-web; --int8-weights paired is exact everywhere`);
      if (!ok) {
        console.log(`not written: ${o.out} (validation failed; raise --tol to write it anyway)`);
        process.exitCode = EXIT.checkFailed;
      }
    });
}
