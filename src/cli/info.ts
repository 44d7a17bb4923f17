// `vitfold info`: what a model file holds (config, join state, parameters, FLOPs, the shape of its fold).

import { Command } from 'commander';
import { foldedConfig, unjoinedCoefficients } from '../core/fold.js';
import { flopsPerImage, formatCount } from '../core/flops.js';
import { describeConfig, describeStructure } from '../core/model.js';
import { paramCount } from '../core/params.js';
import { loadModel } from '../io.js';
import { printNotes, numHeadsOption } from './model-args.js';
import { isOnnxPath, loadOnnxModel } from '../deploy/onnx-model.js';
import { onnxModelInfo } from '../graph/onnx.js';

export function addInfoCommand(program: Command): void {
  program
    .command('info')
    .description('print a model file\'s config, join state, parameter count and FLOPs per image')
    .argument('<model>', 'model .safetensors (vitfold or timm/DeiT), or a .onnx file vitfold exported')
    .addOption(numHeadsOption())
    .option('--json', 'print JSON instead of text')
    .action((path: string, o: { numHeads?: number; json?: boolean }) => {
      if (isOnnxPath(path)) return printOnnxInfo(path, o.json ?? false);
      const notes: string[] = [];
      const model = loadModel(path, { numHeads: o.numHeads, notes });
      printNotes(notes);
      const cfg = model.config;
      const s = model.structure;
      const flops = flopsPerImage(cfg);
      const foldCfg = s.kind === 'branched' ? foldedConfig(cfg, s.branches) : null;
      if (o.json) {
        console.log(
          JSON.stringify(
            { file: path, config: cfg, structure: s, dtype: model.dtype, params: paramCount(cfg), flops_per_image: flops.total, fold: foldCfg, metadata: model.extraMetadata },
            null,
            2,
          ),
        );
        return;
      }
      console.log(`file       ${path} (${model.dtype})`);
      console.log(`config     ${describeConfig(cfg)}, LayerNorm eps ${cfg.eps}`);
      console.log(`structure  ${describeStructure(s, cfg)}`);
      console.log(`params     ${paramCount(cfg).toLocaleString('en-US')} (${formatCount(paramCount(cfg))})`);
      console.log(
        `FLOPs      ${formatCount(flops.total)}FLOP per image (matmuls, multiply-add = 2: ` +
          `patch ${formatCount(flops.patchEmbed)}, attention ${formatCount(flops.attention)}, MLP ${formatCount(flops.mlp)}, head ${formatCount(flops.head)})`,
      );
      if (foldCfg && s.kind === 'branched') {
        const unjoined = unjoinedCoefficients(model);
        console.log(
          `fold       ${foldCfg.depth} layers, ${foldCfg.num_heads} heads x ${foldCfg.head_dim}, MLP ${foldCfg.mlp_hidden}, ` +
            `${paramCount(foldCfg).toLocaleString('en-US')} params; ` +
            (unjoined.length ? `not yet possible (${unjoined.length} coefficients below 1)` : 'ready (fully joined)'),
        );
      }
      for (const [k, v] of Object.entries(model.extraMetadata)) console.log(`metadata   ${k}: ${v.length > 100 ? v.slice(0, 100) + '...' : v}`);
    });
}

/** What an exported .onnx file says about itself (metadata_props), and its graph's size. */
function printOnnxInfo(path: string, json: boolean): void {
  const m = loadOnnxModel(path);
  const md = m.metadata;
  const graph = onnxModelInfo(m.bytes);
  if (json) {
    console.log(JSON.stringify({ file: path, bytes: m.bytes.length, producer: graph.producer, opsets: graph.opsets, nodes: graph.nodes, config: m.config, metadata: md }, null, 2));
    return;
  }
  const cfg = m.config;
  console.log(`file       ${path} (ONNX, ${(m.bytes.length / 2 ** 20).toFixed(2)} MiB, ${graph.nodes} nodes, ${Object.entries(graph.opsets).map(([d, v]) => `${d} ${v}`).join(', ')}; ${graph.producer})`);
  console.log(`config     ${describeConfig(cfg)}, LayerNorm eps ${cfg.eps}`);
  if (md.origin) console.log(`origin     ${md.origin}`);
  if (md.precision) console.log(`precision  ${md.precision}`);
  console.log(`params     ${paramCount(cfg).toLocaleString('en-US')} (${formatCount(paramCount(cfg))}); ${formatCount(flopsPerImage(cfg).total)}FLOP per image`);
  const short = (v: string) => (v.length > 100 ? v.slice(0, 100) + '...' : v);
  if (md.normalization) console.log(`normalize  ${short(md.normalization)}`);
  if (md.classes) console.log(`classes    ${short(md.classes)}`);
}
